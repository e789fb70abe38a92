"""Run a Containerfile's steps for real without a container engine (none exists on these machines).

:func:`parse` reads a Containerfile into stages of instructions (continuation lines, comments, JSON and shell forms,
``ARG``/``ENV`` with ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` expansion). :func:`build` then executes it on this
machine, stage by stage, the way an engine would, with each stage's filesystem a folder (``<root>/<stage>``):

- ``FROM`` gives the stage the base image's ``PATH``; its ``/usr/local/bin`` (where python images keep ``python``
  and ``pip``) is a folder of links to this machine's base interpreter, the same Python minor as the image's tag.
- ``ENV``/``ARG``/``WORKDIR``/``USER`` are tracked in the container's own terms (container paths);
- ``COPY`` copies from the build context or (``--from``) from another stage's folder;
- ``RUN`` runs with ``/bin/sh -c`` (or the exec form), in the mapped ``WORKDIR``, with the stage's environment
  translated: every absolute path in a variable (each entry of ``PATH``) points into the stage's folder, except the
  base image's own system folders. RUN lines must therefore name paths through variables: :func:`literal_paths`
  finds the ones that do not, and the image test fails on them.

The result, :class:`Image`, resolves ``ENTRYPOINT``/``CMD`` (and Kubernetes' ``command``/``args`` overrides) into a
host command line with the image's environment, so tests can run the image's programs as a container would.
What is not emulated: file ownership and the ``USER`` switch (the tests run as whoever runs pytest; the user is
checked statically), ``ADD``, ``ONBUILD``, heredocs, ``.containerignore`` (the Containerfile copies named paths only).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# What python:3.x-slim images set (docker inspect): PATH, and the folders that belong to the base image itself.
BASE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_PREFIXES = ("/usr/", "/bin", "/sbin", "/lib", "/etc/", "/dev/", "/proc/")
RUN_TIMEOUT_S = 1500


class ContainerfileError(Exception):
    """The Containerfile uses something this emulation cannot run, or a step failed."""


@dataclass
class Instruction:
    keyword: str  # upper case
    value: str  # the rest of the line, continuations joined
    flags: dict[str, str]  # --from=..., --chown=...
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array form (``["a", "b"]``), or None for the shell form."""
        text = self.value.strip()
        if text.startswith("["):
            try:
                argv = json.loads(text)
            except ValueError:
                return None
            if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
                return argv
        return None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Containerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name_or_index: str) -> int:
        for i, stage in enumerate(self.stages):
            if stage.name == name_or_index:
                return i
        if name_or_index.isdigit() and int(name_or_index) < len(self.stages):
            return int(name_or_index)
        raise ContainerfileError(f"no stage {name_or_index!r}")

    def final(self) -> Stage:
        return self.stages[-1]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join ``\\`` continuations; drop comments and blank lines (also inside a continued instruction)."""
    lines: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not current:
            start = number
        if raw.rstrip().endswith("\\"):
            current.append(raw.rstrip()[:-1])
            continue
        current.append(raw)
        lines.append((start, " ".join(part.strip() for part in current)))
        current = []
    if current:
        lines.append((start, " ".join(part.strip() for part in current)))
    return lines


_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


def expand(text: str, env: dict[str, str]) -> str:
    """Expand ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR:+word}`` as Containerfile instructions do."""

    def one(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = env.get(name, "")
        op = match.group("op")
        if op == "-":
            return value or match.group("word")
        if op == "+":
            return match.group("word") if value else ""
        return value

    return _VAR.sub(one, text)


def split_assignments(value: str) -> dict[str, str]:
    """``ENV``/``ARG``/``LABEL`` bodies: ``a=1 b="two words"``, or the legacy ``ENV name value``."""
    words = shlex.split(value, posix=True)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    pairs: dict[str, str] = {}
    for word in words:
        name, sep, val = word.partition("=")
        pairs[name] = val if sep else ""
    return pairs


def _split_flags(value: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = value.strip()
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, val = word[2:].partition("=")
        flags[name] = val
        rest = rest.strip()
    return flags, rest


def parse(text: str) -> Containerfile:
    """Parse a Containerfile (see the module doc for what is supported)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, value = line.strip().partition(" ")
        keyword = keyword.upper()
        flags, value = _split_flags(value) if keyword in ("COPY", "FROM", "RUN") else ({}, value.strip())
        if keyword == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=expand(words[0], global_args), name=name))
            continue
        if not stages:
            if keyword != "ARG":
                raise ContainerfileError(f"line {number}: {keyword} before the first FROM")
            global_args.update(split_assignments(value))
            continue
        if keyword in ("ADD", "ONBUILD"):
            raise ContainerfileError(f"line {number}: {keyword} is not supported here; use COPY / RUN")
        stages[-1].instructions.append(Instruction(keyword, value, flags, number))
    if not stages:
        raise ContainerfileError("no FROM")
    return Containerfile(global_args, stages)


def literal_paths(command: str) -> list[str]:
    """Absolute paths a RUN line spells out instead of taking from a variable (the emulation cannot map them):
    shell words, or ``--flag=`` values, that begin with ``/``."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found = []
    for word in lexer:
        for candidate in (word, word.partition("=")[2]):
            if candidate.startswith("/") and candidate != "/dev/null":
                found.append(candidate)
    return found


@dataclass
class StageState:
    """One stage while it is built: its folder and its settings in the container's own terms."""

    root: Path  # the stage's filesystem
    base_bin: Path  # stands for the base image's /usr/local/bin
    env: dict[str, str]
    workdir: str = "/"
    user: str = "root"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    healthcheck: bool = False

    def host_path(self, path: str, tmp: Path | None = None) -> Path:
        """Where a container path of this stage lives here (``tmp``: a private folder standing for ``/tmp``)."""
        if not path.startswith("/"):
            path = f"{self.workdir.rstrip('/')}/{path}"
        if tmp is not None and (path == "/tmp" or path.startswith("/tmp/")):
            return tmp / path[len("/tmp") :].lstrip("/")
        return self.root / path.lstrip("/")

    def host_value(self, name: str, value: str, tmp: Path | None = None) -> str:
        """A variable's value with container paths turned into host paths (``PATH`` entry by entry)."""
        if name == "PATH":
            entries: list[str] = []
            for entry in value.split(":"):
                if entry.startswith("/usr/local/bin"):
                    entries.append(str(self.base_bin))
                elif entry.startswith(SYSTEM_PREFIXES):
                    entries.append(entry)
                elif entry:
                    entries.append(str(self.host_path(entry, tmp)))
            return ":".join(dict.fromkeys(entries))
        if value.startswith("/") and not value.startswith(SYSTEM_PREFIXES):
            return str(self.host_path(value, tmp))
        return value

    def host_env(self, tmp: Path | None = None) -> dict[str, str]:
        env = {name: self.host_value(name, value, tmp) for name, value in self.env.items()}
        env.setdefault("LANG", "C.UTF-8")
        return env


def _base_interpreter() -> Path:
    """This machine's base Python (not a venv's), standing for the image's ``python``."""
    return Path(getattr(sys, "_base_executable", sys.executable)).resolve()


def base_bin(folder: Path) -> Path:
    """A folder of ``python``/``python3``/``pip`` links to the base interpreter (the image's /usr/local/bin)."""
    folder.mkdir(parents=True, exist_ok=True)
    python = _base_interpreter()
    for name in ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}"):
        link = folder / name
        if not link.exists():
            link.symlink_to(python)
    pip = folder / "pip"
    if not pip.exists():
        pip.write_text(f'#!/bin/sh\nexec "{python}" -m pip "$@"\n')
        pip.chmod(0o755)
    return folder


def _copy(src: Path, dest: Path, into_dir: bool) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        return
    target = dest / src.name if into_dir else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target)


@dataclass
class Image:
    """The built image: its final stage, ready to run its programs here."""

    state: StageState
    log: Path

    def env(self, tmp: Path) -> dict[str, str]:
        """The image's environment (host paths), ``/tmp`` being ``tmp``."""
        tmp.mkdir(parents=True, exist_ok=True)
        return self.state.host_env(tmp)

    def which(self, program: str, env: dict[str, str]) -> str:
        """Resolve ``argv[0]`` on the image's ``PATH``, as the runtime does for exec-form commands."""
        if "/" in program:
            return str(self.state.host_path(program))
        found = shutil.which(program, path=env.get("PATH", ""))
        if found is None:
            raise ContainerfileError(f"{program!r} is not on the image's PATH ({env.get('PATH')})")
        return found

    def argv(self, env: dict[str, str], command: list[str] | None = None, args: list[str] | None = None) -> list[str]:
        """The process a container runs: Kubernetes ``command`` replaces ENTRYPOINT (and drops CMD), ``args``
        replaces CMD; neither = ENTRYPOINT + CMD."""
        if command:
            argv = [*command, *(args or [])]
        elif args is not None:
            argv = [*self.state.entrypoint, *args]
        else:
            argv = [*self.state.entrypoint, *self.state.cmd]
        if not argv:
            raise ContainerfileError("the image has neither ENTRYPOINT nor CMD")
        return [self.which(argv[0], env), *argv[1:]]

    def workdir(self, tmp: Path) -> Path:
        path = self.state.host_path(self.state.workdir, tmp)
        path.mkdir(parents=True, exist_ok=True)
        return path


def _run(argv: list[str], cwd: Path, env: dict[str, str], log: Path, line: int) -> None:
    with log.open("a") as out:
        out.write(f"\n### line {line}: {argv}\n")
        out.flush()
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=RUN_TIMEOUT_S,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise ContainerfileError(f"line {line}: RUN exited with {done.returncode}:\n{tail}")


def build(
    containerfile: Containerfile,
    context: Path,
    root: Path,
    *,
    build_args: dict[str, str] | None = None,
    env_overrides: dict[str, str | None] | None = None,
) -> Image:
    """Build every stage in ``root`` and return the final one. ``env_overrides`` are applied to each RUN's
    environment only (None drops a variable: e.g. keep pip's cache, as a build cache mount would); the image's own
    ENV is kept."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    bin_dir = base_bin(root / "base-usr-local-bin")
    args = {**containerfile.global_args, **(build_args or {})}
    built: list[StageState] = []
    for index, stage in enumerate(containerfile.stages):
        if any(stage.base == other.name for other in containerfile.stages[:index]):
            raise ContainerfileError(f"stage {index}: FROM another stage is not emulated here")
        state = StageState(root=root / f"stage-{index}", base_bin=bin_dir, env={"PATH": BASE_PATH})
        state.root.mkdir(parents=True, exist_ok=True)
        stage_args: dict[str, str] = {}
        for ins in stage.instructions:
            scope = {**stage_args, **state.env}
            if ins.keyword == "ARG":
                for name, value in split_assignments(ins.value).items():
                    stage_args[name] = args.get(name, expand(value, scope)) if value else args.get(name, "")
            elif ins.keyword == "ENV":
                for name, value in split_assignments(ins.value).items():
                    state.env[name] = expand(value, {**stage_args, **state.env})
            elif ins.keyword == "LABEL":
                state.labels.update(split_assignments(ins.value))
            elif ins.keyword == "WORKDIR":
                target = expand(ins.value, scope)
                state.workdir = target if target.startswith("/") else f"{state.workdir.rstrip('/')}/{target}"
                state.host_path(state.workdir).mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "COPY":
                words = [expand(w, scope) for w in shlex.split(ins.value)]
                *sources, dest = words
                source_root = context
                if "from" in ins.flags:
                    source_state = built[containerfile.stage(ins.flags["from"])]
                    source_root = source_state.root
                dest_path = state.host_path(dest)
                into_dir = dest.endswith("/") or len(sources) > 1
                for src in sources:
                    matches = sorted(source_root.glob(src.lstrip("/")))
                    if not matches:
                        raise ContainerfileError(f"line {ins.line}: COPY source {src!r} not found")
                    for match in matches:
                        _copy(match, dest_path, into_dir or match.is_file() and dest_path.is_dir())
            elif ins.keyword == "RUN":
                exec_form = ins.exec_form()
                run_env = {**state.host_env(), **{k: v for k, v in stage_args.items() if k not in state.env}}
                for name, value in (env_overrides or {}).items():
                    if value is None:
                        run_env.pop(name, None)
                    else:
                        run_env[name] = value
                argv = exec_form if exec_form is not None else ["/bin/sh", "-c", ins.value]
                cwd = state.host_path(state.workdir)
                cwd.mkdir(parents=True, exist_ok=True)
                _run(argv, cwd, run_env, log, ins.line)
            elif ins.keyword == "USER":
                state.user = expand(ins.value, scope)
            elif ins.keyword == "EXPOSE":
                state.exposed += expand(ins.value, scope).split()
            elif ins.keyword in ("ENTRYPOINT", "CMD"):
                argv = ins.exec_form()
                if argv is None:
                    argv = ["/bin/sh", "-c", ins.value]
                if ins.keyword == "ENTRYPOINT":
                    state.entrypoint, state.cmd = argv, []  # a new ENTRYPOINT resets an inherited CMD
                else:
                    state.cmd = argv
            elif ins.keyword == "HEALTHCHECK":
                state.healthcheck = ins.value.strip().upper() != "NONE"
            elif ins.keyword in ("SHELL", "STOPSIGNAL", "VOLUME", "MAINTAINER"):
                raise ContainerfileError(f"line {ins.line}: {ins.keyword} is not emulated here")
            else:
                raise ContainerfileError(f"line {ins.line}: unknown instruction {ins.keyword}")
        built.append(state)
    return Image(state=built[-1], log=log)
