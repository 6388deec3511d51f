r"""Sensitivities of bus voltages and branch loadings to active power injections.

Linearised around a converged pandapower AC power flow, from the Newton-Raphson
Jacobian pandapower keeps in ``net._ppc["internal"]``: an injection :math:`\delta P`
at bus :math:`k` (generator convention, reactive power unchanged) moves the state by

.. math::

    \begin{bmatrix} \Delta\theta \\ \Delta|V| \end{bmatrix}
    = J^{-1} \begin{bmatrix} \delta P\, e_k \\ 0 \end{bmatrix}, \qquad
    \Delta V = V \circ (j\,\Delta\theta + \Delta|V| / |V|),

and a branch current :math:`I_f = Y_f V` by
:math:`\Delta|I_f| = \mathrm{Re}(\bar I_f \circ Y_f \Delta V) / |I_f|`. Loadings are
pandapower's (current based): percent per kA of the side that is loaded most.

The slot's trade constraints (issue #3) are rows of these matrices times the trades'
bus injections. The AC power flow stays the judge: these are only first-order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandapower as pp
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from pandapower.pypower.dSbus_dV import dSbus_dV

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class InjectionSensitivities:
    """Change per MW injected at each of ``buses`` (columns).

    Attributes
    ----------
    buses
        pandapower bus indices of the columns.
    vm_pu_per_mw
        Rows: ``net.bus.index`` order (all buses; NaN for buses not in the power flow).
    line_loading_percent_per_mw
        Rows: ``net.line.index`` order (NaN for lines out of service).
    trafo_loading_percent_per_mw
        Rows: ``net.trafo.index`` order (NaN for transformers out of service).
    trafo3w_loading_percent_per_mw
        Rows: ``net.trafo3w.index`` order (NaN for those out of service): of the winding
        loaded most at the base point, as pandapower's loading is that winding's.
    """

    buses: npt.NDArray[np.int64]
    vm_pu_per_mw: FloatArray
    line_loading_percent_per_mw: FloatArray
    trafo_loading_percent_per_mw: FloatArray
    trafo3w_loading_percent_per_mw: FloatArray


def injection_sensitivities(net: pp.pandapowerNet, buses: npt.ArrayLike) -> InjectionSensitivities:
    """Linearise the converged power flow in ``net`` around its current state.

    Parameters
    ----------
    net
        A network on which ``pandapower.runpp`` has just converged.
    buses
        pandapower bus indices to inject at.

    Raises
    ------
    ValueError
        If ``net`` holds no converged power flow.
    """
    if not net.converged:
        raise ValueError("the network holds no converged power flow")
    bus_columns = np.asarray(buses, dtype=np.int64)
    internal = net._ppc["internal"]
    base_mva = float(internal["baseMVA"])
    voltage = np.asarray(internal["V"])
    pv, pq = np.asarray(internal["pv"]), np.asarray(internal["pq"])
    pvpq = np.concatenate([pv, pq])
    jacobian = _jacobian(internal["Ybus"], voltage, pvpq, pq)
    lookup = np.asarray(net._pd2ppc_lookups["bus"])

    # One right-hand side per bus column: 1 MW in per-unit at its P-mismatch row.
    position = np.full(voltage.size, -1)
    position[pvpq] = np.arange(pvpq.size)
    rhs = np.zeros((jacobian.shape[0], bus_columns.size))
    for column, bus in enumerate(bus_columns.tolist()):
        row = position[lookup[bus]]
        if row >= 0:  # an injection at the slack bus changes nothing inside the grid
            rhs[row, column] = 1.0 / base_mva
    solution = spla.splu(jacobian).solve(rhs)
    d_angle = np.zeros((voltage.size, bus_columns.size))
    d_magnitude = np.zeros((voltage.size, bus_columns.size))
    d_angle[pvpq] = solution[: pvpq.size]
    d_magnitude[pq] = solution[pvpq.size :]
    vm = np.abs(voltage)[:, None]
    d_voltage = voltage[:, None] * (1j * d_angle + d_magnitude / vm)

    vm_rows = np.full((len(net.bus), bus_columns.size), np.nan)
    in_flow = net.res_bus.vm_pu.reindex(net.bus.index).notna().to_numpy()
    vm_rows[in_flow] = d_magnitude[lookup[net.bus.index.to_numpy()[in_flow]]]

    branch_current = _branch_current_sensitivity(internal, voltage, d_voltage, base_mva)
    return InjectionSensitivities(
        buses=bus_columns,
        vm_pu_per_mw=vm_rows,
        line_loading_percent_per_mw=_loading_rows(net, "line", branch_current),
        trafo_loading_percent_per_mw=_loading_rows(net, "trafo", branch_current),
        trafo3w_loading_percent_per_mw=_trafo3w_loading_rows(net, branch_current),
    )


def _jacobian(
    ybus: sp.csr_matrix,
    voltage: npt.NDArray[np.complex128],
    pvpq: npt.NDArray[np.int64],
    pq: npt.NDArray[np.int64],
) -> sp.csc_matrix:
    """Newton-Raphson Jacobian at the converged voltages.

    Built here rather than read from pandapower: the one it keeps belongs to the last
    iterate before the final update, and a recycled run that converges at once keeps
    none.
    """
    ds_dvm, ds_dva = dSbus_dV(ybus, voltage)
    jacobian = sp.vstack(
        [
            sp.hstack([ds_dva[pvpq][:, pvpq].real, ds_dvm[pvpq][:, pq].real]),
            sp.hstack([ds_dva[pq][:, pvpq].imag, ds_dvm[pq][:, pq].imag]),
        ],
        format="csc",
    )
    return jacobian


def _branch_current_sensitivity(
    internal: dict[str, object],
    voltage: npt.NDArray[np.complex128],
    d_voltage: npt.NDArray[np.complex128],
    base_mva: float,
) -> dict[str, FloatArray]:
    """Currents (kA) and their change (kA per MW) at both ends of every branch."""
    branch = np.asarray(internal["branch"])
    base_kv = np.asarray(internal["bus"])[:, 9].real  # BASE_KV column
    out: dict[str, FloatArray] = {}
    for side, admittance, column in (("from", internal["Yf"], 0), ("to", internal["Yt"], 1)):
        ends = branch[:, column].real.astype(int)
        current = np.asarray(admittance @ voltage)  # type: ignore[operator]
        d_current = np.asarray(admittance @ d_voltage)  # type: ignore[operator]
        magnitude = np.abs(current)
        safe = np.where(magnitude > 0, magnitude, 1.0)[:, None]
        d_magnitude = np.where(
            magnitude[:, None] > 0, (np.conj(current)[:, None] * d_current).real / safe, 0.0
        )
        ka_per_pu = base_mva / (np.sqrt(3.0) * base_kv[ends])
        out[f"{side}_ka"] = (magnitude * ka_per_pu)[:, None]
        out[f"d_{side}_ka"] = d_magnitude * ka_per_pu[:, None]
    return out


def _loading_rows(
    net: pp.pandapowerNet, element: str, current: dict[str, FloatArray]
) -> FloatArray:
    table = net[element]
    result = net[f"res_{element}"]
    rows = np.full((len(table), current["d_from_ka"].shape[1]), np.nan)
    if element not in net._pd2ppc_lookups["branch"]:
        return rows
    start, stop = net._pd2ppc_lookups["branch"][element]
    positions, ppc_rows = _in_flow(net, start, stop)
    loading = result.loading_percent.to_numpy()[positions][:, None]
    # pandapower's loading uses the side that is loaded most; at the base point the
    # ratio loading / current of that side is constant, so it converts kA to percent.
    from_ka, to_ka = current["from_ka"][ppc_rows], current["to_ka"][ppc_rows]
    scale_from, scale_to = _side_scales(net, element, positions)
    use_from = from_ka * scale_from >= to_ka * scale_to
    side_ka = np.where(use_from, from_ka, to_ka)
    d_side_ka = np.where(use_from, current["d_from_ka"][ppc_rows], current["d_to_ka"][ppc_rows])
    safe_ka = np.where(side_ka > 0, side_ka, 1.0)
    rows[positions] = np.where(side_ka > 0, loading / safe_ka * d_side_ka, 0.0)
    return rows


def _in_flow(
    net: pp.pandapowerNet, start: int, stop: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return which of the branches ``start:stop`` are in the power flow, and their rows.

    pandapower's branch lookup indexes all branches in table order; the Jacobian's
    arrays keep those in service between two energised buses (its ``branch_is``).

    Returns
    -------
    tuple of numpy.ndarray
        Positions within ``start:stop`` of the branches in the flow, and their rows in
        the internal (Jacobian) arrays.
    """
    alive = np.asarray(net._ppc["internal"]["branch_is"], dtype=bool)
    internal_row = np.cumsum(alive) - 1
    positions = np.flatnonzero(alive[start:stop])
    return positions, internal_row[start:stop][positions]


def _trafo3w_loading_rows(net: pp.pandapowerNet, current: dict[str, FloatArray]) -> FloatArray:
    """Return the loading rows of three-winding transformers (percent per MW injected).

    pandapower models each as three branches to a star point, all high-voltage
    windings first, then all medium, then all low; a winding's loading is its current
    at its own bus (the high winding's from end, the others' to end) times
    ``vn_kv * sqrt(3) / sn_mva``, and the transformer's is that of the winding loaded most.
    """
    table = net.trafo3w
    n = len(table)
    rows = np.full((n, current["d_from_ka"].shape[1]), np.nan)
    if n == 0 or "trafo3w" not in net._pd2ppc_lookups["branch"]:
        return rows
    start, _ = net._pd2ppc_lookups["branch"]["trafo3w"]
    most = np.full(n, -np.inf)
    for k, (winding, side) in enumerate((("hv", "from"), ("mv", "to"), ("lv", "to"))):
        live, ppc_rows = _in_flow(net, start + k * n, start + (k + 1) * n)
        percent_per_ka = (
            table[f"vn_{winding}_kv"].to_numpy()[live]
            * np.sqrt(3.0)
            / table[f"sn_{winding}_mva"].to_numpy()[live]
            * 100.0
        )
        loading = current[f"{side}_ka"][ppc_rows, 0] * percent_per_ka
        higher = loading > most[live]
        chosen = live[higher]
        most[chosen] = loading[higher]
        rows[chosen] = current[f"d_{side}_ka"][ppc_rows[higher]] * percent_per_ka[higher, None]
    return rows


def _side_scales(
    net: pp.pandapowerNet, element: str, positions: npt.NDArray[np.int64]
) -> tuple[FloatArray, FloatArray]:
    """Weights that make from/to currents comparable as loadings (rated current ~ 1/kV)."""
    if element == "trafo":
        table = net.trafo
        return (
            table.vn_hv_kv.to_numpy()[positions][:, None],
            table.vn_lv_kv.to_numpy()[positions][:, None],
        )
    ones = np.ones((positions.size, 1))
    return ones, ones
