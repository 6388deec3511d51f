"""The meter's own backstop never cuts a customer off while the account has credit.

Regression tests for three ways it did (each failed before its fix), and the property
that would have caught them: large balances (beyond one 995-unit token), top-ups while
the meter keeps an older limit, and a meter that cut itself off on emergency credit.
Helpers and golden conventions as in ``test_prepaid.py`` (flat 0.25 EUR/kWh unless said
otherwise: 1 kWh costs 250,000 micro-EUR).
"""

from __future__ import annotations

from pathlib import Path

from test_prepaid import _cutoffs, _folder, _kinds, _run

from gridmatch.prepaid.simulation import MeterRun
from gridmatch.prepaid.tokens import TokenIssuer, meter_key_hex
from gridmatch.results_io.prepaid import EventKind

SELF_CUT = "limit reached without a new limit from the server"


def _self_cuts(run: MeterRun) -> list[str]:
    return [time for time, detail in _cutoffs(run) if detail == SELF_CUT]


def _lost(hours: range) -> list[tuple[str, str]]:
    return [(f"2026-03-02T{h:02d}:00:00Z", "lost") for h in hours]


def test_a_large_balance_is_carried_beyond_one_token(tmp_path: Path) -> None:
    # 1,000 EUR buy 4,000 kWh; 20 kWh an hour for 10 hours is 200 kWh = 50 EUR. With the
    # reports of 01:00-09:00 lost the meter runs on its commissioning limit alone: a
    # 995-unit token (99.5 kWh) cut it off at 05:00 with 975 EUR on the account.
    run = _run(_folder(tmp_path, hours=10, kwh=20.0, balance="1000", comms=_lost(range(1, 10))))
    assert _cutoffs(run) == []
    assert run.totals.supplied_wh == 200_000 and run.totals.unserved_wh == 0
    assert run.totals.end_balance_micro_eur == 950_000_000
    accepted = [e for e in run.events if e.event is EventKind.TOKEN_ACCEPTED]
    units = int(accepted[0].detail.split(": ")[1].split(" units")[0])
    assert units * 100 >= 4_000_000  # the limit covers all the credit buys


def test_a_top_up_sends_a_limit_that_covers_it(tmp_path: Path) -> None:
    # 10 EUR buy 40 kWh; 5 kWh an hour. At 01:00 5 EUR are paid in: 13.75 EUR buy 55 kWh
    # more, but 35 kWh were left (more than half of 55), so no limit was sent and, with
    # the reports of 02:00-11:00 lost, the meter cut itself off at 08:00 holding 5 EUR.
    # Now the limit covers the top-up: the closing read's cutoff command at 12:00, at 0.
    run = _run(
        _folder(
            tmp_path,
            hours=12,
            kwh=5.0,
            balance="10",
            topups=[("2026-03-02T01:00:00Z", "5")],
            comms=_lost(range(2, 12)),
        )
    )
    assert _cutoffs(run) == [("2026-03-02T12:00:00+00:00", "cutoff command")]
    issued = [e for e in run.events if e.event is EventKind.TOKEN_ISSUED]
    assert [e.time[11:16] for e in issued] == ["00:00", "01:00", "12:00"]
    assert run.totals.end_balance_micro_eur == 0


def test_a_meter_that_cut_itself_off_on_emergency_credit_is_reconnected(tmp_path: Path) -> None:
    # 1.00 EUR + 0.50 EUR emergency credit buy 6 kWh (the commissioning limit). 0.30 EUR
    # paid in at 03:00 while the reports of 03:00-06:00 are lost: the meter cannot hear
    # of it and cuts itself off at 06:00 (6 kWh used), with -0.20 EUR and 0.30 EUR of
    # emergency credit left. The server never decided that cutoff and the account is
    # solvent (available credit > 0): it reconnects at 07:00, the first contact, though
    # the balance is below the reconnection threshold (that rule is for its own cutoffs).
    run = _run(
        _folder(
            tmp_path,
            hours=10,
            emergency="0.50",
            topups=[("2026-03-02T03:00:00Z", "0.30")],
            comms=_lost(range(3, 7)),
        )
    )
    assert _self_cuts(run) == ["2026-03-02T06:00:00+00:00"]
    assert _kinds(run, EventKind.RECONNECTED) == ["2026-03-02T07:00:00+00:00"]
    # 0.30 EUR buy 1.2 kWh: the hours ending 08:00 and 09:00 use them, cut off at 09:00.
    assert _cutoffs(run)[-1] == ("2026-03-02T09:00:00+00:00", "cutoff command")
    assert run.totals.end_balance_micro_eur == 1_300_000 - 8 * 250_000


def test_a_server_cutoff_still_waits_for_the_reconnection_threshold(tmp_path: Path) -> None:
    # Cut off by the server at 06:00 at -0.50 EUR (emergency spent); 0.30 EUR at 07:00
    # leave -0.20 EUR: available credit, but a balance below the 0.10 EUR threshold.
    run = _run(
        _folder(
            tmp_path,
            hours=10,
            emergency="0.50",
            extra_yaml="reconnect_threshold_eur: 0.10\n",
            topups=[("2026-03-02T07:00:00Z", "0.30")],
        )
    )
    assert _cutoffs(run) == [("2026-03-02T06:00:00+00:00", "cutoff command")]
    assert _kinds(run, EventKind.RECONNECTED) == []


def test_a_keypad_token_with_a_later_counter_does_not_desynchronise_the_server(
    tmp_path: Path,
) -> None:
    # A genuine token (the meter's key) with counter 41 typed at 01:00 for 10 units: the
    # meter takes it (OpenPAYGO accepts counters up to 64 ahead), so its limit is 2 kWh.
    # The server's next tokens had counters 3, 5, ...: refused as used, and the meter cut
    # itself off at 02:00 with 0.50 EUR left. The meter reports its counter; the server
    # issues above it: a new limit at 02:00, the server's own cutoff at 04:00.
    key = meter_key_hex("golden-seed-1", "M1")
    ahead = TokenIssuer(key)
    ahead.count = 40
    token = ahead.issue_limit(10)
    assert token.count == 41
    run = _run(_folder(tmp_path, tokens=[("2026-03-02T01:00:00Z", token.token)]))
    assert [e.detail for e in run.events if e.event is EventKind.TOKEN_REFUSED] == []
    assert _cutoffs(run) == [("2026-03-02T04:00:00+00:00", "cutoff command")]
    issued = [e for e in run.events if e.event is EventKind.TOKEN_ISSUED]
    assert [(e.time[11:16], e.token_count) for e in issued] == [
        ("00:00", 1),
        ("02:00", 43),
        ("04:00", 45),
    ]
