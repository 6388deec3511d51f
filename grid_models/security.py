"""AC security check of a slot's trades with pandapower.

The security rule (issue #3): after the trades, every in-service line and transformer
is loaded within its limit and every in-service bus voltage lies in
``[vm_min_pu, vm_max_pu]``; an element already outside its limit in the same slot
without trades may not be made worse. A power flow that does not converge is insecure.

Per slot, the network's own loads and static generators are scaled by the
``background`` factors; the trades enter as one extra static generator per bus with
the bus's net injection (sellers +p, buyers -p, ``p_mw = kwh / 1000 / slot hours``,
``q = 0``; :func:`gridmatch.units.kwh_to_mw`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandapower as pp
import pandas as pd

from gridmatch.grid_models.sensitivity import injection_sensitivities
from gridmatch.units import kwh_to_mw, mw_per_kwh

# Loadings and voltages are compared with this slack. It sits well above what two
# power flows of one state can differ by (Newton-Raphson stops at a 1e-8 MVA mismatch;
# a run started from the last solution lands ~1e-9 pu away from a flat-start run) and
# far below anything a meter resolves (1e-6 pu is 0.4 mV at 400 V). Below solver
# accuracy, "no worse" would judge noise.
LOADING_TOLERANCE_PERCENT = 1e-4
VOLTAGE_TOLERANCE_PU = 1e-6
_TRADE_SGEN = "gridmatch trade injection"
_RECYCLE = {"bus_pq": True, "trafo": False, "gen": False}
# The elements held to ``max_trafo_loading_percent`` (three-winding ones by the winding
# loaded most, as pandapower reports their loading).
TRANSFORMERS = ("trafo", "trafo3w")
# Columns of the element table a check returns (results_io writes grid.csv from it).
ELEMENT_COLUMNS = [
    "slot",
    "element",
    "index",
    "quantity",
    "before",
    "after",
    "limit_low",
    "limit_high",
    "violated",
]


@dataclass(frozen=True)
class SecurityLimits:
    """Limits of the security rule."""

    max_line_loading_percent: float = 100.0
    max_trafo_loading_percent: float = 100.0
    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05


@dataclass(frozen=True)
class SlotSecurity:
    """The verdict on one slot.

    Attributes
    ----------
    elements
        One row per in-service line, transformer and bus: ``element`` (line, trafo,
        trafo3w, bus), ``index``, ``quantity`` (loading_percent or vm_pu), ``before``,
        ``after``, ``limit_low``, ``limit_high``, ``violated``.
    ac_power_flows
        pandapower runs this check took (base case and with trades).
    losses_mw_before, losses_mw_after
        Active power lost in lines and transformers without and with the trades (NaN
        where the power flow did not converge); the difference is what the trades cost
        the grid, which settlement's validators allow between sent and received energy.
    """

    slot: int
    secure: bool
    converged: bool
    elements: pd.DataFrame
    ac_power_flows: int
    losses_mw_before: float = float("nan")
    losses_mw_after: float = float("nan")

    @property
    def strictly_secure(self) -> bool:
        """Secure without the rule's tolerance: in band, or not worse than before at all.

        What the search after the security loop demands of the trades it adds: a trade
        set at the very edge of the tolerance, cleared again on top in a later round,
        could otherwise add up past it.
        """
        if not self.secure:
            return False
        table = self.elements
        a = table.after.to_numpy(dtype=float)
        b = table.before.to_numpy(dtype=float)
        low = table.limit_low.to_numpy(dtype=float)
        high = table.limit_high.to_numpy(dtype=float)
        excess_after = np.maximum(np.maximum(low - a, a - high), 0.0)
        excess_before = np.maximum(np.maximum(low - b, b - high), 0.0)
        same_side = np.where(b < low, a <= high, a >= low)
        out_before = np.isfinite(b) & (excess_before > 0.0)
        fine = (excess_after <= 0.0) | (out_before & same_side & (excess_after <= excess_before))
        return bool(np.all(fine | ~np.isfinite(a)))

    def worst(
        self, element: str | tuple[str, ...], quantity: str, *, lowest: bool = False
    ) -> float | None:
        """Largest (or smallest) value after the trades, or ``None`` if there is none.

        ``element`` is one kind (``"line"``) or several (:data:`TRANSFORMERS`).
        """
        kinds = (element,) if isinstance(element, str) else element
        rows = self.elements[
            self.elements.element.isin(kinds) & (self.elements.quantity == quantity)
        ]
        if rows.empty or not np.isfinite(rows.after).any():
            return None
        return float(rows.after.min() if lowest else rows.after.max())


class SlotGrid:
    """One working copy of the network, rescaled per slot, that runs the checks.

    Parameters
    ----------
    net
        The scenario's network; it is copied, never changed.
    load_scaling, sgen_scaling
        Per-slot factors (``None``: the network's own scaling in every slot).
    slot_hours
        Length of a slot in hours.
    trade_buses
        Buses that get a trade injection up front (others are added when first used).
    background_kwh
        ``(slot, bus, kWh)`` injected in a slot by trades accepted before (rolling
        rounds), added to the base case and to every checked trade set of that slot.

    Attributes
    ----------
    ac_power_flows
        pandapower runs so far, over all checks and linearisations.

    Notes
    -----
    Runs are recycled (each starts from the last solution), so values depend on the
    order of earlier runs to power-flow accuracy (~1e-9 pu). A fresh ``SlotGrid`` per
    clearing, as the pipeline makes, gives byte-identical reruns.
    """

    def __init__(
        self,
        net: pp.pandapowerNet,
        load_scaling: list[float] | None,
        sgen_scaling: list[float] | None,
        slot_hours: float,
        trade_buses: npt.ArrayLike | None = None,
        background_kwh: Iterable[tuple[int, int, float]] = (),
    ) -> None:
        self._net = copy.deepcopy(net)
        # Per slot and bus, kWh already injected by trades accepted earlier (rolling
        # rounds): part of the base case and of every checked trade set.
        self._background_kwh: dict[int, dict[int, float]] = {}
        for slot, bus, kwh in background_kwh:
            self._background_kwh.setdefault(slot, {})[bus] = kwh
        self._load_scaling0 = self._net.load.scaling.to_numpy(copy=True)
        self._sgen_scaling0 = self._net.sgen.scaling.to_numpy(copy=True)
        # The net's own sgens keep their rows; one trade sgen per bus follows them.
        self._trade_sgen: dict[int, int] = {}
        for bus in np.unique(np.asarray(trade_buses if trade_buses is not None else [])):
            self._add_trade_sgen(int(bus))
        self._load_scaling = load_scaling
        self._sgen_scaling = sgen_scaling
        self._slot_hours = slot_hours
        self.ac_power_flows = 0
        # Per slot, the state without trades (all NaN if that flow did not converge).
        self._base_cache: dict[int, pd.DataFrame] = {}
        # Per slot: the buses and the base-case sensitivities check() took for them.
        self._base_sensitivity: dict[
            int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
        ] = {}

    def check(
        self,
        slot: int,
        injection_kwh_by_bus: Mapping[int, float],
        limits: SecurityLimits,
        linearise_at: npt.NDArray[np.int64] | None = None,
    ) -> SlotSecurity:
        """Check the trades of one slot, given as net kWh injected per bus.

        Parameters
        ----------
        injection_kwh_by_bus
            Sold minus bought kWh at each bus in the slot.
        linearise_at
            Buses to take base-case sensitivities for, while the base case is run
            anyway; if the slot turns out insecure, :meth:`base_sensitivity`
            hands them out (no extra power flow).
        """
        flows = 0
        if slot not in self._base_cache:
            self._set_slot(slot, {})
            converged, self._base_cache[slot] = self._run()
            flows += 1
            if converged and linearise_at is not None:
                sensitivity = self.sensitivity_per_kwh(linearise_at)
                self._base_sensitivity[slot] = (np.asarray(linearise_at), sensitivity)
        before = self._base_cache[slot]
        self._set_slot(slot, injection_kwh_by_bus)
        converged, after = self._run()
        flows += 1
        # A base case that does not converge leaves ``before`` all NaN: then no element
        # counts as already out of limits, and the strict rule applies to all.
        elements = _judge(before, after, limits, converged=converged)
        secure = converged and not bool(elements.violated.any())
        if secure:
            self._base_sensitivity.pop(slot, None)  # large, and not needed
        return SlotSecurity(
            slot,
            secure,
            converged,
            elements,
            flows,
            losses_mw_before=float(before.attrs["losses_mw"]),
            losses_mw_after=float(after.attrs["losses_mw"]),
        )

    @property
    def slot_hours(self) -> float:
        """Length of a slot in hours."""
        return self._slot_hours

    def base_network(self, slot: int) -> tuple[pp.pandapowerNet, pd.DataFrame] | None:
        """Run the slot's base case and hand out the working network at it.

        Returns the network right after its converged power flow without trades (read
        it at once, never change it) and the base-case state the checks judge against;
        ``None`` if the base case does not converge.
        """
        self._set_slot(slot, {})
        converged, state = self._run()
        if not converged:
            return None
        return self._net, self._base_cache.setdefault(slot, state)

    def base_sensitivity(
        self, slot: int, buses: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64] | None:
        """Sensitivities at the slot's base case, per kWh injected at ``buses``.

        Hands out (and forgets) the ones :meth:`check` took on its way when they are for
        the same buses; otherwise runs the base case again (one more power flow).
        ``None`` if the base case does not converge.
        """
        taken = self._base_sensitivity.pop(slot, None)
        if taken is not None and np.array_equal(taken[0], buses):
            return taken[1]
        self._set_slot(slot, {})
        converged, _ = self._run()
        return self.sensitivity_per_kwh(buses) if converged else None

    def sensitivity_per_kwh(self, buses: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Sensitivities at the state of the last converged run, per kWh over the slot.

        Rows follow the element table of :class:`SlotSecurity` (in-service lines,
        transformers, three-winding transformers, buses); columns are ``buses``.
        """
        found = injection_sensitivities(self._net, buses)
        per_kwh = mw_per_kwh(self._slot_hours)
        parts = []
        for table, rows in (
            (self._net.line, found.line_loading_percent_per_mw),
            (self._net.trafo, found.trafo_loading_percent_per_mw),
            (self._net.trafo3w, found.trafo3w_loading_percent_per_mw),
            (self._net.bus, found.vm_pu_per_mw),
        ):
            parts.append(rows[table.in_service.to_numpy(dtype=bool)])
        stacked: npt.NDArray[np.float64] = np.vstack(parts) * per_kwh
        return stacked

    def _add_trade_sgen(self, bus: int) -> None:
        index = pp.create_sgen(self._net, bus, p_mw=0.0, q_mvar=0.0, name=_TRADE_SGEN)
        self._trade_sgen[bus] = int(index)
        # A new element: the stored power flow no longer fits the network.
        self._net["_ppc"] = None

    def _set_slot(self, slot: int, injection_kwh_by_bus: Mapping[int, float]) -> None:
        background = self._background_kwh.get(slot)
        if background:
            merged = dict(background)
            for bus, kwh in injection_kwh_by_bus.items():
                merged[bus] = merged.get(bus, 0.0) + kwh
            injection_kwh_by_bus = merged
        net = self._net
        factor = 1.0 if self._load_scaling is None else self._load_scaling[slot]
        net.load["scaling"] = self._load_scaling0 * factor
        for bus in sorted(injection_kwh_by_bus):
            if bus not in self._trade_sgen:
                self._add_trade_sgen(bus)
        factor = 1.0 if self._sgen_scaling is None else self._sgen_scaling[slot]
        # Background scaling applies to the network's own sgens (the first rows), never
        # to the trades.
        n_trade = len(net.sgen) - self._sgen_scaling0.size
        net.sgen["scaling"] = np.concatenate([self._sgen_scaling0 * factor, np.ones(n_trade)])
        p_mw = np.zeros(len(self._trade_sgen))
        rows = np.fromiter(self._trade_sgen.values(), np.int64, len(self._trade_sgen))
        for k, bus in enumerate(self._trade_sgen):
            p_mw[k] = kwh_to_mw(injection_kwh_by_bus.get(bus, 0.0), self._slot_hours)
        net.sgen.loc[rows, "p_mw"] = p_mw

    def _run(self) -> tuple[bool, pd.DataFrame]:
        self.ac_power_flows += 1
        try:
            # Between runs only loads and sgens change: pandapower's recycling reuses the
            # admittance matrices and starts from the last solution (~2x faster, measured
            # on the Kerber grid; same voltages to 1e-13 pu).
            pp.runpp(self._net, numba=False, recycle=_RECYCLE)
        except pp.LoadflowNotConverged:
            # Never start the next run from a diverged state.
            self._net["_ppc"] = None
            return False, _state(self._net, converged=False)
        return True, _state(self._net, converged=True)


def _state(net: pp.pandapowerNet, *, converged: bool) -> pd.DataFrame:
    """Return loadings and voltages of the in-service elements (NaN if not converged)."""
    parts = []
    for element, table, result, quantity in (
        ("line", net.line, "res_line", "loading_percent"),
        ("trafo", net.trafo, "res_trafo", "loading_percent"),
        ("trafo3w", net.trafo3w, "res_trafo3w", "loading_percent"),
        ("bus", net.bus, "res_bus", "vm_pu"),
    ):
        index = table.index[table.in_service.to_numpy(dtype=bool)]
        if converged:
            values = net[result][quantity].reindex(index).to_numpy(dtype=float)
        else:
            values = np.full(index.size, np.nan)
        parts.append(
            pd.DataFrame(
                {"element": element, "index": index.to_numpy(), "quantity": quantity, "v": values}
            )
        )
    state = pd.concat(parts, ignore_index=True)
    losses = float("nan")
    if converged:
        losses = sum(
            float(net[table].pl_mw.sum())
            for table in ("res_line", "res_trafo", "res_trafo3w")
            if len(net[table]) and "pl_mw" in net[table]
        )
    state.attrs["losses_mw"] = losses
    return state


def _judge(
    before: pd.DataFrame, after: pd.DataFrame, limits: SecurityLimits, *, converged: bool
) -> pd.DataFrame:
    table = before.rename(columns={"v": "before"})
    table["after"] = after.v.to_numpy()
    is_line = (table.element == "line").to_numpy()
    is_trafo = table.element.isin(TRANSFORMERS).to_numpy()
    is_bus = (table.element == "bus").to_numpy()
    low = np.where(is_bus, limits.vm_min_pu, -np.inf)
    high = np.select(
        [is_line, is_trafo],
        [limits.max_line_loading_percent, limits.max_trafo_loading_percent],
        limits.vm_max_pu,
    )
    table["limit_low"] = low
    table["limit_high"] = high
    tolerance = np.where(is_bus, VOLTAGE_TOLERANCE_PU, LOADING_TOLERANCE_PERCENT)
    b = table.before.to_numpy()
    a = table.after.to_numpy()
    # How far outside its band an element is (0 inside); "no worse" compares these.
    excess_before = np.maximum(np.maximum(low - b, b - high), 0.0)
    excess_after = np.maximum(np.maximum(low - a, a - high), 0.0)
    # In a converged power flow, NaN marks a bus pandapower left out (no connection to
    # any source, no load): nothing flows there, nothing to judge.
    violated = (~np.isfinite(a) & (not converged)) | (excess_after > tolerance)
    already_out = np.isfinite(b) & (excess_before > tolerance)
    # "Not worse" also means staying on the same side: 0.93 pu pushed to 1.06 pu is worse.
    same_side = np.where(b < low, a <= high, a >= low)
    violated &= ~(already_out & same_side & (excess_after <= excess_before + tolerance))
    table["violated"] = violated
    return table


@dataclass(frozen=True)
class GridReport:
    """The AC check of every slot of a clearing."""

    slots: tuple[SlotSecurity, ...]

    @property
    def secure(self) -> bool:
        """True only if every checked slot passed."""
        return all(s.secure for s in self.slots)

    @property
    def ac_power_flows(self) -> int:
        """Number of pandapower runs over all slots."""
        return sum(s.ac_power_flows for s in self.slots)

    def table(self) -> pd.DataFrame:
        """All slots' element rows, with a ``slot`` column first."""
        if not self.slots:
            return pd.DataFrame(columns=ELEMENT_COLUMNS)
        frames = [s.elements.assign(slot=s.slot) for s in self.slots]
        return pd.concat(frames, ignore_index=True)[ELEMENT_COLUMNS]

    def worst(
        self, element: str | tuple[str, ...], quantity: str, *, lowest: bool = False
    ) -> float | None:
        """Worst value after trades over all slots (``None`` if nothing was checked)."""
        found = (s.worst(element, quantity, lowest=lowest) for s in self.slots)
        values = [v for v in found if v is not None]
        if not values:
            return None
        return min(values) if lowest else max(values)


def check_trades(
    grid: SlotGrid,
    trades: list[tuple[int, int, int, float]],
    limits: SecurityLimits,
) -> GridReport:
    """Check every slot that has trades.

    Parameters
    ----------
    trades
        ``(slot, sell_bus, buy_bus, quantity_kwh)`` per trade. A slot without trades
        changes nothing in the grid and is secure by the rule; it is not run.
    """
    injection: dict[int, dict[int, float]] = {}
    for slot, sell_bus, buy_bus, kwh in trades:
        by_bus = injection.setdefault(slot, {})
        by_bus[sell_bus] = by_bus.get(sell_bus, 0.0) + kwh
        by_bus[buy_bus] = by_bus.get(buy_bus, 0.0) - kwh
    return GridReport(
        tuple(grid.check(slot, injection[slot], limits) for slot in sorted(injection))
    )
