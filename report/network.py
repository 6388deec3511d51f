"""The network a result was cleared on, rebuilt from its scenario, with bus coordinates.

The values drawn on it come from grid.csv (the engine's own final AC check), so only
the topology and the coordinates are needed here: no power flow is run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pandapower as pp
import pandapower.topology as pp_topology
import pandas as pd

from gridmatch.errors import InputError
from gridmatch.report.data import ResultFolder
from gridmatch.results_io.layout import GRID_FILE, MANIFEST_FILE
from gridmatch.results_io.manifest import file_sha256
from gridmatch.scenario_io.loader import SCENARIO_FILE, read_scenario_spec
from gridmatch.scenario_io.network_source import load_network

_ELEMENT_TABLES = ("line", "trafo", "trafo3w", "bus")
# Width over height of a generic tree layout.
_TREE_ASPECT = 1.6


@dataclass(frozen=True)
class DrawableNetwork:
    """A network ready for pandapower's plotting collections.

    Attributes
    ----------
    net
        The scenario's network; ``net.bus.geo`` holds a GeoJSON point for every bus
        that has coordinates (generic ones if the network came without).
    generic_layout
        True if the coordinates are a drawn tree layout, not the network's geodata.
    """

    net: pp.pandapowerNet
    generic_layout: bool

    def bus_xy(self) -> pd.DataFrame:
        """Bus coordinates as columns ``x`` and ``y`` (buses without any are left out)."""
        return _coordinates(self.net.bus)


@dataclass(frozen=True)
class NetworkLookup:
    """The outcome of :func:`result_network`: a network or ``None``, and caveats."""

    network: DrawableNetwork | None
    notes: tuple[str, ...]


def result_network(folder: ResultFolder) -> NetworkLookup:
    """Rebuild the network of a clearing from the scenario folder its manifest names.

    Never raises for a missing or changed scenario: the report is still useful without
    the drawing, so the reason goes into ``notes`` instead.
    """
    if folder.grid is None:
        return NetworkLookup(
            None,
            (
                f"No {GRID_FILE}: the clearing ran with security disabled, so there are no "
                "AC power-flow results to draw on the network.",
            ),
        )
    if folder.manifest is None:
        return NetworkLookup(None, (f"No {MANIFEST_FILE}: the scenario's network is unknown.",))
    scenario_dir = Path(folder.manifest.scenario_dir)
    scenario_file = scenario_dir / SCENARIO_FILE
    if not scenario_file.is_file():
        missing = f"Scenario folder {scenario_dir} (from {MANIFEST_FILE}) has no {SCENARIO_FILE}."
        return NetworkLookup(None, (missing,))
    notes = list(_changed_inputs(scenario_dir, folder.manifest.inputs))
    try:
        spec = read_scenario_spec(scenario_file)
        net = load_network(spec.network, scenario_dir, scenario_file)
    except InputError as exc:
        return NetworkLookup(None, (*notes, f"The scenario's network cannot be loaded: {exc}"))
    mismatch = _elements_missing(net, folder.grid)
    if mismatch is not None:
        return NetworkLookup(None, (*notes, mismatch))
    generic = not _has_geodata(net)
    if generic:
        _write_tree_layout(net)
        notes.append(
            "The network has no bus coordinates: buses are laid out as a tree from the "
            "external grid (depth = number of branches from it)."
        )
    return NetworkLookup(DrawableNetwork(net, generic), tuple(notes))


def _changed_inputs(scenario_dir: Path, inputs: dict[str, dict[str, str]]) -> list[str]:
    """Say which input files no longer have the SHA-256 the manifest recorded."""
    changed = []
    for name, entry in sorted(inputs.items()):
        path = scenario_dir / name
        if not path.is_file() or file_sha256(path) != entry.get("sha256"):
            changed.append(
                f"{path} changed since the clearing (SHA-256 differs from {MANIFEST_FILE}); "
                "the network is drawn as the scenario is now."
            )
    return changed


def _elements_missing(net: pp.pandapowerNet, grid: pd.DataFrame) -> str | None:
    for element in _ELEMENT_TABLES:
        used = set(grid.loc[grid.element == element, "index"].tolist())
        unknown = sorted(used - set(net[element].index.tolist()))
        if unknown:
            return (
                f"{GRID_FILE} names {element} {unknown[0]}, which the scenario's network "
                "does not have (the network changed since the clearing); not drawn."
            )
    return None


def _coordinates(bus: pd.DataFrame) -> pd.DataFrame:
    points: dict[int, tuple[float, float]] = {}
    if "geo" in bus.columns:
        for index, geo in zip(bus.index.tolist(), bus.geo.tolist(), strict=True):
            point = _point(geo)
            if point is not None:
                points[int(index)] = point
    return pd.DataFrame.from_dict(points, orient="index", columns=["x", "y"], dtype=float)


def _point(geo: object) -> tuple[float, float] | None:
    """Return a GeoJSON point's coordinates, or ``None`` for anything else."""
    if not isinstance(geo, str):
        return None
    try:
        document = json.loads(geo)
        x, y = document["coordinates"][:2]
        return float(x), float(y)
    except (ValueError, KeyError, TypeError):
        return None


def _has_geodata(net: pp.pandapowerNet) -> bool:
    """Tell whether every in-service bus has coordinates (a partial set is not drawable)."""
    in_service = net.bus.index[net.bus.in_service.to_numpy(dtype=bool)]
    return bool(in_service.isin(_coordinates(net.bus).index).all())


def _write_tree_layout(net: pp.pandapowerNet) -> None:
    """Write generic bus coordinates into ``net.bus.geo``: a layered tree per component.

    pandapower's own ``create_generic_coordinates`` needs igraph or graphviz; this
    needs only networkx. Distribution grids are (nearly) radial, so a breadth-first
    tree from the external grid shows every feeder as a branch: depth goes down, and
    leaves are spaced evenly across, with each parent centred over its children.
    """
    graph = nx.Graph(
        pp_topology.create_nxgraph(net, respect_switches=True, include_out_of_service=False)
    )
    roots = sorted(int(b) for b in net.ext_grid.bus[net.ext_grid.in_service.to_numpy(dtype=bool)])
    positions: dict[int, tuple[float, float]] = {}
    next_leaf = 0.0
    components = sorted(
        (sorted(int(b) for b in c) for c in nx.connected_components(graph)),
        key=lambda c: (not any(r in c for r in roots), c[0]),
    )
    for component in components:
        root = next((r for r in roots if r in component), component[0])
        tree = nx.bfs_tree(graph, root, sort_neighbors=sorted)
        depth = nx.shortest_path_length(tree, root)
        # Post-order: every child is placed before its parent; the tree keeps its
        # children in sorted order (bfs_tree inserted them so), hence a stable drawing.
        for bus in nx.dfs_postorder_nodes(tree, root):
            children = list(tree.successors(bus))
            if children:
                x = float(np.mean([positions[c][0] for c in children]))
            else:
                x = next_leaf
                next_leaf += 1.0
            positions[int(bus)] = (x, -float(depth[bus]))
        next_leaf += 1.0  # a gap between components
    # A tree has far more leaves than levels (Kerber: 145 across, 34 down); drawn at
    # true scale it would be a thin strip. Its coordinates mean nothing, so squeeze the
    # width to a landscape box.
    if positions:
        xs = np.array([p[0] for p in positions.values()])
        ys = np.array([p[1] for p in positions.values()])
        width, height = float(np.ptp(xs)), float(np.ptp(ys))
        if width > 0.0 and height > 0.0:
            factor = _TREE_ASPECT * height / width
            positions = {b: (x * factor, y) for b, (x, y) in positions.items()}
    # GeoJSON points, the form pandapower's plotting reads (None: not drawn).
    net.bus["geo"] = [
        json.dumps({"coordinates": list(positions[b]), "type": "Point"}) if b in positions else None
        for b in net.bus.index.tolist()
    ]
