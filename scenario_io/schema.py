"""The schema of ``scenario.yaml`` (pydantic v2); ``gridmatch schema`` exports it as JSON Schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmatch.matching.market_rules import PricingRule
from gridmatch.matching.solution import TieBreak
from gridmatch.scenario_io.strict_yaml import IsoTime

NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
# Bounds on every number that decides how much is computed or allocated: a slot of a
# minute to a day; security rounds, threads and scaling factors far beyond any real
# use, small enough that no value can run a machine out of memory or time.
MAX_SLOT_MINUTES = 1440.0
MAX_SECURITY_ITERATIONS = 100
MAX_THREADS = 256
MAX_SCALING = 1e6
MAX_LIMIT_S = 7 * 24 * 3600.0
Scaling = Annotated[float, Field(ge=0.0, le=MAX_SCALING)]
# A file name inside the scenario folder: printable (a NUL would crash the OS call).
FileName = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Strict(BaseModel):
    # Unknown keys are errors (a typo must not silently become a default), and so are
    # NaN/inf and strings where numbers belong.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class NetworkSpec(_Strict):
    """Where the grid comes from: exactly one of the three keys."""

    pandapower: str | None = Field(None, description="a function of pandapower.networks")
    file: FileName | None = Field(
        None, description="pandapower JSON file inside the scenario folder"
    )
    simbench: str | None = Field(None, description="SimBench code (needs the simbench package)")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k in ("pandapower", "file", "simbench") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'pandapower', 'file', 'simbench' "
                f"(got {', '.join(given) if given else 'none'})"
            )
        return self


class SecuritySpec(_Strict):
    """Grid security limits checked by AC power flow."""

    enabled: bool = True
    max_line_loading_percent: Positive = 100.0
    max_trafo_loading_percent: Positive = 100.0
    vm_min_pu: Positive = 0.95
    vm_max_pu: Positive = 1.05
    max_iterations: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_SECURITY_ITERATIONS,
            description="matching rounds with grid rows before falling back to dropping trades",
        ),
    ] = 5

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.vm_min_pu >= self.vm_max_pu:
            raise ValueError("vm_min_pu must be below vm_max_pu")
        return self


class BackgroundSpec(_Strict):
    """Per-slot scaling of the network's own loads and static generators."""

    load_scaling: list[Scaling] | None = None
    sgen_scaling: list[Scaling] | None = None


class MarketSpec(_Strict):
    """Pricing rule and grid fees."""

    pricing: PricingRule = PricingRule.MIDPOINT
    grid_fee_eur_per_kwh: NonNegative = 0.0
    grid_fee_eur_per_kwh_per_km: NonNegative = 0.0

    @model_validator(mode="before")
    @classmethod
    def _pricing_from_text(cls, data: object) -> object:
        # YAML gives a string; strict mode would otherwise refuse it for the enum.
        if isinstance(data, dict) and isinstance(data.get("pricing"), str):
            try:
                data = {**data, "pricing": PricingRule(data["pricing"])}
            except ValueError:
                choices = ", ".join(rule.value for rule in PricingRule)
                raise ValueError(f"pricing '{data['pricing']}' is not one of: {choices}") from None
        return data


class SolverSpec(_Strict):
    """Default run settings; command-line flags override them."""

    formulation: str | None = None
    time_limit_s: Annotated[float, Field(gt=0.0, le=MAX_LIMIT_S)] | None = None
    mip_gap: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    threads: Annotated[int, Field(ge=1, le=MAX_THREADS)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**31)] | None = None
    # YAML gives the name as text, which strict mode would refuse for the enum.
    tie_break: Annotated[TieBreak | None, Field(strict=False)] = None


class RoundsSpec(_Strict):
    """Rolling clearing rounds (``gridmatch rounds run``); ``gridmatch clear`` ignores them.

    Round ``k`` (1-based) clears at ``first_round_min + (k - 1) * interval_min`` minutes
    from the start of the day; a slot closes for trading once a round's time reaches
    ``slot * slot_minutes - gate_closure_min``.
    """

    interval_min: Annotated[int, Field(gt=0, description="minutes between two rounds")]
    gate_closure_min: Annotated[
        int, Field(ge=0, description="a slot closes this many minutes before it starts")
    ] = 0
    first_round_min: Annotated[
        int, Field(ge=0, description="time of the first round, minutes from the start of the day")
    ] = 0


# When slot 0 starts if a scenario does not say: a fixed date, so that every run of a
# scenario gives its slots the same absolute times (settlement signs them).
DEFAULT_DAY_START = datetime(2026, 1, 1, tzinfo=UTC)


class ScenarioSpec(_Strict):
    """Top level of ``scenario.yaml``."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    network: NetworkSpec
    slot_minutes: Annotated[float, Field(ge=1.0, le=MAX_SLOT_MINUTES)] = 60.0
    day_start: Annotated[
        IsoTime,
        Field(
            description="when slot 0 starts (ISO 8601 with a time zone, e.g. 2026-12-01T00:00Z)",
        ),
    ] = DEFAULT_DAY_START

    @model_validator(mode="after")
    def _aware(self) -> Self:
        if self.day_start.tzinfo is None:
            raise ValueError("day_start needs a time zone (e.g. 2026-12-01T00:00:00Z)")
        return self

    security: SecuritySpec = SecuritySpec()
    background: BackgroundSpec | None = None
    market: MarketSpec = MarketSpec()
    solver: SolverSpec = SolverSpec()
    orders: FileName = "orders.csv"
    # Prepaid balances (accounts.csv): a buyer's trades cost at most what it holds.
    accounts: FileName | None = None
    # Rolling rounds: top-ups of the prepaid balances during the day (topups.csv).
    topups: FileName | None = None
    rounds: RoundsSpec | None = None
