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

import itertools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d

from gridmatch.der_validation.clearsky import clear_sky_ghi
from gridmatch.der_validation.detection import MAX_PAIR_S, Detection, Pulse, Step
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
# A charger's curtailment with no session start before it scores this much.
NO_SESSION_FACTOR = 0.5
SAME_SESSION = 0.15
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
# Steps whose kvar differ by more than this (or SAME_MAGNITUDE of it) are two devices'.
REACTIVE_SAME_KVAR = 0.1
# A step that moved at least this share of its kW as kvar (a motor's) is no cloud's.
REACTIVE_STEP_SHARE = 0.1
# PV's clouds are read through the upper envelope of export over this long (s).
ENVELOPE_S = 3600
PV_MIN_HOLD_S = 600
# Unasked for, a curtailment outlasts the clouds' shadows (minutes) by this much (s).
PV_UNASKED_HOLD_S = 1200
# Steps per hour inside a PV curtailment still taken as the household's, not clouds'.
QUIET_STEPS_PER_HOUR = 3.0
STILL_EXPORTING_FACTOR = 0.7
# A PV curtailment's step is at most this much above the PV's clear-sky output then.
PV_SIZE_MARGIN = 1.3
MIN_AVAILABLE_KW = 0.1
# A pulse a PV site's clouds could make is taken as a device's from this long on (s).
CLOUD_HOLD_S = 2400
# Samples before a pulse that give the level the rest of the signal holds.
HELD_LEVEL_SAMPLES = 5
# A load that switches off had been on this long before (s), unless asked for.
SUSTAIN_S = 1800
MIN_DAYLIGHT_SAMPLES = 10
# A gap this close to two periods (relative) is one lost compressor start.
MISSED_CYCLE_SLACK = 0.2


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
    day_fit: Callable[..., tuple[float, float, float]] | None = None
    pv_model: ClearSkyModel | None = None
    curtailed_s: tuple[float, float] | None = None
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


def _reactive(model: DeviceModel, delta_kw: float, delta_kvar: float) -> float:
    """1 if the step's reactive share fits the model (or is unknown), else a penalty."""
    if model.reactive_ratio is None or math.isnan(delta_kvar) or delta_kw == 0.0:
        return 1.0
    ratio = delta_kvar / delta_kw
    low, high = model.reactive_ratio.min, model.reactive_ratio.max
    return 1.0 if low - REACTIVE_SLACK <= ratio <= high + REACTIVE_SLACK else REACTIVE_FACTOR


def _ends_as_committed(window: Window, pulse: Pulse, end_s: float) -> Pulse:
    """Return the pulse held to the committed end if a step of its size undoes it there.

    A pulse that closed early may have been closed by another device's off step of
    the same size; an off step of its size at the committed end (within the alignment
    tolerance) is then the device's own.
    """
    if pulse.off is None or pulse.end_s >= end_s - window.align_s:
        return pulse
    spec = window.detection.spec
    allowed_kw = max(spec.pair_tolerance * abs(pulse.delta_kw), spec.pair_tolerance_kw)
    for step in window.detection.steps:
        if (
            abs(step.time_s - end_s) <= window.align_s
            and step.sign != pulse.sign
            and abs(step.delta_kw + pulse.delta_kw) <= allowed_kw
        ):
            return Pulse(pulse.on, step, pulse.delta_kw, step.time_s, pulse.reversal)
    return pulse


def _session_before(window: Window, pulse: Pulse) -> bool:
    """Whether a rising step of the pulse's size came before it (within a pair's reach)."""
    size = abs(pulse.delta_kw)
    return any(
        step.sign > 0
        and pulse.start_s - MAX_PAIR_S <= step.time_s < pulse.start_s
        and abs(step.delta_kw - size) <= SAME_SESSION * size
        for step in window.detection.steps
    )


def _held_kw(pulse: Pulse, size_kw: float, committed: bool) -> float:
    """Return the power a committed step device held: its larger on or off step.

    Each step is measured against what the rest of the household did around it; the
    household's own load rising meanwhile (an evening's) reads a discharge's step
    short far more often than long. Only a pulse closed by a step of its own size has
    two readings.
    """
    if not committed or pulse.off is None or not pulse.matched:
        return size_kw
    return max(size_kw, abs(pulse.off.delta_kw))


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
    for found in aligned_pulses(window, sign, start_s):
        pulse = _ends_as_committed(window, found, end_s) if committed else found
        size = abs(pulse.delta_kw)
        hold_needed = (
            min(model.min_hold_s, MIN_HOLD_SHARE * length_s) if committed else model.min_hold_s
        )
        if not committed and window.cloud_like(pulse):
            # Unasked for, a run clouds could make must outlast their shadows and spells.
            hold_needed = max(hold_needed, CLOUD_HOLD_S)
        hold = min(1.0, pulse.duration_s / hold_needed) if hold_needed > 0 else 1.0
        if not committed and hold < 1.0:
            hold *= hold  # classification: a short pulse is an appliance's or a cloud's
        tapered = pulse.off is not None and pulse.off.ramp_samples >= 3
        ramp_samples = pulse.on.ramp_samples
        detail: list[str] = []
        if isinstance(model, StepHoldModel):
            # The level is read on the on step, or on the off step when that one fits a
            # level better (a step that met another device's is measured with it).
            # (Asked for only: unasked, any pulse would get two tries at a level.)
            off = pulse.off
            readings = [size] if off is None or not committed else [size, abs(off.delta_kw)]
            size, error = min(
                (
                    (reading, min(abs(reading - level) / level for level in model.levels_kw))
                    for reading in readings
                ),
                key=lambda pair: pair[1],
            )
            magnitude = _closeness(error, model.level_tolerance)
            ramp = 1.0 if (ramp_samples - 1) * resolution_s <= model.max_ramp_s else 0.5
            end = model.abrupt_end_factor if (pulse.off is not None and not tapered) else 1.0
            score = magnitude * hold * ramp * end
            detail.append(f"level error {error:.1%}")
            if not committed and sign < 0 and not _session_before(window, pulse):
                # Unasked for, a charger can only stop a session it started.
                score *= NO_SESSION_FACTOR
                detail.append("no session began before")
        elif isinstance(model, SetpointModel):
            magnitude = _in_range(size, model.setpoint.min_kw, 2.0 * model.setpoint.max_kw)
            # A step inside one interval takes two samples; one more if it met another.
            ramp = 1.0 if ramp_samples <= model.max_ramp_intervals + 2 else SLOW_RAMP_FACTOR
            # A slow end hints at a charger's taper, unasked for; a committed battery's
            # off step that met another device's looks slow too.
            flat_end = model.tapered_end_factor if tapered and not committed else 1.0
            score = model.base_score * magnitude * hold * ramp * flat_end
            # Reversing, or discharging into export after dark (no load can): a battery.
            into_export = sign < 0 and pulse.on.sign_change
            # Unasked for, a reversal counts where the meter's flow turned: a step that
            # only undid some other open pulse is any device's.
            reverses = pulse.reversal and (committed or pulse.on.sign_change)
            if reverses or (into_export and window.is_night(pulse.start_s)):
                score = min(1.0, score * 1.25)
                detail.append("reverses" if pulse.reversal else "crosses zero")
            elif sign < 0 and pulse.on.level_after_kw > 0.0:
                # Discharging without reaching export: a load switching off looks the same.
                score *= NO_EXPORT_FACTOR
            elif (
                not committed
                and sign < 0
                and pulse.on.level_before_kw < -EXPORT_MARGIN_KW
                and not window.is_night(pulse.start_s)
            ):
                # Unasked for, a discharge while the sun already makes the meter export
                # is less likely than a load that stopped.
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
        # Reactive power fits if either step shows the device's ratio (another device's
        # kvar can fall into one of them, rarely into both).
        reactive = _reactive(model, pulse.delta_kw, pulse.on.delta_q_kvar)
        if reactive < 1.0 and pulse.off is not None:
            reactive = max(reactive, _reactive(model, pulse.off.delta_kw, pulse.off.delta_q_kvar))
        score *= reactive
        held = 1.0 if committed else _held_factor(window, pulse)
        if not committed and sign < 0:
            # Unasked for, a load switching off (or a battery starting to discharge)
            # had been at the level before for a while: not a short appliance run's end.
            held *= _clip_share(sustained_before(window, pulse))
        if held < 1.0:
            score *= held
            detail.append(f"held in {held_share(window, pulse):.0%} of it")
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
            delivered_kwh=_held_kw(pulse, size, committed) * inside_s / SECONDS_PER_HOUR,
            detail=", ".join(
                [f"step {pulse.delta_kw:+.2f} kW held {pulse.duration_s:.0f} s", *detail]
            ),
        )
        if best is None or fit.score > best.score:
            best = fit
    if best is None:
        return Fit(name, operation, 0.0, False, detail="no step at the start")
    return best


def _reactive_kvar(model: CyclingModel) -> tuple[float, float] | None:
    """Range of a compressor start's reactive step (kvar), if the model has a ratio."""
    if model.reactive_ratio is None or model.reactive_ratio.min <= 0.0:
        return None
    slack = 1.0 - model.magnitude_tolerance
    return (
        model.reactive_ratio.min * model.compressor.min_kw * slack,
        model.reactive_ratio.max * model.compressor.max_kw / slack,
    )


def compressor_starts(window: Window, model: CyclingModel) -> list[Step]:
    """Rising steps the size of the model's compressor.

    With reactive power, the step's ``delta_q_kvar`` must show the motor (the model's
    ratio times a compressor's kW): clouds and resistive appliances change active
    power only, and an active step that met another device's keeps the motor's kvar.
    """
    low = model.compressor.min_kw * (1.0 - model.magnitude_tolerance)
    high = model.compressor.max_kw * (1.0 + model.magnitude_tolerance)
    kvar = _reactive_kvar(model)
    starts = []
    for step in window.detection.steps:
        if not low <= step.delta_kw <= high:
            continue
        if kvar is not None and not math.isnan(step.delta_q_kvar):
            # The motor's kvar, and at least half the ratio's minimum of the active
            # step (a cloud's step that met the fridge's does not qualify).
            assert model.reactive_ratio is not None
            if not kvar[0] <= step.delta_q_kvar <= kvar[1]:
                continue
            if step.delta_q_kvar < 0.5 * model.reactive_ratio.min * step.delta_kw:
                continue
        starts.append(step)
    return starts


def similar_steps(a: Step, b: Step, model: CyclingModel) -> bool:
    """Whether two compressor steps are the same compressor, by kW or by kvar.

    Sizes are compared symmetrically (relative to the larger), the active steps and,
    when both have one and the model has a ratio, the reactive steps: either alike
    will do, since the household's resistive loads and PV distort the active step
    and leave the reactive one, and a sample that splits a step can distort either.
    """
    tolerance = model.magnitude_tolerance
    pa, pb = abs(a.delta_kw), abs(b.delta_kw)
    if abs(pa - pb) <= tolerance * max(pa, pb):
        return True
    if (
        _reactive_kvar(model) is not None
        and not math.isnan(a.delta_q_kvar)
        and not math.isnan(b.delta_q_kvar)
    ):
        qa, qb = abs(a.delta_q_kvar), abs(b.delta_q_kvar)
        return abs(qa - qb) <= tolerance * max(qa, qb)
    return False


def _chain(starts: list[Step], model: CyclingModel, first: Step) -> list[Step]:
    """Follow the run of compressor starts from ``first``: similar size, a period apart.

    A start the detection lost (merged with another device's step) leaves a gap of two
    periods: once the chain has a period, such a gap is bridged.
    """
    chain = [first]
    low, high = 0.7 * model.period.min_s, 1.3 * model.period.max_s
    for step in starts:
        gap = step.time_s - chain[-1].time_s
        if gap <= 0:
            continue
        period = (
            statistics.median([b.time_s - a.time_s for a, b in itertools.pairwise(chain)])
            if len(chain) >= 2
            else math.nan
        )
        skipped = not math.isnan(period) and abs(gap - 2.0 * period) <= MISSED_CYCLE_SLACK * period
        if gap > high and not skipped:
            if math.isnan(period) or gap > 2.0 * period * (1.0 + MISSED_CYCLE_SLACK):
                break
            continue
        if (gap >= low or skipped) and similar_steps(step, first, model):
            chain.append(step)
    return chain


def _spacings(chain: list[Step]) -> FloatArray:
    """Time between the chain's starts, a bridged gap (a lost start) counted as two."""
    spacing = np.diff([s.time_s for s in chain])
    if spacing.size >= 2:
        typical = float(np.median(spacing))
        counts = np.maximum(np.round(spacing / typical), 1.0)
        return np.asarray(np.repeat(spacing / counts, counts.astype(int)), dtype=np.float64)
    return np.asarray(spacing, dtype=np.float64)


def _period_score(chain: list[Step], model: CyclingModel) -> tuple[float, float]:
    """Whether the chain's period is the model's, and regular; and the period (s)."""
    if len(chain) < 2:
        return 0.0, math.nan
    spacing = _spacings(chain)
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


def enough_cycles(chain: list[Step], model: CyclingModel) -> bool:
    """Whether a chain is long enough to be a run: ``min_cycles``, or two with the motor's kvar.

    Two starts a regular period apart whose reactive steps show the compressor's motor
    are as specific as three without reactive power (a curtailment's lead-in may have
    room for two cycles only).
    """
    if len(chain) >= model.min_cycles:
        return True
    kvar = _reactive_kvar(model)
    return (
        len(chain) >= 2 and kvar is not None and all(not math.isnan(s.delta_q_kvar) for s in chain)
    )


def _on_time_s(window: Window, start: Step, model: CyclingModel, period_s: float) -> float:
    """How long the compressor ran from ``start``: to its own off step (similar size).

    The off step is the first later falling step of a similar size before the next
    period; ``NaN`` if none is found (it merged with another device's step).
    """
    for step in window.detection.steps:
        if step.time_s <= start.time_s or step.delta_kw >= 0:
            continue
        if step.time_s - start.time_s >= period_s:
            break
        if similar_steps(step, start, model):
            return step.time_s - start.time_s
    return math.nan


def _run_energy_kwh(
    window: Window,
    chain: list[Step],
    period_s: float,
    start_s: float,
    end_s: float,
    model: CyclingModel,
) -> tuple[float, float, float]:
    """Energy of a run of cycles inside ``[start_s, end_s)``, its compressor kW and duty.

    Compressor power (median step) times duty (median on-time over the period) times
    the time the run covers inside the window: a start the detection missed, or an
    appliance switching meanwhile, does not change it.
    """
    compressor_kw = float(np.median([s.delta_kw for s in chain]))
    if math.isnan(period_s):
        return 0.0, compressor_kw, math.nan
    on_s = [_on_time_s(window, s, model, period_s) for s in chain]
    found = [t for t in on_s if not math.isnan(t)]
    if not found:  # every off step met another device's: the pulses' pairing instead
        detection = window.detection
        index = {id(step): k for k, step in enumerate(detection.steps)}
        found = [min(detection.pulse_from(index[id(s)]).duration_s, period_s) for s in chain]
    duty = float(np.median(found)) / period_s
    covered_s = max(0.0, min(chain[-1].time_s + period_s, end_s) - max(chain[0].time_s, start_s))
    return compressor_kw * duty * covered_s / SECONDS_PER_HOUR, compressor_kw, duty


def _cycling_on(
    name: str, model: CyclingModel, operation: str, window: Window, start_s: float, end_s: float
) -> Fit:
    """Fit a compressor that starts cycling at the window's start."""
    starts = compressor_starts(window, model)
    needed = max(2, min(model.min_cycles, int((end_s - start_s) // model.period.max_s) + 1))
    best: Fit | None = None
    for first in starts:
        if abs(first.time_s - start_s) > window.align_s:
            continue
        chain = _chain([s for s in starts if s.time_s < end_s], model, first)
        period_score, period = _period_score(chain, model)
        count = 1.0 if enough_cycles(chain, model) else min(1.0, len(chain) / needed)
        energy, compressor_kw, _ = _run_energy_kwh(window, chain, period, start_s, end_s, model)
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
    starts = compressor_starts(window, model)
    lookback_s = 3 * model.period.max_s
    before = [s for s in starts if start_s - lookback_s <= s.time_s < start_s]
    if len(before) < 2:
        return Fit(name, operation, 0.0, False, detail="no cycling before the window")
    chains = [_chain(before, model, first) for first in before]
    chain = max(chains, key=len)
    period_score, period = _period_score(chain, model)
    if len(chain) < 2:
        return Fit(name, operation, 0.0, False, detail="no regular cycling before the window")
    _, compressor_kw, duty = _run_energy_kwh(window, chain, period, start_s, end_s, model)
    mean_kw = compressor_kw * duty
    # The same compressor starting again (another motor's start is not it resuming).
    inside = [
        s
        for s in starts
        if start_s + window.align_s <= s.time_s < end_s and similar_steps(s, chain[0], model)
    ]
    resumed_s = inside[0].time_s if inside else end_s
    hold_needed = max(MIN_HOLD_SHARE * (end_s - start_s), 1.0)
    hold = min(1.0, (resumed_s - start_s) / hold_needed)
    still_kwh = 0.0
    if inside:
        again = _chain(inside, model, inside[0])
        still_kwh = _run_energy_kwh(window, again, period, start_s, end_s, model)[0]
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


def _rolling_max(values: FloatArray, samples: int) -> FloatArray:
    """Centred moving maximum over ``samples``, ignoring NaN (NaN where all are)."""
    filled = np.where(np.isnan(values), -np.inf, values)
    result = maximum_filter1d(filled, size=samples, mode="nearest")
    return np.where(np.isneginf(result), np.nan, result)


def daylight_fit(
    window: Window, model: ClearSkyModel, mask: npt.NDArray[np.bool_]
) -> tuple[float, float, float]:
    """Whether the daylight samples of ``mask`` show PV: correlation, peak kW and presence.

    Export is read through its upper envelope over :data:`ENVELOPE_S` (a cloud's shadow
    passes within it, so the envelope follows the sunny sky) twice: of the signal as
    it is (which a device running longer than the envelope distorts) and of the
    signal less the closed pulses (which a misread step distorts). Each reading gives
    the correlation with the clear sky and the export per 1000 W/m^2 of it (the
    peak); the presence (:func:`_presence`) is the mean of the two readings', and the
    correlation and peak returned are their means (evidence).
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
        x, y = sky[chosen], export[chosen]
        if np.std(x) == 0.0 or np.std(y) == 0.0:
            readings.append((math.nan, math.nan))
            continue
        correlation = float(np.corrcoef(x, y)[0, 1])
        slope = float(np.polyfit(x, y, 1)[0])
        readings.append((correlation, slope * 1000.0))
    presence = float(np.mean([_presence(c, k, model) for c, k in readings]))
    correlation = float(np.mean([c for c, _ in readings]))
    peak_kw = float(np.mean([k for _, k in readings]))
    return correlation, peak_kw, presence


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
    correlation, peak_kw, present = window.pv_day(model, start_s)
    score = present * min(1.0, daylight / DAYLIGHT_SHARE)
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


def held_share(window: Window, pulse: Pulse) -> float:
    """Share of the pulse's samples in which the rest of the signal stayed level.

    The signal less every closed pulse (:attr:`Window.destepped_kw`) is the household
    without its devices: while a device that really ran is on, it stays near its level
    before the pulse. A pulse that paired two unrelated steps (an appliance's on with
    another's off, hours later) takes out a step that was not there, and leaves a hole
    of its own size: its samples fall by more than half the step.
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
    drop = pulse.sign * (inside - float(np.median(before)))
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


def _clip_share(share: float) -> float:
    """1 from a share of 0.8 on, 0 at 0.5 and below."""
    return float(np.clip((share - 0.5) / 0.3, 0.0, 1.0))


def _held_factor(window: Window, pulse: Pulse) -> float:
    """1 if the pulse held (:func:`held_share` >= 0.8), 0 at 0.5 and below."""
    return _clip_share(held_share(window, pulse))


def _quietness(window: Window, pulse: Pulse) -> float:
    """1 if few steps fall inside the pulse, falling to 0 at cloud-like rates.

    Steps per hour strictly between the pulse's on and off steps, those that moved
    reactive power (a compressor's, not a cloud's) left out: at most
    :data:`QUIET_STEPS_PER_HOUR` (a household appliance or two) scores 1, twice as
    many 0.
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
    # A committed PV curtailment's own window took export away: the curve is fitted
    # without it (``curtailed_s``, set by the caller for such a commitment).
    exclude = window.curtailed_s if committed else None
    # The day's PV fit is the costly part (a whole day's detection): asked for a
    # commitment's evidence always, for classification only once a pulse qualifies.
    day: tuple[float, float, float] | None = None
    if committed:
        day = window.pv_day(model, start_s, exclude)
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
        if day is None:
            day = window.pv_day(model, start_s, exclude)
        correlation, peak_kw, present = day
        first_i = max(signal.index(max(pulse.start_s, start_s)), 0)
        last_i = min(signal.index(min(pulse.end_s, end_s)), len(sky))
        lost_kwh = (
            float(np.mean(scales))
            * float(np.sum(sky[first_i:last_i]))
            * signal.resolution_s
            / SECONDS_PER_HOUR
        )
        # Unasked for, no more than the PV gives at that moment: the day's fitted peak
        # along the clear-sky curve (an EV's evening step is larger than a low sun's).
        available_kw = max(peak_kw, model.peak.min_kw) * float(sky[pulse.on.index]) / 1000.0
        high_kw = PV_SIZE_MARGIN * max(available_kw, MIN_AVAILABLE_KW)
        within = _in_range(size, min(model.peak.min_kw, 0.5 * high_kw), high_kw)
        if committed:  # the commitment names PV: only a step larger than the array's peak
            within = _in_range(size, model.peak.min_kw, max(peak_kw, model.peak.min_kw) * 1.2)
        # Held like a set-point for a while (a cloud's shadow passes in minutes).
        hold_needed = (
            min(PV_MIN_HOLD_S, MIN_HOLD_SHARE * (end_s - start_s))
            if committed
            else PV_UNASKED_HOLD_S
        )
        hold = min(1.0, pulse.duration_s / hold_needed) if hold_needed > 0 else 1.0
        if not committed:
            hold *= hold  # unasked for, a shadow's pulse is short: it must outlast them
        # Curtailed PV is flat: the clouds' steps stop while it lasts. A pulse that
        # clouds keep stepping through is another device (a battery charging).
        quiet = _quietness(window, pulse)
        if not committed:  # unasked for, a pulse must have held (see held_share)
            quiet *= _held_factor(window, pulse)
        # Curtailed PV leaves the household's own load: a meter still exporting after
        # the step has a generator left running (a battery charging from it, rather).
        if pulse.on.level_after_kw < -EXPORT_MARGIN_KW:
            quiet *= STILL_EXPORTING_FACTOR
        fit = Fit(
            device_type=name,
            operation=operation,
            score=present * within * hold * quiet,
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
            daylight_correlation=day[0] if day is not None else math.nan,
            detail="no step of PV output at the start",
        )
    return best
