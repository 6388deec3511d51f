"""Contract ABIs and bytecode from forge's build output (never hand-written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridmatch.errors import ToolchainError

# uname's machine names -> the npm packages' (@foundry-rs/forge-linux-amd64 ...).
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}

__all__ = ["Artifact", "ToolchainError", "build", "contracts_dir", "load", "tool"]


@dataclass(frozen=True)
class Artifact:
    """What deploying and calling one contract needs."""

    abi: list[dict[str, Any]]
    bytecode: str


def contracts_dir() -> Path:
    """Return the Foundry project: ``$GRIDMATCH_CONTRACTS`` or this checkout's ``contracts/``."""
    override = os.environ.get("GRIDMATCH_CONTRACTS")
    if override:
        return Path(override)
    # The package is installed editable (strict mode links the sources), so the real
    # file lies in the repository next to contracts/.
    return Path(__file__).resolve().parents[1] / "contracts"


def tool(name: str) -> Path:
    """Path of the native ``forge`` or ``anvil`` binary npm installed in the Foundry project.

    Not ``node_modules/.bin/<name>``: that is npm's JavaScript wrapper, which exits 0
    whatever the binary returned (a failed build would pass for a good one).
    """
    platform = f"{sys.platform}-{_ARCHITECTURES.get(os.uname().machine, os.uname().machine)}"
    path = contracts_dir() / "node_modules" / "@foundry-rs" / f"{name}-{platform}" / "bin" / name
    if not path.exists():
        raise ToolchainError(f"{path} is missing: run `npm ci` in {contracts_dir()}")
    return path


# What a deployment loads (every contract in contracts/src/, one per file of its
# name): their artifacts must be newer than every source, or build() recompiles.
DEPLOYED = (
    "BatteryRewards",
    "Settlement",
    "ValidatorRegistry",
    "EnergyToken",
    "EnergyCertificates",
    "PaymentToken",
    "PrepaidMeters",
)


def build() -> None:
    """Compile the contracts with forge, unless every deployed artifact is newer than the sources.

    forge itself would find nothing to do, but starting it takes ~0.7 s per call.
    """
    if _up_to_date():
        return
    done = subprocess.run(
        [str(tool("forge")), "build", "--quiet"],
        cwd=contracts_dir(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ToolchainError(f"forge build failed:\n{done.stderr or done.stdout}")


def _up_to_date() -> bool:
    root = contracts_dir()
    sources = [root / "foundry.toml", *(root / "src").rglob("*.sol")]
    artifacts = [root / "out" / f"{n}.sol" / f"{n}.json" for n in DEPLOYED]
    if not all(a.is_file() for a in artifacts):
        return False
    newest_source = max(p.stat().st_mtime_ns for p in sources if p.is_file())
    return min(a.stat().st_mtime_ns for a in artifacts) > newest_source


def load(name: str) -> Artifact:
    """Read contract ``name`` from ``contracts/out/<name>.sol/<name>.json``."""
    path = contracts_dir() / "out" / f"{name}.sol" / f"{name}.json"
    try:
        document = json.loads(path.read_text())
    except OSError:
        raise ToolchainError(f"{path} is missing: build the contracts first") from None
    return Artifact(abi=document["abi"], bytecode=document["bytecode"]["object"])
