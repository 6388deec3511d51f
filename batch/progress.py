"""The batch's progress bar on stderr: done/total, ETA, and every failed run as it happens."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gridmatch.batch.table import STATUS_ERROR, Row


@contextmanager
def batch_progress(console: Console | None, total_runs: int) -> Iterator[Callable[[Row], None]]:
    """Yield a callback that advances a Rich progress bar by one finished run.

    Parameters
    ----------
    console
        Where to draw, normally ``Console(stderr=True)``; ``None`` draws nothing.
        Rich itself stops redrawing when the console is not a terminal.
    total_runs
        Runs in the batch.
    """
    if console is None:
        yield lambda row: None
        return
    progress = Progress(
        TextColumn("[bold]batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.description}", style="dim"),
        console=console,
    )
    task = progress.add_task("", total=total_runs, counts="")
    counts: Counter[str] = Counter()

    def advance(row: Row) -> None:
        label = f"{row['scenario']}/{row['formulation']}"
        if row["status"] == STATUS_ERROR:
            counts["failed"] += 1
            # Printed above the bar, so a failure is seen now, not after hours.
            progress.console.print(
                f"[bold red]error[/] {label}: {row['error']}", highlight=False, soft_wrap=True
            )
        elif row["skipped"]:
            counts["skipped"] += 1
        else:
            counts["run"] += 1
        text = ", ".join(f"{counts[k]} {k}" for k in ("run", "skipped", "failed") if counts[k])
        progress.update(task, advance=1, counts=text, description=label)

    with progress:
        yield advance
