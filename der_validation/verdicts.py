"""One commitment, one verdict: the rules, and the evidence that goes with it.

For a commitment of device type ``D`` to ``operation`` at ``kw`` over ``[start, end)``:

1. **insufficient_data** -- the meter sent no rows, or less than ``min_coverage`` of
   the window's samples.
2. The events around the window (``context_s`` each side) are detected (a PV model
   also fits the export of the whole solar day against the clear sky) and ``D``'s model is fitted
   to the window (``signatures.fit_model``). If it fits (score >= ``min_score``), the
   delivered share ``f = delivered_kwh / committed_kwh`` (a power commitment: at most
   ``kw`` counts while the run lasts, :func:`held_to_commitment`) decides: **validated** if
   ``f >= 1 - tolerance`` (the row's ``tolerance``, else the model's),
   **partially_delivered** if ``f >= partial_fraction``, else **not_delivered**.
3. Otherwise, if another device model fits an event that starts at the window's start,
   in the operation's direction, and delivered at least ``partial_fraction`` of the
   commitment: **wrong_device** (the matched model and its evidence are given).
4. Otherwise, if ``D``'s model fits an event of the same length that starts elsewhere
   within ``search_s`` of the window's start (not at the start of another commitment of the
   same meter and device type: that run delivered that one) and delivers there nearly
   what was committed (``1 - tolerance - 0.1`` of it; a set-point or switched load's
   run, outside the committed window): **wrong_interval** (with when it ran).
5. Otherwise **not_delivered**.

The baseline (``baseline_kw``) is the mean power in the ``baseline_s`` before the
start, or, if the meter sent less than half of those samples, the mean of the same
window a day earlier; a model whose baseline is ``zero_exchange`` (PV export) uses
zero. A run's energy counts only in the share of its samples the meter sent (a run
read from its steps holds across a gap). ``baseline_delivered_kwh`` is the energy
inside the window relative to it, in the operation's direction: evidence that needs
no device model, not a rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import numpy as np

from gridmatch.der_validation.clearsky import clear_sky_ghi
from gridmatch.der_validation.cycling_fit import compressor_starts, similar_steps
from gridmatch.der_validation.detection import MAX_PAIR_S, Detection, Signal, detect
from gridmatch.der_validation.signatures import fit_model
from gridmatch.der_validation.window import Fit, Window, daylight_fit, direction
from gridmatch.results_io.der_validation import EventRow, Verdict, VerdictRow
from gridmatch.scenario_io.der_input import Commitment, MeterSeries
from gridmatch.scenario_io.der_models import (
    OPERATIONS,
    ClearSkyModel,
    CyclingModel,
    EventModelLibrary,
    SetpointModel,
    SiteSpec,
    StepChangeModel,
)
from gridmatch.units import SECONDS_PER_HOUR

DAY_S = 86_400
# A PV model's curve is fitted on the whole solar day around the window.
SOLAR_SECONDS_PER_DEGREE = 240.0  # the sun crosses 15 degrees of longitude an hour
# A PV day fit reads daylight only: its detection runs from this long before the first
# daylight to as long after the last (the export envelope's reach, and a device's run
# across dawn or dusk), on a grid of _SPAN_GRID_S where the sky is daylight.
DAY_FIT_MARGIN_S = 2 * 3600
_SPAN_GRID_S = 600.0
MIN_BASELINE_SHARE = 0.5
NO_SCORE = math.nan
MISTIMED_SLACK = 0.1
PERIOD_HORIZON_S = 2 * 3600
MISTIMED_MAGNITUDE = 0.25
MISTIMED_LENGTH = 0.7


@dataclass(frozen=True)
class Judgement:
    """A commitment's verdict row and the steps detected around its window.

    ``run_kwh`` is what the committed model read the run to deliver inside the window
    before the committed power capped it (``NaN``: the row's ``delivered_kwh``): where
    commitments share a run (:mod:`claims`), the others' part comes off it first.
    """

    row: VerdictRow
    events: tuple[EventRow, ...]
    run_kwh: float = math.nan


def judge(
    commitment: Commitment,
    series: MeterSeries | None,
    library: EventModelLibrary,
    site: SiteSpec,
    claimed_s: tuple[float, ...] = (),
    days: DayFits | None = None,
) -> Judgement:
    """Judge one commitment against its meter's data (see the module's rules).

    Parameters
    ----------
    claimed_s
        Starts of the meter's other commitments of the same device type: a run that
        starts there delivered that commitment, so it is not this one run mistimed.
    days
        The meter's PV day fits, shared by its commitments (made here if not given).
    """
    spec = library.spec
    model = spec.models[commitment.device_type]
    sign = direction(model.kind, commitment.operation)
    tolerance = commitment.tolerance if commitment.tolerance is not None else model.tolerance
    start_s, end_s = commitment.start_s, commitment.end_s
    committed_kwh = commitment.energy_kwh
    base = _Row(commitment, tolerance, committed_kwh)
    if series is None:
        return Judgement(
            base.row(Verdict.INSUFFICIENT_DATA, coverage=0.0, detail="the meter sent no rows"),
            (),
        )
    coverage = _coverage(series, start_s, end_s)
    resolution = series.resolution_s
    if coverage < spec.validation.min_coverage:
        return Judgement(
            base.row(
                Verdict.INSUFFICIENT_DATA,
                coverage=coverage,
                resolution_s=resolution,
                detail=(
                    f"the meter sent {coverage:.0%} of the window's samples; "
                    f"{spec.validation.min_coverage:.0%} needed"
                ),
            ),
            (),
        )
    baseline_kw, baseline_note = _baseline(series, start_s, end_s, spec.validation.baseline_s)
    if model.baseline == "zero_exchange":
        baseline_kw, baseline_note = 0.0, "zero exchange"
    baseline_kwh = _baseline_energy(series, start_s, end_s, baseline_kw, sign)
    if days is None:
        days = DayFits(series, site, library)
    curtailed = isinstance(model, ClearSkyModel) and sign > 0
    judge_state = _Windows(series, site, library, start_s, end_s, claimed_s, days, curtailed)
    committed = fit_model(
        commitment.device_type,
        model,
        commitment.operation,
        judge_state.window_for(model),
        start_s,
        end_s,
    )
    read = committed
    committed = held_to_commitment(committed, commitment.kw, start_s, end_s)
    if not (isinstance(model, ClearSkyModel) and sign < 0):
        # A run is read from its steps, so it holds across samples the meter did not
        # send; only the samples it sent prove energy (PV export sums them already).
        read = _sent_only(read, series, start_s, end_s)
        committed = _sent_only(committed, series, start_s, end_s)
    common: dict[str, Any] = {
        "coverage": coverage,
        "resolution_s": resolution,
        "baseline_kw": baseline_kw,
        "baseline_delivered_kwh": baseline_kwh,
        "committed_score": committed.score,
    }
    minimum = spec.validation.min_score
    partial = spec.validation.partial_fraction
    events = judge_state.event_rows(commitment)
    if committed.score >= minimum:
        share = committed.delivered_kwh / committed_kwh
        verdict = share_verdict(share, tolerance, partial)
        note = f"{committed.detail}; delivered {share:.0%}; baseline: {baseline_note}"
        return Judgement(
            base.row(verdict, fit=committed, detail=note, **common), events, read.delivered_kwh
        )
    other = None
    if not committed.ends_run:  # a run's end is no other device's delivery either
        other = _other_device(commitment, sign, judge_state, minimum, partial * committed_kwh)
    if other is not None:
        note = (
            f"{commitment.device_type} does not fit ({committed.detail}); {other.device_type} "
            f"does ({other.detail}); baseline: {baseline_note}"
        )
        return Judgement(base.row(Verdict.WRONG_DEVICE, fit=other, detail=note, **common), events)
    # A mistimed run delivered (nearly) what was committed, where it did run.
    mistimed = _mistimed(
        commitment, judge_state, minimum, (1.0 - tolerance - MISTIMED_SLACK) * committed_kwh
    )
    if mistimed is not None:
        offset_min = (mistimed.start_s - start_s) / 60.0
        note = (
            f"{commitment.device_type} ran {offset_min:+.0f} min from the committed start "
            f"({mistimed.detail}); baseline: {baseline_note}"
        )
        return Judgement(
            base.row(Verdict.WRONG_INTERVAL, fit=mistimed, detail=note, **common), events
        )
    note = f"no device delivered: {committed.detail}; baseline: {baseline_note}"
    return Judgement(
        base.row(
            Verdict.NOT_DELIVERED,
            fit=committed if committed.event else None,
            detail=note,
            **common,
        ),
        events,
    )


def share_verdict(share: float, tolerance: float, partial_fraction: float) -> Verdict:
    """Return rule 2's verdict for a fitted model's delivered share of the commitment."""
    if share >= 1.0 - tolerance:
        return Verdict.VALIDATED
    if share >= partial_fraction:
        return Verdict.PARTIALLY_DELIVERED
    return Verdict.NOT_DELIVERED


class DayFits:
    """A meter's PV fit per (solar) day: export against the clear sky, computed once.

    A fit may leave out an interval (a committed PV curtailment: the export it took
    away is not the curve's), each such fit made once too.
    """

    def __init__(self, series: MeterSeries, site: SiteSpec, library: EventModelLibrary) -> None:
        self.series = series
        self.site = site
        self.spec = library.spec
        self._windows: dict[tuple[int, int], Window] = {}
        self._fits: dict[tuple[int, int, tuple[float, float] | None], tuple[float, float, float]]
        self._fits = {}

    def __call__(
        self, model: ClearSkyModel, time_s: float, exclude: tuple[float, float] | None = None
    ) -> tuple[float, float, float]:
        """Correlation, peak kW and presence of the PV model over the day around ``time_s``.

        Parameters
        ----------
        exclude
            Unix times (s) ``[from, to)`` whose samples the fit leaves out.
        """
        offset_s = self.site.longitude_deg * SOLAR_SECONDS_PER_DEGREE  # local solar midnight
        day = math.floor((time_s + offset_s) / DAY_S)
        correlation, peak_kw, presence = self._day(model, day, exclude)
        # Whether the site has PV is the site's, not the day's: an overcast day, or one
        # whose devices run at noon, borrows the presence and peak of the next days.
        for other in (day - 1, day + 1):
            _, other_peak_kw, other_presence = self._day(model, other, None)
            if other_presence > presence:
                peak_kw, presence = other_peak_kw, other_presence
        return correlation, peak_kw, presence

    def _day(
        self, model: ClearSkyModel, day: int, exclude: tuple[float, float] | None
    ) -> tuple[float, float, float]:
        """Fit one solar day (``day`` counted from the epoch at the site's solar midnight)."""
        offset_s = self.site.longitude_deg * SOLAR_SECONDS_PER_DEGREE
        key = (day, id(model), exclude)
        if key not in self._fits:
            start_s = day * DAY_S - offset_s
            if (day, id(model)) not in self._windows:
                first_s, last_s = self._daylight_span(model, start_s)
                signal = slice_signal(self.series, first_s, last_s)
                signal = signal.coarsened(self.spec.detection.max_samples)
                detection = detect(signal, self.spec.detection)
                self._windows[day, id(model)] = Window(
                    detection, self.site, 0.0, model.daylight_w_per_m2
                )
            window = self._windows[day, id(model)]
            signal = window.detection.signal
            mask = np.ones(len(signal.p_kw), dtype=bool)
            if exclude is not None:
                mask[max(signal.index(exclude[0]), 0) : max(signal.index(exclude[1]), 0)] = False
            self._fits[key] = daylight_fit(window, model, mask)
        return self._fits[key]

    def _daylight_span(self, model: ClearSkyModel, start_s: float) -> tuple[float, float]:
        """Return the part of the solar day from ``start_s`` a PV fit reads: daylight, margins."""
        grid_s = start_s + np.arange(0.0, DAY_S, _SPAN_GRID_S)
        lit = np.flatnonzero(clear_sky_ghi(self.site, grid_s) >= model.daylight_w_per_m2)
        if lit.size == 0:
            return start_s, start_s + DAY_S
        first_s = float(grid_s[lit[0]]) - _SPAN_GRID_S - DAY_FIT_MARGIN_S
        last_s = float(grid_s[lit[-1]]) + _SPAN_GRID_S + DAY_FIT_MARGIN_S
        return max(first_s, start_s), min(last_s, start_s + DAY_S)


class _Windows:
    """The detections one commitment needs, each made once and only when needed."""

    def __init__(
        self,
        series: MeterSeries,
        site: SiteSpec,
        library: EventModelLibrary,
        start_s: int,
        end_s: int,
        claimed_s: tuple[float, ...] = (),
        days: DayFits | None = None,
        curtailed: bool = False,
    ) -> None:
        self.series = series
        # A committed PV curtailment: the day's PV curve is fitted without its window.
        self.curtailed_s = (float(start_s), float(end_s)) if curtailed else None
        self.claimed_s = claimed_s
        self.days = days if days is not None else DayFits(series, site, library)
        self.site = site
        self.spec = library.spec
        self.start_s = start_s
        self.end_s = end_s
        self._windows: dict[str, Window] = {}
        self._ended: dict[tuple[float, int], bool] = {}
        self.daylight = min(
            (
                m.daylight_w_per_m2
                for m in self.spec.models.values()
                if isinstance(m, ClearSkyModel)
            ),
            default=50.0,
        )

    def _window(self, key: str, margin_s: int) -> Window:
        if key not in self._windows:
            signal = slice_signal(self.series, self.start_s - margin_s, self.end_s + margin_s)
            signal = signal.coarsened(self.spec.detection.max_samples)
            detection = detect(signal, self.spec.detection)
            align = max(self.spec.validation.align_tolerance_s, 2 * signal.resolution_s)
            self._windows[key] = Window(
                detection,
                self.site,
                align,
                self.daylight,
                day_fit=self.days,
                curtailed_s=self.curtailed_s,
                ends_earlier_run=self._ends_earlier_run,
            )
        return self._windows[key]

    def _ends_earlier_run(self, time_s: float, sign: int) -> bool:
        """Whether the step of ``sign`` at ``time_s`` closes a run opened before it.

        Detected on the stretch from :data:`MAX_PAIR_S` (the longest a run may last)
        before it to ``context_s`` after, so a charge that began hours before the window
        pairs with its off step (once per instant asked).
        """
        key = (time_s, sign)
        if key not in self._ended:
            context_s = self.spec.validation.context_s
            signal = slice_signal(self.series, time_s - MAX_PAIR_S, time_s + context_s)
            detection = detect(
                signal.coarsened(self.spec.detection.max_samples), self.spec.detection
            )
            align_s = max(self.spec.validation.align_tolerance_s, 2 * detection.signal.resolution_s)
            self._ended[key] = any(
                abs(step.time_s - time_s) <= align_s and step.sign == sign
                for k, step in enumerate(detection.steps)
                if k in detection.closers
            )
        return self._ended[key]

    def context(self) -> Window:
        """Detect over the window and ``context_s`` each side."""
        return self._window("context", self.spec.validation.context_s)

    def search(self) -> Window:
        """Detect over the window and ``search_s`` (plus the context) each side."""
        margin = self.spec.validation.search_s + self.spec.validation.context_s
        return self._window("search", margin)

    def window_for(self, model: object) -> Window:
        """Return the detection a model is fitted on (the day's curve comes from ``days``)."""
        return self.context()

    def event_rows(self, commitment: Commitment) -> tuple[EventRow, ...]:
        """Return the steps detected around the window, as rows of events.csv."""
        window = self.context()
        return _event_rows(window.detection, commitment)


def _other_device(
    commitment: Commitment, sign: int, windows: _Windows, minimum: float, needed_kwh: float
) -> Fit | None:
    """Find the best other model that fits an event at the window's start."""
    best: Fit | None = None
    for name, model in windows.spec.models.items():
        if name == commitment.device_type:
            continue
        operation = next(
            (
                op
                for op in OPERATIONS
                if op in model.operations and direction(model.kind, op) == sign
            ),
            None,
        )
        if operation is None or (isinstance(model, ClearSkyModel) and sign < 0):
            continue  # a PV export is no event (its fit says so): it cannot be the device
        fit = fit_model(
            name,
            model,
            operation,
            windows.window_for(model),
            windows.start_s,
            windows.end_s,
            at_least=(minimum, needed_kwh),
        )
        fit = held_to_commitment(fit, commitment.kw, windows.start_s, windows.end_s)
        if not fit.event or fit.score < minimum or fit.delivered_kwh < needed_kwh:
            continue
        if best is None or fit.score > best.score:
            best = fit
    return best


def _mistimed(
    commitment: Commitment, windows: _Windows, minimum: float, needed_kwh: float
) -> Fit | None:
    """Find the committed model running at another start within ``search_s``."""
    model = windows.spec.models[commitment.device_type]
    sign = direction(model.kind, commitment.operation)
    search_s = windows.spec.validation.search_s
    length_s = windows.end_s - windows.start_s
    window = windows.search()
    if isinstance(model, ClearSkyModel) and sign < 0:
        # No event starts a PV export: try the same length at whole-window offsets.
        step_s = max(length_s, 1800)
        anchors: list[float] = [
            windows.start_s + k * step_s
            for k in range(-(search_s // step_s), search_s // step_s + 1)
            if k != 0
        ]
    else:
        # A run starts with a step of the operation's sign: a compressor's start for
        # an import, the last cycle's off for a curtailment.
        steps = window.detection.steps
        anchors = [
            step.time_s
            for step in steps
            if step.sign == sign
            and abs(step.time_s - windows.start_s) <= search_s
            and abs(step.time_s - windows.start_s) > window.align_s
            and not any(abs(step.time_s - t) <= window.align_s for t in windows.claimed_s)
        ]
        if isinstance(model, CyclingModel) and sign > 0:
            # A run that starts there: a compressor start (reactive power included),
            # with no start of the same compressor shortly before it.
            before_s = 1.5 * model.period.max_s
            starts = compressor_starts(window, model)
            anchors = [
                s.time_s
                for s in starts
                if s.time_s in set(anchors)
                and not any(
                    s.time_s - before_s <= other.time_s < s.time_s - 1.0
                    and similar_steps(other, s, model)
                    for other in starts
                )
            ]
    best: Fit | None = None
    for anchor in anchors:
        # A PV curtailment elsewhere must stand on its own, as one found unasked: a
        # cloud's shadow or a battery's charge is not the PV run mistimed.
        fit = fit_model(
            commitment.device_type,
            model,
            commitment.operation,
            window,
            anchor,
            anchor + length_s,
            committed=not isinstance(model, ClearSkyModel),
        )
        fit = held_to_commitment(fit, commitment.kw, anchor, anchor + length_s)
        if fit.score < minimum or fit.delivered_kwh < needed_kwh:
            continue
        # The same run moved: about the committed power, and about as long as the window
        # (an EV session or a heat pump's run may go on longer).
        stepped = not isinstance(model, CyclingModel | ClearSkyModel)
        off_power = abs(abs(fit.delta_kw) - commitment.kw) > MISTIMED_MAGNITUDE * commitment.kw
        if stepped and not math.isnan(fit.delta_kw) and off_power:
            continue
        if not math.isnan(fit.end_s) and fit.end_s - fit.start_s < MISTIMED_LENGTH * length_s:
            continue
        if isinstance(model, SetpointModel | StepChangeModel) and (
            fit.end_s - fit.start_s > (2.0 - MISTIMED_LENGTH) * length_s + window.align_s
            or _delivered_outside(fit, anchor + length_s, windows.start_s, windows.end_s)
            < needed_kwh
        ):
            continue
        if best is None or (fit.score, -abs(anchor - windows.start_s)) > (
            best.score,
            -abs(best.start_s - windows.start_s),
        ):
            best = fit
    return best


def held_to_commitment(fit: Fit, kw: float, start_s: float, end_s: float) -> Fit:
    """Return ``fit`` with its energy capped at ``kw`` held while it ran in the window.

    A commitment is power over an interval: ``kw`` held from start to end. Energy alone
    would let a short run of more power stand for it (a 3 kW charge of 4 hours
    delivered 12 kWh of a 0.07 kW week's 11.8 kWh), and a grid operator who booked
    0.07 kW for the week got it for 4 hours. What counts is at most ``kw`` during the
    part of the window the run covers (the whole window for a fit without times): more
    power in one hour does not make up for none in another.

    Parameters
    ----------
    fit
        A model's fit; ``delivered_kwh`` is what it delivered in ``[start_s, end_s)``.
    kw
        The committed power (kW).
    start_s, end_s
        Unix times (s) of the window the fit was made for.
    """
    run_start_s = start_s if math.isnan(fit.start_s) else max(start_s, fit.start_s)
    run_end_s = end_s if math.isnan(fit.end_s) else min(end_s, fit.end_s)
    most_kwh = kw * max(0.0, run_end_s - run_start_s) / SECONDS_PER_HOUR
    if not fit.delivered_kwh > most_kwh:
        return fit
    detail = f"{fit.detail}, counted at most the committed {kw:g} kW"
    return Fit(**{**fit.__dict__, "delivered_kwh": most_kwh, "detail": detail})


def _sent_only(fit: Fit, series: MeterSeries, start_s: float, end_s: float) -> Fit:
    """Return ``fit`` with its energy scaled to the samples the meter sent during its run.

    The run is measured by its steps and held between them, gaps of the meter's data
    included: a 3 kW run 10:00-11:48 whose data stop there reads as held to the next
    sample, 12:00, 6 kWh where the meter proves 5.4. The energy counts in the share of
    the run's samples inside ``[start_s, end_s)`` that the meter sent.

    Parameters
    ----------
    fit
        The committed model's fit to the window.
    series
        The meter's data.
    start_s, end_s
        Unix times (s) of the committed window.
    """
    run_start_s = start_s if math.isnan(fit.start_s) else max(start_s, fit.start_s)
    run_end_s = end_s if math.isnan(fit.end_s) else min(end_s, fit.end_s)
    if run_end_s <= run_start_s or not fit.delivered_kwh > 0.0:
        return fit
    sent = _coverage(series, round(run_start_s), round(run_end_s))
    if sent >= 1.0:
        return fit
    detail = f"{fit.detail}, the meter sent {sent:.0%} of its samples in the window"
    return Fit(**{**fit.__dict__, "delivered_kwh": fit.delivered_kwh * sent, "detail": detail})


def _delivered_outside(fit: Fit, fitted_end_s: float, start_s: float, end_s: float) -> float:
    """Energy (kWh) a flat run delivered outside ``[start_s, end_s)``.

    A set-point or switched load runs only while commanded: the part of its run that
    lies inside the committed window was delivered at the committed time (the window's
    own fit judges it), and only the rest can be the commitment moved elsewhere.

    Parameters
    ----------
    fit
        The run found elsewhere: its ``delivered_kwh`` is what it delivered between
        its start and ``fitted_end_s`` (the window it was fitted to), spread evenly
        over the part of the run inside it.
    fitted_end_s
        The end (Unix s) of the window the run was fitted to.
    start_s, end_s
        Unix times (s) of the committed window.

    Returns
    -------
    float
        ``fit.delivered_kwh`` less the share delivered inside the committed window (all
        of it for a run of no known length).
    """
    run_end_s = fitted_end_s if math.isnan(fit.end_s) else min(fit.end_s, fitted_end_s)
    run_s = run_end_s - fit.start_s
    if math.isnan(run_s) or run_s <= 0:
        return fit.delivered_kwh
    overlap_s = max(0.0, min(run_end_s, end_s) - max(fit.start_s, start_s))
    return fit.delivered_kwh * (1.0 - overlap_s / run_s)


def slice_signal(series: MeterSeries, from_s: float, to_s: float) -> Signal:
    """Return the meter's samples that start in ``[from_s, to_s)`` (NaN outside its data).

    Parameters
    ----------
    series
        One meter's regular series.
    from_s, to_s
        Unix times (s) of the stretch.
    """
    resolution = series.resolution_s
    first = math.floor((from_s - series.start_s) / resolution)
    last = math.ceil((to_s - series.start_s) / resolution)
    n = max(last - first, 0)
    p = np.full(n, np.nan)
    q = None if series.q_kvar is None else np.full(n, np.nan)
    lo, hi = max(first, 0), min(last, len(series.p_kw))
    if hi > lo:
        p[lo - first : hi - first] = series.p_kw[lo:hi]
        if q is not None and series.q_kvar is not None:
            q[lo - first : hi - first] = series.q_kvar[lo:hi]
    return Signal(series.start_s + first * resolution, resolution, p, q)


def _coverage(series: MeterSeries, start_s: int, end_s: int) -> float:
    signal = slice_signal(series, start_s, end_s)
    if len(signal.p_kw) == 0:
        return 0.0
    return float(np.count_nonzero(~np.isnan(signal.p_kw)) / len(signal.p_kw))


def _baseline(series: MeterSeries, start_s: int, end_s: int, baseline_s: int) -> tuple[float, str]:
    # Only samples that end by the start: one that straddles it (a window off the
    # meter's grid) holds part of the delivery.
    resolution = series.resolution_s
    before_s = series.start_s + math.floor((start_s - series.start_s) / resolution) * resolution
    before = slice_signal(series, before_s - baseline_s, before_s).p_kw
    if before.size and np.count_nonzero(~np.isnan(before)) >= MIN_BASELINE_SHARE * before.size:
        return float(np.nanmean(before)), f"mean of the {baseline_s // 60} min before"
    earlier = slice_signal(series, start_s - DAY_S, end_s - DAY_S).p_kw
    if earlier.size and np.count_nonzero(~np.isnan(earlier)) >= MIN_BASELINE_SHARE * earlier.size:
        return float(np.nanmean(earlier)), "the same window a day earlier"
    return math.nan, "none (no data before the window)"


def _baseline_energy(
    series: MeterSeries, start_s: int, end_s: int, baseline_kw: float, sign: int
) -> float:
    if math.isnan(baseline_kw):
        return math.nan
    inside = slice_signal(series, start_s, end_s).p_kw
    change = sign * (inside - baseline_kw)
    return float(np.nansum(change)) * series.resolution_s / SECONDS_PER_HOUR


def _iso(time_s: float, zone: tzinfo | None) -> str:
    if math.isnan(time_s):
        return ""
    return datetime.fromtimestamp(round(time_s), tz=zone).isoformat()


class _Row:
    """Builds a commitment's verdict row from what was found."""

    def __init__(self, commitment: Commitment, tolerance: float, committed_kwh: float) -> None:
        self.commitment = commitment
        self.tolerance = tolerance
        self.committed_kwh = committed_kwh

    def row(
        self,
        verdict: Verdict,
        *,
        fit: Fit | None = None,
        coverage: float = math.nan,
        resolution_s: int = 0,
        baseline_kw: float = math.nan,
        baseline_delivered_kwh: float = math.nan,
        committed_score: float = NO_SCORE,
        detail: str = "",
    ) -> VerdictRow:
        c = self.commitment
        zone = c.start.tzinfo
        delivered = float(fit.delivered_kwh) if fit is not None else math.nan

        def number(value: float) -> float:
            return float(value)  # numpy scalars print as np.float64(...) in a CSV

        return VerdictRow(
            commitment_id=c.commitment_id,
            meter_id=c.meter_id,
            participant_id=c.participant_id,
            device_type=c.device_type,
            operation=c.operation,
            start=c.start.isoformat(),
            end=c.end.isoformat(),
            committed_kw=c.kw,
            committed_kwh=self.committed_kwh,
            tolerance=self.tolerance,
            verdict=verdict,
            delivered_kwh=delivered,
            delivered_fraction=delivered / self.committed_kwh,
            baseline_kw=number(baseline_kw),
            baseline_delivered_kwh=number(baseline_delivered_kwh),
            matched_model=fit.device_type if fit is not None else "",
            matched_score=number(fit.score) if fit is not None else NO_SCORE,
            committed_score=number(committed_score),
            event_start=_iso(fit.start_s, zone) if fit is not None else "",
            event_end=_iso(fit.end_s, zone) if fit is not None else "",
            event_delta_kw=number(fit.delta_kw) if fit is not None else math.nan,
            event_delta_kvar=number(fit.delta_kvar) if fit is not None else math.nan,
            ramp_kw_per_min=number(fit.ramp_kw_per_min) if fit is not None else math.nan,
            period_s=number(fit.period_s) if fit is not None else math.nan,
            daylight_correlation=number(fit.daylight_correlation) if fit is not None else math.nan,
            coverage=number(coverage),
            resolution_s=resolution_s,
            detail=detail,
        )


def _event_rows(detection: Detection, commitment: Commitment) -> tuple[EventRow, ...]:
    signal = detection.signal
    opened = {id(p.on): p for p in detection.pulses}
    zone = commitment.start.tzinfo
    steps = detection.steps
    rows = []
    for k, step in enumerate(steps):
        pulse = opened.get(id(step))
        # Time to the next step like it (sign and size): the period of a cycling device.
        size = abs(step.delta_kw)
        period = next(
            (
                later.time_s - step.time_s
                for later in steps[k + 1 :]
                if later.sign == step.sign and abs(abs(later.delta_kw) - size) <= 0.3 * size
            ),
            math.nan,
        )
        if period > PERIOD_HORIZON_S:
            period = math.nan
        minutes = step.ramp_samples * signal.resolution_s / 60.0
        rows.append(
            EventRow(
                commitment_id=commitment.commitment_id,
                meter_id=commitment.meter_id,
                time=_iso(step.time_s, zone),
                kind="ramp" if step.ramp_samples > 2 else "step",
                delta_p_kw=float(step.delta_kw),
                delta_q_kvar=float(step.delta_q_kvar),
                level_before_kw=float(step.level_before_kw),
                level_after_kw=float(step.level_after_kw),
                ramp_kw_per_min=float(abs(step.delta_kw) / minutes),
                duration_s=float(pulse.duration_s) if pulse is not None else math.nan,
                period_s=period,
                sign_change=bool(step.sign_change),
                in_window=bool(commitment.start_s <= step.time_s < commitment.end_s),
            )
        )
    return tuple(rows)
