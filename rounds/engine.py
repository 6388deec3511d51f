"""Clear one round with the existing engine; the one code path for run, rerun and diff.

A round is cleared exactly like ``gridmatch clear`` clears a scenario
(:func:`~gridmatch.grid_models.secure_clearing.clear_securely` when the scenario has
grid security, :func:`~gridmatch.matching.clearing.clear_orders` otherwise), on the
round's own order book: the orders still open, with what earlier rounds left of them.

Grid security across rounds
---------------------------
Trades accepted in earlier rounds stay in the grid. Each round is secured *on top of*
them: the grid (:class:`~gridmatch.grid_models.security.SlotGrid`, ``background_kwh``)
adds, per slot, the net injection of the accepted trades to every power flow, so the
round's base case is the grid after those trades and its own trades are checked (and
linearised) from there. The security rule then holds for all trades of a slot
together: a state within the band stays within it, and an element out of its band
before any trade is never made worse, round after round.
The ``before`` column of a round's grid.csv is the state after the earlier rounds.

Determinism
-----------
Same stored inputs and options give a byte-identical trades.csv. What that needs:

* A time limit that never binds. A solver stopped by the clock returns what it had
  found by then; give a limit far above a round's solve time (the default 30 s is) or
  use ``greedy``. A round's status ``feasible`` with ``time_limit`` terminations in
  its summary means this did not hold.
* A fixed ``seed`` (default 0) and the same ``mip_gap``; ``threads`` does not matter
  (each slot is solved on one solver thread, ``threads`` only runs slots in parallel
  processes).
* The same package versions (stored with every round; :func:`~gridmatch.rounds.replay.rerun`
  lists any that changed).
* The same network: a run serialises the scenario's network to pandapower JSON once,
  stores it in the ledger, and clears every round on the network loaded back from
  that JSON, as a rerun does.
* A fresh :class:`~gridmatch.grid_models.security.SlotGrid` per round: pandapower's
  recycled power flows start from the previous solution, so a grid reused across
  rounds could land 1e-9 pu elsewhere and break a tie differently.
* A fixed order of the round's book, which is also the tie-break between otherwise
  equal orders: time priority (``submitted_at_min``, then file row), so of two equal
  sellers the one submitted first comes first in every model. Trades are written
  sorted by slot, buy order and sell order position in that book, floats with
  ``repr``.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pandapower as pp

from gridmatch.errors import InputError
from gridmatch.grid_models.secure_clearing import SecureClearing
from gridmatch.grid_models.topology import bus_graph
from gridmatch.matching.backends.registry import get_backend
from gridmatch.matching.clearing import ClearingResult
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.solution import SolveOptions
from gridmatch.pipeline import clear_book, tariff_max_fee_eur_per_kwh
from gridmatch.results_io.folder import trades_csv as trades_csv_bytes
from gridmatch.results_io.rows import TradeRow, trade_rows
from gridmatch.results_io.summary import RoundSummary, clearing_summary
from gridmatch.scenario_io.network_source import load_network
from gridmatch.scenario_io.schema import NetworkSpec, ScenarioSpec

# (slot, bus, net kWh injected by the trades of earlier rounds: sold minus bought)
BackgroundInjection = tuple[tuple[int, int, float], ...]


@dataclass(frozen=True)
class Market:
    """What stays fixed over a day of rounds: the scenario (rules, limits) and network.

    Attributes
    ----------
    spec
        The validated ``scenario.yaml``.
    net
        The network, as loaded from ``network_json`` (never from the scenario's source).
    graph
        Its bus graph, for per-km fees.
    """

    spec: ScenarioSpec
    net: pp.pandapowerNet
    graph: nx.MultiGraph

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.spec.name


@dataclass(frozen=True)
class RoundInput:
    """Everything one round is cleared from; stored in the ledger.

    Attributes
    ----------
    round_no
        1-based round number.
    cleared_at_min
        When the round clears, minutes from the start of the day.
    book
        The round's orders in time priority, each with the quantity earlier rounds left.
    submitted_at_min
        Submission time of each order of ``book``.
    background_kwh
        Net injection of the trades accepted in earlier rounds, per slot of ``book``
        and bus, sorted; empty without grid security.
    formulation
        Backend name.
    options
        Solver settings.
    available_eur
        What each prepaid account may spend in the round, by participant id (sorted);
        ``None`` without accounts.
    """

    round_no: int
    cleared_at_min: int
    book: OrderBook
    submitted_at_min: tuple[int, ...]
    background_kwh: BackgroundInjection
    formulation: str
    options: SolveOptions
    available_eur: tuple[tuple[str, float], ...] | None = None


@dataclass(frozen=True)
class RoundClearing:
    """What clearing one round gave.

    Attributes
    ----------
    trades
        The round's trades.csv rows.
    summary
        The round's summary.json (a clearing's, plus the round's number and time).
    """

    round_input: RoundInput
    result: ClearingResult
    security: SecureClearing | None
    trades: tuple[TradeRow, ...]
    summary: RoundSummary

    @property
    def trades_csv(self) -> bytes:
        """The round's trades.csv, byte for byte as written to its folder."""
        return trades_csv_bytes(self.trades)

    @property
    def trades_sha256(self) -> str:
        """Hex SHA-256 of ``trades_csv``."""
        return hashlib.sha256(self.trades_csv).hexdigest()


def clear_round(market: Market, round_input: RoundInput) -> RoundClearing:
    """Clear one round's book with the existing engine, securely if the scenario says so.

    Raises
    ------
    gridmatch.matching.backends.registry.UnknownFormulationError
        Unknown formulation name.
    gridmatch.matching.backends.registry.SolverUnavailableError
        Its solver package is missing.
    gridmatch.matching.clearing.SolverFailedError
        A slot's solver reported an error.
    gridmatch.matching.clearing.InconsistentAllocationError
        A backend broke the market rules (a bug).
    """
    book, options = round_input.book, round_input.options
    result, security = clear_book(
        market.spec,
        market.net,
        market.graph,
        book,
        get_backend(round_input.formulation),
        options,
        round_input.background_kwh,
        None if round_input.available_eur is None else dict(round_input.available_eur),
    )
    summary = RoundSummary(
        **dict(
            clearing_summary(
                market.name,
                book,
                result,
                options,
                security,
                slot_minutes=market.spec.slot_minutes,
                day_start=market.spec.day_start,
                max_fee_eur_per_kwh=tariff_max_fee_eur_per_kwh(market.spec, market.graph, book),
            )
        ),
        round_no=round_input.round_no,
        cleared_at_min=round_input.cleared_at_min,
    )
    return RoundClearing(round_input, result, security, tuple(trade_rows(book, result)), summary)


def network_json(net: pp.pandapowerNet) -> str:
    """Return the network as pandapower JSON, the form the ledger stores it in."""
    text: str = pp.to_json(net)
    return text


def load_market(spec: ScenarioSpec, network_text: str, source: Path) -> Market:
    """Build the market from a spec and a stored network; run and rerun both come here.

    The network goes through the scenario loader's checks for untrusted pandapower JSON
    (only pandapower, pandas and numpy objects load), since a ledger is a file too.

    Parameters
    ----------
    source
        The file ``network_text`` came from (named in errors).

    Raises
    ------
    gridmatch.errors.InputError
        If the stored network is not an acceptable pandapower network.
    """
    with tempfile.TemporaryDirectory(prefix="gridmatch-network-") as folder:
        directory = Path(folder)
        (directory / "network.json").write_text(network_text, encoding="utf-8")
        try:
            net = load_network(
                NetworkSpec(pandapower=None, file="network.json", simbench=None), directory, source
            )
        except InputError as exc:
            raise InputError(source, f"stored network: {exc.message}", field="network") from None
    return Market(spec, net, bus_graph(net))
