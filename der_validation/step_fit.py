"""The step signatures (``step_hold``, ``setpoint``, ``step_change``): a pulse held in the window.

The energy is the pulse's step times the time it held inside the window; the step is
measured on the samples around it, so what the rest of the household does meanwhile does
not count.
"""

from __future__ import annotations

import math

import numpy as np

from gridmatch.der_validation.detection import MAX_PAIR_S, Pulse, Step
from gridmatch.der_validation.window import (
    EXPORT_MARGIN_KW,
    MIN_HOLD_SHARE,
    Fit,
    Window,
    aligned_pulses,
    clip_share,
    closeness,
    drawn_before,
    floor_factor,
    held_factor,
    held_share,
    in_range,
    quietness,
    ramp_rate,
    reactive_score,
    recurrences,
    sustained_before,
)
from gridmatch.der_validation.window import tapered as ends_tapered
from gridmatch.scenario_io.der_models import (
    SetpointModel,
    StepChangeModel,
    StepHoldModel,
)
from gridmatch.units import SECONDS_PER_HOUR

# A step-type device whose step recurs this often within the window is cycling, not it.
RECURRENCE_LIMIT = 2
RECURRENCE_FACTOR = 0.3
# A slow ramp hints at another device, but a step that met another one looks slow too.
SLOW_RAMP_FACTOR = 0.9
NO_EXPORT_FACTOR = 0.85
# A charger's curtailment with no session start before it scores this much.
NO_SESSION_FACTOR = 0.5
SAME_SESSION = 0.15
NIGHT_SIGN_FACTOR = 0.4
# Unasked for, a curtailment of a share of the standing load outside this range (and
# its slack) scores this much more.
STANDING_SHARE = (0.7, 1.1)
STANDING_SLACK_KW = 0.3
NOT_STANDING_FACTOR = 0.8
# ... and a step down of more than the standing load (and its slack) this much: no
# process runs around the clock at that power there (less is a partial curtailment).
ABOVE_STANDING_FACTOR = 0.6
# Unasked for, a generic load's run of more import scores this much more.
GENERIC_ON_FACTOR = 0.5
# Unasked for, a load that sheds more than this share of what the household drew
# besides its devices' runs before scores this much more.
SHED_SHARE = 0.8
NO_LOAD_FACTOR = 0.5
# A pulse closed early is held to an off step at the committed end only if this share
# of the samples between, and all of the last HELD_TAIL_S, stand half the pulse above
# the level of the samples after it.
HELD_SHARE = 0.5
HELD_TAIL_S = 600.0
HELD_AFTER_SAMPLES = 5
# Unasked for, a run of a device that cannot reverse, ended by a larger step, scores so.
UNMATCHED_FACTOR = 0.5
# What a larger off step leaves over, closed within this long (s), is an appliance's
# run that began as the device stopped (a kettle, a pump's start).
APPLIANCE_RUN_S = 600
# A pulse a PV site's clouds could make is taken as a device's from this long on (s).
CLOUD_HOLD_S = 2400
# Such a pulse whose off step is not within this factor of its size scores this much
# more: a device returns by the step it made, a shadow leaves by what the sun gives
# then (both set on the benchmark's seeds 2026 and 7, checked on seed 11).
CLOUD_EDGE_RATIO = 1.35
CLOUD_EDGE_FACTOR = 0.5


def _ends_as_committed(window: Window, pulse: Pulse, end_s: float) -> Pulse:
    """Return the pulse held to the committed end if a step of its size undoes it there.

    A pulse that closed early may have been closed by another device's off step of
    the same size; an off step of its size at the committed end (within the alignment
    tolerance) is then the device's own, if the level held in between: from the early
    close to that step, at least half the samples, and every sample of the last
    :data:`HELD_TAIL_S` before it, stand at least half the pulse above the level after
    it (an oven's run inside a battery's discharge leaves it; two appliances' blips at
    the window's ends, or a load cycling through it, do not: they validated a run that
    never was).
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
            and _held_until(window, pulse, step.time_s)
        ):
            return Pulse(pulse.on, step, pulse.delta_kw, step.time_s, pulse.reversal)
    return pulse


def _held_until(window: Window, pulse: Pulse, off_s: float) -> bool:
    """Whether the pulse's level held from its early close to an off step at ``off_s``."""
    signal = window.detection.signal
    first, last = max(signal.index(pulse.end_s), 0), min(signal.index(off_s), len(signal.p_kw))
    after = signal.p_kw[last : last + HELD_AFTER_SAMPLES]
    stretch = signal.p_kw[first:last]
    after, stretch = after[np.isfinite(after)], stretch[np.isfinite(stretch)]
    if after.size == 0 or stretch.size == 0:
        return False
    above = (stretch - float(np.median(after))) * pulse.sign >= 0.5 * abs(pulse.delta_kw)
    tail = max(math.ceil(HELD_TAIL_S / signal.resolution_s), 1)
    return float(np.mean(above)) >= HELD_SHARE and bool(np.all(above[-tail:]))


def _reverses_into_run(
    window: Window, pulse: Pulse, model: StepHoldModel | SetpointModel | StepChangeModel
) -> bool:
    """Whether a set-point device's pulse reversed into a pulse closed by its own size."""
    if not isinstance(model, SetpointModel) or pulse.off is None:
        return False
    detection = window.detection
    index = detection.index_of(pulse.off)
    if index in detection.closers:
        return False
    after = detection.pulse_from(index)
    return after.reversal and after.matched


def _ends_with_appliance(window: Window, pulse: Pulse) -> bool:
    """Whether the pulse's off step was its own size plus a short appliance run's start.

    A device's end that falls in the sample an appliance changes the same way reads
    larger than the device (a curtailment resuming as a kettle switches on; a load
    switching off as a pump does): the step then ends the pulse and opens one of the
    rest (a reversal), which a step of the rest's size closes within minutes (the
    appliance's own change back). Such a pulse ended with a step of its own size.

    Parameters
    ----------
    window
        The window the pulse was found in.
    pulse
        A pulse ended by a larger step of the other sign.

    Returns
    -------
    bool
        Whether what the off step left over was a pulse closed by its own size
        within :data:`APPLIANCE_RUN_S`.
    """
    if pulse.off is None:
        return False
    detection = window.detection
    index = detection.index_of(pulse.off)
    if index in detection.closers:
        return False
    rest = detection.pulse_from(index)
    return rest.reversal and rest.matched and rest.duration_s <= APPLIANCE_RUN_S


def _reverses_a_run(window: Window, pulse: Pulse, model: SetpointModel) -> bool:
    """Whether the pulse a reversal ended was a run of the model (its size, held long)."""
    earlier = window.detection.reversed_pulse(window.detection.index_of(pulse.on))
    if earlier is None:
        return False
    floor_kw = max(model.setpoint.min_kw, model.min_detect_kw or 0.0)
    return abs(earlier.delta_kw) >= floor_kw and earlier.duration_s >= model.min_hold_s


def _sheds_standing_load(window: Window, size_kw: float) -> bool:
    """Whether a step down is about the household's standing load (or that is unknown)."""
    standing_kw = window.standing_kw
    if math.isnan(standing_kw):
        return True
    low, high = STANDING_SHARE
    return low * standing_kw <= size_kw <= high * standing_kw + STANDING_SLACK_KW


def _detect_hold_s(model: StepHoldModel | SetpointModel | StepChangeModel) -> float:
    """Return the hold (s) a run found unasked needs: ``min_detect_hold_s`` or ``min_hold_s``."""
    if isinstance(model, StepChangeModel) and model.min_detect_hold_s is not None:
        return model.min_detect_hold_s
    return model.min_hold_s


def _turns_flow(pulse: Pulse) -> bool:
    """Whether the pulse's step turned the meter's flow (import to export or back).

    Both sides must lie beyond :data:`EXPORT_MARGIN_KW` of zero: a meter near zero
    crosses it with any appliance.
    """
    before, after = pulse.on.level_before_kw, pulse.on.level_after_kw
    return min(abs(before), abs(after)) > EXPORT_MARGIN_KW and (before > 0) != (after > 0)


def _ends_export(window: Window, pulse: Pulse) -> bool:
    """Whether a rising pulse took the meter from export to import in daylight."""
    return (
        pulse.on.level_before_kw < -EXPORT_MARGIN_KW
        and pulse.on.level_after_kw > 0.0
        and not window.is_night(pulse.start_s)
    )


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


def _small_step_factor(
    window: Window, model: StepHoldModel | SetpointModel | StepChangeModel, size_kw: float
) -> float:
    """1 from the model's ``min_detect_kw`` on, falling to 0 at detection's ``min_event_kw``."""
    floor_kw = None if isinstance(model, StepHoldModel) else model.min_detect_kw
    return floor_factor(size_kw, window.detection.spec.min_event_kw, floor_kw)


def _step_hold_score(
    window: Window,
    model: StepHoldModel,
    pulse: Pulse,
    sign: int,
    hold: float,
    tapered: bool,
    committed: bool,
    detail: list[str],
) -> tuple[float, float]:
    """Score a charger's pulse: its level against the model's, held, abrupt at its end.

    Parameters
    ----------
    window
        The window the pulse was found in.
    model
        The charger's model.
    pulse
        The pulse scored.
    sign
        The operation's sign (+1 more import).
    hold
        How far the pulse held the time it must (0 to 1).
    tapered
        Whether its off step is a taper.
    committed
        Asked for (a commitment) rather than a detected run.
    detail
        Appended to: why the score is low.

    Returns
    -------
    tuple of float
        The score and the step size (kW) it was read at.
    """
    resolution_s = window.detection.signal.resolution_s
    # The level is read on the on step, or on the off step when that one fits a
    # level better (a step that met another device's is measured with it).
    # (Asked for only: unasked, any pulse would get two tries at a level.)
    off = pulse.off
    size = abs(pulse.delta_kw)
    readings = [size] if off is None or not committed else [size, abs(off.delta_kw)]
    size, error = min(
        (
            (reading, min(abs(reading - level) / level for level in model.levels_kw))
            for reading in readings
        ),
        key=lambda pair: pair[1],
    )
    magnitude = closeness(error, model.level_tolerance)
    ramp = 1.0 if (pulse.on.ramp_samples - 1) * resolution_s <= model.max_ramp_s else 0.5
    end = model.abrupt_end_factor if (pulse.off is not None and not tapered) else 1.0
    score = magnitude * hold * ramp * end
    detail.append(f"level error {error:.1%}")
    if not committed and sign < 0 and not _session_before(window, pulse):
        # Unasked for, a charger can only stop a session it started.
        score *= NO_SESSION_FACTOR
        detail.append("no session began before")
    return score, size


def _setpoint_score(
    window: Window,
    model: SetpointModel,
    pulse: Pulse,
    sign: int,
    hold: float,
    tapered: bool,
    committed: bool,
    detail: list[str],
) -> float:
    """Score a battery's pulse: a flat set-point in range, reversing or into export.

    Parameters
    ----------
    window
        The window the pulse was found in.
    model
        The battery's model.
    pulse
        The pulse scored.
    sign
        The operation's sign (+1 charging, -1 discharging).
    hold
        How far the pulse held the time it must (0 to 1).
    tapered
        Whether its off step is a taper.
    committed
        Asked for (a commitment) rather than a detected run.
    detail
        Appended to: why the score is what it is.

    Returns
    -------
    float
        The score before the checks every step signature shares.
    """
    size = abs(pulse.delta_kw)
    magnitude = in_range(size, model.setpoint.min_kw, 2.0 * model.setpoint.max_kw)
    # A step inside one interval takes two samples; one more if it met another.
    ramp = 1.0 if pulse.on.ramp_samples <= model.max_ramp_intervals + 2 else SLOW_RAMP_FACTOR
    # A slow end hints at a charger's taper, unasked for; a committed battery's
    # off step that met another device's looks slow too.
    flat_end = model.tapered_end_factor if tapered and not committed else 1.0
    score = model.base_score * magnitude * hold * ramp * flat_end
    # Unasked for, a run moving more energy than a battery holds is another's.
    energy_kwh = size * pulse.duration_s / SECONDS_PER_HOUR
    limit_kwh = model.max_energy_kwh
    if not committed and limit_kwh is not None and energy_kwh > limit_kwh:
        score *= limit_kwh / energy_kwh
        detail.append(f"{energy_kwh:.0f} kWh, more than a battery holds")
    # Reversing, or discharging into export after dark (no load can): a battery.
    into_export = sign < 0 and pulse.on.sign_change
    # Unasked for, a reversal counts where the meter's flow turned: a step that
    # only undid some other open pulse is any device's.
    reverses = pulse.reversal and (
        committed or (_turns_flow(pulse) and _reverses_a_run(window, pulse, model))
    )
    if not committed and sign > 0 and _ends_export(window, pulse):
        # Unasked for, a rise that ends the meter's export by day is what a PV
        # curtailment does too: no sign of a battery.
        reverses = False
    if reverses or (into_export and window.is_night(pulse.start_s)):
        score = min(1.0, score * 1.25)
        detail.append("reverses" if pulse.reversal else "crosses zero")
    elif sign < 0 and pulse.on.level_after_kw > 0.0:
        # Discharging without reaching export: a load switching off looks the same.
        score *= NO_EXPORT_FACTOR
    elif (
        not committed
        and sign < 0
        and pulse.on.level_after_kw < -EXPORT_MARGIN_KW
        and not window.is_night(pulse.start_s)
    ):
        # Unasked for, a discharge into export while the sun shines is less
        # likely than a load that stopped and let the PV show.
        score *= NO_EXPORT_FACTOR
    return score


def _step_change_score(
    window: Window,
    model: StepChangeModel,
    pulse: Pulse,
    sign: int,
    hold: float,
    committed: bool,
    detail: list[str],
) -> float:
    """Score a generic (process) load's pulse: a prompt step, of a load that can shed it.

    Parameters
    ----------
    window
        The window the pulse was found in.
    model
        The load's model.
    pulse
        The pulse scored.
    sign
        The operation's sign (+1 more import, -1 a curtailment).
    hold
        How far the pulse held the time it must (0 to 1).
    committed
        Asked for (a commitment) rather than a detected run.
    detail
        Appended to: why the score is low.

    Returns
    -------
    float
        The score before the checks every step signature shares.
    """
    resolution_s = window.detection.signal.resolution_s
    size = abs(pulse.delta_kw)
    ramp = (
        1.0 if (pulse.on.ramp_samples - 2) * resolution_s <= model.max_ramp_s else SLOW_RAMP_FACTOR
    )
    score = hold * ramp
    below_zero = pulse.on.level_after_kw < -EXPORT_MARGIN_KW
    if not committed and sign > 0:
        # Unasked for, a load switching on and off is any household appliance:
        # a process load shows only where it is curtailed.
        score *= GENERIC_ON_FACTOR
        detail.append("any load switches on so")
    elif sign < 0 and below_zero and window.is_night(pulse.start_s):
        score *= NIGHT_SIGN_FACTOR
        detail.append("a load cannot export at night")
    elif not committed and sign < 0 and not _sheds_standing_load(window, size):
        # Unasked for, a process load that runs around the clock sheds about the
        # household's standing load; another step down is more likely a device's,
        # and one larger than the standing load cannot be such a process at all.
        above = size > STANDING_SHARE[1] * window.standing_kw + STANDING_SLACK_KW
        score *= ABOVE_STANDING_FACTOR if above else NOT_STANDING_FACTOR
        detail.append(f"not the standing load ({window.standing_kw:.2f} kW)")
    elif not committed and sign < 0 and drawn_before(window, pulse) < SHED_SHARE * size:
        # A load sheds at most what it drew: the household less the devices'
        # detected runs (a charger's session is not a process load's power).
        score *= NO_LOAD_FACTOR
        detail.append("more than the household drew besides its devices")
    return score


def _edges_agree(pulse: Pulse, off: Step) -> bool:
    """Whether the pulse's off step is its size within :data:`CLOUD_EDGE_RATIO`.

    Its size, not its on step's: a reversal's pulse is what is left of its step.
    """
    size_kw, off_kw = abs(pulse.delta_kw), abs(off.delta_kw)
    return max(size_kw, off_kw) <= CLOUD_EDGE_RATIO * min(size_kw, off_kw)


def _unasked_score(
    window: Window,
    model: StepHoldModel | SetpointModel | StepChangeModel,
    pulse: Pulse,
    size_kw: float,
    score: float,
    detail: list[str],
) -> float:
    """Return a detected run's (not asked for) score, less for how it ended and looks.

    Parameters
    ----------
    window
        The window the run was found in (the run itself).
    model
        The model it is scored against.
    pulse
        The run's pulse.
    size_kw
        The step size it was read at.
    score
        Its score so far.
    detail
        Appended to: each reason the factor is below 1.

    Returns
    -------
    float
        ``score`` times each factor that applies.
    """
    if (
        not pulse.matched
        and not _reverses_into_run(window, pulse, model)
        and not _ends_with_appliance(window, pulse)
    ):
        # Unasked for, a run ends with a step of its own size; only a set-point
        # device may end it by reversing, into a run of its own that ends so.
        score *= UNMATCHED_FACTOR
        detail.append("ended by a larger step")
    if window.cloud_like(pulse):
        # Unasked for, a run clouds could make must also be quiet while it holds:
        # steps crowding inside it are clouds' edges.
        quiet = quietness(window, pulse)
        if quiet < 1.0:
            score *= quiet
            detail.append("clouds' steps inside")
        if pulse.off is not None and not _edges_agree(pulse, pulse.off):
            score *= CLOUD_EDGE_FACTOR
            detail.append("ends by another step than it began, as clouds do")
    small = _small_step_factor(window, model, size_kw)
    if small < 1.0:
        score *= small
        detail.append("a step the household's appliances make")
    return score


def stepped_fit(
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
    candidates = aligned_pulses(window, sign, start_s)
    if not committed:
        # Unasked for, the window is a detected pulse: only that pulse is scored (a
        # neighbour's pulse a minute away is classified on its own).
        candidates = [p for p in candidates if p.start_s == start_s]
    ended: list[Pulse] = []
    if model.kind == "storage" and operation in ("import", "export") and window.ends_earlier_run:
        # A battery's charge ending is no discharge (nor a discharge ending a charge): the
        # meter's import falls, but the battery gave nothing. Its step closes a run that
        # opened before it, hours before the window perhaps.
        ends = window.ends_earlier_run
        # Only an open one: a discharge that a step of its size ends is a run of its own
        # (the long look-back may pair its step with another device's, hours before).
        ended = [
            p for p in candidates if p.off is None and not p.reversal and ends(p.on.time_s, sign)
        ]
        candidates = [p for p in candidates if p not in ended]
    for found in candidates:
        pulse = _ends_as_committed(window, found, end_s) if committed else found
        size = abs(pulse.delta_kw)
        hold_needed = (
            min(model.min_hold_s, MIN_HOLD_SHARE * length_s) if committed else _detect_hold_s(model)
        )
        if not committed and window.cloud_like(pulse):
            # Unasked for, a run clouds could make must outlast their shadows and spells.
            hold_needed = max(hold_needed, CLOUD_HOLD_S)
        hold = min(1.0, pulse.duration_s / hold_needed) if hold_needed > 0 else 1.0
        if not committed and hold < 1.0:
            hold *= hold  # classification: a short pulse is an appliance's or a cloud's
        tapered = pulse.off is not None and ends_tapered(window, pulse.off)
        detail: list[str] = []
        if isinstance(model, StepHoldModel):
            score, size = _step_hold_score(
                window, model, pulse, sign, hold, tapered, committed, detail
            )
        elif isinstance(model, SetpointModel):
            score = _setpoint_score(window, model, pulse, sign, hold, tapered, committed, detail)
        else:
            score = _step_change_score(window, model, pulse, sign, hold, committed, detail)
        if not committed:
            score = _unasked_score(window, model, pulse, size, score, detail)
        # Reactive power fits if either step shows the device's ratio (another device's
        # kvar can fall into one of them, rarely into both).
        reactive = reactive_score(model, pulse.delta_kw, pulse.on.delta_q_kvar)
        if reactive < 1.0 and pulse.off is not None:
            reactive = max(
                reactive, reactive_score(model, pulse.off.delta_kw, pulse.off.delta_q_kvar)
            )
        score *= reactive
        held = 1.0 if committed else held_factor(window, pulse)
        if not committed and sign < 0:
            # Unasked for, a load switching off (or a battery starting to discharge)
            # had been at the level before for a while: not a short appliance run's end.
            held *= clip_share(sustained_before(window, pulse))
        if held < 1.0:
            score *= held
            detail.append(f"held in {held_share(window, pulse):.0%} of it")
        recurring = recurrences(window, pulse, max(length_s, SECONDS_PER_HOUR))
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
            ramp_kw_per_min=ramp_rate(pulse, resolution_s),
            delivered_kwh=_held_kw(pulse, size, committed) * inside_s / SECONDS_PER_HOUR,
            detail=", ".join(
                [f"step {pulse.delta_kw:+.2f} kW held {pulse.duration_s:.0f} s", *detail]
            ),
        )
        # Of pulses that fit as well, the one that delivered the most (an appliance
        # switching within the tolerance of the start delivers little).
        if best is None or (fit.score, fit.delivered_kwh) > (best.score, best.delivered_kwh):
            best = fit
    if best is None and ended:
        note = f"the step at the start ({ended[0].delta_kw:+.2f} kW) ends a run begun before it"
        return Fit(name, operation, 0.0, False, detail=note, ends_run=True)
    if best is None:
        return Fit(name, operation, 0.0, False, detail="no step at the start")
    return best
