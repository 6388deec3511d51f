"""Clear a stored round again: ``rerun`` (same inputs, same or another formulation) and ``diff``.

Everything comes from the ledger, never from the scenario folder (its files may have
changed since): the scenario spec, the network as stored, the round's book with what
earlier rounds left, the grid background of earlier rounds' trades, the options. The
stored inputs are checked against their hash first, so an altered ledger is reported
rather than silently replayed.

A replay holds history fixed: ``diff N --formulation X`` answers "what would round N
have traded with X, given what rounds 1..N-1 actually traded", not a whole day
replayed with X.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridmatch.errors import InputError
from gridmatch.matching.solution import TerminationCondition
from gridmatch.results_io.folder import parse_trades
from gridmatch.results_io.rows import TradeRow
from gridmatch.results_io.summary import RoundSummary
from gridmatch.rounds.engine import clear_round, load_market
from gridmatch.rounds.hashing import current_versions, sha256_text
from gridmatch.rounds.ledger import Ledger, StoredRound, StoredScenario

# Quantities and prices equal to this are "unchanged" in a diff (the trades' hashes
# still decide whether a rerun is identical, byte for byte).
DIFF_TOLERANCE = 1e-9
TradeKey = tuple[int, str, str]


@dataclass(frozen=True)
class TradeChange:
    """A pair that trades in both sets, with another quantity or price."""

    before: TradeRow
    after: TradeRow


@dataclass(frozen=True)
class TradeDiff:
    """How one trade set differs from another (``before``: the ledger's).

    Attributes
    ----------
    added, removed
        Trades only in the new set / only in the stored set, sorted by key.
    changed
        Pairs in both sets whose quantity or price differs by more than
        :data:`DIFF_TOLERANCE`.
    welfare_before_eur, welfare_after_eur
        Sum of the ``welfare_eur`` column of each set.
    """

    added: tuple[TradeRow, ...]
    removed: tuple[TradeRow, ...]
    changed: tuple[TradeChange, ...]
    welfare_before_eur: float
    welfare_after_eur: float

    @property
    def welfare_delta_eur(self) -> float:
        """New minus stored welfare."""
        return self.welfare_after_eur - self.welfare_before_eur

    @property
    def empty(self) -> bool:
        """True if no trade was added, removed or changed."""
        return not (self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        """Return the differences as text lines, one per trade."""
        out = [f"+ {_describe(t)}" for t in self.added]
        out += [f"- {_describe(t)}" for t in self.removed]
        for change in self.changed:
            b, a = change.before, change.after
            out.append(
                f"~ slot {a.slot} {a.buy_order_id} <- {a.sell_order_id}: "
                f"{b.quantity_kwh:.3f} -> {a.quantity_kwh:.3f} kWh, "
                f"{b.price_eur_per_kwh:.4f} -> {a.price_eur_per_kwh:.4f} EUR/kWh"
            )
        out.append(
            f"welfare {self.welfare_before_eur:.6f} -> {self.welfare_after_eur:.6f} EUR "
            f"({self.welfare_delta_eur:+.6f}); {len(self.added)} added, "
            f"{len(self.removed)} removed, {len(self.changed)} changed"
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return {
            "added": [vars(t) for t in self.added],
            "removed": [vars(t) for t in self.removed],
            "changed": [{"before": vars(c.before), "after": vars(c.after)} for c in self.changed],
            "welfare_before_eur": self.welfare_before_eur,
            "welfare_after_eur": self.welfare_after_eur,
            "welfare_delta_eur": self.welfare_delta_eur,
        }


@dataclass(frozen=True)
class Replay:
    """A stored round cleared again.

    Attributes
    ----------
    stored_formulation, formulation
        What the round was cleared with, and what the replay used.
    identical
        The replay's trades.csv has the stored SHA-256 (byte-identical).
    stored_trades_sha256, trades_sha256
        The two hashes.
    diff
        Trade by trade, stored -> replay.
    status
        The replay's clearing status (``optimal``, ``feasible``, ``heuristic``).
    changed_versions
        ``name -> (stored, now)`` for every recorded version that differs.
    stored_time_limited
        A slot of the stored round stopped at its time limit: its trades depended on
        the clock, and an identical rerun is not to be expected.
    runtime_s
        Wall time of the replay's clearing.
    """

    round_no: int
    cleared_at_min: int
    stored_formulation: str
    formulation: str
    identical: bool
    stored_trades_sha256: str
    trades_sha256: str
    diff: TradeDiff
    status: str
    changed_versions: dict[str, tuple[str | None, str | None]]
    stored_time_limited: bool
    runtime_s: float

    def lines(self) -> list[str]:
        """Return a readable report, a line per fact."""
        head = (
            f"round {self.round_no} (cleared at {self.cleared_at_min} min): "
            f"stored {self.stored_formulation}, replayed {self.formulation} "
            f"({self.status}, {self.runtime_s:.2f} s)"
        )
        verdict = (
            f"trades identical (sha256 {self.trades_sha256[:16]}...)"
            if self.identical
            else f"trades differ: sha256 {self.stored_trades_sha256[:16]}... stored, "
            f"{self.trades_sha256[:16]}... now"
        )
        out = [head, verdict]
        out += [
            f"version changed: {name} {old} -> {new}"
            for name, (old, new) in sorted(self.changed_versions.items())
        ]
        if self.stored_time_limited:
            out.append("the stored round hit its time limit: its trades depended on the clock")
        if not self.identical:
            out += self.diff.lines()
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready form."""
        return {
            "round_no": self.round_no,
            "cleared_at_min": self.cleared_at_min,
            "stored_formulation": self.stored_formulation,
            "formulation": self.formulation,
            "identical": self.identical,
            "stored_trades_sha256": self.stored_trades_sha256,
            "trades_sha256": self.trades_sha256,
            "status": self.status,
            "changed_versions": {k: list(v) for k, v in self.changed_versions.items()},
            "stored_time_limited": self.stored_time_limited,
            "runtime_s": self.runtime_s,
            "diff": self.diff.to_dict(),
        }


def rerun(ledger_path: Path, round_no: int, formulation: str | None = None) -> Replay:
    """Reproduce round ``round_no`` from the ledger and compare its trades byte for byte.

    Parameters
    ----------
    ledger_path
        ``OUT/ledger.sqlite`` of a ``rounds run``.
    formulation
        Clear with this formulation instead of the stored one.

    Raises
    ------
    InputError
        Missing or foreign ledger, unknown round, or stored inputs that do not match
        their hash.
    gridmatch.matching.backends.registry.UnknownFormulationError
        Unknown formulation.
    """
    return replay_rounds(ledger_path, [round_no], formulation)[0]


def replay_rounds(
    ledger_path: Path, round_nos: Sequence[int] | None = None, formulation: str | None = None
) -> list[Replay]:
    """Clear several stored rounds again, loading the stored network once.

    Parameters
    ----------
    round_nos
        Rounds to replay, in this order; ``None``: every stored round.
    formulation
        As for :func:`rerun`.

    Raises
    ------
    InputError
        As for :func:`rerun`; raised before any round is cleared.
    """
    with Ledger.open(ledger_path) as ledger:
        stored_scenario = ledger.scenario
        check_scenario_integrity(ledger_path, stored_scenario)
        spec = ledger.spec()
        wanted = ledger.round_numbers() if round_nos is None else list(round_nos)
        stored_rounds = [ledger.read_round(n) for n in wanted]
    for stored in stored_rounds:
        check_integrity(ledger_path, stored, stored_scenario.sha256)
    market = load_market(spec, stored_scenario.network_json, ledger_path)
    now = current_versions()
    replays = []
    for stored in stored_rounds:
        round_input = stored.round_input(ledger_path, formulation)
        began = time.perf_counter()
        clearing = clear_round(market, round_input)
        runtime_s = time.perf_counter() - began
        replays.append(
            Replay(
                round_no=stored.round_no,
                cleared_at_min=stored.cleared_at_min,
                stored_formulation=stored.formulation,
                formulation=round_input.formulation,
                identical=clearing.trades_sha256 == stored.trades_sha256,
                stored_trades_sha256=stored.trades_sha256,
                trades_sha256=clearing.trades_sha256,
                diff=diff_trades(stored.trades_csv, clearing.trades_csv, ledger_path),
                status=clearing.result.status.value,
                changed_versions={
                    name: (old, now.get(name))
                    for name, old in stored.versions.items()
                    if now.get(name) != old
                },
                stored_time_limited=_time_limited(stored.summary(ledger_path)),
                runtime_s=runtime_s,
            )
        )
    return replays


def check_scenario_integrity(ledger_path: Path, stored: StoredScenario) -> None:
    """Check the ledger's scenario row: the stored network must have its stored hash.

    Raises
    ------
    InputError
        "ledger altered", naming the row and column, if the network was edited.
    """
    if sha256_text(stored.network_json) != stored.network_sha256:
        raise InputError(
            ledger_path,
            "ledger altered: the scenario row's network does not match its network_sha256",
            field="scenario.network_json",
        )


def check_integrity(ledger_path: Path, stored: StoredRound, scenario_sha256: str) -> None:
    """Check a stored round against its own hashes.

    Raises
    ------
    InputError
        "ledger altered", naming the round and column, if its inputs or trades were
        changed after it was recorded.
    """
    if stored.recomputed_input_sha256(scenario_sha256) != stored.input_sha256:
        raise InputError(
            ledger_path,
            f"ledger altered: round {stored.round_no}'s stored inputs do not match their "
            "input_sha256 (changed after the round was recorded)",
            field=f"rounds[{stored.round_no}].input_sha256",
        )
    if hashlib.sha256(stored.trades_csv).hexdigest() != stored.trades_sha256:
        raise InputError(
            ledger_path,
            f"ledger altered: round {stored.round_no}'s stored trades do not match their "
            "trades_sha256",
            field=f"rounds[{stored.round_no}].trades_csv",
        )


def diff(ledger_path: Path, round_no: int, formulation: str) -> Replay:
    """Clear round ``round_no``'s stored inputs with ``formulation``; list what would change.

    History stays as recorded: the round sees the book and grid background the earlier
    rounds actually left. See :attr:`Replay.diff` for added, removed and changed trades
    and the welfare difference.

    Raises
    ------
    InputError
        As for :func:`rerun`.
    gridmatch.matching.backends.registry.UnknownFormulationError
        Unknown formulation.
    """
    return rerun(ledger_path, round_no, formulation)


def diff_trades(before_csv: bytes, after_csv: bytes, source: Path) -> TradeDiff:
    """Compare two trades.csv contents trade by trade (``source`` is named in errors)."""
    before = _read_trades(before_csv, source)
    after = _read_trades(after_csv, source)
    changed = tuple(
        TradeChange(before[key], after[key])
        for key in sorted(before.keys() & after.keys())
        if abs(before[key].quantity_kwh - after[key].quantity_kwh) > DIFF_TOLERANCE
        or abs(before[key].price_eur_per_kwh - after[key].price_eur_per_kwh) > DIFF_TOLERANCE
    )
    return TradeDiff(
        added=tuple(after[key] for key in sorted(after.keys() - before.keys())),
        removed=tuple(before[key] for key in sorted(before.keys() - after.keys())),
        changed=changed,
        welfare_before_eur=sum(t.welfare_eur for t in before.values()),
        welfare_after_eur=sum(t.welfare_eur for t in after.values()),
    )


def _read_trades(data: bytes, source: Path) -> dict[TradeKey, TradeRow]:
    return {row.key: row for row in parse_trades(data, source)}


def _time_limited(summary: RoundSummary) -> bool:
    """Tell whether a slot's solver, or its second stage, stopped at the time limit."""
    limit = TerminationCondition.TIME_LIMIT.value
    return any(limit in (slot.termination, slot.second_stage) for slot in summary.slots)


def _describe(trade: TradeRow) -> str:
    return (
        f"slot {trade.slot} {trade.buy_order_id} <- {trade.sell_order_id}: "
        f"{trade.quantity_kwh:.3f} kWh at {trade.price_eur_per_kwh:.4f} EUR/kWh "
        f"(welfare {trade.welfare_eur:.6f} EUR)"
    )
