"""The run matrix: every scenario folder under every formulation, each with its own folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gridmatch.errors import UsageError
from gridmatch.matching.backends.registry import get_backend


class PlanError(UsageError):
    """The batch cannot be laid out (duplicate scenario or formulation, nothing to run)."""


@dataclass(frozen=True)
class RunCell:
    """One run of the batch: one scenario folder cleared with one formulation.

    Attributes
    ----------
    scenario
        The scenario folder's name: the table key and the run folder's parent.
    scenario_dir
        Absolute path of the scenario folder (it may be invalid: the run then
        records the input error instead of a result).
    formulation
        Registered formulation name.
    run_dir
        Absolute path of the result folder, ``OUT/<scenario>/<formulation>``.
    out_root
        Absolute path of the batch folder ``OUT``; the table stores ``run_dir``
        relative to it, so a batch folder can be moved or compared across machines.
    """

    scenario: str
    scenario_dir: Path
    formulation: str
    run_dir: Path
    out_root: Path

    @property
    def key(self) -> tuple[str, str]:
        """``(scenario, formulation)``: unique within a batch, the table's key."""
        return (self.scenario, self.formulation)

    @property
    def label(self) -> str:
        """``scenario/formulation``, for progress and messages."""
        return f"{self.scenario}/{self.formulation}"


def plan_runs(
    scenario_dirs: Sequence[Path], formulations: Sequence[str], out_root: Path
) -> tuple[RunCell, ...]:
    """Lay out the batch: one :class:`RunCell` per scenario folder and formulation.

    The scenario key is the folder's name, not ``name`` in its ``scenario.yaml``:
    copies of a scenario (e.g. with security switched off) often keep the name,
    whereas two folders of one parent never share theirs; and a folder that is not
    a valid scenario still gets a key, so its run can record why.

    Parameters
    ----------
    scenario_dirs
        Scenario folders; they are not read here.
    formulations
        Formulation names, checked against the registry before anything runs.
    out_root
        The batch folder; run ``k`` writes ``out_root/<scenario>/<formulation>/``.

    Returns
    -------
    tuple of RunCell
        Scenario-major, in the order given.

    Raises
    ------
    gridmatch.matching.backends.registry.UnknownFormulationError
        A formulation name is not registered (the message lists those that are).
    gridmatch.matching.backends.registry.SolverUnavailableError
        A formulation's solver package is not installed.
    PlanError
        No scenarios or formulations, or two of either map to the same folder.
    """
    if not scenario_dirs:
        raise PlanError("no scenario folders given")
    if not formulations:
        raise PlanError("no formulations given")
    for name in _unique(formulations, "formulation"):
        # Fail before the first run rather than after hours of others.
        get_backend(name)
    root = out_root.resolve()
    folders = [Path(d).resolve() for d in scenario_dirs]
    by_key: dict[str, Path] = {}
    for folder in folders:
        other = by_key.setdefault(folder.name, folder)
        if other != folder:
            raise PlanError(
                f"scenario folders {other} and {folder} share the name '{folder.name}', "
                "which names their run folders; rename one"
            )
    _unique([str(f) for f in folders], "scenario folder")
    return tuple(
        RunCell(folder.name, folder, name, root / folder.name / name, root)
        for folder in folders
        for name in formulations
    )


def _unique(names: Sequence[str], what: str) -> Sequence[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise PlanError(f"{what} '{name}' is given twice")
        seen.add(name)
    return names
