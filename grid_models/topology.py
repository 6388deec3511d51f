"""The grid as a networkx graph: where orders may sit, and how far apart buses are."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import numpy.typing as npt
import pandapower as pp
import pandapower.topology as pp_topology

from gridmatch.matching.orders import OrderBook
from gridmatch.scenario_io.errors import InputError


def bus_graph(net: pp.pandapowerNet) -> nx.MultiGraph:
    """In-service topology with edge ``weight`` = line length in km.

    Transformers and closed bus-bus switches weigh 0 km; open switches cut their
    element, as pandapower's ``create_nxgraph`` does.
    """
    return pp_topology.create_nxgraph(net, respect_switches=True, include_out_of_service=False)


def check_order_buses(
    net: pp.pandapowerNet, graph: nx.MultiGraph, book: OrderBook, orders_path: Path
) -> None:
    """Refuse orders on buses that do not exist, are out of service, or are islanded.

    Raises
    ------
    InputError
        Naming the first offending order's row (header = row 1).
    """
    supplied: set[int] = set()
    for ext_bus in net.ext_grid.bus[net.ext_grid.in_service]:
        if ext_bus in graph:
            supplied |= nx.node_connected_component(graph, ext_bus)
    for row, order in enumerate(book.orders, start=2):
        if order.bus not in net.bus.index:
            raise InputError(
                orders_path,
                f"bus {order.bus} is not in the network's bus table",
                row=row,
                field="bus",
            )
        if not bool(net.bus.at[order.bus, "in_service"]):
            raise InputError(
                orders_path, f"bus {order.bus} is out of service", row=row, field="bus"
            )
        if order.bus not in supplied:
            raise InputError(
                orders_path,
                f"bus {order.bus} is not connected to the external grid",
                row=row,
                field="bus",
            )


def distance_matrix_km(
    graph: nx.MultiGraph, buses: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Shortest line-length path (km) between every pair of ``buses``.

    Parameters
    ----------
    buses
        Distinct bus indices, sorted (as ``numpy.unique`` gives them).
    """
    distances = np.zeros((buses.size, buses.size))
    position = {int(bus): i for i, bus in enumerate(buses)}
    for i, source in enumerate(buses.tolist()):
        lengths = nx.single_source_dijkstra_path_length(graph, source, weight="weight")
        for target, km in lengths.items():
            j = position.get(int(target))
            if j is not None:
                distances[i, j] = km
    return distances
