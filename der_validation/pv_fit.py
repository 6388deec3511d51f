"""The ``clear_sky`` signature (PV): export along the site's clear-sky curve, and curtailments.

Export is the net export inside the window (baseline zero exchange); a curtailment is the
mean of the steps at its start and end, scaled along the clear-sky curve over its duration.
"""

from __future__ import annotations

import math

import numpy as np

from gridmatch.der_validation.detection import Pulse, Step
from gridmatch.der_validation.window import (
    EXPORT_MARGIN_KW,
    MIN_HOLD_SHARE,
    Fit,
    Window,
    aligned_pulses,
    held_factor,
    in_range,
    quietness,
    ramp_rate,
)
from gridmatch.scenario_io.der_models import (
    ClearSkyModel,
)
from gridmatch.units import SECONDS_PER_HOUR

DAYLIGHT_SHARE = 0.5
PV_MIN_HOLD_S = 600
# Unasked for, a curtailment outlasts the clouds' shadows (minutes) by this much (s).
PV_UNASKED_HOLD_S = 1200
STILL_EXPORTING_FACTOR = 0.7
UNASKED_EXPORTING_FACTOR = 0.4
# A PV curtailment's step is at most this much above the PV's clear-sky output then.
PV_SIZE_MARGIN = 1.3
MIN_AVAILABLE_KW = 0.1
# Unasked for, a curtailment takes at least this share of the PV's output then: it
# takes all of it, and the day's fitted peak errs by up to about that much; a thin
# cloud's shadow, or another device's step, takes less.
SHADOW_SHARE = 0.5


def released_at_end(window: Window, pulse: Pulse, end_s: float) -> Pulse:
    """Return the pulse closed at the committed end if the PV's output came back there.

    A curtailment's release is a step of the other sign at the committed end (within
    the alignment tolerance), of the start's size scaled along the clear-sky curve
    (within the detection's pair tolerance): unpaired with the start when the sky
    changed, the pulse that detection closed later, at a cloud's or another device's
    step, holds the clouds after the commitment, which are not its evidence.

    Parameters
    ----------
    window
        The window whose detection found ``pulse``.
    pulse
        A pulse that starts at the committed start.
    end_s
        The committed end (Unix s).

    Returns
    -------
    Pulse
        ``pulse`` closed by the release step, or ``pulse`` itself without one.
    """
    if pulse.end_s <= end_s + window.align_s:
        return pulse
    step = _release_step(window, pulse, end_s)
    if step is None:
        return pulse
    return Pulse(pulse.on, step, pulse.delta_kw, step.time_s, pulse.reversal)


def _release_step(window: Window, pulse: Pulse, at_s: float) -> Step | None:
    """Return the step at ``at_s`` that gives back the PV output ``pulse`` took, if any.

    A step of the other sign within the alignment tolerance of ``at_s``, of the pulse's
    size scaled along the clear-sky curve from its start to the step (within the
    detection's pair tolerance of that); the first such step, ``None`` without one.
    """
    sky = window.clear_sky
    if not 0 <= pulse.on.index < len(sky) or sky[pulse.on.index] <= 0:
        return None
    spec = window.detection.spec
    for step in window.detection.steps:
        if abs(step.time_s - at_s) > window.align_s or step.sign == pulse.sign:
            continue
        # The output that comes back is the start's scaled along the clear-sky curve.
        expected_kw = abs(pulse.delta_kw) * sky[min(step.index, len(sky) - 1)]
        expected_kw /= sky[pulse.on.index]
        allowed_kw = max(spec.pair_tolerance * expected_kw, spec.pair_tolerance_kw)
        if abs(abs(step.delta_kw) - expected_kw) <= allowed_kw:
            return step
    return None


def released_by_sun(window: Window, pulse: Pulse) -> bool:
    """Whether an open rising pulse ended where a PV's output came back, by daylight.

    A curtailment's release gives back what the PV makes then: the start's step
    scaled along the sun's curve, and more than that when the array faces the sun
    better than the horizontal the clear sky is computed for (a morning's curtailment
    releases a larger step than it took). The detection, which pairs steps of one
    size, then leaves the pulse open, and ends it where its level fell back
    (``Detection._held_end_s``). If a step there (within the alignment tolerance) is
    the start's size scaled along the clear-sky curve (:func:`_release_step`), that
    step ended it: the pulse has an end to be a run by.

    Parameters
    ----------
    window
        The window whose detection found ``pulse``.
    pulse
        A pulse of the detection.

    Returns
    -------
    bool
        ``True`` for an open pulse of more import that began in daylight and whose
        held end is such a release step; ``False`` otherwise (and without a PV model).
    """
    model = window.pv_model
    if pulse.off is not None or pulse.sign < 0 or model is None:
        return False
    sky = window.clear_sky
    index = pulse.on.index
    if not 0 <= index < len(sky) or sky[index] < model.daylight_w_per_m2:
        return False
    return _release_step(window, pulse, pulse.end_s) is not None


def clear_sky_export(
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


def clear_sky_curtail(
    name: str,
    model: ClearSkyModel,
    operation: str,
    window: Window,
    start_s: float,
    end_s: float,
    committed: bool = True,
    at_least: tuple[float, float] | None = None,
) -> Fit:
    """PV output steps down at the window's start (import rises) and back at its end.

    ``at_least`` (score, kWh): the caller drops fits below either, so a pulse that
    cannot reach them is passed over before the day's PV fit (the costly part) is made;
    the fit returned may then be a lesser one, or none.
    """
    signal = window.detection.signal
    # A committed PV curtailment's own window took export away: the curve is fitted
    # without it (``curtailed_s``, set by the caller for such a commitment).
    exclude = window.curtailed_s if committed else None
    # The day's PV fit is the costly part (a whole day's detection): asked for a
    # commitment's evidence always, for classification only once a pulse qualifies.
    day: tuple[float, float, float] | None = None
    if committed and at_least is None:
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
        first_i = max(signal.index(max(pulse.start_s, start_s)), 0)
        last_i = min(signal.index(min(pulse.end_s, end_s)), len(sky))
        lost_kwh = (
            float(np.mean(scales))
            * float(np.sum(sky[first_i:last_i]))
            * signal.resolution_s
            / SECONDS_PER_HOUR
        )
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
        # clouds keep stepping through is another device (a battery charging). Only
        # the committed window is the curtailment's: not the clouds after its release.
        quiet = quietness(window, released_at_end(window, pulse, end_s) if committed else pulse)
        if not committed:  # unasked for, a pulse must have held (see held_share)
            quiet *= held_factor(window, pulse)
        # Curtailed PV leaves the household's own load: a meter still exporting after
        # the step has a generator left running (a battery charging from it, rather).
        if pulse.on.level_after_kw < -EXPORT_MARGIN_KW:
            # Unasked for, the meter still exporting after the step shows PV still
            # making power: a cloud's shadow took a share of the sun, a curtailment
            # takes all of it (asked for, a partial curtailment is possible).
            quiet *= STILL_EXPORTING_FACTOR if committed else UNASKED_EXPORTING_FACTOR
        if at_least is not None and (hold * quiet < at_least[0] or lost_kwh < at_least[1]):
            continue  # the day's fit could only lower it: the caller would drop it
        if day is None:
            day = window.pv_day(model, start_s, exclude)
        correlation, peak_kw, present = day
        # Unasked for, no more than the PV gives at that moment: the day's fitted peak
        # along the clear-sky curve (an EV's evening step is larger than a low sun's).
        available_kw = max(peak_kw, model.peak.min_kw) * float(sky[pulse.on.index]) / 1000.0
        high_kw = PV_SIZE_MARGIN * max(available_kw, MIN_AVAILABLE_KW)
        within = in_range(size, min(model.peak.min_kw, 0.5 * high_kw), high_kw)
        # A curtailment takes all the PV makes then, a cloud's shadow a share of it:
        # the larger of its step and its release (scaled back to the start along the
        # clear sky: one begun in a shadow is released in the sun) is at least
        # SHADOW_SHARE of the output then (the day's peak along the clear sky).
        taken_kw = max(scales) * float(sky[pulse.on.index])
        within *= in_range(taken_kw, SHADOW_SHARE * available_kw, math.inf)
        if committed:  # the commitment names PV: only a step larger than the array's peak
            within = in_range(size, model.peak.min_kw, max(peak_kw, model.peak.min_kw) * 1.2)
        fit = Fit(
            device_type=name,
            operation=operation,
            score=present * within * hold * quiet,
            event=True,
            start_s=pulse.start_s,
            end_s=pulse.end_s,
            delta_kw=pulse.delta_kw,
            ramp_kw_per_min=ramp_rate(pulse, signal.resolution_s),
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
