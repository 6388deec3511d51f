r"""Linearised grid security rows of one slot, in terms of bus injections.

The grid layer (:mod:`gridmatch.grid_models.security_rows`) turns pandapower
sensitivities into rows; the matching layer only needs them as linear algebra, so
this module knows nothing of power flow. Row :math:`r` reads

.. math::

    \mathrm{lower}_r \le \sum_k a_{rk}\, \iota_k \le \mathrm{upper}_r,

where :math:`\iota_k` is the net kWh the slot's trades inject at bus :math:`k`
(sold minus bought). A trade of :math:`x` kWh from a seller at bus :math:`s` to a
buyer at bus :math:`b` contributes :math:`(a_{rs} - a_{rb})\,x`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Rows are in percent (loadings) or pu (voltages); HiGHS keeps rows to 1e-7 absolute.
ROW_TOLERANCE = 1e-6


@dataclass(frozen=True)
class GridRows:
    """Security rows of one slot.

    Attributes
    ----------
    buses
        Sorted pandapower bus indices of the injection columns: every order bus of the slot.
    coefficient_per_kwh
        ``(n_rows, n_buses)``: change of the row's quantity per kWh injected at each bus.
    lower, upper
        Row bounds (``-inf`` / ``inf`` where one-sided).
    element, element_index
        The grid element each row protects (``"line"``, ``"trafo"`` or ``"bus"`` and
        its pandapower index); one element may have several rows (cuts taken at
        different operating points).
    """

    buses: IntArray
    coefficient_per_kwh: FloatArray
    lower: FloatArray
    upper: FloatArray
    element: tuple[str, ...]
    element_index: IntArray

    def __post_init__(self) -> None:
        n_rows = self.lower.size
        if self.coefficient_per_kwh.shape != (n_rows, self.buses.size):
            raise ValueError("coefficient_per_kwh must be (rows, buses)")
        if self.upper.size != n_rows or len(self.element) != n_rows:
            raise ValueError("every row needs its bounds and its element")
        if np.any(np.diff(self.buses) <= 0):
            raise ValueError("buses must be sorted and distinct")
        if np.any(self.lower > 0.0) or np.any(self.upper < 0.0):
            # Trading nothing leaves the grid as it is, which the rule always accepts.
            raise ValueError("every row must admit the empty allocation (lower <= 0 <= upper)")

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.lower.size)

    def activity(self, injection_kwh: FloatArray) -> FloatArray:
        """Left-hand side of every row for net injections at :attr:`buses`."""
        values: FloatArray = self.coefficient_per_kwh @ injection_kwh
        return values

    def excess(self, injection_kwh: FloatArray) -> FloatArray:
        """How far each row is outside its bounds (0 inside)."""
        activity = self.activity(injection_kwh)
        return np.maximum(np.maximum(self.lower - activity, activity - self.upper), 0.0)

    def holds(self, injection_kwh: FloatArray) -> bool:
        """Return whether every row holds to :data:`ROW_TOLERANCE`."""
        return bool(np.all(self.excess(injection_kwh) <= ROW_TOLERANCE))

    def extended(self, more: GridRows) -> GridRows:
        """Return these rows followed by ``more`` (same buses)."""
        if not np.array_equal(self.buses, more.buses):
            raise ValueError("rows over different buses cannot be stacked")
        return GridRows(
            buses=self.buses,
            coefficient_per_kwh=np.vstack([self.coefficient_per_kwh, more.coefficient_per_kwh]),
            lower=np.concatenate([self.lower, more.lower]),
            upper=np.concatenate([self.upper, more.upper]),
            element=self.element + more.element,
            element_index=np.concatenate([self.element_index, more.element_index]),
        )

    def pair_coefficients(self, sell_bus: IntArray, buy_bus: IntArray) -> FloatArray:
        """``(n_rows, n)``: row change per kWh traded from ``sell_bus[i]`` to ``buy_bus[i]``."""
        sell_column = np.searchsorted(self.buses, sell_bus)
        buy_column = np.searchsorted(self.buses, buy_bus)
        coefficients: FloatArray = (
            self.coefficient_per_kwh[:, sell_column] - self.coefficient_per_kwh[:, buy_column]
        )
        return coefficients
