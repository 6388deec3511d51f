"""An aggregator's operations against the direction rule and the pre-event baseline.

An operation is a change of ``p_kw`` from the baseline before the window. The attacker
sells a run, then sells its end: the off step of a delivered charge reads as a
discharge, the stop of a delivered EV session as a curtailment, measured from a
baseline that held the first commitment's own delivery (``der_validation/claims.py``).
"""

from __future__ import annotations

import pytest
from test_der_attack_claims import _commitment, _judged, _settled_kwh
from test_der_verdict_rules import House

from gridmatch.results_io.der_validation import Verdict


@pytest.mark.parametrize("operation", ["export", "shift"])
def test_the_end_of_a_delivered_charge_is_no_discharge(operation: str) -> None:
    # The battery charged 3 kW 10:00-14:00 (sold) and then stopped: the meter never
    # exported, yet from the charging baseline the stop is a 3 kW drop.
    house = House(5).block(10, 14, 3.0)
    rows = _judged(
        house,
        _commitment("A", "battery", 10, 14, 3.0),
        _commitment("B", "battery", 14, 16, 3.0, operation=operation),
    )
    assert rows["A"].verdict is Verdict.VALIDATED
    assert rows["B"].verdict is Verdict.NOT_DELIVERED
    # An export: the step fit sees the charge's off step close the run it began. A
    # shift (a load's operation too): claims.py takes the delivered run's power out.
    why = "ends a run begun before it" if operation == "export" else "ends the run that delivered A"
    assert why in rows["B"].detail
    assert _settled_kwh(rows) == pytest.approx((0.0, 12.0), abs=0.05)


def test_the_stop_of_a_delivered_ev_session_is_no_curtailment() -> None:
    house = House(2).block(18, 20, 7.4)
    rows = _judged(
        house,
        _commitment("A", "ev_charger", 18, 20, 7.4),
        _commitment("B", "ev_charger", 20, 21, 7.4, operation="curtail"),
        _commitment("C", "controllable_load", 20, 21, 7.4, operation="curtail"),
    )
    assert rows["A"].verdict is Verdict.VALIDATED
    assert Verdict.VALIDATED not in (rows["B"].verdict, rows["C"].verdict)
    assert _settled_kwh(rows)[0] <= 0.05


def test_a_battery_reversing_from_charge_to_discharge_delivers_both() -> None:
    # Honest: +3 kW 10:00-14:00, then -3 kW (a -6 kW step) 14:00-16:00. Of the
    # discharge's 6 kW drop, 3 kW were the charge ending: 3 kW are left, as committed.
    house = House(5).block(10, 14, 3.0).block(14, 16, -3.0)
    rows = _judged(
        house,
        _commitment("A", "battery", 10, 14, 3.0),
        _commitment("B", "battery", 14, 16, 3.0, operation="export"),
    )
    assert {r.verdict for r in rows.values()} == {Verdict.VALIDATED}
    assert _settled_kwh(rows) == pytest.approx((6.0, 12.0), abs=0.1)


def test_the_stop_of_a_run_nobody_sold_is_a_curtailment() -> None:
    # A load that ran unsold and is curtailed on request keeps its curtailment: only a
    # delivered commitment's power is taken out of the baseline.
    house = House(2).block(18, 20, 7.4)
    rows = _judged(house, _commitment("B", "ev_charger", 20, 21, 7.4, operation="curtail"))
    assert rows["B"].verdict is Verdict.VALIDATED


def test_curtailing_a_generator_and_a_load_settle_in_opposite_columns() -> None:
    # A load's curtailment lowers import (exported_kwh), a charge raises it (imported).
    house = House(9).block(0, 48, 3.0).block(14, 15, -3.0).block(20, 22, 2.0)
    rows = _judged(
        house,
        _commitment("A", "controllable_load", 14, 15, 3.0, operation="curtail"),
        _commitment("B", "battery", 20, 22, 2.0),
    )
    assert {r.verdict for r in rows.values()} == {Verdict.VALIDATED}
    exported_kwh, imported_kwh = _settled_kwh(rows)
    assert exported_kwh == pytest.approx(3.0, abs=0.05)
    assert imported_kwh == pytest.approx(4.0, abs=0.05)


@pytest.mark.parametrize("charge_h", [0.75, 4.0, 11.0])
def test_the_end_of_an_unsold_charge_is_no_battery_export(charge_h: float) -> None:
    # The battery charged 3 kW until 14:00, nobody bought it, and stopped: the meter
    # never exported and nothing discharged, yet "export 3 kW 14:00-02:00" read as a
    # -3 kW step held 12 h (36 kWh settled as exported). The charge's on step may lie
    # hours before the window: the step fit looks back as far as a run may last.
    house = House(5).block(14 - charge_h, 14, 3.0)
    rows = _judged(house, _commitment("B", "battery", 14, 26, 3.0, operation="export"))
    assert rows["B"].verdict is Verdict.NOT_DELIVERED, rows["B"].detail
    assert "ends a run begun before it" in rows["B"].detail
    assert _settled_kwh(rows) == pytest.approx((0.0, 0.0), abs=0.01)


def test_a_discharge_after_a_charge_ended_is_a_discharge() -> None:
    # Honest: the charge ends at 12:00, the battery discharges 3 kW from 14:00: that
    # step closes nothing, and is delivered.
    house = House(5).block(9, 12, 3.0).block(14, 16, -3.0)
    rows = _judged(house, _commitment("B", "battery", 14, 16, 3.0, operation="export"))
    assert rows["B"].verdict is Verdict.VALIDATED, rows["B"].detail
