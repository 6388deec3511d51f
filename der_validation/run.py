"""``gridmatch validate-commitments DIR``: read the folder, judge every commitment, write.

Independent of the command line, so tests and the benchmark call it directly. The whole
folder is validated before the first commitment is judged, and the output folder is
written atomically: after any failure it holds the previous complete output or nothing.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridmatch.der_validation.verdicts import DayFits, Judgement, judge
from gridmatch.prepaid.run import files_fingerprint
from gridmatch.results_io.atomic import recover
from gridmatch.results_io.der_validation import (
    DerResultFiles,
    DerSummary,
    MeterDataSummary,
    Verdict,
    write_der_result,
)
from gridmatch.results_io.manifest import file_sha256, package_versions
from gridmatch.scenario_io.der_input import DerInputs, load_der_inputs

DEFAULT_MODELS = Path(__file__).parent / "models" / "default.yaml"
RECORDED = ("ruptures", "pvlib")


@dataclass(frozen=True)
class ValidationRun:
    """What :func:`run_validation` judged and wrote."""

    out_dir: Path
    summary: DerSummary
    judgements: tuple[Judgement, ...]


def load(directory: Path) -> DerInputs:
    """Validate a folder against the default library (and its own ``event_models.yaml``)."""
    return load_der_inputs(directory, DEFAULT_MODELS)


def judge_all(inputs: DerInputs) -> tuple[Judgement, ...]:
    """Judge every commitment of validated inputs, in file order."""
    starts: dict[tuple[str, str], list[float]] = {}
    for c in inputs.commitments:
        starts.setdefault((c.meter_id, c.device_type), []).append(c.start_s)
    days: dict[str, DayFits] = {}
    judgements = []
    for c in inputs.commitments:
        others = tuple(t for t in starts[c.meter_id, c.device_type] if t != c.start_s)
        series = inputs.meters.get(c.meter_id)
        site = inputs.site(c.meter_id)
        if series is not None and c.meter_id not in days:
            days[c.meter_id] = DayFits(series, site, inputs.library)
        fits = days.get(c.meter_id)
        judgements.append(judge(c, series, inputs.library, site, others, fits))
    return tuple(judgements)


def summarise(inputs: DerInputs, judgements: tuple[Judgement, ...], runtime_s: float) -> DerSummary:
    """Summarise a validation: counts, energies, the meters' data."""
    counts = Counter(j.row.verdict.value for j in judgements)
    by_device: dict[str, dict[str, int]] = {}
    for j in judgements:
        device = by_device.setdefault(j.row.device_type, {})
        device[j.row.verdict.value] = device.get(j.row.verdict.value, 0) + 1
    meters = []
    for series in inputs.meters.values():
        span = len(series.p_kw)
        meters.append(
            MeterDataSummary(
                meter_id=series.meter_id,
                resolution_s=series.resolution_s,
                first=datetime.fromtimestamp(series.start_s, tz=UTC).isoformat(),
                last=datetime.fromtimestamp(series.end_s - series.resolution_s, tz=UTC).isoformat(),
                rows=series.rows,
                gaps=series.gaps,
                missing_samples=series.missing_samples,
                coverage=series.rows / span if span else 0.0,
            )
        )
    validated = [j.row for j in judgements if j.row.verdict is Verdict.VALIDATED]
    return DerSummary(
        name=inputs.directory.resolve().name,
        n_commitments=len(judgements),
        verdicts={v.value: counts.get(v.value, 0) for v in Verdict},
        by_device=by_device,
        committed_kwh=sum(j.row.committed_kwh for j in judgements),
        validated_kwh=sum(min(r.delivered_kwh, r.committed_kwh) for r in validated),
        models_version=inputs.library.version,
        models=list(inputs.library.spec.models),
        runtime_s=runtime_s,
        meters=meters,
    )


def run_validation(
    directory: Path,
    out_dir: Path,
    *,
    slot_start: datetime | None = None,
    slot_minutes: int = 60,
) -> ValidationRun:
    """Validate ``directory``, judge every commitment and write ``out_dir`` atomically.

    Parameters
    ----------
    slot_start, slot_minutes
        When given, validated deliveries are also written as settlement's meter CSV
        (``deliveries.csv``), in slots of ``slot_minutes`` counted from ``slot_start``.

    Raises
    ------
    gridmatch.errors.InputError
        A file of ``directory`` is missing or malformed (file, row and field named);
        nothing is written.
    gridmatch.errors.OutputFolderError
        ``out_dir`` holds files gridmatch did not write.
    """
    recover(out_dir)  # a killed earlier run's staging folder, before anything can fail
    inputs = load(directory)
    began = time.perf_counter()
    judgements = judge_all(inputs)
    summary = summarise(inputs, judgements, time.perf_counter() - began)
    deliveries = None
    if slot_start is not None:
        from gridmatch.der_validation.settlement import deliveries_csv, validated_deliveries

        rows = [j.row for j in judgements]
        kinds = {name: model.kind for name, model in inputs.library.spec.models.items()}
        deliveries = deliveries_csv(validated_deliveries(rows, slot_start, slot_minutes, kinds))
    files = DerResultFiles(
        summary=summary,
        verdicts=[j.row for j in judgements],
        events=[e for j in judgements for e in j.events],
        manifest=manifest(inputs, slot_start, slot_minutes),
        deliveries=deliveries,
    )
    write_der_result(out_dir, files)
    return ValidationRun(out_dir, summary, judgements)


def manifest(
    inputs: DerInputs, slot_start: datetime | None = None, slot_minutes: int = 60
) -> dict[str, Any]:
    """Everything needed to reproduce a validation: inputs, the merged library, versions."""
    from importlib.metadata import PackageNotFoundError, version

    root = inputs.directory.resolve()
    versions: dict[str, str | None] = {"python": sys.version.split()[0], **package_versions()}
    for name in RECORDED:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    versions["gridmatch_files_sha256"] = files_fingerprint()
    return {
        "kind": "der_validation",
        "scenario_dir": str(root),
        "inputs": {
            str(path.resolve().relative_to(root)): {"sha256": file_sha256(path)}
            for path in inputs.input_files
        },
        "event_models": {
            "version": inputs.library.version,
            "sources": [str(p) for p in inputs.library.sources],
            "library": inputs.library.spec.model_dump(mode="json"),
        },
        "options": {
            "slot_start": slot_start.isoformat() if slot_start is not None else None,
            "slot_minutes": slot_minutes,
        },
        "versions": versions,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
