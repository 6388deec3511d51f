"""Meter readings validators attest, one row per trade.

``METER_CSV`` columns: ``slot, buy_order_id, sell_order_id`` (the trade's keys in
trades.csv), ``sent_kwh`` (the seller's meter) and ``received_kwh`` (the buyer's
meter); readings count as whole Wh, rounded down (:func:`gridmatch.units.floor_wh`).
A trade without a row gets no attestation: without a quorum by the deadline its buyer
reclaims the prepayment.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from gridmatch.errors import InputError
from gridmatch.settlement.round_data import parse_slot
from gridmatch.units import floor_wh
from gridmatch.user_files import TABLE_LIMIT_BYTES, read_text

COLUMNS = ("slot", "buy_order_id", "sell_order_id", "sent_kwh", "received_kwh")


@dataclass(frozen=True)
class MeterReading:
    """What the two meters of one trade showed, in Wh."""

    sent_wh: int
    received_wh: int


def read_meters(
    path: Path, known: set[tuple[int, str, str]]
) -> dict[tuple[int, str, str], MeterReading]:
    """Read a meter CSV keyed by ``(slot, buy_order_id, sell_order_id)``.

    Raises
    ------
    InputError
        Missing file or column, a bad number, an unknown or repeated trade.
    """
    text = read_text(path, TABLE_LIMIT_BYTES, "meter file", bom=True)
    readings: dict[tuple[int, str, str], MeterReading] = {}
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"missing column(s): {', '.join(missing)}", row=1)
        for row in reader:
            # The file's line, as the orders file counts rows (header = 1, blank lines too).
            number = reader.line_num
            if None in row.values() or None in row:
                raise InputError(
                    path, f"expected {len(reader.fieldnames or [])} fields", row=number
                )
            slot = parse_slot(path, number, row["slot"])
            key = (slot, row["buy_order_id"], row["sell_order_id"])
            if key not in known:
                raise InputError(
                    path, "no such trade in this round", row=number, field="buy_order_id"
                )
            if key in readings:
                raise InputError(
                    path, "a second reading of the same trade", row=number, field="buy_order_id"
                )
            readings[key] = MeterReading(
                _wh(path, number, row, "sent_kwh"), _wh(path, number, row, "received_kwh")
            )
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}", row=reader.line_num) from None
    return readings


def _wh(path: Path, number: int, row: dict[str, str], field: str) -> int:
    try:
        value = float(row[field])
    except (TypeError, ValueError):
        raise InputError(path, f"'{row[field]}' is not a number", row=number, field=field) from None
    if not math.isfinite(value) or value < 0 or value > 1e9:
        raise InputError(path, "must be between 0 and 1e9 kWh", row=number, field=field)
    return floor_wh(value)
