"""The schema of ``mobility.yaml`` (pydantic v2): horizon, costs, solver and the grid check.

The file is optional; without it every key takes its default and the folder's name is
the run's name. Unknown keys, keys given twice, NaN and strings where numbers belong
are refused, as in ``scenario.yaml``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gridmatch.scenario_io.schema import MAX_LIMIT_S, NetworkSpec, SecuritySpec

# A week: far beyond one dispatch, small enough for every time to stay exact.
MAX_HORIZON_MIN = 7 * 24 * 60.0
# Diesel (EN 590): lower heating value 43.1 MJ/kg at 0.832 kg/l = 35.9 MJ/l = 9.96 kWh/l.
DIESEL_KWH_PER_L = 9.96
MAX_GRID_ROUNDS = 50


class DispatchMode(StrEnum):
    """How requests are weighed (see :mod:`gridmatch.mobility.dispatch`)."""

    NORMAL = "normal"
    EMERGENCY = "emergency"


class BackendName(StrEnum):
    """Exact solvers of the dispatch MILP."""

    HIGHS = "highs"
    CP_SAT = "cp-sat"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class MobilitySolverSpec(_Strict):
    """How the dispatch is solved; command-line flags override these."""

    # YAML gives the name as text, which strict mode would refuse for the enum.
    backend: Annotated[BackendName, Field(strict=False)] = BackendName.HIGHS
    time_limit_s: Annotated[float, Field(gt=0.0, le=MAX_LIMIT_S)] = 30.0
    mip_gap: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0e-4
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0


class MobilityGridSpec(_Strict):
    """The AC check of what vehicles inject at points on a grid bus.

    Attributes
    ----------
    network
        Where the pandapower network comes from, as in ``scenario.yaml``.
    load_scaling, sgen_scaling
        The network's own loads and static generators during the dispatch (a storm:
        loads of the still-supplied part of the town, no PV).
    security
        The limits of the security rule (``enabled: false`` skips the check;
        ``max_iterations`` is not used here).
    max_rounds
        Re-solves with tightened point limits before every injection is dropped.
    """

    network: NetworkSpec
    load_scaling: Annotated[float, Field(ge=0.0, le=1e6)] = 1.0
    sgen_scaling: Annotated[float, Field(ge=0.0, le=1e6)] = 1.0
    security: SecuritySpec = SecuritySpec()
    max_rounds: Annotated[int, Field(ge=0, le=MAX_GRID_ROUNDS)] = 8


class MobilitySpec(_Strict):
    """Top level of ``mobility.yaml``.

    Attributes
    ----------
    horizon_min
        End of the dispatch, minutes from now: a request without ``latest_min`` must be
        served by then.
    travel_penalty_kwh_per_min
        What a minute of driving costs in the objective, in kWh of served energy (the
        default, 1 Wh per minute, only breaks ties: of equal energy, the nearer vehicles).
    fuel_kwh_per_l
        Energy content of the fuel that fuel trucks carry (default: diesel's lower
        heating value, 9.96 kWh/l).
    """

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    horizon_min: Annotated[float, Field(gt=0.0, le=MAX_HORIZON_MIN)] = 480.0
    travel_penalty_kwh_per_min: Annotated[float, Field(ge=0.0, le=1e3)] = 0.001
    fuel_kwh_per_l: Annotated[float, Field(gt=0.0, le=100.0)] = DIESEL_KWH_PER_L
    solver: MobilitySolverSpec = MobilitySolverSpec()
    grid: MobilityGridSpec | None = None
