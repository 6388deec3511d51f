"""The main job: scenario folder in, result folder out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt
import pandapower as pp

from gridmatch.errors import InputError
from gridmatch.grid_models.secure_clearing import SecureClearing, clear_securely
from gridmatch.grid_models.security import SecurityLimits, SlotGrid
from gridmatch.grid_models.topology import distance_matrix_km
from gridmatch.matching.backends.base import Backend
from gridmatch.matching.backends.registry import BACKENDS, DEFAULT_FORMULATION, get_backend
from gridmatch.matching.clearing import ClearingResult, clear_orders
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.solution import SolveOptions, TieBreak
from gridmatch.results_io.atomic import recover
from gridmatch.results_io.folder import ResultFiles, write_result
from gridmatch.results_io.manifest import build_manifest
from gridmatch.results_io.rows import budget_rows, grid_rows, order_rows, trade_rows
from gridmatch.results_io.summary import Summary, clearing_summary
from gridmatch.scenario_io.loader import SCENARIO_FILE, Scenario, load_scenario, market_rules
from gridmatch.scenario_io.schema import ScenarioSpec
from gridmatch.units import slot_hours


@dataclass(frozen=True)
class RunSettings:
    """Settings given on the command line; ``None`` falls back to the scenario, then defaults."""

    formulation: str | None = None
    time_limit_s: float | None = None
    mip_gap: float | None = None
    threads: int | None = None
    seed: int | None = None
    tie_break: TieBreak | None = None


@dataclass(frozen=True)
class ClearingRun:
    """What :func:`clear_scenario` did."""

    scenario: Scenario
    result: ClearingResult
    options: SolveOptions
    summary: dict[str, Any]
    security: SecureClearing | None


def resolve_settings(scenario: Scenario, settings: RunSettings) -> tuple[str, SolveOptions]:
    """Merge command line, scenario file and defaults, in that order of precedence.

    Raises
    ------
    gridmatch.errors.InputError
        ``scenario.yaml`` names a formulation that is not registered.
    """
    named = scenario.spec.solver.formulation
    if settings.formulation is None and named is not None and named not in BACKENDS:
        raise InputError(
            scenario.directory / SCENARIO_FILE,
            f"unknown formulation '{named}'; available: {', '.join(sorted(BACKENDS))}",
            field="solver.formulation",
        )
    return resolve_spec_settings(scenario.spec, settings)


def resolve_spec_settings(spec: ScenarioSpec, settings: RunSettings) -> tuple[str, SolveOptions]:
    """:func:`resolve_settings` from ``scenario.yaml`` alone (no orders or network loaded)."""
    from_file = spec.solver
    options = SolveOptions()
    for key in ("time_limit_s", "mip_gap", "threads", "seed", "tie_break"):
        value = getattr(settings, key)
        if value is None:
            value = getattr(from_file, key)
        if value is not None:
            options = replace(options, **{key: value})
    formulation = settings.formulation or from_file.formulation or DEFAULT_FORMULATION
    return formulation, options


def scenario_grid(scenario: Scenario) -> tuple[SlotGrid, SecurityLimits]:
    """Return the scenario's network with its per-slot background, and its limits."""
    return spec_grid(scenario.spec, scenario.net, scenario.book.bus), security_limits(scenario.spec)


def spec_grid(
    spec: ScenarioSpec,
    net: pp.pandapowerNet,
    trade_buses: npt.ArrayLike,
    background_kwh: Iterable[tuple[int, int, float]] = (),
) -> SlotGrid:
    """Return ``net`` as the scenario describes it per slot (background scaling, slot length)."""
    background = spec.background
    return SlotGrid(
        net,
        background.load_scaling if background else None,
        background.sgen_scaling if background else None,
        slot_hours=slot_hours(spec.slot_minutes),
        trade_buses=trade_buses,
        background_kwh=background_kwh,
    )


def security_limits(spec: ScenarioSpec) -> SecurityLimits:
    """Return the limits of the scenario's security rule."""
    security = spec.security
    return SecurityLimits(
        max_line_loading_percent=security.max_line_loading_percent,
        max_trafo_loading_percent=security.max_trafo_loading_percent,
        vm_min_pu=security.vm_min_pu,
        vm_max_pu=security.vm_max_pu,
    )


def clear_book(
    spec: ScenarioSpec,
    net: pp.pandapowerNet,
    graph: nx.MultiGraph,
    book: OrderBook,
    backend: Backend,
    options: SolveOptions,
    background_kwh: Sequence[tuple[int, int, float]] = (),
    available_eur: Mapping[str, float] | None = None,
) -> tuple[ClearingResult, SecureClearing | None]:
    """Clear an order book under the scenario's rules, securely if the scenario says so.

    The one clearing path of ``gridmatch clear`` and of every rolling round.

    Parameters
    ----------
    background_kwh
        ``(slot, bus, kWh)`` of trades accepted earlier (rolling rounds), part of every
        power flow of their slot.
    available_eur
        What each prepaid account may spend (``None``: no budgets).
    """
    rules = market_rules(spec)
    distances = None
    if rules.grid_fee_eur_per_kwh_per_km > 0.0:
        distances = distance_matrix_km(graph, np.unique(book.bus))
    if not spec.security.enabled:
        return clear_orders(book, rules, backend, options, distances, available_eur), None
    # Trade injections exist up front at every bus the book or the background touches,
    # so no power flow state is reset halfway through the clearing.
    background_buses = np.array([bus for _, bus, _ in background_kwh], dtype=np.int64)
    grid = spec_grid(spec, net, np.union1d(book.bus, background_buses), background_kwh)
    security = clear_securely(
        book,
        rules,
        backend,
        options,
        grid,
        security_limits(spec),
        max_iterations=spec.security.max_iterations,
        distance_km=distances,
        available_eur=available_eur,
    )
    return security.result, security


def tariff_max_fee_eur_per_kwh(spec: ScenarioSpec, graph: nx.Graph, book: OrderBook) -> float:
    """Return the most the scenario's tariff charges between any two of the book's buses.

    Settlement has each buyer sign it as its fee cap: whatever seller it is paired with,
    the fee stays within the published tariff.
    """
    rules = market_rules(spec)
    if rules.grid_fee_eur_per_kwh_per_km == 0.0 or len(book) == 0:
        return rules.grid_fee_eur_per_kwh
    fees = rules.fee_eur_per_kwh(distance_matrix_km(graph, np.unique(book.bus)))
    # Buses no line joins never trade (their fee is infinite): no cap to sign for them.
    return float(fees[np.isfinite(fees)].max())


def clear_scenario(scenario_dir: Path, out_dir: Path, settings: RunSettings) -> ClearingRun:
    """Validate a scenario, clear it, and write the result folder atomically.

    Raises
    ------
    gridmatch.errors.GridmatchError
        Bad input (nothing is written), a solver failure, an output folder that is
        not ours to replace.
    """
    recover(out_dir)
    scenario = load_scenario(scenario_dir)
    formulation, options = resolve_settings(scenario, settings)
    result, security = clear_book(
        scenario.spec,
        scenario.net,
        scenario.graph,
        scenario.book,
        get_backend(formulation),
        options,
        available_eur=scenario.available_eur(),
    )
    summary = clearing_summary(
        scenario.name,
        scenario.book,
        result,
        options,
        security,
        slot_minutes=scenario.spec.slot_minutes,
        day_start=scenario.spec.day_start,
        max_fee_eur_per_kwh=tariff_max_fee_eur_per_kwh(
            scenario.spec, scenario.graph, scenario.book
        ),
    )
    manifest = build_manifest(
        scenario.name, scenario.directory, scenario.input_files, formulation, options
    )
    files = result_files(
        scenario.book, result, summary, manifest, security, scenario.available_eur()
    )
    write_result(out_dir, files)
    return ClearingRun(scenario, result, options, summary.document(), security)


def result_files(
    book: OrderBook,
    result: ClearingResult,
    summary: Summary,
    manifest: dict[str, Any],
    security: SecureClearing | None,
    available_eur: Mapping[str, float] | None = None,
) -> ResultFiles:
    """Return the files of a clearing's result folder (``clear``, batch runs, rolling rounds).

    ``available_eur`` (prepaid accounts) adds budgets.csv.
    """
    trades = trade_rows(book, result)
    return ResultFiles(
        trades=trades,
        orders=order_rows(book, result.filled_kwh, result.budget_limited),
        summary=summary,
        manifest=manifest,
        grid=None if security is None else grid_rows(security),
        budgets=None if available_eur is None else budget_rows(book, trades, available_eur),
    )
