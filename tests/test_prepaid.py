"""The prepaid meter/server loop (issue #18): golden cases, properties, bad input, the CLI.

Golden cases are computed by hand in the comments (flat 0.25 EUR/kWh, 1 kWh per hour
unless said otherwise: every hour costs 250,000 micro-EUR).
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridmatch.cli import app
from gridmatch.errors import InputError
from gridmatch.prepaid.account import tariff_cost_micro_eur
from gridmatch.prepaid.example import write_example
from gridmatch.prepaid.meter import Meter
from gridmatch.prepaid.run import run_prepaid, simulate
from gridmatch.prepaid.simulation import MeterRun, simulate_meter
from gridmatch.prepaid.timeline import read_prepaid_view
from gridmatch.prepaid.tokens import MAX_UNITS, TokenIssuer, TokenVerifier, meter_key_hex
from gridmatch.results_io.prepaid import (
    ControlState,
    EventKind,
    MeterState,
    ReportStatus,
    read_prepaid_events,
    read_prepaid_summary,
    read_prepaid_timeline,
)
from gridmatch.scenario_io.accounts_csv import read_accounts
from gridmatch.scenario_io.prepaid_input import MeterInput, PrepaidInputs, load_prepaid
from gridmatch.units import standing_charge_micro_eur

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "scenarios" / "prepaid_example"
HOUR = 250_000  # micro-EUR of 1 kWh at 0.25 EUR/kWh
SELF_CUT = "limit reached without a new limit from the server"

BASE_YAML = """\
name: golden
timezone: UTC
start: 2026-03-02T00:00:00Z
reading_minutes: 60
report_interval_min: 60
tariff: {flat_eur_per_kwh: 0.25}
tokens: {key_seed: golden-seed-1, unit_wh: 100}
"""


def _folder(
    tmp_path: Path,
    *,
    hours: int = 8,
    kwh: float | list[float] = 1.0,
    balance: str = "1.00",
    emergency: str = "0",
    extra_yaml: str = "",
    yaml_text: str | None = None,
    topups: list[tuple[str, str]] | None = None,
    comms: list[tuple[str, str]] | None = None,
    tokens: list[tuple[str, str]] | None = None,
    start_hour: int = 0,
) -> Path:
    folder = tmp_path / "sim"
    folder.mkdir(exist_ok=True)
    (folder / "prepaid.yaml").write_text(yaml_text or BASE_YAML + extra_yaml)
    (folder / "accounts.csv").write_text(
        f"participant_id,meter_id,balance_eur,emergency_credit_eur\nalice,M1,{balance},{emergency}\n"
    )
    values = kwh if isinstance(kwh, list) else [kwh] * hours
    first = datetime(2026, 3, 2, start_hour, tzinfo=UTC)
    lines = ["meter_id,timestamp,kwh"] + [
        f"M1,{(first + timedelta(hours=h)).isoformat()},{v}" for h, v in enumerate(values)
    ]
    (folder / "usage.csv").write_text("\n".join(lines) + "\n")
    for name, header, rows in (
        ("topups.csv", "amount_eur", topups),
        ("comms.csv", "delay_min", comms),
        ("tokens.csv", "token", tokens),
    ):
        if rows is not None:
            body = "".join(f"M1,{when},{value}\n" for when, value in rows)
            (folder / name).write_text(f"meter_id,timestamp,{header}\n{body}")
    return folder


def _run(folder: Path) -> MeterRun:
    inputs = load_prepaid(folder)
    return simulate_meter(inputs.policy, inputs.meters[0])


def _cutoffs(run: MeterRun) -> list[tuple[str, str]]:
    return [(e.time, e.detail) for e in run.events if e.event is EventKind.DISCONNECTED]


def _kinds(run: MeterRun, kind: EventKind) -> list[str]:
    return [e.time for e in run.events if e.event is kind]


# --- golden cases ---------------------------------------------------------------------


def test_cutoff_in_the_first_interval_whose_cost_reaches_the_balance(tmp_path: Path) -> None:
    # 1.00 EUR = 4 hours: the hour ending 04:00 brings the cost to 1.00 -> cut off at 04:00.
    run = _run(_folder(tmp_path))
    assert _cutoffs(run) == [("2026-03-02T04:00:00+00:00", "cutoff command")]
    assert run.totals.supplied_wh == 4000 and run.totals.unserved_wh == 4000
    assert run.totals.end_balance_micro_eur == 0
    states = [r.state for r in run.timeline]
    assert states[3] is MeterState.CONNECTED and states[4] is MeterState.DISCONNECTED
    # The commissioning limit: 1.00 EUR buys 4000 Wh = 40 units of 100 Wh.
    issued = [e for e in run.events if e.event is EventKind.TOKEN_ISSUED]
    assert issued[0].time == "2026-03-02T00:00:00+00:00" and issued[0].detail == "limit"
    accepted = [e for e in run.events if e.event is EventKind.TOKEN_ACCEPTED]
    assert accepted[0].detail == "limit: 40 units = 4000 Wh"
    assert issued[-1].detail == "cutoff command"


def test_one_micro_eur_more_keeps_the_meter_on_for_one_more_interval(tmp_path: Path) -> None:
    # 1.000001 EUR: 0.000001 left at 04:00 (> 0), cut off at 05:00 with -0.249999 EUR.
    run = _run(_folder(tmp_path, balance="1.000001"))
    assert _cutoffs(run) == [("2026-03-02T05:00:00+00:00", "cutoff command")]
    assert run.totals.end_balance_micro_eur == 1 - HOUR


def test_emergency_credit_postpones_the_cutoff(tmp_path: Path) -> None:
    # 1.00 EUR + 0.50 EUR emergency: cost 1.50 at 06:00 -> cut off there at -0.50 EUR.
    run = _run(_folder(tmp_path, emergency="0.50"))
    assert _cutoffs(run) == [("2026-03-02T06:00:00+00:00", "cutoff command")]
    assert _kinds(run, EventKind.EMERGENCY_CREDIT_IN_USE) == ["2026-03-02T04:00:00+00:00"]
    assert run.totals.end_balance_micro_eur == -500_000
    by_time = {r.time[11:16]: r for r in run.timeline}
    assert by_time["04:00"].state is MeterState.EMERGENCY
    assert by_time["05:00"].emergency_credit_micro_eur == HOUR
    assert by_time["06:00"].state is MeterState.DISCONNECTED
    assert by_time["06:00"].amount_to_clear_micro_eur == 500_000


def test_friendly_hours_defer_the_cutoff_to_the_first_instant_after_them(tmp_path: Path) -> None:
    # Credit runs out at 04:00, but 04:00 and 05:00 are friendly: cut off at 06:00.
    run = _run(_folder(tmp_path, extra_yaml="friendly_credit: {hours: [3, 4, 5]}\n"))
    assert _kinds(run, EventKind.CUTOFF_DEFERRED) == ["2026-03-02T04:00:00+00:00"]
    assert _cutoffs(run) == [("2026-03-02T06:00:00+00:00", "cutoff command")]
    assert run.totals.end_balance_micro_eur == 1_000_000 - 6 * HOUR
    by_time = {r.time[11:16]: r for r in run.timeline}
    assert by_time["04:00"].state is MeterState.FRIENDLY
    assert by_time["05:00"].state is MeterState.FRIENDLY


def test_friendly_weekdays_keep_the_meter_on_all_day(tmp_path: Path) -> None:
    # 2 March 2026 is a Monday: no cutoff all day, the first instant of Tuesday cuts off.
    folder = _folder(tmp_path, hours=26, extra_yaml="friendly_credit: {weekdays: [mon]}\n")
    assert _cutoffs(_run(folder)) == [("2026-03-03T00:00:00+00:00", "cutoff command")]


def test_reconnection_only_after_a_top_up_above_the_threshold(tmp_path: Path) -> None:
    # Cut off at 04:00 with 0.00; 0.05 at 05:30 leaves it at 0.05 <= 0.10 (still off);
    # 1.00 at 06:10 lifts it to 1.05: reconnected at 07:00; 3 hours unserved (04-07);
    # end: 1.00 + 1.05 - 7 * 0.25 = 0.30 EUR.
    run = _run(
        _folder(
            tmp_path,
            hours=10,
            extra_yaml="reconnect_threshold_eur: 0.10\n",
            topups=[("2026-03-02T05:30:00Z", "0.05"), ("2026-03-02T06:10:00Z", "1.00")],
        )
    )
    assert _cutoffs(run) == [("2026-03-02T04:00:00+00:00", "cutoff command")]
    assert _kinds(run, EventKind.RECONNECTED) == ["2026-03-02T07:00:00+00:00"]
    assert run.totals.unserved_wh == 3000 and run.totals.supplied_wh == 7000
    assert run.totals.end_balance_micro_eur == 300_000
    assert run.totals.minutes_disconnected == 180
    reconnection = [e for e in run.events if e.event is EventKind.TOKEN_ISSUED][-1]
    assert reconnection.detail == "reconnection"


def test_time_of_use_prices_each_band(tmp_path: Path) -> None:
    # Night (0-5 h) 0.10, day 0.40; 2 kWh per hour from 03:00: 0.20, 0.20, 0.20 (night),
    # then 0.80: the cost reaches 1.00 in the hour ending 07:00 (1.40) -> cut off at 07:00.
    yaml_text = BASE_YAML.replace("start: 2026-03-02T00:00:00Z", "start: 2026-03-02T03:00:00Z")
    yaml_text = yaml_text.replace(
        "tariff: {flat_eur_per_kwh: 0.25}",
        "tariff:\n  bands:\n    - {name: night, hours: [0, 1, 2, 3, 4, 5], eur_per_kwh: 0.10}\n"
        "    - {name: day, hours: [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, "
        "22, 23], eur_per_kwh: 0.40}",
    )
    run = _run(_folder(tmp_path, hours=6, kwh=2.0, yaml_text=yaml_text, start_hour=3))
    assert _cutoffs(run) == [("2026-03-02T07:00:00+00:00", "cutoff command")]
    assert run.totals.supplied_by_band_wh == {"night": 6000, "day": 2000}
    assert run.totals.end_balance_micro_eur == -400_000
    # The limit is bought at the cheapest band, with 1 micro-EUR for two bands' rounding:
    # 1.000001 EUR / 0.10 = 10,000.01 Wh, rounded up to 101 units of 100 Wh.
    accepted = [e for e in run.events if e.event is EventKind.TOKEN_ACCEPTED]
    assert accepted[0].detail == "limit: 101 units = 10100 Wh"


def test_without_contact_the_meter_cuts_itself_off_at_its_limit(tmp_path: Path) -> None:
    # Reports 01:00-04:00 lost: the meter's own limit (4000 Wh, flat tariff) is reached
    # at 04:00, as the server's rule would have; 05:00's report bills all four hours.
    lost = [(f"2026-03-02T0{h}:00:00Z", "lost") for h in (1, 2, 3, 4)]
    run = _run(_folder(tmp_path, comms=lost))
    assert _cutoffs(run) == [
        ("2026-03-02T04:00:00+00:00", "limit reached without a new limit from the server")
    ]
    by_time = {r.time[11:16]: r for r in run.timeline}
    assert by_time["04:00"].current_credit_amount_micro_eur == 1_000_000  # nothing billed yet
    assert by_time["05:00"].billed_micro_eur == 4 * HOUR
    assert run.totals.end_balance_micro_eur == 0


def test_a_late_report_bills_on_arrival_and_a_stale_one_is_ignored(tmp_path: Path) -> None:
    balance = "100.00"
    comms = [("2026-03-02T02:00:00Z", "150"), ("2026-03-02T05:00:00Z", "lost")]
    run = _run(_folder(tmp_path, balance=balance, comms=comms))
    by_time = {r.time[11:16]: r for r in run.timeline}
    # 02:00's report reaches the server at 05:00, after 03:00's and 04:00's: stale.
    assert _kinds(run, EventKind.REPORT_STALE) == ["2026-03-02T05:00:00+00:00"]
    assert by_time["02:00"].billed_micro_eur == 0
    assert by_time["03:00"].billed_micro_eur == 2 * HOUR  # 02:00's usage too
    assert by_time["06:00"].billed_micro_eur == 2 * HOUR  # 05:00's lost report's usage too
    assert run.totals.billed_energy_micro_eur == 8 * HOUR


def test_standing_charge_accrues_with_time(tmp_path: Path) -> None:
    # 0.24 EUR/day over 8 hours = 0.08 EUR, rounded down per instant, exact in total.
    run = _run(_folder(tmp_path, balance="10", extra_yaml="standing_charge_eur_per_day: 0.24\n"))
    assert run.totals.billed_standing_micro_eur == 80_000
    assert run.timeline[1].billed_micro_eur == HOUR + 10_000


def test_low_credit_warning_once_per_crossing(tmp_path: Path) -> None:
    run = _run(_folder(tmp_path, balance="2.00", extra_yaml="low_credit_warning_eur: 1.0\n"))
    # 2.00 - 4 * 0.25 = 1.00 at 04:00: at the threshold -> one warning.
    assert _kinds(run, EventKind.LOW_CREDIT_WARNING) == ["2026-03-02T04:00:00+00:00"]
    assert run.timeline[4].state is MeterState.WARNING


# --- tokens -----------------------------------------------------------------------------


def test_tokens_are_openpaygo_and_refuse_replays_forgeries_and_other_meters() -> None:
    key = meter_key_hex("seed-for-tokens", "M1")
    issuer, meter = TokenIssuer(key), TokenVerifier(key)
    first, second = issuer.issue_limit(40), issuer.issue_limit(MAX_UNITS)
    assert len(first.token) == 9 and first.count < second.count
    assert meter.check(first.token).units == 40
    assert meter.check(second.token).units == MAX_UNITS
    # Above 749 units a limit is rounded up to the growing table (6 % a step).
    third = issuer.issue_limit(800)
    assert third.units == 843 and meter.check(third.token).units == 843
    assert meter.check(first.token).reason == "already_used"  # replay of an older token
    assert meter.check(second.token).reason == "already_used"  # replay of the last one
    other = TokenVerifier(meter_key_hex("seed-for-tokens", "M2"))
    assert other.check(issuer.issue_limit(10).token).reason == "invalid"
    assert meter.check("12ab").reason == "malformed"
    with pytest.raises(ValueError, match="one token carries"):
        issuer.issue_limit(MAX_UNITS + 1)


def test_a_meter_refuses_tokens_entered_at_its_keypad(tmp_path: Path) -> None:
    # The commissioning token replayed at 03:00, and one made with another key at 05:00.
    plain = _run(_folder(tmp_path, balance="100"))
    commissioning = next(e for e in plain.events if e.event is EventKind.TOKEN_ISSUED).token
    forged = TokenIssuer("11" * 16).issue_limit(MAX_UNITS).token
    tokens = [("2026-03-02T03:00:00Z", commissioning), ("2026-03-02T05:00:00Z", forged)]
    run = _run(_folder(tmp_path, balance="100", tokens=tokens))
    refused = [e.detail for e in run.events if e.event is EventKind.TOKEN_REFUSED]
    assert refused == ["already_used (keypad)", "invalid (keypad)"]
    assert run.timeline == plain.timeline


# --- properties ---------------------------------------------------------------------------

PROPERTY_YAML = """\
name: property
timezone: Europe/Berlin
start: 2026-03-28T20:00:00+01:00
reading_minutes: 60
report_interval_min: 60
tariff:
  bands:
    - {name: cheap, hours: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], eur_per_kwh: 0.123457}
    - {name: dear, hours: [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23], eur_per_kwh: 0.333333}
standing_charge_eur_per_day: 0.333331
low_credit_warning_eur: 1.0
reconnect_threshold_eur: 0.5
friendly_credit: {hours: [22, 23, 0, 1]}
tokens: {key_seed: property-seed, unit_wh: 50}
"""
N_HOURS = 36  # across the spring DST change of 29 March 2026 in Berlin


@pytest.fixture(scope="module")
def property_inputs(tmp_path_factory: pytest.TempPathFactory) -> PrepaidInputs:
    folder = tmp_path_factory.mktemp("property")
    (folder / "prepaid.yaml").write_text(PROPERTY_YAML)
    (folder / "accounts.csv").write_text("participant_id,meter_id,balance_eur\np,M1,1\n")
    (folder / "usage.csv").write_text("meter_id,timestamp,kwh\nM1,2026-03-28T20:00:00+01:00,0\n")
    (folder / "tokens.csv").write_text("meter_id,timestamp,token\n")
    inputs = load_prepaid(folder)
    assert inputs.policy.n_reports == 1
    policy = dataclasses.replace(inputs.policy, n_reports=N_HOURS)
    return dataclasses.replace(inputs, policy=policy)


@st.composite
def meters(draw: st.DrawFn, *, contact_failures: bool = True, small: bool = False) -> MeterInput:
    """A meter's period: demand in either band (now and then far beyond one 995-unit token
    of 50 Wh), lost and late reports, top-ups at any instant (while reports are lost, on
    emergency credit, at a cutoff), balances from debt to a million EUR."""
    n_bands = 2
    demand = np.zeros((N_HOURS + 1, n_bands), dtype=np.int64)
    for k in range(1, N_HOURS + 1):
        demand[k, draw(st.integers(0, 1))] = draw(st.integers(0, 3000) | st.integers(0, 80_000))
    arrival: dict[int, int | None] = {}
    outage = range(0)
    if contact_failures:
        for k in draw(st.sets(st.integers(1, N_HOURS - 1), max_size=12)):
            arrival[k] = draw(st.none() | st.integers(k, k + 4))
        # A modem down for hours: the meter runs on its limit alone.
        first = draw(st.integers(1, N_HOURS - 1))
        outage = range(first, min(first + draw(st.integers(0, 16)), N_HOURS))
        arrival.update(dict.fromkeys(outage))
    # small: a household on a few EUR and its emergency credit, topping up a little.
    amounts = (
        st.integers(1, 2_000_000) if small else st.integers(1, 5_000_000) | st.integers(1, 10**9)
    )
    instants = st.integers(0, N_HOURS) | (st.sampled_from(outage) if outage else st.nothing())
    topups = tuple((draw(instants), draw(amounts)) for _ in range(draw(st.integers(0, 5))))
    balances = (
        st.integers(0, 2_000_000)
        if small
        else st.integers(-1_000_000, 5_000_000) | st.integers(5_000_000, 10**12)
    )
    return MeterInput(
        meter_id="M1",
        participant_id="p",
        balance_micro_eur=draw(balances),
        emergency_credit_micro_eur=draw(
            st.integers(200_000, 2_000_000) if small else st.integers(0, 2_000_000) | st.just(0)
        ),
        demand_wh=demand,
        topups=topups,
        arrival=arrival,
    )


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(meters())
def test_money_is_conserved_and_nothing_supplied_goes_unbilled(
    property_inputs: PrepaidInputs, meter: MeterInput
) -> None:
    policy = property_inputs.policy
    run = simulate_meter(policy, meter)  # raises ConservationError itself if not
    t = run.totals
    billed = sum(r.billed_micro_eur for r in run.timeline)
    topups = sum(amount for _, amount in meter.topups)
    assert meter.balance_micro_eur + topups - billed == t.end_balance_micro_eur
    assert t.end_balance_micro_eur == run.timeline[-1].current_credit_amount_micro_eur
    registers = [t.supplied_by_band_wh[name] for name in policy.tariff.band_names]
    assert t.billed_energy_micro_eur == tariff_cost_micro_eur(policy.tariff, registers)
    assert t.unbilled_wh == 0
    assert t.supplied_wh + t.unserved_wh == int(meter.demand_wh.sum())
    # Disconnected intervals supply nothing.
    for before, row in zip(run.timeline, run.timeline[1:], strict=False):
        if before.state is MeterState.DISCONNECTED:
            assert row.supplied_wh == 0


@FAST
@given(meters())
def test_lost_and_late_reports_change_no_bill_while_credit_lasts(
    property_inputs: PrepaidInputs, meter: MeterInput
) -> None:
    rich = dataclasses.replace(meter, balance_micro_eur=10**12, topups=())
    flaky = simulate_meter(property_inputs.policy, rich)
    steady = simulate_meter(property_inputs.policy, dataclasses.replace(rich, arrival={}))
    assert flaky.totals.disconnections == steady.totals.disconnections == 0
    for field in ("supplied_wh", "billed_energy_micro_eur", "end_balance_micro_eur"):
        assert getattr(flaky.totals, field) == getattr(steady.totals, field)


@FAST
@given(meters())
def test_without_contact_a_meter_is_never_cut_off_earlier(
    property_inputs: PrepaidInputs, meter: MeterInput
) -> None:
    meter = dataclasses.replace(meter, topups=())
    flaky = simulate_meter(property_inputs.policy, meter)
    steady = simulate_meter(property_inputs.policy, dataclasses.replace(meter, arrival={}))

    def first_cutoff(run: MeterRun) -> int:
        times = [r.time for r in run.timeline]
        cut = [times.index(e.time) for e in run.events if e.event is EventKind.DISCONNECTED]
        return cut[0] if cut else N_HOURS + 1

    assert first_cutoff(flaky) >= first_cutoff(steady)


@FAST
@given(meters())
def test_the_meter_never_cuts_itself_off_while_the_account_has_credit(
    property_inputs: PrepaidInputs, meter: MeterInput
) -> None:
    # At a cutoff by the meter's own limit, the available credit (everything supplied
    # billed, the standing charge accrued) is spent, but for top-ups paid in since the
    # server last heard from the meter (it cannot have told the meter of those).
    policy = property_inputs.policy
    run = simulate_meter(policy, meter)
    contact = {ReportStatus.COMMISSIONING, ReportStatus.DELIVERED, ReportStatus.CLOSING}
    registers = np.zeros(policy.tariff.n_bands, dtype=np.int64)
    last_contact = 0
    self_cuts = {e.time for e in run.events if e.detail == SELF_CUT}
    for k, row in enumerate(run.timeline):
        if row.supplied_wh:
            registers += meter.demand_wh[k]
        if row.report in contact:
            last_contact = k
        if row.time not in self_cuts:
            continue
        paid = sum(amount for at, amount in meter.topups if at <= k)
        unheard = sum(amount for at, amount in meter.topups if last_contact < at <= k)
        standing = standing_charge_micro_eur(
            k * policy.report_interval_min, policy.standing_charge_micro_eur_per_day
        )
        cost = tariff_cost_micro_eur(policy.tariff, [int(wh) for wh in registers])
        available = (
            meter.balance_micro_eur + meter.emergency_credit_micro_eur + paid - cost - standing
        )
        assert available - unheard <= 0, (row.time, available, unheard)


def _self_cut_on_emergency_credit() -> MeterInput:
    # 1 EUR and 0.50 EUR emergency credit, 1 kWh an hour at the cheap price, 0.30 EUR
    # paid in at instant 8 while reports 8-13 are lost: the meter cuts itself off at
    # its limit, the account still holds credit (its balance below the threshold). It
    # stayed off for good before the fix.
    demand = np.zeros((N_HOURS + 1, 2), dtype=np.int64)
    demand[1:, 0] = 1000
    lost: dict[int, int | None] = dict.fromkeys(range(8, 14))
    return MeterInput("M1", "p", 1_000_000, 500_000, demand, ((8, 300_000),), lost)


@FAST
@given(meter=meters() | meters(small=True))
@example(meter=_self_cut_on_emergency_credit())
def test_a_meter_stays_off_only_after_its_credit_was_spent(
    property_inputs: PrepaidInputs, meter: MeterInput
) -> None:
    # At a contact a disconnected meter stays off only if its balance is at or below the
    # reconnection threshold and its credit was spent (as billed) since the server last
    # saw it connected with credit: a meter that cut itself off while the account could
    # pay is reconnected.
    policy = property_inputs.policy
    run = simulate_meter(policy, meter)
    contact = {ReportStatus.COMMISSIONING, ReportStatus.DELIVERED, ReportStatus.CLOSING}
    threshold = policy.reconnect_threshold_micro_eur
    since = 0  # the last contact at which the meter was connected with credit
    for k, row in enumerate(run.timeline):
        if row.report not in contact:
            continue
        if row.control_state is ControlState.CONNECTED and row.available_credit_micro_eur > 0:
            since = k
        if row.control_state is ControlState.DISCONNECTED:
            assert row.current_credit_amount_micro_eur <= threshold
            window = run.timeline[since : k + 1]
            spent = any(r.available_credit_micro_eur - r.topup_micro_eur <= 0 for r in window)
            assert row.available_credit_micro_eur <= 0 or spent, row.time


@settings(max_examples=25, deadline=None, derandomize=True)
@given(meters(), st.data())
def test_replayed_and_forged_tokens_are_refused_and_change_nothing(
    property_inputs: PrepaidInputs, meter: MeterInput, data: st.DataObject
) -> None:
    policy = property_inputs.policy
    plain = simulate_meter(policy, meter)
    keypad: list[tuple[int, str]] = []
    for issued_at, token in plain.issued_tokens:
        if issued_at < N_HOURS and data.draw(st.booleans()):
            keypad.append((data.draw(st.integers(issued_at + 1, N_HOURS)), token.token))
    wrong = TokenIssuer(meter_key_hex("not-the-seed", "M1"))
    for _ in range(data.draw(st.integers(0, 3))):
        units = data.draw(st.integers(0, MAX_UNITS))
        keypad.append((data.draw(st.integers(0, N_HOURS)), wrong.issue_limit(units).token))
    keypad.sort(key=lambda item: item[0])
    attacked = simulate_meter(policy, dataclasses.replace(meter, keypad_tokens=tuple(keypad)))
    assert attacked.totals.tokens_refused == len(keypad)
    assert attacked.timeline == plain.timeline


def test_the_meter_supplies_nothing_while_disconnected() -> None:
    meter = Meter("M1", meter_key_hex("s", "M1"), 2, 100)
    meter.enforce_limit(friendly=False)  # no limit yet: off
    assert meter.supply([5, 7]) == [0, 0] and meter.total_wh == 0


# --- input validation -----------------------------------------------------------------

runner = CliRunner()


def _prepaid(*args: str) -> tuple[int, str]:
    done = runner.invoke(app, ["prepaid", *args])
    return done.exit_code, done.output


BAD = [
    (
        "usage.csv",
        "meter_id,timestamp,kwh\nM1,2026-03-02T00:00:00Z,-1\n",
        "usage.csv, row 2, field 'kwh'",
    ),
    (
        "usage.csv",
        "meter_id,timestamp,kwh\nM1,2026-03-02T00:00:00,1\n",
        "row 2, field 'timestamp': '2026-03-02T00:00:00' has no UTC offset",
    ),
    (
        "usage.csv",
        "meter_id,timestamp,kwh\nM1,2026-03-02T00:00:00Z,1\nM1,2026-03-02T00:00:00Z,1\n",
        "row 3, field 'timestamp'",
    ),
    (
        "usage.csv",
        "meter_id,timestamp,kwh\nM9,2026-03-02T00:00:00Z,1\n",
        "row 2, field 'meter_id': meter 'M9' has no account",
    ),
    (
        "usage.csv",
        "meter_id,timestamp,kwh\nM1,2026-03-02T00:30:00Z,1\n",
        "not on the 60-minute reading grid",
    ),
    (
        "accounts.csv",
        "participant_id,meter_id,balance_eur\na,M1,1\nb,m1,1\n",
        "accounts.csv, row 3, field 'meter_id'",
    ),
    ("accounts.csv", "participant_id,balance_eur\na,1\n", "missing column: meter_id"),
    ("accounts.csv", "participant_id,meter_id,balance_eur\na,../x,1\n", "row 2, field 'meter_id'"),
    (
        "topups.csv",
        "meter_id,timestamp,amount_eur\nM1,2026-03-02T01:00:00Z,0.1234567\n",
        "topups.csv, row 2, field 'amount_eur'",
    ),
    (
        "comms.csv",
        "meter_id,timestamp,delay_min\nM1,2026-03-02T01:30:00Z,lost\n",
        "comms.csv, row 2, field 'timestamp'",
    ),
    (
        "comms.csv",
        "meter_id,timestamp,delay_min\nM1,2026-03-02T01:00:00Z,soon\n",
        "comms.csv, row 2, field 'delay_min'",
    ),
    (
        "tokens.csv",
        "meter_id,timestamp,token\nM1,2026-03-02T01:00:00Z,12x\n",
        "tokens.csv, row 2, field 'token'",
    ),
    (
        "prepaid.yaml",
        BASE_YAML + "reading_minutes: 15\n",
        "prepaid.yaml, row 8: malformed YAML: key 'reading_minutes' is given twice",
    ),
    ("prepaid.yaml", BASE_YAML + "cutoff: never\n", "prepaid.yaml, field 'cutoff': unknown key"),
    (
        "prepaid.yaml",
        BASE_YAML.replace("{flat_eur_per_kwh: 0.25}", "{}"),
        "field 'tariff': Value error, give exactly one of 'flat_eur_per_kwh' and 'bands'",
    ),
    (
        "prepaid.yaml",
        BASE_YAML.replace(
            "flat_eur_per_kwh: 0.25", "bands: [{name: a, hours: [0], eur_per_kwh: 1}]"
        ),
        "no band covers hour(s) 1",
    ),
    (
        "prepaid.yaml",
        BASE_YAML.replace("timezone: UTC", "timezone: Mars/Olympus"),
        "field 'timezone'",
    ),
    (
        "prepaid.yaml",
        BASE_YAML.replace("report_interval_min: 60", "report_interval_min: 90"),
        "multiple of reading_minutes",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_is_exit_2_naming_file_row_and_field_and_keeps_the_earlier_output(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    folder = _folder(tmp_path, hours=3)
    out = tmp_path / "out"
    run_prepaid(folder, out)
    before = (out / "summary.json").read_bytes()
    (folder / name).write_text(text)
    code, output = _prepaid(str(folder), "-o", str(out))
    assert code == 2, output
    assert message in " ".join(output.split()), output
    assert (out / "summary.json").read_bytes() == before
    assert not list(tmp_path.glob(".out.*"))  # no staging folder left behind
    fresh = tmp_path / "fresh"
    assert _prepaid(str(folder), "-o", str(fresh))[0] == 2 and not fresh.exists()


def test_accounts_csv_reads_without_meters_for_the_matching_side(tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("participant_id,balance_eur\nalice,12.5\nbob,-0.000001\n")
    table = read_accounts(path)
    assert [(a.participant_id, a.balance_micro_eur, a.meter_id) for a in table.accounts] == [
        ("alice", 12_500_000, None),
        ("bob", -1, None),
    ]
    path.write_text("participant_id,balance_eur,emergency_credit_eur\nalice,1,-2\n")
    with pytest.raises(InputError, match=r"row 2, field 'emergency_credit_eur'"):
        read_accounts(path)


# --- the bundled example and the command line ----------------------------------------


def test_the_bundled_example_is_what_its_generator_writes(tmp_path: Path) -> None:
    write_example(tmp_path)
    names = sorted(p.name for p in EXAMPLE.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    _, mismatch, errors = filecmp.cmpfiles(EXAMPLE, tmp_path, names, shallow=False)
    assert not mismatch and not errors


def test_cli_runs_the_bundled_example_with_its_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _prepaid(str(EXAMPLE), "-o", str(out), "--report", "--json")
    assert code == 0, output
    summary = json.loads(output[output.index("{") :])
    assert summary["conserved"] and summary["n_meters"] == 4
    by_meter = {m["meter_id"]: m for m in summary["meters"]}
    assert by_meter["M-002"]["disconnections"] >= 1 and by_meter["M-002"]["reconnections"] >= 1
    assert by_meter["M-003"]["unserved_wh"] > 0
    assert by_meter["M-004"]["tokens_refused"] == 2 and by_meter["M-004"]["reports_lost"] > 0
    # Everything reads back through the typed readers, and the report has a chart per meter.
    assert read_prepaid_summary(out).model_dump() == summary
    events = read_prepaid_events(out)
    assert {e.detail for e in events if e.event is EventKind.TOKEN_REFUSED} == {
        "already_used (keypad)",
        "invalid (keypad)",
    }
    assert len(read_prepaid_timeline(out, "M-001")) == summary["n_reports"] + 1
    view = read_prepaid_view(out)
    assert set(view.timelines) == {"M-001", "M-002", "M-003", "M-004"}
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "http" not in page.replace(
        "http-equiv", ""
    )
    # The folder is ours to replace (its marker lists the report too).
    assert _prepaid(str(EXAMPLE), "-o", str(out))[0] == 0
    # `gridmatch report` knows a prepaid folder and writes the same page.
    (out / "report.html").unlink(missing_ok=True)
    reported = runner.invoke(app, ["report", str(out)])
    assert reported.exit_code == 0, reported.output
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 4


def test_simulate_the_example_in_process_is_fast() -> None:
    summary, runs = simulate(load_prepaid(EXAMPLE))
    assert summary.conserved and len(runs) == 4
    assert summary.runtime_s < 5.0
