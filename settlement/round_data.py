"""A result folder's trades and orders in the terms the contract takes.

Energy in whole Wh (trades rounded down, :func:`gridmatch.units.floor_wh`: never more
than was traded), prices in micro-EUR per kWh, times in Unix seconds from the
summary's time basis (``day_start_utc + slot * slot_minutes``). The files are read
through the result folder's own readers, which validate them like every file a user
hands over; what the contract's 64-bit fields and rules need is checked here.

Limits are rounded in the participant's favour: a buyer signs ``floor(limit)`` micro-EUR
per kWh (price plus fee), a seller ``ceil(limit)``. A buyer's fee cap is the tariff's
highest fee between the book's buses (``max_fee_eur_per_kwh`` in summary.json). A
trade's fee is rounded to the nearest micro-EUR, and its price to the nearest micro-EUR
and then clamped into ``[seller's limit, buyer's limit - fee]``; a trade whose limits
are closer than that, or that moves less than 1 Wh, stays off chain and is recorded as
unsettled, never dropped silently.

Everything the contract would refuse is refused here first, naming the row, so that a
bad trades.csv never reverts a commit halfway (after deployment and escrow): a trade
whose ids are not one buy and one sell order of its slot and of its buyer and seller,
a participant trading with itself, a pair given twice, orders filled beyond their
quantity, a fee above the cap, and (:func:`round_deadline`, once the chain's clock is
known) a slot that ends less than the contract's voting window before the round's
deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from eth_utils.crypto import keccak

from gridmatch.errors import InputError, UsageError
from gridmatch.matching.orders import Order, Side
from gridmatch.results_io.folder import read_numbered_trades, read_orders, read_summary
from gridmatch.results_io.layout import (
    LEDGER_FILE,
    ORDERS_FILE,
    SUMMARY_FILE,
    TRADES_FILE,
    round_number,
)
from gridmatch.results_io.rows import TradeRow
from gridmatch.settlement.chain_view import utc_text
from gridmatch.settlement.record import lock_micro_eur
from gridmatch.units import (
    MICRO_EUR_PER_EUR,
    WH_FLOAT_SLACK,
    WH_PER_KWH,
    eur_to_micro_eur,
    exact_wh,
    floor_wh,
    wh_to_kwh,
)

# Settlement stores energy, prices and times as uint64.
UINT64_LIMIT = 2**64
# Settlement.MIN_VOTING_WINDOW_S: a trade's slot ends at least this long before its
# round's deadline (validators' time to vote after delivery; after the deadline the
# buyer may reclaim the lock).
MIN_VOTING_WINDOW_S = 3600
# Settlement.MAX_ROUND_DURATION_S: a round's deadline lies at most this far ahead.
MAX_ROUND_DURATION_S = 30 * 24 * 3600


@dataclass(frozen=True)
class OrderTerms:
    """An input order as its participant signs it (addresses and expiry come later)."""

    order_id: str
    participant_id: str
    is_buy: bool
    slot_start: int
    slot_end: int
    quantity_wh: int
    limit_micro_eur_per_kwh: int
    max_fee_micro_eur_per_kwh: int

    @property
    def nonce(self) -> int:
        """The order's nonce: derived from its id, so one order id is one nonce."""
        return int.from_bytes(keccak(text=f"gridmatch order:{self.order_id}")[:8], "big")


@dataclass(frozen=True)
class PlannedTrade:
    """A trade of trades.csv as it goes on chain."""

    slot: int
    buy: OrderTerms
    sell: OrderTerms
    quantity_wh: int
    price_micro_eur_per_kwh: int
    fee_micro_eur_per_kwh: int
    # Its line in trades.csv (the header is line 1), for messages.
    line: int = 0

    @property
    def key(self) -> tuple[int, str, str]:
        """``(slot, buy_order_id, sell_order_id)`` as in trades.csv."""
        return (self.slot, self.buy.order_id, self.sell.order_id)

    def lock_micro_eur(self) -> int:
        """Return what the contract locks for it: quantity x (price + fee), rounded up."""
        return lock_micro_eur(
            self.quantity_wh, self.price_micro_eur_per_kwh, self.fee_micro_eur_per_kwh
        )


@dataclass(frozen=True)
class Unsettled:
    """Energy of a trade that does not go on chain, and why.

    ``settled_wh`` is what does go on chain (0: the whole trade stays off).
    """

    slot: int
    buy_order_id: str
    sell_order_id: str
    traded_kwh: float
    settled_wh: int
    reason: str

    @property
    def unsettled_kwh(self) -> float:
        """What was traded and is not settled."""
        return max(self.traded_kwh - wh_to_kwh(self.settled_wh), 0.0)


@dataclass(frozen=True)
class ChainRound:
    """A clearing as it goes on chain.

    Attributes
    ----------
    trade_losses_share
        Per slot, the share of the traded energy the grid lost to the trades (from the
        clearing's final AC check; 0 without security): what validators allow between
        what sellers sent and buyers received, on top of the meters' accuracy.
    """

    trades: list[PlannedTrade]
    unsettled: list[Unsettled]
    trade_losses_share: dict[int, float]


def read_round(out_dir: Path) -> ChainRound:
    """Read a result folder's trades, orders and time basis for settlement.

    Raises
    ------
    InputError
        A file is missing or malformed, a trade is one the contract would refuse (see
        the module docstring), a value does not fit the contract's 64-bit fields, or no
        trade of 1 Wh or more is left.
    UsageError
        ``out_dir`` is one round of a rolling day.
    """
    _refuse_round_folder(out_dir)
    summary = read_summary(out_dir)
    basis = _TimeBasis(_day_start(out_dir, summary.day_start_utc), round(summary.slot_minutes * 60))
    fee_cap = _fee_cap(out_dir, summary.max_fee_eur_per_kwh)
    orders = {row.order.order_id: row.order for row in read_orders(out_dir)}
    trades: list[PlannedTrade] = []
    unsettled: list[Unsettled] = []
    traded_kwh: dict[int, float] = {}
    checks = _TradeChecks(out_dir / TRADES_FILE)
    for line, row in read_numbered_trades(out_dir):
        buy, sell = checks.orders_of(line, row, orders)
        buy_terms = _terms(out_dir, buy, basis, fee_cap)
        sell_terms = _terms(out_dir, sell, basis, 0)
        checks.fee(line, row, buy_terms)
        planned, problem = _planned(line, row, buy_terms, sell_terms)
        traded_kwh[row.slot] = traded_kwh.get(row.slot, 0.0) + row.quantity_kwh
        if problem is not None:
            unsettled.append(problem)
        if planned is not None:
            checks.fill(line, planned)
            trades.append(planned)
    if not trades:
        raise InputError(
            out_dir / TRADES_FILE, "the clearing has no trade of 1 Wh or more to settle"
        )
    losses = {
        s.slot: s.trade_losses_kwh / traded_kwh[s.slot]
        for s in summary.slots
        if s.trade_losses_kwh is not None and traded_kwh.get(s.slot, 0.0) > 0
    }
    return ChainRound(trades, unsettled, losses)


@dataclass(frozen=True)
class _TimeBasis:
    day_start_s: int
    slot_s: int


@dataclass
class _TradeChecks:
    """What the contract checks across a round's trades, checked first with rows named."""

    path: Path
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    filled_wh: dict[str, int] = field(default_factory=dict)

    def orders_of(self, line: int, row: TradeRow, orders: dict[str, Order]) -> tuple[Order, Order]:
        """Return the row's buy and sell orders, checked to be what the row says."""
        buy = self._order(line, row.buy_order_id, "buy_order_id", orders, Side.BUY)
        sell = self._order(line, row.sell_order_id, "sell_order_id", orders, Side.SELL)
        for order, name, field_name in (
            (buy, row.buyer_id, "buyer_id"),
            (sell, row.seller_id, "seller_id"),
        ):
            if order.participant_id != name:
                raise InputError(
                    self.path,
                    f"order '{order.order_id}' is {order.participant_id}'s, not {name}'s",
                    row=line,
                    field=field_name,
                )
            if order.slot != row.slot:
                raise InputError(
                    self.path,
                    f"order '{order.order_id}' is of slot {order.slot}",
                    row=line,
                    field="slot",
                )
        if buy.participant_id == sell.participant_id:
            raise InputError(
                self.path,
                f"{buy.participant_id} cannot trade with itself",
                row=line,
                field="seller_id",
            )
        pair = (buy.order_id, sell.order_id)
        if pair in self.pairs:
            raise InputError(
                self.path,
                f"the pair {pair[0]} <- {pair[1]} is on row {self.pairs[pair]} already",
                row=line,
            )
        self.pairs[pair] = line
        return buy, sell

    def fill(self, line: int, trade: PlannedTrade) -> None:
        """Count the trade's Wh against both orders; refuse a fill beyond an order."""
        for terms, field_name in ((trade.buy, "buy_order_id"), (trade.sell, "sell_order_id")):
            filled = self.filled_wh.get(terms.order_id, 0) + trade.quantity_wh
            if filled > terms.quantity_wh:
                raise InputError(
                    self.path,
                    f"order '{terms.order_id}' is filled with {filled} Wh, more than its "
                    f"{terms.quantity_wh} Wh",
                    row=line,
                    field=field_name,
                )
            self.filled_wh[terms.order_id] = filled

    def fee(self, line: int, row: TradeRow, buy: OrderTerms) -> None:
        """Refuse a fee above the buyer's signed cap (the tariff's highest fee)."""
        if eur_to_micro_eur(row.fee_eur_per_kwh) > buy.max_fee_micro_eur_per_kwh:
            raise InputError(
                self.path,
                f"fee above the tariff's highest fee ({buy.max_fee_micro_eur_per_kwh} "
                "micro-EUR/kWh, summary.json)",
                row=line,
                field="fee_eur_per_kwh",
            )

    def _order(
        self, line: int, order_id: str, field_name: str, orders: dict[str, Order], side: Side
    ) -> Order:
        order = orders.get(order_id)
        if order is None:
            raise InputError(
                self.path, f"order '{order_id}' is not in {ORDERS_FILE}", row=line, field=field_name
            )
        if order.side is not side:
            raise InputError(
                self.path,
                f"order '{order_id}' is a {order.side.value} order",
                row=line,
                field=field_name,
            )
        return order


def _refuse_round_folder(out_dir: Path) -> None:
    # The rounds of a rolling day trade the same slots: settled as separate deployments,
    # each would count a meter's whole export against its own trades only.
    if round_number(out_dir) is not None and (out_dir.parent / LEDGER_FILE).exists():
        raise UsageError(
            f"{out_dir} is one round of a rolling day: settling rounds one by one would pay "
            "the same metered energy once per round; settle a clearing of the whole day"
        )


def _fee_cap(out_dir: Path, max_fee_eur_per_kwh: float | None) -> int:
    if max_fee_eur_per_kwh is None:
        raise InputError(
            out_dir / SUMMARY_FILE,
            "no max_fee_eur_per_kwh: clear the scenario again with this gridmatch (buyers "
            "sign the tariff's highest fee as their cap)",
            field="max_fee_eur_per_kwh",
        )
    return eur_to_micro_eur(max_fee_eur_per_kwh)


def _day_start(out_dir: Path, text: str | None) -> int:
    if text is None:
        raise InputError(
            out_dir / SUMMARY_FILE,
            "no day_start_utc: clear the scenario again with this gridmatch (settlement signs "
            "absolute slot times)",
            field="day_start_utc",
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            out_dir / SUMMARY_FILE, f"'{text}' is not a time", field="day_start_utc"
        ) from None
    if moment.utcoffset() is None:
        # Without an offset the time would be read in this machine's zone, and machines
        # in different zones would sign different slot times.
        raise InputError(
            out_dir / SUMMARY_FILE, f"'{text}' has no UTC offset", field="day_start_utc"
        )
    return int(moment.timestamp())


def _terms(out_dir: Path, order: Order, basis: _TimeBasis, max_fee_micro: int) -> OrderTerms:
    start = basis.day_start_s + order.slot * basis.slot_s
    limit = order.limit_price_eur_per_kwh * MICRO_EUR_PER_EUR
    # In the participant's favour: a buyer signs at most, a seller at least, its limit.
    limit_micro = math.floor(limit + 1e-6) if order.side is Side.BUY else math.ceil(limit - 1e-6)
    terms = OrderTerms(
        order_id=order.order_id,
        participant_id=order.participant_id,
        is_buy=order.side is Side.BUY,
        slot_start=start,
        slot_end=start + basis.slot_s,
        quantity_wh=int(exact_wh(order.quantity_kwh)),
        limit_micro_eur_per_kwh=limit_micro,
        max_fee_micro_eur_per_kwh=max_fee_micro,
    )
    checked = (
        (ORDERS_FILE, "slot", terms.slot_end),
        (ORDERS_FILE, "limit_price_eur_per_kwh", limit_micro),
        (SUMMARY_FILE, "max_fee_eur_per_kwh", max_fee_micro),
    )
    for file_name, field_name, value in checked:
        if not 0 <= value < UINT64_LIMIT:
            raise InputError(
                out_dir / file_name,
                f"order '{order.order_id}': too large for the contract's 64-bit field",
                field=field_name,
            )
    return terms


def _planned(
    line: int, row: TradeRow, buy: OrderTerms, sell: OrderTerms
) -> tuple[PlannedTrade | None, Unsettled | None]:
    quantity_wh = floor_wh(row.quantity_kwh)
    fee = eur_to_micro_eur(row.fee_eur_per_kwh)
    low, high = sell.limit_micro_eur_per_kwh, buy.limit_micro_eur_per_kwh - fee
    price = min(max(eur_to_micro_eur(row.price_eur_per_kwh), low), high)

    def off(reason: str, settled_wh: int = 0) -> Unsettled:
        return Unsettled(
            row.slot, row.buy_order_id, row.sell_order_id, row.quantity_kwh, settled_wh, reason
        )

    if quantity_wh == 0:
        return None, off("below 1 Wh")
    if high < low:
        return None, off("the limits are closer than 1 micro-EUR per kWh")
    planned = PlannedTrade(row.slot, buy, sell, quantity_wh, price, fee, line)
    if row.quantity_kwh * WH_PER_KWH - quantity_wh > WH_FLOAT_SLACK:
        return planned, off("a fraction of a Wh", quantity_wh)
    return planned, None


def round_deadline(out_dir: Path, chain_round: ChainRound, now_s: int, voting_window_s: int) -> int:
    """Return the round's deadline: ``voting_window_s`` after the last slot's end (or now).

    Votes count from a trade's slot end (the contract refuses them earlier) to the
    deadline, after which the buyer may reclaim; so the deadline is measured from the
    later of the chain's clock ``now_s`` and the end of the round's last slot. Every
    trade is checked as the contract would (:func:`check_slots_before_deadline`), and
    the deadline against the contract's 30-day limit, before any transaction.

    Raises
    ------
    InputError
        A trade's slot ends less than the voting window before the deadline, or so far
        ahead that the deadline would lie more than 30 days after ``now_s``; the message
        names its trades.csv row.
    """
    last = max(chain_round.trades, key=lambda t: (t.buy.slot_end, -t.line))
    deadline = max(now_s, last.buy.slot_end) + voting_window_s
    check_slots_before_deadline(out_dir, chain_round.trades, deadline)
    if deadline > now_s + MAX_ROUND_DURATION_S:
        raise InputError(
            out_dir / TRADES_FILE,
            f"trade {_trade_text(last)} is delivered until {utc_text(last.buy.slot_end)}: the "
            f"round's deadline, {voting_window_s / 3600:g} h after it, would lie more than "
            f"30 days after the chain's clock ({utc_text(now_s)}); settle nearer to delivery",
            row=last.line or None,
        )
    return deadline


def check_slots_before_deadline(out_dir: Path, trades: list[PlannedTrade], deadline: int) -> None:
    """Refuse a trade whose slot ends less than the voting window before ``deadline``.

    The contract refuses it (``SettlementSlotAfterDeadline``): its buyer could reclaim
    the lock after the deadline for energy delivered, or the seller never be paid.

    Raises
    ------
    InputError
        Naming the first such trade's row of trades.csv.
    """
    for trade in sorted(trades, key=lambda t: t.line):
        if trade.buy.slot_end + MIN_VOTING_WINDOW_S > deadline:
            raise InputError(
                out_dir / TRADES_FILE,
                f"trade {_trade_text(trade)} is delivered until {utc_text(trade.buy.slot_end)}, "
                f"less than {MIN_VOTING_WINDOW_S // 60} minutes before the round's deadline "
                f"({utc_text(deadline)}): validators could not vote on its delivery before its "
                "buyer may reclaim the lock; give the round a longer voting window "
                "(--deadline-hours)",
                row=trade.line or None,
            )


def _trade_text(trade: PlannedTrade) -> str:
    return f"of slot {trade.slot} ({trade.buy.order_id} <- {trade.sell.order_id})"
