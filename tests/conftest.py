from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def case33bw_distances() -> dict[tuple[int, int], float]:
    import pandapower.networks as pn
    from feasibility import line_distances_km

    return line_distances_km(pn.case33bw())


def without_security(scenario: Path, folder: Path) -> Path:
    """Copy ``scenario`` to ``folder``, cleared without the grid: the unconstrained market."""
    shutil.copytree(scenario, folder)
    spec = yaml.safe_load((folder / "scenario.yaml").read_text())
    # Merged, not appended: a key given twice is refused.
    spec["security"] = {**spec.get("security", {}), "enabled": False}
    (folder / "scenario.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


ORDERS_HEADER = (
    "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible"
)
ROUNDS_HEADER = f"{ORDERS_HEADER},submitted_at_min"


def case33bw_scenario(
    folder: Path, rows: list[str], *, header: str = ORDERS_HEADER, yaml_extra: str = ""
) -> Path:
    """A small market on case33bw without grid security, hourly slots.

    ``yaml_extra`` adds sections to scenario.yaml (``rounds:``, ``solver:``, ...).
    """
    folder.mkdir(parents=True)
    (folder / "scenario.yaml").write_text(
        "name: small\nnetwork:\n  pandapower: case33bw\nslot_minutes: 60\n"
        f"security:\n  enabled: false\n{yaml_extra}orders: orders.csv\n"
    )
    (folder / "orders.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


def link_from_elsewhere(folder: Path, name: str, store: Path) -> None:
    """Move ``folder/name`` into ``store`` and leave a link to it in its place."""
    store.mkdir(parents=True, exist_ok=True)
    (folder / name).rename(store / name)
    (folder / name).symlink_to(store / name)
