"""An aggregator's windows laid over gaps in the meter's data (``verdicts.judge``, rule 2).

A run is measured by its steps and held between them; the meter's data may miss up to
``1 - min_coverage`` of a window and still be judged. The attacker lays a window so
that its missing samples hide where the run stopped: only the samples the meter sent
may count as delivered.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from test_der_attack_claims import LIBRARY, SLACK_KWH, _commitment, _settled_kwh
from test_der_verdict_rules import House, _minute

from gridmatch.der_validation.run import judge_all
from gridmatch.results_io.der_validation import Verdict, VerdictRow
from gridmatch.scenario_io.der_input import Commitment, DerInputs, MeterSeries


def _without(series: MeterSeries, from_h: float, to_h: float) -> MeterSeries:
    p_kw = series.p_kw.copy()
    p_kw[_minute(from_h) : _minute(to_h)] = np.nan
    missing = int(np.count_nonzero(np.isnan(p_kw))) - int(np.count_nonzero(np.isnan(series.p_kw)))
    return dataclasses.replace(series, p_kw=p_kw, rows=series.rows - missing)


def _judged(series: MeterSeries, *commitments: Commitment) -> dict[str, VerdictRow]:
    inputs = DerInputs(Path("."), {"M1": series}, commitments, {}, LIBRARY, ())
    return {j.row.commitment_id: j.row for j in judge_all(inputs)}


@pytest.mark.parametrize(
    ("blocks_h", "gap_h"),
    [
        # The run stopped at 11:48; the meter was silent 11:48-12:00 (90 % coverage).
        ([(10.0, 11.8)], (11.8, 12.0)),
        # The run paused 10:30-10:42, exactly while the meter was silent.
        ([(10.0, 10.5), (10.7, 12.0)], (10.5, 10.7)),
    ],
)
def test_a_gap_hiding_where_the_run_stopped_is_not_delivered(
    blocks_h: list[tuple[float, float]], gap_h: tuple[float, float]
) -> None:
    house = House(5)
    for start_h, end_h in blocks_h:
        house.block(start_h, end_h, 3.0)
    rows = _judged(_without(house.series(), *gap_h), _commitment("A", "battery", 10, 12, 3.0))
    proved_kwh = 3.0 * sum(end_h - start_h for start_h, end_h in blocks_h)
    assert rows["A"].delivered_kwh <= proved_kwh + SLACK_KWH
    assert "the meter sent 90%" in rows["A"].detail
    assert _settled_kwh(rows)[1] <= proved_kwh + SLACK_KWH


def test_a_window_past_the_end_of_the_data_counts_only_what_was_sent() -> None:
    # The meter's data end at 11:48 inside a 10:00-12:00 window (90 % of it sent).
    series = House(5).block(10, 12, 3.0).series()
    end = _minute(11.8)
    series = dataclasses.replace(
        series, p_kw=series.p_kw[:end].copy(), q_kvar=series.q_kvar[:end].copy(), rows=end
    )
    rows = _judged(series, _commitment("A", "battery", 10, 12, 3.0))
    assert rows["A"].verdict is Verdict.VALIDATED  # 90 % is within the tolerance
    assert _settled_kwh(rows)[1] <= 3.0 * 1.8 + SLACK_KWH


def test_a_window_the_meter_sent_in_full_keeps_its_energy() -> None:
    # A gap elsewhere on the day changes nothing inside the window.
    series = _without(House(5).block(10, 12, 3.0).series(), 15, 16)
    rows = _judged(series, _commitment("A", "battery", 10, 12, 3.0))
    assert rows["A"].delivered_kwh == pytest.approx(6.0, abs=0.05)
    assert "the meter sent" not in rows["A"].detail
