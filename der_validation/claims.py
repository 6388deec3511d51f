"""One run delivers once: commitments of a meter that claim the same run share its energy.

Each commitment is judged on its own (:func:`verdicts.judge`), so two commitments of one
meter whose windows overlap can both be explained by the same detected run: one 3 kW
step validating two 3 kW commitments would settle 6 kWh for the 3 kWh the meter saw.
Here the judgements of one meter are put side by side. Commitments whose evidence is the
same run (its start, end and direction) take its energy in turn: the one whose model
explains the run best first (then by ``commitment_id``, so the order of the file does not
matter), each at most its committed energy; what an earlier one took in the windows'
common time is no longer there for the next, whose delivered energy and verdict are
recomputed by the same share rule (:mod:`verdicts`). Stacked devices keep their due: a
6 kW run delivers two 3 kW commitments in full.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from gridmatch.der_validation.verdicts import Judgement, share_verdict
from gridmatch.results_io.der_validation import Verdict, VerdictRow

# Verdicts whose delivered energy came from a run (and so can be shared).
_DELIVERING = (Verdict.VALIDATED, Verdict.PARTIALLY_DELIVERED)


@dataclasses.dataclass
class _Claim:
    """A judgement that delivered from a run, and what it took of it."""

    position: int
    row: VerdictRow
    start_s: float
    end_s: float
    run_start_s: float
    run_end_s: float
    taken_kwh: float = 0.0

    def inside_s(self, other: _Claim | None = None) -> float:
        """Seconds of the run inside this window (and ``other``'s window, if given)."""
        start_s, end_s = max(self.start_s, self.run_start_s), min(self.end_s, self.run_end_s)
        if other is not None:
            start_s, end_s = max(start_s, other.start_s), min(end_s, other.end_s)
        return max(0.0, end_s - start_s)


def share_runs(judgements: Sequence[Judgement], partial_fraction: float) -> list[Judgement]:
    """Let each run deliver once among the commitments that claim it.

    Parameters
    ----------
    judgements
        Judgements of whole meters (every commitment of a meter is among them).
    partial_fraction
        The library's ``partial_fraction``: a recomputed share below it is
        ``not_delivered``.

    Returns
    -------
    list of Judgement
        The judgements in the same order; a commitment whose run an earlier claim took
        (part of) has its delivered energy, share, verdict and detail recomputed.
    """
    result = list(judgements)
    for claims in _runs(judgements).values():
        if len(claims) < 2:
            continue
        claims.sort(key=lambda c: (-c.row.matched_score, c.row.commitment_id))
        for k, claim in enumerate(claims):
            row = claim.row
            earlier = claims[:k]
            taken_kwh = sum(
                other.taken_kwh * claim.inside_s(other) / other.inside_s()
                for other in earlier
                if other.inside_s() > 0
            )
            left_kwh = max(0.0, row.delivered_kwh - taken_kwh)
            claim.taken_kwh = min(row.committed_kwh, left_kwh)
            if taken_kwh <= 0.0:
                continue
            names = ", ".join(other.row.commitment_id for other in earlier)
            result[claim.position] = dataclasses.replace(
                judgements[claim.position],
                row=_recomputed(row, left_kwh, partial_fraction, names),
            )
    return result


def _runs(judgements: Sequence[Judgement]) -> dict[tuple[str, str, str, bool], list[_Claim]]:
    """Group the delivering judgements by the run that is their evidence."""
    runs: dict[tuple[str, str, str, bool], list[_Claim]] = {}
    for position, judgement in enumerate(judgements):
        row = judgement.row
        if row.verdict not in _DELIVERING or not row.event_start or not row.event_end:
            continue
        key = (row.meter_id, row.event_start, row.event_end, row.event_delta_kw > 0)
        runs.setdefault(key, []).append(
            _Claim(
                position,
                row,
                _unix_s(row.start),
                _unix_s(row.end),
                _unix_s(row.event_start),
                _unix_s(row.event_end),
            )
        )
    return runs


def _recomputed(
    row: VerdictRow, delivered_kwh: float, partial_fraction: float, earlier: str
) -> VerdictRow:
    share = delivered_kwh / row.committed_kwh
    verdict = share_verdict(share, row.tolerance, partial_fraction)
    note = f"the run also delivered {earlier}: {share:.0%} left for this commitment"
    return dataclasses.replace(
        row,
        verdict=verdict,
        delivered_kwh=delivered_kwh,
        delivered_fraction=share,
        detail=f"{row.detail}; {note}",
    )


def _unix_s(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
