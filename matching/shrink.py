"""The one step of cutting an allocation down: shrink a trade, or drop it with what it needs.

Both cuts (to budget rows, :mod:`gridmatch.matching.budget_cut`, and to grid rows,
:mod:`gridmatch.matching.secure_subset`) pick a victim trade by their own score and
then take it down the same way, so the order rules hold after every step.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridmatch.units import floor_wh, wh_to_kwh

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# Keeps a cut's score finite for pairs of zero welfare (they go first).
WELFARE_FLOOR_EUR_PER_KWH = 1e-9


def shrink_or_drop(
    kwh: FloatArray,
    victim: int,
    needed_kwh: float,
    *,
    shrinkable: BoolArray,
    all_or_none: BoolArray,
    sellers: IntArray,
) -> None:
    """Take at least ``needed_kwh`` off trade ``victim`` of ``kwh``, in place.

    A shrinkable trade (a divisible buy from a divisible seller) keeps what is left in
    whole Wh, rounded down, if any is left; otherwise the trade goes, and a trade of an
    all-or-none seller takes that seller's other trades with it.

    Parameters
    ----------
    kwh
        Energy per trade; 0 is no trade.
    shrinkable, all_or_none, sellers
        Per trade of ``kwh``: whether it may shrink, whether its seller is all-or-none,
        and its seller's index.
    """
    if shrinkable[victim]:
        rest = wh_to_kwh(floor_wh(float(kwh[victim] - needed_kwh)))
        if rest > 0.0:
            kwh[victim] = rest
            return
    if all_or_none[victim]:
        kwh[sellers == sellers[victim]] = 0.0
    else:
        kwh[victim] = 0.0
