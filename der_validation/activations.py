"""Every device run of a meter's day, detected and classified (no commitment needed).

What the benchmark measures detection with (precision, recall and F1 per device type,
the confusion matrix of device classification), using the same detection and the same
model fits as the verdicts:

* **PV**: a day whose export follows the site's clear-sky curve is one PV run (sunrise
  to sunset);
* **cycling**: every chain of at least ``min_cycles`` compressor starts at a regular
  period is one run of that device (its steps are then taken);
* **pulses**: every other pulse of at least ``MIN_PULSE_S`` (and at most
  ``MAX_PULSE_S``, where steps do not crowd: ``BUSY_STEPS_PER_HOUR``) is fitted by
  every model that can make a change of its sign (``signatures.fit_model`` with the pulse as the
  window) and labelled with the best model that fits, or ``other`` (the household's
  own appliances, clouds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridmatch.der_validation.cycling_fit import (
    compressor_starts,
    cycle_chain,
    cycle_period_score,
    enough_cycles,
)
from gridmatch.der_validation.detection import Detection, Pulse, detect
from gridmatch.der_validation.pv_fit import released_by_sun
from gridmatch.der_validation.signatures import fit_model
from gridmatch.der_validation.verdicts import DAY_S, slice_signal
from gridmatch.der_validation.window import (
    Window,
    daylight_fit,
    direction,
    floor_factor,
    held_share,
)
from gridmatch.scenario_io.der_input import MeterSeries
from gridmatch.scenario_io.der_models import (
    OPERATIONS,
    ClearSkyModel,
    CyclingModel,
    EventModelLibrary,
    LibrarySpec,
    SetpointModel,
    SiteSpec,
    StepChangeModel,
)

OTHER = "other"
# Pulses shorter than this are appliances or clouds, never a device run.
MIN_PULSE_S = 300
_MARGIN_S = 2 * 3600
# After the day, long enough for an evening's run (an EV session) to end in it.
_MARGIN_AFTER_S = 6 * 3600
# More steps than this per hour around a pulse (from half an hour before it to half an
# hour after it, or after its first three hours) and it is left unclassified.
BUSY_STEPS_PER_HOUR = 6.0
BUSY_MARGIN_S = 1800
BUSY_SPAN_S = 3 * 3600
# A pulse held in less of its samples than this releases its off step (see _released).
RELEASE_HELD = 0.5
# A pulse longer than this is two steps of different devices, not one run.
MAX_PULSE_S = 10 * 3600


@dataclass(frozen=True)
class DetectedRun:
    """A device run found in the data: its label (a device type or ``other``)."""

    device_type: str
    start_s: float
    end_s: float
    delta_kw: float
    score: float


def _released(window: Window, index: dict[int, int]) -> list[Pulse]:
    """Pulses opened by the off steps of pulses the rest of the signal did not hold.

    A pulse whose own off step the detection lost (it met another device's change)
    is closed by the next step of its size, often another device's on step hours
    later; the signal then shows a hole where the pulse claims power. That off step
    is also taken as the start of a pulse of its own.
    """
    detection = window.detection
    released = []
    for pulse in detection.pulses:
        if pulse.off is None or not pulse.matched or held_share(window, pulse) >= RELEASE_HELD:
            continue
        released.append(detection.pulse_from(index[id(pulse.off)]))
    return released


def _chatter(detection: Detection, index: dict[int, int]) -> set[int]:
    """Return the steps of pulses closed by a step of their size within ``MIN_PULSE_S``."""
    found: set[int] = set()
    for pulse in detection.pulses:
        if pulse.off is not None and pulse.matched and pulse.duration_s < MIN_PULSE_S:
            found.add(index[id(pulse.on)])
            found.add(index[id(pulse.off)])
    return found


def _appliance_floor_kw(spec: LibrarySpec) -> float | None:
    """Return the largest ``min_detect_kw`` of the library's step models (``None``: none).

    Unasked for, a smaller step held a while is as often a household's heater or oven,
    whatever device it could be. A PV curtailment found unasked is held to it as the
    step devices are (its model has no floor of its own).
    """
    floors = [
        m.min_detect_kw
        for m in spec.models.values()
        if isinstance(m, SetpointModel | StepChangeModel) and m.min_detect_kw is not None
    ]
    return max(floors, default=None)


def classify_day(
    series: MeterSeries, library: EventModelLibrary, site: SiteSpec, day_start_s: int
) -> list[DetectedRun]:
    """Detect and classify the device runs that start in ``[day_start_s, + 1 day)``."""
    spec = library.spec
    signal = slice_signal(series, day_start_s - _MARGIN_S, day_start_s + DAY_S + _MARGIN_AFTER_S)
    signal = signal.coarsened(spec.detection.max_samples)
    detection = detect(signal, spec.detection)
    align = max(spec.validation.align_tolerance_s, 2 * signal.resolution_s)
    daylight = min(
        (m.daylight_w_per_m2 for m in spec.models.values() if isinstance(m, ClearSkyModel)),
        default=50.0,
    )
    pv_model = next((m for m in spec.models.values() if isinstance(m, ClearSkyModel)), None)
    window = Window(detection, site, align, daylight, pv_model=pv_model)
    minimum = spec.validation.min_score
    lowest_kw = spec.detection.min_event_kw
    appliance_floor_kw = _appliance_floor_kw(spec)
    day_end_s = day_start_s + DAY_S
    runs: list[DetectedRun] = []
    for name, model in spec.models.items():
        if isinstance(model, ClearSkyModel):
            day = np.zeros(len(signal.p_kw), dtype=bool)
            lo, hi = signal.index(day_start_s), signal.index(day_end_s)
            day[max(lo, 0) : max(hi, 0)] = True
            _, peak_kw, score = daylight_fit(window, model, day, export_evidence=True)
            if score >= minimum:
                lit = np.flatnonzero(day & (window.clear_sky >= model.daylight_w_per_m2))
                runs.append(
                    DetectedRun(
                        name, signal.time(lit[0]), signal.time(lit[-1] + 1), -peak_kw, score
                    )
                )
    taken: set[int] = set()
    index = {id(step): k for k, step in enumerate(detection.steps)}
    for name, model in spec.models.items():
        if not isinstance(model, CyclingModel):
            continue
        starts = [s for s in compressor_starts(window, model) if index[id(s)] not in taken]
        position = 0
        while position < len(starts):
            first = starts[position]
            chain = cycle_chain(starts[position:], model, first)
            score, period = cycle_period_score(chain, model)
            if enough_cycles(chain, model) and score >= minimum:
                for step in chain:
                    k = index[id(step)]
                    taken.add(k)
                    pulse = detection.pulse_from(k)
                    # An off step that also reverses (a compressor stopping in the
                    # sample another device starts) opens that device's pulse: not taken.
                    if pulse.off is not None and pulse.matched:
                        taken.add(index[id(pulse.off)])
                if day_start_s <= first.time_s < day_end_s:
                    end = chain[-1].time_s + period
                    runs.append(DetectedRun(name, first.time_s, end, first.delta_kw, score))
                position = starts.index(chain[-1]) + 1
            else:
                position += 1
    chatter = _chatter(detection, index)
    for pulse in [*detection.pulses, *_released(window, index)]:
        on_index = index[id(pulse.on)]
        if on_index in taken or not day_start_s <= pulse.start_s < day_end_s:
            continue
        if pulse.duration_s < MIN_PULSE_S:
            continue
        # Where steps crowd (clouds passing over PV, a cooking hob), a pulse is two
        # unrelated steps more often than a device: it is not classified. Steps that
        # pair up within minutes among themselves (a hob's thermostat) are not counted:
        # they are not what the pulse could have been paired with.
        around_from = pulse.start_s - BUSY_MARGIN_S
        around_to = min(pulse.end_s, pulse.start_s + BUSY_SPAN_S) + BUSY_MARGIN_S
        crowd = sum(
            1
            for k, s in enumerate(detection.steps)
            if around_from <= s.time_s <= around_to and k not in chatter and k not in taken
        )
        busy = crowd / ((around_to - around_from) / 3600.0) > BUSY_STEPS_PER_HOUR
        # An unsettled step (the power moved again within minutes) is an appliance's.
        # A pulse still open at the end of the stretch (hours after the day) has no
        # end to be a device's run by: a step whose partner the detection lost.
        # A PV curtailment released by a larger step than it took (the sun rose
        # meanwhile) has its end where its level fell back (see released_by_sun).
        unended = pulse.off is None and not released_by_sun(window, pulse)
        if busy or unended or pulse.duration_s > MAX_PULSE_S or not pulse.on.settled:
            runs.append(DetectedRun(OTHER, pulse.start_s, pulse.end_s, pulse.delta_kw, 0.0))
            continue
        best_name, best_score = OTHER, 0.0
        for name, model in spec.models.items():
            if isinstance(model, CyclingModel):
                continue
            operation = next(
                (
                    op
                    for op in OPERATIONS
                    if op in model.operations and direction(model.kind, op) == pulse.sign
                ),
                None,
            )
            if operation is None:
                continue
            if isinstance(model, ClearSkyModel) and pulse.sign < 0:
                continue  # PV export is the day's run, not a pulse
            fit = fit_model(
                name, model, operation, window, pulse.start_s, pulse.end_s, committed=False
            )
            score = fit.score
            if isinstance(model, ClearSkyModel):
                score *= floor_factor(abs(pulse.delta_kw), lowest_kw, appliance_floor_kw)
            if score > best_score:
                best_name, best_score = name, score
        label = best_name if best_score >= minimum else OTHER
        runs.append(DetectedRun(label, pulse.start_s, pulse.end_s, pulse.delta_kw, best_score))
    runs.sort(key=lambda r: r.start_s)
    return runs
