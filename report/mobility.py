"""The report of a mobility output folder (``gridmatch report OUT`` or ``mobility --report``).

One self-contained HTML page like the other reports (inline PNG, no external URL),
built only from the folder's files through :mod:`gridmatch.results_io.mobility`: a map
of the town (roads, vehicles by kind, requests by priority and status, points, the
routes of the dispatch) drawn from map.geojson, then the requests with their status and
reason, the deliveries, the fleet, the points' sessions and the grid check.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from gridmatch.report import markup as html
from gridmatch.report.png import new_figure, png_data_uri
from gridmatch.results_io.atomic import claim_file, write_file_atomically
from gridmatch.results_io.layout import REPORT_FILE
from gridmatch.results_io.mobility import (
    DeliveryRow,
    FleetRow,
    MobilitySummary,
    RequestRow,
    SessionRow,
    read_deliveries,
    read_fleet,
    read_map,
    read_mobility_summary,
    read_request_rows,
    read_sessions,
)
from gridmatch.units import WH_PER_KWH

MAX_TABLE_ROWS = 500
_KIND_MARKERS = {"ev": "o", "mobile_storage": "s", "fuel_truck": "^"}
_STATUS_COLOURS = {"served": "#1b7f2a", "partial": "#f0a04b", "unserved": "#c0392b"}
_PRIORITY_COLOURS = {"critical": "#c0392b", "normal": "#2e86c1"}


@dataclass(frozen=True)
class MobilityReportInfo:
    """What :func:`build_mobility_report` wrote."""

    path: Path
    size_bytes: int
    n_routes: int
    has_map: bool

    @property
    def headline(self) -> str:
        """One line for the terminal: what the report covers and its size."""
        return (
            f"mobility report with a map of {self.n_routes} routes, {self.size_bytes / 1e6:.2f} MB"
        )


def build_mobility_report(out_dir: Path) -> MobilityReportInfo:
    """Write ``OUT_DIR/report.html`` for an output folder of ``gridmatch mobility``.

    Raises
    ------
    gridmatch.errors.InputError
        Not a mobility output folder, or one of its files missing or malformed.
    """
    summary = read_mobility_summary(out_dir)
    requests = read_request_rows(out_dir)
    deliveries = read_deliveries(out_dir)
    fleet = read_fleet(out_dir)
    sessions = read_sessions(out_dir)
    geojson = read_map(out_dir)
    features = [f for f in geojson["features"] if isinstance(f, dict)]
    has_map = any(f.get("geometry") for f in features if _prop(f, "feature") != "road")
    body = _overview(summary)
    if has_map:
        figure = draw_map(features)
        body += html.section(
            "map",
            "Map",
            html.image(
                png_data_uri(figure),
                "map of vehicles, requests, points and routes",
                "Grey: roads. Vehicles: circle EV, square mobile storage, triangle fuel truck "
                "(filled: sent). Requests: star critical, dot normal; green served, orange "
                "partly, red not served. Diamonds: points. Lines: routes (red to critical "
                "requests, blue to normal ones).",
            ),
        )
    else:
        body += html.section(
            "map", "Map", html.note("No positions (the folder had no nodes.csv): no map.")
        )
    body += _requests_section(requests) + _deliveries_section(deliveries)
    body += _fleet_section(fleet) + _sessions_section(sessions) + _grid_section(summary)
    document = html.page(
        f"gridmatch mobility report: {summary.name}",
        f"output folder {out_dir.resolve()} · {summary.mode} mode · {summary.backend}",
        body,
        escape(
            "Written by `gridmatch report` from the folder's files. Energy in the CSV files "
            "is whole Wh (rounded down); the tables show kWh."
        ),
    )
    path = out_dir / REPORT_FILE
    claim_file(path)
    write_file_atomically(path, document)
    n_routes = sum(1 for f in features if _prop(f, "feature") == "route")
    return MobilityReportInfo(path, path.stat().st_size, n_routes, has_map)


def _prop(feature: dict[str, Any], key: str) -> Any:
    properties = feature.get("properties")
    return properties.get(key) if isinstance(properties, dict) else None


def _coordinates(feature: dict[str, Any]) -> list[list[float]] | None:
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        return None
    coordinates = geometry.get("coordinates")
    if geometry.get("type") == "Point" and isinstance(coordinates, list):
        return [coordinates]
    if geometry.get("type") == "LineString" and isinstance(coordinates, list):
        return coordinates
    return None


def draw_map(features: list[dict[str, Any]]) -> Figure:
    """Draw roads, routes, points, requests and vehicles of a map.geojson."""
    figure = new_figure(9.0, 8.0)
    axes = figure.add_axes((0.06, 0.06, 0.92, 0.9))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for feature in features:
        by_kind.setdefault(str(_prop(feature, "feature")), []).append(feature)
    roads = [c for f in by_kind.get("road", []) if (c := _coordinates(f))]
    if roads:
        axes.add_collection(LineCollection(roads, colors="#cccccc", linewidths=0.8, zorder=1))
    priority = {_prop(f, "request_id"): _prop(f, "priority") for f in by_kind.get("request", [])}
    for colour in ("#2e86c1", "#c0392b"):
        lines = [
            c
            for f in by_kind.get("route", [])
            if (c := _coordinates(f))
            and _PRIORITY_COLOURS.get(str(priority.get(_prop(f, "request_id"))), "#2e86c1")
            == colour
        ]
        if lines:
            axes.add_collection(
                LineCollection(lines, colors=colour, linewidths=1.6, alpha=0.8, zorder=2)
            )
    for f in by_kind.get("point", []):
        c = _coordinates(f)
        if c:
            axes.plot(c[0][0], c[0][1], "D", color="#6c3483", markersize=9, zorder=3)
            axes.annotate(
                str(_prop(f, "point_id")),
                (c[0][0], c[0][1]),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
    for f in by_kind.get("request", []):
        c = _coordinates(f)
        if c:
            marker = "*" if _prop(f, "priority") == "critical" else "."
            size = 13 if marker == "*" else 9
            axes.plot(
                c[0][0],
                c[0][1],
                marker,
                markersize=size,
                zorder=4,
                color=_STATUS_COLOURS.get(str(_prop(f, "status")), "#333333"),
            )
    for f in by_kind.get("vehicle", []):
        c = _coordinates(f)
        if c:
            marker = _KIND_MARKERS.get(str(_prop(f, "kind")), "o")
            sent = bool(_prop(f, "sent"))
            axes.plot(
                c[0][0],
                c[0][1],
                marker,
                markersize=6,
                zorder=5,
                color="#1f4e79",
                markerfacecolor="#1f4e79" if sent else "none",
            )
    axes.autoscale()
    axes.set_aspect(1.0 / 0.66)  # a degree of longitude is ~0.66 of one of latitude at 48 N
    axes.set_xlabel("longitude")
    axes.set_ylabel("latitude")
    axes.grid(alpha=0.2)
    return figure


def _kwh(wh: int) -> str:
    return f"{wh / WH_PER_KWH:.3f}"


def _overview(s: MobilitySummary) -> str:
    gap = "–" if s.gap is None else f"{100 * s.gap:.4f} %"
    facts = html.facts(
        [
            ("mode / solver", f"{s.mode} / {s.backend}"),
            ("status / gap", f"{s.status} / {gap}"),
            ("vehicles: dispatchable / sent", f"{s.n_vehicles}: {s.n_dispatchable} / {s.n_sent}"),
            (
                "requests: served / partly / not",
                f"{s.n_requests}: {s.n_served} / {s.n_partial} / {s.n_unserved}",
            ),
            (
                "critical served / needed",
                f"{_kwh(s.critical_served_wh)} / {_kwh(s.critical_need_wh)} kWh",
            ),
            (
                "normal served / needed",
                f"{_kwh(s.normal_served_wh)} / {_kwh(s.normal_need_wh)} kWh",
            ),
            ("fuel delivered", f"{s.fuel_served_l:.1f} l"),
            (
                "reasons for what is not served",
                ", ".join(f"{k} {v}" for k, v in sorted(s.reasons.items())) or "–",
            ),
            ("runtime", f"{s.runtime_s:.2f} s (limit {s.time_limit_s:g} s per dispatch)"),
        ]
    )
    stages = html.table(
        [
            "stage",
            "method",
            "source",
            "solver",
            "objective kWh",
            "bound kWh",
            "gap",
            "pairs",
            "in MILP",
        ],
        [
            [
                st.name,
                st.method,
                st.source,
                st.solver_status,
                f"{st.objective_kwh:.3f}",
                f"{st.bound_kwh:.3f}",
                "–" if st.gap is None else f"{100 * st.gap:.4f} %",
                str(st.n_pairs),
                str(st.n_model_pairs),
            ]
            for st in s.stages
        ],
        text_columns=(0, 1, 2, 3),
    )
    return html.section("overview", "Dispatch", facts + stages)


def _limited(rows: list[Any]) -> tuple[list[Any], str]:
    if len(rows) <= MAX_TABLE_ROWS:
        return rows, ""
    return rows[:MAX_TABLE_ROWS], html.note(f"The first {MAX_TABLE_ROWS} of {len(rows)} rows.")


def _requests_section(rows: list[RequestRow]) -> str:
    shown, note = _limited(sorted(rows, key=lambda r: (r.priority != "critical", r.request_id)))
    table = html.table(
        [
            "request",
            "priority",
            "point",
            "need kWh",
            "served kWh",
            "status",
            "vehicles",
            "reason",
            "detail",
        ],
        [
            [
                r.request_id,
                r.priority,
                r.point_id,
                _kwh(r.need_wh),
                _kwh(r.served_wh),
                r.status.value,
                r.vehicles,
                r.reason.value,
                r.detail,
            ]
            for r in shown
        ],
        text_columns=(0, 1, 2, 5, 6, 7, 8),
        scroll=True,
    )
    return html.section("requests", "Requests", note + table)


def _deliveries_section(rows: list[DeliveryRow]) -> str:
    shown, note = _limited(rows)
    table = html.table(
        [
            "request",
            "vehicle",
            "kind",
            "from",
            "ETA min",
            "start",
            "end",
            "km",
            "kWh",
            "litres",
            "kW",
        ],
        [
            [
                d.request_id,
                d.vehicle_id,
                d.vehicle_kind,
                d.vehicle_node,
                f"{d.eta_min:.1f}",
                f"{d.start_min:.1f}",
                f"{d.end_min:.1f}",
                f"{d.distance_km:.2f}",
                _kwh(d.energy_wh),
                f"{d.fuel_l:.1f}" if d.fuel_l else "",
                f"{d.power_kw:.1f}",
            ]
            for d in shown
        ],
        text_columns=(0, 1, 2, 3),
        scroll=True,
    )
    return html.section("deliveries", "Deliveries", note + table)


def _fleet_section(rows: list[FleetRow]) -> str:
    shown, note = _limited(rows)
    table = html.table(
        [
            "vehicle",
            "kind",
            "state",
            "sent to",
            "residual kWh",
            "reserve kWh",
            "gives kWh",
            "drive kWh",
            "left kWh",
            "note",
        ],
        [
            [
                f.vehicle_id,
                f.kind,
                f.state,
                f.request_id,
                _kwh(f.residual_wh),
                _kwh(f.reserve_wh),
                _kwh(f.delivered_wh),
                f"{f.drive_kwh:.3f}",
                f"{f.left_kwh:.3f}",
                f.note,
            ]
            for f in shown
        ],
        text_columns=(0, 1, 2, 3, 9),
        scroll=True,
    )
    return html.section("fleet", "Fleet", note + table)


def _sessions_section(rows: list[SessionRow]) -> str:
    if not rows:
        return html.section("sessions", "Point sessions", html.paragraph("No sessions at points."))
    shown, note = _limited(rows)
    table = html.table(
        ["point", "bus", "port", "vehicle", "request", "start min", "end min", "kWh", "kW"],
        [
            [
                s.point_id,
                s.bus,
                str(s.port),
                s.vehicle_id,
                s.request_id,
                f"{s.start_min:.1f}",
                f"{s.end_min:.1f}",
                _kwh(s.energy_wh),
                f"{s.power_kw:.2f}",
            ]
            for s in shown
        ],
        text_columns=(0, 1, 3, 4),
        scroll=True,
    )
    return html.section("sessions", "Point sessions", note + table)


def _grid_section(s: MobilitySummary) -> str:
    g = s.grid
    if not g.checked:
        return html.section(
            "grid", "Grid check", html.paragraph("No session injected at a grid bus.")
        )
    facts = html.facts(
        [
            ("secure", "yes" if g.secure else "NO"),
            ("re-solves with lower point limits", str(g.rounds)),
            ("points limited", ", ".join(g.capped_points) or "–"),
            ("AC power flows", str(g.ac_power_flows)),
            (
                "injection kW by bus",
                ", ".join(f"{b}: {kw:.1f}" for b, kw in g.injection_kw_by_bus.items()) or "–",
            ),
            ("max line loading", html.number(g.max_line_loading_percent, 1) + " %"),
            (
                "bus voltage min / max",
                f"{html.number(g.min_vm_pu, 4)} / {html.number(g.max_vm_pu, 4)} pu",
            ),
        ]
    )
    return html.section("grid", "Grid check", facts)
