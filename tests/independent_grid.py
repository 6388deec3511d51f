"""An AC check of result folders written apart from gridmatch: pandapower only.

It rebuilds each slot from the scenario file and trades.csv and says which slots break
the security rule, so the engine's verdict can be confirmed by a second computation.
"""

from __future__ import annotations

import copy
import csv
import math
from collections import defaultdict
from pathlib import Path

import pandapower as pp
import yaml


def insecure_slots(net: pp.pandapowerNet, scenario_dir: Path, out_dir: Path) -> set[int]:
    """Return the slots whose trades break the security rule, by our own power flows."""
    return {
        slot for slot, (secure, _) in check_folder(net, scenario_dir, out_dir).items() if not secure
    }


def check_folder(
    net: pp.pandapowerNet, scenario_dir: Path, out_dir: Path
) -> dict[int, tuple[bool, dict[tuple[str, int], float]]]:
    """Per traded slot: secure or not, and each element's value after the trades."""
    spec = yaml.safe_load((scenario_dir / "scenario.yaml").read_text())
    security = {
        "max_line_loading_percent": 100.0,
        "max_trafo_loading_percent": 100.0,
        "vm_min_pu": 0.95,
        "vm_max_pu": 1.05,
        **(spec.get("security") or {}),
    }
    background = spec.get("background") or {}
    hours = float(spec.get("slot_minutes", 60)) / 60.0
    injection: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    with (out_dir / "trades.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            slot, kwh = int(row["slot"]), float(row["quantity_kwh"])
            injection[slot][int(row["sell_bus"])] += kwh
            injection[slot][int(row["buy_bus"])] -= kwh

    verdicts = {}
    for slot, by_bus in injection.items():
        base = _run(net, background, slot, {}, hours)
        after = _run(net, background, slot, by_bus, hours)
        if after is None:
            verdicts[slot] = (False, {})
            continue
        state = _limits(after, security)
        before_state = _limits(base, security) if base is not None else {}
        secure = True
        for key, (value, low, high) in state.items():
            if math.isnan(value):
                continue  # a bus with no connection to any source: nothing to judge
            # The rule's slack: above power-flow accuracy, below what a meter resolves.
            tolerance = 1e-6 if key[0] == "bus" else 1e-4
            excess = max(low - value, value - high, 0.0)
            if excess <= tolerance:
                continue
            before = before_state.get(key, (math.nan, low, high))[0]
            excess_before = max(low - before, before - high, 0.0)
            same_side = value <= high if before < low else value >= low
            if excess_before > tolerance and same_side and excess <= excess_before + tolerance:
                continue  # already out before the trades, and not worse
            secure = False
        verdicts[slot] = (secure, {key: v for key, (v, _, _) in state.items()})
    return verdicts


def _run(
    net: pp.pandapowerNet,
    background: dict[str, list[float]],
    slot: int,
    by_bus: dict[int, float],
    hours: float,
) -> pp.pandapowerNet | None:
    net = copy.deepcopy(net)
    if "load_scaling" in background:
        net.load["scaling"] = net.load["scaling"] * background["load_scaling"][slot]
    if "sgen_scaling" in background:
        net.sgen["scaling"] = net.sgen["scaling"] * background["sgen_scaling"][slot]
    for bus, kwh in by_bus.items():
        # A negative injection is a load: buyers draw, sellers feed in.
        pp.create_load(net, bus, p_mw=-kwh / 1000.0 / hours)
    try:
        pp.runpp(net)
    except pp.LoadflowNotConverged:
        return None
    return net


def _limits(
    net: pp.pandapowerNet, security: dict[str, float]
) -> dict[tuple[str, int], tuple[float, float, float]]:
    out: dict[tuple[str, int], tuple[float, float, float]] = {}
    for i in net.line.index[net.line.in_service]:
        out["line", int(i)] = (
            float(net.res_line.at[i, "loading_percent"]),
            float("-inf"),
            security["max_line_loading_percent"],
        )
    for i in net.trafo.index[net.trafo.in_service]:
        out["trafo", int(i)] = (
            float(net.res_trafo.at[i, "loading_percent"]),
            float("-inf"),
            security["max_trafo_loading_percent"],
        )
    for i in net.trafo3w.index[net.trafo3w.in_service]:
        out["trafo3w", int(i)] = (
            float(net.res_trafo3w.at[i, "loading_percent"]),
            float("-inf"),
            security["max_trafo_loading_percent"],
        )
    for i in net.bus.index[net.bus.in_service]:
        out["bus", int(i)] = (
            float(net.res_bus.at[i, "vm_pu"]),
            security["vm_min_pu"],
            security["vm_max_pu"],
        )
    return out
