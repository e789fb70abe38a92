"""Opening a SQLite tracking store for the first time, one process at a time.

MLflow creates a new SQLite store's tables and runs its schema migrations when a client first opens it. Two processes
doing that at once (two ``ask`` commands on a fresh machine, ``ask`` beside ``ui``) break each other ("table
alembic_version already exists", "duplicate column name: step") and can leave the schema half-migrated, so the store
is opened under an exclusive lock on a file beside it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"


@contextlib.contextmanager
def first_open_lock(uri: str) -> Iterator[None]:
    """Hold ``<db>.lock`` while the body opens the store at ``uri`` (no-op for any other kind of store); creates the
    database's folder. Waits for another process that is creating the same store."""
    if not uri.startswith(SQLITE_PREFIX):
        yield
        return
    database = Path(uri.removeprefix(SQLITE_PREFIX).split("?", 1)[0])
    database.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(database.with_name(database.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def create_sqlite_store(uri: str) -> None:
    """Create a SQLite store's tables under the lock before a server process opens it (the server does not take the
    lock, so a fresh store is created here rather than there). No-op for any other kind of store."""
    if uri.startswith(SQLITE_PREFIX):
        from mlflow.tracking import MlflowClient

        with first_open_lock(uri):
            MlflowClient(tracking_uri=uri)  # opening the store creates and migrates its tables
