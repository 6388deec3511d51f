"""Validated commitments as deliveries for settlement: the meter CSV ``gridmatch meters`` reads.

Settlement takes a meter export (``meter_id, slot, exported_kwh, imported_kwh``, see
:mod:`gridmatch.settlement.meters`), signs it with the meters' keys (``gridmatch meters
sign``) and lets the validators attest it; a validated commitment enters that same path
as a delivery. Here it becomes rows of that file:

* only ``validated`` verdicts are delivered (a partial delivery settles nothing: the
  commitment was not met), and at most the committed energy (over-delivery was not sold);
* the energy is spread over the settlement slots the device's run overlaps inside the
  window, at the run's mean power there, and in each slot at most the committed power
  times the overlap (what was sold for that slot): a 3 kW run 10:00-14:00 that
  validates 1.2 kW committed 10:00-20:00 delivers 1.2 kWh in each of the slots 10-13,
  nothing in 14-19, where the meter shows nothing (a row without a run, the window);
* an operation that lowers the meter's import (export, curtailing or shifting a load)
  counts as ``exported_kwh``, one that raises it (import, curtailing a generator) as
  ``imported_kwh``;
* ``meter_id`` of the settlement file is the commitment's ``participant_id`` (settlement
  knows meters by the participant whose connection they measure); readings of one
  participant and slot are added up, whole Wh rounded down (``units.floor_wh``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from datetime import datetime

from gridmatch.der_validation.window import direction
from gridmatch.results_io.der_validation import Verdict, VerdictRow
from gridmatch.results_io.tables import neutralise
from gridmatch.units import SECONDS_PER_HOUR, WH_PER_KWH, floor_wh

# The columns of settlement's meter CSV (gridmatch.settlement.meters.COLUMNS).
COLUMNS = ("meter_id", "slot", "exported_kwh", "imported_kwh")


def validated_deliveries(
    rows: Iterable[VerdictRow],
    slot_start: datetime,
    slot_minutes: int,
    kinds: Mapping[str, str],
) -> list[tuple[str, int, int, int]]:
    """Turn validated verdicts into ``(participant, slot, exported_wh, imported_wh)``.

    Parameters
    ----------
    slot_start
        Start of settlement slot 0 (with a UTC offset).
    slot_minutes
        Length of a slot.
    kinds
        Device type -> its model's kind (``load``, ``generator``, ``storage``): curtailing
        a generator raises import, curtailing a load lowers it.
    """
    slot_s = slot_minutes * 60
    origin_s = slot_start.timestamp()
    exported: dict[tuple[str, int], float] = {}
    imported: dict[tuple[str, int], float] = {}
    for row in rows:
        if row.verdict is not Verdict.VALIDATED:
            continue
        start_s = datetime.fromisoformat(row.start).timestamp()
        end_s = datetime.fromisoformat(row.end).timestamp()
        if start_s < origin_s:
            raise ValueError(f"commitment {row.commitment_id} starts before slot 0")
        energy_kwh = min(row.delivered_kwh, row.committed_kwh)
        sign = direction(kinds.get(row.device_type, "load"), row.operation)
        target = imported if sign > 0 else exported
        # Where the meter shows the run: its time inside the window.
        run_start_s, run_end_s = _run_inside(row, start_s, end_s)
        run_kw = energy_kwh * SECONDS_PER_HOUR / (run_end_s - run_start_s)
        first = math.floor((run_start_s - origin_s) / slot_s)
        last = math.ceil((run_end_s - origin_s) / slot_s)
        for slot in range(first, last):
            slot_begin = origin_s + slot * slot_s
            overlap_s = min(run_end_s, slot_begin + slot_s) - max(run_start_s, slot_begin)
            if overlap_s <= 0:
                continue
            # What was sold for the slot caps what it gets: a run stronger than the
            # commitment over-delivered there, and that was not sold.
            slot_kwh = min(run_kw, row.committed_kw) * overlap_s / SECONDS_PER_HOUR
            key = (row.participant_id, slot)
            target[key] = target.get(key, 0.0) + slot_kwh
    keys = sorted(exported.keys() | imported.keys())
    return [
        (
            meter,
            slot,
            floor_wh(exported.get((meter, slot), 0.0)),
            floor_wh(imported.get((meter, slot), 0.0)),
        )
        for meter, slot in keys
    ]


def _run_inside(row: VerdictRow, start_s: float, end_s: float) -> tuple[float, float]:
    """Return the Unix times (s) of the row's run inside its window (else the window)."""
    if not row.event_start or not row.event_end:
        return start_s, end_s
    run_start_s = max(start_s, datetime.fromisoformat(row.event_start).timestamp())
    run_end_s = min(end_s, datetime.fromisoformat(row.event_end).timestamp())
    if run_end_s <= run_start_s:
        return start_s, end_s
    return run_start_s, run_end_s


def deliveries_csv(deliveries: Iterable[tuple[str, int, int, int]]) -> str:
    """Write deliveries as meter CSV text (kWh with three decimals: whole Wh, as meters count)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for meter, slot, exported_wh, imported_wh in deliveries:
        writer.writerow(
            [
                neutralise(meter),
                slot,
                f"{exported_wh / WH_PER_KWH:.3f}",
                f"{imported_wh / WH_PER_KWH:.3f}",
            ]
        )
    return buffer.getvalue()
