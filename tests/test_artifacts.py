"""The rebuild check of ``settlement.artifacts``: a stale artifact of any deployed contract
sends ``build()`` to forge, and every contract in ``contracts/src`` is checked.

BatteryRewards was once missing from the list: an ``out/`` without its artifact, or
with one older than its source while every other artifact was newer, passed for fresh,
and ``battery-rewards --chain`` then failed to load it or deployed the old bytecode.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridmatch.settlement import artifacts
from gridmatch.settlement.artifacts import DEPLOYED

REPOSITORY_CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
SOURCE_TIME_NS = 2_000_000_000 * 10**9  # any fixed time: the check compares, never reads a clock
ONE_SECOND_NS = 10**9
# Every contract the repository has (one per file of its name), not DEPLOYED: a contract
# missing from the check must fail these tests, not be skipped by them.
CONTRACTS = tuple(sorted(p.stem for p in (REPOSITORY_CONTRACTS / "src").glob("*.sol")))


def _project(root: Path) -> Path:
    """A Foundry project of placeholder sources, every artifact newer than them."""
    (root / "src").mkdir(parents=True)
    (root / "foundry.toml").write_text("[profile.default]\n")
    os.utime(root / "foundry.toml", ns=(SOURCE_TIME_NS, SOURCE_TIME_NS))
    for name in CONTRACTS:
        source = root / "src" / f"{name}.sol"
        source.write_text("// source\n")
        os.utime(source, ns=(SOURCE_TIME_NS, SOURCE_TIME_NS))
        artifact = root / "out" / f"{name}.sol" / f"{name}.json"
        artifact.parent.mkdir(parents=True)
        artifact.write_text("{}")
        newer = SOURCE_TIME_NS + ONE_SECOND_NS
        os.utime(artifact, ns=(newer, newer))
    return root


def test_every_contract_source_is_checked() -> None:
    assert "BatteryRewards" in CONTRACTS
    missing = sorted(set(CONTRACTS) - set(DEPLOYED))
    assert not missing, f"not in artifacts.DEPLOYED: {missing}"


def test_fresh_artifacts_are_up_to_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDMATCH_CONTRACTS", str(_project(tmp_path / "contracts")))
    assert artifacts._up_to_date()


@pytest.mark.parametrize("name", CONTRACTS)
def test_a_stale_artifact_is_detected(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only ``name``'s artifact older than its edited source (forge rewrites the
    artifacts of the files it recompiled): not up to date."""
    root = _project(tmp_path / "contracts")
    monkeypatch.setenv("GRIDMATCH_CONTRACTS", str(root))
    edited = SOURCE_TIME_NS + 2 * ONE_SECOND_NS
    os.utime(root / "src" / f"{name}.sol", ns=(edited, edited))
    later = edited + ONE_SECOND_NS
    for other in CONTRACTS:
        if other != name:
            path = root / "out" / f"{other}.sol" / f"{other}.json"
            os.utime(path, ns=(later, later))
    assert not artifacts._up_to_date()


@pytest.mark.parametrize("name", CONTRACTS)
def test_a_missing_artifact_is_detected(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "contracts")
    monkeypatch.setenv("GRIDMATCH_CONTRACTS", str(root))
    (root / "out" / f"{name}.sol" / f"{name}.json").unlink()
    assert not artifacts._up_to_date()


def test_a_stale_battery_rewards_artifact_sends_build_to_forge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build()`` itself: fresh artifacts start no forge, a stale BatteryRewards does."""
    root = _project(tmp_path / "contracts")
    monkeypatch.setenv("GRIDMATCH_CONTRACTS", str(root))
    forge = root / "node_modules" / "forge"
    forge.parent.mkdir()
    # A stand-in forge that leaves a mark: the check, not forge, is under test here.
    forge.write_text(f"#!/bin/sh\ntouch {root / 'forge-ran'}\n")
    forge.chmod(0o755)
    monkeypatch.setattr(artifacts, "tool", lambda name: forge)
    artifacts.build()
    assert not (root / "forge-ran").exists()
    edited = SOURCE_TIME_NS + 2 * ONE_SECOND_NS
    os.utime(root / "src" / "BatteryRewards.sol", ns=(edited, edited))
    later = edited + ONE_SECOND_NS
    for other in CONTRACTS:
        if other != "BatteryRewards":
            path = root / "out" / f"{other}.sol" / f"{other}.json"
            os.utime(path, ns=(later, later))
    artifacts.build()
    assert (root / "forge-ran").exists()
