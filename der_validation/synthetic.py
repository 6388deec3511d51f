"""Labelled benchmark data for DER commitment validation: generated (seeded), not downloaded.

No labelled smart-meter data set with DER events can be downloaded here (REDD, UK-DALE
and ACN-Data need sites this machine cannot reach), so households are simulated from
device models and the ground truth is written beside the meter data:

* **base load**: a SimBench household profile (``H0-A/B/C`` of the ``simbench``
  package, 15-minute, active and reactive), scaled to a mean of 0.35-0.6 kW,
  interpolated, with an AR(1) wander, a fridge cycling 0.1 kW and appliances (kettle,
  microwave, a hob that cycles every 1-3 min, a washing machine's heater);
* **PV**: pvlib's Ineichen clear-sky irradiance (Linke turbidity from pvlib's table) on
  a tilted plane (15-40 degrees, facing 150-210 degrees), times a cloud factor: clear,
  broken (shadows of a few minutes, a Markov chain) or overcast days;
* **EV charging**: sessions at 3.7 / 7.4 / 11 / 22 kW held, ending in a 3-5 min taper
  (or an unplug), evening arrivals of 6-30 kWh;
* **heat pumps**: a 1.2-4.5 kW compressor (with reactive power) cycling every 12-28 min
  at 35-65 % duty in run blocks of 1-4 h;
* **batteries**: flat set-points of 1.5-5 kW reached within 5-30 s, charging around
  midday and discharging in the evening, sometimes reversing directly;
* **controllable loads**: a 1.5-6 kW process running all day, curtailed on request;
* meter noise (0.015 kW), and the devices of one household overlap freely.

Commitments are drawn from the devices' flexible runs and then acted out: **true** (the
device does what was committed), **false** (it never runs), **mistimed** (it runs 1.5-4 h
away), **wrong device** (another device of the household does it; only pairs whose
signatures differ -- a battery held at an EV charger's level is indistinguishable from
that charger and is not drawn) and **partial** (it stops after 30-60 % of the window,
or delivers 35-60 % of the power). Every simulated 10 s are averaged to the meter's
resolution; a meter row's timestamp is the start of its interval.

Ground truth (``truth/``): ``devices.csv`` (what each household has), ``activations.csv``
(every device run: a session, a set-point block, a run of compressor cycles, a
curtailment, a day of PV production) and ``commitments.csv`` (the behaviour acted out
and the verdict it should get).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from gridmatch.results_io.atomic import write_file_atomically
from gridmatch.units import SECONDS_PER_HOUR, FloatArray

ZONE = ZoneInfo("Europe/Berlin")
TRUTH_DIR = "truth"
EV_LEVELS_KW = (3.7, 7.4, 11.0, 22.0)
EV_LEVEL_WEIGHTS = (0.3, 0.3, 0.35, 0.05)
# Behaviours acted out, and their weights.
BEHAVIOURS = ("true", "false", "mistimed", "wrong_device", "partial")
BEHAVIOUR_WEIGHTS = (0.4, 0.15, 0.15, 0.15, 0.15)
EXPECTED_VERDICT = {
    "true": "validated",
    "false": "not_delivered",
    "mistimed": "wrong_interval",
    "wrong_device": "wrong_device",
    "partial": "partially_delivered",
}
METER_NOISE_KW = 0.015
_SIMBENCH_PROFILES = ("H0-A", "H0-B", "H0-C")
_DAY_S = 86_400


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    Attributes
    ----------
    start
        Local date of the first day (Europe/Berlin).
    resolution_s
        The meters' resolution (1 s to 15 min; a divisor of 900 s or a multiple of 10 s).
    gap_share
        Share of a meter's rows dropped in random runs (a flaky modem).
    """

    n_meters: int = 20
    days: int = 3
    start: str = "2026-03-16"
    resolution_s: int = 60
    seed: int = 19
    with_q: bool = True
    gap_share: float = 0.0
    name: str = "der-synthetic"


@dataclass(frozen=True)
class Activation:
    """One run of one device (ground truth); ``kw`` is its change of ``p_kw``."""

    meter_id: str
    device_type: str
    start_s: int
    end_s: int
    kw: float


@dataclass(frozen=True)
class TruthCommitment:
    """A commitment as generated, and what was acted out."""

    commitment_id: str
    meter_id: str
    device_type: str
    operation: str
    start_s: int
    end_s: int
    kw: float
    behaviour: str
    actual_device: str
    actual_start_s: int
    actual_end_s: int
    actual_kw: float

    @property
    def expected_verdict(self) -> str:
        """The verdict a correct validation gives."""
        return EXPECTED_VERDICT[self.behaviour]


@dataclass
class Household:
    """One simulated meter: its devices and everything that ran."""

    meter_id: str
    latitude_deg: float
    longitude_deg: float
    devices: dict[str, dict[str, float]]
    p_kw: FloatArray
    q_kvar: FloatArray
    activations: list[Activation] = field(default_factory=list)
    commitments: list[TruthCommitment] = field(default_factory=list)


@dataclass(frozen=True)
class SyntheticData:
    """Everything generated: the households on the internal 10 s grid, and the spec."""

    spec: SyntheticSpec
    start_s: int
    step_s: int
    households: tuple[Household, ...]


# ---------------------------------------------------------------------------------------
# profiles


@lru_cache(maxsize=1)
def _simbench_profiles() -> pd.DataFrame:
    """SimBench's household load profiles (15-minute, normalised), read from the package.

    The CSV the ``simbench`` package ships is read directly (only the household
    columns); importing ``simbench`` itself would load pandapower and every network.
    """
    spec = importlib.util.find_spec("simbench")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("simbench is needed for the base load: pip install simbench")
    path = (
        Path(spec.origin).parent / "networks" / "1-complete_data-mixed-all-0-sw" / "LoadProfile.csv"
    )
    columns = [f"{name}_{kind}" for name in _SIMBENCH_PROFILES for kind in ("pload", "qload")]
    return pd.read_csv(path, sep=";", usecols=columns, dtype=np.float64)[columns]


def _base_load(
    rng: np.random.Generator, start: datetime, days: int, step_s: int
) -> tuple[FloatArray, FloatArray]:
    """Simulate a household's base load (kW, kvar) on the internal grid."""
    profiles = _simbench_profiles()
    name = _SIMBENCH_PROFILES[int(rng.integers(len(_SIMBENCH_PROFILES)))]
    # SimBench's year is 2016 in 15-minute steps; take the same day of the year.
    first = (start.timetuple().tm_yday - 1) * 96
    count = days * 96 + 1
    rows = np.arange(first, first + count) % len(profiles)
    p15 = profiles[f"{name}_pload"].to_numpy()[rows]
    q15 = profiles[f"{name}_qload"].to_numpy()[rows]
    scale = rng.uniform(0.35, 0.6) / max(float(np.mean(p15)), 1e-6)
    n = days * _DAY_S // step_s
    t = np.arange(n) * step_s / 900.0
    grid = np.arange(count)
    p = np.interp(t, grid, p15) * scale
    q = np.interp(t, grid, q15) * scale
    # A slow wander (AR(1), ~10 min memory) around the 15-minute profile.
    alpha = math.exp(-step_s / 600.0)
    shocks = rng.normal(0.0, 0.04 * math.sqrt(1 - alpha**2), n)
    wander = lfilter([1.0], [1.0, -alpha], shocks)
    p = np.clip(p + wander, 0.05, None)
    return p, q


def _trapezoid(
    times_s: FloatArray, start_s: float, end_s: float, kw: float, up_s: float, down_s: float
) -> FloatArray:
    """Power of a device on from ``start_s`` (ramping ``up_s``) to ``end_s`` (``down_s``)."""
    rise = np.clip((times_s - start_s) / max(up_s, 1.0), 0.0, 1.0)
    fall = np.clip((end_s - times_s) / max(down_s, 1.0), 0.0, 1.0)
    return kw * np.minimum(rise, fall)


class _Builder:
    """Adds devices' power to one household's arrays (times: the sample mid-points)."""

    def __init__(self, times_s: FloatArray) -> None:
        self.times_s = times_s
        self.n = len(times_s)
        self.p = np.zeros(self.n)
        self.q = np.zeros(self.n)

    def block(
        self,
        start_s: float,
        end_s: float,
        kw: float,
        *,
        up_s: float = 1.0,
        down_s: float = 1.0,
        q_ratio: float = 0.0,
    ) -> None:
        """Add a device that runs at ``kw`` over ``[start_s, end_s)``."""
        lo = max(int(np.searchsorted(self.times_s, start_s - 1.0)) - 1, 0)
        hi = min(int(np.searchsorted(self.times_s, end_s + 1.0)) + 1, self.n)
        if hi <= lo:
            return
        shape = _trapezoid(self.times_s[lo:hi], start_s, end_s, kw, up_s, down_s)
        self.p[lo:hi] += shape
        self.q[lo:hi] += q_ratio * shape


# ---------------------------------------------------------------------------------------
# households


def generate(spec: SyntheticSpec) -> SyntheticData:
    """Simulate every household of ``spec`` (seeded: the same spec gives the same data)."""
    step_s = 10 if spec.resolution_s % 10 == 0 else spec.resolution_s
    start = datetime.fromisoformat(spec.start).replace(tzinfo=ZONE)
    start_s = int(start.timestamp())
    n = spec.days * _DAY_S // step_s
    times_s = (start_s + (np.arange(n) + 0.5) * step_s).astype(np.float64)
    rng = np.random.default_rng(spec.seed)
    households = []
    for k in range(spec.n_meters):
        child = np.random.default_rng(rng.integers(2**63))
        households.append(_household(child, f"M{k + 1:04d}", spec, start, start_s, times_s))
    return SyntheticData(spec, start_s, step_s, tuple(households))


def _devices(rng: np.random.Generator) -> dict[str, dict[str, float]]:
    devices: dict[str, dict[str, float]] = {}
    if rng.random() < 0.6:
        devices["pv"] = {
            "kwp": round(float(rng.uniform(3.0, 10.0)), 1),
            "tilt_deg": float(rng.uniform(15.0, 40.0)),
            "azimuth_deg": float(rng.uniform(150.0, 210.0)),
        }
    if rng.random() < 0.45:
        level = float(rng.choice(EV_LEVELS_KW, p=EV_LEVEL_WEIGHTS))
        devices["ev_charger"] = {"kw": level}
    if rng.random() < 0.45:
        devices["heat_pump"] = {"kw": round(float(rng.uniform(1.2, 4.5)), 2)}
    if rng.random() < 0.4:
        devices["battery"] = {"max_kw": 5.0}
    if rng.random() < 0.25:
        devices["controllable_load"] = {"kw": round(float(rng.uniform(1.5, 6.0)), 2)}
    if not devices:
        devices["battery"] = {"max_kw": 5.0}
    return devices


@dataclass
class _Plan:
    """A flexible run of a device, before its behaviour is acted out."""

    device: str
    operation: str
    start_s: float
    end_s: float
    kw: float
    behaviour: str = "true"
    claimed_device: str = ""
    shift_s: float = 0.0
    share: float = 1.0  # partial: share of the window run
    power_share: float = 1.0  # partial: share of the power
    period_s: float = 0.0  # heat pump: compressor period
    duty: float = 0.0  # heat pump: share of the period the compressor runs
    actual: tuple[float, float, float] | None = None  # start, end, kW as acted out
    dropped: bool = False


def _household(
    rng: np.random.Generator,
    meter_id: str,
    spec: SyntheticSpec,
    start: datetime,
    start_s: int,
    times_s: FloatArray,
) -> Household:
    step_s = int(times_s[1] - times_s[0]) if len(times_s) > 1 else spec.resolution_s
    devices = _devices(rng)
    latitude = round(float(rng.uniform(47.5, 54.5)), 3)
    longitude = round(float(rng.uniform(6.0, 14.5)), 3)
    base_p, base_q = _base_load(rng, start, spec.days, step_s)
    build = _Builder(times_s)
    house = Household(meter_id, latitude, longitude, devices, base_p, base_q)
    _appliances(rng, build, start_s, spec.days)
    _fridge(rng, build, start_s, spec.days)
    plans: list[_Plan] = []
    pv_kw = np.zeros(len(times_s))
    if "pv" in devices:
        pv_kw = _pv(rng, devices["pv"], latitude, longitude, times_s, spec.days, start_s)
    for day in range(spec.days):
        day_s = start_s + day * _DAY_S
        busy: dict[str, list[tuple[float, float]]] = {}
        plans.extend(_day_plans(rng, devices, day_s, busy, pv_kw, times_s))
    _behaviours(rng, plans, devices)
    period_end_s = start_s + spec.days * _DAY_S
    # Every window, its context and an EV session's rest lie inside the simulated days.
    plans = [p for p in plans if p.end_s <= period_end_s - 3 * 3600]
    for plan in plans:
        moved_start, moved_end = plan.start_s + plan.shift_s, plan.end_s + plan.shift_s
        if moved_start < start_s + 3600 or moved_end > period_end_s - 3 * 3600:
            plan.behaviour, plan.shift_s = "false", 0.0
    curtail = np.ones(len(times_s))
    for plan in plans:
        _act(rng, plan, devices, build, house, times_s, pv_kw, curtail)
    pv_out = pv_kw * curtail
    if "pv" in devices:
        build.p -= pv_out
        _pv_days(house, pv_out, times_s, start_s, spec.days)
    if "controllable_load" in devices:
        # Runs all day except where curtailed (the curtailments were subtracted above).
        build.block(times_s[0] - 60.0, times_s[-1] + 60.0, devices["controllable_load"]["kw"])
    house.p_kw = base_p + build.p
    house.q_kvar = base_q + build.q
    for plan in plans:
        if plan.device == "pv" and plan.operation == "export" and plan.behaviour != "false":
            inside = (times_s >= plan.start_s) & (times_s < plan.end_s)
            export_kw = float(np.mean(np.clip(-house.p_kw[inside], 0.0, None)))
            plan.kw = round(0.85 * export_kw / plan.power_share, 2)
            plan.actual = (plan.start_s, plan.end_s, export_kw)
            plan.dropped = export_kw < 0.3  # the household used it all: nothing to commit
    plans = [plan for plan in plans if not plan.dropped]
    for number, plan in enumerate(plans, start=1):
        house.commitments.append(_truth(meter_id, number, plan))
    house.activations.sort(key=lambda a: (a.start_s, a.device_type))
    return house


def _appliances(rng: np.random.Generator, build: _Builder, start_s: int, days: int) -> None:
    """Kettles, microwaves, hobs and washing machines: events that belong to no model."""
    for day in range(days):
        day_s = start_s + day * _DAY_S
        for _ in range(int(rng.integers(1, 4))):
            at = day_s + rng.uniform(6.5, 22.5) * 3600
            build.block(at, at + rng.uniform(120, 240), rng.uniform(2.0, 2.4))
        for _ in range(int(rng.integers(0, 3))):
            at = day_s + rng.uniform(7.0, 21.0) * 3600
            build.block(at, at + rng.uniform(120, 360), rng.uniform(0.9, 1.3), q_ratio=0.1)
        if rng.random() < 0.7:  # a hob: its thermostat cycles every 1-3 minutes
            at = day_s + rng.uniform(11.5, 19.5) * 3600
            period = rng.uniform(60, 180)
            kw = rng.uniform(1.2, 2.0)
            for k in range(int(rng.uniform(1200, 3000) // period)):
                on = at + k * period
                build.block(on, on + period * rng.uniform(0.4, 0.7), kw)
        if rng.random() < 0.4:  # a washing machine's heater
            at = day_s + rng.uniform(8.0, 20.0) * 3600
            build.block(at, at + rng.uniform(600, 1200), 2.0)


def _fridge(rng: np.random.Generator, build: _Builder, start_s: int, days: int) -> None:
    at = start_s + rng.uniform(0, 1800)
    while at < start_s + days * _DAY_S:
        on_s = rng.uniform(600, 1200)
        build.block(at, at + on_s, 0.1, q_ratio=0.3)
        at += on_s + rng.uniform(1200, 2000)


def _pv(
    rng: np.random.Generator,
    pv: dict[str, float],
    latitude: float,
    longitude: float,
    times_s: FloatArray,
    days: int,
    start_s: int,
) -> FloatArray:
    """PV output (kW, >= 0): Ineichen clear sky on a tilted plane, times clouds."""
    import pvlib

    index = pd.DatetimeIndex(pd.to_datetime(times_s, unit="s", utc=True))
    location = pvlib.location.Location(latitude, longitude, altitude=100.0)
    # The clear sky needs the sun's position too: computed once (pvlib's SPA is most of
    # the generator's time), with the same defaults get_clearsky would use itself.
    sun = location.get_solarposition(index)
    sky = location.get_clearsky(index, model="ineichen", solar_position=sun)
    poa = pvlib.irradiance.get_total_irradiance(
        pv["tilt_deg"],
        pv["azimuth_deg"],
        sun["apparent_zenith"],
        sun["azimuth"],
        sky["dni"],
        sky["ghi"],
        sky["dhi"],
    )["poa_global"].to_numpy(dtype=np.float64)
    clear = pv["kwp"] * 0.86 * np.nan_to_num(poa) / 1000.0
    cloud = np.ones(len(times_s))
    step_s = float(times_s[1] - times_s[0])
    per_day = int(_DAY_S / step_s)
    for day in range(days):
        kind = rng.choice(["clear", "broken", "overcast"], p=[0.45, 0.35, 0.2])
        lo, hi = day * per_day, (day + 1) * per_day
        if kind == "clear":
            cloud[lo:hi] = 1.0 - np.abs(rng.normal(0.0, 0.01, hi - lo))
        elif kind == "overcast":
            slow = np.interp(
                np.arange(hi - lo), np.linspace(0, hi - lo, 25), rng.uniform(0.25, 0.45, 25)
            )
            cloud[lo:hi] = slow
        else:
            i, shaded = lo, False
            while i < hi:
                dwell = int(rng.exponential(300 if shaded else 600) / step_s) + 1
                cloud[i : i + dwell] = rng.uniform(0.25, 0.5) if shaded else 1.0
                i += dwell
                shaded = not shaded
    return np.asarray(clear * cloud, dtype=np.float64)


def _pv_days(
    house: Household, pv_out: FloatArray, times_s: FloatArray, start_s: int, days: int
) -> None:
    per_day = len(times_s) // days
    for day in range(days):
        part = pv_out[day * per_day : (day + 1) * per_day]
        if part.max() < 0.3:
            continue
        producing = np.flatnonzero(part > 0.05)
        first = int(times_s[day * per_day + producing[0]])
        last = int(times_s[day * per_day + producing[-1]])
        house.activations.append(Activation(house.meter_id, "pv", first, last, -float(part.max())))


def _free(busy: list[tuple[float, float]], start_s: float, end_s: float, gap_s: float) -> bool:
    return all(end_s + gap_s <= a or start_s - gap_s >= b for a, b in busy)


def _day_plans(
    rng: np.random.Generator,
    devices: dict[str, dict[str, float]],
    day_s: int,
    busy: dict[str, list[tuple[float, float]]],
    pv_kw: FloatArray,
    times_s: FloatArray,
) -> list[_Plan]:
    """Plan the flexible runs of one day, device by device (each a commitment)."""
    plans: list[_Plan] = []
    hour = SECONDS_PER_HOUR

    def take(device: str, start_s: float, end_s: float) -> bool:
        slots = busy.setdefault(device, [])
        if not _free(slots, start_s, end_s, 1800):
            return False
        slots.append((start_s, end_s))
        return True

    def whole_minute(t: float) -> float:
        return float(round(t / 60.0) * 60.0)

    if "ev_charger" in devices:
        level = devices["ev_charger"]["kw"]
        arrive = whole_minute(day_s + rng.uniform(17.0, 20.5) * hour)
        length = whole_minute(rng.uniform(1.0, 2.5) * hour)
        if take("ev_charger", arrive, arrive + length):
            plans.append(_Plan("ev_charger", "import", arrive, arrive + length, level))
    if "battery" in devices:
        kw = round(float(rng.uniform(1.5, 5.0)), 1)
        while any(abs(kw - level) / level < 0.12 for level in EV_LEVELS_KW):
            kw = round(float(rng.uniform(1.5, 5.0)), 1)
        begin = whole_minute(day_s + rng.uniform(10.0, 13.0) * hour)
        length = whole_minute(rng.uniform(0.75, 2.0) * hour)
        if take("battery", begin, begin + length):
            plans.append(_Plan("battery", "import", begin, begin + length, kw))
        out_kw = round(float(rng.uniform(1.5, 5.0)), 1)
        if rng.random() < 0.3:  # reverses straight from charging to discharging
            begin2 = begin + length
        else:
            begin2 = whole_minute(day_s + rng.uniform(18.0, 21.0) * hour)
        length2 = whole_minute(rng.uniform(0.75, 2.0) * hour)
        if take("battery", begin2 + 1, begin2 + length2):
            plans.append(_Plan("battery", "export", begin2, begin2 + length2, out_kw))
    if "heat_pump" in devices:
        for window in ((5.5, 9.0), (13.0, 16.0), (21.0, 23.0)):
            if rng.random() < 0.25:
                continue
            begin = whole_minute(day_s + rng.uniform(*window) * hour)
            length = whole_minute(rng.uniform(1.0, 2.5) * hour)
            operation = "import" if rng.random() < 0.7 else "curtail"
            period = float(rng.uniform(12, 28) * 60)
            duty = float(rng.uniform(0.35, 0.65))
            kw = round(devices["heat_pump"]["kw"] * duty, 2)
            if take("heat_pump", begin - 2400, begin + length + 3600):
                plan = _Plan("heat_pump", operation, begin, begin + length, kw)
                plan.period_s, plan.duty = period, duty
                plans.append(plan)
    if "controllable_load" in devices:
        begin = whole_minute(day_s + rng.uniform(9.0, 19.0) * hour)
        length = whole_minute(rng.uniform(0.5, 2.0) * hour)
        if take("controllable_load", begin, begin + length):
            kw = devices["controllable_load"]["kw"]
            plans.append(_Plan("controllable_load", "curtail", begin, begin + length, kw))
    if "pv" in devices:
        noon = day_s + 12.5 * hour
        index = np.searchsorted(times_s, noon)
        if 0 <= index < len(pv_kw) and pv_kw[index] > 1.0:
            if rng.random() < 0.5:
                begin = whole_minute(day_s + rng.uniform(10.5, 12.5) * hour)
                length = whole_minute(rng.uniform(0.5, 1.5) * hour)
                if take("pv", begin, begin + length):
                    plans.append(_Plan("pv", "curtail", begin, begin + length, 0.0))
            else:
                begin = whole_minute(day_s + rng.uniform(10.5, 12.0) * hour)
                length = whole_minute(rng.uniform(1.0, 2.0) * hour)
                if take("pv", begin, begin + length):
                    plans.append(_Plan("pv", "export", begin, begin + length, 0.0))
    return plans


# (actual device, operation) -> device types a false claim may name (their signatures differ)
_WRONG_CLAIMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("ev_charger", "import"): ("heat_pump",),
    ("heat_pump", "import"): ("ev_charger", "battery"),
    ("battery", "import"): ("ev_charger", "heat_pump"),
    ("battery", "export"): ("pv",),
    ("controllable_load", "curtail"): ("heat_pump",),
}


def _behaviours(
    rng: np.random.Generator, plans: list[_Plan], devices: dict[str, dict[str, float]]
) -> None:
    """Draw what each flexible run will really do."""
    for plan in plans:
        behaviour = str(rng.choice(BEHAVIOURS, p=BEHAVIOUR_WEIGHTS))
        claims = _WRONG_CLAIMS.get((plan.device, plan.operation), ())
        if behaviour == "wrong_device" and not claims:
            behaviour = "true"
        if behaviour == "wrong_device" and plan.device == "battery" and plan.operation == "export":
            # A PV claim of a battery's export is told apart only in the dark.
            hour = datetime.fromtimestamp(plan.start_s, tz=ZONE).hour
            if 6 <= hour < 19:
                behaviour = "true"
        if behaviour == "mistimed" and plan.device == "pv":
            behaviour = "true"  # the sun does not move: PV mistiming is not drawn
        plan.behaviour = behaviour
        if behaviour == "wrong_device":
            plan.claimed_device = str(rng.choice(claims))
        elif behaviour == "mistimed":
            plan.shift_s = float(rng.choice([-1, 1]) * round(rng.uniform(1.5, 4.0) * 60) * 60)
        elif behaviour == "partial":
            if plan.device == "pv" and plan.operation == "export":
                plan.power_share = float(rng.uniform(0.35, 0.6))  # committed too much
            elif plan.device in ("battery", "controllable_load") and rng.random() < 0.5:
                plan.power_share = float(rng.uniform(0.35, 0.6))
            else:
                plan.share = float(rng.uniform(0.3, 0.6))
    # A mistimed run may not land on another run of the same device.
    for plan in plans:
        if plan.behaviour != "mistimed":
            continue
        moved = (plan.start_s + plan.shift_s - 1800, plan.end_s + plan.shift_s + 1800)
        for other in plans:
            if other is plan or other.device != plan.device:
                continue
            low, high = other.start_s + other.shift_s, other.end_s + other.shift_s
            if moved[0] < high and low < moved[1]:
                plan.behaviour, plan.shift_s = "false", 0.0
                break


def _act(
    rng: np.random.Generator,
    plan: _Plan,
    devices: dict[str, dict[str, float]],
    build: _Builder,
    house: Household,
    times_s: FloatArray,
    pv_kw: FloatArray,
    curtail: FloatArray,
) -> None:
    """Act out one plan: add the device's power, record its activation and the truth."""
    if plan.behaviour == "false":
        if plan.device == "pv":
            # A PV export that never happened: the inverter was off in the window (a
            # curtailment that never happened needs nothing).
            inside = (times_s >= plan.start_s) & (times_s < plan.end_s)
            if plan.operation == "export":
                curtail[inside] = 0.0
                # The inverter off for the window is a run of the PV as a curtailment
                # is (its output steps to nothing and back): the truth lists it so.
                lost = float(np.mean(pv_kw[inside])) if inside.any() else 0.0
                house.activations.append(
                    Activation(house.meter_id, "pv", int(plan.start_s), int(plan.end_s), lost)
                )
            plan.kw = round(0.9 * float(np.mean(pv_kw[inside])), 2) if inside.any() else 1.0
        return
    start = plan.start_s + plan.shift_s
    length = plan.end_s - plan.start_s
    end = start + length * plan.share
    meter = house.meter_id
    if plan.device == "ev_charger":
        level = plan.kw
        if plan.behaviour == "partial" and plan.power_share < 1.0:
            level = plan.kw * plan.power_share
        # The session goes on after the committed window unless it stopped early.
        session_end = end if plan.share < 1.0 else end + rng.uniform(0.3, 2.0) * 3600
        tapers = plan.share == 1.0 and rng.random() < 0.85
        down = rng.uniform(180, 300) if tapers else 1.0
        wobble = level * rng.uniform(-0.01, 0.01)
        build.block(start, session_end, level + wobble, up_s=2.0, down_s=down, q_ratio=0.02)
        house.activations.append(
            Activation(meter, "ev_charger", int(start), int(session_end), level)
        )
        actual_kw = level
    elif plan.device == "battery":
        sign = 1.0 if plan.operation == "import" else -1.0
        kw = plan.kw * plan.power_share
        build.block(start, end, sign * kw, up_s=rng.uniform(5, 30), down_s=rng.uniform(5, 30))
        house.activations.append(Activation(meter, "battery", int(start), int(end), sign * kw))
        actual_kw = kw
    elif plan.device == "heat_pump":
        actual_kw = _heat_pump(rng, plan, devices["heat_pump"]["kw"], build, house, start, end)
    elif plan.device == "controllable_load":
        kw = plan.kw * plan.power_share
        build.block(start, end, -kw, up_s=rng.uniform(1, 60), down_s=rng.uniform(1, 60))
        house.activations.append(Activation(meter, "controllable_load", int(start), int(end), -kw))
        actual_kw = kw
    else:  # pv: what it curtailed; an export's kW is set once the household is summed
        inside = (times_s >= start) & (times_s < end)
        lost = float(np.mean(pv_kw[inside])) if inside.any() else 0.0
        if plan.operation == "curtail":
            curtail[inside] = 0.0
            house.activations.append(Activation(meter, "pv", int(start), int(end), lost))
            plan.kw = round(0.9 * lost, 2)
        actual_kw = lost
    plan.actual = (start, end, actual_kw)


def _heat_pump(
    rng: np.random.Generator,
    plan: _Plan,
    compressor_kw: float,
    build: _Builder,
    house: Household,
    start: float,
    end: float,
) -> float:
    """Compressor cycles for an import run; cycles before and a stop for a curtailment."""
    period, on_s = plan.period_s, plan.period_s * plan.duty
    meter = house.meter_id

    def cycles(first: float, until: float) -> float:
        k, last = 0, first
        while first + k * period < until - 0.5 * on_s:
            at = first + k * period + (rng.uniform(-0.05, 0.05) * period if k else 0.0)
            last = at + on_s * rng.uniform(0.9, 1.1)
            build.block(at, last, compressor_kw, up_s=20.0, down_s=5.0, q_ratio=0.35)
            k += 1
        return last

    if plan.operation == "import":
        last = cycles(start, end)
        house.activations.append(
            Activation(meter, "heat_pump", int(start), int(last), compressor_kw)
        )
        return compressor_kw * plan.duty
    # Curtail: the compressor cycled for 40 min before the start and stops there; after
    # the window (or after the share it held) it cycles again for an hour.
    lead = start - 2400
    last = cycles(lead, start + 0.5 * on_s - 1.0)
    house.activations.append(Activation(meter, "heat_pump", int(lead), int(last), compressor_kw))
    again = cycles(end, end + 3600)
    house.activations.append(Activation(meter, "heat_pump", int(end), int(again), compressor_kw))
    return compressor_kw * plan.duty


def _truth(meter_id: str, number: int, plan: _Plan) -> TruthCommitment:
    actual = plan.actual or (plan.start_s, plan.start_s, 0.0)
    return TruthCommitment(
        commitment_id=f"{meter_id}-C{number:03d}",
        meter_id=meter_id,
        device_type=plan.claimed_device or plan.device,
        operation=plan.operation,
        start_s=int(plan.start_s),
        end_s=int(plan.end_s),
        kw=round(max(plan.kw, 0.1), 2),
        behaviour=plan.behaviour,
        actual_device=plan.device,
        actual_start_s=int(actual[0]),
        actual_end_s=int(actual[1]),
        actual_kw=round(float(actual[2]), 3),
    )


# ---------------------------------------------------------------------------------------
# files


def meter_frame(data: SyntheticData, household: Household) -> tuple[FloatArray, FloatArray, int]:
    """One meter's samples at the spec's resolution: (p_kw, q_kvar, start_s), with noise."""
    factor = data.spec.resolution_s // data.step_s
    p = household.p_kw.reshape(-1, factor).mean(axis=1)
    q = household.q_kvar.reshape(-1, factor).mean(axis=1)
    rng = np.random.default_rng(int(household.meter_id[1:]) * 7919 + data.spec.seed)
    p = p + rng.normal(0.0, METER_NOISE_KW, len(p))
    q = q + rng.normal(0.0, METER_NOISE_KW, len(q))
    return p, q, data.start_s


def _iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, tz=ZONE).isoformat()


def files(data: SyntheticData) -> dict[str, str]:
    """Return the folder's files as text: meter data, commitments, sites, the truth."""
    spec = data.spec
    meters = io.StringIO()
    meters.write("meter_id,timestamp,p_kw" + (",q_kvar" if spec.with_q else "") + "\n")
    for household in data.households:
        p, q, start_s = meter_frame(data, household)
        times = start_s + np.arange(len(p)) * spec.resolution_s
        keep = _kept(data, household, len(p))
        stamps = [_iso(float(t)) for t in times]
        for i in np.flatnonzero(keep):
            line = f"{household.meter_id},{stamps[i]},{p[i]:.3f}"
            meters.write(line + (f",{q[i]:.3f}\n" if spec.with_q else "\n"))
    commitments = _csv(
        ["commitment_id", "meter_id", "device_type", "operation", "start", "end", "kw"],
        [
            [
                c.commitment_id,
                c.meter_id,
                c.device_type,
                c.operation,
                _iso(c.start_s),
                _iso(c.end_s),
                f"{c.kw:g}",
            ]
            for h in data.households
            for c in h.commitments
        ],
    )
    sites = _csv(
        ["meter_id", "latitude_deg", "longitude_deg"],
        [[h.meter_id, f"{h.latitude_deg:g}", f"{h.longitude_deg:g}"] for h in data.households],
    )
    devices = _csv(
        ["meter_id", "device_type", "parameters"],
        [
            [h.meter_id, name, ";".join(f"{k}={v:g}" for k, v in params.items())]
            for h in data.households
            for name, params in h.devices.items()
        ],
    )
    activations = _csv(
        ["meter_id", "device_type", "start", "end", "kw"],
        [
            [a.meter_id, a.device_type, _iso(a.start_s), _iso(a.end_s), f"{a.kw:.3f}"]
            for h in data.households
            for a in h.activations
        ],
    )
    truth = _csv(
        [
            "commitment_id",
            "expected_verdict",
            "behaviour",
            "actual_device",
            "actual_start",
            "actual_end",
            "actual_kw",
        ],
        [
            [
                c.commitment_id,
                c.expected_verdict,
                c.behaviour,
                c.actual_device,
                _iso(c.actual_start_s),
                _iso(c.actual_end_s),
                f"{c.actual_kw:.3f}",
            ]
            for h in data.households
            for c in h.commitments
        ],
    )
    return {
        "meter_data.csv": meters.getvalue(),
        "commitments.csv": commitments,
        "sites.csv": sites,
        f"{TRUTH_DIR}/devices.csv": devices,
        f"{TRUTH_DIR}/activations.csv": activations,
        f"{TRUTH_DIR}/commitments.csv": truth,
    }


def _kept(data: SyntheticData, household: Household, n: int) -> np.ndarray:
    keep = np.ones(n, dtype=bool)
    if data.spec.gap_share <= 0.0:
        return keep
    rng = np.random.default_rng(int(household.meter_id[1:]) * 104729 + data.spec.seed)
    missing = int(data.spec.gap_share * n)
    while missing > 0:
        length = min(int(rng.integers(1, 30)), missing)
        at = int(rng.integers(1, n - length - 1))
        keep[at : at + length] = False
        missing -= length
    return keep


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_folder(folder: Path, spec: SyntheticSpec) -> SyntheticData:
    """Generate ``spec`` and write it as a validation folder (with ``truth/`` beside)."""
    data = generate(spec)
    (folder / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    for name, text in files(data).items():
        write_file_atomically(folder / name, text)
    return data


EXAMPLE_SPEC = SyntheticSpec(n_meters=6, days=2, seed=19, name="der-example")


def write_example(folder: Path) -> SyntheticData:
    """Write the bundled example ``scenarios/der-example/`` (6 meters, 2 days, 1-min)."""
    return write_folder(folder, EXAMPLE_SPEC)
