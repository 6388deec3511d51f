"""Grids and order books on which the general case once went wrong, each pinned here.

Found by a fuzzer running ``gridmatch clear`` on networks and books the bundled
scenarios do not have, checked by its own power flow: a three-winding transformer
overloaded under a "secure" verdict, trades between grid islands charged 0 km, the
security search shrinking an all-or-none seller's trade and rounding an indivisible
1.001 kWh buy down to 1.000, and a bus fed through a DC line alone taken as connected.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
import pytest
import yaml
from feasibility import check_result_folder, line_distances_km
from independent_grid import check_folder
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.grid_models.sensitivity import injection_sensitivities
from gridmatch.pipeline import tariff_max_fee_eur_per_kwh
from gridmatch.report.security_plot import slot_extremes
from gridmatch.scenario_io.loader import load_scenario

HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"
runner = CliRunner()


def _scenario(folder: Path, spec: dict[str, object], rows: list[str], net=None) -> Path:
    folder.mkdir(parents=True)
    if net is not None:
        pp.to_json(net, str(folder / "network.json"))
        spec = {**spec, "network": {"file": "network.json"}}
    (folder / "scenario.yaml").write_text(yaml.safe_dump({"name": folder.name, **spec}))
    (folder / "orders.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return folder


def _clear(scenario: Path, out: Path, *options: str) -> dict[str, object]:
    result = runner.invoke(app, ["clear", str(scenario), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return dict(json.loads((out / "summary.json").read_text()))


def _three_winding() -> pp.pandapowerNet:
    """110 kV feeding a 2 / 1.5 / 1 MVA three-winding transformer to 20 kV and 10 kV."""
    net = pp.create_empty_network()
    hv, hv2 = pp.create_bus(net, 110), pp.create_bus(net, 110)
    mv, lv, mv_far = pp.create_bus(net, 20), pp.create_bus(net, 10), pp.create_bus(net, 20)
    pp.create_ext_grid(net, hv, vm_pu=1.0)
    pp.create_line_from_parameters(net, hv, hv2, 1.0, 0.01, 0.1, 0, 10.0)
    pp.create_transformer3w_from_parameters(
        net, hv2, mv, lv, vn_hv_kv=110, vn_mv_kv=20, vn_lv_kv=10,
        sn_hv_mva=2.0, sn_mv_mva=1.5, sn_lv_mva=1.0,
        vk_hv_percent=6, vk_mv_percent=6, vk_lv_percent=6,
        vkr_hv_percent=0.3, vkr_mv_percent=0.3, vkr_lv_percent=0.3, pfe_kw=0, i0_percent=0,
    )  # fmt: skip
    pp.create_line_from_parameters(net, mv, mv_far, 1.0, 0.01, 0.05, 0, 10.0)
    pp.create_load(net, mv, p_mw=0.3, q_mvar=0.05)
    pp.create_load(net, lv, p_mw=0.2, q_mvar=0.05)
    return net


@pytest.mark.parametrize("bus", [2, 3, 4])
def test_three_winding_sensitivity_matches_a_small_injection(bus: int) -> None:
    net = _three_winding()
    pp.create_load(net, 3, p_mw=0.6)  # the low winding loaded most at 3, not elsewhere
    pp.runpp(net)
    rows = injection_sensitivities(net, np.array([bus])).trafo3w_loading_percent_per_mw
    moved = copy.deepcopy(net)
    pp.create_sgen(moved, bus, p_mw=0.001)
    pp.runpp(moved)
    finite = (moved.res_trafo3w.loading_percent - net.res_trafo3w.loading_percent) / 0.001
    assert abs(rows[0, 0] - finite.iloc[0]) <= 2e-2 * abs(finite.iloc[0]), (rows, finite)


def test_a_three_winding_transformer_is_held_to_the_transformer_limit(tmp_path: Path) -> None:
    # 3.6 MWh bought behind a 2 MVA transformer: before, "secure" at 209 % loading.
    rows = [
        "s1,gen1,sell,1,0,5000,0.05,true",
        "s2,gen2,sell,0,0,5000,0.05,true",
        "d1,c1,buy,2,0,1500,0.30,true",
        "d2,c2,buy,3,0,1200,0.30,true",
        "d3,c3,buy,4,0,900,0.25,true",
    ]
    security = {"enabled": True, "vm_min_pu": 0.5, "vm_max_pu": 1.5}
    scenario = _scenario(tmp_path / "t3w", {"security": security}, rows, _three_winding())
    summary = _clear(scenario, tmp_path / "out")
    assert summary["secure"] is True
    verdicts = check_folder(load_scenario(scenario).net, scenario, tmp_path / "out")
    assert all(secure for secure, _ in verdicts.values())
    loading = [v for (kind, _), v in verdicts[0][1].items() if kind == "trafo3w"]
    assert loading and max(loading) <= 100.0 + 1e-4
    with (tmp_path / "out" / "grid.csv").open() as handle:
        assert any(row["element"] == "trafo3w" for row in csv.DictReader(handle))
    assert summary["max_trafo_loading_percent"] >= max(loading) - 1e-6
    # The report's chart counts it as a transformer, and its map draws it.
    grid = pd.read_csv(tmp_path / "out" / "grid.csv")
    extremes = slot_extremes(grid)
    after = grid.loc[grid.element == "trafo3w", "after"].max()
    assert extremes.loc[0, "trafo_max_after"] == pytest.approx(after)
    drawn = runner.invoke(app, ["report", str(tmp_path / "out")])
    assert drawn.exit_code == 0, drawn.output
    assert "not drawn" not in (tmp_path / "out" / "report.html").read_text()


def test_buses_no_line_joins_do_not_trade_under_a_per_km_fee(tmp_path: Path) -> None:
    # mv_oberrhein is two islands, each with its own external grid: bus 36 and bus 7
    # have no line between them. Their pair was charged 0 km, the cheapest fee there is.
    spec = {
        "network": {"pandapower": "mv_oberrhein"},
        "security": {"enabled": False},
        "market": {"grid_fee_eur_per_kwh": 0.0, "grid_fee_eur_per_kwh_per_km": 0.05},
    }
    rows = [
        "s-island-b,seller,sell,7,0,100,0.10,true",
        "b-island-a,buyer,buy,36,0,50,0.60,false",
        "s-same,seller2,sell,37,0,100,0.10,true",
    ]
    scenario = _scenario(tmp_path / "islands", spec, rows)
    _clear(scenario, tmp_path / "out")
    with (tmp_path / "out" / "trades.csv").open() as handle:
        sellers = {row["sell_order_id"] for row in csv.DictReader(handle)}
    assert "s-island-b" not in sellers
    loaded = load_scenario(scenario)
    cap = tariff_max_fee_eur_per_kwh(loaded.spec, loaded.graph, loaded.book)
    assert np.isfinite(cap) and cap > 0.0


KERBER_SLOT_2 = {
    "slot_minutes": 15,
    "network": {"pandapower": "create_kerber_dorfnetz"},
    "security": {"enabled": True, "vm_min_pu": 0.97, "vm_max_pu": 1.03, "max_iterations": 1},
    "background": {
        "load_scaling": [1.09, 0.2, 1.01, 0.69, 0.21, 0.69],
        "sgen_scaling": [0.17, 1.4, 1.45, 1.25, 1.33, 0.09],
    },
    "market": {
        "pricing": "uniform",
        "grid_fee_eur_per_kwh": 0.05,
        "grid_fee_eur_per_kwh_per_km": 0.02,
    },
}


@pytest.mark.parametrize(
    ("case", "rows"),
    [
        # The search after the security rounds shrank every pair with a divisible buy,
        # the all-or-none seller's too: 1.528 kWh of its 1.529 (exit 3).
        (
            "all-or-none",
            [
                "o2-3,p0,buy,113,2,14.574,0.3552,true",
                "o2-4,p0,buy,69,2,1.392,0.27,false",
                "o2-16,p5,sell,81,2,1.529,0.0956,false",
            ],
        ),
        # 1.001 * 1000 is 1000.999... in floats: floored, the buy got 1.000 (exit 3).
        (
            "indivisible",
            [
                "b1,p0,buy,113,2,14.574,0.3552,true",
                "s2,p3,sell,64,2,162.174,0.2,true",
                "b2,p9,buy,69,2,1.001,0.35,false",
                "b3,p8,buy,70,2,2.002,0.34,false",
            ],
        ),
    ],
)
@pytest.mark.parametrize("formulation", ["seller-dp", "highspy"])
def test_the_security_search_keeps_whole_orders_whole(
    tmp_path: Path, case: str, rows: list[str], formulation: str
) -> None:
    scenario = _scenario(tmp_path / case, KERBER_SLOT_2, rows)
    out = tmp_path / "out"
    summary = _clear(scenario, out, "--formulation", formulation, "--time-limit", "10")
    assert summary["secure"] is True
    check_result_folder(scenario, out, line_distances_km(load_scenario(scenario).net))


def test_a_bus_behind_a_dc_line_alone_is_not_connected(tmp_path: Path) -> None:
    # pandapower supplies no bus through a DC line; the graph took it as connected
    # and the sensitivities crashed on it (exit 6).
    import pandapower.networks as pn

    net = pn.create_cigre_network_lv()
    island, far = pp.create_bus(net, 0.4), pp.create_bus(net, 0.4)
    pp.create_dcline(net, 43, island, p_mw=0.0, loss_percent=0, loss_mw=0, vm_from_pu=1.0,
                     vm_to_pu=1.0)  # fmt: skip
    pp.create_line(net, island, far, 0.1, "NAYY 4x50 SE")
    rows = [f"s1,a,sell,{far},0,8,0.1,true", "b1,c,buy,13,0,6,0.3,true"]
    scenario = _scenario(tmp_path / "dc", {"security": {"enabled": True}}, rows, net)
    result = runner.invoke(app, ["clear", str(scenario), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert f"bus {far} is not connected" in result.output
