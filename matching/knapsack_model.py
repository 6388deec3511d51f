r"""The multiple-knapsack MILP of one slot, as solver-neutral arrays.

Columns, in order:

* one per compatible pair :math:`p = (b, s)`:

  - indivisible buy :math:`b`: binary :math:`y_p` (1 = seller :math:`s` fills all of
    :math:`q_b`), worth :math:`w_p q_b`;
  - divisible buy :math:`b`: continuous :math:`x_p \in [0, \min(q_b, Q_s)]` kWh,
    worth :math:`w_p` per kWh;

* one binary :math:`z_s` per all-or-none seller that has a pair (1 = sold completely);
* with grid rows only: one continuous :math:`\iota_k` per order bus, the net kWh the
  slot's trades inject there, in :math:`[-\text{bought}_k^{max}, \text{sold}_k^{max}]`.

Rows, in order:

* buy rows (one per buy with a pair): :math:`\sum_s y_{bs} \le 1` (indivisible) or
  :math:`\sum_s x_{bs} \le q_b` (divisible);
* seller rows (one per seller with a pair):
  :math:`\sum_b q_b y_{bs} + \sum_b x_{bs} \le Q_s`, or :math:`= Q_s z_s` if all-or-none;
* with prepaid accounts only: one budget row per account,
  :math:`\sum_p c_p\,\mathrm{kWh}_p \le \mathrm{cap}` (:mod:`gridmatch.matching.budgets`);
* with grid rows only: one balance row per order bus, :math:`\iota_k` = kWh sold at
  :math:`k` minus kWh bought at :math:`k`, then the security rows of
  :class:`~gridmatch.matching.grid_rows.GridRows` over :math:`\iota`.

The injection columns keep the security rows as short as the number of buses;
written over the pairs they would be dense in every pair column.

Objective: maximise :math:`\sum_p w_p q_b y_p + \sum_p w_p x_p` (EUR).

Backends that work on arrays (highspy, CP-SAT, the LP relaxation) translate this
directly; the Pyomo backends state the same model algebraically.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from gridmatch.matching.problem import SlotProblem

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class KnapsackArrays:
    """Standard-form arrays of the slot MILP (maximisation).

    Attributes
    ----------
    col_cost
        Objective coefficient of each column, EUR per unit of the column.
    col_lower, col_upper
        Bounds of each column (0 for pairs and switches).
    col_integer
        True for binary columns.
    col_kwh_per_unit
        kWh one unit of a pair column trades (``q_b`` for binaries, 1 for kWh columns).
    matrix
        Row-by-column constraint matrix (CSC).
    row_lower, row_upper
        Row bounds (``-inf`` for one-sided rows).
    n_pair_cols
        The first ``n_pair_cols`` columns are the pairs of the slot problem, in order.
    switch_sell
        Local seller index of each all-or-none switch column (the columns after the pairs).
    injection_bus
        Bus of each injection column (the last columns; empty without grid rows).
    """

    col_cost: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    col_integer: npt.NDArray[np.bool_]
    col_kwh_per_unit: FloatArray
    matrix: sp.csc_matrix
    row_lower: FloatArray
    row_upper: FloatArray
    n_pair_cols: int
    switch_sell: npt.NDArray[np.int64]
    injection_bus: npt.NDArray[np.int64]

    @property
    def n_cols(self) -> int:
        """Number of columns."""
        return int(self.col_cost.size)

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return int(self.row_lower.size)

    def pair_kwh(self, col_values: FloatArray) -> FloatArray:
        """Turn column values into kWh per pair (binaries rounded, tiny values zeroed)."""
        values = np.asarray(col_values[: self.n_pair_cols], dtype=float)
        integer = self.col_integer[: self.n_pair_cols]
        # Solvers return binaries as -0.0 / 0.9999999: round with a tolerance.
        values = np.where(integer, np.round(values), values)
        values = np.clip(values, 0.0, self.col_upper[: self.n_pair_cols])
        values[np.abs(values) < 1e-9] = 0.0
        kwh: FloatArray = values * self.col_kwh_per_unit[: self.n_pair_cols]
        return kwh

    def columns_from_pair_kwh(self, problem: SlotProblem, pair_kwh: FloatArray) -> FloatArray:
        """Column values of a feasible allocation given as kWh per pair (for warm starts)."""
        pair_values = pair_kwh / self.col_kwh_per_unit[: self.n_pair_cols]
        sold_kwh = np.bincount(
            problem.pair_sell, weights=pair_kwh, minlength=problem.sell_quantity_kwh.size
        )
        switches = (sold_kwh[self.switch_sell] > 0.0).astype(float)
        injections = problem.bus_injection_kwh(self.injection_bus, pair_kwh)
        return np.concatenate([pair_values, switches, injections])


def build_knapsack_arrays(problem: SlotProblem) -> KnapsackArrays:
    """Build the arrays of the slot MILP described in the module docstring."""
    arrays = _market_arrays(problem)
    if problem.budget is not None:
        arrays = _with_budget_rows(problem, arrays)
    if problem.grid is None or problem.grid.n_rows == 0:
        return arrays
    return _with_grid_rows(problem, arrays)


def _with_budget_rows(problem: SlotProblem, arrays: KnapsackArrays) -> KnapsackArrays:
    """Append one row per prepaid account: what its pairs cost stays within its cap."""
    budget = problem.budget
    assert budget is not None
    paid = np.flatnonzero(budget.pair_account >= 0)
    # A pair column's unit is q_b kWh (binary) or 1 kWh: cost per unit of the column.
    cost = budget.cost_eur_per_kwh[paid] * arrays.col_kwh_per_unit[paid]
    rows = sp.csc_matrix(
        (cost, (budget.pair_account[paid], paid)), shape=(budget.n_rows, arrays.n_cols)
    )
    return replace(
        arrays,
        matrix=sp.vstack([arrays.matrix, rows]).tocsc(),
        row_lower=np.concatenate([arrays.row_lower, np.full(budget.n_rows, -np.inf)]),
        row_upper=np.concatenate([arrays.row_upper, budget.model_cap_eur()]),
    )


def _market_arrays(problem: SlotProblem) -> KnapsackArrays:
    n_pairs = problem.n_pairs
    indivisible = problem.pair_indivisible
    buy_q = problem.buy_quantity_kwh[problem.pair_buy]
    kwh_per_unit = np.where(indivisible, buy_q, 1.0)
    pair_upper = np.where(indivisible, 1.0, problem.pair_max_kwh())

    # Only buyers and sellers that appear in a pair get a row.
    buys_used = np.unique(problem.pair_buy)
    sells_used = np.unique(problem.pair_sell)
    buy_row = np.full(problem.buy_quantity_kwh.size, -1)
    buy_row[buys_used] = np.arange(buys_used.size)
    sell_row = np.full(problem.sell_quantity_kwh.size, -1)
    sell_row[sells_used] = buys_used.size + np.arange(sells_used.size)

    aon_sellers = sells_used[problem.sell_all_or_none[sells_used]]
    n_cols = n_pairs + aon_sellers.size
    pair_cols = np.arange(n_pairs)
    switch_cols = n_pairs + np.arange(aon_sellers.size)

    rows = np.concatenate(
        [buy_row[problem.pair_buy], sell_row[problem.pair_sell], sell_row[aon_sellers]]
    )
    cols = np.concatenate([pair_cols, pair_cols, switch_cols])
    vals = np.concatenate([np.ones(n_pairs), kwh_per_unit, -problem.sell_quantity_kwh[aon_sellers]])
    n_rows = buys_used.size + sells_used.size
    matrix = sp.csc_matrix((vals, (rows, cols)), shape=(n_rows, n_cols))

    buy_cap = np.where(problem.buy_divisible[buys_used], problem.buy_quantity_kwh[buys_used], 1.0)
    sell_aon = problem.sell_all_or_none[sells_used]
    sell_upper = np.where(sell_aon, 0.0, problem.sell_quantity_kwh[sells_used])
    sell_lower = np.where(sell_aon, 0.0, -np.inf)
    return KnapsackArrays(
        col_cost=np.concatenate(
            [problem.pair_welfare_eur_per_kwh * kwh_per_unit, np.zeros(aon_sellers.size)]
        ),
        col_lower=np.zeros(n_cols),
        col_upper=np.concatenate([pair_upper, np.ones(aon_sellers.size)]),
        col_integer=np.concatenate([indivisible, np.ones(aon_sellers.size, dtype=bool)]),
        col_kwh_per_unit=np.concatenate([kwh_per_unit, np.zeros(aon_sellers.size)]),
        matrix=matrix,
        row_lower=np.concatenate([np.full(buys_used.size, -np.inf), sell_lower]),
        row_upper=np.concatenate([buy_cap, sell_upper]),
        n_pair_cols=n_pairs,
        switch_sell=aon_sellers.astype(np.int64),
        injection_bus=np.zeros(0, dtype=np.int64),
    )


def _with_grid_rows(problem: SlotProblem, arrays: KnapsackArrays) -> KnapsackArrays:
    """Append the injection columns, the balance rows and the security rows."""
    rows = problem.grid
    assert rows is not None
    buses = rows.buses
    n_buses = buses.size
    n_pairs = arrays.n_pair_cols
    sell_column = np.searchsorted(buses, problem.sell_bus[problem.pair_sell])
    buy_column = np.searchsorted(buses, problem.buy_bus[problem.pair_buy])
    unit_kwh = arrays.col_kwh_per_unit[:n_pairs]
    pair_cols = np.arange(n_pairs)
    injection_cols = arrays.n_cols + np.arange(n_buses)
    # Balance row k: iota_k - sold at k + bought at k = 0 (a pair within one bus cancels).
    balance = sp.csc_matrix(
        (
            np.concatenate([np.ones(n_buses), -unit_kwh, unit_kwh]),
            (
                np.concatenate([np.arange(n_buses), sell_column, buy_column]),
                np.concatenate([injection_cols, pair_cols, pair_cols]),
            ),
        ),
        shape=(n_buses, arrays.n_cols + n_buses),
    )
    balance.eliminate_zeros()
    security = sp.hstack(
        [sp.csc_matrix((rows.n_rows, arrays.n_cols)), sp.csc_matrix(rows.coefficient_per_kwh)]
    )
    old = sp.hstack([arrays.matrix, sp.csc_matrix((arrays.n_rows, n_buses))])
    matrix = sp.vstack([old, balance, security]).tocsc()

    max_sold = np.bincount(sell_column, weights=problem.pair_max_kwh(), minlength=n_buses)
    max_bought = np.bincount(buy_column, weights=problem.pair_max_kwh(), minlength=n_buses)
    return KnapsackArrays(
        col_cost=np.concatenate([arrays.col_cost, np.zeros(n_buses)]),
        col_lower=np.concatenate([arrays.col_lower, -max_bought]),
        col_upper=np.concatenate([arrays.col_upper, max_sold]),
        col_integer=np.concatenate([arrays.col_integer, np.zeros(n_buses, dtype=bool)]),
        col_kwh_per_unit=np.concatenate([arrays.col_kwh_per_unit, np.zeros(n_buses)]),
        matrix=matrix,
        row_lower=np.concatenate([arrays.row_lower, np.zeros(n_buses), rows.lower]),
        row_upper=np.concatenate([arrays.row_upper, np.zeros(n_buses), rows.upper]),
        n_pair_cols=n_pairs,
        switch_sell=arrays.switch_sell,
        injection_bus=buses,
    )
