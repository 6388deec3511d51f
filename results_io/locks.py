"""One writer at a time for an output folder that several runs may add to."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

from gridmatch.errors import OutputFolderError


def acquire_writer_lock(lock_path: Path, what: str) -> IO[bytes]:
    """Take an exclusive lock, held until the returned file is closed.

    The lock is advisory (``flock``) on a side file, and never waits: a second writer
    is told at once instead of blocking behind a day-long run. The kernel drops the
    lock when the holder exits, so a killed run never leaves a stale one.

    Parameters
    ----------
    lock_path
        The lock file (created if missing, never removed).
    what
        What is locked, for the error message ("this ledger", "this batch folder").

    Raises
    ------
    gridmatch.errors.OutputFolderError
        If another process holds the lock.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path.open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise OutputFolderError(
            f"{lock_path.parent}: another gridmatch process is writing {what}; "
            "wait for it to finish"
        ) from None
    return lock
