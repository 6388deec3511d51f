"""Shortest-path potentials of a residual network: LP duals from an optimal flow.

At an optimal min-cost flow the residual network has no negative cycle, and the
shortest distances ``d`` from the source satisfy ``d(v) <= d(u) + cost(u, v)`` on
every residual arc: they are optimal dual prices (node potentials), exactly, in the
flow's integer cost unit. Computed by a queue-based Bellman-Ford (SPFA), compiled by
numba, in one pass over the arcs per round.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@numba.njit(cache=True)
def _spfa(n_nodes: int, tails: IntArray, heads: IntArray, costs: IntArray, source: int) -> IntArray:
    """Shortest distances from ``source`` (int64; unreachable nodes keep 2**62)."""
    order = np.argsort(tails, kind="mergesort")
    start = np.searchsorted(tails[order], np.arange(n_nodes + 1))
    unreachable = np.int64(2**62)
    distance = np.full(n_nodes, unreachable, dtype=np.int64)
    distance[source] = 0
    queued = np.zeros(n_nodes, dtype=np.bool_)
    queue = np.empty(n_nodes + 1, dtype=np.int64)
    head, tail, size = 0, 0, 0
    queue[tail] = source
    tail = (tail + 1) % (n_nodes + 1)
    size += 1
    queued[source] = True
    while size > 0:
        u = queue[head]
        head = (head + 1) % (n_nodes + 1)
        size -= 1
        queued[u] = False
        for k in range(start[u], start[u + 1]):
            arc = order[k]
            v = heads[arc]
            candidate = distance[u] + costs[arc]
            if candidate < distance[v]:
                distance[v] = candidate
                if not queued[v]:
                    queue[tail] = v
                    tail = (tail + 1) % (n_nodes + 1)
                    size += 1
                    queued[v] = True
    return distance


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel, so no solve pays for it."""
    one = np.zeros(1, dtype=np.int64)
    _spfa(2, one, one + 1, one, 0)


def residual_distances(
    n_nodes: int,
    tails: IntArray,
    heads: IntArray,
    costs: IntArray,
    capacities: IntArray,
    flows: IntArray,
    source: int,
) -> IntArray:
    """Shortest distances from ``source`` in the residual network of an optimal flow."""
    forward = flows < capacities
    backward = flows > 0
    residual_tails = np.concatenate([tails[forward], heads[backward]]).astype(np.int64)
    residual_heads = np.concatenate([heads[forward], tails[backward]]).astype(np.int64)
    residual_costs = np.concatenate([costs[forward], -costs[backward]]).astype(np.int64)
    distances: IntArray = _spfa(n_nodes, residual_tails, residual_heads, residual_costs, source)
    return distances
