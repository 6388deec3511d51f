"""One meter, several commitments (issue #19): a run delivers once, and runs on.

Hand-made meters of ``test_der_verdict_rules.py`` judged the way ``gridmatch
validate-commitments`` judges a folder (``run.judge_all``: whole meters at a time), so
that the rules between commitments of one meter apply: commitments that claim the same
run share its energy (``der_validation/claims.py``), back-to-back commitments are
delivered by one run through them (``der_validation/chains.py``), and a run whose off
step lies beyond pairing's reach ends where its level fell, not at the window's end.
"""

from __future__ import annotations

import pytest
from test_der_attack_claims import _commitment, _judged, _settled_kwh
from test_der_verdict_rules import House

from gridmatch.results_io.der_validation import Verdict, VerdictRow


def _imported_kwh(rows: dict[str, VerdictRow]) -> float:
    return _settled_kwh(rows)[1]


@pytest.mark.parametrize("first", ["A", "B"])
def test_one_step_delivers_one_of_two_commitments_it_could_explain(first: str) -> None:
    # Two 3 kW battery commitments 10:00-12:00 on one meter, one 3 kW run: 6 kWh the
    # meter saw, not 12 kWh. Which commitment gets it does not depend on file order.
    house = House(5).block(10, 12, 3.0)
    a, b = _commitment("A", "battery", 10, 12, 3.0), _commitment("B", "battery", 10, 12, 3.0)
    rows = _judged(house, *((a, b) if first == "A" else (b, a)))
    assert rows["A"].verdict is Verdict.VALIDATED
    assert rows["B"].verdict is Verdict.NOT_DELIVERED
    assert "also delivered A" in rows["B"].detail
    assert _imported_kwh(rows) == pytest.approx(6.0, abs=0.05)


def test_stacked_devices_deliver_both_commitments() -> None:
    # Two batteries starting together: one 6 kW step holds both 3 kW commitments.
    house = House(5).block(10, 12, 6.0)
    rows = _judged(
        house, _commitment("A", "battery", 10, 12, 3.0), _commitment("B", "battery", 10, 12, 3.0)
    )
    assert {r.verdict for r in rows.values()} == {Verdict.VALIDATED}
    assert _imported_kwh(rows) == pytest.approx(12.0, abs=0.05)


def test_a_step_claimed_by_two_device_types_goes_to_the_one_it_fits_best() -> None:
    house = House(5).block(10, 12, 7.4)
    rows = _judged(
        house,
        _commitment("A", "battery", 10, 12, 7.4),
        _commitment("B", "ev_charger", 10, 12, 7.4),
    )
    assert [r.verdict for r in rows.values()].count(Verdict.VALIDATED) == 1
    winner = max(rows.values(), key=lambda r: r.matched_score)
    assert winner.verdict is Verdict.VALIDATED


@pytest.mark.parametrize(
    ("run_h", "expected"),
    [
        ((10, 14), [Verdict.VALIDATED, Verdict.VALIDATED]),
        ((10, 13), [Verdict.VALIDATED, Verdict.PARTIALLY_DELIVERED]),
        ((10, 12), [Verdict.VALIDATED, Verdict.NOT_DELIVERED]),
        ((12, 14), [Verdict.NOT_DELIVERED, Verdict.VALIDATED]),
    ],
)
def test_one_run_through_back_to_back_commitments_delivers_each_of_them(
    run_h: tuple[float, float], expected: list[Verdict]
) -> None:
    house = House(5).block(*run_h, 3.0)
    rows = _judged(
        house, _commitment("A", "battery", 10, 12, 3.0), _commitment("B", "battery", 12, 14, 3.0)
    )
    assert [rows["A"].verdict, rows["B"].verdict] == expected
    run_kwh = 3.0 * (min(run_h[1], 14) - max(run_h[0], 10))
    settled = [r for r in rows.values() if r.verdict is Verdict.VALIDATED]
    assert _imported_kwh(rows) <= run_kwh + 0.05
    assert _imported_kwh(rows) == pytest.approx(sum(r.committed_kwh for r in settled), abs=0.05)


@pytest.mark.parametrize("device", ["battery", "ev_charger"])
def test_a_run_longer_than_pairing_reaches_ends_where_its_level_fell(device: str) -> None:
    # +kW 06:00-18:30 (12.5 h: the off step lies beyond pairing's 12 h), committed to
    # 02:30 the next day: 61 % delivered, not the whole window.
    kw = 2.0 if device == "battery" else 7.4
    house = House(3).block(6.0, 18.5, kw)
    row = _judged(house, _commitment("A", device, 6.0, 26.5, kw))["A"]
    assert row.verdict is Verdict.PARTIALLY_DELIVERED
    assert row.delivered_kwh == pytest.approx(kw * 12.5, rel=0.02)
    assert row.event_end.startswith("2026-03-16T18:3")
