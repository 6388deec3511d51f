"""DER pairing and classification (issue #19): a close hours later, a met end, small steps.

Hand-made meters as in ``test_der_accuracy.py`` (a flat household with seeded meter
noise at 1-minute resolution from 16 March 2026, UTC), each pinning one rule that the
benchmark's battery and curtailable-load scores rest on, and each seen failing with
its rule switched off.
"""

from __future__ import annotations

import numpy as np
from test_der_accuracy import DAY_S, MINUTES, SITE, House, _at, _library, _runs, _unasked_score

from gridmatch.der_validation.activations import OTHER
from gridmatch.der_validation.clearsky import clear_sky_ghi
from gridmatch.der_validation.detection import detect


def test_a_step_closed_sooner_by_its_own_size_is_no_close_hours_later() -> None:
    # A 3 kW heater comes on at 10:00 and stays on into the next day (34:00); a
    # battery discharges 3 kW beside it from 20:00 to 21:00. The discharge's step is
    # the heater's size ten hours on, but a step of its size closes it an hour later:
    # it is the discharge's on, not the heater's off.
    house = House(51).block(10.0, 34.0, 3.0).block(20.0, 21.0, -3.0)
    detection = detect(house.signal(), _library().spec.detection)
    discharge = next((p for p in detection.pulses if abs(p.start_s - _at(20.0)) <= 60), None)
    assert discharge is not None, "the discharge's on step closed the heater's pulse"
    assert discharge.matched and abs(discharge.end_s - _at(21.0)) <= 60
    heater = next(p for p in detection.pulses if abs(p.start_s - _at(10.0)) <= 60)
    assert heater.off is None or heater.end_s > _at(21.0)
    assert _runs(house)[20.0].device_type == "battery"


def test_a_load_pausing_after_a_long_run_keeps_both_runs() -> None:
    # A 3 kW load runs 10:00-14:00, pauses an hour and runs 15:00-16:00 (a review's
    # case; and 5 h, a 2 h pause, 3 h): the pause is no discharge of another device,
    # and each run keeps its own off step.
    for first, pause, second in ((4.0, 1.0, 1.0), (5.0, 2.0, 3.0)):
        on_h = 10.0
        house = House(60).block(on_h, on_h + first, 3.0)
        house.block(on_h + first + pause, on_h + first + pause + second, 3.0)
        detection = detect(house.signal(), _library().spec.detection)
        big = [p for p in detection.pulses if abs(p.delta_kw) > 1.0]
        assert [p.sign for p in big] == [1, 1], "the pause read as a run of its own"
        assert all(p.matched for p in big)
        assert abs(big[0].end_s - _at(on_h + first)) <= 60


def test_an_overnight_session_keeps_its_close_when_the_next_is_later() -> None:
    # An EV charges 7.4 kW from 18:00 to 05:00 and again from 18:00 the next day: the
    # off step's own pairing (13 hours) is not sooner than the session's (11 hours).
    house = House(52).block(18.0, 29.0, 7.4).block(42.0, 47.0, 7.4)
    detection = detect(house.signal(), _library().spec.detection)
    session = next(p for p in detection.pulses if abs(p.start_s - _at(18.0)) <= 60)
    assert session.matched and abs(session.end_s - _at(29.0)) <= 60


def test_a_curtailment_ending_as_a_kettle_starts_is_a_process_loads_run() -> None:
    # A 4 kW process is curtailed 10:00-11:00 and resumes the minute a 2 kW kettle
    # starts (it boils for 4 minutes): the larger step is the process's and the
    # kettle's, and what it leaves over closes within minutes.
    house = House(53).block(0.0, 48.0, 4.0).block(10.0, 11.0, -4.0)
    house.block(11.0, 11.0 + 4 / 60, 2.0)
    assert _unasked_score(house, "controllable_load", 10.0) >= 0.7
    assert _runs(house)[10.0].device_type == "controllable_load"


def test_a_small_step_on_a_pv_day_is_no_pv_curtailment_unasked() -> None:
    # A 5 kWp PV day; a 1.1 kW heater runs 11:00-12:00 while the meter exports: a step
    # that size, held an hour, is a household's appliance as often as a curtailment.
    house = House(54)
    mids_s = DAY_S + (np.arange(MINUTES) + 0.5) * 60.0
    house.p -= 5.0 * clear_sky_ghi(SITE, mids_s) / 1000.0
    house.block(11.0, 12.0, 1.1)
    assert _runs(house)[11.0].device_type == OTHER


def test_a_full_pv_curtailment_is_still_found_unasked() -> None:
    # The same PV day curtailed fully from 11:00 to 12:00: a step of the PV's output.
    house = House(55)
    mids_s = DAY_S + (np.arange(MINUTES) + 0.5) * 60.0
    pv_kw = 5.0 * clear_sky_ghi(SITE, mids_s) / 1000.0
    pv_kw[11 * 60 : 12 * 60] = 0.0
    house.p -= pv_kw
    assert _runs(house)[11.0].device_type == "pv"
