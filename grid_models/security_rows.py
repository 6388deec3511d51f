r"""Linear security rows of a slot, from the sensitivities at its base case.

Around the slot's operating point without trades (where pandapower's Jacobian gives
sensitivities :math:`g_e` per kWh injected at each order bus) element :math:`e`'s
value is modelled as :math:`v_e^0 + g_e^\top \iota`, and the row keeps it within

.. math::

    \mathrm{low}_e + \mu^{low}_e \le v_e^0 + g_e^\top \iota \le \mathrm{high}_e - \mu^{high}_e,

where the band is the security limit, or the element's own base value on the side
where it is already out of limits ("no worse"), and the margins :math:`\mu` start at
0. When the AC check rejects an allocation :math:`\hat\iota`, every violated
element's margin grows to the linearisation's error at :math:`\hat\iota` (at least
by the violation, plus a tenth of it for the next point's error), which excludes
:math:`\hat\iota` and whatever errs the same way near it.

Only elements the trades could push out of their band get a row at first: for each
element the largest and smallest change any balanced injection within the orders'
volumes can make is computed exactly (the dual of a one-constraint LP), and elements
that stay inside their band either way are left out until the AC check says otherwise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridmatch.grid_models.security import LOADING_TOLERANCE_PERCENT, VOLTAGE_TOLERANCE_PU
from gridmatch.matching.grid_rows import GridRows

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


# Each tightening adds this share of the violation on top of the measured error.
EXTRA_MARGIN_SHARE = 0.1


class SlotLinearisation:
    """The security rows of one slot and their margins, tightened round by round.

    Parameters
    ----------
    elements
        A :class:`~gridmatch.grid_models.security.SlotSecurity` element table (its
        ``before``, ``limit_low`` and ``limit_high``).
    sensitivity_per_kwh
        ``(n_elements, n_buses)`` change per kWh injected at ``buses``, at the base case.
    buses
        Sorted buses of the slot's orders.
    max_sold_kwh, max_bought_kwh
        Most the slot's orders can inject at / withdraw from each of ``buses``.
    """

    def __init__(
        self,
        elements: pd.DataFrame,
        sensitivity_per_kwh: FloatArray,
        buses: IntArray,
        max_sold_kwh: FloatArray,
        max_bought_kwh: FloatArray,
    ) -> None:
        self._element = elements.element.to_numpy()
        self._index = elements["index"].to_numpy(dtype=np.int64)
        self._before = elements.before.to_numpy(dtype=float)
        self._low, self._high = _bands(elements)
        usable = np.isfinite(self._before) & np.all(np.isfinite(sensitivity_per_kwh), axis=1)
        self._usable = usable
        self._g = np.where(usable[:, None], sensitivity_per_kwh, 0.0)
        self._buses = buses
        self._tolerance = np.where(
            self._element == "bus", VOLTAGE_TOLERANCE_PU, LOADING_TOLERANCE_PERCENT
        )
        self._margin_low = np.zeros(self._before.size)
        self._cuts: GridRows | None = None
        self._margin_high = np.zeros(self._before.size)
        base = np.where(usable, self._before, 0.0)
        highest = base + _max_balanced(self._g, max_sold_kwh, max_bought_kwh)
        lowest = base - _max_balanced(-self._g, max_sold_kwh, max_bought_kwh)
        self._active = usable & (
            (highest > self._high - self._tolerance) | (lowest < self._low + self._tolerance)
        )

    def tighten(
        self,
        after: FloatArray,
        violated: BoolArray,
        injection_kwh: FloatArray,
        *,
        add_margins: bool = True,
    ) -> bool:
        """Tighten the rows of the elements the AC check found violated at ``injection_kwh``.

        Parameters
        ----------
        after
            Each element's AC value with the rejected trades (aligned with the table).
        violated
            The check's verdict per element.
        injection_kwh
            The rejected trades' net injection at the buses.
        add_margins
            ``False`` only gives the violated elements a row. That is right for the
            unconstrained allocation, which can lie far outside the rows, where the
            linearisation's error says little about the error near them.

        Returns
        -------
        bool
            Whether any row changed (if not, the rows cannot exclude this point).
        """
        linear = self._before + self._g @ injection_kwh
        hit = violated & self._usable & np.isfinite(after)
        over = hit & (after > self._high)
        under = hit & (after < self._low)
        excess_high = after - self._high
        excess_low = self._low - after
        new_high = (
            np.maximum(self._margin_high + excess_high, after - linear)
            + EXTRA_MARGIN_SHARE * excess_high
        )
        new_low = (
            np.maximum(self._margin_low + excess_low, linear - after)
            + EXTRA_MARGIN_SHARE * excess_low
        )
        before_rows = self.rows()
        margin_high, margin_low = self._margin_high, self._margin_low
        self._margin_high = np.where(
            over, np.maximum(new_high, self._margin_high), self._margin_high
        )
        self._margin_low = np.where(under, np.maximum(new_low, self._margin_low), self._margin_low)
        self._active |= over | under
        if not add_margins:
            self._margin_high = margin_high
            self._margin_low = margin_low
        after_rows = self.rows()
        return not (
            before_rows.n_rows == after_rows.n_rows
            and np.array_equal(before_rows.lower, after_rows.lower)
            and np.array_equal(before_rows.upper, after_rows.upper)
        )

    def add_cut(
        self,
        after: FloatArray,
        violated: BoolArray,
        sensitivity_per_kwh: FloatArray,
        injection_kwh: FloatArray,
    ) -> bool:
        """Add tangent rows at a rejected point for its violated elements (Kelley's cuts).

        A margin on a base row cannot help where the row must stay open at 0 (an
        element already out of limits may not get worse, so its row ends at 0): a trade
        the base linearisation sees as neutral can still be slightly worse in AC. The
        tangent at the rejected point has the curvature's direction in it.

        Parameters
        ----------
        sensitivity_per_kwh
            Sensitivities at the rejected point (aligned with the element table).

        Returns
        -------
        bool
            Whether a row was added. It may still admit the point within the rows'
            tolerance (violations of 1e-9 pu happen): the AC check decides again.
        """
        usable = np.all(np.isfinite(sensitivity_per_kwh), axis=1) & np.isfinite(after)
        hit = np.flatnonzero(violated & self._usable & usable)
        if hit.size == 0:
            return False
        g = sensitivity_per_kwh[hit]
        offset = after[hit] - g @ injection_kwh
        cut = GridRows(
            buses=self._buses,
            coefficient_per_kwh=g,
            lower=np.minimum(self._low[hit] - offset, 0.0),
            upper=np.maximum(self._high[hit] - offset, 0.0),
            element=tuple(self._element[hit].tolist()),
            element_index=self._index[hit],
        )
        self._cuts = cut if self._cuts is None else self._cuts.extended(cut)
        return True

    def harm_per_kwh(
        self, after: FloatArray, violated: BoolArray, sell_bus: IntArray, buy_bus: IntArray
    ) -> FloatArray:
        """How much a kWh traded from ``sell_bus[i]`` to ``buy_bus[i]`` worsens the violations.

        Summed over the violated elements, each in the direction that makes it worse
        and as a share of its violation (so percent and pu rows weigh alike).
        """
        hit = violated & self._usable & np.isfinite(after)
        excess = np.maximum(np.maximum(after - self._high, self._low - after), 0.0)
        direction = np.where(after > self._high, 1.0, -1.0)
        weights = np.where(hit & (excess > 0.0), direction / np.where(excess > 0, excess, 1.0), 0.0)
        sell_column = np.searchsorted(self._buses, sell_bus)
        buy_column = np.searchsorted(self._buses, buy_bus)
        effect = self._g[:, sell_column] - self._g[:, buy_column]
        harm: FloatArray = np.maximum(weights[:, None] * effect, 0.0).sum(axis=0)
        return harm

    def rows(self) -> GridRows:
        """Return the current rows, one per active element, in element-table order."""
        rows = np.flatnonzero(self._active)
        base = self._before[rows]
        cuts = self._cuts
        # Trading nothing is secure by the rule; a row must never exclude it, even where
        # a margin would put it outside.
        lower = np.minimum(self._low[rows] + self._margin_low[rows] - base, 0.0)
        upper = np.maximum(self._high[rows] - self._margin_high[rows] - base, 0.0)
        base_rows = GridRows(
            buses=self._buses,
            coefficient_per_kwh=self._g[rows],
            lower=lower,
            upper=upper,
            element=tuple(self._element[rows].tolist()),
            element_index=self._index[rows],
        )
        return base_rows if cuts is None else base_rows.extended(cuts)


def _bands(elements: pd.DataFrame) -> tuple[FloatArray, FloatArray]:
    """Band each element must stay in: its limits, widened to its base value if out."""
    before = elements.before.to_numpy(dtype=float)
    low = elements.limit_low.to_numpy(dtype=float)
    high = elements.limit_high.to_numpy(dtype=float)
    known = np.isfinite(before)
    # "No worse": an element already beyond a limit may stay there, not go further.
    high = np.where(known & (before > high), before, high)
    low = np.where(known & (before < low), before, low)
    return low, high


def _max_balanced(g: FloatArray, sold: FloatArray, bought: FloatArray) -> FloatArray:
    r"""Return max :math:`g_e^\top\iota` per row, :math:`-B \le \iota \le S`, :math:`\sum\iota = 0`.

    By LP duality this equals :math:`\min_m \sum_k \max((g_k - m) S_k, -(g_k - m) B_k)`,
    a convex piecewise-linear function of :math:`m` whose minimum lies at the
    weighted median of :math:`g` where withdrawals below and injections above balance.
    """
    if g.shape[1] == 0:
        return np.zeros(g.shape[0])
    order = np.argsort(g, axis=1)
    g_sorted = np.take_along_axis(g, order, axis=1)
    sold_sorted = sold[order]
    bought_sorted = bought[order]
    # Slope of the dual to the right of the i-th sorted value.
    slope = np.cumsum(bought_sorted, axis=1) - (
        sold_sorted.sum(axis=1, keepdims=True) - np.cumsum(sold_sorted, axis=1)
    )
    pick = np.argmax(slope >= 0.0, axis=1)
    m = g_sorted[np.arange(g.shape[0]), pick][:, None]
    shifted = g - m
    best: FloatArray = np.maximum(shifted * sold, -shifted * bought).sum(axis=1)
    return best
