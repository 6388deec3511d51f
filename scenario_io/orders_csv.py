"""Parse ``orders.csv`` into an :class:`OrderBook`, rejecting anything doubtful.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first order
row 2.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from gridmatch.errors import InputError
from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.units import MINUTES_PER_HOUR, WH_PER_KWH, exact_wh, wh_to_kwh
from gridmatch.user_files import TABLE_LIMIT_BYTES, parse_float, parse_int, read_text

REQUIRED_COLUMNS = (
    "order_id",
    "participant_id",
    "side",
    "bus",
    "slot",
    "quantity_kwh",
    "limit_price_eur_per_kwh",
)
OPTIONAL_COLUMNS = ("divisible",)
# When each order was submitted, minutes from the start of the day: what rolling rounds
# (rounds/) need; `gridmatch clear` validates it and does not use it.
SUBMITTED_COLUMN = "submitted_at_min"
ROUND_COLUMNS = (SUBMITTED_COLUMN,)
# A week of minutes: far beyond a trading day, small enough to stay an exact int64.
MAX_SUBMITTED_AT_MIN = 7 * 24 * MINUTES_PER_HOUR
# Far beyond any real order, and small enough that Wh and nano-EUR stay exact int64.
MAX_QUANTITY_KWH = 1e9
MAX_PRICE_EUR_PER_KWH = 1e6
MAX_SLOT = 10_000_000
# Ids are printable text of at most this many characters.
MAX_ID_LENGTH = 200
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class OrderTable:
    """A validated orders file.

    Attributes
    ----------
    book
        The orders in file order.
    rows
        The file row of each order, for errors found later (e.g. about its bus).
    submitted_at_min
        Submission time of each order, or ``None`` if the file has no such column.
    """

    book: OrderBook
    rows: tuple[int, ...]
    submitted_at_min: tuple[int, ...] | None


def read_orders(path: Path) -> OrderTable:
    """Read and validate an orders file.

    Raises
    ------
    InputError
        On the first problem found, naming the file, row and column.
    """
    text = read_text(path, TABLE_LIMIT_BYTES, "orders file", bom=True)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}") from None
    if not rows:
        raise InputError(path, "the file is empty; expected a header row")
    header = [name.strip() for name in rows[0]]
    _check_header(path, header)

    orders: list[Order] = []
    order_rows: list[int] = []
    submitted: list[int] = []
    seen: dict[str, int] = {}
    for line, values in enumerate(rows[1:], start=2):
        if not any(v.strip() for v in values):
            continue  # blank lines at the end of hand-edited files
        if len(values) != len(header):
            raise InputError(path, f"expected {len(header)} fields, found {len(values)}", row=line)
        record = {name: value.strip() for name, value in zip(header, values, strict=True)}
        order, submitted_at_min = _parse_row(path, line, record)
        if order.order_id in seen:
            raise InputError(
                path,
                f"duplicate order_id '{order.order_id}' (first on row {seen[order.order_id]})",
                row=line,
                field="order_id",
            )
        seen[order.order_id] = line
        orders.append(order)
        order_rows.append(line)
        if submitted_at_min is not None:
            submitted.append(submitted_at_min)
    if not orders:
        raise InputError(path, "no orders: the order book is empty")
    times = tuple(submitted) if SUBMITTED_COLUMN in header else None
    return OrderTable(OrderBook(tuple(orders)), tuple(order_rows), times)


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(path, f"missing column(s): {', '.join(missing)}", row=1)
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS) | set(ROUND_COLUMNS)
    unknown = [c for c in header if c not in known]
    if unknown:
        raise InputError(
            path,
            f"unknown column(s): {', '.join(unknown)}; "
            f"allowed: {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS + ROUND_COLUMNS)}",
            row=1,
        )
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise InputError(path, f"repeated column(s): {', '.join(duplicated)}", row=1)


def _parse_row(path: Path, line: int, record: dict[str, str]) -> tuple[Order, int | None]:
    def fail(field: str, message: str) -> InputError:
        return InputError(path, message, row=line, field=field)

    def text(field: str) -> str:
        value = record[field]
        if not value:
            raise fail(field, "is empty")
        return value

    def identifier(field: str) -> str:
        value = text(field)
        if len(value) > MAX_ID_LENGTH:
            raise fail(field, f"is {len(value)} characters long; at most {MAX_ID_LENGTH}")
        if not value.isprintable():
            raise fail(field, "holds a control character (only printable text is an id)")
        if value.startswith("'"):
            # Result files mark a formula-like cell with a leading apostrophe.
            raise fail(field, "may not start with an apostrophe")
        return value

    def integer(field: str, maximum: int) -> int:
        value = text(field)
        try:
            number = parse_int(value)
        except ValueError:
            raise fail(field, f"'{value}' is not a whole number") from None
        if number < 0:
            raise fail(field, f"{number} is negative")
        if number > maximum:
            raise fail(field, f"{number} is larger than {maximum}")
        return number

    def number(field: str, *, positive: bool, maximum: float) -> float:
        value = text(field)
        try:
            parsed = parse_float(value)
        except ValueError:
            raise fail(field, f"'{value}' is not a number") from None
        if not math.isfinite(parsed):
            raise fail(field, f"'{value}' is not finite")
        if positive and parsed <= 0.0:
            raise fail(field, f"{value} must be greater than 0")
        if not positive and parsed < 0.0:
            raise fail(field, f"{value} is negative")
        if parsed > maximum:
            raise fail(field, f"{value} is larger than {maximum:g}")
        return parsed

    side_text = text("side")
    try:
        side = Side(side_text)
    except ValueError:
        raise fail("side", f"'{side_text}' is not 'buy' or 'sell'") from None

    quantity_kwh = number("quantity_kwh", positive=True, maximum=MAX_QUANTITY_KWH)
    # Meters count whole Wh; keeping quantities on that grid lets the integer
    # backends represent every order exactly.
    if abs(quantity_kwh * WH_PER_KWH - round(quantity_kwh * WH_PER_KWH)) > 1e-6:
        raise fail("quantity_kwh", f"{record['quantity_kwh']} is finer than 1 Wh (0.001 kWh)")

    divisible_text = record.get("divisible", "").lower()
    if not divisible_text:
        divisible = side is Side.SELL
    elif divisible_text in _TRUE:
        divisible = True
    elif divisible_text in _FALSE:
        divisible = False
    else:
        raise fail("divisible", f"'{record['divisible']}' is not true or false")

    submitted_at_min = None
    if SUBMITTED_COLUMN in record:
        submitted_at_min = integer(SUBMITTED_COLUMN, MAX_SUBMITTED_AT_MIN)
    order = Order(
        order_id=identifier("order_id"),
        participant_id=identifier("participant_id"),
        side=side,
        bus=integer("bus", 2**31 - 1),
        slot=integer("slot", MAX_SLOT),
        quantity_kwh=wh_to_kwh(int(exact_wh(quantity_kwh))),
        limit_price_eur_per_kwh=number(
            "limit_price_eur_per_kwh", positive=False, maximum=MAX_PRICE_EUR_PER_KWH
        ),
        divisible=divisible,
    )
    return order, submitted_at_min
