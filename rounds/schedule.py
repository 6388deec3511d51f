"""When rounds clear, which orders each one sees, and what earlier rounds left of them.

Rules (the ``rounds:`` section of scenario.yaml):

* Round ``k`` (1-based) clears at ``t_k = first_round_min + (k - 1) * interval_min``;
  rounds are held while some order's slot is still open.
* Slot ``s`` is open at ``t`` while ``t < s * slot_minutes - gate_closure_min``.
* Round ``k`` sees every order submitted at or before ``t_k`` whose slot is open and
  that has something left: an indivisible buy or an all-or-none sell matched once is
  gone; a divisible order carries what is left of it; an unmatched order carries whole.
* What is left of a divisible order is rounded *down* to whole Wh: trades may hold
  fractions of a Wh (grid rows make vertices fractional), while every book the engine
  sees keeps the whole-Wh quantities the orders file guarantees. So an order never
  trades more than its quantity over all rounds; it may leave less than 1 Wh unsold.
* The round's book is in time priority: submission time, then file row.
* Prepaid accounts (``accounts:``): a round may spend what an account held at the start
  of the day, plus its top-ups (``topups:``) up to the round's time, less what its
  trades of earlier rounds cost (quantity x (price + fee)). A buyer whose account holds
  nothing (less than 0.1 cent) when a round clears has its open buy orders cut off from
  that round; a later top-up brings them back while their slots are open.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from gridmatch.matching.clearing import TOLERANCE_KWH
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.solution import SolveOptions
from gridmatch.rounds.engine import BackgroundInjection, RoundClearing, RoundInput
from gridmatch.scenario_io.schema import RoundsSpec
from gridmatch.units import exact_wh, remaining_wh, wh_to_kwh

# A week of one-minute rounds: any real day fits, and no file can ask for millions.
MAX_ROUNDS = 7 * 24 * 60
# An account holding less than this (a tenth of a cent) has nothing to spend: its buy
# orders are cut off. Far above the micro-EURs of slack the budget rows leave unspent.
EXHAUSTED_EUR = 1e-3


def round_count(rounds: RoundsSpec, last_close_min: float) -> int:
    """Return how many rounds a day has: one per interval until the last slot closes."""
    if last_close_min <= rounds.first_round_min:
        return 0
    return math.ceil((last_close_min - rounds.first_round_min) / rounds.interval_min)


def round_times_min(rounds: RoundsSpec, last_close_min: float) -> list[int]:
    """Return the rounds' times (at most :data:`MAX_ROUNDS`; check :func:`round_count` first)."""
    count = min(round_count(rounds, last_close_min), MAX_ROUNDS)
    return [rounds.first_round_min + k * rounds.interval_min for k in range(count)]


class CarryOver:
    """The day's order book as rounds consume it.

    Parameters
    ----------
    book
        Every order of the day, in file order.
    submitted_at_min
        Submission time of each order.
    slot_minutes
        Length of a slot.
    rounds
        The rounds section.
    track_background
        Keep the net injection of accepted trades per slot and bus, for the grid
        security of later rounds.
    available_eur
        What each prepaid account holds at the start of the day (``None``: no budgets).
    topups
        ``(participant_id, at_min, eur)`` paid in during the day.
    """

    def __init__(
        self,
        book: OrderBook,
        submitted_at_min: tuple[int, ...],
        slot_minutes: float,
        rounds: RoundsSpec,
        *,
        track_background: bool,
        available_eur: Mapping[str, float] | None = None,
        topups: Sequence[tuple[str, int, float]] = (),
    ) -> None:
        self.book = book
        self._start_eur = None if available_eur is None else dict(available_eur)
        self._topups = tuple(topups)
        self._spent_eur: dict[str, float] = {}
        self._cut_off = np.zeros(len(book), dtype=bool)
        self.submitted_at_min = np.asarray(submitted_at_min, dtype=np.int64)
        self._quantity_wh = exact_wh(book.quantity_kwh)
        self._close_min = book.slot * slot_minutes - rounds.gate_closure_min
        self._traded_kwh = np.zeros(len(book))
        self._gone = np.zeros(len(book), dtype=bool)  # indivisible orders once matched
        # All-or-none sells and indivisible buys are both "not divisible".
        self._whole = ~book.divisible
        self._position = {order.order_id: k for k, order in enumerate(book.orders)}
        self._track_background = track_background
        self._background: dict[int, dict[int, float]] = {}
        # Time priority: submission time, then file row (a stable sort keeps file order).
        self._priority = np.argsort(self.submitted_at_min, kind="stable")

    @property
    def last_close_min(self) -> float:
        """When the last slot of the book closes."""
        return float(np.max(self._close_min))

    @property
    def traded_kwh(self) -> npt.NDArray[np.float64]:
        """Traded kWh so far, per order of the day."""
        return self._traded_kwh.copy()

    def remaining_wh(self) -> npt.NDArray[np.int64]:
        """Whole Wh each order may still trade (0 for matched indivisible orders)."""
        left = remaining_wh(self._quantity_wh, self._traded_kwh)
        left[self._gone] = 0
        return left

    def eligible(self, at_min: int) -> npt.NDArray[np.int64]:
        """Orders a round at ``at_min`` sees, in time priority (positions in the day's book)."""
        order = self._priority
        open_now = (self.submitted_at_min[order] <= at_min) & (at_min < self._close_min[order])
        return order[open_now & (self.remaining_wh()[order] >= 1)]

    @property
    def cut_off(self) -> npt.NDArray[np.bool_]:
        """Orders some round left out because their account held nothing."""
        return self._cut_off.copy()

    def held_eur(self, at_min: int) -> dict[str, float] | None:
        """Return what each account may spend in a round at ``at_min`` (``None``: none)."""
        if self._start_eur is None:
            return None
        held = dict(self._start_eur)
        for participant, minute, eur in self._topups:
            if minute <= at_min:
                held[participant] += eur
        for participant, eur in self._spent_eur.items():
            if participant in held:
                held[participant] -= eur
        return held

    def round_input(
        self, round_no: int, at_min: int, formulation: str, options: SolveOptions
    ) -> RoundInput:
        """Build the inputs of the round clearing at ``at_min``."""
        chosen = self.eligible(at_min)
        held = self.held_eur(at_min)
        if held is not None:
            exhausted = {p for p, eur in held.items() if eur < EXHAUSTED_EUR}
            cut = np.array(
                [
                    self.book.is_buy[k] and self.book.orders[k].participant_id in exhausted
                    for k in chosen.tolist()
                ],
                dtype=bool,
            )
            self._cut_off[chosen[cut]] = True
            chosen = chosen[~cut]
        left = self.remaining_wh()
        orders = tuple(
            replace(self.book.orders[k], quantity_kwh=wh_to_kwh(int(left[k])))
            for k in chosen.tolist()
        )
        slots = {order.slot for order in orders}
        background: BackgroundInjection = tuple(
            (slot, bus, kwh)
            for slot in sorted(slots & self._background.keys())
            for bus, kwh in sorted(self._background[slot].items())
        )
        return RoundInput(
            round_no=round_no,
            cleared_at_min=at_min,
            book=OrderBook(orders),
            submitted_at_min=tuple(int(m) for m in self.submitted_at_min[chosen]),
            background_kwh=background,
            formulation=formulation,
            options=options,
            available_eur=None if held is None else tuple(sorted(held.items())),
        )

    def record(self, clearing: RoundClearing) -> None:
        """Take a cleared round's trades off the book (and into the grid background)."""
        orders = clearing.round_input.book.orders
        self.record_trades(
            (
                trade.slot,
                orders[trade.buy_order].order_id,
                orders[trade.sell_order].order_id,
                trade.quantity_kwh,
                trade.quantity_kwh * (trade.price_eur_per_kwh + trade.fee_eur_per_kwh),
            )
            for trade in clearing.result.trades
        )

    def record_trades(self, trades: Iterable[tuple[int, str, str, float, float]]) -> None:
        """Take trades ``(slot, buy_order_id, sell_order_id, quantity_kwh, paid_eur)`` off.

        ``paid_eur`` (quantity x (price + fee)) comes off the buyer's account.

        The trades of a round must come in the order its trades.csv lists them: the
        sums are then the same floats whether a round was just cleared or read back
        from the ledger.
        """
        for slot, buy_id, sell_id, quantity_kwh, paid_eur in trades:
            positions = (self._position[buy_id], self._position[sell_id])
            buyer = self.book.orders[positions[0]].participant_id
            self._spent_eur[buyer] = self._spent_eur.get(buyer, 0.0) + paid_eur
            for k in positions:
                self._traded_kwh[k] += quantity_kwh
                if self._whole[k] and quantity_kwh > TOLERANCE_KWH:
                    self._gone[k] = True
            if self._track_background:
                buy_bus, sell_bus = (self.book.orders[k].bus for k in positions)
                by_bus = self._background.setdefault(slot, {})
                by_bus[sell_bus] = by_bus.get(sell_bus, 0.0) + quantity_kwh
                by_bus[buy_bus] = by_bus.get(buy_bus, 0.0) - quantity_kwh

    def late(self, round_times: list[int]) -> npt.NDArray[np.bool_]:
        """Orders no round could see: submitted after the last round or once their slot closed."""
        seen = np.zeros(len(self.book), dtype=bool)
        for at_min in round_times:
            seen |= (self.submitted_at_min <= at_min) & (at_min < self._close_min)
        return ~seen
