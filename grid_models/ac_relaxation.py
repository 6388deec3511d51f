"""A proven upper bound on the welfare of every AC-secure trade set of a slot.

The linear security rows of secure clearing are built around one operating point, so
the welfare they allow is neither above nor below the AC-secure optimum for sure; the
LP bound without rows is valid but ignores the grid. This module bounds the AC-secure
optimum from above with a convex relaxation of pandapower's own power-flow model.

The relaxation (Jabr's second-order-cone relaxation in the bus-injection form) works
on ``W = V V^H`` restricted to the diagonal and the branch entries: ``w_i = |V_i|^2``
and ``W_ij = c_ij + j s_ij`` for every pair of buses an admittance connects.

* Power balance at every bus but the slack is linear in ``W``:
  ``P_i = sum_j G_ij c_ij + B_ij s_ij`` and ``Q_i = sum_j G_ij s_ij - B_ij c_ij``, with
  the slot's loads and generation as pandapower puts them into its internal case
  (``Ybus``, the bus table's ``PD``/``QD``) plus the trades' active power.
* A voltage band is a box on ``w_i``; the slack's ``w`` is its set point squared.
* A branch end's current is ``I_f = y_ff V_f + y_ft V_t``, so
  ``|I_f|^2 = |y_ff|^2 w_f + |y_ft|^2 w_t + 2 Re(y_ff conj(y_ft) W_ft)`` is linear
  too: every line and transformer limit becomes a linear row.
* ``|W_ij|^2 <= w_i w_j`` (a rotated second-order cone) is the only relaxed part; every
  real voltage vector satisfies it with equality, so every AC power flow of the slot,
  and therefore every AC-secure trade set, is a point of the relaxation.
* The market part is the slot's LP relaxation (pair, buy and sell capacities), so
  indivisible buys and all-or-none sellers are relaxed as well.

Limits follow the security rule of :mod:`gridmatch.grid_models.security`: an element
already outside its band without trades keeps its base value as its limit (it may not
get worse), and the check's tolerances are added. A three-winding transformer is the
three branches to a star bus of pandapower's internal case, each winding limited at its
own bus by its own rating (its loading is that of the winding loaded most, as
pandapower reports it). Networks with parts whose injections
are not constant powers (PV generators, extended wards, DC lines, FACTS devices,
voltage-dependent loads) are refused, and so is any case
whose currents, voltages or injections, recomputed here from pandapower's matrices at
the base case, do not match pandapower's own results: then the slot keeps its LP bound.

The conic program is solved by Clarabel (interior point). The bound is not its objective
but a safe dual bound computed from its dual vector over a box that holds every AC
operating point (:func:`_safe_welfare_bound`), so solver tolerances can weaken it,
never make it wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandapower as pp
import pandas as pd
import scipy.sparse as sp

from gridmatch.grid_models.security import (
    LOADING_TOLERANCE_PERCENT,
    VOLTAGE_TOLERANCE_PU,
    SecurityLimits,
)
from gridmatch.matching.problem import SlotProblem
from gridmatch.units import mw_per_kwh

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Relative margin on the safe dual bound, for floating-point rounding of its sums.
SAFETY_MARGIN = 1e-9
# Current limits above this (per unit) bind nothing a power flow converges to (pandapower
# cases mark "unlimited" lines with 99,999 kA); they are left out, which only loosens
# the relaxation, and would spoil the conic solver's scaling.
MAX_LIMIT_PU = 1e3
# A recomputed base case must match pandapower's results this closely (pu and kA).
MODEL_MATCH_TOLERANCE = 1e-6
# Element tables whose presence makes an injection depend on the voltage, or adds buses
# and branches the relaxation does not model.
_UNSUPPORTED = ("gen", "xward", "dcline", "svc", "tcsc", "ssc", "vsc")
# pandapower's internal case models a three-winding transformer as three branches to a
# star bus, all high-voltage windings first, then all medium, then all low; a winding's
# current is measured at its own bus (the high winding's from end, the others' to end).
_WINDINGS = (("hv", "from"), ("mv", "to"), ("lv", "to"))
_LOAD_DEPENDENCE = ("const_z_p_percent", "const_i_p_percent", "const_z_q_percent")


@dataclass(frozen=True)
class BranchEnd:
    """The current rows of the limited branch ends (one row per end)."""

    bus: IntArray  # the end's bus (internal index)
    other: IntArray  # the bus at the branch's other end
    y_self: npt.NDArray[np.complex128]  # admittance from this end's voltage
    y_other: npt.NDArray[np.complex128]  # admittance from the other end's voltage
    limit_pu: FloatArray  # largest current allowed, per unit
    element: tuple[str, ...]  # line or trafo
    index: IntArray  # the element's pandapower index
    percent: FloatArray  # the loading (percent) that limit_pu stands for


@dataclass(frozen=True)
class AcCase:
    """One slot's base case in pandapower's internal per-unit model.

    Attributes
    ----------
    ybus
        Bus admittance matrix (internal bus order).
    p_pu, q_pu
        Net injection per bus without trades (generation minus demand, per unit).
    slack
        Buses whose injection is free (the external grids); ``w_slack`` their
        squared voltage set points.
    w_low, w_high
        Box on each bus's squared voltage magnitude.
    bus_of
        Internal bus index of every pandapower bus index (``-1``: not in the case).
    """

    base_mva: float
    ybus: sp.csr_matrix
    p_pu: FloatArray
    q_pu: FloatArray
    slack: IntArray
    w_slack: FloatArray
    w_low: FloatArray
    w_high: FloatArray
    ends: BranchEnd
    bus_of: dict[int, int]

    @property
    def n_bus(self) -> int:
        """Number of internal buses."""
        return int(self.ybus.shape[0])


@dataclass(frozen=True)
class AcBound:
    """The relaxation's answer for one slot."""

    bound_eur: float
    pair_quantity_kwh: FloatArray  # the relaxation's (not necessarily AC-feasible) trades
    solve_s: float


def unsupported_reason(net: pp.pandapowerNet) -> str | None:
    """Why the relaxation cannot model ``net`` (``None``: it can)."""
    for table in _UNSUPPORTED:
        frame = net.get(table)
        if isinstance(frame, pd.DataFrame) and len(frame) and frame.in_service.any():
            return f"in-service {table} elements"
    load = net.load[net.load.in_service]
    for column in _LOAD_DEPENDENCE:
        if column in load and bool((load[column].fillna(0.0) != 0.0).any()):
            return "voltage-dependent loads"
    return None


def ac_case(net: pp.pandapowerNet, before: pd.DataFrame, limits: SecurityLimits) -> AcCase | None:
    """Read the relaxation's data off a converged base-case power flow of ``net``.

    Parameters
    ----------
    net
        The slot's network right after a converged ``runpp`` without trades.
    before
        The security check's base-case state (``element``, ``index``, ``v`` columns as
        :class:`~gridmatch.grid_models.security.SlotGrid` keeps it).

    Returns
    -------
    AcCase or None
        ``None`` when the network has parts the relaxation does not model, or when the
        matrices read back do not reproduce pandapower's own results at the base case.
    """
    if unsupported_reason(net) is not None:
        return None
    ppc = net._ppc
    internal = ppc["internal"]
    base_mva = float(ppc["baseMVA"])
    bus_table = internal["bus"]
    ybus = sp.csr_matrix(internal["Ybus"])
    voltage = np.asarray(internal["V"], dtype=np.complex128)
    slack = np.asarray(internal["ref"], dtype=np.int64)
    lookup = np.asarray(net._pd2ppc_lookups["bus"])
    bus_of = {int(b): int(lookup[b]) for b in net.bus.index if b < lookup.size}
    # Columns PD = 2, QD = 3, BASE_KV = 9 of pandapower's (MATPOWER) bus table.
    p_pu = -bus_table[:, 2].real / base_mva
    q_pu = -bus_table[:, 3].real / base_mva
    state = _values(before)
    ends = _branch_ends(net, internal, base_mva, state, limits)
    w_low, w_high = _voltage_box(net, bus_of, ybus.shape[0], state, limits)
    w_high = _bounded_through_branches(w_high, ends)
    case = AcCase(
        base_mva=base_mva,
        ybus=ybus,
        p_pu=p_pu,
        q_pu=q_pu,
        slack=slack,
        w_slack=np.abs(voltage[slack]) ** 2,
        w_low=w_low,
        w_high=w_high,
        ends=ends,
        bus_of=bus_of,
    )
    return case if _reproduces(net, case, voltage) else None


def _values(before: pd.DataFrame) -> dict[tuple[str, int], float]:
    return {
        (str(e), int(i)): float(v)
        for e, i, v in zip(before.element, before["index"], before.v, strict=True)
    }


def _branch_ends(
    net: pp.pandapowerNet,
    internal: dict[str, object],
    base_mva: float,
    state: dict[tuple[str, int], float],
    limits: SecurityLimits,
) -> BranchEnd:
    """Return the current rows of both ends of every in-service line and transformer."""
    branch = np.asarray(internal["branch"])
    yf = sp.csr_matrix(internal["Yf"])
    yt = sp.csr_matrix(internal["Yt"])
    in_case = np.asarray(internal["branch_is"], dtype=bool)
    row_of = np.cumsum(in_case) - 1
    kv = np.asarray(internal["bus"])[:, 9].real
    lookups = net._pd2ppc_lookups["branch"]
    columns: dict[str, list[object]] = {
        k: [] for k in ("bus", "other", "ys", "yo", "limit", "element", "index", "percent")
    }

    def add_end(matrix: sp.csr_matrix, row: int, end: int, other: int, limit_ka: float) -> None:
        span = slice(matrix.indptr[row], matrix.indptr[row + 1])
        entries = dict(zip(matrix.indices[span], matrix.data[span], strict=True))
        columns["bus"].append(end)
        columns["other"].append(other)
        columns["ys"].append(complex(entries.get(end, 0.0)))
        columns["yo"].append(complex(entries.get(other, 0.0)) if other != end else 0.0)
        columns["limit"].append(limit_ka * math.sqrt(3.0) * kv[end] / base_mva)
        columns["element"].append(element)
        columns["index"].append(int(index))
        columns["percent"].append(percent)

    for element, table in (("line", net.line), ("trafo", net.trafo)):
        if element not in lookups:
            continue
        first, _ = lookups[element]
        for position, (index, row) in enumerate(table.iterrows()):
            if not bool(row.in_service) or not in_case[first + position]:
                continue
            r = int(row_of[first + position])
            f, t = int(branch[r, 0].real), int(branch[r, 1].real)
            percent = _limit(state.get((element, int(index)), math.nan), element, limits)
            if element == "line":
                rated_ka = float(row.max_i_ka) * float(row.df) * float(row.parallel)
                add_end(yf, r, f, t, rated_ka * percent / 100.0)
                add_end(yt, r, t, f, rated_ka * percent / 100.0)
            else:
                rated_mva = float(row.sn_mva) * float(row.parallel) * percent / 100.0
                add_end(yf, r, f, t, rated_mva / (math.sqrt(3.0) * float(row.vn_hv_kv)))
                add_end(yt, r, t, f, rated_mva / (math.sqrt(3.0) * float(row.vn_lv_kv)))
    if "trafo3w" in lookups:
        element = "trafo3w"
        first, _ = lookups[element]
        n = len(net.trafo3w)
        for position, (index, row) in enumerate(net.trafo3w.iterrows()):
            percent = _limit(state.get((element, int(index)), math.nan), element, limits)
            for k, (winding, side) in enumerate(_WINDINGS):
                at = first + k * n + position
                if not bool(row.in_service) or not in_case[at]:
                    continue
                r = int(row_of[at])
                f, t = int(branch[r, 0].real), int(branch[r, 1].real)
                rated_mva = float(row[f"sn_{winding}_mva"]) * percent / 100.0
                limit_ka = rated_mva / (math.sqrt(3.0) * float(row[f"vn_{winding}_kv"]))
                if side == "from":
                    add_end(yf, r, f, t, limit_ka)
                else:
                    add_end(yt, r, t, f, limit_ka)
    return BranchEnd(
        bus=np.asarray(columns["bus"], dtype=np.int64),
        other=np.asarray(columns["other"], dtype=np.int64),
        y_self=np.asarray(columns["ys"], dtype=np.complex128),
        y_other=np.asarray(columns["yo"], dtype=np.complex128),
        limit_pu=np.asarray(columns["limit"], dtype=np.float64),
        element=tuple(str(e) for e in columns["element"]),
        index=np.asarray(columns["index"], dtype=np.int64),
        percent=np.asarray(columns["percent"], dtype=np.float64),
    )


def _limit(before: float, element: str, limits: SecurityLimits) -> float:
    """Return the loading limit in percent (an overloaded element may not get worse)."""
    limit = (
        limits.max_line_loading_percent if element == "line" else limits.max_trafo_loading_percent
    )
    if math.isfinite(before):
        limit = max(limit, before)
    return limit + LOADING_TOLERANCE_PERCENT


def _voltage_box(
    net: pp.pandapowerNet,
    bus_of: dict[int, int],
    n_bus: int,
    state: dict[tuple[str, int], float],
    limits: SecurityLimits,
) -> tuple[FloatArray, FloatArray]:
    """Box on ``|V|^2`` per internal bus: the band, widened to the base value if outside."""
    w_low = np.zeros(n_bus)
    w_high = np.full(n_bus, np.inf)
    for bus in net.bus.index[net.bus.in_service.to_numpy(dtype=bool)]:
        before = state.get(("bus", int(bus)), math.nan)
        k = bus_of.get(int(bus), -1)
        if not math.isfinite(before) or not 0 <= k < n_bus:
            continue  # a bus with no power flow result carries nothing
        low = min(limits.vm_min_pu, before) - VOLTAGE_TOLERANCE_PU
        high = max(limits.vm_max_pu, before) + VOLTAGE_TOLERANCE_PU
        # Buses merged by closed switches share one voltage: both bands hold.
        w_low[k] = max(w_low[k], max(low, 0.0) ** 2)
        w_high[k] = min(w_high[k], high**2)
    return w_low, w_high


def _bounded_through_branches(w_high: FloatArray, ends: BranchEnd) -> FloatArray:
    """Bound ``|V|^2`` of buses no band holds (a transformer's star point) by their branches.

    A limited branch end's current ``I = y_self V_end + y_other V_k`` gives
    ``|V_k| <= (|I|max + |y_self| |V_end|max) / |y_other|`` at every secure operating
    point; the safe dual bound needs such a finite box on every voltage.
    """
    w_high = w_high.copy()
    for k in np.flatnonzero(~np.isfinite(w_high)):
        beside = (ends.other == k) & (ends.bus != k) & np.isfinite(w_high[ends.bus])
        beside &= np.abs(ends.y_other) > 0
        if not beside.any():
            continue
        v_max = (
            ends.limit_pu[beside] + np.abs(ends.y_self[beside]) * np.sqrt(w_high[ends.bus[beside]])
        ) / np.abs(ends.y_other[beside])
        w_high[k] = float(np.min(v_max)) ** 2
    return w_high


def _reproduces(net: pp.pandapowerNet, case: AcCase, voltage: npt.NDArray[np.complex128]) -> bool:
    """Whether the case's data give back pandapower's base-case results."""
    injection = voltage * np.conj(case.ybus @ voltage)
    free = np.zeros(case.n_bus, dtype=bool)
    free[case.slack] = True
    mismatch = np.abs(injection - (case.p_pu + 1j * case.q_pu))[~free]
    if mismatch.size and float(mismatch.max()) > MODEL_MATCH_TOLERANCE:
        return False
    for bus, k in case.bus_of.items():
        vm = float(net.res_bus.vm_pu.get(bus, math.nan))
        if math.isfinite(vm) and abs(abs(voltage[k]) - vm) > MODEL_MATCH_TOLERANCE:
            return False
    ends = case.ends
    current = np.abs(ends.y_self * voltage[ends.bus] + ends.y_other * voltage[ends.other])
    percent_at_end = current / ends.limit_pu * ends.percent
    loading: dict[tuple[str, int], float] = {}
    for element, index, percent in zip(ends.element, ends.index, percent_at_end, strict=True):
        key = (element, int(index))
        # An element's loading is that of its more loaded end, as pandapower reports it.
        loading[key] = max(loading.get(key, 0.0), float(percent))
    for (element, index), percent in loading.items():
        reported = float(net[f"res_{element}"].loading_percent.get(index, math.nan))
        if not abs(percent - reported) <= MODEL_MATCH_TOLERANCE * max(1.0, abs(reported)):
            return False
    return True


def solve_ac_relaxation(
    case: AcCase, problem: SlotProblem, slot_hours: float, *, time_limit_s: float = 10.0
) -> AcBound | None:
    """Bound the welfare of every AC-secure trade set of ``problem`` from above.

    Returns
    -------
    AcBound or None
        ``None`` when Clarabel returns no usable dual vector or the safe bound is not
        finite (then no bound is claimed).
    """
    import time

    import clarabel

    began = time.perf_counter()
    program = _conic_program(case, problem, slot_hours)
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.max_threads = 1
    settings.time_limit = max(time_limit_s, 0.05)
    solver = clarabel.DefaultSolver(
        program.p, program.q, program.a, program.b, program.cones, settings
    )
    solution = solver.solve()
    if not solution.z or not np.all(np.isfinite(solution.z)):
        return None
    welfare = _safe_welfare_bound(program, np.asarray(solution.z, dtype=np.float64))
    if welfare is None:
        return None
    units = np.asarray(solution.x[: problem.n_pairs]) * program.pair_scale_kwh
    kwh = np.clip(units, 0.0, problem.pair_max_kwh())
    return AcBound(welfare, kwh, time.perf_counter() - began)


def _safe_welfare_bound(program: _ConicProgram, z: FloatArray) -> float | None:
    """Turn any dual vector into a rigorous bound, whatever the solver's accuracy.

    For ``z`` in the dual cone, every ``x`` with ``A x + s = b, s in K`` has
    ``q'x >= (q + A'z)'x - b'z``; over the box that holds every AC operating point
    (pair shares in [0, 1], ``w`` in its voltage box, ``|c|, |s| <= sqrt(w_i w_j)``), the
    right side is smallest at a vertex. ``z`` is first projected onto the dual cone
    (nonnegative part, second-order cones), so an inaccurate or stopped solve gives a
    weaker bound, never a wrong one (Neumaier and Shcherbina's safe dual bound).
    """
    z = z.copy()
    nonneg = slice(program.n_zero, program.n_zero + program.n_nonneg)
    z[nonneg] = np.maximum(z[nonneg], 0.0)
    soc = z[program.n_zero + program.n_nonneg :].reshape(-1, 4)
    t, v = soc[:, 0], soc[:, 1:]
    norm = np.linalg.norm(v, axis=1)
    inside = norm <= t
    zero = norm <= -t
    scale = np.where(norm > 0, (t + norm) / 2.0 / np.where(norm > 0, norm, 1.0), 0.0)
    projected = np.where(
        inside[:, None],
        soc,
        np.where(zero[:, None], 0.0, np.column_stack([(t + norm) / 2.0, v * scale[:, None]])),
    )
    z[program.n_zero + program.n_nonneg :] = projected.ravel()
    reduced = program.q + program.a.T @ z
    low, high = program.box_low, program.box_high
    # A coordinate with no finite side can only stay if it carries no cost at all.
    at_low = np.zeros_like(reduced)
    up, down = reduced > 0.0, reduced < 0.0
    at_low[up] = reduced[up] * low[up]
    at_low[down] = reduced[down] * high[down]
    if not np.all(np.isfinite(at_low)):
        return None
    lower_bound = float(at_low.sum() - program.b @ z)
    welfare = -lower_bound
    # Floating-point rounding of the sums above, not solver accuracy.
    return welfare + SAFETY_MARGIN * max(abs(welfare), 1.0)


@dataclass(frozen=True)
class _ConicProgram:
    p: sp.csc_matrix
    q: FloatArray
    a: sp.csc_matrix
    b: FloatArray
    cones: list[object]
    pair_scale_kwh: FloatArray  # kWh one unit of each pair's column stands for
    n_zero: int  # rows of the zero cone (equalities), first
    n_nonneg: int  # rows of the nonnegative cone, next; then 4 per second-order cone
    box_low: FloatArray  # a box holding every AC operating point, per variable
    box_high: FloatArray


def _conic_program(case: AcCase, problem: SlotProblem, slot_hours: float) -> _ConicProgram:
    """``min q'x  s.t.  A x + s = b, s in cones`` over ``[pairs | w | c | s]``."""
    import clarabel

    n_pairs, n_bus = problem.n_pairs, case.n_bus
    ybus = sp.coo_matrix(case.ybus)
    off = ybus.row != ybus.col
    edge_i = np.minimum(ybus.row[off], ybus.col[off])
    edge_j = np.maximum(ybus.row[off], ybus.col[off])
    edges, edge_of = np.unique(np.stack([edge_i, edge_j], axis=1), axis=0, return_inverse=True)
    n_edges = edges.shape[0]
    w0, c0, s0 = n_pairs, n_pairs + n_bus, n_pairs + n_bus + n_edges
    n_vars = s0 + n_edges
    blocks: list[tuple[sp.coo_matrix, FloatArray]] = []

    # Power balance of every bus but the slack (ZeroCone).
    g, bb = ybus.data.real, ybus.data.imag
    diag = ~off
    sign = np.where(ybus.row[off] < ybus.col[off], 1.0, -1.0)  # Im W_ij = -Im W_ji
    rows_p = np.concatenate([ybus.row[diag], ybus.row[off], ybus.row[off]])
    cols_p = np.concatenate([w0 + ybus.row[diag], c0 + edge_of, s0 + edge_of])
    vals_p = np.concatenate([g[diag], g[off], bb[off] * sign])
    vals_q = np.concatenate([-bb[diag], -bb[off], g[off] * sign])
    trade = _trade_injection(case, problem, slot_hours)  # (n_bus x n_pairs), pu per kWh
    balanced = np.setdiff1d(np.arange(n_bus), case.slack)
    keep = np.zeros(n_bus, dtype=bool)
    keep[balanced] = True
    for vals, base in ((vals_p, case.p_pu), (vals_q, case.q_pu)):
        network = sp.coo_matrix((vals, (rows_p, cols_p)), shape=(n_bus, n_vars)).tocsr()
        if base is case.p_pu:
            network = network - sp.hstack([trade, sp.csr_matrix((n_bus, n_vars - n_pairs))])
        blocks.append((sp.coo_matrix(network[keep]), base[keep]))
    slack_rows = sp.coo_matrix(
        (np.ones(case.slack.size), (np.arange(case.slack.size), w0 + case.slack)),
        shape=(case.slack.size, n_vars),
    )
    blocks.append((slack_rows, case.w_slack))
    n_zero = sum(block.shape[0] for block, _ in blocks)

    # Inequalities (NonnegativeCone): market capacities, voltage box, branch currents.
    inequalities = [
        *_market_rows(problem, n_vars),
        *_voltage_rows(case, w0, n_vars),
        _current_rows(case, edges, w0, c0, s0, n_vars),
    ]
    blocks.extend(inequalities)
    n_nonneg = sum(block.shape[0] for block, _ in inequalities)

    # |W_ij|^2 <= w_i w_j as ||(2c, 2s, w_i - w_j)|| <= w_i + w_j (SecondOrderCone(4)).
    e = np.arange(n_edges)
    i, j = edges[:, 0], edges[:, 1]
    soc_rows = np.concatenate([4 * e, 4 * e, 4 * e + 1, 4 * e + 2, 4 * e + 3, 4 * e + 3])
    soc_cols = np.concatenate([w0 + i, w0 + j, c0 + e, s0 + e, w0 + i, w0 + j])
    soc_vals = -np.concatenate(
        [
            np.ones(n_edges),
            np.ones(n_edges),
            2 * np.ones(n_edges),
            2 * np.ones(n_edges),
            np.ones(n_edges),
            -np.ones(n_edges),
        ]
    )
    blocks.append(
        (
            sp.coo_matrix((soc_vals, (soc_rows, soc_cols)), shape=(4 * n_edges, n_vars)),
            np.zeros(4 * n_edges),
        )
    )
    a = sp.vstack([block for block, _ in blocks]).tocsc()
    b = np.concatenate([rhs for _, rhs in blocks])
    q = np.zeros(n_vars)
    q[:n_pairs] = -problem.pair_welfare_eur_per_kwh
    cones: list[object] = [clarabel.ZeroConeT(n_zero), clarabel.NonnegativeConeT(n_nonneg)]
    cones.extend(clarabel.SecondOrderConeT(4) for _ in range(n_edges))
    # Pair columns in units of their largest quantity: kWh columns with per-unit
    # injections of 1e-5 per kWh leave the interior-point method "almost solved".
    scale = np.ones(n_vars)
    scale[:n_pairs] = np.maximum(problem.pair_max_kwh(), 1e-3)
    a = (a @ sp.diags(scale)).tocsc()
    w_high = case.w_high.copy()
    w_high[case.slack] = case.w_slack
    box_low = np.concatenate([np.zeros(n_pairs), case.w_low, -np.ones(2 * n_edges) * np.inf])
    magnitude = np.sqrt(w_high[i] * w_high[j])  # |W_ij| = |V_i||V_j| at any AC point
    box_high = np.concatenate(
        [problem.pair_max_kwh() / scale[:n_pairs], w_high, magnitude, magnitude]
    )
    box_low[n_pairs + n_bus :] = -np.concatenate([magnitude, magnitude])
    box_low[w0 + case.slack] = case.w_slack
    return _ConicProgram(
        p=sp.csc_matrix((n_vars, n_vars)),
        q=q * scale,
        a=a,
        b=b,
        cones=cones,
        pair_scale_kwh=scale[:n_pairs],
        n_zero=n_zero,
        n_nonneg=n_nonneg,
        box_low=box_low,
        box_high=box_high,
    )


def _trade_injection(case: AcCase, problem: SlotProblem, slot_hours: float) -> sp.csr_matrix:
    """Per-unit active power each pair's kWh inject at each internal bus."""
    per_kwh = mw_per_kwh(slot_hours) / case.base_mva
    sell = np.array([case.bus_of[int(b)] for b in problem.sell_bus[problem.pair_sell]])
    buy = np.array([case.bus_of[int(b)] for b in problem.buy_bus[problem.pair_buy]])
    pairs = np.arange(problem.n_pairs)
    return sp.coo_matrix(
        (
            np.concatenate([np.full(pairs.size, per_kwh), np.full(pairs.size, -per_kwh)]),
            (np.concatenate([sell, buy]), np.concatenate([pairs, pairs])),
        ),
        shape=(case.n_bus, problem.n_pairs),
    ).tocsr()


def _market_rows(problem: SlotProblem, n_vars: int) -> list[tuple[sp.coo_matrix, FloatArray]]:
    """``0 <= x <= pair max``, per buy and per sell order at most its quantity."""
    n = problem.n_pairs
    pairs = np.arange(n)
    bounds = sp.coo_matrix(
        (
            np.concatenate([np.ones(n), -np.ones(n)]),
            (np.arange(2 * n), np.concatenate([pairs, pairs])),
        ),
        shape=(2 * n, n_vars),
    )
    n_buy, n_sell = problem.buy_order.size, problem.sell_order.size
    buys = sp.coo_matrix((np.ones(n), (problem.pair_buy, pairs)), shape=(n_buy, n_vars))
    sells = sp.coo_matrix((np.ones(n), (problem.pair_sell, pairs)), shape=(n_sell, n_vars))
    return [
        (bounds, np.concatenate([problem.pair_max_kwh(), np.zeros(n)])),
        (buys, problem.buy_quantity_kwh.astype(np.float64)),
        (sells, problem.sell_quantity_kwh.astype(np.float64)),
    ]


def _voltage_rows(case: AcCase, w0: int, n_vars: int) -> list[tuple[sp.coo_matrix, FloatArray]]:
    """``w_low <= w <= w_high`` where the box is finite."""
    upper = np.flatnonzero(np.isfinite(case.w_high))
    lower = np.flatnonzero(case.w_low > 0.0)
    return [
        (
            sp.coo_matrix(
                (np.ones(upper.size), (np.arange(upper.size), w0 + upper)),
                shape=(upper.size, n_vars),
            ),
            case.w_high[upper],
        ),
        (
            sp.coo_matrix(
                (-np.ones(lower.size), (np.arange(lower.size), w0 + lower)),
                shape=(lower.size, n_vars),
            ),
            -case.w_low[lower],
        ),
    ]


def _current_rows(
    case: AcCase, edges: IntArray, w0: int, c0: int, s0: int, n_vars: int
) -> tuple[sp.coo_matrix, FloatArray]:
    """``|y_s|^2 w_f + |y_o|^2 w_t + 2 Re(y_s conj(y_o) W_ft) <= limit^2`` per branch end."""
    ends = case.ends
    limited = np.flatnonzero(ends.limit_pu <= MAX_LIMIT_PU)
    ends = BranchEnd(
        bus=ends.bus[limited],
        other=ends.other[limited],
        y_self=ends.y_self[limited],
        y_other=ends.y_other[limited],
        limit_pu=ends.limit_pu[limited],
        element=tuple(ends.element[k] for k in limited),
        index=ends.index[limited],
        percent=ends.percent[limited],
    )
    n = ends.bus.size
    a = ends.y_self * np.conj(ends.y_other)
    lo, hi = np.minimum(ends.bus, ends.other), np.maximum(ends.bus, ends.other)
    edge_index = {(int(x), int(y)): k for k, (x, y) in enumerate(edges)}
    edge = np.array([edge_index.get((int(x), int(y)), -1) for x, y in zip(lo, hi, strict=True)])
    # W_ft = c + j s when f < t, else its conjugate.
    orientation = np.where(ends.bus < ends.other, 1.0, -1.0)
    coupled = (edge >= 0) & (ends.bus != ends.other)
    rows = np.arange(n)
    parts_r = [rows, rows[coupled], rows[coupled], rows[coupled]]
    parts_c = [w0 + ends.bus, w0 + ends.other[coupled], c0 + edge[coupled], s0 + edge[coupled]]
    same = ends.bus == ends.other  # both ends on one bus: |y_s + y_o|^2 w
    self_weight = np.where(same, np.abs(ends.y_self + ends.y_other) ** 2, np.abs(ends.y_self) ** 2)
    parts_v = [
        self_weight,
        np.abs(ends.y_other[coupled]) ** 2,
        2.0 * a.real[coupled],
        -2.0 * a.imag[coupled] * orientation[coupled],
    ]
    matrix = sp.coo_matrix(
        (np.concatenate(parts_v), (np.concatenate(parts_r), np.concatenate(parts_c))),
        shape=(n, n_vars),
    )
    return matrix, ends.limit_pu**2
