"""How well each device model explains what the meter shows in a window: a score and the energy.

One function per signature kind of the event-model library. Each looks at the events
that :func:`gridmatch.der_validation.detection.detect` found around a window
``[start_s, end_s)`` and returns a :class:`Fit`: a score in ``[0, 1]`` (already scaled
by the model's ``specificity``), the event the device's delivery started with, and the
energy the device delivered inside the window *by that model's reading of the signal*:

* step signatures (``step_hold``, ``setpoint``, ``step_change``): the pulse's step times
  the time it held inside the window. The step is measured on the samples around it,
  so what the rest of the household does meanwhile does not count;
* ``cycling``: the compressor's on-time inside the window times its step (import), or
  its mean power over the cycles before the window less what it still drew inside
  (curtail); on-time is read against the lowest power of the surrounding period;
* ``clear_sky``: the net export inside the window (export, baseline zero exchange), or
  the mean of the steps at the start and end of the curtailment times its duration.

``direction`` is the sign of the change the operation makes to ``p_kw`` (import from
the grid): +1 for import and for curtailing a generator, -1 for export and for
curtailing or shifting a load (see :func:`direction`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridmatch.der_validation.clearsky import clear_sky_ghi
from gridmatch.der_validation.detection import Detection, Pulse, Step
from gridmatch.scenario_io.der_models import (
    ClearSkyModel,
    CyclingModel,
    DeviceModel,
    SetpointModel,
    SiteSpec,
    StepChangeModel,
    StepHoldModel,
)
from gridmatch.units import SECONDS_PER_HOUR, FloatArray

# A step-type device whose step recurs this often within the window is cycling, not it.
RECURRENCE_LIMIT = 2
RECURRENCE_FACTOR = 0.3
# A slow ramp hints at another device, but a step that met another one looks slow too.
SLOW_RAMP_FACTOR = 0.9
NO_EXPORT_FACTOR = 0.85
# Magnitudes of recurring pulses that count as "the same" device switching.
SAME_MAGNITUDE = 0.3
# Share of its window a device that stopped early still has to hold for (see hold score).
MIN_HOLD_SHARE = 0.3
# Without a generator, a load cannot take the meter this far below zero (kW).
EXPORT_MARGIN_KW = 0.3
NIGHT_SIGN_FACTOR = 0.4
DAYLIGHT_SHARE = 0.5
# Reactive power off the model's ratio (beyond this slack) scales the score down.
REACTIVE_SLACK = 0.05
REACTIVE_FACTOR = 0.5
# PV's clouds are read through the upper envelope of export over this long.
ENVELOPE_S = 1800
PV_MIN_HOLD_S = 600
MIN_DAYLIGHT_SAMPLES = 10


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


@dataclass
class Window:
    """The detected events around one window and what the models need besides.

    ``align_s`` is how far from the window's start a device may start; ``day_fit``, if
    given, returns a PV model's fit of the whole day around an instant (correlation and
    peak kW, see :func:`daylight_fit`), computed once per meter and day by the caller,
    as a window's own stretch is too short to show the day's curve.
    """

    detection: Detection
    site: SiteSpec
    align_s: float
    daylight_w_per_m2: float = 50.0
    day_fit: Callable[[ClearSkyModel, float], tuple[float, float]] | None = None

    def pv_day(self, model: ClearSkyModel, time_s: float) -> tuple[float, float]:
        """Return the PV fit of the day around ``time_s`` (this stretch's without ``day_fit``)."""
        if self.day_fit is not None:
            return self.day_fit(model, time_s)
        return daylight_fit(self, model, np.ones(len(self.detection.signal.p_kw), dtype=bool))

    @cached_property
    def clear_sky(self) -> FloatArray:
        """Clear-sky irradiance at the mid-point of every sample (W/m^2)."""
        signal = self.detection.signal
        offsets = (np.arange(len(signal.p_kw), dtype=np.float64) + 0.5) * signal.resolution_s
        mids: FloatArray = signal.start_s + offsets
        return clear_sky_ghi(self.site, mids)

    @cached_property
    def destepped_kw(self) -> FloatArray:
        """The signal less every detected step: base load and PV, without devices."""
        signal = self.detection.signal
        steps = np.zeros(len(signal.p_kw))
        for step in self.detection.steps:
            end = step.index + step.ramp_samples - 1
            steps[min(end, len(steps) - 1)] += step.delta_kw
        return signal.p_kw - np.cumsum(steps)

    def is_night(self, time_s: float) -> bool:
        """Whether the clear sky at ``time_s`` is darker than the daylight threshold."""
        index = self.detection.signal.index(time_s)
        if not 0 <= index < len(self.clear_sky):
            return False
        return bool(self.clear_sky[index] < self.daylight_w_per_m2)


def fit_model(
    name: str,
    model: DeviceModel,
    operation: str,
    window: Window,
    start_s: float,
    end_s: float,
    *,
    committed: bool = True,
) -> Fit:
    """Score ``model`` (device type ``name``) doing ``operation`` in ``[start_s, end_s)``.

    Parameters
    ----------
    committed
        The window is a commitment's: a device that stopped early must still have held
        for a share of it (a partial delivery). ``False`` when the window is a detected
        pulse itself (classification): then the model's whole minimum hold applies.
    """
    sign = direction(model.kind, operation)
    if isinstance(model, CyclingModel):
        if sign > 0:
            fit = _cycling_on(name, model, operation, window, start_s, end_s)
        else:
            fit = _cycling_off(name, model, operation, window, start_s, end_s)
    elif isinstance(model, ClearSkyModel):
        if sign < 0:
            fit = _clear_sky_export(name, model, operation, window, start_s, end_s)
        else:
            fit = _clear_sky_curtail(name, model, operation, window, start_s, end_s, committed)
    else:
        fit = _stepped(name, model, operation, sign, window, start_s, end_s, committed)
    if model.specificity < 1.0:
        return Fit(**{**fit.__dict__, "score": fit.score * model.specificity})
    return fit


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


def _closeness(error: float, tolerance: float) -> float:
    """1 within half the tolerance, 0.5 at the tolerance, 0 at one and a half."""
    return float(np.clip(1.0 - max(0.0, error - tolerance / 2.0) / tolerance, 0.0, 1.0))


def _in_range(value: float, low: float, high: float, margin: float = 0.1) -> float:
    if low <= value <= high:
        return 1.0
    distance = (low - value) / low if value < low else (value - high) / high
    return float(np.clip(1.0 - distance / margin, 0.0, 1.0))


def _recurrences(window: Window, pulse: Pulse, horizon_s: float) -> int:
    """Count steps like this pulse's (sign, size) after it ended within ``horizon_s``."""
    size = abs(pulse.on.delta_kw)
    return sum(
        1
        for step in window.detection.steps
        if step.sign == pulse.on.sign
        and pulse.end_s <= step.time_s <= pulse.start_s + horizon_s
        and abs(abs(step.delta_kw) - size) <= SAME_MAGNITUDE * size
    )


def _reactive(model: DeviceModel, delta_kw: float, delta_kvar: float) -> float:
    """1 if the step's reactive share fits the model (or is unknown), else a penalty."""
    if model.reactive_ratio is None or math.isnan(delta_kvar) or delta_kw == 0.0:
        return 1.0
    ratio = delta_kvar / delta_kw
    low, high = model.reactive_ratio.min, model.reactive_ratio.max
    return 1.0 if low - REACTIVE_SLACK <= ratio <= high + REACTIVE_SLACK else REACTIVE_FACTOR


def _ramp_rate(pulse: Pulse, resolution_s: int) -> float:
    return _step_rate(pulse.on, resolution_s)


def _step_rate(step: Step, resolution_s: int) -> float:
    return abs(step.delta_kw) / (step.ramp_samples * resolution_s / 60.0)


def _stepped(
    name: str,
    model: StepHoldModel | SetpointModel | StepChangeModel,
    operation: str,
    sign: int,
    window: Window,
    start_s: float,
    end_s: float,
    committed: bool = True,
) -> Fit:
    """Step signatures: one pulse of the operation's sign that starts at the window start."""
    resolution_s = window.detection.signal.resolution_s
    length_s = end_s - start_s
    best: Fit | None = None
    for pulse in aligned_pulses(window, sign, start_s):
        size = abs(pulse.delta_kw)
        hold_needed = (
            min(model.min_hold_s, MIN_HOLD_SHARE * length_s) if committed else model.min_hold_s
        )
        hold = min(1.0, pulse.duration_s / hold_needed) if hold_needed > 0 else 1.0
        tapered = pulse.off is not None and pulse.off.ramp_samples >= 3
        ramp_samples = pulse.on.ramp_samples
        detail: list[str] = []
        if isinstance(model, StepHoldModel):
            error = min(abs(size - level) / level for level in model.levels_kw)
            magnitude = _closeness(error, model.level_tolerance)
            ramp = 1.0 if (ramp_samples - 1) * resolution_s <= model.max_ramp_s else 0.5
            end = model.abrupt_end_factor if (pulse.off is not None and not tapered) else 1.0
            score = magnitude * hold * ramp * end
            detail.append(f"level error {error:.1%}")
        elif isinstance(model, SetpointModel):
            magnitude = _in_range(size, model.setpoint.min_kw, 2.0 * model.setpoint.max_kw)
            # A step inside one interval takes two samples; one more if it met another.
            ramp = 1.0 if ramp_samples <= model.max_ramp_intervals + 2 else SLOW_RAMP_FACTOR
            flat_end = model.tapered_end_factor if tapered else 1.0
            score = model.base_score * magnitude * hold * ramp * flat_end
            if pulse.reversal or (pulse.on.sign_change and window.is_night(pulse.start_s)):
                score = min(1.0, score * 1.25)
                detail.append("reverses" if pulse.reversal else "crosses zero")
            elif sign < 0 and pulse.on.level_after_kw > 0.0:
                # Discharging without reaching export: a load switching off looks the same.
                score *= NO_EXPORT_FACTOR
        else:
            magnitude = 1.0
            ramp = (
                1.0 if (ramp_samples - 2) * resolution_s <= model.max_ramp_s else SLOW_RAMP_FACTOR
            )
            score = magnitude * hold * ramp
            below_zero = pulse.on.level_after_kw < -EXPORT_MARGIN_KW
            if sign < 0 and below_zero and window.is_night(pulse.start_s):
                score *= NIGHT_SIGN_FACTOR
                detail.append("a load cannot export at night")
        score *= _reactive(model, pulse.delta_kw, pulse.on.delta_q_kvar)
        recurring = _recurrences(window, pulse, max(length_s, SECONDS_PER_HOUR))
        if recurring >= RECURRENCE_LIMIT:
            score *= RECURRENCE_FACTOR
            detail.append(f"recurs {recurring} times (cycling)")
        inside_s = pulse.overlap_s(start_s, end_s)
        fit = Fit(
            device_type=name,
            operation=operation,
            score=score,
            event=True,
            start_s=pulse.start_s,
            end_s=pulse.end_s,
            delta_kw=pulse.delta_kw,
            delta_kvar=pulse.on.delta_q_kvar,
            ramp_kw_per_min=_ramp_rate(pulse, resolution_s),
            delivered_kwh=size * inside_s / SECONDS_PER_HOUR,
            detail=", ".join(
                [f"step {pulse.delta_kw:+.2f} kW held {pulse.duration_s:.0f} s", *detail]
            ),
        )
        if best is None or fit.score > best.score:
            best = fit
    if best is None:
        return Fit(name, operation, 0.0, False, detail="no step at the start")
    return best


def _compressor_starts(window: Window, model: CyclingModel) -> list[Step]:
    """Rising steps the size of the model's compressor."""
    low = model.compressor.min_kw * (1.0 - model.magnitude_tolerance)
    high = model.compressor.max_kw * (1.0 + model.magnitude_tolerance)
    return [s for s in window.detection.steps if low <= s.delta_kw <= high]


def _chain(starts: list[Step], model: CyclingModel, first: Step) -> list[Step]:
    """Follow the run of compressor starts from ``first``: similar size, a period apart."""
    chain = [first]
    low, high = 0.7 * model.period.min_s, 1.3 * model.period.max_s
    size = first.delta_kw
    for step in starts:
        gap = step.time_s - chain[-1].time_s
        if gap <= 0:
            continue
        if gap > high:
            break
        if gap >= low and abs(step.delta_kw - size) <= model.magnitude_tolerance * size:
            chain.append(step)
    return chain


def _period_score(chain: list[Step], model: CyclingModel) -> tuple[float, float]:
    """Whether the chain's period is the model's, and regular; and the period (s)."""
    if len(chain) < 2:
        return 0.0, math.nan
    spacing = np.diff([s.time_s for s in chain])
    period = float(np.median(spacing))
    score = _in_range(period, model.period.min_s, model.period.max_s, 0.3)
    if len(spacing) >= 2:
        variation = float(np.std(spacing) / np.mean(spacing))
        limit = model.max_period_variation
        score *= float(np.clip(1.0 - (variation - limit) / limit, 0.0, 1.0))
    q = [s.delta_q_kvar for s in chain]
    if not any(math.isnan(v) for v in q):
        p = float(np.median([s.delta_kw for s in chain]))
        score *= _reactive(model, p, float(np.median(q)))
    return score, period


def _run_energy_kwh(
    window: Window, chain: list[Step], period_s: float, start_s: float, end_s: float
) -> tuple[float, float, float]:
    """Energy of a run of cycles inside ``[start_s, end_s)``, its compressor kW and duty.

    Compressor power (median step) times duty (median on-time over the period) times
    the time the run covers inside the window: a start the detection missed, or an
    appliance switching meanwhile, does not change it.
    """
    detection = window.detection
    index = {id(step): k for k, step in enumerate(detection.steps)}
    compressor_kw = float(np.median([s.delta_kw for s in chain]))
    if math.isnan(period_s):
        return 0.0, compressor_kw, math.nan
    on_s = [min(detection.pulse_from(index[id(s)]).duration_s, period_s) for s in chain]
    duty = float(np.median(on_s)) / period_s
    covered_s = max(0.0, min(chain[-1].time_s + period_s, end_s) - max(chain[0].time_s, start_s))
    return compressor_kw * duty * covered_s / SECONDS_PER_HOUR, compressor_kw, duty


def _cycling_on(
    name: str, model: CyclingModel, operation: str, window: Window, start_s: float, end_s: float
) -> Fit:
    """Fit a compressor that starts cycling at the window's start."""
    starts = _compressor_starts(window, model)
    needed = max(2, min(model.min_cycles, int((end_s - start_s) // model.period.max_s) + 1))
    best: Fit | None = None
    for first in starts:
        if abs(first.time_s - start_s) > window.align_s:
            continue
        chain = _chain([s for s in starts if s.time_s < end_s], model, first)
        period_score, period = _period_score(chain, model)
        count = min(1.0, len(chain) / needed)
        energy, compressor_kw, _ = _run_energy_kwh(window, chain, period, start_s, end_s)
        last_s = chain[-1].time_s + (period if not math.isnan(period) else 0.0)
        fit = Fit(
            device_type=name,
            operation=operation,
            score=count * period_score,
            event=True,
            start_s=first.time_s,
            end_s=min(last_s, end_s),
            delta_kw=compressor_kw,
            delta_kvar=first.delta_q_kvar,
            ramp_kw_per_min=_step_rate(first, window.detection.signal.resolution_s),
            period_s=period,
            delivered_kwh=energy,
            detail=f"{len(chain)} compressor starts (needs {needed}), period {period:.0f} s",
        )
        if best is None or fit.score > best.score:
            best = fit
    if best is None:
        return Fit(name, operation, 0.0, False, detail="no compressor start at the start")
    return best


def _cycling_off(
    name: str, model: CyclingModel, operation: str, window: Window, start_s: float, end_s: float
) -> Fit:
    """Fit a compressor that cycled before the window and stops in it."""
    starts = _compressor_starts(window, model)
    lookback_s = 3 * model.period.max_s
    before = [s for s in starts if start_s - lookback_s <= s.time_s < start_s]
    if len(before) < 2:
        return Fit(name, operation, 0.0, False, detail="no cycling before the window")
    chains = [_chain(before, model, first) for first in before]
    chain = max(chains, key=len)
    period_score, period = _period_score(chain, model)
    if len(chain) < 2:
        return Fit(name, operation, 0.0, False, detail="no regular cycling before the window")
    _, compressor_kw, duty = _run_energy_kwh(window, chain, period, start_s, end_s)
    mean_kw = compressor_kw * duty
    inside = [s for s in starts if start_s + window.align_s <= s.time_s < end_s]
    resumed_s = inside[0].time_s if inside else end_s
    hold_needed = max(MIN_HOLD_SHARE * (end_s - start_s), 1.0)
    hold = min(1.0, (resumed_s - start_s) / hold_needed)
    still_kwh = 0.0
    if inside:
        again = _chain(inside, model, inside[0])
        still_kwh = _run_energy_kwh(window, again, period, start_s, end_s)[0]
        if len(again) < 2:  # a lone start: one cycle of the duty seen before
            still_kwh = compressor_kw * duty * period / SECONDS_PER_HOUR
    avoided_kwh = mean_kw * (end_s - start_s) / SECONDS_PER_HOUR - still_kwh
    return Fit(
        device_type=name,
        operation=operation,
        score=period_score * hold,
        event=True,
        start_s=start_s,
        end_s=resumed_s,
        delta_kw=-mean_kw,
        period_s=period,
        delivered_kwh=max(0.0, avoided_kwh),
        detail=(
            f"cycled {len(chain)} times before (mean {mean_kw:.2f} kW), "
            f"{len(inside)} compressor starts inside"
        ),
    )


def daylight_fit(
    window: Window, model: ClearSkyModel, mask: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    """Correlation of export with the clear sky on the daylight samples of ``mask``, and peak kW."""
    sky = window.clear_sky
    signal = window.detection.signal
    samples = max(1, round(ENVELOPE_S / signal.resolution_s))
    export = (
        pd.Series(-window.destepped_kw)
        .rolling(samples, center=True, min_periods=1)
        .max()
        .to_numpy(dtype=np.float64)
    )
    chosen = mask & (sky >= model.daylight_w_per_m2) & ~np.isnan(export)
    if np.count_nonzero(chosen) < MIN_DAYLIGHT_SAMPLES:
        return math.nan, math.nan
    x, y = sky[chosen], export[chosen]
    if np.std(x) == 0.0 or np.std(y) == 0.0:
        return math.nan, math.nan
    correlation = float(np.corrcoef(x, y)[0, 1])
    slope = float(np.polyfit(x, y, 1)[0])
    return correlation, slope * 1000.0


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


def _clear_sky_export(
    name: str, model: ClearSkyModel, operation: str, window: Window, start_s: float, end_s: float
) -> Fit:
    """PV export in the window follows the site's clear-sky curve."""
    signal = window.detection.signal
    first, last = signal.index(start_s), signal.index(end_s)
    inside = np.zeros(len(signal.p_kw), dtype=bool)
    inside[max(first, 0) : max(last, 0)] = True
    sky = window.clear_sky[inside]
    daylight = float(np.mean(sky >= model.daylight_w_per_m2)) if sky.size else 0.0
    correlation, peak_kw = window.pv_day(model, start_s)
    score = _presence(correlation, peak_kw, model) * min(1.0, daylight / DAYLIGHT_SHARE)
    export = np.clip(-signal.p_kw[inside], 0.0, None)
    delivered = float(np.nansum(export)) * signal.resolution_s / SECONDS_PER_HOUR
    return Fit(
        device_type=name,
        operation=operation,
        score=score,
        event=False,
        start_s=start_s,
        end_s=end_s,
        daylight_correlation=correlation,
        delivered_kwh=delivered,
        detail=(
            f"daylight correlation {correlation:.2f}, peak {peak_kw:.1f} kW, "
            f"{daylight:.0%} of the window in daylight"
        ),
    )


def _clear_sky_curtail(
    name: str,
    model: ClearSkyModel,
    operation: str,
    window: Window,
    start_s: float,
    end_s: float,
    committed: bool = True,
) -> Fit:
    """PV output steps down at the window's start (import rises) and back at its end."""
    signal = window.detection.signal
    correlation, peak_kw = window.pv_day(model, start_s)
    present = _presence(correlation, peak_kw, model)
    best: Fit | None = None
    for pulse in aligned_pulses(window, 1, start_s):
        if window.is_night(pulse.start_s):
            continue
        size = abs(pulse.delta_kw)
        # What PV gave at the two steps, scaled along the clear-sky curve in between.
        sky = window.clear_sky
        lit = model.daylight_w_per_m2
        scales = [size / sky[pulse.on.index]] if sky[pulse.on.index] > lit else []
        off = pulse.off
        if off is not None and 0 <= off.index < len(sky) and sky[off.index] > lit:
            scales.append(abs(off.delta_kw) / sky[off.index])
        if not scales:
            continue
        first_i = max(signal.index(max(pulse.start_s, start_s)), 0)
        last_i = min(signal.index(min(pulse.end_s, end_s)), len(sky))
        lost_kwh = (
            float(np.mean(scales))
            * float(np.sum(sky[first_i:last_i]))
            * signal.resolution_s
            / SECONDS_PER_HOUR
        )
        within = _in_range(size, model.peak.min_kw, max(peak_kw, model.peak.min_kw) * 1.2)
        # Held like a set-point for a while (a cloud's shadow passes in minutes).
        hold_needed = (
            min(PV_MIN_HOLD_S, MIN_HOLD_SHARE * (end_s - start_s)) if committed else PV_MIN_HOLD_S
        )
        hold = min(1.0, pulse.duration_s / hold_needed) if hold_needed > 0 else 1.0
        fit = Fit(
            device_type=name,
            operation=operation,
            score=present * within * hold,
            event=True,
            start_s=pulse.start_s,
            end_s=pulse.end_s,
            delta_kw=pulse.delta_kw,
            ramp_kw_per_min=_ramp_rate(pulse, signal.resolution_s),
            daylight_correlation=correlation,
            delivered_kwh=lost_kwh,
            detail=f"PV output down {size:.2f} kW, daylight correlation outside {correlation:.2f}",
        )
        if best is None or (fit.score, fit.delivered_kwh) > (best.score, best.delivered_kwh):
            best = fit
    if best is None:
        return Fit(
            name,
            operation,
            0.0,
            False,
            daylight_correlation=correlation,
            detail="no step of PV output at the start",
        )
    return best
