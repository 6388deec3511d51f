"""Read a pandapower JSON network without letting the file choose any code.

pandapower's own loader imports whatever module an object in the file names
(``"_module"``) and calls the class it names, so a file can run code on import or
fake a result. Here the JSON is parsed by the standard library and the network is
built by us: the document must be a ``pandapowerNet`` whose entries are pandas
DataFrames (in pandapower's ``split`` layout) or plain JSON values; any other object,
anywhere (also in JSON text nested in a table), is refused by name. Nothing in the
file is ever imported or called. The tables are then checked: integer element
indices and bus references, and finite electrical parameters, each error naming the
table, the element's index and the column.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd

from gridmatch.errors import InputError
from gridmatch.user_files import parse_json

# The only objects a network file may hold, by exact module and class.
NET_CLASS = ("pandapower.auxiliary", "pandapowerNet")
TABLE_CLASS = ("pandas.core.frame", "DataFrame")
# Deeper than any pandapower file nests (it needs 3); a bomb of nested brackets stops here.
MAX_DEPTH = 32
# Entries of the net kept as plain JSON values (everything else plain is ignored).
PLAIN_KEYS = frozenset({"name", "f_hz", "sn_mva", "std_types", "user_pf_options"})
_DTYPE_KINDS = frozenset("biufO")  # bool, ints, unsigned, floats, object
# pandas' nullable dtypes that pandapower writes (by name; nothing is looked up otherwise).
_EXTENSION_DTYPES = frozenset(
    {f"{kind}{bits}" for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)}
    | {"Float32", "Float64", "boolean", "string"}
)

# Columns a power flow reads that must be finite numbers, per element table.
FINITE_COLUMNS: dict[str, tuple[str, ...]] = {
    "bus": ("vn_kv",),
    "line": ("length_km", "r_ohm_per_km", "x_ohm_per_km", "c_nf_per_km", "max_i_ka", "parallel"),
    "trafo": (
        "sn_mva",
        "vn_hv_kv",
        "vn_lv_kv",
        "vk_percent",
        "vkr_percent",
        "pfe_kw",
        "i0_percent",
        "shift_degree",
    ),
    "trafo3w": ("sn_hv_mva", "sn_mv_mva", "sn_lv_mva", "vn_hv_kv", "vn_mv_kv", "vn_lv_kv"),
    "load": ("p_mw", "q_mvar", "scaling"),
    "sgen": ("p_mw", "q_mvar", "scaling"),
    "gen": ("p_mw", "vm_pu", "scaling"),
    "storage": ("p_mw", "q_mvar", "scaling"),
    "shunt": ("p_mw", "q_mvar"),
    "ext_grid": ("vm_pu", "va_degree"),
    "impedance": ("rft_pu", "xft_pu", "sn_mva"),
    "ward": ("ps_mw", "qs_mvar", "pz_mw", "qz_mvar"),
}
# Parameters that must be above zero: a zero or negative length, voltage, rating or
# current limit has no physical meaning, and the power flow divides by it (or, for a
# line's length, the distance graph refuses a negative weight).
POSITIVE_COLUMNS: dict[str, tuple[str, ...]] = {
    "bus": ("vn_kv",),
    "bus_dc": ("vn_kv",),
    "line": ("length_km", "max_i_ka", "df"),
    "line_dc": ("length_km", "max_i_ka", "df"),
    "trafo": ("sn_mva", "vn_hv_kv", "vn_lv_kv", "df"),
    "trafo3w": ("sn_hv_mva", "sn_mv_mva", "sn_lv_mva", "vn_hv_kv", "vn_mv_kv", "vn_lv_kv"),
    "impedance": ("sn_mva",),
    "shunt": ("vn_kv",),
    "ext_grid": ("vm_pu",),
    "gen": ("vm_pu",),
}
# A winding's short-circuit voltage (second) and its resistive part (first): the
# reactance is the square root of the difference of their squares, so the part cannot
# exceed the whole in magnitude, and a zero whole is no impedance at all (the power flow
# divides by it). Negative values occur in converted networks and are kept.
SHORT_CIRCUIT_VOLTAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "trafo": (("vkr_percent", "vk_percent"),),
    "trafo3w": tuple((f"vkr_{side}_percent", f"vk_{side}_percent") for side in ("hv", "mv", "lv")),
}
# Numbers of identical elements in parallel: the impedance is divided by it.
COUNT_COLUMNS: dict[str, tuple[str, ...]] = {
    "line": ("parallel",),
    "line_dc": ("parallel",),
    "trafo": ("parallel",),
}
# Columns that name a bus (or, for switches, an element): whole numbers.
REFERENCE_COLUMNS = (
    "bus",
    "from_bus",
    "to_bus",
    "hv_bus",
    "mv_bus",
    "lv_bus",
    "element",
)
# The table each bus column refers to, per element table (pandapower's names).
BUS_COLUMNS: dict[str, dict[str, str]] = {
    **{
        table: {"bus": "bus"}
        for table in [
            "load",
            "sgen",
            "gen",
            "ext_grid",
            "storage",
            "shunt",
            "ward",
            "xward",
            "motor",
            "asymmetric_load",
            "asymmetric_sgen",
            "svc",
            "ssc",
            "switch",
        ]
    },
    **{
        table: {"from_bus": "bus", "to_bus": "bus"}
        for table in ["line", "impedance", "dcline", "tcsc"]
    },
    "trafo": {"hv_bus": "bus", "lv_bus": "bus"},
    "trafo3w": {"hv_bus": "bus", "mv_bus": "bus", "lv_bus": "bus"},
    "line_dc": {"from_bus_dc": "bus_dc", "to_bus_dc": "bus_dc"},
    "load_dc": {"bus_dc": "bus_dc"},
    "source_dc": {"bus_dc": "bus_dc"},
    "vsc": {"bus": "bus", "bus_dc": "bus_dc"},
    **{
        table: {"bus": "bus", "bus_dc_plus": "bus_dc", "bus_dc_minus": "bus_dc"}
        for table in ("vsc_bipolar", "vsc_stacked")
    },
}
# Tables whose ``element`` column refers to a row of another table, named by the row's
# type column: switches by a code, measurements by the table's own name. Cost tables
# (poly_cost, pwl_cost) are left alone: only an optimal power flow reads them, and a
# cost left behind by a removed element is common and harmless here.
_MEASURED_TABLES = [
    "bus",
    "line",
    "trafo",
    "trafo3w",
    "load",
    "gen",
    "sgen",
    "shunt",
    "ward",
    "xward",
    "ext_grid",
]
ELEMENT_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    "switch": ("et", {"b": "bus", "l": "line", "t": "trafo", "t3": "trafo3w"}),
    "measurement": ("element_type", {name: name for name in _MEASURED_TABLES}),
}
# Tables other rows refer to by index.
REFERENCED_TABLES = frozenset(
    {target for columns in BUS_COLUMNS.values() for target in columns.values()}
    | {target for _, targets in ELEMENT_TYPES.values() for target in targets.values()}
)


def read_network_json(path: Path, text: str) -> pp.pandapowerNet:
    """Build the pandapower network stored as JSON ``text`` (read from ``path``).

    Raises
    ------
    InputError
        Not JSON, nested too deeply, an object that is not a pandapower network or a
        table, or a table whose indices, references or parameters are unusable.
    """
    document = parse_json(text, path, MAX_DEPTH)
    entries = _net_entries(path, document)
    net = pp.create_empty_network()
    for key, value in entries.items():
        if _is_object(value):
            net[key] = _table(path, key, value)
        elif key in PLAIN_KEYS:
            _refuse_objects(path, value, key)
            net[key] = value
    _convert_format(path, net, entries)
    for table, frame in _element_tables(net):
        _check_table(path, table, frame)
    # References last: every table's cells are whole numbers by now.
    for table, frame in _element_tables(net):
        _check_references(path, net, table, frame)
    return net


def _convert_format(path: Path, net: pp.pandapowerNet, entries: dict[str, Any]) -> None:
    """Bring a file of an older pandapower format to the current one, as pandapower does."""
    version, format_version = entries.get("version"), entries.get("format_version")
    if not isinstance(version, str) or not isinstance(format_version, str):
        return  # no version recorded: read as the current format
    from pandapower.convert_format import convert_format

    net.version, net.format_version = version, format_version
    try:
        convert_format(net)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(path, f"cannot bring format {format_version} up to date: {exc}") from None


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and ("_module" in value or "_class" in value)


def _refuse(path: Path, value: dict[str, Any], where: str) -> InputError:
    module, name = value.get("_module"), value.get("_class")
    return InputError(
        path,
        f"refusing to load: {where} names Python module '{module}' (class '{name}'); a "
        "network file may hold only pandapower tables and plain values",
    )


def _refuse_objects(path: Path, value: Any, where: str) -> None:
    """Refuse any object (``_module``/``_class``) inside a plain value."""
    for node in _walk(value):
        if _is_object(node):
            raise _refuse(path, node, where)


def _walk(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _net_entries(path: Path, document: Any) -> dict[str, Any]:
    if not isinstance(document, dict) or not _is_object(document):
        raise InputError(path, "not a pandapower network (expected a pandapowerNet object)")
    if (document.get("_module"), document.get("_class")) != NET_CLASS:
        raise _refuse(path, document, "the document")
    entries = document.get("_object")
    if isinstance(entries, str):  # very old files nest the net as JSON text
        entries = _nested_json(path, entries, "the network")
    if not isinstance(entries, dict):
        raise InputError(path, "not a pandapower network (its '_object' is not a mapping)")
    return entries


def _nested_json(path: Path, text: str, where: str) -> Any:
    try:
        return parse_json(text, path, MAX_DEPTH)
    except InputError as exc:
        raise InputError(path, f"{where}: {exc.message}") from None


def _table(path: Path, key: str, value: dict[str, Any]) -> pd.DataFrame:
    """Build one DataFrame from pandapower's ``split`` layout, refusing anything else."""
    if (value.get("_module"), value.get("_class")) != TABLE_CLASS:
        raise _refuse(path, value, f"table '{key}'")
    if value.get("orient", "split") != "split" or value.get("is_multiindex") not in (
        None,
        False,
        "False",
    ):
        raise InputError(path, f"table '{key}': only pandapower's split layout is read")
    body = value.get("_object")
    layout = _nested_json(path, body, f"table '{key}'") if isinstance(body, str) else body
    _refuse_objects(path, layout, f"table '{key}'")
    if not isinstance(layout, dict) or not {"columns", "index", "data"} <= layout.keys():
        raise InputError(path, f"table '{key}': expected columns, index and data")
    index = layout["index"]
    for label in index if isinstance(index, list) else [index]:
        if isinstance(label, bool) or not isinstance(label, int):
            raise InputError(
                path, f"table '{key}': index {label!r} is not a whole number", field=key
            )
    try:
        frame = pd.DataFrame(
            layout["data"], index=pd.Index(index, dtype=np.int64), columns=layout["columns"]
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(path, f"table '{key}': {exc}") from None
    return _with_dtypes(path, key, frame, value.get("dtype") or {})


def _with_dtypes(path: Path, key: str, frame: pd.DataFrame, dtypes: Any) -> pd.DataFrame:
    if not isinstance(dtypes, dict):
        raise InputError(path, f"table '{key}': 'dtype' is not a mapping")
    for column, name in dtypes.items():
        if column not in frame.columns:
            continue
        dtype = _dtype(path, key, column, name)
        if dtype.kind == "O":
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
            continue
        try:
            frame[column] = frame[column].astype(dtype)
        except (ValueError, TypeError, OverflowError):
            bad = _first_bad(frame[column], dtype)
            raise InputError(
                path,
                f"table '{key}', index {bad!r}: '{frame[column].loc[bad]}' is not {name}",
                field=f"{key}.{column}",
            ) from None
    return frame


def _dtype(path: Path, key: str, column: str, name: Any) -> Any:
    """Return a numpy dtype, or one of pandas' nullable dtypes, by its name."""
    text = str(name)
    if text in _EXTENSION_DTYPES:
        return pd.api.types.pandas_dtype(text)
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise InputError(path, f"table '{key}': unknown dtype '{text}'", field=column) from None
    if dtype.kind not in _DTYPE_KINDS:
        raise InputError(path, f"table '{key}': dtype '{text}' not allowed", field=column)
    return dtype


def _first_bad(column: Any, dtype: Any) -> Any:
    for index, value in column.items():
        try:
            np.array([value]).astype(dtype)
        except (ValueError, TypeError, OverflowError):
            return index
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return index
    return column.index[0]


def _element_tables(net: pp.pandapowerNet) -> Iterator[tuple[str, pd.DataFrame]]:
    for key in sorted(net.keys()):
        value = net[key]
        if isinstance(value, pd.DataFrame) and not key.startswith("res_") and len(value):
            yield key, value


def _check_table(path: Path, table: str, frame: pd.DataFrame) -> None:
    """Refuse repeated indices, fractional references and impossible parameters."""
    if table in REFERENCED_TABLES and frame.index.has_duplicates:
        # Two rows under one index make every reference to it ambiguous (groups, which
        # nothing refers to, repeat their index by design).
        index = frame.index[frame.index.duplicated()][0]
        raise InputError(path, f"table '{table}': index {index} appears twice", field=table)
    for column in (c for c in REFERENCE_COLUMNS if c in frame.columns):
        if frame[column].dtype.kind in "iu":
            continue
        for index, value in frame[column].items():
            if not _whole(value):
                raise InputError(
                    path,
                    f"table '{table}', index {index}: '{value}' is not a whole number",
                    field=f"{table}.{column}",
                )
    _check_parameters(path, table, frame)


def _check_parameters(path: Path, table: str, frame: pd.DataFrame) -> None:
    """Refuse the first row whose electrical parameters a power flow cannot use."""
    for column in (c for c in FINITE_COLUMNS.get(table, ()) if c in frame.columns):
        values = _numbers(frame, column)
        _refuse_first(path, table, frame, column, ~np.isfinite(values), "is not a finite number")
    for column in (c for c in POSITIVE_COLUMNS.get(table, ()) if c in frame.columns):
        # NaN compares false: a missing optional value is not refused here.
        bad = _numbers(frame, column) <= 0
        _refuse_first(path, table, frame, column, bad, "must be greater than zero")
    for column in (c for c in COUNT_COLUMNS.get(table, ()) if c in frame.columns):
        bad = _numbers(frame, column) < 1
        _refuse_first(path, table, frame, column, bad, "must be at least 1")
    for part, whole in SHORT_CIRCUIT_VOLTAGES.get(table, ()):
        if {part, whole} <= set(frame.columns):
            vk_percent = _numbers(frame, whole)
            _refuse_first(path, table, frame, whole, vk_percent == 0, "must not be zero")
            bad = np.abs(_numbers(frame, part)) > np.abs(vk_percent)
            _refuse_first(path, table, frame, part, bad, f"exceeds {whole} in magnitude")


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Return the column as floats, anything that is not a number as NaN."""
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _refuse_first(
    path: Path, table: str, frame: pd.DataFrame, column: str, bad: np.ndarray, rule: str
) -> None:
    """Raise for the first row ``bad`` marks, naming its index, the column and its value."""
    if bad.any():
        index = frame.index[int(np.argmax(bad))]
        raise InputError(
            path,
            f"table '{table}', index {index}: {column} '{frame[column].loc[index]}' {rule}",
            field=f"{table}.{column}",
        )


def _check_references(path: Path, net: pp.pandapowerNet, table: str, frame: pd.DataFrame) -> None:
    """Every bus (and switch or measurement element) a row names must exist in ``net``.

    Raises
    ------
    InputError
        For the first row naming a missing row of the table it refers to, or, for an
        ``element`` column, a type that is not one pandapower knows.
    """
    for column, target in BUS_COLUMNS.get(table, {}).items():
        if column in frame.columns:
            known = _indices(net, target)
            bad = ~frame[column].isin(known).to_numpy()
            _refuse_first(path, table, frame, column, bad, f"is not an index of table '{target}'")
    if table in ELEMENT_TYPES and "element" in frame.columns:
        _check_elements(path, net, table, frame)


def _check_elements(path: Path, net: pp.pandapowerNet, table: str, frame: pd.DataFrame) -> None:
    type_column, targets = ELEMENT_TYPES[table]
    if type_column not in frame.columns:
        raise InputError(path, f"table '{table}' has no column '{type_column}'", field=table)
    for index, kind, element in zip(frame.index, frame[type_column], frame["element"], strict=True):
        target = targets.get(kind) if isinstance(kind, str) else None
        if target is None:
            raise InputError(
                path,
                f"table '{table}', index {index}: {type_column} '{kind}' is not one of "
                f"{', '.join(targets)}",
                field=f"{table}.{type_column}",
            )
        if element not in _indices(net, target):
            raise InputError(
                path,
                f"table '{table}', index {index}: element '{element}' ({type_column} "
                f"'{kind}') is not an index of table '{target}'",
                field=f"{table}.element",
            )


def _indices(net: pp.pandapowerNet, table: str) -> pd.Index:
    """Return the element indices of ``table``, none if the net lacks it."""
    frame = net.get(table)
    return frame.index if isinstance(frame, pd.DataFrame) else pd.Index([], dtype=np.int64)


def _whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | np.integer):
        return True
    return isinstance(value, float) and value.is_integer()
