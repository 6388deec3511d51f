"""Write the bundled prepaid example (``scenarios/prepaid_example/``): seeded, deterministic.

Four households in Berlin over one week (Monday 2 March 2026, 00:00 to the next
Monday), 15-minute demand readings, hourly reports, a three-band time-of-use tariff:

* ``M-001`` an average household with a comfortable balance and a mid-week top-up;
* ``M-002`` an electrically heated flat on a small balance: its credit and emergency
  credit run out on Monday night, friendly-credit hours keep it on until 08:00 on
  Tuesday, when it is cut off; it tops up too little on Wednesday (not above the
  clearance threshold), then enough, is reconnected, and runs out again on Friday;
* ``M-003`` a small user on a small balance who never tops up: cut off on Wednesday
  evening, its demand unserved for the rest of the week;
* ``M-004`` a household behind a flaky modem (lost and late reports in comms.csv), and a
  keypad with a replayed commissioning token and a forged one (tokens.csv).

The demand shapes are synthetic (no public smart-meter data set can be downloaded
here): a base load, morning and evening peaks, cooking, and random appliance runs.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from gridmatch.prepaid.account import grant_units
from gridmatch.prepaid.tokens import MAX_UNITS, TokenIssuer, meter_key_hex
from gridmatch.scenario_io.prepaid_input import Tariff
from gridmatch.units import exact_micro_eur

SEED = 18
ZONE = ZoneInfo("Europe/Berlin")
START = datetime(2026, 3, 2, tzinfo=ZONE)
DAYS = 7
READING_MINUTES = 15
KEY_SEED = "prepaid-example-demo-seed"
UNIT_WH = 100
PRICES_EUR_PER_KWH = {"night": 0.24, "day": 0.32, "peak": 0.41}
BANDS = {
    "night": [0, 1, 2, 3, 4, 5, 6, 22, 23],
    "day": [7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    "peak": [17, 18, 19, 20, 21],
}
# (meter, participant, balance EUR, emergency credit EUR or None for the default, daily kWh)
ACCOUNTS = (
    ("M-001", "household-1", "25.00", None, 9.0),
    ("M-002", "household-2", "6.00", "3.00", 28.0),
    ("M-003", "household-3", "4.50", "0.00", 4.0),
    ("M-004", "household-4", "12.00", None, 8.0),
)
PREPAID_YAML = f"""\
# The prepaid meter loop of the bundled example (written by prepaid/example.py).
name: prepaid-example
timezone: Europe/Berlin
start: {START.isoformat()}
reading_minutes: {READING_MINUTES}
report_interval_min: 60
tariff:
  bands:
    - {{name: night, hours: {BANDS["night"]}, eur_per_kwh: {PRICES_EUR_PER_KWH["night"]}}}
    - {{name: day, hours: {BANDS["day"]}, eur_per_kwh: {PRICES_EUR_PER_KWH["day"]}}}
    - {{name: peak, hours: {BANDS["peak"]}, eur_per_kwh: {PRICES_EUR_PER_KWH["peak"]}}}
standing_charge_eur_per_day: 0.35
low_credit_warning_eur: 3.0
emergency_credit_eur: 5.0          # for accounts without their own emergency_credit_eur
reconnect_threshold_eur: 1.0       # a top-up must lift the balance above 1 EUR
friendly_credit:
  hours: [20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 6, 7]
  weekdays: [sun]
tokens:
  key_seed: {KEY_SEED}   # simulation only: real meters are provisioned with random keys
  unit_wh: {UNIT_WH}
"""


def _profile(rng: np.random.Generator, daily_kwh: float, heated: bool) -> np.ndarray:
    """Wh per 15-minute reading over the week."""
    slots = DAYS * 24 * 60 // READING_MINUTES
    hours = (np.arange(slots) * READING_MINUTES / 60.0) % 24.0
    shape = (
        0.5
        + 1.2 * np.exp(-(((hours - 7.5) / 1.2) ** 2))
        + 2.0 * np.exp(-(((hours - 19.0) / 2.0) ** 2))
        + 0.8 * np.exp(-(((hours - 12.5) / 1.0) ** 2))
    )
    if heated:
        shape = shape + 1.5 * (1.0 + np.cos((hours - 4.0) / 24.0 * 2 * np.pi))
    shape = shape * rng.lognormal(0.0, 0.25, slots)
    runs = rng.random(slots) < 0.03  # a washing machine, an oven, a kettle
    shape = shape + runs * rng.uniform(2.0, 6.0, slots)
    wh = shape / shape.sum() * daily_kwh * DAYS * 1000.0
    whole: np.ndarray = np.floor(wh).astype(np.int64)
    return whole


def _tariff() -> Tariff:
    band_of_hour = [0] * 24
    names = tuple(BANDS)
    for index, name in enumerate(names):
        for hour in BANDS[name]:
            band_of_hour[hour] = index
    prices = tuple(exact_micro_eur(PRICES_EUR_PER_KWH[n]) for n in names)
    return Tariff(names, prices, tuple(band_of_hour))


def _commissioning_token(meter_id: str, balance_eur: str, emergency_eur: str) -> str:
    """Return the token the server gives a meter at commissioning (to replay it)."""
    available = exact_micro_eur(balance_eur) + exact_micro_eur(emergency_eur)
    issuer = TokenIssuer(meter_key_hex(KEY_SEED, meter_id))
    return issuer.issue_limit(grant_units(available, _tariff(), UNIT_WH)).token


def write_example(folder: Path, seed: int = SEED) -> None:
    """Write prepaid.yaml, accounts.csv, usage.csv, topups.csv, comms.csv and tokens.csv."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prepaid.yaml").write_text(PREPAID_YAML, encoding="utf-8")
    step = timedelta(minutes=READING_MINUTES)
    with (folder / "accounts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["participant_id", "meter_id", "balance_eur", "emergency_credit_eur"])
        for meter, participant, balance, emergency, _ in ACCOUNTS:
            writer.writerow([participant, meter, balance, emergency or "5.00"])
    with (folder / "usage.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["meter_id", "timestamp", "kwh"])
        for meter, _, _, _, daily_kwh in ACCOUNTS:
            wh = _profile(rng, daily_kwh, heated=meter == "M-002")
            for j, value in enumerate(wh):
                moment = (START + j * step).isoformat()
                writer.writerow([meter, moment, f"{value / 1000:.3f}"])

    def at(day: int, hour: int, minute: int = 0) -> str:
        return (START + timedelta(days=day, hours=hour, minutes=minute)).isoformat()

    with (folder / "topups.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["meter_id", "timestamp", "amount_eur"])
        writer.writerow(["M-001", at(3, 18, 40), "20.00"])
        writer.writerow(["M-002", at(2, 10, 5), "2.00"])  # not enough to clear the debt
        writer.writerow(["M-002", at(2, 14, 20), "15.00"])
        writer.writerow(["M-004", at(4, 9, 0), "10.00"])
    with (folder / "comms.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["meter_id", "timestamp", "delay_min"])
        for hour in (9, 10, 11, 12):
            writer.writerow(["M-004", at(1, hour), "lost"])
        writer.writerow(["M-004", at(2, 8), "150"])  # arrives after two newer ones: stale
        writer.writerow(["M-004", at(5, 15), "lost"])
        writer.writerow(["M-004", at(5, 16), "60"])  # late, and the freshest on arrival
    forged = TokenIssuer("00" * 16).issue_limit(MAX_UNITS).token  # not the meter's key
    with (folder / "tokens.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["meter_id", "timestamp", "token"])
        writer.writerow(["M-004", at(3, 20, 15), _commissioning_token("M-004", "12.00", "5.00")])
        writer.writerow(["M-004", at(4, 21, 30), forged])


def main() -> None:
    """Write the example into ``scenarios/prepaid_example/`` of this checkout."""
    write_example(Path(__file__).resolve().parents[1] / "scenarios" / "prepaid_example")


if __name__ == "__main__":
    main()
