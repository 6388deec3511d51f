"""The manifest: what a run read, with which software and which settings."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pkgutil
import platform
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pydantic

from gridmatch.matching.solution import SolveOptions

RECORDED_PACKAGES = (
    "gridmatch",
    "highspy",
    "pyomo",
    "ortools",
    "pandapower",
    "networkx",
    "numpy",
    "scipy",
    "pandas",
    "pydantic",
)


class Manifest(pydantic.BaseModel):
    """The fields of ``manifest.json`` that readers use (others are kept, not checked)."""

    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    scenario_dir: str
    inputs: dict[str, dict[str, str]]
    created_utc: str | None = None
    versions: dict[str, str | None] = {}


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def name_in_folder(path: Path, directory: Path) -> Path:
    """Return ``path`` relative to ``directory``, as the folder names it.

    Resolved where the file lies inside the folder; a link to a file elsewhere keeps
    the name it has in the folder (resolving it made the name relative to nothing:
    ValueError, exit 6).
    """
    resolved, root = path.resolve(), directory.resolve()
    if resolved.is_relative_to(root):
        return resolved.relative_to(root)
    return Path(os.path.relpath(path, directory))


def input_hashes(directory: Path, files: Iterable[Path]) -> dict[str, dict[str, str]]:
    """Return the ``inputs`` of a manifest: each file by its name in the folder, its SHA-256."""
    return {str(name_in_folder(path, directory)): {"sha256": file_sha256(path)} for path in files}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that can change a result."""
    versions: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


@cache
def source_fingerprint() -> str:
    """SHA-256 over gridmatch's own Python modules (names and bytes).

    The package version stays 0.1.0 while the code changes; this changes with it, so a
    batch reruns and a round rerun can tell "same code" from "same version number".
    """
    import gridmatch

    digest = hashlib.sha256()
    modules = sorted(
        info.name for info in pkgutil.walk_packages(gridmatch.__path__, prefix="gridmatch.")
    )
    for name in ["gridmatch", *modules]:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        digest.update(name.encode())
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


def build_manifest(
    scenario_name: str,
    scenario_dir: Path,
    input_files: tuple[Path, ...],
    formulation: str,
    options: SolveOptions,
) -> dict[str, Any]:
    """Everything needed to reproduce a run."""
    root = scenario_dir.resolve()
    return {
        "scenario": scenario_name,
        "scenario_dir": str(root),
        "inputs": {
            **input_hashes(scenario_dir, input_files),
        },
        "options": {"formulation": formulation, **options.to_dict()},
        "versions": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            **package_versions(),
            "gridmatch_source_sha256": source_fingerprint(),
        },
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
