"""The ``cycling`` signature (heat pumps): compressor starts, their chains, on-time and energy.

Imports (the compressor runs): its on-time inside the window times its step; curtailments:
its mean power over the cycles before the window less what it still drew inside. On-time
is read against the lowest power of the surrounding period.
"""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np

from gridmatch.der_validation.detection import Step
from gridmatch.der_validation.window import (
    MIN_HOLD_SHARE,
    Fit,
    Window,
    in_range,
    reactive_score,
    step_rate,
)
from gridmatch.scenario_io.der_models import (
    CyclingModel,
)
from gridmatch.units import SECONDS_PER_HOUR, FloatArray

# A gap this close to two periods (relative) is one lost compressor start.
MISSED_CYCLE_SLACK = 0.2


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


def cycle_chain(starts: list[Step], model: CyclingModel, first: Step) -> list[Step]:
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


def cycle_period_score(chain: list[Step], model: CyclingModel) -> tuple[float, float]:
    """Whether the chain's period is the model's, and regular; and the period (s)."""
    if len(chain) < 2:
        return 0.0, math.nan
    spacing = _spacings(chain)
    period = float(np.median(spacing))
    score = in_range(period, model.period.min_s, model.period.max_s, 0.3)
    if len(spacing) >= 2:
        variation = float(np.std(spacing) / np.mean(spacing))
        limit = model.max_period_variation
        score *= float(np.clip(1.0 - (variation - limit) / limit, 0.0, 1.0))
    q = [s.delta_q_kvar for s in chain]
    if not any(math.isnan(v) for v in q):
        p = float(np.median([s.delta_kw for s in chain]))
        score *= reactive_score(model, p, float(np.median(q)))
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


def cycling_on(
    name: str, model: CyclingModel, operation: str, window: Window, start_s: float, end_s: float
) -> Fit:
    """Fit a compressor that starts cycling at the window's start."""
    starts = compressor_starts(window, model)
    needed = max(2, min(model.min_cycles, int((end_s - start_s) // model.period.max_s) + 1))
    best: Fit | None = None
    for first in starts:
        if abs(first.time_s - start_s) > window.align_s:
            continue
        chain = cycle_chain([s for s in starts if s.time_s < end_s], model, first)
        period_score, period = cycle_period_score(chain, model)
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
            ramp_kw_per_min=step_rate(first, window.detection.signal.resolution_s),
            period_s=period,
            delivered_kwh=energy,
            detail=f"{len(chain)} compressor starts (needs {needed}), period {period:.0f} s",
        )
        if best is None or fit.score > best.score:
            best = fit
    if best is None:
        return Fit(name, operation, 0.0, False, detail="no compressor start at the start")
    return best


def cycling_off(
    name: str, model: CyclingModel, operation: str, window: Window, start_s: float, end_s: float
) -> Fit:
    """Fit a compressor that cycled before the window and stops in it."""
    starts = compressor_starts(window, model)
    lookback_s = 3 * model.period.max_s
    before = [s for s in starts if start_s - lookback_s <= s.time_s < start_s]
    if len(before) < 2:
        return Fit(name, operation, 0.0, False, detail="no cycling before the window")
    chains = [cycle_chain(before, model, first) for first in before]
    chain = max(chains, key=len)
    period_score, period = cycle_period_score(chain, model)
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
        again = cycle_chain(inside, model, inside[0])
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
