"""What the backends on highspy share: the solver's name, its package and its version."""

from __future__ import annotations

from typing import ClassVar

from gridmatch.matching.backends.base import Backend
from gridmatch.matching.backends.highs_runner import highs_version


class HighsBackend(Backend):
    """A backend on highspy: the solver, its package and the library's version."""

    solver = "highs"
    requires: ClassVar[tuple[str, ...]] = ("highspy",)

    @classmethod
    def solver_version(cls) -> str:  # noqa: D102
        return highs_version()
