"""Write a whole output folder or nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gridmatch.errors import OutputFolderError

__all__ = ["MARKER", "OutputFolderError", "add_to_result", "atomic_output_dir"]

# Lists what a run wrote. A folder is ours to replace only if it holds this marker
# and nothing that is not listed in it: a user's own files are never deleted.
MARKER = ".gridmatch-result"


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
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputFolderError(f"{out_dir}: exists and is not a folder")
        _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield staging
        written = sorted(p.name for p in staging.iterdir())
        (staging / MARKER).write_text("\n".join(written) + "\n", encoding="utf-8")
        if out_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            out_dir.rename(retired / out_dir.name)
            staging.rename(out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


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


def add_to_result(out_dir: Path, name: str) -> None:
    """List a file written later into a result folder (a report) in its marker.

    A folder is replaced only if the marker lists everything in it, so an unlisted file
    would make the next run into this folder refuse. Call it before writing the file,
    so the marker never misses a file that exists. A folder without a marker is left
    alone (it is not a gridmatch result).
    """
    marker = out_dir / MARKER
    if not marker.is_file():
        return
    names = marker.read_text(encoding="utf-8").split()
    if name not in names:
        write_file_atomically(marker, "\n".join(sorted([*names, name])) + "\n")
