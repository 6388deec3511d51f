"""Where is my nearest supply: the vehicles that can bring energy to a place, soonest first.

The disaster-support server's query: given a place (a node, or the node nearest to a
lon/lat) and what is needed, which vehicles could come, how soon, and with how much to
spare after the drive. One Dijkstra on the reversed road graph gives every node's
fastest route *to* the place; the fleet is then filtered and ranked with numpy. Built
once (:class:`SupplyIndex`), a query on a 10,000-vehicle fleet takes a few milliseconds
(benchmarks/bench_mobility.py measures it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridmatch.errors import UsageError
from gridmatch.mobility.pairs import dispatchable_states
from gridmatch.mobility.roads import RoadNetwork
from gridmatch.scenario_io.mobility_input import Carrier, MobilityInputs
from gridmatch.units import WH_PER_KWH

FloatArray = npt.NDArray[np.float64]
KM_PER_DEGREE = 111.32
EARTH_RADIUS_KM = 6371.0
# A position further than this from every road node is not in the folder's area: its
# nearest node would answer for a place the road graph does not reach.
MAX_SNAP_KM = 5.0


@dataclass(frozen=True)
class Supply:
    """One vehicle that can come: when, from where, by which route, with how much."""

    vehicle_id: str
    kind: str
    node: str
    eta_min: float
    distance_km: float
    spare_kwh: float
    route: tuple[str, ...]


class SupplyIndex:
    """The fleet and road graph of a mobility folder, ready for queries.

    Parameters
    ----------
    emergency
        Count ``charging`` vehicles as available (emergency mode's rule).
    """

    def __init__(
        self, inputs: MobilityInputs, roads: RoadNetwork | None = None, *, emergency: bool = True
    ) -> None:
        self.inputs = inputs
        self.roads = roads if roads is not None else RoadNetwork(inputs.roads, inputs.positions)
        states = dispatchable_states(emergency)
        vehicles = inputs.vehicles
        self._source = np.array([self.roads.index[v.node] for v in vehicles], dtype=np.int64)
        self._spare0_kwh = np.array([(v.residual_wh - v.reserve_wh) / WH_PER_KWH for v in vehicles])
        self._use = np.array([v.consumption_kwh_per_km for v in vehicles])
        self._fuel = np.array([v.carrier is Carrier.FUEL for v in vehicles], dtype=bool)
        self._ready = np.array([v.state in states and v.can_supply for v in vehicles], dtype=bool)
        names = list(inputs.positions)
        self._position_names = names
        self._lon_lat = (
            np.array([inputs.positions[n] for n in names]) if names else np.zeros((0, 2))
        )

    def node_near(self, lon: float, lat: float) -> str:
        """Return the node nearest to a position (great-circle distance, haversine).

        Raises
        ------
        UsageError
            The folder has no nodes.csv, so no node has a position; or the position is
            more than :data:`MAX_SNAP_KM` from every node (not in the folder's area).
        """
        if not self._position_names:
            raise UsageError("this folder has no nodes.csv: give a node, not a position")
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise UsageError(f"position ({lon}, {lat}) is not a finite lon/lat")
        km = _haversine_km(self._lon_lat[:, 0], self._lon_lat[:, 1], lon, lat)
        best = int(np.argmin(km))  # ties: the first in nodes.csv
        if km[best] > MAX_SNAP_KM:
            raise UsageError(
                f"position ({lon:g}, {lat:g}) is {km[best]:,.1f} km from the nearest road "
                f"node ('{self._position_names[best]}'); at most {MAX_SNAP_KM:g} km: give a "
                "place in the folder's area, or a node"
            )
        return self._position_names[best]

    def query(
        self,
        node: str,
        need_kwh: float = 0.0,
        *,
        carrier: Carrier = Carrier.ELECTRICITY,
        k: int = 5,
    ) -> list[Supply]:
        """Return the ``k`` soonest vehicles that can bring ``need_kwh`` (any if 0) to ``node``.

        Raises
        ------
        UsageError
            ``node`` is not a node of the road graph.
        """
        target = self.roads.index.get(node)
        if target is None:
            raise UsageError(f"node '{node}' is not in the road graph")
        tree = self.roads.trees_to(target)
        eta = tree.minutes[0][self._source]
        km = tree.km[0][self._source]
        with np.errstate(invalid="ignore"):  # unreachable (inf km) at 0 kWh/km: NaN, unfit
            spare = self._spare0_kwh - km * self._use
        wanted = max(need_kwh, 1.0 / WH_PER_KWH)
        fits = (
            self._ready
            & (self._fuel == (carrier is Carrier.FUEL))
            & np.isfinite(eta)
            & (spare >= wanted - 1e-9)
        )
        candidates = np.nonzero(fits)[0]
        if candidates.size > k:
            # Every vehicle tied with the k-th ETA stays in, so that the order below (ETA,
            # then fleet order) decides among them, not argpartition's arbitrary pick.
            kth_eta = np.partition(eta[candidates], k - 1)[k - 1]
            candidates = candidates[eta[candidates] <= kth_eta]
        candidates = candidates[np.lexsort((candidates, eta[candidates]))][:k]
        found = []
        for v in candidates:
            vehicle = self.inputs.vehicles[int(v)]
            path = self.roads.route_to(tree, int(self._source[v]))
            found.append(
                Supply(
                    vehicle.vehicle_id,
                    vehicle.kind.value,
                    vehicle.node,
                    float(eta[v]),
                    float(km[v]),
                    float(spare[v]),
                    tuple(self.roads.node_ids[n] for n in path),
                )
            )
        return found


def _haversine_km(lon: FloatArray, lat: FloatArray, lon0: float, lat0: float) -> FloatArray:
    """Great-circle kilometres from ``(lon0, lat0)`` to each ``(lon, lat)`` (degrees)."""
    phi, phi0 = np.radians(lat), math.radians(lat0)
    half_d_phi = (phi - phi0) / 2.0
    half_d_lambda = np.radians(lon - lon0) / 2.0
    a = np.sin(half_d_phi) ** 2 + np.cos(phi) * math.cos(phi0) * np.sin(half_d_lambda) ** 2
    km: FloatArray = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return km
