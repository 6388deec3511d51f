"""Read a mobility folder (``gridmatch mobility DIR``), validated at the edge.

The folder holds::

    vehicles.csv   vehicle_id, kind, node, state, residual_kwh, reserve_kwh, max_kw,
                   bidirectional, consumption_kwh_per_km [, residual_l, reserve_l, owner_id]
    points.csv     point_id, node, bus, ports, max_kw                       (optional)
    requests.csv   request_id, node, priority, earliest_min, latest_min, need_kwh
                   [, need_l, divisible, point_id]
    roads.csv      from, to, km, minutes [, oneway]
    nodes.csv      node, lon, lat                                           (optional)
    mobility.yaml  horizon, costs, solver, grid check (mobility_schema.py)  (optional)
    parking.csv    vehicle_id, point_id, arrive_slot, depart_slot, departure_kwh,
                   limit_price_eur_per_kwh            (only for ``mobility v2g-offers``)

Energies are kWh with at most three decimals (whole Wh) or, for fuel, litres (at most
three decimals) converted with ``fuel_kwh_per_l`` of mobility.yaml. Times are minutes
from now (the dispatch starts at 0). Every problem is an
:class:`~gridmatch.errors.InputError` naming the file, the row (file line, header =
row 1) and the column; nothing is repaired silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import pandapower as pp

from gridmatch.errors import InputError
from gridmatch.scenario_io.csv_cells import Cells, Table, read_table
from gridmatch.scenario_io.mobility_schema import MobilitySpec
from gridmatch.scenario_io.network_source import load_network
from gridmatch.scenario_io.strict_yaml import read_yaml_mapping, validated_model
from gridmatch.units import floor_wh
from gridmatch.user_files import TABLE_LIMIT_BYTES, is_given, parse_int

MOBILITY_FILE = "mobility.yaml"
VEHICLES_FILE = "vehicles.csv"
POINTS_FILE = "points.csv"
REQUESTS_FILE = "requests.csv"
ROADS_FILE = "roads.csv"
NODES_FILE = "nodes.csv"
PARKING_FILE = "parking.csv"
# Far beyond a town's fleet and its calls for help; small enough that the pair arrays
# (vehicles x requests) fit in memory.
MAX_VEHICLES = 100_000
MAX_REQUESTS = 100_000
MAX_PAIRS = 50_000_000
MAX_KW = 1e6
MAX_KM = 10_000.0
MAX_MINUTES = 10_000.0
MAX_PORTS = 1_000
MAX_KWH_PER_KM = 100.0
MAX_LITRES = 1e6
MAX_SLOT = 10_000_000
MAX_PRICE_EUR_PER_KWH = 1e6
# Rows of the other files. A city's road graph has a few 100,000 arcs; 1,000,000 roads
# take ~1.3 GB and ~20 s to read. Counted before a file is parsed: parsed, 3,000,000
# rows took 8 GB of memory before any bound was looked at.
MAX_ROADS = 1_000_000
MAX_NODES = 1_000_000
MAX_POINTS = 100_000
MAX_PARKING = 1_000_000
_COUNT_CHUNK_BYTES = 1 << 20
_Enum = TypeVar("_Enum", bound=StrEnum)
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}

# The required columns of vehicles.csv, in the order the bundled example writes them.
VEHICLE_COLUMNS = (
    "vehicle_id",
    "kind",
    "node",
    "state",
    "residual_kwh",
    "reserve_kwh",
    "max_kw",
    "bidirectional",
    "consumption_kwh_per_km",
)

# requests.csv: the required columns, then the optional ones, in the order the example writes.
REQUEST_COLUMNS = ("request_id", "node", "priority", "earliest_min", "latest_min")
REQUEST_OPTIONAL_COLUMNS = ("need_kwh", "need_l", "divisible", "point_id")


class VehicleKind(StrEnum):
    """What a vehicle carries: electricity (EVs, mobile storage) or fuel (fuel trucks)."""

    EV = "ev"
    MOBILE_STORAGE = "mobile_storage"
    FUEL_TRUCK = "fuel_truck"


class VehicleState(StrEnum):
    """Where a vehicle is in its day.

    ``available`` and ``driving`` vehicles can be dispatched from their node (a driving
    one from where it is now); ``charging`` ones only in emergency mode (their charge
    is interrupted); ``out_of_service`` ones never.
    """

    AVAILABLE = "available"
    DRIVING = "driving"
    CHARGING = "charging"
    OUT_OF_SERVICE = "out_of_service"


class Priority(StrEnum):
    """A request's priority: emergency mode serves ``critical`` ones first."""

    NORMAL = "normal"
    CRITICAL = "critical"


class Carrier(StrEnum):
    """What a request needs and a vehicle brings."""

    ELECTRICITY = "electricity"
    FUEL = "fuel"


@dataclass(frozen=True)
class Vehicle:
    """One row of vehicles.csv, validated.

    Attributes
    ----------
    residual_wh, reserve_wh
        What it holds now and what must stay in it (fuel trucks: the fuel's energy).
    max_kw
        Discharge power (fuel trucks: the pump's rate, as kW of fuel energy).
    consumption_kwh_per_km
        Drawn from what it holds while it drives (a fuel truck that drives on a tank of
        its own has 0 here).
    owner_id
        Participant id of its sell orders in the P2P market (default: the vehicle id).
    """

    vehicle_id: str
    kind: VehicleKind
    node: str
    state: VehicleState
    residual_wh: int
    reserve_wh: int
    max_kw: float
    bidirectional: bool
    consumption_kwh_per_km: float
    owner_id: str
    row: int

    @property
    def carrier(self) -> Carrier:
        """What it can supply."""
        return Carrier.FUEL if self.kind is VehicleKind.FUEL_TRUCK else Carrier.ELECTRICITY

    @property
    def can_supply(self) -> bool:
        """Whether it can give energy at all: an EV only if it can discharge."""
        return self.kind is not VehicleKind.EV or self.bidirectional


@dataclass(frozen=True)
class Point:
    """One row of points.csv: a stationary interconnection point (a charger, a feeder)."""

    point_id: str
    node: str
    bus: int | None
    ports: int
    max_kw: float
    row: int


@dataclass(frozen=True)
class Request:
    """One row of requests.csv, validated.

    Attributes
    ----------
    latest_min
        End of the window (a request without one: the horizon of mobility.yaml).
    divisible
        May be served partly, by several vehicles; otherwise by one vehicle, in full.
    point_id
        The point the energy is delivered through (a point session), if any.
    """

    request_id: str
    node: str
    carrier: Carrier
    need_wh: int
    priority: Priority
    earliest_min: float
    latest_min: float
    divisible: bool
    point_id: str | None
    row: int


@dataclass(frozen=True)
class Road:
    """One row of roads.csv: a road between two nodes (both ways unless ``oneway``)."""

    from_node: str
    to_node: str
    km: float
    minutes: float
    oneway: bool
    row: int


@dataclass(frozen=True)
class Parking:
    """One row of parking.csv: a bidirectional vehicle parked at a point (V2G).

    Attributes
    ----------
    arrive_slot, depart_slot
        Market slots it is plugged in: ``arrive_slot <= slot < depart_slot``.
    departure_wh
        What the owner wants in it when it leaves (never discharged below this, nor
        below the reserve).
    """

    vehicle_id: str
    point_id: str
    arrive_slot: int
    depart_slot: int
    departure_wh: int
    limit_price_eur_per_kwh: float
    row: int


@dataclass(frozen=True)
class MobilityInputs:
    """A validated mobility folder.

    Attributes
    ----------
    positions
        ``node -> (lon, lat)`` from nodes.csv (empty without it).
    net
        The grid of mobility.yaml's ``grid`` section, if any.
    input_files
        Every file read (hashed into the manifest).
    """

    directory: Path
    spec: MobilitySpec
    name: str
    vehicles: tuple[Vehicle, ...]
    points: tuple[Point, ...]
    requests: tuple[Request, ...]
    roads: tuple[Road, ...]
    positions: dict[str, tuple[float, float]]
    net: pp.pandapowerNet | None
    input_files: tuple[Path, ...]

    @property
    def point_by_id(self) -> dict[str, Point]:
        """The points by id."""
        return {point.point_id: point for point in self.points}


def load_mobility(directory: Path) -> MobilityInputs:
    """Validate a mobility folder completely before anything is solved.

    Raises
    ------
    InputError
        On the first problem, naming the file, row and field.
    """
    if not directory.is_dir():
        raise InputError(directory, "not a folder; expected a mobility folder with vehicles.csv")
    files: list[Path] = []
    spec_path = directory / MOBILITY_FILE
    if is_given(spec_path):
        spec = validated_model(
            MobilitySpec, read_yaml_mapping(spec_path, "mobility settings"), spec_path
        )
        files.append(spec_path)
    else:
        spec = MobilitySpec()
    roads = read_roads(directory / ROADS_FILE)
    files.append(directory / ROADS_FILE)
    road_nodes = {road.from_node for road in roads} | {road.to_node for road in roads}
    positions: dict[str, tuple[float, float]] = {}
    if is_given(directory / NODES_FILE):
        positions = read_positions(directory / NODES_FILE, roads)
        files.append(directory / NODES_FILE)
        # A node of nodes.csv without a road is a place nobody can reach (a flood).
        road_nodes |= set(positions)
    net = None
    if spec.grid is not None:
        net = load_network(spec.grid.network, directory, spec_path)
    points: tuple[Point, ...] = ()
    if is_given(directory / POINTS_FILE):
        points = read_points(directory / POINTS_FILE, road_nodes, net, spec_path)
        files.append(directory / POINTS_FILE)
    vehicles = read_vehicles(directory / VEHICLES_FILE, road_nodes, spec.fuel_kwh_per_l)
    files.append(directory / VEHICLES_FILE)
    requests = read_requests(
        directory / REQUESTS_FILE, road_nodes, {p.point_id: p for p in points}, spec
    )
    files.append(directory / REQUESTS_FILE)
    if len(vehicles) * len(requests) > MAX_PAIRS:
        raise InputError(
            directory / REQUESTS_FILE,
            f"{len(vehicles)} vehicles x {len(requests)} requests is more than "
            f"{MAX_PAIRS:,} pairs; split the dispatch into areas",
        )
    name = spec.name or directory.resolve().name
    return MobilityInputs(
        directory,
        spec,
        name,
        vehicles,
        points,
        requests,
        roads,
        positions,
        net,
        tuple(files),
    )


def _read_bounded(
    path: Path,
    what: str,
    most: int,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> Table:
    """:func:`read_table`, refusing a file of more than ``most`` rows before it is parsed.

    Lines are counted in the raw bytes (cheap, and bounded by the memory of a chunk);
    blank lines and line breaks inside quoted cells count too, so the bound errs on
    refusing. A file that cannot be read is left to :func:`read_table` to report.
    """
    lines = 0
    try:
        if path.is_file() and path.stat().st_size <= TABLE_LIMIT_BYTES:
            with path.open("rb") as handle:
                last = b""
                while chunk := handle.read(_COUNT_CHUNK_BYTES):
                    lines += max(chunk.count(b"\n"), chunk.count(b"\r"))
                    last = chunk[-1:]
                lines += last not in (b"", b"\n", b"\r")  # a last line without a break
    except OSError:
        lines = 0
    if lines - 1 > most:
        raise InputError(
            path,
            f"{lines:,} lines: more than {most:,} {what} rows; split the area or thin the file",
        )
    table = read_table(path, what, required, optional)
    if len(table.rows) > most:
        raise InputError(path, f"{len(table.rows):,} {what} rows; at most {most:,}")
    return table


# --- cell readers (the house rules of csv_cells, for the number kinds these files need)


def _number(
    cells: Cells,
    field: str,
    *,
    minimum: float,
    maximum: float,
    above_minimum: bool = False,
) -> float:
    value = cells.text(field)
    parsed = cells.finite(field)
    if above_minimum and parsed <= minimum:
        raise cells.fail(field, f"{value} must be greater than {minimum:g}")
    if parsed < minimum:
        raise cells.fail(field, f"{value} is below {minimum:g}")
    if parsed > maximum:
        raise cells.fail(field, f"{value} is larger than {maximum:g}")
    return parsed


def _integer(cells: Cells, field: str, *, minimum: int, maximum: int) -> int:
    value = cells.text(field)
    try:
        parsed = parse_int(value)
    except ValueError:
        raise cells.fail(field, f"'{value}' is not a whole number") from None
    if not minimum <= parsed <= maximum:
        raise cells.fail(field, f"{value} is outside {minimum}..{maximum}")
    return parsed


def _boolean(cells: Cells, field: str, default: bool | None = None) -> bool:
    if default is not None and (not cells.has(field) or not cells.record[field]):
        return default
    value = cells.text(field).lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise cells.fail(field, f"'{value}' is not true or false")


def _choice(cells: Cells, field: str, kind: type[_Enum]) -> _Enum:
    value = cells.text(field)
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise cells.fail(field, f"'{value}' is not one of: {choices}") from None


def _given(cells: Cells, field: str) -> bool:
    return cells.has(field) and bool(cells.record[field])


def _litres_wh(cells: Cells, field: str, kwh_per_l: float) -> int:
    litres = _number(cells, field, minimum=0.0, maximum=MAX_LITRES)
    if abs(litres * 1000 - round(litres * 1000)) > 1e-6:
        raise cells.fail(field, f"{cells.record[field]} is finer than 1 ml (0.001 l)")
    return floor_wh(litres * kwh_per_l)


def _node_id(cells: Cells, field: str) -> str:
    """Read a road node's id: an identifier without whitespace.

    deliveries.csv writes a route as its node ids separated by spaces, so an id with a
    space in it would make the route read as other nodes.
    """
    node = cells.identifier(field)
    if any(character.isspace() for character in node):
        raise cells.fail(
            field, f"node '{node}' holds whitespace (routes are written space-separated)"
        )
    return node


def _node(cells: Cells, field: str, road_nodes: set[str]) -> str:
    node = _node_id(cells, field)
    if node not in road_nodes:
        raise cells.fail(field, f"node '{node}' is in neither {ROADS_FILE} nor {NODES_FILE}")
    return node


def _unique(table: Table, field: str) -> None:
    seen: dict[str, int] = {}
    for line, record in table.rows:
        value = record[field]
        if value in seen:
            raise InputError(
                table.path,
                f"duplicate {field} '{value}' (first on row {seen[value]})",
                row=line,
                field=field,
            )
        seen[value] = line


def _not_empty(table: Table, what: str) -> None:
    if not table.rows:
        raise InputError(table.path, f"no rows: expected at least one {what}")


# --- the files


def read_roads(path: Path) -> tuple[Road, ...]:
    """Read roads.csv.

    Raises
    ------
    InputError
        Missing, malformed, a road from a node to itself, a negative length or time.
    """
    table = _read_bounded(
        path, "road graph", MAX_ROADS, ("from", "to", "km", "minutes"), ("oneway",)
    )
    _not_empty(table, "road")
    roads = []
    for cells in table.cells():
        start = _node_id(cells, "from")
        end = _node_id(cells, "to")
        if start == end:
            raise cells.fail("to", f"a road from '{start}' to itself")
        roads.append(
            Road(
                start,
                end,
                _number(cells, "km", minimum=0.0, maximum=MAX_KM),
                _number(cells, "minutes", minimum=0.0, maximum=MAX_MINUTES),
                _boolean(cells, "oneway", default=False),
                cells.line,
            )
        )
    return tuple(roads)


def read_positions(path: Path, roads: Iterable[Road]) -> dict[str, tuple[float, float]]:
    """Read nodes.csv: every road node needs a position (WGS84 degrees).

    Raises
    ------
    InputError
        Malformed, a repeated node, or a road node without a position.
    """
    table = _read_bounded(path, "node positions", MAX_NODES, ("node", "lon", "lat"))
    _unique(table, "node")
    positions = {}
    for cells in table.cells():
        lon = _number(cells, "lon", minimum=-180.0, maximum=180.0)
        lat = _number(cells, "lat", minimum=-90.0, maximum=90.0)
        positions[_node_id(cells, "node")] = (lon, lat)
    for road in roads:
        for field, node in (("from", road.from_node), ("to", road.to_node)):
            if node not in positions:
                raise InputError(
                    path.with_name(ROADS_FILE),
                    f"node '{node}' has no position in {NODES_FILE}",
                    row=road.row,
                    field=field,
                )
    return positions


def read_points(
    path: Path, road_nodes: set[str], net: pp.pandapowerNet | None, spec_path: Path
) -> tuple[Point, ...]:
    """Read points.csv; a ``bus`` must be a usable bus of mobility.yaml's grid.

    Raises
    ------
    InputError
        Malformed, a repeated id, an unknown node, a bus without a grid section or one
        that is out of service or cut off from the external grid.
    """
    from gridmatch.grid_models.topology import bus_graph, unusable_buses

    table = _read_bounded(
        path, "points", MAX_POINTS, ("point_id", "node", "bus", "ports", "max_kw")
    )
    _unique(table, "point_id")
    points = []
    for cells in table.cells():
        bus = None
        if _given(cells, "bus"):
            bus = _integer(cells, "bus", minimum=0, maximum=10**9)
            if net is None:
                raise cells.fail(
                    "bus", f"a bus needs the grid section in {spec_path.name} (or leave it empty)"
                )
        points.append(
            Point(
                cells.identifier("point_id"),
                _node(cells, "node", road_nodes),
                bus,
                _integer(cells, "ports", minimum=1, maximum=MAX_PORTS),
                _number(cells, "max_kw", minimum=0.0, maximum=MAX_KW, above_minimum=True),
                cells.line,
            )
        )
    buses = {p.bus for p in points if p.bus is not None}
    if net is not None and buses:
        known = set(net.bus.index.tolist())
        for point in points:
            if point.bus is not None and point.bus not in known:
                raise InputError(
                    path, f"bus {point.bus} is not in the network", row=point.row, field="bus"
                )
        unusable = unusable_buses(net, bus_graph(net), buses)
        for point in points:
            if point.bus in unusable:
                raise InputError(path, unusable[point.bus], row=point.row, field="bus")
    return tuple(points)


def _energy_wh(
    cells: Cells, kwh_field: str, litre_field: str, *, fuel: bool, kwh_per_l: float
) -> int:
    """Read an energy given in kWh (electricity) or, for fuel, in kWh or litres (one of)."""
    in_kwh, in_litres = _given(cells, kwh_field), _given(cells, litre_field)
    if in_kwh and in_litres:
        raise cells.fail(litre_field, f"give {kwh_field} or {litre_field}, not both")
    if in_litres:
        if not fuel:
            raise cells.fail(litre_field, "litres are for fuel trucks only")
        return _litres_wh(cells, litre_field, kwh_per_l)
    if not in_kwh:
        raise cells.fail(kwh_field, "is empty")
    return cells.wh(kwh_field)


def read_vehicles(path: Path, road_nodes: set[str], kwh_per_l: float) -> tuple[Vehicle, ...]:
    """Read vehicles.csv.

    Raises
    ------
    InputError
        Malformed, a repeated id, an unknown node or kind or state, litres for a
        vehicle that does not carry fuel.
    """
    table = _read_bounded(
        path,
        "vehicles",
        MAX_VEHICLES,
        VEHICLE_COLUMNS,
        ("residual_l", "reserve_l", "owner_id"),
    )
    _not_empty(table, "vehicle")
    _unique(table, "vehicle_id")
    vehicles = []
    for cells in table.cells():
        vehicle_id = cells.identifier("vehicle_id")
        kind = _choice(cells, "kind", VehicleKind)
        fuel = kind is VehicleKind.FUEL_TRUCK
        vehicles.append(
            Vehicle(
                vehicle_id,
                kind,
                _node(cells, "node", road_nodes),
                _choice(cells, "state", VehicleState),
                _energy_wh(cells, "residual_kwh", "residual_l", fuel=fuel, kwh_per_l=kwh_per_l),
                _energy_wh(cells, "reserve_kwh", "reserve_l", fuel=fuel, kwh_per_l=kwh_per_l),
                _number(cells, "max_kw", minimum=0.0, maximum=MAX_KW, above_minimum=True),
                _boolean(cells, "bidirectional"),
                _number(cells, "consumption_kwh_per_km", minimum=0.0, maximum=MAX_KWH_PER_KM),
                cells.identifier("owner_id") if _given(cells, "owner_id") else vehicle_id,
                cells.line,
            )
        )
    return tuple(vehicles)


def read_requests(
    path: Path, road_nodes: set[str], points: dict[str, Point], spec: MobilitySpec
) -> tuple[Request, ...]:
    """Read requests.csv.

    Raises
    ------
    InputError
        Malformed, a repeated id, an unknown node or point, a window that closes before
        it opens or after the horizon starts, fuel requested through a point.
    """
    table = _read_bounded(
        path,
        "requests",
        MAX_REQUESTS,
        REQUEST_COLUMNS,
        REQUEST_OPTIONAL_COLUMNS,
    )
    if "need_kwh" not in table.header and "need_l" not in table.header:
        raise InputError(path, "missing column(s): need_kwh (or need_l for fuel)", row=1)
    _not_empty(table, "request")
    _unique(table, "request_id")
    requests = []
    for cells in table.cells():
        request_id = cells.identifier("request_id")
        fuel = _given(cells, "need_l")
        need_wh = _energy_wh(cells, "need_kwh", "need_l", fuel=True, kwh_per_l=spec.fuel_kwh_per_l)
        if need_wh < 1:
            raise cells.fail("need_l" if fuel else "need_kwh", "must be at least 1 Wh")
        point_id = cells.identifier("point_id") if _given(cells, "point_id") else None
        node = _node(cells, "node", road_nodes) if _given(cells, "node") else None
        if point_id is not None:
            point = points.get(point_id)
            if point is None:
                raise cells.fail("point_id", f"point '{point_id}' is not in {POINTS_FILE}")
            if fuel:
                raise cells.fail("point_id", "fuel is delivered at a node, not through a point")
            if node is not None and node != point.node:
                raise cells.fail(
                    "node", f"'{node}' is not the node of point '{point_id}' ({point.node})"
                )
            node = point.node
        if node is None:
            raise cells.fail("node", "is empty (and no point_id gives one)")
        earliest = (
            _number(cells, "earliest_min", minimum=0.0, maximum=spec.horizon_min)
            if _given(cells, "earliest_min")
            else 0.0
        )
        latest = spec.horizon_min
        if _given(cells, "latest_min"):
            latest = _number(cells, "latest_min", minimum=0.0, maximum=spec.horizon_min)
        if latest <= earliest:
            raise cells.fail("latest_min", f"{latest:g} is not after earliest_min ({earliest:g})")
        requests.append(
            Request(
                request_id,
                node,
                Carrier.FUEL if fuel else Carrier.ELECTRICITY,
                need_wh,
                _choice(cells, "priority", Priority),
                earliest,
                latest,
                _boolean(cells, "divisible", default=True),
                point_id,
                cells.line,
            )
        )
    return tuple(requests)


def read_parking(
    path: Path, vehicles: dict[str, Vehicle], points: dict[str, Point]
) -> tuple[Parking, ...]:
    """Read parking.csv: which bidirectional vehicles are plugged in where, and until when.

    Raises
    ------
    InputError
        Malformed, an unknown vehicle or point, a vehicle that cannot discharge, a point
        without a bus, a vehicle parked twice in one slot, more vehicles than ports.
    """
    table = _read_bounded(
        path,
        "parked vehicles",
        MAX_PARKING,
        (
            "vehicle_id",
            "point_id",
            "arrive_slot",
            "depart_slot",
            "departure_kwh",
            "limit_price_eur_per_kwh",
        ),
    )
    _not_empty(table, "parked vehicle")
    parked: list[Parking] = []
    slots_of: dict[str, list[tuple[int, int, int]]] = {}
    for cells in table.cells():
        vehicle_id = cells.identifier("vehicle_id")
        vehicle = vehicles.get(vehicle_id)
        if vehicle is None:
            raise cells.fail("vehicle_id", f"vehicle '{vehicle_id}' is not in {VEHICLES_FILE}")
        if vehicle.kind is VehicleKind.FUEL_TRUCK or not vehicle.bidirectional:
            raise cells.fail("vehicle_id", f"vehicle '{vehicle_id}' cannot discharge into the grid")
        if vehicle.state in (VehicleState.DRIVING, VehicleState.OUT_OF_SERVICE):
            raise cells.fail(
                "vehicle_id", f"vehicle '{vehicle_id}' is {vehicle.state.value}, not parked"
            )
        point_id = cells.identifier("point_id")
        point = points.get(point_id)
        if point is None:
            raise cells.fail("point_id", f"point '{point_id}' is not in {POINTS_FILE}")
        if point.bus is None:
            raise cells.fail("point_id", f"point '{point_id}' has no grid bus")
        if point.node != vehicle.node:
            raise cells.fail(
                "point_id",
                f"vehicle '{vehicle_id}' is at node '{vehicle.node}', point "
                f"'{point_id}' at '{point.node}'",
            )
        arrive = _integer(cells, "arrive_slot", minimum=0, maximum=MAX_SLOT)
        depart = _integer(cells, "depart_slot", minimum=0, maximum=MAX_SLOT)
        if depart <= arrive:
            raise cells.fail("depart_slot", f"{depart} is not after arrive_slot ({arrive})")
        for other_arrive, other_depart, other_row in slots_of.get(vehicle_id, []):
            if arrive < other_depart and other_arrive < depart:
                raise cells.fail(
                    "arrive_slot", f"vehicle '{vehicle_id}' is already parked (row {other_row})"
                )
        slots_of.setdefault(vehicle_id, []).append((arrive, depart, cells.line))
        parked.append(
            Parking(
                vehicle_id,
                point_id,
                arrive,
                depart,
                cells.wh("departure_kwh"),
                _number(
                    cells, "limit_price_eur_per_kwh", minimum=0.0, maximum=MAX_PRICE_EUR_PER_KWH
                ),
                cells.line,
            )
        )
    _check_ports(path, parked, points)
    return tuple(parked)


def _check_ports(path: Path, parked: list[Parking], points: dict[str, Point]) -> None:
    """Refuse more vehicles plugged into a point in one slot than it has ports."""
    events: dict[str, list[tuple[int, int, Parking]]] = {}
    for entry in parked:
        events.setdefault(entry.point_id, []).append((entry.arrive_slot, 1, entry))
        events.setdefault(entry.point_id, []).append((entry.depart_slot, -1, entry))
    for point_id, changes in events.items():
        plugged = 0
        # Departures before arrivals in the same slot: the port is free again.
        for slot, step, entry in sorted(changes, key=lambda c: (c[0], c[1], c[2].row)):
            plugged += step
            if plugged > points[point_id].ports:
                raise InputError(
                    path,
                    f"point '{point_id}' has {points[point_id].ports} port(s); "
                    f"{plugged} vehicles are plugged in in slot {slot}",
                    row=entry.row,
                    field="point_id",
                )
