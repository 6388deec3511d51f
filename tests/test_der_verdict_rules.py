"""DER verdict rules (issue #19): what a committed fit counts, and what explains a run.

Hand-made meters like those of ``test_der_accuracy.py``: a flat household with seeded
meter noise at 1-minute resolution on 16 March 2026 (UTC), plus the devices a case
names, judged one commitment at a time (``verdicts.judge``). Each test pins one rule of
the verdicts that the benchmark's accuracy rests on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from gridmatch.der_validation.clearsky import clear_sky_ghi
from gridmatch.der_validation.run import DEFAULT_MODELS
from gridmatch.der_validation.verdicts import judge
from gridmatch.results_io.der_validation import VerdictRow
from gridmatch.scenario_io.der_input import Commitment, MeterSeries
from gridmatch.scenario_io.der_models import SiteSpec, load_event_models

DAY = datetime(2026, 3, 16, tzinfo=UTC)
SITE = SiteSpec(latitude_deg=51.31, longitude_deg=9.48, altitude_m=170.0)
MINUTES = 2 * 24 * 60


def _minute(hour: float) -> int:
    return round(hour * 60)


class House:
    """Base load plus devices, minute by minute over two days."""

    def __init__(self, seed: int, base_kw: float = 0.5) -> None:
        rng = np.random.default_rng(seed)
        self.p = base_kw + rng.normal(0.0, 0.02, MINUTES)
        self.q = 0.05 + rng.normal(0.0, 0.01, MINUTES)
        mids_s = DAY.timestamp() + (np.arange(MINUTES) + 0.5) * 60
        self.sky = clear_sky_ghi(SITE, mids_s) / 1000.0  # kW per kWp

    def block(self, start_h: float, end_h: float, kw: float) -> House:
        self.p[_minute(start_h) : _minute(end_h)] += kw
        return self

    def series(self) -> MeterSeries:
        return MeterSeries(
            "M1", int(DAY.timestamp()), 60, self.p.copy(), self.q.copy(), MINUTES, 0, 0
        )


def _commitment(
    device: str, operation: str, start: datetime, end: datetime, kw: float
) -> Commitment:
    """A commitment ``C1`` on meter ``M1`` with the model's own tolerance."""
    return Commitment(
        row=1,
        commitment_id="C1",
        meter_id="M1",
        participant_id="",
        device_type=device,
        operation=operation,
        start=start,
        end=end,
        kw=kw,
        tolerance=None,
    )


def _verdict(
    house: House, device: str, operation: str, start_h: float, end_h: float, kw: float
) -> VerdictRow:
    """Judge one commitment (times in hours of the first day) against the house's meter."""
    start = DAY + timedelta(minutes=_minute(start_h))
    commitment = _commitment(device, operation, start, DAY + timedelta(minutes=_minute(end_h)), kw)
    return judge(commitment, house.series(), load_event_models(DEFAULT_MODELS, None), SITE).row


def test_clouds_after_a_pv_curtailment_are_not_its_evidence() -> None:
    # 5 kWp curtailed to nothing 08:30-09:15; at 09:15 the output comes back (a larger
    # step than the start's: the sun is higher). Then clouds: shadows of 40 % every
    # 4 minutes, and at 09:55 one the size of the curtailment's step, whose end at
    # 10:00 detection pairs with the start. Inside the committed window all is flat.
    house = House(12)
    pv_kw = 5.0 * house.sky
    house.p -= pv_kw
    start, end = _minute(8.5), _minute(9.25)
    house.p[start:end] += pv_kw[start:end]
    for at in range(end + 3, end + 40, 4):
        house.p[at : at + 2] += 0.4 * pv_kw[at : at + 2]
    house.p[end + 40 : end + 45] += pv_kw[start]
    row = _verdict(house, "pv", "curtail", 8.5, 9.25, 1.5)
    assert row.verdict.value == "validated", row.detail
    assert row.matched_model == "pv" and row.committed_score >= 0.9


def test_a_battery_run_inside_the_window_is_not_the_commitment_moved() -> None:
    # Committed to charge 2.5 kW 11:00-12:30; nothing steps at 11:00, and the battery
    # charges 2.5 kW from 11:40 to 13:10 on its own: most of that run lies inside the
    # committed window, so it is not the commitment delivered at another time.
    house = House(21).block(11.0 + 40 / 60, 13.0 + 10 / 60, 2.5)
    row = _verdict(house, "battery", "import", 11.0, 12.5, 2.5)
    assert row.verdict.value == "not_delivered", row.detail


def test_a_battery_run_outside_the_window_is_still_wrong_interval() -> None:
    # The same run three hours after the committed start, clear of the window: moved.
    house = House(21).block(14.0, 15.5, 2.5)
    row = _verdict(house, "battery", "import", 11.0, 12.5, 2.5)
    assert row.verdict.value == "wrong_interval", row.detail


def test_two_blips_at_the_window_ends_are_not_a_run() -> None:
    # A 3-min 3 kW appliance at 20:00 and another at 20:57, nothing between: the first
    # blip's on step and the second's off step were taken for a charge held all hour
    # (validated, 3 kWh settled for 0.3 metered).
    house = House(5).block(20.0, 20.05, 3.0).block(20.95, 21.0, 3.0)
    row = _verdict(house, "battery", "import", 20.0, 21.0, 3.0)
    assert row.verdict.value != "validated", row.detail
    assert row.delivered_kwh < 1.0


def test_a_load_cycling_through_the_window_is_not_a_run() -> None:
    # 3 kW on for 3 min, off for 3, all day: nothing changes at the committed start.
    house = House(6)
    for minute in range(0, MINUTES, 6):
        house.p[minute : minute + 3] += 3.0
    row = _verdict(house, "battery", "import", 12.0, 13.0, 3.0)
    assert row.verdict.value != "validated", row.detail


def test_a_run_whose_early_close_was_another_devices_still_holds() -> None:
    # The charge starts at 20:00 and ends at 21:00; a 3 kW load running since 18:00
    # switches off at 20:20, a step the size of the charge's: the charge held all hour.
    house = House(7).block(18.0, 20.0 + 20 / 60, 3.0).block(20.0, 21.0, 3.0)
    row = _verdict(house, "battery", "import", 20.0, 21.0, 3.0)
    assert row.verdict.value == "validated", row.detail


def test_the_baseline_of_a_window_off_the_meters_grid_leaves_out_the_straddling_sample() -> None:
    # 3 kW from 10:07 on 15-minute data: the 10:00-10:15 sample holds 8 minutes of it,
    # so it is not the level before the window.
    house = House(5).block(10 + 7 / 60, 12 + 7 / 60, 3.0)
    p_kw, q_kvar = house.p.reshape(-1, 15).mean(axis=1), house.q.reshape(-1, 15).mean(axis=1)
    series = MeterSeries("M1", int(DAY.timestamp()), 900, p_kw, q_kvar, len(p_kw), 0, 0)
    window = (DAY + timedelta(minutes=607), DAY + timedelta(minutes=727))
    commitment = _commitment("battery", "import", *window, 3.0)
    row = judge(commitment, series, load_event_models(DEFAULT_MODELS, None), SITE).row
    assert abs(row.baseline_kw - 0.5) < 0.05
    assert abs(row.baseline_delivered_kwh - 6.0) < 0.2


def test_a_day_long_run_of_one_second_data_reads_its_power() -> None:
    # 2 kW held 24 h on 1-s data: the window is averaged into blocks, and the block the
    # device switched in mixes both levels; the step is read on the blocks beside it.
    rng = np.random.default_rng(1)
    n = 3 * 86_400
    p_kw, q_kvar = 0.5 + rng.normal(0.0, 0.02, n), 0.05 + rng.normal(0.0, 0.01, n)
    start = 86_400 + 3_600 + 17
    p_kw[start : start + 86_400] += 2.0
    series = MeterSeries("M1", int(DAY.timestamp()), 1, p_kw, q_kvar, n, 0, 0)
    window = (DAY + timedelta(seconds=start), DAY + timedelta(seconds=start + 86_400))
    commitment = _commitment("battery", "import", *window, 2.0)
    row = judge(commitment, series, load_event_models(DEFAULT_MODELS, None), SITE).row
    assert abs(row.delivered_kwh / 48.0 - 1.0) < 0.005, row.detail


def test_a_short_run_of_more_power_does_not_deliver_a_long_commitment() -> None:
    # Committed to charge 0.3 kW from 11:00 to 23:00 the next day (10.8 kWh over 36 h);
    # the battery charges 3 kW 11:00-15:00 (12 kWh): the energy, in a ninth of the time.
    house = House(31).block(11.0, 15.0, 3.0)
    row = _verdict(house, "battery", "import", 11.0, 47.0, 0.3)
    assert row.verdict.value == "not_delivered", row.detail
    assert row.delivered_kwh <= 0.3 * 4.0 + 1e-9


def test_twice_the_power_for_half_the_window_is_half_delivered() -> None:
    # 3 kW committed 20:00-22:00; the battery charges 6 kW 20:00-21:00 and stops.
    house = House(32).block(20.0, 21.0, 6.0)
    row = _verdict(house, "battery", "import", 20.0, 22.0, 3.0)
    assert row.verdict.value == "partially_delivered", row.detail
    assert abs(row.delivered_kwh - 3.0) < 0.2
