"""``summary.json``: one validated model, written by every clearing and read by every reader.

:class:`Summary` is what ``gridmatch clear`` (and each batch run and rolling round)
writes; the report and the batch table read it back through the same model. Readers
ignore keys they do not know, so an older gridmatch reads a newer folder, and fields
added since have defaults, so a newer one reads an older folder. Security fields are
``null`` when the scenario has ``security.enabled: false`` (nothing was checked: no
guess is written).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pydantic

from gridmatch.grid_models.secure_clearing import SecureClearing
from gridmatch.matching.clearing import ClearingResult
from gridmatch.matching.orders import OrderBook
from gridmatch.matching.solution import SolveOptions
from gridmatch.units import KWH_PER_MWH, slot_hours


class _Record(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


class OptionsRecord(_Record):
    """The run settings that change results, as summaries and manifests record them."""

    time_limit_s: float
    mip_gap: float
    threads: int
    seed: int
    tie_break: str = "none"  # folders written before the option existed cleared without it

    @classmethod
    def of(cls, options: SolveOptions) -> OptionsRecord:
        """Return the record of ``options``."""
        return cls.model_validate(options.to_dict())


class SlotSummary(_Record):
    """One slot of a clearing.

    ``termination`` is why the solver stopped, ``provenance`` where the allocation came
    from, ``second_stage`` why the tie-break's second stage stopped (``None``: not run).
    ``bound_eur`` is the backend's own proven bound (``None``: it proves none, or the
    slot was matched with grid rows, whose bound is for the linear model).
    """

    slot: int
    n_buy_orders: int
    n_sell_orders: int
    n_pairs: int = 0
    welfare_eur: float
    bound_eur: float | None = None
    lp_bound_eur: float | None = None
    termination: str
    provenance: str = "solver"
    second_stage: str | None = None
    # Which bound certifies the slot's gap: lp, solver (the MILP's dual bound),
    # surrogate or lagrangian (formulation mulknap), ac_relaxation (secure clearing's
    # conic relaxation of the AC grid).
    certified_by: str = "lp"
    runtime_s: float = 0.0
    # The grid's losses with the final trades minus without them (kWh over the slot),
    # from the final AC check; null without security or for a slot without trades.
    trade_losses_kwh: float | None = pydantic.Field(default=None, ge=0.0, allow_inf_nan=False)


class Summary(_Record):
    """The content of a clearing's ``summary.json`` (fields documented in the README)."""

    scenario: str
    status: str
    welfare_eur: float
    bound_eur: float | None
    lp_bound_eur: float | None = None
    gap: float | None
    formulation: str
    solver: str
    solver_version: str
    runtime_s: float
    build_s: float = 0.0
    solve_s: float = 0.0
    bound_s: float = 0.0
    grid_s: float = 0.0
    secure: bool | None
    security_iterations: int | None = None
    fallback_slots: tuple[int, ...] | None = None
    ac_power_flows: int = 0
    unconstrained_welfare_eur: float | None = None
    price_of_security_eur: float | None = None
    unconstrained_insecure_slots: tuple[int, ...] | None = None
    insecure_slots: tuple[int, ...] | None = None
    max_line_loading_percent: float | None = None
    max_trafo_loading_percent: float | None = None
    vm_min_pu: float | None = None
    vm_max_pu: float | None = None
    # The gap split in two that add up to it (null without security): below the bounds
    # of the models the slots were matched under (the solver's part), and between those
    # bounds and the certificate, the AC relaxation where the grid binds (the grid's part).
    market_gap: float | None = None
    security_gap: float | None = None
    ac_certified_slots: tuple[int, ...] | None = None
    # kWh the security loop's search added to secure answers, each addition AC-checked.
    searched_kwh: float | None = None
    n_orders: int
    n_trades: int
    n_pairs: int = 0
    traded_kwh: float
    options: OptionsRecord | None = None
    # The time basis of the slots: slot s runs from day_start + s * slot_minutes.
    slot_minutes: float = pydantic.Field(default=60.0, ge=1.0, le=1440.0, allow_inf_nan=False)
    day_start_utc: str | None = None
    # The most the tariff charges between any two of the book's buses (EUR/kWh): what a
    # buyer's signed fee cap is in settlement. Null in folders written before it.
    max_fee_eur_per_kwh: float | None = pydantic.Field(default=None, ge=0.0, allow_inf_nan=False)
    slots: tuple[SlotSummary, ...]

    def document(self) -> dict[str, Any]:
        """Return the JSON document as written (field order as declared)."""
        return self.model_dump(mode="json")


class RoundSummary(Summary):
    """A rolling round's ``summary.json``: a clearing's, with the round's number and time."""

    round_no: int
    cleared_at_min: int


class RoundRecord(_Record):
    """One round in a rolling day's ``summary.json``."""

    round_no: int
    cleared_at_min: int
    n_orders: int
    n_trades: int
    traded_kwh: float
    welfare_eur: float
    status: str
    secure: bool | None
    runtime_s: float
    input_sha256: str
    trades_sha256: str

    @classmethod
    def of(cls, summary: RoundSummary, input_sha256: str, trades_sha256: str) -> RoundRecord:
        """Return the day's line of one round."""
        return cls(
            round_no=summary.round_no,
            cleared_at_min=summary.cleared_at_min,
            n_orders=summary.n_orders,
            n_trades=summary.n_trades,
            traded_kwh=summary.traded_kwh,
            welfare_eur=summary.welfare_eur,
            status=summary.status,
            secure=summary.secure,
            runtime_s=summary.runtime_s,
            input_sha256=input_sha256,
            trades_sha256=trades_sha256,
        )


class DaySummary(_Record):
    """A rolling day's ``summary.json``: its rounds and totals.

    ``complete`` is false after an ``--until`` stop (later rounds are still to come);
    ``runtime_s`` is this invocation's wall time (a resumed day: the rounds cleared now).
    """

    scenario: str
    formulation: str
    options: OptionsRecord
    rounds_spec: dict[str, int]
    n_rounds: int
    n_rounds_planned: int
    complete: bool
    n_orders: int
    n_late_orders: int
    n_trades: int
    traded_kwh: float
    welfare_eur: float
    secure: bool | None
    runtime_s: float
    ledger: str
    rounds: tuple[RoundRecord, ...]

    def document(self) -> dict[str, Any]:
        """Return the JSON document as written (field order as declared)."""
        return self.model_dump(mode="json")


def clearing_summary(
    scenario_name: str,
    book: OrderBook,
    result: ClearingResult,
    options: SolveOptions,
    security: SecureClearing | None = None,
    *,
    slot_minutes: float = 60.0,
    day_start: datetime | None = None,
    max_fee_eur_per_kwh: float | None = None,
) -> Summary:
    """Build a clearing's summary.

    Parameters
    ----------
    security
        How the security-constrained clearing went, or ``None`` when the grid check
        is disabled (``secure`` and the other security fields are then null).
    slot_minutes, day_start
        The scenario's time basis (written so that settlement can sign absolute times).
    max_fee_eur_per_kwh
        The tariff's highest fee between the book's buses (a buyer's fee cap).
    """
    grid_s = 0.0 if security is None else security.grid_s
    losses = _trade_losses_kwh(security, slot_minutes)
    return Summary(
        scenario=scenario_name,
        status=result.status.value,
        welfare_eur=result.welfare_eur,
        bound_eur=result.bound_eur,
        lp_bound_eur=result.lp_bound_eur,
        gap=result.gap,
        formulation=result.formulation,
        solver=result.solver,
        solver_version=result.solver_version,
        runtime_s=result.runtime_s + grid_s,
        build_s=result.build_s,
        solve_s=result.solve_s,
        bound_s=result.bound_s,
        grid_s=grid_s,
        n_orders=len(book),
        n_trades=len(result.trades),
        n_pairs=result.n_pairs,
        traded_kwh=sum(t.quantity_kwh for t in result.trades),
        options=OptionsRecord.of(options),
        slot_minutes=slot_minutes,
        max_fee_eur_per_kwh=max_fee_eur_per_kwh,
        day_start_utc=None if day_start is None else day_start.astimezone(UTC).isoformat(),
        slots=tuple(
            SlotSummary(
                slot=r.slot,
                n_buy_orders=r.n_buy_orders,
                n_sell_orders=r.n_sell_orders,
                n_pairs=r.n_pairs,
                welfare_eur=r.welfare_eur,
                bound_eur=r.bound_eur,
                lp_bound_eur=r.lp_bound_eur,
                termination=r.termination.value,
                provenance=r.provenance.value,
                second_stage=None if r.second_stage is None else r.second_stage.value,
                certified_by=r.certified_by.value,
                runtime_s=r.runtime_s,
                trade_losses_kwh=losses.get(r.slot),
            )
            for r in result.slots
        ),
        **_security_fields(result, security),
    )


def _trade_losses_kwh(security: SecureClearing | None, slot_minutes: float) -> dict[int, float]:
    """Per traded slot, the kWh the grid lost to the trades (never below 0, finite only)."""
    if security is None:
        return {}
    hours = slot_hours(slot_minutes)
    losses = {}
    for check in security.report.slots:
        extra_mw = check.losses_mw_after - check.losses_mw_before
        if math.isfinite(extra_mw):
            losses[check.slot] = max(extra_mw, 0.0) * KWH_PER_MWH * hours
    return losses


def _security_fields(result: ClearingResult, security: SecureClearing | None) -> dict[str, Any]:
    if security is None:
        return {"secure": None}
    outcome = security.outcome()
    return {
        "secure": outcome.secure,
        "security_iterations": outcome.iterations,
        "fallback_slots": outcome.fallback_slots,
        "ac_power_flows": outcome.ac_power_flows,
        "unconstrained_welfare_eur": outcome.unconstrained_welfare_eur,
        "price_of_security_eur": outcome.unconstrained_welfare_eur - result.welfare_eur,
        "unconstrained_insecure_slots": outcome.unconstrained_insecure_slots,
        "insecure_slots": outcome.insecure_slots,
        "max_line_loading_percent": outcome.max_line_loading_percent,
        "max_trafo_loading_percent": outcome.max_trafo_loading_percent,
        "vm_min_pu": outcome.vm_min_pu,
        "vm_max_pu": outcome.vm_max_pu,
        "market_gap": outcome.market_gap,
        "security_gap": outcome.security_gap,
        "ac_certified_slots": outcome.ac_certified_slots,
        "searched_kwh": outcome.searched_kwh,
    }
