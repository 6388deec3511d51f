"""Open a file a user pointed us at, safely: regular files only, bounded, named in errors.

Every file gridmatch reads on a user's behalf (scenario files, networks, meter and
trade files, deployment records, ledgers' neighbours) goes through :func:`read_text`:

* only a regular file is opened (a FIFO would block forever, a device never end, a
  folder is a mistake), checked again on the open descriptor so a file swapped for a
  FIFO between check and open is refused too;
* a file larger than the limit is refused before it is read (no memory runs out);
* bytes that are not UTF-8 (a UTF-16 export, a binary) are refused naming the file;
* a path holding a NUL character is refused instead of crashing the OS call.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pydantic

from gridmatch.errors import InputError

MIB = 1024 * 1024
# Limits per kind of file: far above any real one, far below what exhausts memory.
SCENARIO_LIMIT_BYTES = 1 * MIB
TABLE_LIMIT_BYTES = 512 * MIB
NETWORK_LIMIT_BYTES = 256 * MIB
RECORD_LIMIT_BYTES = 256 * MIB
# JSON and YAML nest at most this deep here (pandapower files need 3 levels).
MAX_NESTING = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# A number cell in ASCII digits: Python's float() and int() also take '5_0' (as 50) and
# other scripts' digits ('\uff15' as 5), which in a CSV cell are typing errors.
_FLOAT = re.compile(
    r"[ \t]*[+-]?"
    r"(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))"
    r"[ \t]*"
)
_INT = re.compile(r"[ \t]*[+-]?[0-9]+[ \t]*")
_CHUNK = 1 << 20


def check_path(path: Path) -> None:
    """Refuse a path the operating system cannot take (a NUL character in it).

    Raises
    ------
    InputError
        Naming the path with the NUL shown as an escape.
    """
    if "\x00" in str(path):
        raise InputError(str(path).replace("\x00", "\\x00"), "holds a NUL character")


def parse_float(text: str) -> float:
    """Read a decimal number written in ASCII (``1.5``, ``-2e3``, ``inf``, ``nan``).

    Parameters
    ----------
    text
        A cell's text; spaces and tabs around it are allowed.

    Returns
    -------
    float
        Its value, as ``float`` reads it.

    Raises
    ------
    ValueError
        Anything else, digit separators and non-ASCII digits included.
    """
    if _FLOAT.fullmatch(text) is None:
        raise ValueError(f"could not convert string to float: {text!r}")
    return float(text)


def parse_int(text: str) -> int:
    """Read a whole number written in ASCII digits (``42``, ``-7``).

    Parameters
    ----------
    text
        A cell's text; spaces and tabs around it are allowed.

    Returns
    -------
    int
        Its value.

    Raises
    ------
    ValueError
        Anything else, digit separators and non-ASCII digits included.
    """
    if _INT.fullmatch(text) is None:
        raise ValueError(f"invalid literal for int(): {text!r}")
    return int(text)


def is_given(path: Path) -> bool:
    """Whether an optional file is there to be read, a broken link included.

    A link whose target is gone is a file the user meant to give: reading it then fails
    naming it, instead of the folder running as if the file were absent.
    """
    return path.exists() or path.is_symlink()


def read_bytes(path: Path, limit_bytes: int, what: str = "file") -> bytes:
    """Read a regular file of at most ``limit_bytes``.

    Raises
    ------
    InputError
        Missing, not a regular file, too large, or unreadable.
    """
    check_path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise InputError(path, f"cannot be read: it is a folder, not the {what}") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(path, f"cannot be read: it is a folder, not the {what}")
        raise InputError(
            path, "cannot be read: not a regular file (a FIFO, device or socket is never read)"
        )
    with os.fdopen(descriptor, "rb") as handle:
        if info.st_size > limit_bytes:
            raise InputError(
                path,
                f"is {info.st_size / MIB:.1f} MiB; the {what} may have at most "
                f"{limit_bytes / MIB:.0f} MiB",
            )
        try:
            data = handle.read(limit_bytes + 1)
        except OSError as exc:
            raise InputError(path, f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit_bytes:  # it grew while we read
        raise InputError(path, f"the {what} may have at most {limit_bytes / MIB:.0f} MiB")
    return data


def read_text(path: Path, limit_bytes: int, what: str = "file", *, bom: bool = False) -> str:
    """Read a regular UTF-8 text file of at most ``limit_bytes``.

    Parameters
    ----------
    bom
        Accept (and drop) a UTF-8 byte order mark, as spreadsheet exports write one.

    Raises
    ------
    InputError
        As :func:`read_bytes`, or not UTF-8 text.
    """
    data = read_bytes(path, limit_bytes, what)
    try:
        return data.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        hint = " (UTF-16? save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise InputError(path, f"not UTF-8 text ({exc.reason}){hint}") from None


def nesting_depth(text: str, *, skip_strings: bool = True) -> int:
    """Deepest nesting of ``[``/``{`` in ``text``, computed without parsing it.

    The standard library's JSON decoder recurses in C and can overflow the stack (a
    segmentation fault, not an exception) on a bomb of nested brackets when a library
    has raised Python's recursion limit: depth is measured first, in chunks, in C.

    Parameters
    ----------
    skip_strings
        Leave JSON string literals out (brackets in text do not nest anything).
    """
    if skip_strings:
        text = _JSON_STRING.sub('""', text)
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, data.size, _CHUNK):
        chunk = data[start : start + _CHUNK]
        steps = np.zeros(chunk.size, dtype=np.int32)
        steps[(chunk == ord("[")) | (chunk == ord("{"))] = 1
        steps[(chunk == ord("]")) | (chunk == ord("}"))] = -1
        running = depth + np.cumsum(steps)
        if running.size:
            deepest = max(deepest, int(running.max()))
            depth = int(running[-1])
    return deepest


def parse_json(text: str, path: Path | str, max_depth: int = MAX_NESTING) -> Any:
    """Parse JSON a user (or a file on disk) gave us, its nesting checked first.

    Raises
    ------
    InputError
        Nested deeper than ``max_depth``, or not valid JSON (with its line).
    """
    if nesting_depth(text) > max_depth:
        raise InputError(path, f"nested more than {max_depth} levels deep")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc.msg}", row=exc.lineno) from None
    except RecursionError:
        raise InputError(path, f"nested more than {max_depth} levels deep") from None


_Model = TypeVar("_Model", bound=pydantic.BaseModel)


def validated(model: type[_Model], document: Any, path: Path, what: str = "") -> _Model:
    """Validate a parsed JSON document into ``model``, naming the first bad field.

    Raises
    ------
    InputError
        The document does not fit ``model`` (``what`` says what the file should be).
    """
    try:
        return model.model_validate(document)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = "required key is missing" if first["type"] == "missing" else first["msg"]
        raise InputError(
            path, f"not a {what}: {message}" if what else message, field=field
        ) from None
