"""The window a commitment is judged in, a model's fit to it, and what every signature shares.

:class:`Window` holds a commitment's detection and the site's clear-sky curve (and the
day's PV fit); :class:`Fit` is what a signature returns. The helpers here score pulses
for every signature kind: alignment with the window, hold, quietness, reactive power.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d

from gridmatch.der_validation.clearsky import clear_sky_ghi
from gridmatch.der_validation.detection import Detection, Pulse, Step
from gridmatch.scenario_io.der_models import (
    ClearSkyModel,
    DeviceModel,
    SiteSpec,
)
from gridmatch.units import SECONDS_PER_HOUR, FloatArray

# Magnitudes of recurring pulses that count as "the same" device switching.
SAME_MAGNITUDE = 0.3
# Share of its window a device that stopped early still has to hold for (see hold score).
MIN_HOLD_SHARE = 0.3
# Without a generator, a load cannot take the meter this far below zero (kW).
EXPORT_MARGIN_KW = 0.3
# Reactive power off the model's ratio (beyond this slack) scales the score down.
REACTIVE_SLACK = 0.05
REACTIVE_FACTOR = 0.5
# Steps whose kvar differ by more than this (or SAME_MAGNITUDE of it) are two devices'.
REACTIVE_SAME_KVAR = 0.1
# A step that moved at least this share of its kW as kvar (a motor's) is no cloud's.
REACTIVE_STEP_SHARE = 0.1
# PV's clouds are read through the upper envelope of export over this long (s).
ENVELOPE_S = 3600
# Steps per hour inside a PV curtailment still taken as the household's, not clouds'.
QUIET_STEPS_PER_HOUR = 3.0
# Samples before a pulse that give the level the rest of the signal holds.
HELD_LEVEL_SAMPLES = 5
# A load that switches off had been on this long before (s), unless asked for.
SUSTAIN_S = 1800
MIN_DAYLIGHT_SAMPLES = 10
# The standing load is this percentile of the night's rest (a curtailment at night
# takes less than a quarter of it).
STANDING_PERCENTILE = 25.0
# A change over this many samples may be a taper; it is one if no sample-to-sample
# jump carries this share of it (a 3-5 min taper in 1-min data: a third at most).
TAPER_SAMPLES = 3
TAPER_JUMP_SHARE = 0.4
# A PV's export: the meter below zero by this much (kW, in the envelope) over at least
# this share of the daylight; and the export either still shows less the closed pulses
# (no device's run made it) or rises and falls with the sun (at least this correlation
# with the clear sky while it exports). A load only lower at noon exports nothing; a
# battery discharging at noon exports a flat block its own steps close. Without it, a
# PV day needs both readings of the day to show the sun (see daylight_fit).
EXPORT_EVIDENCE_KW = 0.05
MIN_EXPORT_SHARE = 0.1
MIN_EXPORT_CORRELATION = 0.3


def direction(kind: str, operation: str) -> int:
    """Sign of the change of ``p_kw`` an operation of a device of this kind makes."""
    if operation == "import":
        return 1
    if operation == "export":
        return -1
    return 1 if kind == "generator" else -1  # curtail or shift


@dataclass(frozen=True)
class Fit:
    """A model's reading of a window.

    Attributes
    ----------
    score
        0 (does not explain it) to 1, scaled by the model's ``specificity``.
    event
        Whether the delivery starts with an event at the window's start (a step, a
        compressor start); PV export has none (it only follows the sun).
    start_s, end_s
        When the device's delivery began and ended (``NaN`` if unknown).
    delivered_kwh
        The energy delivered inside the window, read as this model reads it.
    ends_run
        The window's only steps of the operation's sign close runs that opened before
        them (a battery's charge ending where a discharge was committed): the device
        did not deliver, and no other device did it either.
    """

    device_type: str
    operation: str
    score: float
    event: bool
    start_s: float = math.nan
    end_s: float = math.nan
    delta_kw: float = math.nan
    delta_kvar: float = math.nan
    ramp_kw_per_min: float = math.nan
    period_s: float = math.nan
    daylight_correlation: float = math.nan
    delivered_kwh: float = 0.0
    detail: str = ""
    ends_run: bool = False


@dataclass
class Window:
    """The detected events around one window and what the models need besides.

    ``align_s`` is how far from the window's start a device may start; ``day_fit``, if
    given, returns a PV model's fit of the whole day around an instant (correlation and
    peak kW, see :func:`daylight_fit`), computed once per meter and day by the caller,
    as a window's own stretch is too short to show the day's curve. ``ends_earlier_run``,
    if given, tells whether the step of a sign at an instant only closes a run of the
    other sign that opened before it (looked for as far back as a run may last, beyond
    this stretch): a battery's charge ending, not its discharge.
    """

    detection: Detection
    site: SiteSpec
    align_s: float
    daylight_w_per_m2: float = 50.0
    day_fit: Callable[..., tuple[float, float, float]] | None = None
    pv_model: ClearSkyModel | None = None
    curtailed_s: tuple[float, float] | None = None
    ends_earlier_run: Callable[[float, int], bool] | None = None
    _own_fits: dict[int, tuple[float, float, float]] = field(default_factory=dict, repr=False)

    def cloud_like(self, pulse: Pulse) -> bool:
        """Whether a PV site's clouds could make this pulse (daylight, a PV day, its size).

        With ``pv_model`` given and the day showing PV (presence >= 0.5), a step no
        larger than the PV's clear-sky output at that moment (the day's fitted peak
        along the clear-sky curve) may be a cloud's shadow coming or going.
        """
        model = self.pv_model
        if model is None or self.is_night(pulse.start_s):
            return False
        _, peak_kw, presence = self.pv_day(model, pulse.start_s)
        if presence < 0.5 or math.isnan(peak_kw):
            return False
        index = self.detection.signal.index(pulse.start_s)
        if not 0 <= index < len(self.clear_sky):
            return False
        return abs(pulse.delta_kw) <= peak_kw * float(self.clear_sky[index]) / 1000.0

    def pv_day(
        self, model: ClearSkyModel, time_s: float, exclude: tuple[float, float] | None = None
    ) -> tuple[float, float, float]:
        """Return the PV fit of the day around ``time_s`` (this stretch's without ``day_fit``).

        ``exclude`` (Unix times, s) is an interval the day's fit leaves out (a committed
        curtailment's), when the fit is the caller's day fit.
        """
        if self.day_fit is not None:
            return self.day_fit(model, time_s, exclude)
        key = id(model)
        if key not in self._own_fits:
            mask = np.ones(len(self.detection.signal.p_kw), dtype=bool)
            self._own_fits[key] = daylight_fit(self, model, mask)
        return self._own_fits[key]

    @cached_property
    def clear_sky(self) -> FloatArray:
        """Clear-sky irradiance at the mid-point of every sample (W/m^2)."""
        signal = self.detection.signal
        offsets = (np.arange(len(signal.p_kw), dtype=np.float64) + 0.5) * signal.resolution_s
        mids: FloatArray = signal.start_s + offsets
        return clear_sky_ghi(self.site, mids)

    @cached_property
    def destepped_kw(self) -> FloatArray:
        """The signal less every closed pulse: base load and PV, without devices.

        Only pulses that a step of their size closed are taken out (their step over
        the time they held): a step left unpaired is not subtracted, so errors of
        measured steps cannot add up over the day into a drift that the clear-sky fit
        would read as PV.
        """
        signal = self.detection.signal
        change = np.zeros(len(signal.p_kw) + 1)
        for pulse in self.detection.pulses:
            if pulse.off is None or not pulse.matched:
                continue  # a reversal's or an open pulse's extent is not known
            on = pulse.on.index + pulse.on.ramp_samples - 1
            off = pulse.off.index + pulse.off.ramp_samples - 1
            if off <= on:
                continue
            change[min(on, len(signal.p_kw))] += pulse.delta_kw
            change[min(off, len(signal.p_kw))] -= pulse.delta_kw
        result: FloatArray = signal.p_kw - np.cumsum(change)[:-1]
        return result

    @cached_property
    def standing_kw(self) -> float:
        """The household's standing load: a low quartile of the night's signal less its pulses.

        What runs all night (no PV then, the devices' runs taken out): the base load's
        quiet level, and a process load that runs around the clock. ``NaN`` without an
        hour of night in the stretch.
        """
        night = self.clear_sky < self.daylight_w_per_m2
        rest = self.destepped_kw[night]
        rest = rest[~np.isnan(rest)]
        if rest.size * self.detection.signal.resolution_s < SECONDS_PER_HOUR:
            return math.nan
        return float(np.percentile(rest, STANDING_PERCENTILE))

    def is_night(self, time_s: float) -> bool:
        """Whether the clear sky at ``time_s`` is darker than the daylight threshold."""
        index = self.detection.signal.index(time_s)
        if not 0 <= index < len(self.clear_sky):
            return False
        return bool(self.clear_sky[index] < self.daylight_w_per_m2)


def aligned_pulses(window: Window, sign: int, start_s: float) -> list[Pulse]:
    """Pulses of ``sign`` that begin within the alignment tolerance of ``start_s``."""
    detection = window.detection
    found = []
    for index, step in enumerate(detection.steps):
        if abs(step.time_s - start_s) > window.align_s:
            continue
        pulse = detection.pulse_from(index)
        if pulse.sign == sign:
            found.append(pulse)
    return found


def closeness(error: float, tolerance: float) -> float:
    """1 within half the tolerance, 0.5 at the tolerance, 0 at one and a half."""
    return float(np.clip(1.0 - max(0.0, error - tolerance / 2.0) / tolerance, 0.0, 1.0))


def in_range(value: float, low: float, high: float, margin: float = 0.1) -> float:
    """Score ``value`` 1 inside ``[low, high]``, falling to 0 at ``margin`` (relative) outside."""
    if low <= value <= high:
        return 1.0
    distance = (low - value) / low if value < low else (value - high) / high
    return float(np.clip(1.0 - distance / margin, 0.0, 1.0))


def recurrences(window: Window, pulse: Pulse, horizon_s: float) -> int:
    """Count steps like this pulse's (sign, size) after it ended within ``horizon_s``.

    With reactive power, a step whose kvar differs from the pulse's is another
    device's (a compressor's start beside a battery's set-point) and does not count.
    """
    size = abs(pulse.on.delta_kw)
    return sum(
        1
        for step in window.detection.steps
        if step.sign == pulse.on.sign
        and pulse.end_s <= step.time_s <= pulse.start_s + horizon_s
        and abs(abs(step.delta_kw) - size) <= SAME_MAGNITUDE * size
        and not _reactive_differs(step, pulse.on)
    )


def _reactive_differs(a: Step, b: Step) -> bool:
    """Whether two steps' kvar (both measured) tell different devices apart."""
    if math.isnan(a.delta_q_kvar) or math.isnan(b.delta_q_kvar):
        return False
    allowed = max(
        REACTIVE_SAME_KVAR, SAME_MAGNITUDE * max(abs(a.delta_q_kvar), abs(b.delta_q_kvar))
    )
    return abs(a.delta_q_kvar - b.delta_q_kvar) > allowed


def _reactive_step(step: Step) -> bool:
    """Whether a step moved reactive power (a motor's), which a cloud's cannot."""
    if math.isnan(step.delta_q_kvar):
        return False
    return abs(step.delta_q_kvar) >= max(
        REACTIVE_SAME_KVAR, REACTIVE_STEP_SHARE * abs(step.delta_kw)
    )


def reactive_score(model: DeviceModel, delta_kw: float, delta_kvar: float) -> float:
    """1 if the step's reactive share fits the model (or is unknown), else a penalty."""
    if model.reactive_ratio is None or math.isnan(delta_kvar) or delta_kw == 0.0:
        return 1.0
    ratio = delta_kvar / delta_kw
    low, high = model.reactive_ratio.min, model.reactive_ratio.max
    return 1.0 if low - REACTIVE_SLACK <= ratio <= high + REACTIVE_SLACK else REACTIVE_FACTOR


def tapered(window: Window, step: Step) -> bool:
    """Whether ``step`` is a smooth ramp over several samples (a charger's taper).

    A taper spreads its change evenly over its samples; a step that met another
    device's change in the next sample has one jump carrying most of it.

    Parameters
    ----------
    window
        The window whose detection found ``step``.
    step
        One of the detection's steps.

    Returns
    -------
    bool
        ``True`` if the change took at least :data:`TAPER_SAMPLES` samples and no
        measured sample-to-sample jump carried :data:`TAPER_JUMP_SHARE` of it;
        ``False`` when no jump was measured (a change inside a bridged gap).
    """
    if step.ramp_samples < TAPER_SAMPLES:
        return False
    p = window.detection.signal.p_kw
    first = max(step.index - 1, 0)
    jumps = np.abs(np.diff(p[first : step.index + step.ramp_samples]))
    jumps = jumps[~np.isnan(jumps)]
    if jumps.size == 0:
        return False  # the change fell inside a bridged gap: nothing shows it spread
    if step.delta_kw == 0.0:
        return True
    return bool(float(np.max(jumps)) < TAPER_JUMP_SHARE * abs(step.delta_kw))


def ramp_rate(pulse: Pulse, resolution_s: int) -> float:
    """Return how fast the pulse's opening step rose, kW per minute."""
    return step_rate(pulse.on, resolution_s)


def step_rate(step: Step, resolution_s: int) -> float:
    """Return how fast ``step`` changed the power, kW per minute."""
    return abs(step.delta_kw) / (step.ramp_samples * resolution_s / 60.0)


def _rolling_max(values: FloatArray, samples: int) -> FloatArray:
    """Centred moving maximum over ``samples``, ignoring NaN (NaN where all are)."""
    filled = np.where(np.isnan(values), -np.inf, values)
    result = maximum_filter1d(filled, size=samples, mode="nearest")
    return np.where(np.isneginf(result), np.nan, result)


def daylight_fit(
    window: Window,
    model: ClearSkyModel,
    mask: npt.NDArray[np.bool_],
    export_evidence: bool = False,
) -> tuple[float, float, float]:
    """Whether the daylight samples of ``mask`` show PV: correlation, peak kW and presence.

    Export is read through its upper envelope over :data:`ENVELOPE_S` (a cloud's shadow
    passes within it, so the envelope follows the sunny sky) twice: of the signal as
    it is (which a device running longer than the envelope distorts) and of the
    signal less the closed pulses (which a misread step distorts). Each reading gives
    the correlation with the clear sky and the export per 1000 W/m^2 of it (the
    peak); the presence (:func:`_presence`) is the mean of the two readings', and the
    correlation and peak returned are their means (evidence). With ``export_evidence``
    (labelling a whole PV day), a day without a PV's export (:func:`_exports`: a load
    only lower at noon, a battery's block of export) shows PV only if both readings
    do: the presence is then the lesser of the two; a day with it shows PV if either
    reading does (a device's long run distorts one of them, a misread step the
    other): the presence is then the greater.
    """
    sky = window.clear_sky
    signal = window.detection.signal
    samples = max(1, round(ENVELOPE_S / signal.resolution_s))
    readings = []
    for net_kw in (signal.p_kw, window.destepped_kw):
        export = _rolling_max(-net_kw, samples)
        chosen = mask & (sky >= model.daylight_w_per_m2) & ~np.isnan(export)
        if np.count_nonzero(chosen) < MIN_DAYLIGHT_SAMPLES:
            return math.nan, math.nan, 0.0
        readings.append(_line_fit(sky[chosen], export[chosen]))
    presences = [_presence(c, k, model) for c, k in readings]
    presence = float(np.mean(presences))
    if export_evidence:
        # A PV's export shows a generator: the reading a device did not distort is
        # the one that shows the sun (a distortion seldom makes the sun's shape).
        # Without it, both readings have to show the sun.
        exports = _exports(window, model, mask, samples)
        presence = max(presences) if exports else min(presences)
    correlation = float(np.mean([c for c, _ in readings]))
    peak_kw = float(np.mean([k for _, k in readings]))
    return correlation, peak_kw, presence


def _line_fit(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    """Correlation of ``y`` with ``x`` and the least-squares slope per 1000 of ``x``.

    Both from one set of centred sums (what ``np.corrcoef`` and ``np.polyfit`` compute
    each on its own, at several times the cost on a day of samples); ``NaN`` for both
    if either is constant.
    """
    dx = x - x.mean()
    dy = y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx == 0.0 or syy == 0.0:
        return math.nan, math.nan
    sxy = float(dx @ dy)
    correlation = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    return correlation, 1000.0 * sxy / sxx


def _exports(
    window: Window, model: ClearSkyModel, mask: npt.NDArray[np.bool_], samples: int
) -> bool:
    """Whether the daylight samples of ``mask`` show a PV's export, not a device's.

    The upper envelope over ``samples`` of the meter's export (below zero: not a load
    that is only lower at noon) exceeds :data:`EXPORT_EVIDENCE_KW` in at least
    :data:`MIN_EXPORT_SHARE` of the daylight samples, and either the signal less the
    closed pulses (:attr:`Window.destepped_kw`) does so too, or the export follows the
    clear sky where it is (correlation at least :data:`MIN_EXPORT_CORRELATION`). PV
    on an overcast day still exports a little along the sun's curve; a battery
    discharging at noon exports a flat block, which its closed pulse accounts for.
    """
    sky = window.clear_sky
    lit = mask & (sky >= model.daylight_w_per_m2)

    def exporting(net_kw: FloatArray) -> tuple[npt.NDArray[np.bool_], FloatArray, float]:
        export = _rolling_max(np.maximum(-net_kw, 0.0), samples)
        chosen = lit & ~np.isnan(export)
        found = chosen & (export > EXPORT_EVIDENCE_KW)
        total = max(int(np.count_nonzero(chosen)), MIN_DAYLIGHT_SAMPLES)
        share = int(np.count_nonzero(found)) / total
        return found, export, share

    found, export, share = exporting(window.detection.signal.p_kw)
    if share < MIN_EXPORT_SHARE:
        return False
    if exporting(window.destepped_kw)[2] >= MIN_EXPORT_SHARE:
        return True
    if np.count_nonzero(found) < MIN_DAYLIGHT_SAMPLES:
        return False
    correlation, _ = _line_fit(sky[found], export[found])
    return correlation >= MIN_EXPORT_CORRELATION  # False for NaN (constant)


def _presence(correlation: float, peak_kw: float, model: ClearSkyModel) -> float:
    """Whether the day shows PV: export follows the clear sky, with a PV's amplitude.

    1 from ``min_daylight_correlation`` and ``peak.min_kw`` on, falling linearly to 0 at
    0.3 less correlation and at half the peak.
    """
    if math.isnan(correlation) or math.isnan(peak_kw):
        return 0.0
    low = model.min_daylight_correlation - 0.3
    shape = float(np.clip((correlation - low) / 0.3, 0.0, 1.0))
    half = 0.5 * model.peak.min_kw
    size = (
        float(np.clip((peak_kw - half) / half, 0.0, 1.0)) if peak_kw <= model.peak.max_kw else 0.0
    )
    return shape * size


def held_share(window: Window, pulse: Pulse) -> float:
    """Share of the pulse's samples in which the rest of the signal stayed level.

    The signal less every closed pulse (:attr:`Window.destepped_kw`) is the household
    without its devices: while a device that really ran is on, it stays near its level
    before the pulse. A pulse that paired two unrelated steps (an appliance's on with
    another's off, hours later) takes out a step that was not there, and leaves a hole
    of its own size: its samples fall by more than half the step. A pulse that was not
    taken out (one a reversal ended) must show in the rest instead: its samples stay
    within half the step of the level before plus the step.
    """
    if pulse.off is None:
        return 1.0
    rest = window.destepped_kw
    on = pulse.on.index + pulse.on.ramp_samples
    off = pulse.off.index
    if off <= on:
        return 1.0
    before = rest[max(0, pulse.on.index - HELD_LEVEL_SAMPLES) : pulse.on.index]
    before = before[~np.isnan(before)]
    inside = rest[on:off]
    inside = inside[~np.isnan(inside)]
    if before.size == 0 or inside.size == 0:
        return 1.0
    expected_kw = float(np.median(before)) + (0.0 if pulse.matched else pulse.delta_kw)
    drop = pulse.sign * (inside - expected_kw)
    return float(np.mean(drop >= -0.5 * abs(pulse.delta_kw)))


def sustained_before(window: Window, pulse: Pulse) -> float:
    """Share of the :data:`SUSTAIN_S` before a pulse in which the power was at its level.

    At its level before the step: above the level after by at least half the step
    (for a falling step; below, for a rising one).
    """
    signal = window.detection.signal
    samples = max(1, round(SUSTAIN_S / signal.resolution_s))
    before = signal.p_kw[max(0, pulse.on.index - samples) : pulse.on.index]
    before = before[~np.isnan(before)]
    if before.size == 0:
        return 1.0
    rise = -pulse.sign * (before - pulse.on.level_after_kw)
    return float(np.mean(rise >= 0.5 * abs(pulse.delta_kw)))


def drawn_before(window: Window, pulse: Pulse) -> float:
    """Return what the household drew before the pulse besides its devices' runs (kW).

    The signal less every closed pulse (:attr:`Window.destepped_kw`) just before the
    pulse, plus what PV made then if the day shows PV (the day's peak along the
    clear-sky curve): the loads that were on all along, the base load among them.

    Parameters
    ----------
    window
        The window whose detection found ``pulse``.
    pulse
        The pulse whose opening step is looked before.

    Returns
    -------
    float
        The median over :data:`HELD_LEVEL_SAMPLES` samples before the pulse (kW),
        PV's output added; ``inf`` when those samples are all missing.
    """
    index = pulse.on.index
    before = window.destepped_kw[max(0, index - HELD_LEVEL_SAMPLES) : index]
    before = before[~np.isnan(before)]
    if before.size == 0:
        return math.inf
    drawn_kw = float(np.median(before))
    model = window.pv_model
    if (
        model is not None
        and not window.is_night(pulse.start_s)
        and 0 <= index < len(window.clear_sky)
    ):
        _, peak_kw, presence = window.pv_day(model, pulse.start_s)
        if presence >= 0.5 and not math.isnan(peak_kw):
            drawn_kw += max(peak_kw, 0.0) * float(window.clear_sky[index]) / 1000.0
    return drawn_kw


def floor_factor(size_kw: float, lowest_kw: float, floor_kw: float | None) -> float:
    """1 from ``floor_kw`` on, falling linearly to 0 at ``lowest_kw`` (1 without a floor)."""
    if floor_kw is None or size_kw >= floor_kw or floor_kw <= lowest_kw:
        return 1.0
    return max(0.0, (size_kw - lowest_kw) / (floor_kw - lowest_kw))


def clip_share(share: float) -> float:
    """1 from a share of 0.8 on, 0 at 0.5 and below."""
    return float(np.clip((share - 0.5) / 0.3, 0.0, 1.0))


def held_factor(window: Window, pulse: Pulse) -> float:
    """1 if the pulse held (:func:`held_share` >= 0.8), 0 at 0.5 and below."""
    return clip_share(held_share(window, pulse))


def quietness(window: Window, pulse: Pulse) -> float:
    """1 if few steps fall inside the pulse, falling to 0 at cloud-like rates.

    Steps per hour strictly between the pulse's on and off steps, those that moved
    reactive power (a compressor's, not a cloud's) left out: at most
    :data:`QUIET_STEPS_PER_HOUR` (a household appliance or two) scores 1, twice as
    many 0.

    Parameters
    ----------
    window
        The window whose detection found ``pulse``.
    pulse
        The pulse held between its on and off steps.

    Returns
    -------
    float
        0 to 1, linear in the steps per hour in between; 1 for an open pulse or one
        of no duration.
    """
    if pulse.off is None or pulse.duration_s <= 0:
        return 1.0
    inside = sum(
        1
        for step in window.detection.steps
        if pulse.on.time_s < step.time_s < pulse.off.time_s and not _reactive_step(step)
    )
    rate = inside / (pulse.duration_s / SECONDS_PER_HOUR)
    return float(np.clip(2.0 - rate / QUIET_STEPS_PER_HOUR, 0.0, 1.0))
