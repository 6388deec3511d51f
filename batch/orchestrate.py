"""``gridmatch batch``: plan the matrix, run it on an executor with progress, write the table."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from rich.console import Console

from gridmatch.batch.executors import ExecutorKind, run_dask, run_process_pool, run_serial
from gridmatch.batch.plan import RunCell, plan_runs
from gridmatch.batch.progress import batch_progress
from gridmatch.batch.table import (
    STATUS_ERROR,
    Row,
    earlier_rows,
    rows_to_frame,
    write_table,
)
from gridmatch.errors import ExitCode, OutputFolderError, UsageError
from gridmatch.pipeline import RunSettings
from gridmatch.results_io.locks import acquire_writer_lock

BATCH_LOCK = ".batch.lock"


@dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` did.

    Attributes
    ----------
    table
        The long table (see :mod:`gridmatch.batch.table`), as written.
    parquet_path, csv_path
        Where it was written.
    wall_s
        Wall time of the whole batch, in seconds.
    threads
        Threads given to each run (``None``: each scenario's own setting).
    n_kept
        Rows of an earlier batch in the same folder that the written table keeps
        (other scenarios or formulations); ``table`` holds this batch's rows only.
    """

    table: pd.DataFrame
    parquet_path: Path
    csv_path: Path
    wall_s: float
    threads: int | None
    n_kept: int = 0

    @property
    def n_runs(self) -> int:
        """Cells in the batch."""
        return len(self.table)

    @property
    def n_skipped(self) -> int:
        """Runs found already done and re-read."""
        return int(self.table["skipped"].sum())

    @property
    def n_errors(self) -> int:
        """Runs that failed."""
        return int((self.table["status"] == STATUS_ERROR).sum())

    @property
    def only_input_errors(self) -> bool:
        """Every failed run failed on its input (so the CLI exits 2 rather than 3)."""
        failed = self.table.loc[self.table["status"] == STATUS_ERROR, "exit_code"]
        return bool((failed == ExitCode.INPUT).fillna(False).all())


def run_batch(
    scenario_dirs: Sequence[Path],
    formulations: Sequence[str],
    out_root: Path,
    settings: RunSettings | None = None,
    *,
    executor: ExecutorKind = ExecutorKind.LOCAL,
    jobs: int = 1,
    scheduler_address: str | None = None,
    console: Console | None = None,
) -> BatchResult:
    """Clear every scenario with every formulation and write one table of the results.

    Run ``(s, f)`` writes ``out_root/<s>/<f>/`` (as ``gridmatch clear`` does); the table
    goes to ``out_root/results.parquet`` and ``out_root/results.csv`` and keeps the rows
    of earlier batches in the folder for other scenarios or formulations (see
    :func:`~gridmatch.batch.table.earlier_rows`). One batch writes a folder at a time. A run whose
    folder already holds the same run (same inputs, formulation, options, versions)
    is not repeated, so an interrupted batch resumes where it stopped. A failed run
    becomes a row with ``status='error'`` and never stops the others.

    Parameters
    ----------
    scenario_dirs
        Scenario folders; one that is not a valid scenario gives error rows.
    formulations
        Formulation names, all checked before the first run.
    out_root
        The batch folder.
    settings
        Time limit, gap, threads and seed for every run (``None`` fields fall back to
        each scenario's file); ``formulation`` must be ``None``. When runs execute in
        parallel (``jobs > 1`` or Dask) ``threads`` is forced to 1, so parallel runs
        do not oversubscribe the cores with their own worker processes; the manifest
        and the table record the ``threads`` each run used.
    executor
        ``local``: in this process for ``jobs == 1``, else a pool of ``jobs``
        processes. ``dask``: a Dask cluster (see :mod:`gridmatch.batch.executors`).
    jobs
        Runs at once on this machine (local pool, or the workers of a Dask
        ``LocalCluster`` started here).
    scheduler_address
        With ``dask``, an existing scheduler to use instead of a local cluster.
    console
        Where to draw the progress bar (normally stderr); ``None`` for none.

    Notes
    -----
    Local worker processes are spawned, so a script calling this with ``jobs > 1``
    must do so under ``if __name__ == "__main__":`` (as any multiprocessing code);
    otherwise every worker fails and each run reports ``BrokenProcessPool``.

    Raises
    ------
    gridmatch.matching.backends.registry.UnknownFormulationError
        Before any run, for a formulation name that is not registered.
    gridmatch.batch.plan.PlanError
        Before any run, for duplicate or missing scenarios or formulations.
    ValueError
        For inconsistent arguments.
    gridmatch.batch.executors.ExecutorError
        The Dask cluster cannot be started or reached (before any run).
    gridmatch.results_io.atomic.OutputFolderError
        Another batch is writing ``out_root`` (before any run).
    gridmatch.errors.InputError
        The table an earlier batch left in ``out_root`` cannot be read (before any run).
    """
    settings = settings or RunSettings()
    if settings.formulation is not None:
        raise UsageError("the batch's formulations are its matrix: leave settings.formulation")
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, got {jobs}")
    if scheduler_address is not None and executor is not ExecutorKind.DASK:
        raise UsageError("a scheduler address needs the dask executor")
    if out_root.exists() and not out_root.is_dir():
        raise OutputFolderError(f"{out_root}: exists and is not a folder")
    cells = plan_runs(scenario_dirs, formulations, out_root)
    if executor is ExecutorKind.DASK or jobs > 1:
        settings = replace(settings, threads=1)

    start = time.perf_counter()
    rows: list[Row] = []
    with closing(acquire_writer_lock(out_root / BATCH_LOCK, "this batch folder")):
        kept = earlier_rows(out_root, [(c.scenario, c.formulation) for c in cells])
        with batch_progress(console, len(cells)) as advance:
            for row in _execute(cells, settings, executor, jobs, scheduler_address):
                rows.append(row)
                advance(row)
        parquet_path, csv_path = write_table(rows_to_frame([*kept, *rows]), out_root)
    return BatchResult(
        rows_to_frame(rows),
        parquet_path,
        csv_path,
        time.perf_counter() - start,
        settings.threads,
        n_kept=len(kept),
    )


def _execute(
    cells: Sequence[RunCell],
    settings: RunSettings,
    executor: ExecutorKind,
    jobs: int,
    scheduler_address: str | None,
) -> Iterator[Row]:
    if executor is ExecutorKind.DASK:
        return run_dask(cells, settings, scheduler_address=scheduler_address, workers=jobs)
    if jobs > 1:
        return run_process_pool(cells, settings, jobs)
    return run_serial(cells, settings)
