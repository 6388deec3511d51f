"""An aggregator's commitments against back-to-back chains (``der_validation/chains.py``).

A chain's span is judged as one commitment and its pieces take the run's energy inside
their windows. The attacker cuts commitments so that a piece stands where the meter
proves nothing (a gap in its data), or stacks chains over one run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from test_der_attack_claims import LIBRARY, SLACK_KWH, _commitment, _settled_kwh
from test_der_verdict_rules import House, _minute

from gridmatch.der_validation.run import judge_all
from gridmatch.results_io.der_validation import Verdict, VerdictRow
from gridmatch.scenario_io.der_input import Commitment, DerInputs


def _judged_with_gap(
    house: House, gap_h: tuple[float, float], *commitments: Commitment
) -> dict[str, VerdictRow]:
    series = house.series()
    p_kw = series.p_kw.copy()
    p_kw[_minute(gap_h[0]) : _minute(gap_h[1])] = np.nan
    missing = _minute(gap_h[1]) - _minute(gap_h[0])
    series = dataclasses.replace(series, p_kw=p_kw, rows=series.rows - missing)
    inputs = DerInputs(Path("."), {"M1": series}, commitments, {}, LIBRARY, ())
    return {j.row.commitment_id: j.row for j in judge_all(inputs)}


def _hourly_chain(first_h: int, last_h: int) -> list[Commitment]:
    return [_commitment(f"P{h:02}", "battery", h, h + 1, 3.0) for h in range(first_h, last_h)]


def test_a_piece_the_meter_did_not_see_is_not_validated_by_its_chain() -> None:
    # 3 kW 08:00-20:00 in twelve 1 h pieces; the meter sent nothing 13:00-14:00. The
    # span has 92 % of its samples and its run is read across the gap; the piece
    # 13:00-14:00 has none of its own: the meter proves nothing of that hour.
    rows = _judged_with_gap(House(5).block(8, 20, 3.0), (13, 14), *_hourly_chain(8, 20))
    assert rows["P13"].verdict is Verdict.INSUFFICIENT_DATA
    others = [r.verdict for k, r in rows.items() if k != "P13"]
    assert others == [Verdict.VALIDATED] * 11
    assert _settled_kwh(rows)[1] <= 33.0 + SLACK_KWH


def test_a_run_that_ended_in_a_gap_does_not_validate_the_piece_in_the_gap() -> None:
    # The run stopped at 13:00, the meter was silent 13:00-14:00 and shows no run
    # after: across the gap the run reads as held to 14:00.
    rows = _judged_with_gap(House(5).block(8, 13, 3.0), (13, 14), *_hourly_chain(8, 20))
    assert rows["P13"].verdict is Verdict.INSUFFICIENT_DATA
    assert _settled_kwh(rows)[1] <= 15.0 + SLACK_KWH


def test_two_chains_over_one_run_settle_it_once() -> None:
    # The same 10-14 run cut 10-12 + 12-14 twice (the second with its own tolerance,
    # so the two are chains of their own), and once more 10-11 + 11-14.
    house = House(5).block(10, 14, 3.0)
    rows = _judged_with_gap(
        house,
        (30, 31),  # a gap the next day, away from every window
        _commitment("A1", "battery", 10, 12, 3.0),
        _commitment("A2", "battery", 12, 14, 3.0),
        _commitment("B1", "battery", 10, 12, 3.0, tolerance=0.1),
        _commitment("B2", "battery", 12, 14, 3.0, tolerance=0.1),
        _commitment("C1", "battery", 10, 11, 3.0, tolerance=0.2),
        _commitment("C2", "battery", 11, 14, 3.0, tolerance=0.2),
    )
    assert _settled_kwh(rows)[1] <= 12.0 + SLACK_KWH
    assert _settled_kwh(rows)[1] >= 12.0 - SLACK_KWH  # the run is delivered, once


def test_many_small_pieces_settle_no_more_than_the_run() -> None:
    # Fifteen-minute pieces 09:00-15:00 over a run 10:00-14:00: the pieces outside the
    # run deliver nothing, those inside it the run's 12 kWh.
    house = House(5).block(10, 14, 3.0)
    pieces = [
        _commitment(f"Q{k:02}", "battery", 9 + k / 4, 9 + (k + 1) / 4, 3.0) for k in range(24)
    ]
    rows = _judged_with_gap(house, (30, 31), *pieces)
    assert _settled_kwh(rows)[1] <= 12.0 + SLACK_KWH
    early = [rows[f"Q{k:02}"].verdict for k in range(4)]
    assert Verdict.VALIDATED not in early
