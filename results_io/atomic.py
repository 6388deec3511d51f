"""Write a whole output folder or nothing, and never a file gridmatch did not write.

A result folder is replaced atomically (a staging folder renamed into place); a file
written into a folder gridmatch shares with others (a batch table, plots, a report) is
claimed first: it may be replaced only if gridmatch wrote it, as listed in the folder's
marker. A staging folder left by a killed run carries its process id and is removed
by the next run into the same place, once that process is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gridmatch.errors import OutputFolderError
from gridmatch.results_io.layout import SETTLEMENT_DIR

__all__ = ["MARKER", "OWNED", "OutputFolderError", "atomic_output_dir", "claim_file", "recover"]

# Lists what a run wrote. A folder is ours to replace only if it holds this marker
# and nothing that is not listed in it: a user's own files are never deleted.
MARKER = ".gridmatch-result"
# Lists the files gridmatch wrote into a folder that is not a result folder.
OWNED = ".gridmatch-files"
# Inside a staging folder: the process id of the run writing it.
_STAGING = ".gridmatch-staging"


@contextmanager
def atomic_output_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a staging folder that replaces ``out_dir`` only if the block succeeds.

    The staging folder sits next to ``out_dir`` (same file system, so the final
    rename is atomic). If the block raises, the staging folder is removed and
    ``out_dir`` is left exactly as it was.

    Raises
    ------
    OutputFolderError
        If ``out_dir`` exists, is not empty, and was not written by gridmatch.
    """
    out_dir = out_dir.resolve()
    recover(out_dir)
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise OutputFolderError(f"{out_dir}: exists and is not a folder")
        _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(out_dir, "")
    try:
        yield staging
        (staging / _STAGING).unlink()
        written = sorted(p.name for p in staging.iterdir())
        (staging / MARKER).write_text("\n".join(written) + "\n", encoding="utf-8")
        if out_dir.exists():
            retired = _staging_dir(out_dir, "old.")
            out_dir.rename(retired / out_dir.name)
            staging.rename(out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _staging_dir(out_dir: Path, kind: str) -> Path:
    """Make a new folder beside ``out_dir`` that says which process made it."""
    folder = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{kind}", dir=out_dir.parent))
    (folder / _STAGING).write_text(str(os.getpid()), encoding="utf-8")
    return folder


def recover(out_dir: Path) -> None:
    """Remove the staging folders of killed runs into ``out_dir`` (their process is gone).

    A run killed between its two renames left the previous result in a retired folder
    and nothing at ``out_dir``: that result is put back. Runs call this first, so even
    a run that then fails on its input leaves the folder as the last good run left it.
    """
    out_dir = out_dir.resolve()
    if not out_dir.parent.is_dir():
        return
    for folder in out_dir.parent.glob(f".{out_dir.name}.*"):
        pid_file = folder / _STAGING
        if not folder.is_dir() or folder.is_symlink() or not pid_file.is_file():
            continue
        try:
            pid = int(pid_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if _alive(pid):
            continue
        previous = folder / out_dir.name
        retired = folder.name.startswith(f".{out_dir.name}.old.")
        if retired and previous.is_dir() and not out_dir.exists():
            previous.rename(out_dir)
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _check_replaceable(out_dir: Path) -> None:
    present = {p.name for p in out_dir.iterdir()}
    if not present:
        return
    marker = out_dir / MARKER
    if not marker.is_file():
        raise OutputFolderError(
            f"{out_dir}: folder is not empty and holds no gridmatch result; "
            "refusing to overwrite it"
        )
    ours = set(marker.read_text(encoding="utf-8").split()) | {MARKER}
    foreign = sorted(present - ours)
    if SETTLEMENT_DIR in foreign and (out_dir / SETTLEMENT_DIR).is_dir():
        raise OutputFolderError(
            f"{out_dir}: holds a settlement deployment ({SETTLEMENT_DIR}/, with its keys and "
            "chain state) that a new result would discard: write to another folder, or move "
            f"{SETTLEMENT_DIR}/ away first"
        )
    if foreign:
        raise OutputFolderError(
            f"{out_dir}: holds files gridmatch did not write ({', '.join(foreign[:3])}); "
            "refusing to overwrite it"
        )


def write_file_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: readers see the old file or the new."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the file from others
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def claim_file(path: Path) -> None:
    """Make sure gridmatch may write ``path``, and list it in its folder's marker.

    The folder's marker is the result folder's (:data:`MARKER`) if it has one, else
    :data:`OWNED`. A file that exists but is not listed there is someone else's, and a
    folder or link in its place is never replaced. Call it before writing the file, so
    a marker never misses a file that exists.

    Raises
    ------
    OutputFolderError
        The folder is a file, or ``path`` exists and gridmatch did not write it.
    """
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / (MARKER if (folder / MARKER).is_file() else OWNED)
    names = marker.read_text(encoding="utf-8").split() if marker.is_file() else []
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_file():
            raise OutputFolderError(f"{path}: exists and is not a regular file; not replacing it")
        if path.name not in names:
            raise OutputFolderError(
                f"{path}: exists and was not written by gridmatch; refusing to overwrite it"
            )
    if path.name not in names:
        write_file_atomically(marker, "\n".join(sorted([*names, path.name])) + "\n")
