"""Read a scenario folder: ``scenario.yaml``, its orders file and its network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pandapower as pp

from gridmatch.errors import InputError
from gridmatch.grid_models.topology import bus_graph, unusable_buses
from gridmatch.matching.market_rules import MarketRules
from gridmatch.matching.orders import OrderBook
from gridmatch.scenario_io.accounts_csv import AccountTable, read_accounts
from gridmatch.scenario_io.network_source import load_network
from gridmatch.scenario_io.orders_csv import read_orders
from gridmatch.scenario_io.schema import ScenarioSpec
from gridmatch.scenario_io.strict_yaml import read_yaml_mapping, validated_model
from gridmatch.scenario_io.topups_csv import TopUp, read_topups
from gridmatch.units import micro_eur_to_eur

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
    accounts: AccountTable | None = None
    topups: tuple[TopUp, ...] = ()

    def available_eur(self) -> dict[str, float] | None:
        """Return what each prepaid account may spend: balance plus emergency credit (EUR)."""
        return None if self.accounts is None else available_eur(self.accounts)

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.spec.name

    @property
    def rules(self) -> MarketRules:
        """Pricing and fee rules of the market section."""
        return market_rules(self.spec)


def available_eur(accounts: AccountTable) -> dict[str, float]:
    """Balance plus emergency credit (0 without the column) of each account, in EUR."""
    return {
        a.participant_id: micro_eur_to_eur(
            a.balance_micro_eur + (a.emergency_credit_micro_eur or 0)
        )
        for a in accounts.accounts
    }


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

    accounts = None
    if spec.accounts is not None:
        accounts = read_accounts(_inside(directory, spec.accounts, scenario_file, "accounts"))
    topups: tuple[TopUp, ...] = ()
    if spec.topups is not None:
        if accounts is None:
            raise InputError(
                scenario_file, "top-ups need prepaid accounts ('accounts:')", field="topups"
            )
        topups = read_topups(
            _inside(directory, spec.topups, scenario_file, "topups"),
            set(accounts.by_participant()),
        )
    files = scenario_input_files(directory, spec)
    return Scenario(
        directory,
        spec,
        book,
        net,
        graph,
        files,
        table.submitted_at_min,
        table.rows,
        accounts,
        topups,
    )


def _inside(directory: Path, name: str, scenario_file: Path, field: str) -> Path:
    """Return the path of a file the scenario names; refuse one outside the folder."""
    path = (directory / name).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise InputError(scenario_file, f"'{name}' lies outside the scenario folder", field=field)
    return path


def scenario_input_files(directory: Path, spec: ScenarioSpec) -> tuple[Path, ...]:
    """Every file a scenario is read from, as hashed into each run's manifest."""
    files = [directory / SCENARIO_FILE, (directory / spec.orders).resolve()]
    if spec.network.file is not None:
        files.append((directory / spec.network.file).resolve())
    for named in (spec.accounts, spec.topups):
        if named is not None:
            files.append((directory / named).resolve())
    return tuple(files)


def read_scenario_spec(path: Path) -> ScenarioSpec:
    """Parse and validate ``scenario.yaml``.

    Plain YAML lets the last of two equal keys win silently: a second
    ``security: {enabled: false}`` at the end of a file would switch the grid check off;
    the strict reader (:mod:`gridmatch.scenario_io.strict_yaml`) refuses it.

    Raises
    ------
    InputError
        Not a regular UTF-8 file of at most 1 MiB, malformed YAML (a key given twice
        included), or a value the schema refuses; naming the line or key.
    """
    document = read_yaml_mapping(path, "scenario file (name, network, orders, ...)")
    return validated_model(ScenarioSpec, document, path)


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
