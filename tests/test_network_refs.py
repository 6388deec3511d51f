"""A network file naming missing buses or impossible parameters is refused on load.

Each case writes one small pandapower network with :func:`pandapower.to_json`, changes
one cell of one table, and expects an :class:`InputError` naming ``network.json``, the
table's column (``field``) and the element's index (JSON has no file rows: ``row`` is
None). The network also holds values real networks have (a line without resistance, a
negative load, a transformer with a negative short-circuit voltage, out-of-service
elements, a cost of a missing generator): every table is checked before any reference
is, so each reference case shows they are kept.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import pandapower as pp
import pytest
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import InputError
from gridmatch.scenario_io.network_json import read_network_json

ORDERS = (
    "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh\n"
    "s1,pv1,sell,3,0,2,0.08\n"
    "b1,h1,buy,4,0,2,0.30\n"
)


def _network() -> pp.pandapowerNet:
    """A 20/0.4 kV feeder with one element of (nearly) every table that names a bus."""
    net = pp.create_empty_network()
    hv, mv, lv = (pp.create_bus(net, vn_kv) for vn_kv in (110.0, 20.0, 10.0))
    feeder = [pp.create_bus(net, 0.4) for _ in range(3)]
    pp.create_ext_grid(net, hv)
    pp.create_transformer3w(net, hv, mv, lv, std_type="63/25/38 MVA 110/20/10 kV")
    pp.create_transformer(net, mv, feeder[0], std_type="0.25 MVA 20/0.4 kV")
    # A second transformer, out of service, with the negative short-circuit voltage some
    # converted networks have.
    pp.create_transformer_from_parameters(
        net, mv, feeder[0], 0.25, 20.0, 0.4, 0.5, -4.0, 0.0, 0.0, in_service=False
    )
    for from_bus, to_bus in pairwise(feeder):
        pp.create_line(net, from_bus, to_bus, 0.1, std_type="NAYY 4x50 SE")
    net.line.loc[1, "r_ohm_per_km"] = 0.0
    pp.create_load(net, feeder[2], p_mw=-0.002)  # a negative load: a small generator
    pp.create_sgen(net, feeder[1], p_mw=0.003)
    pp.create_gen(net, lv, p_mw=0.1, in_service=False)
    pp.create_storage(net, feeder[1], p_mw=0.0, max_e_mwh=0.01)
    pp.create_shunt(net, lv, q_mvar=0.01)
    pp.create_ward(net, lv, 0.0, 0.0, 0.0, 0.0)
    pp.create_xward(net, lv, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 1.0, in_service=False)
    pp.create_impedance(net, mv, lv, 0.01, 0.01, 1.0, in_service=False)
    pp.create_dcline(net, mv, lv, 0.0, 0.0, 0.0, 1.0, 1.0, in_service=False)
    pp.create_motor(net, feeder[2], 0.001, 0.9)
    pp.create_asymmetric_load(net, feeder[2], p_a_mw=0.001)
    pp.create_asymmetric_sgen(net, feeder[1], p_a_mw=0.001)
    pp.create_switch(net, feeder[0], feeder[1], et="b", closed=False)
    pp.create_switch(net, feeder[1], 0, et="l")
    pp.create_switch(net, mv, 0, et="t")
    pp.create_switch(net, mv, 0, et="t3")
    pp.create_measurement(net, "p", "line", 0.001, 0.0001, 1, side="from")
    # A cost of an element that no longer exists: only an OPF reads costs, so it is kept.
    pp.create_poly_cost(net, 0, "sgen", cp1_eur_per_mw=10.0)
    pp.create_poly_cost(net, 7, "gen", cp1_eur_per_mw=10.0)
    return net


def _write(folder: Path, table: str, index: int, column: str, value: Any) -> Path:
    """Save the network as ``folder/network.json`` with one cell of ``table`` changed."""
    document = json.loads(pp.to_json(_network()))
    entry = document["_object"][table]
    layout = json.loads(entry["_object"])
    row = layout["index"].index(index)
    if column == "index":  # the row takes the index of the row before it
        layout["index"][row] = value
    else:
        layout["data"][row][layout["columns"].index(column)] = value
    entry["_object"] = json.dumps(layout)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "network.json"
    path.write_text(json.dumps(document))
    return path


MISSING = 999
# (table, element index, column, new value, field the error names).
BAD_REFERENCES = [
    ("line", 1, "from_bus", MISSING, "line.from_bus"),
    ("line", 0, "to_bus", MISSING, "line.to_bus"),
    ("load", 0, "bus", MISSING, "load.bus"),
    ("sgen", 0, "bus", MISSING, "sgen.bus"),
    ("ext_grid", 0, "bus", MISSING, "ext_grid.bus"),
    ("gen", 0, "bus", MISSING, "gen.bus"),
    ("storage", 0, "bus", MISSING, "storage.bus"),
    ("shunt", 0, "bus", MISSING, "shunt.bus"),
    ("ward", 0, "bus", MISSING, "ward.bus"),
    ("xward", 0, "bus", MISSING, "xward.bus"),
    ("motor", 0, "bus", MISSING, "motor.bus"),
    ("asymmetric_load", 0, "bus", MISSING, "asymmetric_load.bus"),
    ("asymmetric_sgen", 0, "bus", MISSING, "asymmetric_sgen.bus"),
    ("trafo", 1, "hv_bus", MISSING, "trafo.hv_bus"),
    ("trafo", 0, "lv_bus", MISSING, "trafo.lv_bus"),
    ("trafo3w", 0, "hv_bus", MISSING, "trafo3w.hv_bus"),
    ("trafo3w", 0, "mv_bus", MISSING, "trafo3w.mv_bus"),
    ("trafo3w", 0, "lv_bus", MISSING, "trafo3w.lv_bus"),
    ("impedance", 0, "to_bus", MISSING, "impedance.to_bus"),
    ("dcline", 0, "from_bus", MISSING, "dcline.from_bus"),
    ("switch", 2, "bus", MISSING, "switch.bus"),
    ("switch", 0, "element", MISSING, "switch.element"),  # et 'b': a bus
    ("switch", 1, "element", MISSING, "switch.element"),  # et 'l': a line
    ("switch", 2, "element", 2, "switch.element"),  # et 't': two transformers, 0 and 1
    ("switch", 3, "element", 1, "switch.element"),  # et 't3': one, 0
    ("switch", 1, "et", "x", "switch.et"),
    ("measurement", 0, "element", MISSING, "measurement.element"),
]
IMPOSSIBLE_VALUES = [
    ("line", 1, "length_km", 0.0, "line.length_km"),
    ("line", 0, "length_km", -1.0, "line.length_km"),
    ("line", 1, "parallel", 0, "line.parallel"),
    ("line", 0, "max_i_ka", 0.0, "line.max_i_ka"),
    ("line", 1, "df", 0.0, "line.df"),
    ("bus", 4, "vn_kv", 0.0, "bus.vn_kv"),
    ("bus", 1, "vn_kv", -20.0, "bus.vn_kv"),
    ("bus", 2, "index", 1, "bus"),
    ("trafo", 0, "sn_mva", 0.0, "trafo.sn_mva"),
    ("trafo", 1, "sn_mva", -0.25, "trafo.sn_mva"),  # out of service: checked all the same
    ("trafo", 0, "vn_hv_kv", 0.0, "trafo.vn_hv_kv"),
    ("trafo", 0, "vn_lv_kv", 0.0, "trafo.vn_lv_kv"),
    ("trafo", 0, "vk_percent", 0.0, "trafo.vk_percent"),
    ("trafo", 1, "vkr_percent", 5.0, "trafo.vkr_percent"),
    ("trafo3w", 0, "sn_hv_mva", 0.0, "trafo3w.sn_hv_mva"),
    ("trafo3w", 0, "sn_mv_mva", 0.0, "trafo3w.sn_mv_mva"),
    ("trafo3w", 0, "sn_lv_mva", -1.0, "trafo3w.sn_lv_mva"),
    ("trafo3w", 0, "vkr_mv_percent", 50.0, "trafo3w.vkr_mv_percent"),
    ("impedance", 0, "sn_mva", 0.0, "impedance.sn_mva"),
    ("ext_grid", 0, "vm_pu", 0.0, "ext_grid.vm_pu"),
]


def _ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [f"{table}-{index}-{column}" for table, index, column, *_ in cases]


@pytest.mark.parametrize(
    ("table", "index", "column", "value", "field"),
    BAD_REFERENCES + IMPOSSIBLE_VALUES,
    ids=_ids(BAD_REFERENCES + IMPOSSIBLE_VALUES),
)
def test_a_broken_cell_is_refused_naming_table_index_and_column(
    tmp_path: Path, table: str, index: int, column: str, value: Any, field: str
) -> None:
    path = _write(tmp_path, table, index, column, value)
    with pytest.raises(InputError) as caught:
        read_network_json(path, path.read_text())
    error = caught.value
    assert error.path.name == "network.json"
    assert (error.row, error.field) == (None, field)
    named = "index 1 appears twice" if column == "index" else f"index {index}:"
    assert f"table '{table}'" in error.message and named in error.message


@pytest.mark.parametrize(
    ("table", "index", "column", "value", "field"),
    [
        ("line", 1, "from_bus", MISSING, "line.from_bus"),
        ("load", 0, "bus", MISSING, "load.bus"),
        ("line", 1, "length_km", 0.0, "line.length_km"),
        ("trafo", 0, "sn_mva", 0.0, "trafo.sn_mva"),
    ],
    ids=["line-from_bus", "load-bus", "line-length_km", "trafo-sn_mva"],
)
def test_clear_exits_2_with_one_line_naming_the_cell(
    tmp_path: Path, table: str, index: int, column: str, value: Any, field: str
) -> None:
    folder = tmp_path / "scenario"
    _write(folder, table, index, column, value)
    (folder / "scenario.yaml").write_text(
        "name: broken\nnetwork:\n  file: network.json\norders: orders.csv\n"
    )
    (folder / "orders.csv").write_text(ORDERS)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["clear", str(folder), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"network.json, field '{field}': table '{table}', index {index}:" in lines[0]
    assert not out.exists()
