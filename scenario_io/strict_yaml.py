"""Read a small YAML settings file strictly: safe loader, no key given twice, bounded.

The same rules as ``scenario.yaml`` (see :mod:`gridmatch.scenario_io.loader`), for the
settings files that do not need pandapower to be imported: plain YAML lets the last of
two equal keys win silently, so a second ``friendly_credit:`` at the end of a file would
change a policy nobody sees; here it is an error naming the line.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pydantic
import yaml

from gridmatch.errors import InputError
from gridmatch.scenario_io.csv_cells import shown
from gridmatch.user_files import MAX_NESTING, SCENARIO_LIMIT_BYTES, nesting_depth, read_text

_Model = TypeVar("_Model", bound=pydantic.BaseModel)


def _iso_time(value: object) -> object:
    # pydantic's lax datetime reads a number (or a string of digits) as Unix seconds:
    # 'start: 1767225600' would pass for a time nobody wrote as one.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            # RFC 3339 allows 't' and 'z' in lower case; Python reads upper case only.
            return datetime.fromisoformat(value.upper())
        except ValueError:
            raise ValueError(f"'{value}' is not an ISO-8601 time") from None
    if isinstance(value, date):
        raise ValueError(f"{value} is a date; give a time with its UTC offset (e.g. ...T00:00Z)")
    raise ValueError("expected an ISO-8601 time with a UTC offset (e.g. 2026-01-01T00:00:00Z)")


# A time in a settings file: a YAML timestamp or an ISO-8601 string, never a number.
IsoTime = Annotated[datetime, pydantic.BeforeValidator(_iso_time)]


# The numbers a settings file may write: YAML 1.1's decimal forms, without digit
# separators or leading zeros (which YAML 1.1 reads as octal).
_DECIMAL = re.compile(
    r"[-+]?(?:0|[1-9][0-9]*)"
    r"|[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice, odd numbers and impossible times.

    YAML 1.1, which PyYAML reads, turns an unquoted ``2026-02-30`` into a date it cannot
    build and raises a bare ``ValueError`` (which ended a command as a bug, exit code 6),
    and reads ``0x10`` as 16, ``010`` as 8, ``1:30`` (base 60) as 90 and ``1_0`` as 10:
    a typo became another number nobody wrote. Both are errors naming the line here;
    numbers are plain decimals (``13.5``, ``-2``, ``1.0e3``), or given an explicit tag.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a repeated key (with the line it was first on)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' is given twice (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_strict_timestamp(self, node: yaml.ScalarNode) -> object:
        """Build a YAML timestamp, or refuse one that does not exist with its line."""
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError as exc:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a date or time that does not exist ('{shown(str(node.value))}': {exc})",
                node.start_mark,
            ) from None

    def construct_strict_int(self, node: yaml.ScalarNode) -> object:
        """Build an integer written in plain decimals (or with an explicit tag)."""
        self._refuse_odd_number(node, self.construct_yaml_int(node))
        return self.construct_yaml_int(node)

    def construct_strict_float(self, node: yaml.ScalarNode) -> object:
        """Build a float written in plain decimals (or with an explicit tag)."""
        self._refuse_odd_number(node, self.construct_yaml_float(node))
        return self.construct_yaml_float(node)

    @staticmethod
    def _refuse_odd_number(node: yaml.ScalarNode, number: object) -> None:
        # A plain scalar resolved to a number; a quoted one with a tag was asked for.
        if node.style is None and _DECIMAL.fullmatch(str(node.value)) is None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"'{shown(str(node.value))}' is read by YAML as the number {number!r}: "
                "write numbers in plain decimals (or quote text)",
                node.start_mark,
            )


StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", StrictLoader.construct_strict_timestamp)
StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_strict_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_strict_float)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """Parse a YAML file of at most 1 MiB whose top level is a mapping.

    Raises
    ------
    InputError
        Not a regular UTF-8 file, malformed YAML (a key given twice included, with its
        line), or not a mapping.
    """
    text = read_text(path, SCENARIO_LIMIT_BYTES, what)
    if nesting_depth(text, skip_strings=False) > MAX_NESTING:
        raise InputError(path, f"malformed YAML: brackets nested more than {MAX_NESTING} deep")
    try:
        document = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, f"malformed YAML: {problem}", row=row) from None
    except RecursionError:
        raise InputError(path, "malformed YAML: nested too deeply") from None
    if not isinstance(document, dict):
        raise InputError(path, f"expected a mapping of keys (the {what})")
    return document


def validated_model(model: type[_Model], document: dict[str, Any], path: Path) -> _Model:
    """Validate a parsed document into ``model``, naming the first bad key.

    Raises
    ------
    InputError
        With ``field`` the dotted key (``tariff.bands.1.hours``), "unknown key" for a key
        the schema does not have, "required key is missing" for one it needs.
    """
    try:
        return model.model_validate(document)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "required key is missing"
        more = exc.error_count() - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise InputError(path, message, field=field) from None
