"""Contract ABIs and bytecode from forge's build output (never hand-written)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridmatch.errors import ToolchainError

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
    """Path of ``forge`` or ``anvil`` as npm installed them in the Foundry project."""
    path = contracts_dir() / "node_modules" / ".bin" / name
    if not path.exists():
        raise ToolchainError(f"{path} is missing: run `npm ci` in {contracts_dir()}")
    return path


def build() -> None:
    """Compile the contracts with forge (a no-op when nothing changed)."""
    done = subprocess.run(
        [str(tool("forge")), "build", "--quiet"],
        cwd=contracts_dir(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ToolchainError(f"forge build failed:\n{done.stderr or done.stdout}")


def load(name: str) -> Artifact:
    """Read contract ``name`` from ``contracts/out/<name>.sol/<name>.json``."""
    path = contracts_dir() / "out" / f"{name}.sol" / f"{name}.json"
    try:
        document = json.loads(path.read_text())
    except OSError:
        raise ToolchainError(f"{path} is missing: build the contracts first") from None
    return Artifact(abi=document["abi"], bytecode=document["bytecode"]["object"])
