"""Progress bars, drawn here and nowhere else: library functions report progress through an
`on_progress(done, total)` callback, and `progress_bar` yields one that moves a rich bar on stderr."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn

from digest.pipeline import OnProgress


@contextmanager
def progress_bar(console: Console, label: str, unit: str | None = None, enabled: bool = True) -> Iterator[OnProgress]:
    """A bar labelled `label` while the block runs, gone when it ends; with `unit` ("papers") it also shows the
    rate (papers/s) and the time left. Yields the callback to hand to the library function."""
    columns: list[ProgressColumn] = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns += [TextColumn(f"{{task.fields[rate]}} {unit}/s"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True, disable=not enabled) as bar:
        task = bar.add_task(label, total=None, rate="-")
        started = time.monotonic()

        def update(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{rate:.1f}")

        yield update
