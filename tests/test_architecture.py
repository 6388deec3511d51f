"""The import rule of ARCHITECTURE.md, checked on the source: layers one way, no cycles.

Every ``import`` of a gridmatch module counts, wherever it stands (module level, inside
a function, under ``TYPE_CHECKING``): a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_PACKAGE = {"tests", "benchmarks", "scenarios", "scripts", "contracts", "build", "batch_out"}

# Layer of each top-level module or package, left to right: a module may import only
# from its own layer or from layers to its left.
LAYERS: dict[str, int] = {
    "errors": 0,
    "units": 0,
    "user_files": 0,
    "matching": 1,
    "grid_models": 1,
    "scenario_io": 2,
    "results_io": 2,
    "pipeline": 3,
    "rounds": 3,
    "batch": 3,
    "report": 3,
    "settlement": 3,
    "prepaid": 3,
    "der_validation": 3,
    "mobility": 3,
    "battery_rewards": 3,
    "cli": 4,
}
LAYER_NAMES = ("base", "core", "edge", "workflows", "cli")


def _modules() -> dict[str, Path]:
    found = {"gridmatch": REPO / "__init__.py"}
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if relative.parts[0] in NOT_PACKAGE or relative.parts[0].startswith("."):
            continue
        if relative.name == "__init__.py":
            if len(relative.parts) == 1:
                continue
            name = ".".join(("gridmatch", *relative.parts[:-1]))
        else:
            name = ".".join(("gridmatch", *relative.with_suffix("").parts))
        found[name] = path
    return found


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The gridmatch modules ``path`` imports (a ``from X import name`` of a submodule counts)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # ``from pkg import sub`` depends on the module pkg.sub; only names that are
            # not modules come from pkg itself.
            names = [f"{base}.{alias.name}" for alias in node.names]
            targets |= {n for n in names if n in known}
            if any(n not in known for n in names):
                targets.add(base)
    return {t for t in targets if t in known and t != module}


def _graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(path, name, set(modules)):
            graph.add_edge(name, target)
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else 0


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in _graph() if _layer(m) is None)
    assert not unplaced, f"add these to LAYERS and to ARCHITECTURE.md: {unplaced}"


def test_imports_go_one_way() -> None:
    upward = []
    for source, target in _graph().edges:
        source_layer, target_layer = _layer(source), _layer(target)
        assert source_layer is not None and target_layer is not None
        if target_layer > source_layer:
            upward.append(
                f"{source} ({LAYER_NAMES[source_layer]}) imports {target} "
                f"({LAYER_NAMES[target_layer]})"
            )
    assert not upward, "\n".join(upward)


def test_no_module_is_in_an_import_cycle() -> None:
    cycles = [c for c in nx.strongly_connected_components(_graph()) if len(c) > 1]
    assert not cycles, cycles


def test_no_package_is_in_an_import_cycle() -> None:
    packages = nx.DiGraph()
    for source, target in _graph().edges:
        a, b = (".".join(m.split(".")[:2]) for m in (source, target))
        if a != b:
            packages.add_edge(a, b)
    cycles = [c for c in nx.strongly_connected_components(packages) if len(c) > 1]
    assert not cycles, cycles


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    # The checker itself: a core module that imports a workflow is reported.
    path = tmp_path / "probe.py"
    path.write_text("from gridmatch.rounds.runner import run_rounds\n")
    known = {"gridmatch.rounds", "gridmatch.rounds.runner", "gridmatch.matching.probe"}
    assert _imports(path, "gridmatch.matching.probe", known) == {"gridmatch.rounds.runner"}
    assert _layer("gridmatch.rounds.runner") > _layer("gridmatch.matching.probe")  # type: ignore[operator]


_WITHOUT = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked}:
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Missing())
from gridmatch.cli import main
sys.argv = ["gridmatch", *sys.argv[1:]]
main()
"""


def _gridmatch_without(blocked: set[str], *args: str) -> subprocess.CompletedProcess[str]:
    code = _WITHOUT.format(blocked=sorted(blocked))
    env = {**os.environ, "COLUMNS": "300"}  # the formulations table on one line each
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, env=env
    )


@pytest.mark.parametrize("blocked", [{"highspy", "pyomo"}, {"ortools"}])
def test_a_missing_solver_is_listed_as_unavailable(blocked: set[str]) -> None:
    done = _gridmatch_without(blocked, "formulations")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("│")}
    hints = {"highspy": "highspy", "pyomo-highs": "pyomo", "cpsat": "ortools", "greedy": None}
    for name, package in hints.items():
        if package is not None and package.split("-")[0] in blocked:
            assert "no: pip install" in lines[name], lines[name]
        else:
            assert "yes" in lines[name], lines[name]


def test_greedy_clears_without_highspy_and_pyomo(tmp_path: Path) -> None:
    out = tmp_path / "out"
    scenario = REPO / "scenarios" / "case33bw-evening"
    done = _gridmatch_without(
        {"highspy", "pyomo"}, "clear", str(scenario), "--out", str(out), "--formulation", "greedy"
    )
    assert done.returncode == 0, done.stderr
    assert (out / "trades.csv").read_text().count("\n") > 1
    # And an exact formulation that needs highspy says what to install, with exit 3.
    done = _gridmatch_without(
        {"highspy"},
        "clear",
        str(scenario),
        "--out",
        str(tmp_path / "x"),
        "--formulation",
        "highspy",
    )
    assert done.returncode == 3
    assert "pip install highspy" in done.stderr


@pytest.mark.parametrize(
    "module",
    [
        "gridmatch.report.build",
        "gridmatch.batch.compare",
        "gridmatch.cli",
        "gridmatch.results_io.folder",
    ],
)
def test_reading_results_loads_no_solver(module: str) -> None:
    # `gridmatch report` and `compare` read files: they must not pay for the solvers
    # (ortools is not checked: pandapower, which the report draws with, imports it).
    code = (
        f"import sys, {module}; "
        "loaded = [m for m in ('highspy', 'pyomo', 'gridmatch.matching.backends.registry') "
        "if m in sys.modules]; print(loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
