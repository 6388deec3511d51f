"""The AC security check: its verdict is confirmed by the tests' own pandapower runs."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import pandapower as pp
import pandapower.networks as pn
import pytest
from conftest import REPO, without_security
from independent_grid import check_folder, insecure_slots
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.grid_models.security import SecurityLimits, SlotGrid, check_trades

HEADER = "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"


def _clear(scenario: Path, out: Path) -> dict[str, object]:
    result = CliRunner().invoke(app, ["clear", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return dict(json.loads((out / "summary.json").read_text()))


@pytest.mark.parametrize(
    ("name", "network"),
    [("cigre-lv-day", pn.create_cigre_network_lv), ("case33bw-evening", pn.case33bw)],
)
def test_bundled_scenarios_clear_securely_as_an_independent_power_flow_confirms(
    tmp_path: Path, name: str, network: Callable[[], pp.pandapowerNet]
) -> None:
    scenario = REPO / "scenarios" / name
    summary = _clear(scenario, tmp_path / "out")
    assert summary["secure"] is True
    assert insecure_slots(network(), scenario, tmp_path / "out") == set()
    # The same book without the grid breaks the rule where the engine said it does.
    free = without_security(scenario, tmp_path / "free")
    free_summary = _clear(free, tmp_path / "free-out")
    unconstrained_bad = insecure_slots(network(), free, tmp_path / "free-out")
    assert unconstrained_bad, "the bundled scenario should need the grid constraints"
    assert set(summary["unconstrained_insecure_slots"]) == unconstrained_bad  # type: ignore[arg-type]
    assert math.isclose(
        float(summary["unconstrained_welfare_eur"]),  # type: ignore[arg-type]
        float(free_summary["welfare_eur"]),  # type: ignore[arg-type]
        rel_tol=1e-9,
    )
    assert float(summary["welfare_eur"]) <= float(free_summary["welfare_eur"]) + 1e-9  # type: ignore[arg-type]
    grid = list(csv.DictReader((tmp_path / "out" / "grid.csv").open()))
    assert not [r for r in grid if r["violated"] == "true"]
    # Not only the verdicts: every loading and voltage after the trades agrees.
    # To power-flow accuracy: the engine starts each run from the last solution, the
    # independent check from flat voltages; both stop at a 1e-8 MVA mismatch.
    ours = check_folder(network(), scenario, tmp_path / "out")
    for r in grid:
        theirs = ours[int(r["slot"])][1][r["element"], int(r["index"])]
        absolute = 1e-7 if r["element"] == "bus" else 1e-5
        assert math.isclose(float(r["after"]), theirs, rel_tol=1e-6, abs_tol=absolute), r


def _sub_grid_scenario(folder: Path, quantity_kwh: float) -> Path:
    """Industrial PV sells to a residential buyer: the trade crosses two transformers."""
    net = pn.create_cigre_network_lv()
    bus = {name: int(i) for i, name in net.bus.name.items()}
    folder.mkdir()
    (folder / "scenario.yaml").write_text(
        "name: cross-trafo\nnetwork:\n  pandapower: create_cigre_network_lv\n"
        "background:\n  load_scaling: [0.2]\n"
    )
    rows = [
        f"b,home,buy,{bus['Bus R11']},0,{quantity_kwh},0.30,true",
        f"s,factory,sell,{bus['Bus I2']},0,{quantity_kwh},0.05,true",
    ]
    (folder / "orders.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return folder


def test_a_small_trade_across_sub_grids_passes_whole(tmp_path: Path) -> None:
    scenario = _sub_grid_scenario(tmp_path / "s", 20.0)
    summary = _clear(scenario, tmp_path / "out")
    assert summary["secure"] is True
    assert summary["traded_kwh"] == 20.0
    assert summary["security_iterations"] == 0
    assert summary["ac_power_flows"] == 2  # the slot was checked: base case and trades
    assert insecure_slots(pn.create_cigre_network_lv(), scenario, tmp_path / "out") == set()


@pytest.mark.parametrize("formulation", ["highspy", "pyomo-highs", "cpsat", "seller-dp"])
def test_a_large_trade_across_sub_grids_is_cut_to_what_the_grid_carries(
    tmp_path: Path, formulation: str
) -> None:
    scenario = _sub_grid_scenario(tmp_path / "s", 600.0)
    free = without_security(scenario, tmp_path / "free")
    _clear(free, tmp_path / "free-out")
    assert insecure_slots(pn.create_cigre_network_lv(), free, tmp_path / "free-out") == {0}

    result = CliRunner().invoke(
        app, ["clear", str(scenario), "--out", str(tmp_path / "out"), "--formulation", formulation]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["secure"] is True
    assert insecure_slots(pn.create_cigre_network_lv(), scenario, tmp_path / "out") == set()
    assert 0.0 < summary["traded_kwh"] < 600.0
    assert summary["unconstrained_insecure_slots"] == [0]
    assert summary["welfare_eur"] < summary["unconstrained_welfare_eur"] == 150.0
    # Dear security is no security: the secure trade uses most of what the grid allows,
    # here until the industrial feeder end reaches 1.05 pu.
    grid = list(csv.DictReader((tmp_path / "out" / "grid.csv").open()))
    binding = [r for r in grid if r["binding"] == "true"]
    assert binding
    for r in binding:
        assert float(r["limit_high"]) - float(r["after"]) < 0.01 * float(r["limit_high"])


def test_disabled_security_writes_no_verdict(tmp_path: Path) -> None:
    scenario = _sub_grid_scenario(tmp_path / "s", 600.0)
    text = (scenario / "scenario.yaml").read_text()
    (scenario / "scenario.yaml").write_text(text + "security:\n  enabled: false\n")
    summary = _clear(scenario, tmp_path / "out")
    assert summary["secure"] is None
    assert summary["ac_power_flows"] == 0
    assert not (tmp_path / "out" / "grid.csv").exists()


def test_an_element_already_out_of_limits_may_stay_out_but_not_get_worse() -> None:
    net = pn.case33bw()  # the feeder end sits below 0.95 pu before any trade
    grid = SlotGrid(net, None, None, slot_hours=1.0)
    limits = SecurityLimits()
    far_end = 17
    helping = check_trades(grid, [(0, far_end, 1, 50.0)], limits)  # supply at the far end
    hurting = check_trades(grid, [(0, 1, far_end, 50.0)], limits)  # more draw there
    assert helping.secure
    assert not hurting.secure
    worse = hurting.slots[0].elements
    assert worse[worse.violated].element.eq("bus").all()
    assert (worse[worse.violated].before < 0.95).all()


def test_a_power_flow_that_does_not_converge_is_insecure() -> None:
    grid = SlotGrid(pn.create_cigre_network_lv(), None, None, slot_hours=1.0)
    report = check_trades(grid, [(0, 2, 30, 5e6)], SecurityLimits())
    assert not report.slots[0].converged
    assert not report.secure


def test_the_check_leaves_the_scenario_network_untouched() -> None:
    net = pn.create_cigre_network_lv()
    before = net.sgen.copy(), net.load.copy()
    grid = SlotGrid(net, [0.5], None, slot_hours=1.0)
    check_trades(grid, [(0, 2, 30, 10.0)], SecurityLimits())
    assert net.sgen.equals(before[0])
    assert net.load.equals(before[1])


def test_background_scaling_of_own_generation_changes_each_slot() -> None:
    # A PV plant of the network's own at the end of a residential feeder, full in slot 0,
    # off in slot 1: the same trade meets a different grid in each slot.
    import copy

    import pandapower as pp

    net = pn.create_cigre_network_lv()
    far = int(net.bus.index[net.bus.name == "Bus R18"][0])
    pp.create_sgen(net, far, p_mw=0.2, name="own pv")
    grid = SlotGrid(net, [0.3, 0.3], [1.0, 0.0], slot_hours=1.0)
    report = check_trades(grid, [(0, far, 2, 5.0), (1, far, 2, 5.0)], SecurityLimits())
    for slot, factor in ((0, 1.0), (1, 0.0)):
        own = copy.deepcopy(net)
        own.load["scaling"] *= 0.3
        own.sgen["scaling"] *= factor
        pp.create_load(own, far, p_mw=-0.005)
        pp.create_load(own, 2, p_mw=0.005)
        pp.runpp(own)
        elements = report.slots[slot].elements
        vm = elements[(elements.element == "bus") & (elements["index"] == far)].after.iloc[0]
        assert math.isclose(vm, float(own.res_bus.at[far, "vm_pu"]), rel_tol=1e-9)
    assert report.slots[0].worst("bus", "vm_pu") > report.slots[1].worst("bus", "vm_pu")


def test_buses_cut_off_from_the_grid_do_not_make_every_slot_insecure() -> None:
    # pandapower reports NaN voltages for a de-energised island in a converged flow.
    net = pn.case33bw()
    line = int(net.line.index[net.line.to_bus == 25][0])
    net.line.loc[line, "in_service"] = False
    grid = SlotGrid(net, [0.5], None, slot_hours=1.0)
    report = check_trades(grid, [(0, 2, 3, 1.0)], SecurityLimits())
    island = report.slots[0].elements
    assert island[(island.element == "bus") & (island["index"] == 27)].after.isna().all()
    assert report.slots[0].converged
    assert report.secure
