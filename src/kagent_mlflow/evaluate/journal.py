"""The per-evaluation journal on disk: what was asked, answered and recorded, so ``--resume`` repeats nothing.

    <home>/evals/<eval id>/meta.json       what the evaluation is (set, targets, destination, run ids)
    <home>/evals/<eval id>/answers.jsonl   one line per (target, question) answered or failed for good
    <home>/evals/<eval id>/recorded.jsonl  one line per (target, question) whose trace ("t") and scores ("a") are in
                                           MLflow

Each line is one ``os.write`` of a whole line: it survives the process being killed; a torn last line (crash in
mid-write) is ignored on reading. ``--resume`` asks only the (target, question) pairs without an answer line and
records only those without an "a" line. A trace re-sent after a crash is harmless (MLflow upserts spans by id); an
assessment is not, so a pair with a "t" but no "a" line has its trace's existing assessments read first.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._files import write_all
from ..errors import ConfigError
from .targets import Answer


class Journal:
    def __init__(self, directory: Path, meta: dict[str, Any], *, owner: bool = True) -> None:
        """``owner``: the ``eval`` process (one at a time per evaluation); the recorder process is not."""
        self.directory = directory
        self.meta = meta
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        if owner:
            self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                raise ConfigError(f"evaluation {meta['eval_id']} is running in another process ({directory})") from None
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._answers = os.open(directory / "answers.jsonl", flags, 0o600)
        self._recorded = os.open(directory / "recorded.jsonl", flags, 0o600)
        if owner:
            for name, fd in (("answers.jsonl", self._answers), ("recorded.jsonl", self._recorded)):
                _end_torn_line(directory / name, fd)

    @property
    def eval_id(self) -> str:
        return str(self.meta["eval_id"])

    # -- creation and lookup ---------------------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, key: str, meta: dict[str, Any]) -> Journal:
        eval_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        directory = root / eval_id
        directory.mkdir(parents=True, mode=0o700)
        meta = {**meta, "eval_id": eval_id, "key": key, "created": time.time()}
        _write_json(directory / "meta.json", meta)
        return cls(directory, meta)

    @classmethod
    def find(cls, root: Path, key: str, eval_id: str | None = None) -> Journal | None:
        """The latest journal of the same evaluation (same set, targets, shard, destination), or the named one."""
        if not root.is_dir():
            return None
        candidates = []
        for meta_path in root.glob("*/meta.json"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if eval_id is not None and meta.get("eval_id") == eval_id:
                return cls(meta_path.parent, meta)
            if eval_id is None and meta.get("key") == key:
                candidates.append((meta.get("created", 0), meta_path.parent, meta))
        if not candidates:
            return None
        _, directory, meta = max(candidates, key=lambda c: c[0])
        return cls(directory, meta)

    def save_meta(self, **changes: Any) -> None:
        with self._lock:
            self.meta.update(changes)
            _write_json(self.directory / "meta.json", self.meta)

    # -- lines ---------------------------------------------------------------------------------------------------

    def add_answer(self, answer: Answer) -> None:
        line = json.dumps(asdict(answer), default=str) + "\n"  # ASCII: lone surrogates of a raw reply round-trip
        write_all(self._answers, line.encode())

    def add_recorded(self, stage: str, keys: list[tuple[str, str]]) -> None:
        data = "".join(json.dumps({"s": stage, "t": t, "q": q}) + "\n" for t, q in keys)
        write_all(self._recorded, data.encode())

    def sync(self) -> None:
        for fd in (self._answers, self._recorded):
            os.fsync(fd)

    def answers(self) -> dict[tuple[str, str], Answer]:
        return self.read_answers(0)[0]

    def read_answers(self, offset: int) -> tuple[dict[tuple[str, str], Answer], int]:
        """Answers journalled from byte ``offset`` on (complete lines only) and the offset after them."""
        found: dict[tuple[str, str], Answer] = {}
        rows, end = _lines(self.directory / "answers.jsonl", offset)
        for row in rows:
            try:
                answer = Answer(**row)
            except TypeError:
                continue
            found[(answer.target, answer.qid)] = answer
        return found, end

    def recorded(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(pairs whose trace is in MLflow, pairs whose trace and scores are)."""
        traces, done = set(), set()
        for row in _lines(self.directory / "recorded.jsonl")[0]:
            key = (str(row.get("t")), str(row.get("q")))
            (done if row.get("s") == "a" else traces).add(key)
        return traces | done, done

    def close(self) -> None:
        for fd in (self._answers, self._recorded):
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    @classmethod
    def open_for_recording(cls, directory: Path) -> Journal:
        return cls(directory, json.loads((directory / "meta.json").read_text()), owner=False)


def _lines(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete lines from ``offset`` (a line still being written is left for the next read)."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return rows, offset
    complete = data.rfind(b"\n") + 1
    for raw in data[:complete].splitlines():
        try:
            row = json.loads(raw)
        except ValueError:
            continue  # a torn last line (killed in mid-write)
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + complete


def _end_torn_line(path: Path, fd: int) -> None:
    """A process killed in mid-write leaves a line without its newline: end it, so the next line stays whole."""
    size = path.stat().st_size
    if size:
        with open(path, "rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                write_all(fd, b"\n")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
