"""The trades of a result folder in the units the contract takes.

Energy in whole Wh, prices in micro-EUR per kWh: ``trades.csv`` is validated here,
at the edge, like every file a user hands over.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from gridmatch.scenario_io.errors import InputError
from gridmatch.settlement.accounts import address_of

MICRO_EUR_PER_EUR = 1_000_000
WH_PER_KWH = 1000
_COLUMNS = (
    "slot",
    "buy_order_id",
    "sell_order_id",
    "buyer_id",
    "seller_id",
    "quantity_kwh",
    "price_eur_per_kwh",
    "fee_eur_per_kwh",
)


@dataclass(frozen=True)
class ChainTrade:
    """One trade as ``Settlement.Trade`` holds it, with its keys in trades.csv."""

    round_id: int
    trade_id: int
    buyer: str
    seller: str
    slot: int
    quantity_wh: int
    price_micro_eur_per_kwh: int
    fee_micro_eur_per_kwh: int
    buy_order_id: str
    sell_order_id: str
    buyer_id: str
    seller_id: str

    def as_tuple(self) -> tuple[int, int, str, str, int, int, int, int]:
        """Field tuple in ``Settlement.Trade`` order."""
        return (
            self.round_id,
            self.trade_id,
            self.buyer,
            self.seller,
            self.slot,
            self.quantity_wh,
            self.price_micro_eur_per_kwh,
            self.fee_micro_eur_per_kwh,
        )

    def lock_micro_eur(self) -> int:
        """Return what the contract locks for it: quantity x (price + fee), rounded up."""
        total = self.quantity_wh * (self.price_micro_eur_per_kwh + self.fee_micro_eur_per_kwh)
        return -(-total // WH_PER_KWH)


# Settlement.Trade stores energy, prices and slots as uint64.
_UINT64_LIMIT = 2**64


def read_round(out_dir: Path, round_id: int) -> list[ChainTrade]:
    """Read ``OUT_DIR/trades.csv`` as the trades of round ``round_id``.

    Raises
    ------
    InputError
        Missing file or column, or a value that is not a number of the right kind.
    """
    path = out_dir / "trades.csv"
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(path, f"cannot read the clearing result: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"missing column(s): {', '.join(missing)}")
        trades: list[ChainTrade] = []
        for row in reader:
            # The file's line, as the orders file counts rows (header = 1, blank lines too).
            number = reader.line_num
            trades.append(_trade(path, number, row, round_id, len(trades) + 1))
    if not trades:
        raise InputError(path, "the clearing has no trades to settle")
    return trades


def locks_by_buyer(trades: list[ChainTrade]) -> dict[str, int]:
    """Per buyer address, the sum of its trades' locks."""
    locks: dict[str, int] = defaultdict(int)
    for trade in trades:
        locks[trade.buyer] += trade.lock_micro_eur()
    return dict(locks)


def parse_slot(path: Path, number: int, text: str) -> int:
    """Read a slot number of a settlement file: a whole number the contract's uint64 holds.

    Raises
    ------
    InputError
        Naming the file, row and field ``slot``.
    """
    try:
        slot = int(text)
    except ValueError:
        raise InputError(path, f"'{text}' is not a slot number", row=number, field="slot") from None
    if not 0 <= slot < _UINT64_LIMIT:
        raise InputError(path, "a slot number is >= 0 and < 2**64", row=number, field="slot")
    return slot


def _trade(
    path: Path, number: int, row: dict[str, str], round_id: int, trade_id: int
) -> ChainTrade:
    def scaled(field: str, factor: int) -> int:
        try:
            value = float(row[field])
        except (TypeError, ValueError):
            raise InputError(
                path, f"'{row[field]}' is not a number", row=number, field=field
            ) from None
        if not math.isfinite(value) or value < 0:
            raise InputError(path, "must be a finite number >= 0", row=number, field=field)
        scaled_value = round(value * factor)
        if scaled_value >= _UINT64_LIMIT:
            raise InputError(
                path, "too large for the contract's 64-bit field", row=number, field=field
            )
        return scaled_value

    slot = parse_slot(path, number, row["slot"])
    quantity_wh = scaled("quantity_kwh", WH_PER_KWH)
    if quantity_wh <= 0:
        raise InputError(path, "a trade must move at least 1 Wh", row=number, field="quantity_kwh")
    return ChainTrade(
        round_id=round_id,
        trade_id=trade_id,
        buyer=address_of(row["buyer_id"]),
        seller=address_of(row["seller_id"]),
        slot=slot,
        quantity_wh=quantity_wh,
        price_micro_eur_per_kwh=scaled("price_eur_per_kwh", MICRO_EUR_PER_EUR),
        fee_micro_eur_per_kwh=scaled("fee_eur_per_kwh", MICRO_EUR_PER_EUR),
        buy_order_id=row["buy_order_id"],
        sell_order_id=row["sell_order_id"],
        buyer_id=row["buyer_id"],
        seller_id=row["seller_id"],
    )
