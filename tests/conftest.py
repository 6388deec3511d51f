from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def case33bw_distances() -> dict[tuple[int, int], float]:
    import pandapower.networks as pn
    from feasibility import line_distances_km

    return line_distances_km(pn.case33bw())
