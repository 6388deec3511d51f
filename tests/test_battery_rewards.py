"""Battery reward agreements: input validation, summaries, verdicts, and the chain.

The end-to-end test runs ``BatteryRewards.sol`` on a real anvil, nothing mocked: the
release equals the Python evaluation to the last micro-EUR, and a forged and a replayed
report are refused by the contract.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from battery_chain import deployed_after_last_period
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridmatch.battery_rewards.conditions import (
    INSUFFICIENT_DATA,
    MET,
    NOT_AGREED,
    NOT_MET,
    Thresholds,
    met,
    split,
)
from gridmatch.battery_rewards.run import evaluate, evaluate_folder
from gridmatch.battery_rewards.summary import period_summaries, summarise
from gridmatch.cli import app
from gridmatch.errors import ChainError, InputError
from gridmatch.scenario_io.battery_input import (
    TelemetrySample,
    read_agreement,
    read_telemetry,
)
from gridmatch.settlement import battery_rewards as chain
from gridmatch.settlement.abi_calls import call_view
from gridmatch.settlement.keys import DerivedKey

EXAMPLE = Path(__file__).resolve().parents[1] / "scenarios" / "battery-rewards-example"
HEADER = "battery_id,timestamp,soc,p_kw,temperature_c,soh\n"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    shutil.copytree(EXAMPLE, folder)
    return folder


def _samples(soc: list[float], p_kw: float = 1.0, temp: float = 20.0) -> list[TelemetrySample]:
    return [TelemetrySample(i + 2, 600.0 * i, s, p_kw, temp, 95.0) for i, s in enumerate(soc)]


# ------------------------------------------------------------------ input at the edge


def test_telemetry_error_names_file_row_and_field(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.csv"
    path.write_text(
        HEADER + "b,2026-01-01T00:00:00Z,50,1,20,95\n" + "b,2026-01-01T00:05:00Z,101,1,20,95\n"
    )
    with pytest.raises(InputError) as info:
        read_telemetry(path, "b")
    assert (info.value.path, info.value.row, info.value.field) == (path, 3, "soc")


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("other,2026-01-01T00:05:00Z,50,1,20,95", "battery_id"),
        ("b,2026-01-01T00:00:00Z,50,1,20,95", "timestamp"),  # not after the previous row
        ("b,2026-01-01T00:05:00,50,1,20,95", "timestamp"),  # no UTC offset
        ("b,2026-01-01T00:05:00Z,50,x,20,95", "p_kw"),
        ("b,2026-01-01T00:05:00Z,50,1,nan,95", "temperature_c"),
    ],
)
def test_telemetry_refuses_bad_cells(tmp_path: Path, row: str, field: str) -> None:
    path = tmp_path / "telemetry.csv"
    path.write_text(HEADER + "b,2026-01-01T00:00:00Z,50,1,20,95\n" + row + "\n")
    with pytest.raises(InputError) as info:
        read_telemetry(path, "b")
    assert (info.value.row, info.value.field) == (3, field)


def test_telemetry_refuses_unknown_column(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.csv"
    path.write_text("battery_id,timestamp,soc,p_kw,temperature_c,volts\n")
    with pytest.raises(InputError, match="unknown column"):
        read_telemetry(path, "b")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("share_bps: 1000}", "share_bps: 999}", None),  # shares add up to 9,999
        ("max_c_rate: 0.5", "max_c_rate: -1", "conditions.max_c_rate"),
        ("capacity_kwh: 13.5", "capacity_kwh: 13.5\ncolour: red", "colour"),
        ("max_c_rate: 0.25", "max_c_rate: 0.0000001", "amounts_eur.max_c_rate"),
        ("expiry: 2036-01-01T00:00:00Z", "expiry: 2026-01-02T00:00:00Z", None),
        # Expiring as the last period ends leaves it no time to be released (as on chain).
        ("expiry: 2036-01-01T00:00:00Z", "expiry: 2026-01-04T12:00:00Z", None),
        # A YAML boolean is no amount: `true` funded 1 EUR per period.
        ("soc_window: 0.50", "soc_window: true", "amounts_eur.soc_window"),
        ("capacity_kwh: 13.5", "capacity_kwh: true", "capacity_kwh"),
        # A quoted number is text, as in scenario.yaml.
        ("capacity_kwh: 13.5", "capacity_kwh: '13.5'", "capacity_kwh"),
        ("[10, 90]", "['10', 90]", "conditions.soc_window_percent.0"),
        ("max_c_rate: 0.5", "max_c_rate: true", "conditions.max_c_rate"),
        # Below 1 Wh the C-rate overflows to infinity (an internal error, exit 6).
        ("capacity_kwh: 13.5", "capacity_kwh: 1.0e-300", "capacity_kwh"),
    ],
)
def test_agreement_refuses_bad_terms(tmp_path: Path, old: str, new: str, field: str | None) -> None:
    folder = _copy(tmp_path)
    path = folder / "agreement.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(InputError) as info:
        read_agreement(path)
    assert info.value.field == field
    assert info.value.path == path


# ------------------------------------------------------------------ summary and verdicts


def test_rainflow_full_cycle_is_one_equivalent_cycle() -> None:
    summary, efc, depth, c_rate = summarise(_samples([50, 100, 0, 100, 50]), 86_400, 10.0)
    assert efc == pytest.approx(1.5)  # half cycles 50, 100, 100, 50 %: (25 + 50 + 50 + 25) / 100
    assert depth == 100.0
    assert summary.max_dod_bps == 10_000
    assert summary.cycles_per_day_milli == 1500
    assert c_rate == pytest.approx(0.1)
    assert summary.max_c_rate_milli == 100


def test_summary_rounds_against_the_battery() -> None:
    samples = _samples([10.004, 89.996])
    samples = [replace(s, temperature_c=t) for s, t in zip(samples, (4.96, 35.04), strict=True)]
    summary, *_ = summarise(samples, 43_200, 13.5)
    assert (summary.soc_min_bps, summary.soc_max_bps) == (1000, 9000)
    assert (summary.temp_min_deci_c, summary.temp_max_deci_c) == (49, 351)
    # one half cycle of 79.992 % in a 12 h period: 0.79992 cycles a day, rounded up
    assert summary.cycles_per_day_milli == 800
    assert summary.max_dod_bps == 8000


def test_depth_and_cycles_where_rainflow_loses_the_range() -> None:
    # Found by the property below: rainflow 3.2 reads this series as cycles of range 0.
    # The cycles it loses with the range are at least the half cycle the range is.
    summary, efc, depth, _ = summarise(
        _samples([1.0, 0.0, 2.817172443661057e-265, 0.0, 1.0]), 86_400, 10.0
    )
    assert depth == 1.0 and summary.max_dod_bps == 100
    assert efc == 0.005 and summary.cycles_per_day_milli == 5


@settings(max_examples=300, deadline=None)
@given(
    soc=st.lists(st.floats(0.0, 100.0), min_size=2, max_size=40),
    temps=st.lists(st.floats(-40.0, 80.0), min_size=2, max_size=40),
    soh=st.floats(0.0, 100.0),
)
def test_summaries_are_ones_the_contract_accepts(
    soc: list[float], temps: list[float], soh: float
) -> None:
    """Property: whatever the telemetry, its summary passes BatteryRewards.checkSummary's
    rules (written out again here), so an honest quorum is never refused for it."""
    samples = [
        TelemetrySample(i + 2, 600.0 * i, value, 1.0, temps[i % len(temps)], soh)
        for i, value in enumerate(soc)
    ]
    summary, *_ = summarise(samples, 86_400, 10.0)
    assert 0 <= summary.soc_min_bps <= summary.soc_max_bps <= 10_000
    # The deepest cycle spans the range; each of the three is rounded on its own: 1 bps
    # of slack either way, as on chain.
    range_bps = summary.soc_max_bps - summary.soc_min_bps
    assert range_bps - 1 <= summary.max_dod_bps <= range_bps + 1
    # The deepest cycle is at least a half cycle: cycles x period >= (DoD - 1) x 4,320.
    assert summary.cycles_per_day_milli * 86_400 + 4_320 >= summary.max_dod_bps * 4_320
    assert summary.temp_min_deci_c <= summary.temp_max_deci_c
    assert summary.soh_bps <= 10_000 and summary.coverage_bps <= 10_000


def test_thresholds_inclusive_and_soh_needs_data() -> None:
    agreement = read_agreement(EXAMPLE / "agreement.yaml")
    t = Thresholds.of(agreement.conditions, agreement.telemetry)
    from gridmatch.battery_rewards.summary import Summary

    at = Summary(*t.as_tuple()[:8], 10_000, t.max_gap_seconds)
    assert met(t, at) == (True,) * 6
    assert met(t, replace(at, soh_bps=0))[5] is False
    assert met(t, replace(at, max_c_rate_milli=at.max_c_rate_milli + 1))[2] is False


def test_split_gives_the_remainder_to_the_last() -> None:
    agreement = read_agreement(EXAMPLE / "agreement.yaml")
    assert split(agreement, 3_083_333) == {
        "owner": 2_158_333,
        "aggregator": 616_666,
        "installer": 308_334,
    }


def test_example_verdicts() -> None:
    evaluation = evaluate_folder(EXAMPLE)
    by = {(p, c): v for p, c, v, _ in evaluation.verdicts}
    assert all(by[0, c] == MET for c in ("soc_window", "max_c_rate", "min_state_of_health"))
    assert (by[1, "max_c_rate"], by[1, "temperature_band"]) == (NOT_MET, NOT_MET)
    assert (by[2, "soc_window"], by[2, "max_depth_of_discharge"]) == (NOT_MET, NOT_MET)
    assert evaluation.released_micro_eur == (3_083_333, 2_583_333, 1_833_333)
    assert sum(evaluation.payouts_micro_eur.values()) == evaluation.total_released_micro_eur
    assert evaluation.funded_micro_eur == 3 * 3_083_333


def test_empty_period_and_unagreed_condition() -> None:
    agreement = read_agreement(EXAMPLE / "agreement.yaml")
    agreement = replace(agreement, amounts_micro_eur=(0, *agreement.amounts_micro_eur[1:]))
    samples = read_telemetry(EXAMPLE / "telemetry.csv", "bess-1")
    periods = period_summaries(agreement, [s for s in samples if s.time_s < 1_767_312_000])
    evaluation = evaluate(agreement, periods)
    verdicts = {(p, c): v for p, c, v, _ in evaluation.verdicts}
    assert verdicts[0, "soc_window"] == NOT_AGREED
    assert verdicts[1, "max_c_rate"] == INSUFFICIENT_DATA
    assert evaluation.released_micro_eur[1:] == (0, 0)


def test_cli_writes_verdicts_off_chain(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["battery-rewards", str(EXAMPLE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = (out / "verdicts.csv").read_text().splitlines()
    assert lines[0] == "period,condition,verdict,released_micro_eur"
    assert len(lines) == 1 + 3 * 6
    assert (out / "periods.csv").exists() and (out / "summary.json").exists()


def test_cli_bad_input_exit_code_2(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "telemetry.csv").write_text(HEADER + "bess-1,yesterday,50,1,20,95\n")
    result = CliRunner().invoke(app, ["battery-rewards", str(folder), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "row 2" in result.output and "timestamp" in result.output


# ------------------------------------------------------------------ on a real anvil


def test_release_on_anvil_equals_python_to_the_unit(tmp_path: Path) -> None:
    """``gridmatch battery-rewards --chain``: every balance equals the evaluation."""
    evaluation = evaluate_folder(EXAMPLE)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["battery-rewards", str(EXAMPLE), "-o", str(out), "--chain"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["on_chain"] is True
    record = json.loads((out / "chain.json").read_text())
    assert record["balances_micro_eur"] == evaluation.payouts_micro_eur
    assert record["credited_micro_eur"] == evaluation.payouts_micro_eur
    assert {c["participant"]: c["claimed_micro_eur"] for c in record["claims"]} == {
        p: v for p, v in evaluation.payouts_micro_eur.items() if v
    }
    assert record["released_micro_eur"] == evaluation.total_released_micro_eur == 7_499_999
    assert record["held_micro_eur"] == evaluation.funded_micro_eur - 7_499_999
    assert record["matches_evaluation"] is True


def test_forged_and_replayed_reports_refused_on_anvil(tmp_path: Path) -> None:
    evaluation = evaluate_folder(EXAMPLE)
    with deployed_after_last_period(evaluation, tmp_path) as deployed:
        w3, sender, deployment, keys = (
            deployed.w3,
            deployed.sender,
            deployed.deployment,
            deployed.keys,
        )
        period = evaluation.periods[1]
        assert period.summary is not None
        # The digest computed in Python is the contract's own.
        on_chain = chain.summary_hash_on_chain(w3, deployment, 1, period.summary, 1)
        assert on_chain == chain.summary_digest(deployment.scope, 1, period.summary, 1)
        # The digest binds the battery and the schedule: another battery's or another
        # start's summary is another message (a reorg giving the id to another agreement).
        for other in (
            replace(deployment.scope, battery_id=chain.battery_word("bess-2")),
            replace(deployment.scope, period_start_s=deployment.scope.period_start_s + 86_400),
            replace(deployment.scope, period_seconds=deployment.scope.period_seconds - 1),
            replace(deployment.scope, agreement_id=deployment.agreement_id + 1),
        ):
            assert chain.summary_digest(other, 1, period.summary, 1) != on_chain
        # Forged: a better summary (all conditions met) signed by a key that is no validator.
        better = replace(period.summary, max_c_rate_milli=0, temp_max_deci_c=200)
        mallory = DerivedKey.of(b"\x07" * 32)
        forged = chain.signatures(w3, deployment, [*keys[:2], mallory], 1, better)
        forged[2] = (keys[2].address, forged[0][1] + 2, forged[2][2])
        with pytest.raises(ChainError, match="BatteryRewardsInvalidSignature"):
            chain.release_period(sender, deployment, 1, better, forged)
        # Too few: two honest validators of three are no quorum.
        two = chain.signatures(w3, deployment, keys[:2], 1, better)
        with pytest.raises(ChainError, match="BatteryRewardsNoQuorum"):
            chain.release_period(sender, deployment, 1, better, two)
        signed = chain.signatures(w3, deployment, keys, 1, period.summary)
        paid = chain.release_period(sender, deployment, 1, period.summary, signed)
        assert paid == evaluation.released_micro_eur[1]
        # Replayed: the same report again, and for another period.
        with pytest.raises(ChainError, match="BatteryRewardsPeriodAttested"):
            chain.release_period(sender, deployment, 1, period.summary, signed)
        with pytest.raises(ChainError, match="BatteryRewardsInvalidSignature"):
            chain.release_period(sender, deployment, 0, period.summary, signed)
        # Pull payments: the release credited the participants and moved no token.
        credited = chain.credits(w3, deployment)
        untouched = {
            p: int(call_view(w3, deployment.payment, "balanceOf", a)[0])
            for p, a in deployment.participants.items()
        }
        claims = chain.claim_credits(sender, deployment)
        balances = {
            p: int(call_view(w3, deployment.payment, "balanceOf", a)[0])
            for p, a in deployment.participants.items()
        }
        left = chain.credits(w3, deployment)
    expected = split(evaluation.agreement, evaluation.released_micro_eur[1])
    assert credited == expected
    assert set(untouched.values()) == {0}
    assert {c.participant: c.claimed_micro_eur for c in claims} == {
        p: v for p, v in expected.items() if v
    }
    assert balances == expected and set(left.values()) == {0}
