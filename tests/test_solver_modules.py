"""A backend's slow imports are loaded before the slots' clock starts, in every process.

The first slot with pairs used to import numba (the seller-DP start's kernels) out of
its share of the time limit: under load it stopped early and the day's trades differed
from a run that had numba loaded already (serial against parallel, reruns).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gridmatch.matching.backends.base import Backend, BackendKind
from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.matching.problem import SlotProblem, build_slot_problems
from gridmatch.matching.solution import (
    SlotSolution,
    SolutionStatus,
    SolveOptions,
    TerminationCondition,
)

# A module nothing in gridmatch or its tests imports: its presence shows the preload ran.
MARKER = "tabnanny"


class _Recording(Backend):
    name = "recording"
    solver = "none"
    kind = BackendKind.HEURISTIC
    description = "answers nothing; tells whether the marker was loaded when it solved"
    requires = ()
    preload = (MARKER,)

    def solve_slot(
        self, problem: SlotProblem, options: SolveOptions, time_limit_s: float
    ) -> SlotSolution:
        # Zero kWh for a slot with the marker loaded, one for a slot without (a flag).
        loaded = MARKER in sys.modules
        return SlotSolution(
            problem.slot,
            np.full(problem.n_pairs, 0.0 if loaded else 1.0),
            None,
            TerminationCondition.CONVERGED,
            SolutionStatus.FEASIBLE,
            0.0,
        )


def _problems(n_slots: int) -> list[SlotProblem]:
    orders = []
    for slot in range(n_slots):
        orders.append(Order(f"s{slot}", "s", Side.SELL, 1, slot, 4000.0, 0.05, True))
        orders.append(Order(f"b{slot}", "b", Side.BUY, 1, slot, 2000.0, 0.30, True))
    return build_slot_problems(OrderBook(orders), MarketRules(grid_fee_eur_per_kwh=0.01))


@pytest.mark.parametrize("threads", [1, 2])
def test_preloaded_modules_are_there_when_the_first_slot_solves(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, MARKER, raising=False)
    answers = _Recording().solve_slots(_problems(3), SolveOptions(threads=threads))
    assert [float(a.pair_quantity_kwh.sum()) for a in answers] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("name", ["highspy", "cpsat", "mulknap"])
def test_backends_with_a_seller_dp_start_preload_its_kernels(name: str) -> None:
    assert "gridmatch.matching.knapsack_exact" in get_backend(name).preload
