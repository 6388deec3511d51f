"""Merit-order greedy matching: what simple P2P platforms do. A heuristic baseline."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridmatch.matching.backends.base import HeuristicBackend
from gridmatch.matching.problem import SlotProblem

_TOLERANCE_KWH = 1e-9


def greedy_pair_kwh(problem: SlotProblem) -> npt.NDArray[np.float64]:
    """Match buys in merit order, each to its most valuable sellers first.

    Buys are taken by descending limit price; each takes the compatible sellers in
    descending pair welfare (cheapest offer plus fee first). An indivisible buy goes to
    the first seller with room for all of it. All-or-none sellers left partly sold
    are dropped and the pass repeated without them, so the result is always feasible.

    Returns
    -------
    numpy.ndarray
        kWh per pair of ``problem``.
    """
    n_buys = problem.buy_quantity_kwh.size
    # Pairs are sorted by buy; per buy, visit its pairs by welfare (ties: seller index).
    order = np.lexsort((problem.pair_sell, -problem.pair_welfare_eur_per_kwh, problem.pair_buy))
    starts = np.searchsorted(problem.pair_buy[order], np.arange(n_buys + 1))
    buy_order = np.lexsort((np.arange(n_buys), -problem.buy_limit_eur_per_kwh))

    excluded = np.zeros(problem.sell_quantity_kwh.size, dtype=bool)
    while True:
        pair_kwh = _one_pass(problem, order, starts, buy_order, excluded)
        sold = np.bincount(
            problem.pair_sell, weights=pair_kwh, minlength=problem.sell_quantity_kwh.size
        )
        partial = (
            problem.sell_all_or_none
            & (sold > _TOLERANCE_KWH)
            & (sold < problem.sell_quantity_kwh - _TOLERANCE_KWH)
        )
        if not partial.any():
            return pair_kwh
        excluded |= partial


def _one_pass(
    problem: SlotProblem,
    order: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    buy_order: npt.NDArray[np.int64],
    excluded: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    remaining = problem.sell_quantity_kwh.copy()
    remaining[excluded] = 0.0
    pair_kwh = np.zeros(problem.n_pairs)
    pair_sell = problem.pair_sell.tolist()
    for b in buy_order.tolist():
        need = float(problem.buy_quantity_kwh[b])
        divisible = bool(problem.buy_divisible[b])
        for p in order[starts[b] : starts[b + 1]].tolist():
            s = pair_sell[p]
            room = float(remaining[s])
            if divisible:
                take = min(need, room)
                if take <= _TOLERANCE_KWH:
                    continue
                pair_kwh[p] = take
                remaining[s] = room - take
                need -= take
                if need <= _TOLERANCE_KWH:
                    break
            elif room >= need:
                pair_kwh[p] = need
                remaining[s] = room - need
                break
    return pair_kwh


class GreedyBackend(HeuristicBackend):
    """Merit-order greedy; feasible, fast, with no optimality claim."""

    name = "greedy"
    description = "merit-order greedy heuristic (baseline)"

    def allocate(self, problem: SlotProblem) -> npt.NDArray[np.float64]:  # noqa: D102
        return greedy_pair_kwh(problem)
