"""File primitives shared by the two on-disk journals (the interaction spool and the Agent Server's trace spill)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def try_lock(path: Path, flags: int = os.O_RDWR) -> int | None:
    """Open and exclusively lock ``path``; None when another process holds it or it vanished."""
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The file may have been deleted (fully delivered) between our open and our lock.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileNotFoundError(path)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    return fd
