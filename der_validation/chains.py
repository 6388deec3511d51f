"""Back-to-back commitments: one run through a chain of them delivers each.

A market sells flexibility by the slot, so a device that runs 10:00-14:00 at 3 kW may
hold two commitments, 10:00-12:00 and 12:00-14:00, of the same meter, device type,
operation, power and tolerance. Judged alone, the second shows no step at its start
(the device was already running) and would be ``not_delivered``. Such a **chain** is
also judged as one commitment over its whole span; a piece that its own judgement does
not validate takes, from the chain's run, the energy the run delivered inside the
piece's window, and its verdict follows the same share rule (:mod:`verdicts`). A piece
validated on its own keeps its judgement, and so does a piece whose own window the meter
did not cover (``insufficient_data``): the chain's run is read across the gap, from the
steps either side of it, and the meter proves nothing of the piece's hours. A chain spans at most
:data:`detection.MAX_PAIR_S` (a run longer than that is not paired with its end
either); a longer sequence is cut into chains of that span.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime

from gridmatch.der_validation.detection import MAX_PAIR_S
from gridmatch.der_validation.verdicts import Judgement, share_verdict
from gridmatch.results_io.der_validation import Verdict, VerdictRow
from gridmatch.scenario_io.der_input import Commitment

_DELIVERING = (Verdict.VALIDATED, Verdict.PARTIALLY_DELIVERED)


def chains(commitments: Sequence[Commitment]) -> list[list[int]]:
    """Return the chains among ``commitments``: positions, in time order, two or more each.

    Pieces of a chain share meter, device type, operation, power and tolerance, and each
    starts where the one before it ends.
    """

    def kind(c: Commitment) -> tuple[str, str, str, float, float]:
        tolerance = -1.0 if c.tolerance is None else c.tolerance
        return (c.meter_id, c.device_type, c.operation, c.kw, tolerance)

    order = sorted(
        range(len(commitments)), key=lambda i: (kind(commitments[i]), commitments[i].start_s)
    )
    found: list[list[int]] = []
    current: list[int] = []
    for i in order:
        c = commitments[i]
        if current:
            first, last = commitments[current[0]], commitments[current[-1]]
            if (
                kind(last) == kind(c)
                and last.end_s == c.start_s
                and c.end_s - first.start_s <= MAX_PAIR_S
            ):
                current.append(i)
                continue
            if len(current) > 1:
                found.append(current)
        current = [i]
    if len(current) > 1:
        found.append(current)
    return found


def judge_chains(
    commitments: Sequence[Commitment],
    judgements: Sequence[Judgement],
    judge_span: Callable[[Commitment], Judgement],
    partial_fraction: float,
) -> list[Judgement]:
    """Give pieces of a chain the energy the chain's run delivered in their windows.

    Parameters
    ----------
    commitments, judgements
        The commitments of whole meters and their own judgements (same order).
    judge_span
        Judges a commitment (the chain's span, as one commitment of the first piece).
    partial_fraction
        The library's ``partial_fraction``.

    Returns
    -------
    list of Judgement
        The judgements, a piece that its own judgement did not validate replaced where
        the chain's run delivers it (validated, or partially where it was less); a piece
        its own judgement validated, or found with too little data, is kept.
    """
    result = list(judgements)
    for chain in chains(commitments):
        first, last = commitments[chain[0]], commitments[chain[-1]]
        span = judge_span(dataclasses.replace(first, end=last.end)).row
        if span.verdict not in _DELIVERING or not span.event_start or not span.event_end:
            continue
        for i in chain:
            own = judgements[i].row
            # A piece's own data decide whether the meter saw it: a chain does not
            # stand in for the samples the meter did not send.
            if own.verdict in (Verdict.VALIDATED, Verdict.INSUFFICIENT_DATA):
                continue
            row = _piece(span, commitments[i], own, first.commitment_id, partial_fraction)
            if row.verdict is Verdict.VALIDATED or (
                row.verdict is Verdict.PARTIALLY_DELIVERED and own.verdict not in _DELIVERING
            ):
                result[i] = dataclasses.replace(judgements[i], row=row)
    return result


def _piece(
    span: VerdictRow, piece: Commitment, own: VerdictRow, first_id: str, partial_fraction: float
) -> VerdictRow:
    """Return the chain's verdict row for one piece: the run's energy inside its window."""
    run_start_s = datetime.fromisoformat(span.event_start).timestamp()
    run_end_s = datetime.fromisoformat(span.event_end).timestamp()
    span_start_s = datetime.fromisoformat(span.start).timestamp()
    span_end_s = datetime.fromisoformat(span.end).timestamp()

    def inside_s(start_s: float, end_s: float) -> float:
        return max(0.0, min(end_s, run_end_s) - max(start_s, run_start_s))

    whole_s = inside_s(span_start_s, span_end_s)
    share_s = inside_s(piece.start_s, piece.end_s)
    delivered_kwh = span.delivered_kwh * share_s / whole_s if whole_s > 0 else 0.0
    committed_kwh = piece.energy_kwh
    share = delivered_kwh / committed_kwh
    verdict = share_verdict(share, own.tolerance, partial_fraction)
    return dataclasses.replace(
        span,
        commitment_id=own.commitment_id,
        start=own.start,
        end=own.end,
        committed_kwh=committed_kwh,
        verdict=verdict,
        delivered_kwh=delivered_kwh,
        delivered_fraction=share,
        baseline_kw=own.baseline_kw,
        baseline_delivered_kwh=own.baseline_delivered_kwh,
        coverage=own.coverage,
        detail=(
            f"one run through the back-to-back commitments from {first_id} "
            f"({span.detail}); delivered {share:.0%} in this window"
        ),
    )
