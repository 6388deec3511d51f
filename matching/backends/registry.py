"""Backends by name: lookup with errors that say what exists and what to install."""

from __future__ import annotations

from gridmatch.errors import SolverError, UsageError
from gridmatch.matching.backends.base import Backend, BackendKind
from gridmatch.matching.backends.cpsat import CpSatBackend
from gridmatch.matching.backends.flow_relaxation import FlowRelaxationBackend
from gridmatch.matching.backends.greedy import GreedyBackend
from gridmatch.matching.backends.highspy_direct import HighspyBackend
from gridmatch.matching.backends.lp_relaxation import LpRelaxationBackend
from gridmatch.matching.backends.mulknap import MulknapBackend
from gridmatch.matching.backends.pyomo_highs import PyomoHighsBackend
from gridmatch.matching.backends.pyomo_textbook import PyomoTextbookBackend
from gridmatch.matching.backends.seller_dp import SellerDpBackend
from gridmatch.matching.backends.two_stage import TwoStageBackend

BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend
    for backend in (
        HighspyBackend,
        MulknapBackend,
        TwoStageBackend,
        PyomoHighsBackend,
        CpSatBackend,
        GreedyBackend,
        SellerDpBackend,
        LpRelaxationBackend,
        FlowRelaxationBackend,
        PyomoTextbookBackend,
    )
}

DEFAULT_FORMULATION = HighspyBackend.name


class UnknownFormulationError(UsageError):
    """The requested formulation name is not registered."""


class SolverUnavailableError(SolverError):
    """The formulation is registered but its solver package is missing."""


def get_backend(name: str) -> Backend:
    """Return a fresh backend for ``name``.

    Raises
    ------
    UnknownFormulationError
        If no backend has that name; the message lists the registered ones.
    SolverUnavailableError
        If the backend's solver package cannot be imported.
    """
    try:
        backend_class = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise UnknownFormulationError(f"unknown formulation '{name}'; available: {known}") from None
    if not backend_class.is_available():
        raise SolverUnavailableError(
            f"formulation '{name}' needs {backend_class.solver}: {backend_class.install_hint()}"
        )
    return backend_class()


def executable_formulations() -> list[str]:
    """Names of formulations whose answers are trade sets (not relaxations)."""
    return sorted(n for n, b in BACKENDS.items() if b.kind is not BackendKind.RELAXATION)
