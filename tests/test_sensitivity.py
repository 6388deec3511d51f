"""Linear sensitivities agree with pandapower's own AC power flow under small injections."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from gridmatch.grid_models.sensitivity import injection_sensitivities


def _case33bw_with_an_out_of_service_bus() -> pp.pandapowerNet:
    net = pn.case33bw()
    net.bus.loc[32, "in_service"] = False
    return net


def _kerber() -> pp.pandapowerNet:
    return pn.create_kerber_vorstadtnetz_kabel_1()


NETWORKS: dict[str, Callable[[], pp.pandapowerNet]] = {
    "cigre-lv": pn.create_cigre_network_lv,
    "case33bw-oos-bus": _case33bw_with_an_out_of_service_bus,
    "kerber-vorstadt": _kerber,
}


def _relative_error(finite: np.ndarray, linear: np.ndarray) -> float:
    scale = np.nanmax(np.abs(finite))
    return float(np.nanmax(np.abs(finite - linear)) / scale) if scale > 0 else 0.0


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_sensitivities_match_a_small_injection_in_the_ac_power_flow(name: str) -> None:
    net = NETWORKS[name]()
    pp.runpp(net)
    rng = np.random.default_rng(3)
    candidates = net.bus.index[net.bus.in_service & ~net.bus.index.isin(net.ext_grid.bus)]
    buses = np.sort(rng.choice(candidates.to_numpy(), size=3, replace=False))
    sensitivities = injection_sensitivities(net, buses)
    step_mw = 0.001
    for column, bus in enumerate(buses.tolist()):
        moved = copy.deepcopy(net)
        pp.create_sgen(moved, bus, p_mw=step_mw)
        pp.runpp(moved)
        checks = [
            (moved.res_bus.vm_pu, net.res_bus.vm_pu, sensitivities.vm_pu_per_mw),
            (
                moved.res_line.loading_percent,
                net.res_line.loading_percent,
                sensitivities.line_loading_percent_per_mw,
            ),
        ]
        if len(net.trafo):
            checks.append(
                (
                    moved.res_trafo.loading_percent,
                    net.res_trafo.loading_percent,
                    sensitivities.trafo_loading_percent_per_mw,
                )
            )
        for after, before, linear in checks:
            finite = (after - before).to_numpy() / step_mw
            # First order: 1 kW is small, but LV cables are resistive and non-linear.
            assert _relative_error(finite, linear[:, column]) < 2e-2, (name, bus)


def test_an_injection_at_the_slack_bus_moves_nothing() -> None:
    net = pn.create_cigre_network_lv()
    pp.runpp(net)
    slack = int(net.ext_grid.bus.iloc[0])
    sensitivities = injection_sensitivities(net, [slack])
    assert np.nanmax(np.abs(sensitivities.vm_pu_per_mw)) == 0.0
    assert np.nanmax(np.abs(sensitivities.line_loading_percent_per_mw)) == 0.0


def test_sensitivities_need_a_converged_power_flow() -> None:
    net = pn.create_cigre_network_lv()
    with pytest.raises(ValueError, match="converged"):
        injection_sensitivities(net, [2])
