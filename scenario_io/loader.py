"""Read a scenario folder: ``scenario.yaml``, its orders file and its network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import pandapower as pp
import pydantic
import yaml

from gridmatch.errors import InputError
from gridmatch.grid_models.topology import bus_graph, unusable_buses
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import OrderBook
from gridmatch.scenario_io.network_source import load_network
from gridmatch.scenario_io.orders_csv import read_orders
from gridmatch.scenario_io.schema import ScenarioSpec
from gridmatch.user_files import MAX_NESTING, SCENARIO_LIMIT_BYTES, nesting_depth, read_text

SCENARIO_FILE = "scenario.yaml"


@dataclass(frozen=True)
class Scenario:
    """A validated scenario, ready to clear.

    Attributes
    ----------
    input_files
        Every file the scenario was read from (hashed into each run's manifest).
    submitted_at_min
        Submission time of each order (for rolling rounds), ``None`` if the orders file
        has no ``submitted_at_min`` column.
    order_rows
        Row of each order in the orders file (for errors found after reading).
    """

    directory: Path
    spec: ScenarioSpec
    book: OrderBook
    net: pp.pandapowerNet
    graph: nx.MultiGraph
    input_files: tuple[Path, ...]
    submitted_at_min: tuple[int, ...] | None = None
    order_rows: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.spec.name

    @property
    def rules(self) -> MarketRules:
        """Pricing and fee rules of the market section."""
        return market_rules(self.spec)


def market_rules(spec: ScenarioSpec) -> MarketRules:
    """Pricing and fee rules of a scenario's market section."""
    market = spec.market
    return MarketRules(
        pricing=market.pricing,
        grid_fee_eur_per_kwh=market.grid_fee_eur_per_kwh,
        grid_fee_eur_per_kwh_per_km=market.grid_fee_eur_per_kwh_per_km,
    )


def load_scenario(directory: Path) -> Scenario:
    """Validate a scenario folder completely before anything is solved.

    Raises
    ------
    InputError
        On the first problem, naming the file, row and field.
    """
    if not directory.is_dir():
        raise InputError(directory, "not a folder; expected a scenario folder with scenario.yaml")
    scenario_file = directory / SCENARIO_FILE
    spec = read_scenario_spec(scenario_file)

    orders_path = (directory / spec.orders).resolve()
    if not orders_path.is_relative_to(directory.resolve()):
        raise InputError(
            scenario_file, f"'{spec.orders}' lies outside the scenario folder", field="orders"
        )
    table = read_orders(orders_path)
    book = table.book
    _check_background_covers_slots(spec, book, scenario_file)

    net = load_network(spec.network, directory, scenario_file)
    graph = bus_graph(net)
    unusable = unusable_buses(net, graph, {order.bus for order in book.orders})
    for order, row in zip(book.orders, table.rows, strict=True):
        if order.bus in unusable:
            raise InputError(orders_path, unusable[order.bus], row=row, field="bus")

    files = scenario_input_files(directory, spec)
    return Scenario(directory, spec, book, net, graph, files, table.submitted_at_min, table.rows)


def scenario_input_files(directory: Path, spec: ScenarioSpec) -> tuple[Path, ...]:
    """Every file a scenario is read from, as hashed into each run's manifest."""
    files = [directory / SCENARIO_FILE, (directory / spec.orders).resolve()]
    if spec.network.file is not None:
        files.append((directory / spec.network.file).resolve())
    return tuple(files)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping.

    Plain YAML lets the last of two equal keys win silently: a second
    ``security: {enabled: false}`` at the end of a file would switch the grid check off.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' is given twice (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_scenario_spec(path: Path) -> ScenarioSpec:
    """Parse and validate ``scenario.yaml``.

    Raises
    ------
    InputError
        Not a regular UTF-8 file of at most 1 MiB, malformed YAML (a key given twice
        included), or a value the schema refuses; naming the line or key.
    """
    text = read_text(path, SCENARIO_LIMIT_BYTES, "scenario file")
    if nesting_depth(text, skip_strings=False) > MAX_NESTING:
        raise InputError(path, f"malformed YAML: brackets nested more than {MAX_NESTING} deep")
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, f"malformed YAML: {problem}", row=row) from None
    except RecursionError:
        raise InputError(path, "malformed YAML: nested too deeply") from None
    if not isinstance(document, dict):
        raise InputError(path, "expected a mapping of keys (name, network, orders, ...)")
    return _validated_spec(path, document)


def _validated_spec(path: Path, document: dict[str, Any]) -> ScenarioSpec:
    try:
        return ScenarioSpec.model_validate(document)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "required key is missing"
        more = exc.error_count() - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise InputError(path, message, field=field) from None


def _check_background_covers_slots(
    spec: ScenarioSpec, book: OrderBook, scenario_file: Path
) -> None:
    if spec.background is None:
        return
    last_slot = max(book.slots)
    for key in ("load_scaling", "sgen_scaling"):
        scaling = getattr(spec.background, key)
        if scaling is not None and len(scaling) <= last_slot:
            raise InputError(
                scenario_file,
                f"has {len(scaling)} values but the orders use slot {last_slot}",
                field=f"background.{key}",
            )
