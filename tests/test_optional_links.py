"""An optional input file given as a link whose target is gone is refused, not skipped.

A user who linked ``points.csv`` or ``sites.csv`` into a folder meant it to be read: if
the link is broken, running on as if the file were absent would silently drop its
rows. Each loader must name the file instead (an :class:`~gridmatch.errors.InputError`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gridmatch.der_validation.run import DEFAULT_MODELS
from gridmatch.errors import InputError
from gridmatch.scenario_io.der_input import load_der_inputs
from gridmatch.scenario_io.mobility_input import load_mobility
from gridmatch.scenario_io.prepaid_input import load_prepaid

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"


def _der(folder: Path) -> Any:
    return load_der_inputs(folder, DEFAULT_MODELS)


CASES: list[tuple[str, str, Callable[[Path], Any]]] = [
    ("storm-town", "mobility.yaml", load_mobility),
    ("storm-town", "nodes.csv", load_mobility),
    ("storm-town", "points.csv", load_mobility),
    ("der-example", "sites.csv", _der),
    ("der-example", "event_models.yaml", _der),
    ("der-example", "meter_data", _der),
    ("prepaid_example", "topups.csv", load_prepaid),
    ("prepaid_example", "comms.csv", load_prepaid),
    ("prepaid_example", "tokens.csv", load_prepaid),
]


@pytest.mark.parametrize(("example", "name", "load"), CASES, ids=[f"{e}/{n}" for e, n, _ in CASES])
def test_broken_link_to_an_optional_file_is_refused(
    tmp_path: Path, example: str, name: str, load: Callable[[Path], Any]
) -> None:
    folder = tmp_path / example
    shutil.copytree(SCENARIOS / example, folder)
    load(folder)  # the copy loads as it is
    target = folder / name
    if target.exists():
        target.unlink()
    if name == "meter_data":  # the folder replaces meter_data.csv; both are refused
        (folder / "meter_data.csv").unlink()
    target.symlink_to(tmp_path / "gone" / name)
    with pytest.raises(InputError) as info:
        load(folder)
    assert info.value.path.name == name, str(info.value)
