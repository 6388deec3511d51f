"""An aggregator's commitments against ``deliveries.csv`` (``der_validation/settlement.py``).

What settlement is given must never exceed what was validated, nor the committed
energy, nor what the meter shows; it counts whole Wh, rounded down. End to end through
``gridmatch validate-commitments --slot-start``, and on ``validated_deliveries`` alone
with verdict rows an attacker could get (any window, slot length and energy).
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_der_attack_claims import KINDS, SLACK_KWH, _commitment, _judged, _settled_kwh
from test_der_verdict_rules import DAY, MINUTES, SITE, House, _minute
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.der_validation.settlement import validated_deliveries
from gridmatch.results_io.der_validation import Verdict, VerdictRow
from gridmatch.settlement.meters import read_meter_csv

runner = CliRunner()


def _folder(tmp_path: Path, house: House, commitment_lines: list[str]) -> Path:
    folder = tmp_path / "case"
    folder.mkdir()
    lines = ["meter_id,timestamp,p_kw,q_kvar"]
    for i in range(MINUTES):
        at = (DAY + timedelta(minutes=i)).isoformat()
        lines.append(f"M1,{at},{house.p[i]:.3f},{house.q[i]:.3f}")
    (folder / "meter_data.csv").write_text("\n".join(lines) + "\n")
    header = "commitment_id,meter_id,device_type,operation,start,end,kw,tolerance,participant_id"
    (folder / "commitments.csv").write_text("\n".join([header, *commitment_lines]) + "\n")
    (folder / "sites.csv").write_text(
        f"meter_id,latitude_deg,longitude_deg\nM1,{SITE.latitude_deg},{SITE.longitude_deg}\n"
    )
    return folder


def _at(hour: float, offset_h: float = 0.0) -> str:
    moment = DAY + timedelta(minutes=_minute(hour))
    return moment.astimezone(timezone(timedelta(hours=offset_h))).isoformat()


def test_one_run_written_every_way_settles_once_end_to_end(tmp_path: Path) -> None:
    # One 3 kW run 10:00-14:00 (12 kWh), claimed by two participants, in three UTC
    # offsets, as nested windows, a chain and a controllable load.
    house = House(5).block(10, 14, 3.0)
    lines = [
        f"A,M1,battery,import,{_at(10)},{_at(14)},3,,P1",
        f"B,M1,battery,import,{_at(10, 5.5)},{_at(14, 5.5)},3,,P2",
        f"C,M1,battery,import,{_at(10, -3)},{_at(12, -3)},3,0.1,P1",
        f"D1,M1,battery,import,{_at(10)},{_at(12)},3,0.2,P2",
        f"D2,M1,battery,import,{_at(12)},{_at(14)},3,0.2,P2",
        f"E,M1,controllable_load,import,{_at(10, 1)},{_at(13, 1)},3,,P1",
    ]
    folder = _folder(tmp_path, house, lines)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["validate-commitments", str(folder), "-o", str(out), "--slot-start", _at(0)],
    )
    assert result.exit_code == 0, result.output
    readings = read_meter_csv(out / "deliveries.csv")
    assert {r.meter_id for r in readings} <= {"P1", "P2"}
    imported_kwh = sum(r.imported_wh for r in readings) / 1000.0
    assert sum(r.exported_wh for r in readings) == 0
    assert 12.0 - SLACK_KWH <= imported_kwh <= 12.0 + SLACK_KWH


def test_a_huge_tolerance_settles_no_more_than_the_meter_shows() -> None:
    # A 10 kW commitment with a tolerance of 0.95 over a 1 kW run: validated by the
    # rule (5 % delivered is within 95 %), settled for the 2 kWh the meter shows.
    house = House(5).block(10, 12, 1.0)
    rows = _judged(house, _commitment("A", "battery", 10, 12, 10.0, tolerance=0.95))
    assert rows["A"].verdict is Verdict.VALIDATED
    assert _settled_kwh(rows)[1] <= 2.0 + SLACK_KWH


def test_a_tiny_commitment_settles_its_committed_energy_not_the_run() -> None:
    house = House(5).block(10, 12, 3.0)
    rows = _judged(house, _commitment("A", "battery", 10, 12, 0.001))
    assert rows["A"].verdict is Verdict.VALIDATED
    assert _settled_kwh(rows)[1] <= 0.002


def _row(start: datetime, end: datetime, committed_kwh: float, delivered_kwh: float) -> VerdictRow:
    hours = (end - start).total_seconds() / 3600.0
    return VerdictRow(
        commitment_id="C",
        meter_id="M1",
        participant_id="P1",
        device_type="battery",
        operation="import",
        start=start.isoformat(),
        end=end.isoformat(),
        committed_kw=committed_kwh / hours,
        committed_kwh=committed_kwh,
        tolerance=0.15,
        verdict=Verdict.VALIDATED,
        delivered_kwh=delivered_kwh,
        delivered_fraction=delivered_kwh / committed_kwh,
        baseline_kw=math.nan,
        baseline_delivered_kwh=math.nan,
        matched_model="battery",
        matched_score=1.0,
        committed_score=1.0,
        event_start="",
        event_end="",
        event_delta_kw=math.nan,
        event_delta_kvar=math.nan,
        ramp_kw_per_min=math.nan,
        period_s=math.nan,
        daylight_correlation=math.nan,
        coverage=1.0,
        resolution_s=60,
        detail="",
    )


WINDOW = st.tuples(
    st.integers(0, 3 * 86_400), st.integers(60, 7 * 86_400), st.floats(0.0005, 500.0)
)


@settings(max_examples=60, deadline=None)
@given(
    windows=st.lists(WINDOW, min_size=1, max_size=6),
    delivered_share=st.floats(0.85, 3.0),
    slot_minutes=st.sampled_from([1, 5, 7, 15, 60, 1440]),
    offset_h=st.sampled_from([0, 1, -5, 5.75]),
)
def test_deliveries_never_exceed_what_was_validated_nor_committed(
    windows: list[tuple[int, int, float]],
    delivered_share: float,
    slot_minutes: int,
    offset_h: float,
) -> None:
    zone = timezone(timedelta(hours=offset_h))
    origin = datetime(2026, 3, 29, tzinfo=UTC)  # a DST night in Europe, for good measure
    rows = []
    for k, (start_s, length_s, committed_kwh) in enumerate(windows):
        start = (origin + timedelta(seconds=start_s)).astimezone(zone)
        row = _row(
            start,
            start + timedelta(seconds=length_s),
            committed_kwh,
            committed_kwh * delivered_share,
        )
        rows.append(dataclasses.replace(row, commitment_id=f"C{k}"))
    deliveries = validated_deliveries(rows, origin, slot_minutes, KINDS)
    settled_wh = sum(exported + imported for _, _, exported, imported in deliveries)
    cap_wh = sum(min(r.delivered_kwh, r.committed_kwh) for r in rows) * 1000.0
    assert settled_wh <= cap_wh + 1e-6
    # Whole Wh rounded down per slot: at most one Wh lost per slot row.
    assert settled_wh >= cap_wh - len(deliveries) - 1e-6
    assert all(
        slot >= 0 and exported == 0 and imported >= 0 for _, slot, exported, imported in deliveries
    )
    # No slot gets more than every commitment together sold for it.
    sold_kw = sum(r.committed_kw for r in rows)
    assert all(imported <= sold_kw * slot_minutes / 60 * 1000 + 1e-6 for *_, imported in deliveries)


def test_energy_goes_to_the_slots_the_run_was_in_not_the_whole_window() -> None:
    # 1.2 kW committed 10:00-20:00, validated by a 3 kW run 10:00-18:45 (within the
    # battery's 15 % tolerance of the window). Spread over the window, slot 19 got
    # 1.2 kWh with nothing on the meter; per slot, no more was sold than 1.2 kWh.
    house = House(5).block(10, 18.75, 3.0)
    rows = _judged(house, _commitment("A", "battery", 10, 20, 1.2))
    assert rows["A"].verdict is Verdict.VALIDATED
    deliveries = validated_deliveries(rows.values(), DAY, 60, KINDS)
    by_slot = {slot: imported for _, slot, _, imported in deliveries}
    assert set(by_slot) == set(range(10, 19))
    assert all(wh <= 1200 for wh in by_slot.values()) and by_slot[18] <= 900


def test_the_energy_of_a_short_strong_run_does_not_validate_a_long_window() -> None:
    # The same 12 kWh as a 3 kW run 10:00-14:00 held 1.2 kW for 4 of the 10 hours sold:
    # partially delivered (it validated by energy alone), and so settled nowhere.
    house = House(5).block(10, 14, 3.0)
    rows = _judged(house, _commitment("A", "battery", 10, 20, 1.2))
    assert rows["A"].verdict is Verdict.PARTIALLY_DELIVERED
    assert abs(rows["A"].delivered_kwh - 4.8) < 0.1
    assert validated_deliveries(rows.values(), DAY, 60, KINDS) == []


def test_a_chain_piece_gets_its_slots_of_the_run() -> None:
    house = House(5).block(10, 14, 3.0)
    rows = _judged(
        house, _commitment("A", "battery", 10, 12, 3.0), _commitment("B", "battery", 12, 14, 3.0)
    )
    deliveries = validated_deliveries(rows.values(), DAY, 60, KINDS)
    assert [slot for _, slot, _, _ in deliveries] == [10, 11, 12, 13]
    assert all(abs(imported - 3000) <= 20 for *_, imported in deliveries)
