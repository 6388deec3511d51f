"""Reading the output folders of the commands beside ``clear`` (prepaid, validation, mobility).

One rule for all of them: a missing file says which command's folder was expected, a file
is read through :mod:`gridmatch.user_files` with its size limit, and summary.json is
validated into the command's own model, naming the first bad field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pydantic

from gridmatch.errors import InputError
from gridmatch.results_io.layout import SUMMARY_FILE
from gridmatch.user_files import (
    RECORD_LIMIT_BYTES,
    TABLE_LIMIT_BYTES,
    parse_json,
    read_text,
    validated,
)

_Model = TypeVar("_Model", bound=pydantic.BaseModel)


def read_output_file(path: Path, command: str, limit_bytes: int = TABLE_LIMIT_BYTES) -> str:
    """Read a file of an output folder of ``gridmatch <command>``.

    Raises
    ------
    InputError
        Missing (naming the command whose folder it should be), too large, or not UTF-8.
    """
    if not path.exists():
        raise InputError(
            path, f"file not found; is this an output folder of `gridmatch {command}`?"
        )
    return read_text(path, limit_bytes)


def read_output_summary(folder: Path, model: type[_Model], command: str, what: str) -> _Model:
    """Read ``folder/summary.json`` of ``gridmatch <command>`` into ``model``.

    Raises
    ------
    InputError
        Missing, larger than a record may be, not JSON, or not ``what`` (naming the field).
    """
    path = folder / SUMMARY_FILE
    document = parse_json(read_output_file(path, command, RECORD_LIMIT_BYTES), path)
    return validated(model, document, path, what)
