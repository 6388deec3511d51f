"""Read a scenario folder whose orders carry submission times, for rolling rounds.

The orders file is the one ``gridmatch clear`` reads plus a column
``submitted_at_min`` (minutes from the start of the day, a whole number >= 0), and
``scenario.yaml`` needs a ``rounds:`` section. Everything else is validated by
``scenario_io`` itself: the submission column is checked here and then removed, and
the remaining table goes through :func:`~gridmatch.scenario_io.orders_csv.read_orders`
unchanged, so both commands accept exactly the same orders. Errors name the user's
file, row and field, as everywhere at the edge.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridmatch.grid_models.networks import load_network
from gridmatch.grid_models.topology import bus_graph, unusable_buses
from gridmatch.matching.orders import OrderBook
from gridmatch.scenario_io.errors import InputError
from gridmatch.scenario_io.loader import SCENARIO_FILE, Scenario, read_scenario_spec
from gridmatch.scenario_io.orders_csv import read_orders
from gridmatch.scenario_io.schema import RoundsSpec, ScenarioSpec

SUBMITTED_COLUMN = "submitted_at_min"
# A week of minutes: far beyond a trading day, small enough to stay an exact int64.
MAX_SUBMITTED_AT_MIN = 7 * 24 * 60


@dataclass(frozen=True)
class TimedBook:
    """An order book and when each order was submitted.

    Attributes
    ----------
    book
        The orders in file order.
    submitted_at_min
        Submission time of each order, minutes from the start of the day.
    rows
        File row of each order (the header is row 1).
    """

    book: OrderBook
    submitted_at_min: tuple[int, ...]
    rows: tuple[int, ...]


@dataclass(frozen=True)
class RollingScenario:
    """A validated scenario for rolling rounds.

    Attributes
    ----------
    scenario
        The scenario as ``gridmatch clear`` sees it (its book is the whole day).
    rounds
        The ``rounds:`` section.
    submitted_at_min
        Submission time of each order of ``scenario.book``.
    """

    scenario: Scenario
    rounds: RoundsSpec
    submitted_at_min: tuple[int, ...]


def read_timed_orders(path: Path) -> TimedBook:
    """Read an orders file that has the ``submitted_at_min`` column.

    Raises
    ------
    InputError
        On the first problem, naming ``path``, the row and the field; also when the
        column is missing.
    """
    rows = _read_rows(path)
    header = [name.strip() for name in rows[0]]
    if SUBMITTED_COLUMN not in header:
        raise InputError(
            path,
            f"missing column(s): {SUBMITTED_COLUMN} (rolling rounds need each order's "
            "submission time, minutes from the start of the day)",
            row=1,
            field=SUBMITTED_COLUMN,
        )
    if header.count(SUBMITTED_COLUMN) > 1:
        raise InputError(path, f"repeated column(s): {SUBMITTED_COLUMN}", row=1)
    column = header.index(SUBMITTED_COLUMN)

    submitted: list[int] = []
    stripped: list[list[str]] = [rows[0][:column] + rows[0][column + 1 :]]
    for line, values in enumerate(rows[1:], start=2):
        if not any(v.strip() for v in values):
            stripped.append(values)  # read_orders skips it; keeps the row numbers
            continue
        if len(values) != len(header):
            raise InputError(path, f"expected {len(header)} fields, found {len(values)}", row=line)
        submitted.append(_minutes(path, line, values[column].strip()))
        stripped.append(values[:column] + values[column + 1 :])

    # The rest of the table is read by the same parser as `gridmatch clear` uses, from
    # a copy without the extra column; its errors are re-addressed to the user's file.
    with tempfile.TemporaryDirectory(prefix="gridmatch-orders-") as folder:
        copy = Path(folder) / path.name
        with copy.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator="\n").writerows(stripped)
        try:
            book, order_rows = read_orders(copy)
        except InputError as exc:
            message = exc.message
            if message.startswith("unknown column"):
                message += f", {SUBMITTED_COLUMN}"
            raise InputError(path, message, row=exc.row, field=exc.field) from None
    return TimedBook(book, tuple(submitted), order_rows)


def load_rolling_scenario(directory: Path) -> RollingScenario:
    """Validate a scenario folder for rolling rounds completely before anything is solved.

    The same checks as :func:`~gridmatch.scenario_io.loader.load_scenario` (schema,
    orders, background length, usable buses), plus the ``rounds:`` section and the
    ``submitted_at_min`` column.

    Raises
    ------
    InputError
        On the first problem, naming the file, row and field.
    """
    if not directory.is_dir():
        raise InputError(directory, "not a folder; expected a scenario folder with scenario.yaml")
    scenario_file = directory / SCENARIO_FILE
    spec = read_scenario_spec(scenario_file)
    if spec.rounds is None:
        raise InputError(
            scenario_file,
            "rolling rounds need a 'rounds:' section (interval_min, gate_closure_min)",
            field="rounds",
        )
    orders_path = (directory / spec.orders).resolve()
    if not orders_path.is_relative_to(directory.resolve()):
        raise InputError(
            scenario_file, f"'{spec.orders}' lies outside the scenario folder", field="orders"
        )
    timed = read_timed_orders(orders_path)
    _check_background_covers_slots(spec, timed.book, scenario_file)

    net = load_network(spec.network, directory, scenario_file)
    graph = bus_graph(net)
    unusable = unusable_buses(net, graph, {order.bus for order in timed.book.orders})
    for order, row in zip(timed.book.orders, timed.rows, strict=True):
        if order.bus in unusable:
            raise InputError(orders_path, unusable[order.bus], row=row, field="bus")

    files = [scenario_file, orders_path]
    if spec.network.file is not None:
        files.append((directory / spec.network.file).resolve())
    scenario = Scenario(directory, spec, timed.book, net, graph, tuple(files))
    return RollingScenario(scenario, spec.rounds, timed.submitted_at_min)


def _read_rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle, strict=True))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}") from None
    if not rows:
        raise InputError(path, "the file is empty; expected a header row")
    return rows


def _minutes(path: Path, line: int, value: str) -> int:
    def fail(message: str) -> InputError:
        return InputError(path, message, row=line, field=SUBMITTED_COLUMN)

    if not value:
        raise fail("is empty")
    try:
        minutes = int(value)
    except ValueError:
        raise fail(f"'{value}' is not a whole number of minutes") from None
    if minutes < 0:
        raise fail(f"{minutes} is negative")
    if minutes > MAX_SUBMITTED_AT_MIN:
        raise fail(f"{minutes} is larger than {MAX_SUBMITTED_AT_MIN} (a week)")
    return minutes


def _check_background_covers_slots(
    spec: ScenarioSpec, book: OrderBook, scenario_file: Path
) -> None:
    # The same rule as scenario_io.loader applies for `gridmatch clear`.
    if spec.background is None:
        return
    last_slot = int(np.max(book.slot))
    for key in ("load_scaling", "sgen_scaling"):
        scaling = getattr(spec.background, key)
        if scaling is not None and len(scaling) <= last_slot:
            raise InputError(
                scenario_file,
                f"has {len(scaling)} values but the orders use slot {last_slot}",
                field=f"background.{key}",
            )
