"""Units and the named conversions between them: the only place a bare 1000 may stand.

Energy is kWh in the engine and whole Wh where meters and the chain count. Two rules
take kWh to Wh, and each has one function:

* :func:`exact_wh` for quantities known to be whole Wh (the orders file refuses
  anything finer), where rounding to the nearest Wh only removes float noise;
* :func:`floor_wh` for everything computed (fills, what is left of an order, what is
  settled): **rounded down**, so nothing is ever settled, carried or counted for more
  energy than was traded. :data:`WH_FLOAT_SLACK` absorbs float representation noise
  (0.3 kWh computed as 0.29999999999999999) and nothing more: a millionth of a Wh.

Power over a slot: ``p_mw = kwh / KWH_PER_MWH / slot_hours``.
"""

from __future__ import annotations

import decimal
import math

import numpy as np
import numpy.typing as npt

WH_PER_KWH = 1000
KWH_PER_MWH = 1000
KW_PER_MW = 1000
MINUTES_PER_HOUR = 60
SECONDS_PER_HOUR = 3600
MICRO_EUR_PER_EUR = 1_000_000
NANO_EUR_PER_EUR = 1_000_000_000
# Float noise allowed when rounding kWh down to whole Wh (in Wh): far below what any
# meter resolves, far above the error of a few float additions of kWh values.
WH_FLOAT_SLACK = 1e-6

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def slot_hours(slot_minutes: float) -> float:
    """Length of a slot in hours."""
    return slot_minutes / MINUTES_PER_HOUR


def kwh_to_mw(kwh: float, hours: float) -> float:
    """Average power in MW of ``kwh`` delivered evenly over ``hours``."""
    return kwh / KWH_PER_MWH / hours


def mw_per_kwh(hours: float) -> float:
    """MW of average power that one kWh over ``hours`` amounts to."""
    return 1.0 / KWH_PER_MWH / hours


def exact_wh(kwh: FloatArray | float) -> IntArray:
    """Whole Wh of quantities known to be whole Wh (validated input), noise removed."""
    wh: IntArray = np.rint(np.asarray(kwh, dtype=float) * WH_PER_KWH).astype(np.int64)
    return wh


def floor_wh(kwh: float, slack_wh: float = WH_FLOAT_SLACK) -> int:
    """Whole Wh of a computed quantity, rounded down (the one rule for fills and settlement).

    ``slack_wh`` is the noise forgiven below a whole Wh: float noise by default; a
    solver's feasibility tolerance where its values are rounded.
    """
    return math.floor(kwh * WH_PER_KWH + slack_wh)


def floor_wh_array(kwh: FloatArray, slack_wh: float = WH_FLOAT_SLACK) -> IntArray:
    """:func:`floor_wh` for an array."""
    return np.floor(np.asarray(kwh, dtype=float) * WH_PER_KWH + slack_wh).astype(np.int64)


def remaining_wh(quantity_wh: IntArray, traded_kwh: FloatArray | float) -> IntArray:
    """Whole Wh an order of ``quantity_wh`` may still trade after ``traded_kwh``, never < 0.

    Rounded down: an order never trades more than its quantity over all rounds, and a
    rest below 1 Wh can no longer trade.
    """
    left = np.floor(np.asarray(quantity_wh) - np.asarray(traded_kwh) * WH_PER_KWH + WH_FLOAT_SLACK)
    whole: IntArray = np.maximum(left, 0.0).astype(np.int64)
    return whole


def wh_to_kwh(wh: int) -> float:
    """KWh of a whole number of Wh (the nearest float, as the orders file reads it)."""
    return wh / WH_PER_KWH


def eur_to_micro_eur(eur: float) -> int:
    """Whole micro-EUR nearest to ``eur``."""
    return round(eur * MICRO_EUR_PER_EUR)


def micro_eur_to_eur(micro_eur: int) -> float:
    """EUR of whole micro-EUR."""
    return micro_eur / MICRO_EUR_PER_EUR


# --- money for prepaid accounts (issue #18): whole micro-EUR, never a float in between ---

MINUTES_PER_DAY = 24 * MINUTES_PER_HOUR
# Decimal places of EUR that a whole micro-EUR holds.
MICRO_EUR_DECIMALS = 6


def exact_micro_eur(eur: str | float) -> int:
    """Whole micro-EUR of an amount given in EUR with at most six decimals, exactly.

    The amount is read as the decimal text a user wrote (a float as its shortest
    ``repr``), so 0.1 EUR is 100,000 micro-EUR and never 99,999.

    Raises
    ------
    ValueError
        Not a finite number, or finer than 1 micro-EUR (more than six decimals).
    """
    try:
        amount = decimal.Decimal(eur if isinstance(eur, str) else repr(float(eur)))
    except decimal.InvalidOperation:
        raise ValueError(f"'{eur}' is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"'{eur}' is not finite")
    with decimal.localcontext() as context:
        # Exact for every digit written: the default 28 digits rounded
        # 0.5000000000000000000000000000009 to 0.5 before the test below.
        context.prec = max(context.prec, len(amount.as_tuple().digits) + MICRO_EUR_DECIMALS)
        micro = amount.scaleb(MICRO_EUR_DECIMALS)
    if micro != micro.to_integral_value():
        raise ValueError(f"{eur} is finer than 1 micro-EUR (at most {MICRO_EUR_DECIMALS} decimals)")
    return int(micro)


def energy_cost_micro_eur(wh: int, micro_eur_per_kwh: int) -> int:
    """Cost of ``wh`` whole Wh at a price in whole micro-EUR per kWh, rounded down.

    Prepaid billing applies it to a meter's cumulative register, never to a single
    interval, so the sum of the charges is the cost of the register however the
    readings were grouped into reports (and at most 1 micro-EUR in the customer's favour).
    """
    return wh * micro_eur_per_kwh // WH_PER_KWH


def standing_charge_micro_eur(minutes: int, micro_eur_per_day: int) -> int:
    """Standing charge accrued over ``minutes`` whole minutes, rounded down."""
    return minutes * micro_eur_per_day // MINUTES_PER_DAY
