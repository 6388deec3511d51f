"""Pisinger's multiple-knapsack instance classes as order books (seeded, documented).

D. Pisinger, "An exact algorithm for large multiple knapsack problems", EJOR 114
(1999), section 6: ``n`` items with weights uniform in ``[10, R]`` (``R = 1000``) and

* ``uncorrelated``: profits uniform in ``[10, R]``;
* ``weakly``: profits uniform in ``[w - R/10, w + R/10]``, at least 1;
* ``strongly``: profits ``w + R/10``;
* ``subset-sum``: profits ``w``;

``m`` knapsacks, the first ``m - 1`` with capacities uniform in
``[0.4, 0.6] * sum(w) / m`` and the last filling up to ``sum(w) / 2`` (the "similar
capacities" of the paper); they are drawn again until the last one holds the largest
item (with many knapsacks the remainder can come out small or negative), on books too
small for that after 100 draws until it holds the smallest.

As an order book: every item is an indivisible buy of ``w`` Wh whose limit price makes
it worth ``p`` EUR (``p / (w / 1000)`` EUR/kWh, rounded to 1e-6 as orders files are),
every knapsack a divisible sell at 0 EUR/kWh, all at one bus, no fee, one slot: the
textbook multiple knapsack problem, in which a buy's welfare does not depend on who
fills it.
"""

from __future__ import annotations

import numpy as np

from gridmatch.matching.orders import Order, OrderBook, Side

CLASSES = ("uncorrelated", "weakly", "strongly", "subset-sum")
RANGE = 1000
# Draws of the capacities before giving up (see the module docstring).
MAX_DRAWS = 200


def pisinger_book(kind: str, n_items: int, n_knapsacks: int, seed: int) -> OrderBook:
    """Return one instance of class ``kind`` as an order book (module docstring)."""
    rng = np.random.default_rng(seed)
    weights = rng.integers(10, RANGE + 1, n_items)
    if kind == "uncorrelated":
        profits = rng.integers(10, RANGE + 1, n_items)
    elif kind == "weakly":
        profits = np.maximum(1, weights + rng.integers(-RANGE // 10, RANGE // 10 + 1, n_items))
    elif kind == "strongly":
        profits = weights + RANGE // 10
    elif kind == "subset-sum":
        profits = weights.copy()
    else:
        raise ValueError(f"unknown class {kind!r}; one of {', '.join(CLASSES)}")
    total = int(weights.sum())
    for tries in range(MAX_DRAWS):
        capacities = rng.integers(
            int(0.4 * total / n_knapsacks), int(0.6 * total / n_knapsacks) + 1, n_knapsacks - 1
        )
        last = total // 2 - int(capacities.sum())
        # The largest item, or on small books (where that may be impossible) the smallest.
        if last >= int(weights.max()) or (tries >= MAX_DRAWS // 2 and last >= int(weights.min())):
            break
    else:
        raise ValueError(f"no capacities for {n_items} items in {n_knapsacks} knapsacks")
    capacities = np.append(capacities, last)
    buys = [
        Order(
            f"b{j}",
            f"buyer{j}",
            Side.BUY,
            0,
            0,
            int(w) / 1000,
            round(1000 * int(p) / int(w), 6),
            False,
        )
        for j, (w, p) in enumerate(zip(weights, profits, strict=True))
    ]
    sells = [
        Order(f"s{i}", f"seller{i}", Side.SELL, 0, 0, int(c) / 1000, 0.0, True)
        for i, c in enumerate(capacities)
    ]
    return OrderBook(tuple(buys + sells))
