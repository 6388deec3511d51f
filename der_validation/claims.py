"""One run delivers once: commitments of a meter that claim the same run share its energy.

Each commitment is judged on its own (:func:`verdicts.judge`), so two commitments of one
meter whose windows overlap can both be explained by the same detected run: one 3 kW
step validating two 3 kW commitments would settle 6 kWh for the 3 kWh the meter saw.
Here the judgements of one meter are put side by side. Commitments whose evidence is the
same run take its energy in turn: the one whose model explains the run best first (then
by ``commitment_id``, so the order of the file does not matter), each at most its
committed energy; what an earlier one took in the windows' common time is no longer
there for the next, whose delivered energy and verdict are recomputed by the same share
rule (:mod:`verdicts`). Stacked devices keep their due: a 6 kW run delivers two 3 kW
commitments in full.

**The same run** is a run of the same meter and direction whose first step is the same
step: at the same instant, within the time in which detection itself makes one step of
two (``ramp_merge_s``, or two samples of the coarsest signal the two windows were
detected on). Not the same text: a run's times are written in each commitment's own UTC
offset, and its end is where each window's context saw it end (a 2 h window's context
ends before the off step a 4 h window sees), so neither an offset nor a window's length
makes a run deliver twice.

**A run's end is no opposite run.** The step that ends a delivered run, read from the
baseline before it (which held that run), looks like a run of the other direction: a
charge sold 10:00-14:00 that stops reads as a 3 kW discharge 14:00-16:00, an EV session
that stops as its curtailment. A run that starts with the off step of a delivered run
of the other direction loses the power that run was credited with (its share of the
committed energy per hour of its run) over its own run: the charge's end delivers
nothing, a battery reversing from +3 to -3 kW keeps the 3 kW of its discharge. Runs are
taken in time order, so the run a step ends has taken its share first.

**The net export** a PV export is read by (baseline zero exchange) holds every device's
export at that time: a battery discharging into it, another PV export commitment over
the same hours. A PV export therefore takes what is left of the net export once the
meter's other export runs (their committed share, taken first) and the PV export
commitments before it (best fit first, then by ``commitment_id``) took theirs in the
common time; it never takes from them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import datetime

from gridmatch.der_validation.verdicts import Judgement, share_verdict
from gridmatch.der_validation.window import direction
from gridmatch.results_io.der_validation import Verdict, VerdictRow
from gridmatch.scenario_io.der_models import ClearSkyModel, EventModelLibrary

# Verdicts whose delivered energy came from a run (and so can be shared).
_DELIVERING = (Verdict.VALIDATED, Verdict.PARTIALLY_DELIVERED)
# A step's time read on two detections of one signal differs by at most this many of
# the coarser signal's samples (block means start where each window's context starts).
_SAME_STEP_SAMPLES = 2


@dataclasses.dataclass
class _Claim:
    """A judgement that delivered from a run, and what it took of it."""

    position: int
    row: VerdictRow
    sign: int
    net_export: bool
    start_s: float
    end_s: float
    run_start_s: float
    run_end_s: float
    same_step_s: float
    taken_kwh: float = 0.0

    def inside_s(self) -> float:
        """Seconds of the run inside this window: where its energy lies."""
        return max(0.0, min(self.end_s, self.run_end_s) - max(self.start_s, self.run_start_s))

    def common_s(self, other: _Claim) -> float:
        """Seconds in which both runs lie inside both windows."""
        start_s = max(self.start_s, self.run_start_s, other.start_s, other.run_start_s)
        end_s = min(self.end_s, self.run_end_s, other.end_s, other.run_end_s)
        return max(0.0, end_s - start_s)

    def order(self) -> tuple[float, str]:
        """Best fit first, then by ``commitment_id`` (never the file's order)."""
        return (-self.row.matched_score, self.row.commitment_id)


def share_runs(judgements: Sequence[Judgement], library: EventModelLibrary) -> list[Judgement]:
    """Let each run deliver once among the commitments that claim it.

    Parameters
    ----------
    judgements
        Judgements of whole meters (every commitment of a meter is among them).
    library
        The event-model library they were judged with: the device kinds (a run's
        direction), the PV models (net export), ``partial_fraction`` (a recomputed share
        below it is ``not_delivered``) and the detection's resolution (the same step).

    Returns
    -------
    list of Judgement
        The judgements in the same order; a commitment whose run an earlier claim took
        (part of) has its delivered energy, share, verdict and detail recomputed.
    """
    partial_fraction = library.spec.validation.partial_fraction
    result = list(judgements)
    by_meter: dict[str, list[_Claim]] = {}
    for claim in _claims(judgements, library):
        by_meter.setdefault(claim.row.meter_id, []).append(claim)
    for claims in by_meter.values():
        runs = [c for c in claims if not c.net_export]
        groups = [g for sign in (1, -1) for g in _same_runs([c for c in runs if c.sign == sign])]
        # In time order, so that the runs a step may end have taken theirs before it.
        groups.sort(key=lambda g: g[0].run_start_s)
        done: list[_Claim] = []
        for same_run in groups:
            same_run.sort(key=_Claim.order)
            for k, claim in enumerate(same_run):
                ended = [o for o in done if o.sign != claim.sign and _ends_at(o, claim)]
                _take(claim, same_run[:k], ended, judgements, result, partial_fraction)
            done.extend(same_run)
        # Net export holds the meter's other export runs: they took first, and what a
        # PV export took is taken from no run.
        exports = sorted((c for c in claims if c.net_export), key=_Claim.order)
        for k, claim in enumerate(exports):
            earlier = [c for c in runs if c.sign == claim.sign] + exports[:k]
            _take(claim, earlier, (), judgements, result, partial_fraction)
    return result


def _ends_at(other: _Claim, claim: _Claim) -> bool:
    """Whether ``claim``'s run starts with the off step of ``other``'s delivered run."""
    same_s = max(claim.same_step_s, other.same_step_s)
    return (
        abs(other.run_end_s - claim.run_start_s) <= same_s
        and other.end_s >= other.run_end_s - same_s
        and other.taken_kwh > 0.0
    )


def _take(
    claim: _Claim,
    earlier: Sequence[_Claim],
    ended: Sequence[_Claim],
    judgements: Sequence[Judgement],
    result: list[Judgement],
    partial_fraction: float,
) -> None:
    """Give ``claim`` what ``earlier`` claims left of its run, recomputing its verdict.

    ``ended`` are delivered runs of the other direction that ``claim``'s first step
    ends: the baseline the step is measured from held their delivery, and their
    credited power is no change this commitment made.
    """
    row = claim.row
    # An earlier claim's energy is spread over its run inside its window; the share of
    # it in the common time is gone for this one.
    took = [
        (other, other.taken_kwh * claim.common_s(other) / other.inside_s())
        for other in earlier
        if other.inside_s() > 0
    ]
    # A run's off step, read as the start of an opposite run (a charge that stops read
    # as a discharge), drops by the power that run was credited with.
    rebounds = [
        (other, other.taken_kwh * claim.inside_s() / other.inside_s())
        for other in ended
        if other.inside_s() > 0
    ]
    taken_kwh = sum(kwh for _, kwh in took) + sum(kwh for _, kwh in rebounds)
    # What the others took comes off the run as read, and the committed power caps the
    # rest: a 6 kW run delivers two 3 kW commitments in full, not the second nothing.
    run_kwh = judgements[claim.position].run_kwh
    read_kwh = row.delivered_kwh if math.isnan(run_kwh) else run_kwh
    left_kwh = min(row.delivered_kwh, max(0.0, read_kwh - taken_kwh))
    claim.taken_kwh = min(row.committed_kwh, left_kwh)
    if taken_kwh <= 0.0:
        return
    share = left_kwh / row.committed_kwh
    notes = []
    if any(kwh > 0.0 for _, kwh in took):
        names = ", ".join(other.row.commitment_id for other, kwh in took if kwh > 0.0)
        notes.append(f"the run also delivered {names}")
    if rebounds:
        names = ", ".join(other.row.commitment_id for other, _ in rebounds)
        notes.append(f"its step ends the run that delivered {names} (the baseline held it)")
    note = "; ".join(notes) + f": {share:.0%} left for this commitment"
    result[claim.position] = dataclasses.replace(
        judgements[claim.position], row=_recomputed(row, left_kwh, partial_fraction, note)
    )


def _same_runs(claims: Sequence[_Claim]) -> list[list[_Claim]]:
    """Group claims of one meter and direction whose runs start with the same step."""
    groups: list[list[_Claim]] = []
    for claim in sorted(claims, key=lambda c: c.run_start_s):
        if groups:
            last = groups[-1][-1]
            same_s = max(claim.same_step_s, last.same_step_s)
            if claim.run_start_s - last.run_start_s <= same_s:
                groups[-1].append(claim)
                continue
        groups.append([claim])
    return groups


def _claims(judgements: Sequence[Judgement], library: EventModelLibrary) -> list[_Claim]:
    """Return the delivering judgements, each with the run that is its evidence."""
    spec = library.spec
    found = []
    for position, judgement in enumerate(judgements):
        row = judgement.row
        if row.verdict not in _DELIVERING or not row.event_start or not row.event_end:
            continue
        model = spec.models[row.device_type]
        sign = direction(model.kind, row.operation)
        start_s, end_s = _unix_s(row.start), _unix_s(row.end)
        # The coarsest resolution this window's detection could have run at.
        samples = (end_s - start_s + 2 * spec.validation.context_s) / max(row.resolution_s, 1)
        coarse_s = max(row.resolution_s, 1) * max(
            1, math.ceil(samples / spec.detection.max_samples)
        )
        found.append(
            _Claim(
                position,
                row,
                sign,
                isinstance(model, ClearSkyModel) and sign < 0,
                start_s,
                end_s,
                _unix_s(row.event_start),
                _unix_s(row.event_end),
                max(float(spec.detection.ramp_merge_s), _SAME_STEP_SAMPLES * coarse_s),
            )
        )
    return found


def _recomputed(
    row: VerdictRow, delivered_kwh: float, partial_fraction: float, note: str
) -> VerdictRow:
    share = delivered_kwh / row.committed_kwh
    verdict = share_verdict(share, row.tolerance, partial_fraction)
    return dataclasses.replace(
        row,
        verdict=verdict,
        delivered_kwh=delivered_kwh,
        delivered_fraction=share,
        detail=f"{row.detail}; {note}",
    )


def _unix_s(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
