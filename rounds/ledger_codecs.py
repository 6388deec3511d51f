"""The ledger's JSON columns: a round's orders, background and options, written and read back.

Written canonically (:func:`~gridmatch.rounds.hashing.canonical_json`), floats with
``repr``, and read back bit for bit; reading checks every value's type, since a ledger
is a file and may have been altered.
"""

from __future__ import annotations

import json
from pathlib import Path

from gridmatch.errors import InputError
from gridmatch.matching.orders import Order, OrderBook, Side
from gridmatch.matching.solution import SolveOptions, TieBreak
from gridmatch.rounds.engine import BackgroundInjection, RoundInput
from gridmatch.rounds.hashing import canonical_json
from gridmatch.user_files import parse_json


def round_input_json(round_input: RoundInput) -> dict[str, str]:
    """Return the stored text of a round's orders, background, options and formulation."""
    data = {
        "orders": orders_json(round_input.book, round_input.submitted_at_min),
        "background": canonical_json([list(item) for item in round_input.background_kwh]),
        "options": options_json(round_input.options),
        "formulation": round_input.formulation,
    }
    # Only a day with prepaid accounts hashes them: a day without hashes as it always did.
    if round_input.available_eur is not None:
        data["accounts"] = canonical_json([list(item) for item in round_input.available_eur])
    return data


def orders_json(book: OrderBook, submitted_at_min: tuple[int, ...]) -> str:
    """Write an order book with submission times as canonical JSON, in book order."""
    return canonical_json(
        [
            {
                "order_id": o.order_id,
                "participant_id": o.participant_id,
                "side": o.side.value,
                "bus": o.bus,
                "slot": o.slot,
                "quantity_kwh": o.quantity_kwh,
                "limit_price_eur_per_kwh": o.limit_price_eur_per_kwh,
                "divisible": o.divisible,
                "submitted_at_min": minutes,
            }
            for o, minutes in zip(book.orders, submitted_at_min, strict=True)
        ]
    )


def orders_from_json(text: str, source: Path, round_no: int) -> tuple[OrderBook, tuple[int, ...]]:
    """Read an order book written by :func:`orders_json`.

    Raises
    ------
    InputError
        If the text is not such a book.
    """
    try:
        records = parse_json(text, source)
        orders = tuple(
            Order(
                order_id=_str(r["order_id"]),
                participant_id=_str(r["participant_id"]),
                side=Side(r["side"]),
                bus=_int(r["bus"]),
                slot=_int(r["slot"]),
                quantity_kwh=_float(r["quantity_kwh"]),
                limit_price_eur_per_kwh=_float(r["limit_price_eur_per_kwh"]),
                divisible=_bool(r["divisible"]),
            )
            for r in records
        )
        submitted = tuple(_int(r["submitted_at_min"]) for r in records)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(source, f"round {round_no}: stored orders unreadable ({exc})") from None
    return OrderBook(orders), submitted


def background_from_json(text: str, source: Path, round_no: int) -> BackgroundInjection:
    """Read the background injections of a stored round.

    Raises
    ------
    InputError
        If the text is not a list of ``[slot, bus, kWh]``.
    """
    try:
        items = parse_json(text, source)
        return tuple((_int(slot), _int(bus), _float(kwh)) for slot, bus, kwh in items)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        message = f"round {round_no}: stored background unreadable ({exc})"
        raise InputError(source, message) from None


def accounts_from_json(
    text: str | None, source: Path, round_no: int
) -> tuple[tuple[str, float], ...] | None:
    """Read the prepaid balances of a stored round (``None``: it had no accounts).

    Raises
    ------
    InputError
        If the text is not a list of ``[participant_id, EUR]``.
    """
    if text is None:
        return None
    try:
        items = parse_json(text, source)
        return tuple((_str(participant), _float(eur)) for participant, eur in items)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        message = f"round {round_no}: stored accounts unreadable ({exc})"
        raise InputError(source, message) from None


def options_json(options: SolveOptions) -> str:
    """Solver settings as canonical JSON."""
    return canonical_json(options.to_dict())


def options_from_json(text: str, source: Path, round_no: int) -> SolveOptions:
    """Read solver settings written by :func:`options_json`.

    Raises
    ------
    InputError
        If they are unreadable or invalid.
    """
    try:
        stored = parse_json(text, source)
        return SolveOptions(
            time_limit_s=_float(stored["time_limit_s"]),
            mip_gap=_float(stored["mip_gap"]),
            threads=_int(stored["threads"]),
            seed=_int(stored["seed"]),
            # Ledgers from before the option was added cleared without it.
            tie_break=TieBreak(_str(stored.get("tie_break", TieBreak.NONE.value))),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(source, f"round {round_no}: stored options unreadable ({exc})") from None


def _int(value: object) -> int:
    # bool is an int to Python; a flag where a number belongs is refused.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not a whole number")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value
