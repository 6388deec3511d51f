"""Files the settlement commands write on a user's behalf (meter files, statements)."""

from __future__ import annotations

from pathlib import Path

from gridmatch.errors import OutputFolderError
from gridmatch.results_io.atomic import MARKER, claim_file
from gridmatch.results_io.layout import SETTLEMENT_DIR


def claim_output(path: Path) -> None:
    """Refuse to write into a result folder itself, or over a file gridmatch did not write.

    Raises
    ------
    OutputFolderError
        ``path`` lies in a result folder, or exists and is not gridmatch's.
    """
    if (path.parent / MARKER).is_file():
        raise OutputFolderError(
            f"{path}: inside a result folder; write it elsewhere (e.g. its {SETTLEMENT_DIR}/)"
        )
    claim_file(path)
