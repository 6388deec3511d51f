"""An aggregator's commitments file against "a run delivers once" (``der_validation/claims.py``).

The aggregator writes the commitments; the meter's data are what it cannot change. Each
test crafts commitments that, judged one by one, are all explained by the same energy
on the meter, and checks that what settlement would be given (``validated_deliveries``)
stays within what the meter shows. Hand-made meters of ``test_der_verdict_rules.py``,
judged as ``gridmatch validate-commitments`` judges a folder (``run.judge_all``).
"""

from __future__ import annotations

from datetime import timedelta, timezone, tzinfo
from pathlib import Path

import numpy as np
import pytest
from test_der_verdict_rules import DAY, MINUTES, SITE, House, _minute

from gridmatch.der_validation.clearsky import clear_sky_ghi
from gridmatch.der_validation.run import DEFAULT_MODELS, judge_all
from gridmatch.der_validation.settlement import validated_deliveries
from gridmatch.results_io.der_validation import Verdict, VerdictRow
from gridmatch.scenario_io.der_input import Commitment, DerInputs
from gridmatch.scenario_io.der_models import load_event_models

LIBRARY = load_event_models(DEFAULT_MODELS, None)
KINDS = {name: model.kind for name, model in LIBRARY.spec.models.items()}
# Meter noise and the whole-Wh floor leave a few Wh either way.
SLACK_KWH = 0.05


def _commitment(
    commitment_id: str,
    device: str,
    start_h: float,
    end_h: float,
    kw: float,
    *,
    operation: str = "import",
    tolerance: float | None = None,
    zone: tzinfo | None = None,
) -> Commitment:
    start = DAY + timedelta(minutes=_minute(start_h))
    end = DAY + timedelta(minutes=_minute(end_h))
    if zone is not None:
        start, end = start.astimezone(zone), end.astimezone(zone)
    return Commitment(
        row=1,
        commitment_id=commitment_id,
        meter_id="M1",
        participant_id="P1",
        device_type=device,
        operation=operation,
        start=start,
        end=end,
        kw=kw,
        tolerance=tolerance,
    )


def _judged(house: House, *commitments: Commitment) -> dict[str, VerdictRow]:
    inputs = DerInputs(Path("."), {"M1": house.series()}, commitments, {}, LIBRARY, ())
    return {j.row.commitment_id: j.row for j in judge_all(inputs)}


def _settled_kwh(rows: dict[str, VerdictRow]) -> tuple[float, float]:
    """Exported and imported kWh settlement would be given."""
    deliveries = validated_deliveries(rows.values(), DAY, 15, KINDS)
    exported_kwh = sum(exported for _, _, exported, _ in deliveries) / 1000.0
    imported_kwh = sum(imported for _, _, _, imported in deliveries) / 1000.0
    return exported_kwh, imported_kwh


def _pv(house: House, kwp: float) -> House:
    times_s = DAY.timestamp() + (np.arange(MINUTES) + 0.5) * 60
    house.p -= kwp * clear_sky_ghi(SITE, times_s) / 1000.0
    return house


def _net_export_kwh(house: House, start_h: float, end_h: float) -> float:
    inside = house.p[_minute(start_h) : _minute(end_h)]
    return float(np.clip(-inside, 0.0, None).sum()) / 60.0


@pytest.mark.parametrize("hours", [1, -5, 5.5])
def test_a_second_utc_offset_does_not_make_one_run_deliver_twice(hours: float) -> None:
    # The same window written once in UTC and once at another offset: the run's times
    # read in each commitment's offset are other text for the same instants.
    house = House(5).block(10, 12, 3.0)
    rows = _judged(
        house,
        _commitment("A", "battery", 10, 12, 3.0),
        _commitment("B", "battery", 10, 12, 3.0, zone=timezone(timedelta(hours=hours))),
    )
    assert sorted(r.verdict for r in rows.values()) == sorted(
        [Verdict.VALIDATED, Verdict.NOT_DELIVERED]
    )
    assert _settled_kwh(rows)[1] <= 6.0 + SLACK_KWH


def test_a_short_window_inside_a_long_one_does_not_see_another_run() -> None:
    # 3 kW 10:00-14:00 (12 kWh). A 2 h window's context ends at 13:00, before the off
    # step the 4 h window sees: the run's end reads differently, the run is the same.
    house = House(5).block(10, 14, 3.0)
    rows = _judged(
        house, _commitment("L", "battery", 10, 14, 3.0), _commitment("A", "battery", 10, 12, 3.0)
    )
    assert _settled_kwh(rows)[1] <= 12.0 + SLACK_KWH
    assert [r.verdict for r in rows.values()].count(Verdict.VALIDATED) == 1


def test_nested_windows_and_a_chain_share_one_run() -> None:
    # Every way of cutting one 12 kWh run: a 4 h window (its own tolerance, so it is no
    # piece of the chain), a chain 10-12 + 12-14, a 3 h and a 1 h window from its start.
    house = House(5).block(10, 14, 3.0)
    rows = _judged(
        house,
        _commitment("L", "battery", 10, 14, 3.0, tolerance=0.6),
        _commitment("A", "battery", 10, 12, 3.0),
        _commitment("B", "battery", 12, 14, 3.0),
        _commitment("N", "battery", 10, 13, 3.0, tolerance=0.3),
        _commitment("S", "battery", 10, 11, 3.0, tolerance=0.05),
    )
    assert _settled_kwh(rows)[1] <= 12.0 + SLACK_KWH


def test_one_run_claimed_by_three_device_types_settles_once() -> None:
    house = House(5).block(10, 12, 3.0)
    rows = _judged(
        house,
        _commitment("A", "battery", 10, 12, 3.0),
        _commitment("B", "controllable_load", 10, 12, 3.0),
        _commitment("C", "battery", 10, 11.5, 3.0, zone=timezone(timedelta(hours=2))),
    )
    assert _settled_kwh(rows)[1] <= 6.0 + SLACK_KWH


def test_two_pv_exports_over_overlapping_hours_share_the_net_export() -> None:
    # Net export is read with a zero baseline: any two windows over the same hours read
    # the same kWh. 11:00-13:00 and 11:30-12:30 would settle the middle hour twice.
    house = _pv(House(10), 6.0)
    rows = _judged(
        house,
        _commitment("A", "pv", 11, 13, 2.9, operation="export"),
        _commitment("D", "pv", 11.5, 12.5, 3.0, operation="export"),
    )
    assert rows["A"].verdict is Verdict.VALIDATED
    assert rows["D"].verdict is not Verdict.VALIDATED
    assert _settled_kwh(rows)[0] <= _net_export_kwh(house, 11, 13) + SLACK_KWH


def test_a_battery_discharging_into_a_pv_export_is_not_counted_twice() -> None:
    # The battery's 3 kW leave through the meter with the PV's: net export is 9.7 kWh,
    # the battery's run 6 kWh, so the PV export can have 3.7 of its 6 kWh committed.
    house = _pv(House(10), 4.0).block(11, 13, -3.0)
    rows = _judged(
        house,
        _commitment("A", "pv", 11, 13, 3.0, operation="export"),
        _commitment("B", "battery", 11, 13, 3.0, operation="export"),
    )
    assert rows["B"].verdict is Verdict.VALIDATED  # the step's own run is its own
    assert rows["A"].verdict is Verdict.PARTIALLY_DELIVERED
    assert "also delivered B" in rows["A"].detail
    assert _settled_kwh(rows)[0] <= _net_export_kwh(house, 11, 13) + SLACK_KWH


def test_a_pv_export_beside_a_battery_export_still_gets_what_the_battery_left() -> None:
    # Honest: 6 kWp of PV and a 3 kW battery, each committed at what it gives.
    house = _pv(House(10), 6.0).block(11, 13, -3.0)
    rows = _judged(
        house,
        _commitment("A", "pv", 11, 13, 2.5, operation="export"),
        _commitment("B", "battery", 11, 13, 3.0, operation="export"),
    )
    assert {r.verdict for r in rows.values()} == {Verdict.VALIDATED}


def test_two_devices_starting_ten_minutes_apart_both_deliver() -> None:
    # Sharing is for one run: a battery from 10:00 and an EV from 10:10 are two, and
    # the meter shows both (6 + 13.6 kWh).
    house = House(5).block(10, 12, 3.0).block(10 + 10 / 60, 12, 7.4)
    rows = _judged(
        house,
        _commitment("A", "battery", 10, 12, 3.0),
        _commitment("B", "ev_charger", 10 + 10 / 60, 12, 7.4),
    )
    assert {r.verdict for r in rows.values()} == {Verdict.VALIDATED}
    assert _settled_kwh(rows)[1] == pytest.approx(6.0 + 7.4 * 110 / 60, abs=0.1)


def test_a_run_and_its_later_opposite_step_are_not_one_run() -> None:
    # Charge 10-12, discharge 12-14 (same battery, two runs of opposite direction).
    house = House(5).block(10, 12, 3.0).block(12, 14, -3.0)
    rows = _judged(
        house,
        _commitment("A", "battery", 10, 12, 3.0),
        _commitment("B", "battery", 12, 14, 3.0, operation="export"),
    )
    assert {r.verdict for r in rows.values()} == {Verdict.VALIDATED}
