from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def case33bw_distances() -> dict[tuple[int, int], float]:
    import pandapower.networks as pn
    from feasibility import line_distances_km

    return line_distances_km(pn.case33bw())


def without_security(scenario: Path, folder: Path) -> Path:
    """Copy ``scenario`` to ``folder``, cleared without the grid: the unconstrained market."""
    shutil.copytree(scenario, folder)
    text = (folder / "scenario.yaml").read_text()
    (folder / "scenario.yaml").write_text(text + "security:\n  enabled: false\n")
    return folder
