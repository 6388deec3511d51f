"""Networks from user files are untrusted; orders must sit on usable buses."""

from __future__ import annotations

import json
from pathlib import Path

import pandapower as pp
import pandapower.networks as pn
import pytest
from feasibility import check_result_folder, line_distances_km
from typer.testing import CliRunner

from gridmatch.cli import app

HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh"


def _scenario(
    folder: Path, net: pp.pandapowerNet, rows: list[str], network: str = "file: network.json"
) -> Path:
    """A scenario folder whose network is ``net`` saved as ``network.json``."""
    folder.mkdir()
    pp.to_json(net, str(folder / "network.json"))
    # Light background load: CIGRE LV at full load is below 0.95 pu at its feeder ends,
    # where the security rule would forbid every trade.
    (folder / "scenario.yaml").write_text(
        f"name: from-file\nnetwork:\n  {network}\norders: orders.csv\n"
        "background:\n  load_scaling: [0.3]\n"
    )
    (folder / "orders.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return folder


def _clear(folder: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["clear", str(folder), "--out", str(out)])
    return result.exit_code, result.stderr


def _cigre_rows() -> list[str]:
    # Buses of the CIGRE LV residential, industrial and commercial sub-grids.
    return [
        "b1,h1,buy,R11,0,2,0.30",
        "b2,h2,buy,I2,0,3,0.25",
        "s1,pv1,sell,C12,0,5,0.08",
    ]


def _with_bus_indices(net: pp.pandapowerNet, rows: list[str]) -> list[str]:
    index = {name: int(i) for i, name in net.bus.name.items()}
    out = []
    for row in rows:
        fields = row.split(",")
        fields[3] = str(index[f"Bus {fields[3]}"])
        out.append(",".join(fields))
    return out


def test_a_pandapower_json_network_clears_like_the_built_in_one(tmp_path: Path) -> None:
    net = pn.create_cigre_network_lv()
    folder = _scenario(tmp_path / "s", net, _with_bus_indices(net, _cigre_rows()))
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 0, stderr
    summary = check_result_folder(folder, tmp_path / "out", line_distances_km(net))
    assert summary["n_trades"] == 2
    assert summary["secure"] is True
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "network.json" in manifest["inputs"]
    rows = _with_bus_indices(net, _cigre_rows())
    built_in = _scenario(tmp_path / "b", net, rows, network="pandapower: create_cigre_network_lv")
    assert _clear(built_in, tmp_path / "out-b")[0] == 0
    for name in ("trades.csv", "grid.csv"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "out-b" / name).read_bytes()


def _poison(document: dict[str, object], module: str) -> dict[str, object]:
    """Return the network document with one object naming ``module``."""
    inner = document["_object"]
    assert isinstance(inner, dict)
    inner["bus_geodata"] = {"_module": module, "_class": "system", "_object": "echo hacked"}
    return document


@pytest.mark.parametrize("module", ["os", "subprocess", "builtins", "pandapowerx"])
def test_a_network_file_naming_a_foreign_module_is_refused(tmp_path: Path, module: str) -> None:
    net = pn.create_cigre_network_lv()
    folder = _scenario(tmp_path / "s", net, _with_bus_indices(net, _cigre_rows()))
    document = json.loads((folder / "network.json").read_text())
    (folder / "network.json").write_text(json.dumps(_poison(document, module)))
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 2
    assert "network.json" in stderr
    assert f"module '{module}'" in stderr
    assert not (tmp_path / "out").exists()


def test_a_foreign_module_hidden_in_a_nested_json_string_is_refused(tmp_path: Path) -> None:
    # pandapower stores tables as JSON text inside the JSON document.
    net = pn.create_cigre_network_lv()
    folder = _scenario(tmp_path / "s", net, _with_bus_indices(net, _cigre_rows()))
    document = json.loads((folder / "network.json").read_text())
    inner = document["_object"]
    inner["bus"]["_object"] = json.dumps({"_module": "os", "_class": "system", "_object": "x"})
    (folder / "network.json").write_text(json.dumps(document))
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 2
    assert "module 'os'" in stderr


def test_a_network_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    net = pn.case33bw()
    folder = _scenario(tmp_path / "s", net, ["b,x,buy,5,0,1,0.3", "s,y,sell,6,0,1,0.1"])
    (folder / "network.json").write_text("{not json")
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 2
    assert "network.json" in stderr
    assert "not valid JSON" in stderr


def test_a_missing_network_file_names_the_key(tmp_path: Path) -> None:
    net = pn.case33bw()
    folder = _scenario(tmp_path / "s", net, ["b,x,buy,5,0,1,0.3", "s,y,sell,6,0,1,0.1"])
    (folder / "network.json").unlink()
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 2
    assert "scenario.yaml, field 'network.file'" in stderr
    assert "not found" in stderr


def test_an_order_on_an_out_of_service_bus_is_refused(tmp_path: Path) -> None:
    net = pn.case33bw()
    net.bus.loc[17, "in_service"] = False
    rows = ["b,x,buy,5,0,1,0.3", "", "s,y,sell,17,0,1,0.1"]
    folder = _scenario(tmp_path / "s", net, rows)
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 2
    # The blank line still counts: the row is the one a spreadsheet shows.
    assert "orders.csv, row 4, field 'bus': bus 17 is out of service" in stderr


def test_an_order_on_an_islanded_bus_is_refused(tmp_path: Path) -> None:
    net = pn.case33bw()
    # Take the line into bus 25 out of service: buses 25.. of that branch lose supply.
    line = int(net.line.index[net.line.to_bus == 25][0])
    net.line.loc[line, "in_service"] = False
    folder = _scenario(tmp_path / "s", net, ["b,x,buy,5,0,1,0.3", "s,y,sell,27,0,1,0.1"])
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 2
    assert "orders.csv, row 3, field 'bus': bus 27 is not connected to the external grid" in stderr


def test_an_open_switch_islands_the_buses_behind_it(tmp_path: Path) -> None:
    net = pn.create_cigre_network_lv()
    rows = _with_bus_indices(net, _cigre_rows())
    industrial_trafo_hv_bus = int(net.trafo.hv_bus[net.trafo.name == "Trafo I0-I1"].iloc[0])
    # CIGRE LV feeds each sub-grid through a bus-bus switch (S1, S2, S3): open the one
    # in front of the industrial transformer.
    switch = net.switch.index[
        (net.switch.et == "b")
        & (
            (net.switch.bus == industrial_trafo_hv_bus)
            | (net.switch.element == industrial_trafo_hv_bus)
        )
    ]
    assert len(switch) == 1
    net.switch.loc[switch, "closed"] = False
    folder = _scenario(tmp_path / "s", net, rows)
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 2
    assert "row 3, field 'bus'" in stderr
    assert "not connected to the external grid" in stderr


def test_a_network_without_external_grid_is_refused(tmp_path: Path) -> None:
    net = pn.case33bw()
    net.ext_grid.drop(net.ext_grid.index, inplace=True)
    folder = _scenario(tmp_path / "s", net, ["b,x,buy,5,0,1,0.3", "s,y,sell,6,0,1,0.1"])
    code, stderr = _clear(folder, tmp_path / "out")
    assert code == 2
    assert "field 'network'" in stderr
    assert "external grid" in stderr
