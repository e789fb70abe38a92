"""Question sets: ``.jsonl`` or ``.csv`` rows ``{"id", "question", "expected", "tags"}`` (only ``question`` required).

Why strict: an evaluation is compared across agents and re-run after crashes, so every row must mean one thing.
A malformed row stops the command with one line naming the file, the line and the fix, before any agent is asked.
Question ids default to a hash of the question text (stable when rows are reordered, so ``--resume`` and ``--shard``
keep working); a repeated question gets ``-2``, ``-3`` ... in order of appearance.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

MAX_ROW_BYTES = 1 << 20  # one question row; past it the row is refused (a question is text, not a document)
MAX_ID_CHARS = 200
COLUMNS = ("id", "question", "expected", "tags")


class DatasetError(ConfigError):
    """A question set that cannot be used as given; the message names the line and the fix."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    expected: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class QuestionSet:
    path: str
    name: str
    digest: str  # sha256 of the file's bytes: two runs on the same digest asked the same questions
    questions: list[Question]


def load_questions(path: str | Path) -> QuestionSet:
    """Read and check a question set; raise :class:`DatasetError` (one line) on the first bad row."""
    path = Path(path)
    shown = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{shown}: no such file; give a .jsonl or .csv question set") from None
    except IsADirectoryError:
        raise DatasetError(f"{shown}: is a directory; give a .jsonl or .csv question set") from None
    except OSError as err:
        raise DatasetError(f"{shown}: cannot read it ({err.strerror})") from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = _jsonl_rows(shown, data)
    elif suffix == ".csv":
        rows = _csv_rows(shown, data)
    else:
        raise DatasetError(f"{shown}: unknown format {suffix or '(no extension)'!r}; use .jsonl or .csv")
    questions = _questions(shown, rows)
    if not questions:
        raise DatasetError(f'{shown}: no questions; add rows like {{"question": "What is a Pod?"}}')
    return QuestionSet(shown, path.name, hashlib.sha256(data).hexdigest(), questions)


def _jsonl_rows(shown: str, data: bytes) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        _check_size(shown, number, raw)
        text = _utf8(shown, number, raw)
        try:
            row = json.loads(text, parse_constant=_no_constant)
        except _Constant as bad:
            raise DatasetError(
                f"{shown} line {number}: {bad} is not valid JSON; write null or a number instead"
            ) from None
        except json.JSONDecodeError as err:
            raise DatasetError(
                f"{shown} line {number}: not valid JSON ({err.msg} at column {err.colno}); "
                'each line must be one JSON object like {"question": "..."}'
            ) from None
        if not isinstance(row, dict):
            raise DatasetError(
                f"{shown} line {number}: a JSON {type(row).__name__}, not an object; "
                'each line must be one JSON object like {"question": "..."}'
            )
        rows.append((number, row))
    return rows


def _csv_rows(shown: str, data: bytes) -> list[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(data.splitlines(), start=1):
        _check_size(shown, number, raw)
        _utf8(shown, number, raw)
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as err:
        raise DatasetError(f"{shown} line 1: not valid CSV ({err})") from None
    names = [h.strip().lower() for h in header]
    if "question" not in names:
        raise DatasetError(f"{shown} line 1: no 'question' column; the header must name it (id,question,expected,tags)")
    rows = []
    try:
        for cells in reader:
            number = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(names):
                raise DatasetError(
                    f"{shown} line {number}: {len(cells)} cells for {len(names)} columns; quote cells holding commas"
                )
            row = {name: cell for name, cell in zip(names, cells, strict=False) if name and cell != ""}
            if isinstance(row.get("tags"), str):
                row["tags"] = _csv_tags(shown, number, row["tags"])
            rows.append((number, row))
    except csv.Error as err:
        raise DatasetError(
            f"{shown} line {reader.line_num}: not valid CSV ({err}); quote cells holding quotes"
        ) from None
    return rows


def _csv_tags(shown: str, number: int, text: str) -> dict[str, str]:
    """A CSV ``tags`` cell: ``k=v;k2=v2`` or a JSON object."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text, parse_constant=_no_constant)
        except (json.JSONDecodeError, _Constant):
            raise DatasetError(
                f'{shown} line {number}: tags is not a JSON object; write k=v;k2=v2 or {{"k": "v"}}'
            ) from None
    tags = {}
    for part in text.split(";"):
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise DatasetError(f"{shown} line {number}: tag {part.strip()!r} is not key=value; write k=v;k2=v2")
            tags[key.strip()] = value.strip()
    return tags


def _questions(shown: str, rows: list[tuple[int, dict[str, Any]]]) -> list[Question]:
    questions: list[Question] = []
    seen: dict[str, int] = {}
    ids: set[str] = set()
    for number, row in rows:
        where = f"{shown} line {number}"
        text = row.get("question")
        if text is None or (isinstance(text, str) and not text.strip()):
            raise DatasetError(f'{where}: no question; every row needs "question": "<text to ask>"')
        if not isinstance(text, str):
            raise DatasetError(f'{where}: "question" is a {_kind(text)}; write it as a string')
        expected = row.get("expected")
        if isinstance(expected, bool) or not (expected is None or isinstance(expected, (str, int, float))):
            raise DatasetError(f'{where}: "expected" is a {_kind(expected)}; write a string or a number')
        if isinstance(expected, float) and not math.isfinite(expected):
            raise DatasetError(f'{where}: "expected" is not a finite number; write a string or a number')
        tags = row.get("tags") or {}
        if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
            tags = {t: "true" for t in tags}
        if not isinstance(tags, dict) or not all(isinstance(v, (str, int, float, bool)) for v in tags.values()):
            raise DatasetError(f'{where}: "tags" must be an object of strings like {{"topic": "pods"}} or a list')
        qid = row.get("id")
        if qid is None:
            base = "q-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
            seen[base] = seen.get(base, 0) + 1
            qid = base if seen[base] == 1 else f"{base}-{seen[base]}"
        elif isinstance(qid, bool) or not isinstance(qid, (str, int)):
            raise DatasetError(f'{where}: "id" is a {_kind(qid)}; write a string or an integer')
        qid = str(qid).strip()
        if not qid or len(qid) > MAX_ID_CHARS or not qid.isprintable():
            raise DatasetError(f'{where}: "id" must be 1-{MAX_ID_CHARS} printable characters')
        if qid in ids:
            raise DatasetError(f'{where}: id {qid!r} is used twice; give every row its own "id"')
        ids.add(qid)
        questions.append(
            Question(
                id=qid,
                question=text,
                expected=None if expected is None else str(expected),
                tags={str(k): str(v) for k, v in tags.items()},
                line=number,
            )
        )
    return questions


def select(
    questions: list[Question], *, shard: tuple[int, int] | None = None, limit: int | None = None
) -> list[Question]:
    """The questions this process asks: its shard (by a hash of the id: the same split on every machine, whatever
    the row order), then the first ``limit`` of them."""
    if shard is not None:
        index, count = shard
        questions = [q for q in questions if _bucket(q.id, count) == index]
    return questions[:limit] if limit is not None else questions


def _bucket(qid: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(qid.encode("utf-8", "surrogatepass")).digest()[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` with 0 <= i < N."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r} is not i/N with 0 <= i < N; e.g. --shard 0/4 for the first of 4 shards")
    return i, n


def _check_size(shown: str, number: int, raw: bytes) -> None:
    if len(raw) > MAX_ROW_BYTES:
        raise DatasetError(
            f"{shown} line {number}: {len(raw):,} bytes, over the {MAX_ROW_BYTES:,}-byte limit per row; shorten it"
        )


def _utf8(shown: str, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{shown} line {number}: not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1}); "
            "save the file as UTF-8"
        ) from None


class _Constant(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _Constant(name)


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )
