"""V2G in the P2P market: parked bidirectional EVs offer discharge as sell orders.

``gridmatch mobility v2g-offers DIR --scenario SCEN -o NEW`` reads the parked vehicles
of a mobility folder (parking.csv) and writes a new scenario folder: SCEN's files, with
its orders file holding the original orders plus one sell order per parked vehicle and
market slot. ``gridmatch clear NEW`` clears them like any order (AC check included) and
``gridmatch settle`` settles their trades like any trade; ``gridmatch mobility
v2g-credit RESULT`` reports what each vehicle earned.

**The cap.** A parked vehicle may give ``residual - max(reserve, departure)``, floored to
whole Wh, over all its slots together: its orders add up to at most that, so whatever
clears, the battery never goes below its reserve nor below the state of charge its owner
wants at departure. A vehicle parked several times (rows of parking.csv) gives at each
stay at most that stay's cap less what it offered at its earlier stays, so every
departure's charge holds even if all of it clears (no charging between stays assumed).
Per slot it may give at most its share of the point's power over the slot,
``min(max_kw, point_kw * max_kw / sum of the plugged vehicles' max_kw) * slot_hours``
(so the point's limit holds too).

**Which slots.** The cap is spread over the parked slots with the most demand first (the
scenario's buy kWh per slot: V2G discharges at the peak), each filled up to its power
limit, until the cap is used up. Order ids are ``v2g-<vehicle>-s<slot>``; the seller is
the vehicle's ``owner_id``; sell orders are divisible.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridmatch.errors import InputError, UsageError
from gridmatch.grid_models.topology import unusable_buses
from gridmatch.matching.orders import Side
from gridmatch.results_io.atomic import atomic_output_dir, recover
from gridmatch.results_io.folder import read_trades
from gridmatch.results_io.manifest import name_in_folder
from gridmatch.results_io.mobility import (
    V2G_OFFERS_FILE,
    V2gCreditRow,
    V2gOfferRow,
    read_v2g_offers,
    v2g_offers_csv,
)
from gridmatch.scenario_io.loader import Scenario, load_scenario
from gridmatch.scenario_io.mobility_input import (
    PARKING_FILE,
    MobilityInputs,
    Parking,
    load_mobility,
    read_parking,
)
from gridmatch.scenario_io.orders_csv import SUBMITTED_COLUMN
from gridmatch.units import WH_PER_KWH, floor_wh, slot_hours
from gridmatch.user_files import TABLE_LIMIT_BYTES, read_text

ORDER_PREFIX = "v2g-"


@dataclass(frozen=True)
class V2gScenario:
    """What :func:`write_v2g_scenario` wrote."""

    out_dir: Path
    offers: tuple[V2gOfferRow, ...]
    n_original_orders: int


def spare_wh(residual_wh: int, reserve_wh: int, departure_wh: int) -> int:
    """Return what a parked vehicle may give: down to its reserve or departure need."""
    return max(residual_wh - max(reserve_wh, departure_wh), 0)


def v2g_offers(
    inputs: MobilityInputs, parking: Sequence[Parking], scenario: Scenario
) -> list[V2gOfferRow]:
    """Return the parked vehicles' sell orders (module docstring), by vehicle and slot.

    Raises
    ------
    InputError
        A point's bus cannot take orders in the scenario's network (parking.csv's row).
    UsageError
        An order id the scenario already has.
    """
    parking_path = inputs.directory / PARKING_FILE
    vehicles = {v.vehicle_id: v for v in inputs.vehicles}
    points = inputs.point_by_id
    buses = {points[p.point_id].bus for p in parking}
    unusable = unusable_buses(scenario.net, scenario.graph, {b for b in buses if b is not None})
    for entry in parking:
        bus = points[entry.point_id].bus
        if bus in unusable:
            raise InputError(
                parking_path,
                f"point '{entry.point_id}' (bus {bus}) in {scenario.directory}: {unusable[bus]}",
                row=entry.row,
                field="point_id",
            )
    book = scenario.book
    hours = slot_hours(scenario.spec.slot_minutes)
    n_slots = int(book.slot.max()) + 1 if len(book.orders) else 0
    demand_kwh = np.zeros(n_slots)
    buys = np.array([o.side is Side.BUY for o in book.orders], dtype=bool)
    np.add.at(demand_kwh, book.slot[buys], book.quantity_kwh[buys])
    existing = {o.order_id for o in book.orders}
    offers: list[V2gOfferRow] = []
    # A vehicle's stays in time order: what it offered at earlier stays is gone from its
    # battery at every later departure (no charging between stays is assumed).
    offered_wh = dict.fromkeys(vehicles, 0)
    for entry in sorted(parking, key=lambda p: (p.vehicle_id, p.arrive_slot)):
        vehicle = vehicles[entry.vehicle_id]
        point = points[entry.point_id]
        assert point.bus is not None  # read_parking refuses points without a bus
        stay_spare_wh = max(
            spare_wh(vehicle.residual_wh, vehicle.reserve_wh, entry.departure_wh)
            - offered_wh[vehicle.vehicle_id],
            0,
        )
        left_wh = stay_spare_wh
        slots = [s for s in range(entry.arrive_slot, entry.depart_slot) if s < n_slots]
        # The peak first; among equal demand, the earlier slot.
        slots.sort(key=lambda s: (-demand_kwh[s], s))
        for slot in slots:
            if left_wh <= 0:
                break
            plugged_kw = sum(
                vehicles[p.vehicle_id].max_kw
                for p in parking
                if p.point_id == entry.point_id and p.arrive_slot <= slot < p.depart_slot
            )
            share_kw = point.max_kw * vehicle.max_kw / plugged_kw
            cap_wh = floor_wh(min(vehicle.max_kw, share_kw) * hours)
            quantity_wh = min(cap_wh, left_wh)
            if quantity_wh < 1:
                continue
            order_id = f"{ORDER_PREFIX}{vehicle.vehicle_id}-s{slot:03d}"
            if order_id in existing:
                raise UsageError(
                    f"{scenario.directory}: the scenario already has an order '{order_id}'"
                )
            left_wh -= quantity_wh
            offered_wh[vehicle.vehicle_id] += quantity_wh
            offers.append(
                V2gOfferRow(
                    vehicle_id=vehicle.vehicle_id,
                    owner_id=vehicle.owner_id,
                    order_id=order_id,
                    point_id=point.point_id,
                    bus=point.bus,
                    slot=slot,
                    quantity_kwh=quantity_wh / WH_PER_KWH,
                    limit_price_eur_per_kwh=entry.limit_price_eur_per_kwh,
                    spare_kwh=stay_spare_wh / WH_PER_KWH,
                )
            )
    offers.sort(key=lambda o: (o.vehicle_id, o.slot))
    return offers


def _order_lines(header: Sequence[str], offers: Sequence[V2gOfferRow]) -> list[str]:
    """Return the offers as orders.csv lines in the original file's column order."""
    lines = []
    for offer in offers:
        cells = {
            "order_id": offer.order_id,
            "participant_id": offer.owner_id,
            "side": "sell",
            "bus": str(offer.bus),
            "slot": str(offer.slot),
            "quantity_kwh": f"{offer.quantity_kwh:.3f}",
            "limit_price_eur_per_kwh": repr(offer.limit_price_eur_per_kwh),
            "divisible": "true",
            # Rolling rounds see a parked vehicle's offer from the start of the day.
            SUBMITTED_COLUMN: "0",
        }
        lines.append(",".join(cells[name] for name in header))
    return lines


def write_v2g_scenario(mobility_dir: Path, scenario_dir: Path, out_dir: Path) -> V2gScenario:
    """Write ``out_dir``: ``scenario_dir``'s files, its orders plus the V2G sell orders.

    Also writes ``v2g_offers.csv`` there (what each vehicle offers, for ``v2g-credit``).

    Raises
    ------
    InputError
        A file of either folder is missing or malformed; nothing is written.
    UsageError
        ``out_dir`` is one of the input folders, or an order id is taken.
    gridmatch.errors.OutputFolderError
        ``out_dir`` holds files gridmatch did not write.
    """
    recover(out_dir)
    resolved = out_dir.resolve()
    if resolved in (mobility_dir.resolve(), scenario_dir.resolve()):
        raise UsageError(f"{out_dir}: write the new scenario to a folder of its own")
    inputs = load_mobility(mobility_dir)
    parking = read_parking(
        mobility_dir / PARKING_FILE, {v.vehicle_id: v for v in inputs.vehicles}, inputs.point_by_id
    )
    scenario = load_scenario(scenario_dir)
    offers = v2g_offers(inputs, parking, scenario)
    orders_path = (scenario_dir / scenario.spec.orders).resolve()
    text = read_text(orders_path, TABLE_LIMIT_BYTES, "orders file", bom=True)
    header = [name.strip() for name in text.splitlines()[0].split(",")]
    combined = text if text.endswith("\n") else text + "\n"
    combined += "".join(line + "\n" for line in _order_lines(header, offers))
    with atomic_output_dir(out_dir) as staging:
        for path in scenario.input_files:
            target = staging / name_in_folder(path, scenario_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.resolve() == orders_path:
                target.write_text(combined, encoding="utf-8")
            else:
                shutil.copyfile(path, target)
        (staging / V2G_OFFERS_FILE).write_text(v2g_offers_csv(offers), encoding="utf-8")
    return V2gScenario(out_dir, tuple(offers), len(scenario.book.orders))


def v2g_credits(result_dir: Path, offers_path: Path) -> list[V2gCreditRow]:
    """Return what each offering vehicle sold and earned in a cleared market.

    Reads the clearing's trades.csv through :func:`gridmatch.results_io.folder.read_trades`
    and the offers of ``v2g_offers.csv``; a vehicle is credited ``quantity * price`` of
    each trade its orders sold in (the seller's side; buyers pay fees on top).

    Raises
    ------
    InputError
        A file is missing or malformed.
    """
    offers = read_v2g_offers(offers_path)
    vehicle_of = {o.order_id: o.vehicle_id for o in offers}
    owner = {o.vehicle_id: o.owner_id for o in offers}
    offered: dict[str, float] = {}
    for offer in offers:
        offered[offer.vehicle_id] = offered.get(offer.vehicle_id, 0.0) + offer.quantity_kwh
    sold: dict[str, float] = dict.fromkeys(offered, 0.0)
    credit: dict[str, float] = dict.fromkeys(offered, 0.0)
    count: dict[str, int] = dict.fromkeys(offered, 0)
    for trade in read_trades(result_dir):
        vehicle_id = vehicle_of.get(trade.sell_order_id)
        if vehicle_id is None:
            continue
        sold[vehicle_id] += trade.quantity_kwh
        credit[vehicle_id] += trade.quantity_kwh * trade.price_eur_per_kwh
        count[vehicle_id] += 1
    return [
        V2gCreditRow(
            vehicle_id=vehicle_id,
            owner_id=owner[vehicle_id],
            offered_kwh=round(offered[vehicle_id], 6),
            sold_kwh=round(sold[vehicle_id], 6),
            n_trades=count[vehicle_id],
            credit_eur=round(credit[vehicle_id], 6),
            average_price_eur_per_kwh=(
                credit[vehicle_id] / sold[vehicle_id] if sold[vehicle_id] > 0 else float("nan")
            ),
        )
        for vehicle_id in sorted(offered)
    ]
