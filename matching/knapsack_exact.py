r"""Exact single 0/1 knapsacks and subset-sum filling, the parts of a MULKNAP-style solver.

Written from the published ideas (Dantzig's bound; Dembo and Hammer's reduction;
Balas and Zemel's core; Pisinger, "An exact algorithm for large multiple knapsack
problems", EJOR 114, 1999), not from any code.

:func:`solve_knapsack` solves :math:`\max \sum p_j x_j` s.t. :math:`\sum w_j x_j \le C`,
:math:`x \in \{0,1\}^n` with integer weights (Wh) and real profits (EUR):

1. Sort by efficiency :math:`p_j / w_j`; the break item :math:`b` is the first that
   does not fit; :math:`r = p_b / w_b`. The Dantzig bound
   :math:`U = \sum_{j<b} p_j + r (C - \sum_{j<b} w_j)` is the LP optimum.
2. A lower bound :math:`L` from a feasible solution: greedy, then exact dynamic
   programming over a window of items around the break item (the core), the items
   before it fixed to 1 and after it to 0.
3. Reduction: with :math:`x_j` forced away from its LP value, the LP dual with price
   :math:`r` bounds every solution by :math:`U - |p_j - r w_j|`. Every item whose bound
   is at most :math:`L` can be fixed; the rest (the reduced core :math:`J`) are solved
   exactly by dynamic programming over the capacity the fixed items leave.

Any solution that differs from the fixing on some fixed item is worth at most
:math:`L`, and every other one is covered by the DP, so the answer is optimal. Profit
comparisons carry a tolerance of :data:`PROFIT_TOLERANCE` relative to :math:`U`.

The kernels are compiled by numba (a dependency of pandapower already): the DP is a
loop over items and capacities that numpy cannot vectorise without a temporary per
item, and numba runs it at C speed with the reconstruction table in one byte per cell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Relative to the bound: profits are sums of EUR amounts, exact to about 1e-12.
PROFIT_TOLERANCE = 1e-9
# Largest DP (items x capacity cells, one bit each: 125 MB) a solve may run; about 1 s.
MAX_DP_CELLS = 1_000_000_000
# Largest capacity a DP runs over: its value array is 8 bytes per Wh (160 MB here).
MAX_DP_CAPACITY_WH = 20_000_000
# The DP size up to which the Dantzig bound is tried before the cardinality bound.
QUICK_DP_CELLS = 20_000_000
_CORE_WINDOWS = (16, 64, 256, 1024)
# Golden-section steps for the cardinality multiplier: the interval shrinks by 0.618^n.
_GOLDEN_STEPS = 40


@dataclass(frozen=True)
class KnapsackAnswer:
    """An exact (or, if ``proven`` is false, best found) single-knapsack solution.

    Attributes
    ----------
    chosen
        Which items are taken, in the caller's order.
    value
        Profit of ``chosen``.
    upper_bound
        Proven upper bound on the optimum (``value`` when ``proven``, within tolerance).
    proven
        Whether ``chosen`` is proven optimal, to :data:`PROFIT_TOLERANCE` relative to
        the bound (``upper_bound`` is then ``value`` plus that tolerance).
    """

    chosen: BoolArray
    value: float
    upper_bound: float
    proven: bool


@numba.njit(cache=True)
def _dp(weights: IntArray, profits: FloatArray, capacity: int) -> tuple[float, BoolArray]:
    """Exact 0/1 knapsack by dynamic programming over capacity (ties to earlier items).

    The reconstruction table holds one bit per (item, capacity) cell.
    """
    n = weights.size
    best = np.zeros(capacity + 1)
    words = capacity // 64 + 1
    taken = np.zeros((n, words), dtype=np.uint64)
    one = np.uint64(1)
    for i in range(n):
        w = weights[i]
        p = profits[i]
        for c in range(capacity, w - 1, -1):
            candidate = best[c - w] + p
            if candidate > best[c] + 1e-12:
                best[c] = candidate
                taken[i, c >> 6] |= one << np.uint64(c & 63)
    chosen = np.zeros(n, dtype=np.bool_)
    c = capacity
    for i in range(n - 1, -1, -1):
        if (taken[i, c >> 6] >> np.uint64(c & 63)) & one:
            chosen[i] = True
            c -= weights[i]
    return best[capacity], chosen


@numba.njit(cache=True)
def _subset_sum(weights: IntArray, capacity: int) -> BoolArray:
    """Items whose weights sum to the most that fits ``capacity`` (exact, by DP)."""
    n = weights.size
    reach = np.zeros(capacity + 1, dtype=np.bool_)
    reach[0] = True
    first = np.full(capacity + 1, -1, dtype=np.int64)  # item that first reached c
    for i in range(n):
        w = weights[i]
        for c in range(capacity, w - 1, -1):
            if not reach[c] and reach[c - w]:
                reach[c] = True
                first[c] = i
    c = capacity
    while not reach[c]:
        c -= 1
    chosen = np.zeros(n, dtype=np.bool_)
    # first[c] was set from a state reached by strictly earlier items: walk back.
    while c > 0:
        i = first[c]
        chosen[i] = True
        c -= weights[i]
    return chosen


def dp_knapsack(weights_wh: IntArray, profits_eur: FloatArray, capacity_wh: int) -> BoolArray:
    """Solve a 0/1 knapsack by plain DP over capacity; ties go to the earlier items.

    Returns
    -------
    numpy.ndarray of bool
        Which items to take.
    """
    if weights_wh.size == 0 or capacity_wh <= 0:
        return np.zeros(weights_wh.size, dtype=bool)
    if capacity_wh > MAX_DP_CAPACITY_WH:
        raise ValueError(f"a DP over {capacity_wh} Wh would need {8 * capacity_wh} bytes")
    fits = weights_wh <= capacity_wh
    chosen = np.zeros(weights_wh.size, dtype=bool)
    index = np.flatnonzero(fits)
    _, picked = _dp(
        weights_wh[index].astype(np.int64), profits_eur[index].astype(float), capacity_wh
    )
    chosen[index[picked]] = True
    return chosen


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, so no solve pays for it."""
    _dp(np.array([1], dtype=np.int64), np.array([1.0]), 1)
    _subset_sum(np.array([1], dtype=np.int64), 1)


def solve_knapsack(
    weights_wh: IntArray, profits_eur: FloatArray, capacity_wh: int, deadline: float
) -> KnapsackAnswer:
    """Solve a 0/1 knapsack exactly by core, reduction and DP (module docstring).

    Parameters
    ----------
    weights_wh
        Positive integer weights.
    profits_eur
        Profits; items with a non-positive profit or a weight above the capacity are
        never taken.
    capacity_wh
        The knapsack's capacity.
    deadline
        ``time.perf_counter()`` value after which the solve stops with the best found.

    Returns
    -------
    KnapsackAnswer
    """
    n = weights_wh.size
    usable = np.flatnonzero((profits_eur > 0.0) & (weights_wh <= capacity_wh))
    chosen = np.zeros(n, dtype=bool)
    if usable.size == 0:
        return KnapsackAnswer(chosen, 0.0, 0.0, True)
    # Efficiency order, ties by position: the answer does not depend on sort stability.
    order = usable[np.lexsort((usable, -profits_eur[usable] / weights_wh[usable]))]
    w = weights_wh[order]
    p = profits_eur[order]
    cumulative = np.cumsum(w)
    b = int(np.searchsorted(cumulative, capacity_wh, side="right"))
    if b == order.size:  # everything fits
        chosen[order] = True
        total = float(p.sum())
        return KnapsackAnswer(chosen, total, total, True)
    take = _greedy(w, p, capacity_wh, b)
    # The Dantzig bound first (cheap); the cardinality row only if that does not prove.
    bound = np.inf
    # The Dantzig try stops at a small DP: a larger one is cheaper after the stronger bound.
    for bound_of, max_cells in (
        (_dantzig_bound, QUICK_DP_CELLS),
        (_lagrangian_bound, MAX_DP_CELLS),
    ):
        if bound < np.inf and time.perf_counter() > deadline:
            break  # out of time: the Dantzig bound stands
        candidate, reduced = bound_of(w, p, capacity_wh)
        bound = min(bound, candidate)
        take, proven = _prove(w, p, capacity_wh, b, take, (candidate, reduced), max_cells, deadline)
        if proven:
            chosen[order[take]] = True
            value = float(p[take].sum())
            # Items were fixed up to the tolerance: the optimum may exceed `value` by it.
            slack = PROFIT_TOLERANCE * max(1.0, candidate)
            return KnapsackAnswer(chosen, value, min(value + slack, float(bound)), True)
    chosen[order[take]] = True
    return KnapsackAnswer(chosen, float(p[take].sum()), float(bound), False)


def _prove(
    w: IntArray,
    p: FloatArray,
    capacity: int,
    b: int,
    take: BoolArray,
    bound_and_reduced: tuple[float, FloatArray],
    max_cells: int,
    deadline: float,
) -> tuple[BoolArray, bool]:
    """Improve ``take`` over widening cores until the bound and reduction prove it."""
    bound, reduced = bound_and_reduced
    tolerance = PROFIT_TOLERANCE * max(1.0, bound)
    lp_one = reduced > 0.0
    slack = np.abs(reduced)
    before_break = np.arange(w.size) < b
    for window in _CORE_WINDOWS:
        if time.perf_counter() > deadline:
            break
        # A wider core gives a better lower bound, which fixes more items below.
        core = np.arange(max(b - window, 0), min(b + window, w.size))
        take = _better(p, take, _solve_with_fixing(w, p, capacity, before_break, core, max_cells))
        best = float(p[take].sum())
        # Reduction: items that cannot leave their LP value without falling to `best`.
        free = np.flatnonzero(bound - slack > best + tolerance)
        exact = _solve_with_fixing(w, p, capacity, lp_one, free, max_cells)
        if exact is _TOO_BIG:
            continue
        return _better(p, take, exact), True
    return take, False


def _dantzig_bound(w: IntArray, p: FloatArray, capacity: int) -> tuple[float, FloatArray]:
    """Return the LP (Dantzig) bound and each item's reduced cost at the break ratio."""
    return _bound_at(w, p, capacity, 0.0, 0)


def _bound_at(
    w: IntArray, p: FloatArray, capacity: int, mu: float, k: int
) -> tuple[float, FloatArray]:
    """Lagrangian bound for cardinality multiplier ``mu`` (best capacity multiplier)."""
    q = p - mu
    positive = np.flatnonzero(q > 0.0)
    by_ratio = positive[np.argsort(-q[positive] / w[positive], kind="stable")]
    cumulative = np.cumsum(w[by_ratio])
    b = int(np.searchsorted(cumulative, capacity, side="right"))
    ratio = 0.0 if b == by_ratio.size else float(q[by_ratio[b]]) / float(w[by_ratio[b]])
    reduced = q - ratio * w
    return ratio * capacity + mu * k + float(np.maximum(reduced, 0.0).sum()), reduced


def _lagrangian_bound(w: IntArray, p: FloatArray, capacity: int) -> tuple[float, FloatArray]:
    r"""Return the LP bound with a cardinality row, and each item's reduced cost.

    No solution takes more than :math:`k` items, the most of the lightest that fit.
    For multipliers :math:`r` (capacity) and :math:`\mu` (cardinality),
    :math:`rC + \mu k + \sum_j \max(0, p_j - r w_j - \mu)` bounds every solution;
    forcing :math:`x_j` away from its sign costs :math:`|p_j - r w_j - \mu|` of it.
    For each :math:`\mu` the best :math:`r` is the Dantzig break ratio of the profits
    :math:`p - \mu`; the bound is convex in :math:`\mu`, minimised by golden section
    (any :math:`\mu` gives a valid bound). On strongly correlated knapsacks
    (:math:`p = w + c`) the cardinality row closes what the Dantzig bound leaves open.
    """
    k = int(np.searchsorted(np.cumsum(np.sort(w)), capacity, side="right"))

    def at(mu: float) -> tuple[float, FloatArray]:
        return _bound_at(w, p, capacity, mu, k)

    low, high = 0.0, float(p.max())
    best_bound, best_reduced = at(0.0)
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(_GOLDEN_STEPS):
        a = high - golden * (high - low)
        c = low + golden * (high - low)
        (bound_a, reduced_a), (bound_c, reduced_c) = at(a), at(c)
        if bound_a <= bound_c:
            high = c
            candidate = (bound_a, reduced_a)
        else:
            low = a
            candidate = (bound_c, reduced_c)
        if candidate[0] < best_bound:
            best_bound, best_reduced = candidate
    return best_bound, best_reduced


# What _solve_with_fixing returns when the fixing leaves no feasible solution, and when
# its DP table would be too large.
_INFEASIBLE = np.zeros(0, dtype=bool)
_TOO_BIG = np.zeros(0, dtype=bool)


def _better(p: FloatArray, incumbent: BoolArray, candidate: BoolArray) -> BoolArray:
    """Return the candidate if it is a solution worth more than the incumbent."""
    if candidate.size and float(p[candidate].sum()) > float(p[incumbent].sum()):
        return candidate
    return incumbent


def _greedy(w: IntArray, p: FloatArray, capacity: int, b: int) -> BoolArray:
    """Items before the break item, then every later item that still fits."""
    take = np.zeros(w.size, dtype=bool)
    take[:b] = True
    room = capacity - int(w[:b].sum())
    for j in range(b, w.size):
        if w[j] <= room:
            take[j] = True
            room -= int(w[j])
    return take


def _solve_with_fixing(
    w: IntArray,
    p: FloatArray,
    capacity: int,
    fixed_one: BoolArray,
    free: IntArray,
    max_cells: int,
) -> BoolArray:
    """Best solution with the items outside ``free`` taken where ``fixed_one`` says."""
    fixed = fixed_one.copy()
    fixed[free] = False
    room = capacity - int(w[fixed].sum())
    if room < 0:
        return _INFEASIBLE
    if free.size * (room + 1) > max_cells or room > MAX_DP_CAPACITY_WH:
        return _TOO_BIG
    _, picked = _dp(w[free], p[free], room)
    fixed[free[picked]] = True
    return fixed


def fill_exactly(weights_wh: IntArray, capacity_wh: int) -> BoolArray:
    """Pick items that fill ``capacity_wh`` as fully as possible.

    First fit in decreasing weight, then an exact subset-sum over the last few items
    placed and the next few left out, widened until the knapsack is full or every
    item is in the pool (Pisinger's filling of a knapsack from the surrogate solution).
    """
    n = weights_wh.size
    order = np.lexsort((np.arange(n), -weights_wh))
    chosen = np.zeros(n, dtype=bool)
    room = capacity_wh
    for j in order.tolist():
        if weights_wh[j] <= room:
            chosen[j] = True
            room -= int(weights_wh[j])
    window = 32
    while room > 0 and not chosen.all():
        placed = order[chosen[order]][-window:]
        left = order[~chosen[order]][-window:]
        pool = np.concatenate([placed, left])
        pool_capacity = room + int(weights_wh[placed].sum())
        if pool.size * (pool_capacity + 1) > MAX_DP_CELLS or pool_capacity > MAX_DP_CAPACITY_WH:
            break
        picked = _subset_sum(weights_wh[pool], pool_capacity)
        chosen[pool] = False
        chosen[pool[picked]] = True
        room = capacity_wh - int(weights_wh[chosen].sum())
        if pool.size >= n:
            break
        window *= 4
    return chosen
