"""An independent checker of mobility output folders: it imports nothing from gridmatch.

It reads the input folder's CSV files and the output folder's files with the standard
library, rebuilds the road graph with networkx and checks every rule of a dispatch:
energy (nobody gives more than it has above its reserve after the drive), reserve,
windows, ports and power at points, travel (each route is a path of roads, its minutes
are the fastest possible and its kilometres what the delivery row says), carriers and
states, and that the per-request, per-vehicle and per-point files agree.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import yaml

TOLERANCE = 1e-6
WH = 1000.0


@dataclass(frozen=True)
class Vehicle:
    vehicle_id: str
    kind: str
    node: str
    state: str
    residual_kwh: float
    reserve_kwh: float
    max_kw: float
    bidirectional: bool
    kwh_per_km: float


@dataclass(frozen=True)
class Request:
    request_id: str
    node: str
    priority: str
    fuel: bool
    need_kwh: float
    earliest_min: float
    latest_min: float
    divisible: bool
    point_id: str


@dataclass(frozen=True)
class Point:
    point_id: str
    node: str
    ports: int
    max_kw: float


@dataclass(frozen=True)
class Inputs:
    horizon_min: float
    kwh_per_l: float
    arcs: dict[tuple[str, str], tuple[float, float]]  # (from, to) -> (minutes, km), fastest
    vehicles: dict[str, Vehicle]
    requests: dict[str, Request]
    points: dict[str, Point]

    def graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        for (a, b), (minutes, km) in self.arcs.items():
            graph.add_edge(a, b, minutes=minutes, km=km)
        return graph


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [
            {k.strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(handle)
            if any((v or "").strip() for v in row.values())
        ]


def _flag(text: str, default: bool) -> bool:
    return default if text == "" else text.lower() in ("true", "1", "yes")


def read_inputs(folder: Path) -> Inputs:
    spec = {}
    if (folder / "mobility.yaml").exists():
        spec = yaml.safe_load((folder / "mobility.yaml").read_text()) or {}
    horizon = float(spec.get("horizon_min", 480.0))
    kwh_per_l = float(spec.get("fuel_kwh_per_l", 9.96))
    arcs: dict[tuple[str, str], tuple[float, float]] = {}
    for row in _rows(folder / "roads.csv"):
        pairs = [(row["from"], row["to"])]
        if not _flag(row.get("oneway", ""), False):
            pairs.append((row["to"], row["from"]))
        for pair in pairs:
            value = (float(row["minutes"]), float(row["km"]))
            arcs[pair] = min(arcs.get(pair, value), value)
    vehicles = {}
    for row in _rows(folder / "vehicles.csv"):

        def energy(kwh_key: str, litre_key: str, row: dict[str, str] = row) -> float:
            if row.get(kwh_key, ""):
                return float(row[kwh_key])
            return math.floor(float(row[litre_key]) * kwh_per_l * WH + 1e-9) / WH

        vehicles[row["vehicle_id"]] = Vehicle(
            row["vehicle_id"],
            row["kind"],
            row["node"],
            row["state"],
            energy("residual_kwh", "residual_l"),
            energy("reserve_kwh", "reserve_l"),
            float(row["max_kw"]),
            _flag(row["bidirectional"], False),
            float(row["consumption_kwh_per_km"]),
        )
    points = {}
    if (folder / "points.csv").exists():
        for row in _rows(folder / "points.csv"):
            points[row["point_id"]] = Point(
                row["point_id"], row["node"], int(row["ports"]), float(row["max_kw"])
            )
    requests = {}
    for row in _rows(folder / "requests.csv"):
        fuel = bool(row.get("need_l", ""))
        need = (
            math.floor(float(row["need_l"]) * kwh_per_l * WH + 1e-9) / WH
            if fuel
            else float(row["need_kwh"])
        )
        point = row.get("point_id", "")
        node = row["node"] or points[point].node
        requests[row["request_id"]] = Request(
            row["request_id"],
            node,
            row["priority"],
            fuel,
            need,
            float(row["earliest_min"] or 0.0),
            float(row["latest_min"] or horizon),
            _flag(row.get("divisible", ""), True),
            point,
        )
    return Inputs(horizon, kwh_per_l, arcs, vehicles, requests, points)


def check_output(input_dir: Path, out_dir: Path, mode: str) -> list[str]:
    """Return every rule the output folder breaks (empty: the dispatch is feasible)."""
    inputs = read_inputs(input_dir)
    graph = inputs.graph()
    problems: list[str] = []
    deliveries = _rows(out_dir / "deliveries.csv")
    dispatchable = {"available", "driving"} | ({"charging"} if mode == "emergency" else set())
    by_vehicle: dict[str, list[dict[str, str]]] = defaultdict(list)
    by_request: dict[str, list[dict[str, str]]] = defaultdict(list)
    by_point: dict[str, list[dict[str, str]]] = defaultdict(list)
    for d in deliveries:
        by_vehicle[d["vehicle_id"]].append(d)
        by_request[d["request_id"]].append(d)
        if d["point_id"]:
            by_point[d["point_id"]].append(d)
    shortest: dict[str, dict[str, float]] = {}
    for d in deliveries:
        v = inputs.vehicles[d["vehicle_id"]]
        r = inputs.requests[d["request_id"]]
        name = f"{v.vehicle_id} -> {r.request_id}"
        if v.state not in dispatchable:
            problems.append(f"{name}: vehicle is {v.state} in {mode} mode")
        if v.kind == "ev" and not v.bidirectional:
            problems.append(f"{name}: EV cannot discharge")
        if (v.kind == "fuel_truck") != r.fuel:
            problems.append(f"{name}: carries the wrong thing")
        if d["point_id"] != r.point_id:
            problems.append(f"{name}: point {d['point_id']} is not the request's")
        # Travel: a path of roads from the vehicle to the request, fastest, as reported.
        route = d["route"].split()
        if route[0] != v.node or route[-1] != r.node:
            problems.append(f"{name}: route runs {route[0]} -> {route[-1]}")
        minutes = km = 0.0
        for a, b in itertools.pairwise(route):
            if (a, b) not in inputs.arcs:
                problems.append(f"{name}: no road {a} -> {b}")
                break
            minutes += inputs.arcs[(a, b)][0]
            km += inputs.arcs[(a, b)][1]
        if v.node not in shortest:
            shortest[v.node] = (
                nx.single_source_dijkstra_path_length(graph, v.node, weight="minutes")
                if v.node in graph
                else {v.node: 0.0}
            )
        best = shortest[v.node].get(r.node, math.inf)
        eta = float(d["eta_min"])
        if abs(minutes - eta) > 1e-4 or abs(best - eta) > 1e-4:
            problems.append(f"{name}: ETA {eta}, route takes {minutes}, fastest {best}")
        if abs(km - float(d["distance_km"])) > 1e-5:
            problems.append(f"{name}: route is {km} km, row says {d['distance_km']}")
        drive = km * v.kwh_per_km
        if abs(drive - float(d["drive_kwh"])) > 1e-5:
            problems.append(f"{name}: drive {d['drive_kwh']} kWh, expected {drive}")
        # Windows and power.
        start, end = float(d["start_min"]), float(d["end_min"])
        energy = int(d["energy_wh"]) / WH
        if eta >= r.latest_min:
            problems.append(f"{name}: arrives at {eta}, window closes {r.latest_min}")
        if abs(start - max(eta, r.earliest_min)) > 1e-4:
            problems.append(f"{name}: starts at {start}, not max(ETA, earliest)")
        if end > r.latest_min + 1e-4:
            problems.append(f"{name}: ends at {end} after the window ({r.latest_min})")
        power = float(d["power_kw"])
        limit = min(v.max_kw, inputs.points[r.point_id].max_kw if r.point_id else math.inf)
        if power > limit * (1 + 1e-9) + 1e-6:
            problems.append(f"{name}: {power} kW above {limit}")
        if power * (end - start) / 60.0 < energy - 1e-3:
            problems.append(f"{name}: {energy} kWh does not fit {power} kW x {end - start} min")
        if energy <= 0.0:
            problems.append(f"{name}: a trip that delivers nothing")
    for vehicle_id, rows in by_vehicle.items():
        v = inputs.vehicles[vehicle_id]
        if len(rows) > 1:
            problems.append(f"{vehicle_id}: {len(rows)} trips")
        given = sum(int(d["energy_wh"]) / WH + float(d["drive_kwh"]) for d in rows)
        if given > v.residual_kwh - v.reserve_kwh + TOLERANCE:
            problems.append(
                f"{vehicle_id}: gives and burns {given} kWh, has {v.residual_kwh - v.reserve_kwh}"
            )
    for request_id, rows in by_request.items():
        r = inputs.requests[request_id]
        total = sum(int(d["energy_wh"]) for d in rows) / WH
        if total > r.need_kwh + TOLERANCE:
            problems.append(f"{request_id}: gets {total} kWh, needs {r.need_kwh}")
        if not r.divisible and (len(rows) != 1 or abs(total - r.need_kwh) > TOLERANCE):
            problems.append(f"{request_id}: indivisible, gets {total} kWh from {len(rows)}")
    for point_id, rows in by_point.items():
        p = inputs.points[point_id]
        if len(rows) > p.ports:
            problems.append(f"{point_id}: {len(rows)} sessions on {p.ports} ports")
        load = sum(float(d["power_kw"]) for d in rows)
        if load > p.max_kw * (1 + 1e-6) + 1e-6:
            problems.append(f"{point_id}: {load} kW above {p.max_kw}")
    problems += _check_tables(inputs, out_dir, by_vehicle, by_request, by_point)
    return problems


def _check_tables(
    inputs: Inputs,
    out_dir: Path,
    by_vehicle: dict[str, list[dict[str, str]]],
    by_request: dict[str, list[dict[str, str]]],
    by_point: dict[str, list[dict[str, str]]],
) -> list[str]:
    problems = []
    requests = _rows(out_dir / "requests.csv")
    if {r["request_id"] for r in requests} != set(inputs.requests):
        problems.append("requests.csv does not list every request once")
    for row in requests:
        served = sum(int(d["energy_wh"]) for d in by_request.get(row["request_id"], []))
        if int(row["served_wh"]) != served:
            problems.append(f"{row['request_id']}: requests.csv says {row['served_wh']} Wh")
        need = int(row["need_wh"])
        status = "served" if served >= need else ("partial" if served else "unserved")
        if row["status"] != status:
            problems.append(f"{row['request_id']}: status {row['status']}, expected {status}")
        if (status == "served") != (row["reason"] == ""):
            problems.append(f"{row['request_id']}: reason '{row['reason']}' for {status}")
    fleet = _rows(out_dir / "fleet.csv")
    if {f["vehicle_id"] for f in fleet} != set(inputs.vehicles):
        problems.append("fleet.csv does not list every vehicle once")
    for row in fleet:
        v = inputs.vehicles[row["vehicle_id"]]
        sent = row["sent"] == "true"
        if sent != (row["vehicle_id"] in by_vehicle):
            problems.append(f"{row['vehicle_id']}: fleet.csv sent={row['sent']}")
        if sent and float(row["left_kwh"]) < v.reserve_kwh - TOLERANCE:
            problems.append(f"{row['vehicle_id']}: keeps {row['left_kwh']} kWh below reserve")
    sessions = _rows(out_dir / "sessions.csv")
    if len(sessions) != sum(len(rows) for rows in by_point.values()):
        problems.append("sessions.csv does not match the deliveries at points")
    for s in sessions:
        if int(s["port"]) > inputs.points[s["point_id"]].ports:
            problems.append(f"{s['point_id']}: port {s['port']} does not exist")
    steps = _rows(out_dir / "itineraries.csv")
    delivering = {s["vehicle_id"] for s in steps if s["activity"] == "deliver"}
    if delivering != set(by_vehicle):
        problems.append("itineraries.csv: delivering vehicles differ from deliveries.csv")
    return problems
