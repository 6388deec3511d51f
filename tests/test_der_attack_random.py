"""Random commitments files against one meter: settlement never exceeds the meter.

The meter (``test_der_verdict_rules.House``) shows a 3 kW run 10:00-14:00 and a
7.4 kW EV session 18:00-20:00 over a flat household, nothing else. Whatever the
aggregator writes (device types, windows cut anywhere on the quarter hour, nested,
duplicated, chained, in any UTC offset, any power and tolerance), the imported energy
settled, in all and in each hourly slot, stays within what those two runs put on the
meter.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_der_attack_claims import KINDS, _commitment, _judged
from test_der_verdict_rules import DAY, House

from gridmatch.der_validation.settlement import validated_deliveries

HOUSE = House(5).block(10, 14, 3.0).block(18, 20, 7.4)
# What the runs put on the meter per hour of the first day (kWh), less nothing else.
RUN_KWH_BY_HOUR = {h: 3.0 for h in range(10, 14)} | {h: 7.4 for h in range(18, 20)}
SLACK_WH = 30  # meter noise read into a step over a few hours

COMMITMENT = st.tuples(
    st.sampled_from(["battery", "controllable_load", "ev_charger"]),
    st.integers(9 * 4, 21 * 4),  # start, quarter hours
    st.integers(1, 6 * 4),  # length, quarter hours
    st.sampled_from([0.5, 1.0, 3.0, 7.4, 10.0]),
    st.sampled_from([None, 0.3, 0.6, 0.95]),
    st.sampled_from([0.0, 1.0, -4.0, 5.5]),
)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(COMMITMENT, min_size=2, max_size=6))
def test_random_commitments_never_settle_more_than_the_meter_shows(
    specs: list[tuple[str, int, int, float, float | None, float]],
) -> None:
    commitments = [
        _commitment(
            f"C{k}",
            device,
            start_q / 4,
            (start_q + length_q) / 4,
            kw,
            tolerance=tolerance,
            zone=timezone(timedelta(hours=offset_h)),
        )
        for k, (device, start_q, length_q, kw, tolerance, offset_h) in enumerate(specs)
    ]
    rows = _judged(HOUSE, *commitments)
    deliveries = validated_deliveries(rows.values(), DAY, 60, KINDS)
    by_hour: dict[int, int] = {}
    for _, slot, exported_wh, imported_wh in deliveries:
        assert exported_wh == 0
        by_hour[slot] = by_hour.get(slot, 0) + imported_wh
    for hour, wh in by_hour.items():
        assert wh <= RUN_KWH_BY_HOUR.get(hour, 0.0) * 1000 + SLACK_WH, (hour, wh, rows)
    assert sum(by_hour.values()) <= float(np.sum(list(RUN_KWH_BY_HOUR.values()))) * 1000 + SLACK_WH


DISCHARGE = House(6).block(10, 12, -3.0)
LOWERING = st.tuples(
    st.sampled_from(
        [
            ("battery", "export"),
            ("battery", "shift"),
            ("controllable_load", "curtail"),
            ("controllable_load", "shift"),
            ("ev_charger", "curtail"),
        ]
    ),
    st.integers(9 * 4, 13 * 4),
    st.integers(1, 4 * 4),
    st.sampled_from([0.5, 1.0, 3.0, 6.0]),
    st.sampled_from([None, 0.5, 0.95]),
    st.sampled_from([0.0, 2.0, -7.0]),
)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(LOWERING, min_size=2, max_size=5))
def test_random_lowering_commitments_share_one_discharge(
    specs: list[tuple[tuple[str, str], int, int, float, float | None, float]],
) -> None:
    # One 3 kW discharge 10:00-12:00 (6 kWh), claimed by any operation that lowers
    # p_kw: all of them together settle at most its 6 kWh, 3 kWh an hour.
    commitments = [
        _commitment(
            f"C{k}",
            device,
            start_q / 4,
            (start_q + length_q) / 4,
            kw,
            operation=operation,
            tolerance=tolerance,
            zone=timezone(timedelta(hours=offset_h)),
        )
        for k, ((device, operation), start_q, length_q, kw, tolerance, offset_h) in enumerate(specs)
    ]
    rows = _judged(DISCHARGE, *commitments)
    deliveries = validated_deliveries(rows.values(), DAY, 60, KINDS)
    by_hour: dict[int, int] = {}
    for _, slot, exported_wh, _ in deliveries:
        by_hour[slot] = by_hour.get(slot, 0) + exported_wh
    for hour, wh in by_hour.items():
        assert wh <= (3000 if hour in (10, 11) else 0) + SLACK_WH, (hour, wh, rows)
    assert sum(by_hour.values()) <= 6000 + SLACK_WH
