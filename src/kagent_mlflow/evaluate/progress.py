"""The rich progress bar of ``eval``: done/total, answers per second, elapsed and ETA, errors so far (stderr)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, *, enabled: bool) -> Iterator[Callable[[bool], None]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]asking"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        refresh_per_second=4,
    )
    errors = 0
    with progress:
        task = progress.add_task("asking", total=total, rate="-", errors=0)

        def advance(ok: bool) -> None:
            nonlocal errors
            errors += 0 if ok else 1
            speed = progress.tasks[0].speed
            progress.update(task, advance=1, errors=errors, rate=f"{speed:.1f} q/s" if speed else "-")

        yield advance
