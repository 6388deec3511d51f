"""The grid as a networkx graph: where orders may sit, and how far apart buses are."""

from __future__ import annotations

import networkx as nx
import numpy as np
import numpy.typing as npt
import pandapower as pp
import pandapower.topology as pp_topology


def bus_graph(net: pp.pandapowerNet) -> nx.MultiGraph:
    """In-service topology with edge ``weight`` = line length in km.

    Transformers and closed bus-bus switches weigh 0 km; open switches cut their
    element, as pandapower's ``create_nxgraph`` does. DC lines and the DC grid's
    elements join nothing here: pandapower's AC power flow does not supply a bus
    through them, so a bus behind one alone is not connected.
    """
    return pp_topology.create_nxgraph(
        net,
        respect_switches=True,
        include_out_of_service=False,
        include_dclines=False,
        include_vsc=False,
        include_line_dc=False,
    )


def unusable_buses(net: pp.pandapowerNet, graph: nx.MultiGraph, buses: set[int]) -> dict[int, str]:
    """Say which of ``buses`` cannot host an order, and why.

    A bus must be in the bus table, in service, and connected to an in-service
    external grid through in-service elements and closed switches.

    Returns
    -------
    dict
        Bus index -> reason, for the unusable buses only.
    """
    supplied: set[int] = set()
    for ext_bus in net.ext_grid.bus[net.ext_grid.in_service]:
        if ext_bus in graph:
            supplied |= nx.node_connected_component(graph, ext_bus)
    reasons: dict[int, str] = {}
    for bus in sorted(buses):
        if bus not in net.bus.index:
            reasons[bus] = f"bus {bus} is not in the network's bus table"
        elif not bool(net.bus.at[bus, "in_service"]):
            reasons[bus] = f"bus {bus} is out of service"
        elif bus not in supplied:
            reasons[bus] = f"bus {bus} is not connected to the external grid"
    return reasons


def distance_matrix_km(
    graph: nx.MultiGraph, buses: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Shortest line-length path (km) between every pair of ``buses``.

    Parameters
    ----------
    buses
        Distinct bus indices, sorted (as ``numpy.unique`` gives them).

    Returns
    -------
    numpy.ndarray
        Kilometres, ``inf`` between buses no line path joins (islands fed by external
        grids of their own): a per-km fee cannot be priced there, so under a per-km
        tariff such a pair's fee is infinite and it never trades.
    """
    distances = np.full((buses.size, buses.size), np.inf)
    position = {int(bus): i for i, bus in enumerate(buses)}
    for i, source in enumerate(buses.tolist()):
        lengths = nx.single_source_dijkstra_path_length(graph, source, weight="weight")
        for target, km in lengths.items():
            j = position.get(int(target))
            if j is not None:
                distances[i, j] = km
    return distances
