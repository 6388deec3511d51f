"""Generated towns and fleets: the bundled storm example and the benchmark's instances.

No real map is shipped: OpenStreetMap extracts need a download this machine cannot make
(and osmnx is not installed), so the town is a generated street grid around a made-up
centre (48.5 N, 9.0 E), 250 m blocks with +-20 % jitter, 30 km/h streets and a 50 km/h
arterial every fifth street. A storm closes some roads (fallen trees). Everything is
seeded: the same arguments give the same files.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gridmatch.scenario_io.mobility_input import (
    REQUEST_COLUMNS,
    REQUEST_OPTIONAL_COLUMNS,
    VEHICLE_COLUMNS,
    Carrier,
    MobilityInputs,
    Point,
    Priority,
    Request,
    Road,
    Vehicle,
    VehicleKind,
    VehicleState,
)
from gridmatch.scenario_io.mobility_schema import DIESEL_KWH_PER_L, MobilitySpec
from gridmatch.units import WH_PER_KWH

CENTRE_LON, CENTRE_LAT = 9.0, 48.5
KM_PER_DEGREE_LAT = 111.32
STREET_KMH, ARTERIAL_KMH = 30.0, 50.0
ARTERIAL_EVERY = 5
# A fuel truck's pump: 40 l/min of diesel, as kW of fuel energy.
PUMP_KW = 40 * 60 * DIESEL_KWH_PER_L


def node_name(row: int, col: int) -> str:
    """Return the id of the crossing at ``row``, ``col``."""
    return f"x{row:02d}-{col:02d}"


@dataclass(frozen=True)
class Town:
    """A generated street grid: roads and node positions (lon, lat)."""

    roads: tuple[Road, ...]
    positions: dict[str, tuple[float, float]]
    nodes: tuple[str, ...]


def town_grid(
    rows: int, cols: int, *, block_km: float = 0.25, closed_share: float = 0.0, seed: int = 0
) -> Town:
    """Generate a ``rows`` x ``cols`` street grid; ``closed_share`` of its roads closed."""
    rng = np.random.default_rng(seed)
    km_per_degree_lon = KM_PER_DEGREE_LAT * math.cos(math.radians(CENTRE_LAT))
    positions = {}
    for r in range(rows):
        for c in range(cols):
            east_km = (c - (cols - 1) / 2) * block_km
            north_km = (r - (rows - 1) / 2) * block_km
            positions[node_name(r, c)] = (
                round(CENTRE_LON + east_km / km_per_degree_lon, 6),
                round(CENTRE_LAT + north_km / KM_PER_DEGREE_LAT, 6),
            )
    roads = []
    line = 2
    for r in range(rows):
        for c in range(cols):
            for dr, dc in ((0, 1), (1, 0)):
                r2, c2 = r + dr, c + dc
                if r2 >= rows or c2 >= cols:
                    continue
                km = round(block_km * float(rng.uniform(0.8, 1.2)), 3)
                arterial = (dr == 0 and r % ARTERIAL_EVERY == 0) or (
                    dc == 0 and c % ARTERIAL_EVERY == 0
                )
                speed = ARTERIAL_KMH if arterial else STREET_KMH
                closed = rng.random() < closed_share and not arterial
                if closed:
                    continue
                minutes = round(km / speed * 60.0, 3)
                roads.append(Road(node_name(r, c), node_name(r2, c2), km, minutes, False, line))
                line += 1
    return Town(tuple(roads), positions, tuple(positions))


def synthetic_inputs(
    n_vehicles: int,
    n_requests: int,
    *,
    seed: int = 0,
    grid: int | None = None,
    critical_share: float = 0.1,
    fuel_share: float = 0.1,
    time_limit_s: float = 30.0,
) -> MobilityInputs:
    """Generate a random instance of the benchmark's kind, in memory (no files).

    Vehicles: 75 % EVs (70 % of them bidirectional), 15 % mobile storage, 10 % fuel
    trucks (``fuel_share`` of the vehicles and of the requests, 10 % by default);
    80 % available, 10 % driving, 7 % charging, 3 % out of service. Requests: the
    electric ones 85 % households of 5-25 kWh and 15 % sites of 50-300 kWh, fuel ones
    50-500 l; ``critical_share`` critical; windows open in the first two hours and
    last one to five (a fifth open until the horizon); one point per 50 requests.
    """
    rng = np.random.default_rng(seed)
    side = grid if grid is not None else max(8, min(50, int(math.sqrt(n_requests) * 0.8)))
    town = town_grid(side, side, seed=seed)
    nodes = town.nodes
    vehicles = []
    electric = 1.0 - fuel_share
    kinds = rng.choice(
        3, size=n_vehicles, p=[0.75 / 0.9 * electric, 0.15 / 0.9 * electric, fuel_share]
    )
    states = rng.choice(list(VehicleState), size=n_vehicles, p=[0.80, 0.10, 0.07, 0.03])
    for k in range(n_vehicles):
        kind = (VehicleKind.EV, VehicleKind.MOBILE_STORAGE, VehicleKind.FUEL_TRUCK)[kinds[k]]
        if kind is VehicleKind.EV:
            residual, reserve = rng.uniform(25, 75), rng.uniform(8, 20)
            kw, use, both = (
                float(rng.choice([7.0, 11.0, 22.0])),
                rng.uniform(0.15, 0.25),
                rng.random() < 0.7,
            )
        elif kind is VehicleKind.MOBILE_STORAGE:
            residual, reserve = rng.uniform(150, 500), 20.0
            kw, use, both = float(rng.choice([50.0, 100.0, 150.0])), rng.uniform(0.8, 1.2), True
        else:
            residual = rng.uniform(1000, 4000) * DIESEL_KWH_PER_L
            reserve = 100 * DIESEL_KWH_PER_L
            kw, use, both = PUMP_KW, 3.0, False
        vehicles.append(
            Vehicle(
                f"v{k:05d}",
                kind,
                str(nodes[rng.integers(len(nodes))]),
                VehicleState(states[k]),
                int(residual * WH_PER_KWH),
                int(reserve * WH_PER_KWH),
                float(kw),
                bool(both),
                round(float(use), 3),
                f"v{k:05d}",
                k + 2,
            )
        )
    n_points = max(1, n_requests // 50)
    points = tuple(
        Point(
            f"p{q:04d}",
            str(nodes[rng.integers(len(nodes))]),
            None,
            int(rng.integers(2, 9)),
            float(rng.choice([50.0, 100.0, 300.0])),
            q + 2,
        )
        for q in range(n_points)
    )
    requests = []
    horizon = 480.0
    for k in range(n_requests):
        fuel = rng.random() < fuel_share
        if fuel:
            need = rng.uniform(50, 500) * DIESEL_KWH_PER_L
        elif rng.random() < 0.85:
            need = rng.uniform(5, 25)
        else:
            need = rng.uniform(50, 300)
        earliest = float(np.round(rng.uniform(0, 120), 1))
        latest = horizon if rng.random() < 0.2 else min(horizon, earliest + rng.uniform(60, 300))
        point_id = None
        node = str(nodes[rng.integers(len(nodes))])
        if not fuel and rng.random() < 0.10:
            point = points[int(rng.integers(n_points))]
            point_id, node = point.point_id, point.node
        requests.append(
            Request(
                f"r{k:05d}",
                node,
                Carrier.FUEL if fuel else Carrier.ELECTRICITY,
                max(1, int(need * WH_PER_KWH)),
                Priority.CRITICAL if rng.random() < critical_share else Priority.NORMAL,
                earliest,
                float(np.round(latest, 1)),
                bool(rng.random() < 0.7) or fuel or need > 40,
                point_id,
                k + 2,
            )
        )
    spec = MobilitySpec.model_validate(
        {"name": f"synthetic-{n_vehicles}x{n_requests}", "solver": {"time_limit_s": time_limit_s}}
    )
    return MobilityInputs(
        Path("."),
        spec,
        spec.name or "synthetic",
        tuple(vehicles),
        points,
        tuple(requests),
        town.roads,
        town.positions,
        None,
        (),
    )


# --- writing a folder


def _write(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _kwh(wh: int) -> str:
    return f"{wh / WH_PER_KWH:.3f}"


def write_inputs(folder: Path, inputs: MobilityInputs, mobility_yaml: str | None = None) -> None:
    """Write ``inputs`` as a mobility folder (fuel requests in litres, to the millilitre)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(
        folder / "roads.csv",
        ("from", "to", "km", "minutes"),
        ((r.from_node, r.to_node, r.km, r.minutes) for r in inputs.roads),
    )
    if inputs.positions:
        _write(
            folder / "nodes.csv",
            ("node", "lon", "lat"),
            ((n, lon, lat) for n, (lon, lat) in inputs.positions.items()),
        )
    _write(
        folder / "vehicles.csv",
        VEHICLE_COLUMNS,
        (
            (
                v.vehicle_id,
                v.kind.value,
                v.node,
                v.state.value,
                _kwh(v.residual_wh),
                _kwh(v.reserve_wh),
                v.max_kw,
                "true" if v.bidirectional else "false",
                v.consumption_kwh_per_km,
            )
            for v in inputs.vehicles
        ),
    )
    if inputs.points:
        _write(
            folder / "points.csv",
            ("point_id", "node", "bus", "ports", "max_kw"),
            (
                (p.point_id, p.node, "" if p.bus is None else p.bus, p.ports, p.max_kw)
                for p in inputs.points
            ),
        )
    _write(
        folder / "requests.csv",
        (*REQUEST_COLUMNS, *REQUEST_OPTIONAL_COLUMNS),
        (
            (
                r.request_id,
                r.node,
                r.priority.value,
                r.earliest_min,
                r.latest_min,
                "" if r.carrier is Carrier.FUEL else _kwh(r.need_wh),
                # Fuel is asked for in litres (what marks it as fuel); to the millilitre.
                f"{r.need_wh / WH_PER_KWH / inputs.spec.fuel_kwh_per_l:.3f}"
                if r.carrier is Carrier.FUEL
                else "",
                "true" if r.divisible else "false",
                r.point_id or "",
            )
            for r in inputs.requests
        ),
    )
    if mobility_yaml is not None:
        (folder / "mobility.yaml").write_text(mobility_yaml, encoding="utf-8")


# --- the bundled example: a storm over a small town

STORM_YAML = """\
# Storm over Sturmfeld (a generated 14 x 14 street grid; no real map). Fallen trees
# closed some roads, the north-east corner is cut off by a flood. The town's CIGRE LV
# grid still runs at 60 % of its loads; four interconnection points sit on its buses.
name: storm-town
horizon_min: 480
travel_penalty_kwh_per_min: 0.001
fuel_kwh_per_l: 9.96
solver:
  backend: highs
  time_limit_s: 20
  mip_gap: 1.0e-6
  seed: 0
grid:
  network:
    pandapower: create_cigre_network_lv
  load_scaling: 0.6
  sgen_scaling: 0.0
  security:
    max_line_loading_percent: 100
    max_trafo_loading_percent: 100
    vm_min_pu: 0.9
    vm_max_pu: 1.05
  max_rounds: 8
"""

# point_id, node, bus, ports, max_kw
_STORM_POINTS = (
    ("P-care-north", "x11-03", 18, 3, 60.0),
    ("P-school", "x07-07", 12, 4, 100.0),
    ("P-depot", "x02-10", 41, 6, 150.0),
    ("P-clinic", "x04-04", 22, 2, 50.0),
)
# vehicle_id, kind, node, state, residual (kWh, or l for fuel), reserve, max_kw, bidirectional,
# kWh per km
_STORM_VEHICLES = (
    ("ev01", "ev", "x00-00", "available", 58.2, 12.0, 11.0, True, 0.17),
    ("ev02", "ev", "x03-08", "available", 44.5, 10.0, 11.0, True, 0.18),
    ("ev03", "ev", "x06-01", "available", 66.0, 15.0, 22.0, True, 0.19),
    ("ev04", "ev", "x09-05", "available", 31.7, 10.0, 11.0, True, 0.16),
    ("ev05", "ev", "x12-09", "driving", 52.3, 12.0, 11.0, True, 0.18),
    ("ev06", "ev", "x08-12", "driving", 27.9, 12.0, 7.4, True, 0.17),
    ("ev07", "ev", "x05-06", "charging", 48.0, 10.0, 11.0, True, 0.18),
    ("ev08", "ev", "x01-12", "charging", 61.5, 15.0, 22.0, True, 0.2),
    ("ev09", "ev", "x10-10", "out_of_service", 70.0, 10.0, 11.0, True, 0.18),
    ("ev10", "ev", "x02-10", "available", 55.0, 12.0, 11.0, True, 0.17),
    ("ev11", "ev", "x02-10", "charging", 40.0, 12.0, 11.0, True, 0.17),
    ("ev12", "ev", "x02-10", "available", 62.0, 15.0, 11.0, True, 0.18),
    ("ev13", "ev", "x02-10", "available", 47.0, 12.0, 11.0, True, 0.18),
    ("ev14", "ev", "x07-03", "available", 38.0, 10.0, 11.0, False, 0.16),
    ("ev15", "ev", "x11-11", "available", 57.0, 10.0, 11.0, False, 0.19),
    ("ev16", "ev", "x04-11", "available", 9.5, 10.0, 11.0, True, 0.17),
    ("ms01", "mobile_storage", "x00-07", "available", 380.0, 20.0, 100.0, True, 1.1),
    ("ms02", "mobile_storage", "x13-00", "available", 220.0, 20.0, 50.0, True, 0.9),
    ("ms03", "mobile_storage", "x06-13", "driving", 300.0, 20.0, 100.0, True, 1.2),
    ("ft01", "fuel_truck", "x00-03", "available", 2400.0, 50.0, PUMP_KW, False, 3.0),
    ("ft02", "fuel_truck", "x12-05", "available", 900.0, 50.0, PUMP_KW, False, 3.0),
)
# request_id, node, priority, earliest, latest, need (kWh, or l for fuel), divisible, point
_STORM_REQUESTS = (
    ("hospital-generator", "x06-09", "critical", 0, 90, ("l", 600.0), True, ""),
    ("care-home-north", "", "critical", 0, 240, ("kwh", 150.0), True, "P-care-north"),
    ("shelter-school", "", "critical", 30, 360, ("kwh", 260.0), True, "P-school"),
    ("dialysis-home", "x09-12", "critical", 0, 60, ("kwh", 9.0), False, ""),
    ("radio-mast", "x13-02", "critical", 0, 120, ("kwh", 15.0), False, ""),
    ("water-pump", "x01-06", "critical", 0, 180, ("l", 220.0), True, ""),
    ("pharmacy-fridge", "x05-02", "critical", 0, 45, ("kwh", 6.0), False, ""),
    ("fire-station", "x10-07", "critical", 0, 6, ("l", 150.0), True, ""),
    ("dairy-farm", "x13-13", "critical", 0, 300, ("kwh", 40.0), True, ""),
    ("clinic-fridges", "", "critical", 0, 120, ("kwh", 30.0), True, "P-clinic"),
    ("sewage-pumps", "", "critical", 0, 180, ("kwh", 300.0), True, "P-depot"),
)


def _storm_households(town: Town, rng: np.random.Generator) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    open_nodes = [n for n in town.nodes if n != "x13-13"]
    for k in range(30):
        node = open_nodes[int(rng.integers(len(open_nodes)))]
        earliest = int(rng.choice([0, 0, 30, 60, 120]))
        latest = "" if rng.random() < 0.3 else earliest + int(rng.choice([60, 120, 240]))
        need = round(float(rng.uniform(5, 25)), 1)
        divisible = rng.random() < 0.75
        point = "P-clinic" if k < 3 else ""
        rows.append(
            (
                f"home-{k + 1:02d}",
                "" if point else node,
                "normal",
                earliest,
                latest,
                ("kwh", need),
                divisible,
                point,
            )
        )
    return rows


def write_storm_town(folder: Path) -> None:
    """Write the bundled storm example (``scenarios/storm-town``) into ``folder``."""
    rng = np.random.default_rng(2026)
    town = town_grid(14, 14, closed_share=0.06, seed=7)
    # The flood cuts the north-east corner off: no road reaches x13-13.
    roads = [r for r in town.roads if "x13-13" not in (r.from_node, r.to_node)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mobility.yaml").write_text(STORM_YAML, encoding="utf-8")
    _write(
        folder / "roads.csv",
        ("from", "to", "km", "minutes"),
        ((r.from_node, r.to_node, r.km, r.minutes) for r in roads),
    )
    _write(
        folder / "nodes.csv",
        ("node", "lon", "lat"),
        ((n, lon, lat) for n, (lon, lat) in town.positions.items()),
    )
    _write(folder / "points.csv", ("point_id", "node", "bus", "ports", "max_kw"), _STORM_POINTS)
    vehicle_rows = []
    for vid, kind, node, state, residual, reserve, kw, both, use in _STORM_VEHICLES:
        fuel = kind == "fuel_truck"
        vehicle_rows.append(
            (
                vid,
                kind,
                node,
                state,
                "" if fuel else f"{residual:.3f}",
                "" if fuel else f"{reserve:.3f}",
                round(kw, 3),
                "true" if both else "false",
                use,
                f"{residual:.3f}" if fuel else "",
                f"{reserve:.3f}" if fuel else "",
            )
        )
    _write(
        folder / "vehicles.csv",
        (*VEHICLE_COLUMNS, "residual_l", "reserve_l"),
        vehicle_rows,
    )
    request_rows = []
    every: list[tuple[Any, ...]] = [*_STORM_REQUESTS, *_storm_households(town, rng)]
    for rid, node, priority, earliest, latest, (unit, need), divisible, point in every:
        request_rows.append(
            (
                rid,
                node,
                priority,
                earliest,
                latest,
                f"{need:.3f}" if unit == "kwh" else "",
                f"{need:.3f}" if unit == "l" else "",
                "true" if divisible else "false",
                point,
            )
        )
    _write(
        folder / "requests.csv",
        (*REQUEST_COLUMNS, *REQUEST_OPTIONAL_COLUMNS),
        request_rows,
    )
    # Evening V2G at the depot (market slots are the hours of market/scenario.yaml).
    _write(
        folder / "parking.csv",
        (
            "vehicle_id",
            "point_id",
            "arrive_slot",
            "depart_slot",
            "departure_kwh",
            "limit_price_eur_per_kwh",
        ),
        (
            ("ev10", "P-depot", 16, 23, "35.000", 0.12),
            ("ev11", "P-depot", 17, 22, "30.000", 0.14),
            ("ev12", "P-depot", 15, 21, "40.000", 0.1),
            ("ev13", "P-depot", 18, 24, "30.000", 0.16),
        ),
    )
    write_storm_market(folder / "market")


STORM_MARKET_YAML = """\
# The evening after the storm on Sturmfeld's CIGRE LV grid: households buy from a few
# home batteries in hourly slots 15-23; parked EVs at the depot (parking.csv of the
# mobility folder one level up) can join as sellers: gridmatch mobility v2g-offers.
name: storm-town-market
network:
  pandapower: create_cigre_network_lv
slot_minutes: 60
security:
  enabled: true
  max_line_loading_percent: 100
  max_trafo_loading_percent: 100
  vm_min_pu: 0.9
  vm_max_pu: 1.05
background:
  load_scaling: [0.35, 0.3, 0.3, 0.3, 0.3, 0.35, 0.45, 0.55, 0.5, 0.45, 0.45, 0.5,
                 0.5, 0.45, 0.45, 0.5, 0.6, 0.75, 0.85, 0.85, 0.8, 0.7, 0.55, 0.45]
market:
  pricing: midpoint
  grid_fee_eur_per_kwh: 0.01
  grid_fee_eur_per_kwh_per_km: 0.05
solver:
  formulation: highspy
  time_limit_s: 30
  mip_gap: 1.0e-4
  threads: 1
  seed: 0
orders: orders.csv
"""
_MARKET_BUSES = (2, 12, 16, 17, 18, 19, 22, 24, 35, 36, 37, 40, 41, 42, 43)


def write_storm_market(folder: Path) -> None:
    """Write the small market scenario the storm example's V2G offers join."""
    rng = np.random.default_rng(2027)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scenario.yaml").write_text(STORM_MARKET_YAML, encoding="utf-8")
    rows = []
    for slot in range(15, 24):
        for k in range(6):
            bus = int(rng.choice(_MARKET_BUSES))
            rows.append(
                (
                    f"o{slot:02d}-b{k}",
                    f"h{bus:02d}-{k}",
                    "buy",
                    bus,
                    slot,
                    f"{rng.uniform(0.8, 3.0):.3f}",
                    f"{rng.uniform(0.22, 0.34):.4f}",
                    "false" if rng.random() < 0.3 else "true",
                )
            )
        for k in range(2):
            bus = int(rng.choice(_MARKET_BUSES))
            rows.append(
                (
                    f"o{slot:02d}-s{k}",
                    f"battery-{bus:02d}",
                    "sell",
                    bus,
                    slot,
                    f"{rng.uniform(1.0, 2.5):.3f}",
                    f"{rng.uniform(0.14, 0.2):.4f}",
                    "true",
                )
            )
    _write(
        folder / "orders.csv",
        (
            "order_id",
            "participant_id",
            "side",
            "bus",
            "slot",
            "quantity_kwh",
            "limit_price_eur_per_kwh",
            "divisible",
        ),
        rows,
    )
