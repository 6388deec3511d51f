"""Where the runs execute: in this process, in a local process pool, or on a Dask cluster.

Every executor yields one row per cell, in the order the runs finish, so the caller
can show progress; a run that cannot even report (its worker process died) becomes
an error row like any other failed run.

Why Dask and not Ray for more than one machine: Dask's wheels are pure Python, a
``distributed.LocalCluster`` starts inside this process in seconds, a real cluster is
one ``distributed.Client(address)`` away, and there are no raylet or object-store
daemons to install, size and keep alive. The runs need nothing from a cluster but
"call this function with these arguments somewhere", which both do equally well.
On a real cluster every worker needs gridmatch installed and must see the scenario
folders and the batch folder at the same paths (a shared file system).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from gridmatch.errors import ClusterError

# The run machinery (solvers, pandapower, pandas) is imported where it is used, so
# the CLI can name ExecutorKind in its signature without paying for it at start-up.
if TYPE_CHECKING:
    from gridmatch.batch.plan import RunCell
    from gridmatch.batch.table import Row
    from gridmatch.pipeline import RunSettings


class ExecutorError(ClusterError):
    """The executor itself cannot start (no Dask scheduler at the address, workers fail)."""


class ExecutorKind(StrEnum):
    """How ``gridmatch batch`` runs its cells."""

    LOCAL = "local"  # this machine: in-process for one job, a process pool for more
    DASK = "dask"  # a Dask cluster: a LocalCluster, or an existing scheduler


def run_serial(cells: Sequence[RunCell], settings: RunSettings) -> Iterator[Row]:
    """Run the cells one after another in this process."""
    from gridmatch.batch.runner import run_cell

    for cell in cells:
        yield run_cell(cell, settings)


def run_process_pool(cells: Sequence[RunCell], settings: RunSettings, jobs: int) -> Iterator[Row]:
    """Run the cells on ``jobs`` local worker processes.

    The workers are spawned, not forked: a fork would copy this process's threads'
    locks mid-use (Rich's progress refresh thread, a solver's thread pool).
    """
    from gridmatch.batch.runner import run_cell

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, min(jobs, len(cells))), mp_context=context)
    try:
        futures = {pool.submit(run_cell, cell, settings): cell for cell in cells}
        yield from _as_rows(futures, as_completed(futures))
    finally:
        # On an interrupt, runs not yet started are dropped; running ones finish
        # (each writes its folder atomically, so a restart skips them).
        pool.shutdown(wait=True, cancel_futures=True)


def run_dask(
    cells: Sequence[RunCell],
    settings: RunSettings,
    *,
    scheduler_address: str | None = None,
    workers: int = 1,
) -> Iterator[Row]:
    """Run the cells on a Dask cluster.

    Parameters
    ----------
    scheduler_address
        An existing scheduler (``tcp://host:8786``); ``None`` starts a
        ``distributed.LocalCluster`` of ``workers`` single-threaded worker
        processes here and closes it afterwards.
    workers
        Worker processes of the local cluster; ignored with ``scheduler_address``.

    Raises
    ------
    ExecutorError
        The local cluster does not start, or no scheduler answers at the address.
    """
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_as_completed

    from gridmatch.batch.runner import run_cell

    cluster: Any = None
    try:
        if scheduler_address is None:
            cluster = LocalCluster(
                n_workers=max(1, workers),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            scheduler_address = cluster.scheduler_address
        client = Client(scheduler_address)
    except (OSError, RuntimeError) as exc:
        if cluster is not None:
            cluster.close()
        where = scheduler_address or "a local cluster"
        raise ExecutorError(f"Dask: cannot start or reach {where}: {exc}") from exc
    try:
        # pure=False: the same cell submitted again (a rerun) must run again, not
        # return the scheduler's memory of the last result.
        futures = {client.submit(run_cell, cell, settings, pure=False): cell for cell in cells}
        yield from _as_rows(futures, dask_as_completed(list(futures)))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _as_rows(futures: dict[Any, RunCell], finished: Iterator[Any]) -> Iterator[Row]:
    # run_cell turns every run failure into a row; what is left is the worker itself
    # failing (killed, out of memory, unpicklable result), reported as that run's error.
    from gridmatch.batch.table import error_row

    for future in finished:
        cell = futures[future]
        try:
            row: Row = future.result()
        except Exception as exc:
            row = error_row(cell, type(exc).__name__, f"worker failed: {exc or repr(exc)}")
        yield row
