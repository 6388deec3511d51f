"""``gridmatch validate-commitments DIR``: read the folder, judge every commitment, write.

Independent of the command line, so tests and the benchmark call it directly. The whole
folder is validated before the first commitment is judged, and the output folder is
written atomically: after any failure it holds the previous complete output or nothing.

Meters are independent (a commitment is judged on its own meter's data, with the PV day
fits of that meter), so the commitments are judged meter by meter in worker processes:
each task is a run of whole meters, and the judgements are put back in file order, so
the output is byte for byte the same whatever the number of workers. A ``meter_data/``
folder is judged file by file instead: each worker reads one file of it, judges its
meters' commitments and forgets it, so no process holds more than one file's data.
"""

from __future__ import annotations

import bisect
import math
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridmatch.der_validation.chains import judge_chains
from gridmatch.der_validation.claims import share_runs
from gridmatch.der_validation.verdicts import DayFits, Judgement, judge
from gridmatch.errors import InputError, UsageError
from gridmatch.prepaid.run import files_fingerprint
from gridmatch.results_io.atomic import recover
from gridmatch.results_io.der_validation import (
    DerResultFiles,
    DerSummary,
    EventRow,
    MeterDataSummary,
    Verdict,
    VerdictRow,
    write_der_result,
)
from gridmatch.results_io.manifest import input_hashes, package_versions
from gridmatch.results_io.tables import to_csv
from gridmatch.scenario_io.der_input import (
    COMMITMENTS_FILE,
    Commitment,
    DerInputs,
    MeterSeries,
    load_der_inputs,
    read_meter_data,
)
from gridmatch.scenario_io.der_models import EventModelLibrary, SiteSpec

DEFAULT_MODELS = Path(__file__).parent / "models" / "default.yaml"
RECORDED = ("ruptures", "pvlib")
# Below this many commitments a worker process costs more than it saves (its start, and
# the meters' arrays sent to it): the default then judges in this process.
MIN_PARALLEL_COMMITMENTS = 200
# Tasks per worker: enough that a worker left with a heavy meter does not hold up the
# end, few enough that each task's pickling stays small against its judging.
TASKS_PER_WORKER = 4


@dataclass(frozen=True)
class ValidationRun:
    """What :func:`run_validation` judged and wrote."""

    out_dir: Path
    summary: DerSummary
    judgements: tuple[Judgement, ...]


def load(directory: Path) -> DerInputs:
    """Validate a folder against the default library (and its own ``event_models.yaml``)."""
    return load_der_inputs(directory, DEFAULT_MODELS)


def default_workers() -> int:
    """Worker processes of the default: the CPUs this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity
        return max(os.cpu_count() or 1, 1)


@dataclass(frozen=True)
class _MeterTask:
    """Whole meters to judge in one worker: their data, sites and commitments."""

    library: EventModelLibrary
    meters: dict[str, MeterSeries]
    sites: dict[str, SiteSpec]
    commitments: tuple[Commitment, ...]


def _judge_commitments(
    commitments: Sequence[Commitment],
    meters: dict[str, MeterSeries],
    sites: dict[str, SiteSpec],
    library: EventModelLibrary,
) -> list[Judgement]:
    """Judge commitments of whole meters (every commitment of each meter is among them)."""
    starts: dict[tuple[str, str], list[float]] = {}
    for c in commitments:
        starts.setdefault((c.meter_id, c.device_type), []).append(c.start_s)
    for found in starts.values():
        found.sort()
    default_site = library.spec.default_site
    days: dict[str, DayFits] = {}
    judgements = []
    for c in commitments:
        series = meters.get(c.meter_id)
        resolution_s = series.resolution_s if series is not None else 1
        others = _claimed_near(starts[c.meter_id, c.device_type], c, resolution_s, library)
        site = sites.get(c.meter_id, default_site)
        if series is not None and c.meter_id not in days:
            days[c.meter_id] = DayFits(series, site, library)
        fits = days.get(c.meter_id)
        judgements.append(judge(c, series, library, site, others, fits))

    def judge_span(span: Commitment) -> Judgement:
        site = sites.get(span.meter_id, default_site)
        return judge(span, meters.get(span.meter_id), library, site, (), days.get(span.meter_id))

    partial = library.spec.validation.partial_fraction
    return share_runs(judge_chains(commitments, judgements, judge_span, partial), library)


def _claimed_near(
    starts_s: list[float], commitment: Commitment, resolution_s: int, library: EventModelLibrary
) -> tuple[float, ...]:
    """Return the other commitments' starts (sorted ``starts_s``) that can matter here.

    A claimed start only keeps a step found within ``search_s`` of the window's start
    from being this run mistimed, if it lies within the alignment tolerance of that step
    (``verdicts._mistimed``): starts further away change nothing, and a meter-year has
    hundreds of them per device type, each tested against every step.
    """
    validation = library.spec.validation
    start_s, end_s = commitment.start_s, commitment.end_s
    # The search window's resolution once coarsened, whose two samples may widen the
    # alignment tolerance; an hour more for safety.
    margin_s = validation.search_s + validation.context_s
    samples = math.ceil((end_s - start_s + 2 * margin_s) / resolution_s) + 1
    coarse_s = resolution_s * max(1, math.ceil(samples / library.spec.detection.max_samples))
    reach_s = validation.search_s + max(validation.align_tolerance_s, 2 * coarse_s) + 3600
    first = bisect.bisect_left(starts_s, start_s - reach_s)
    last = bisect.bisect_right(starts_s, start_s + reach_s)
    return tuple(t for t in starts_s[first:last] if t != start_s)


@dataclass(frozen=True)
class _Judged:
    """A judgement and its lines of verdicts.csv and events.csv, rendered in the worker."""

    judgement: Judgement
    verdict_line: str
    event_lines: str


def _csv_body(cls: type[VerdictRow] | type[EventRow], rows: Sequence[Any]) -> str:
    """Return the lines :func:`to_csv` writes for ``rows``, without its header."""
    return to_csv(cls, rows).partition("\n")[2]


@dataclass(frozen=True)
class _Tables:
    """verdicts.csv and events.csv as text, header first."""

    verdicts_csv: str
    events_csv: str


def _rendered(judgement: Judgement) -> _Judged:
    # Rendering the rows takes seconds for a folder of meter-years: done by the workers,
    # in parallel, rather than after the last one.
    return _Judged(
        judgement, _csv_body(VerdictRow, [judgement.row]), _csv_body(EventRow, judgement.events)
    )


def _tables(judged: Sequence[_Judged]) -> _Tables:
    """verdicts.csv and events.csv of rendered judgements, in their order."""
    return _Tables(
        to_csv(VerdictRow, []) + "".join(r.verdict_line for r in judged),
        to_csv(EventRow, []) + "".join(r.event_lines for r in judged),
    )


def _judge_task(task: _MeterTask) -> list[_Judged]:
    judgements = _judge_commitments(task.commitments, task.meters, task.sites, task.library)
    return [_rendered(j) for j in judgements]


def _meter_tasks(inputs: DerInputs, n_tasks: int) -> tuple[list[_MeterTask], list[list[int]]]:
    """Split the commitments into runs of whole meters of about equal commitment counts.

    Returns the tasks and, per task, the file positions of its commitments.
    """
    by_meter: dict[str, list[int]] = {}
    for index, c in enumerate(inputs.commitments):
        by_meter.setdefault(c.meter_id, []).append(index)
    target = len(inputs.commitments) / n_tasks
    groups: list[list[str]] = [[]]
    count = 0
    for meter, indices in by_meter.items():
        if groups[-1] and count >= target * len(groups):
            groups.append([])
        groups[-1].append(meter)
        count += len(indices)
    tasks, positions = [], []
    for group in groups:
        indices = sorted(i for meter in group for i in by_meter[meter])
        tasks.append(
            _MeterTask(
                library=inputs.library,
                meters={m: inputs.meters[m] for m in group if m in inputs.meters},
                sites={m: inputs.sites[m] for m in group if m in inputs.sites},
                commitments=tuple(inputs.commitments[i] for i in indices),
            )
        )
        positions.append(indices)
    return tasks, positions


def judge_all(inputs: DerInputs, workers: int | None = 1) -> tuple[Judgement, ...]:
    """Judge every commitment of validated inputs, in file order.

    Parameters
    ----------
    workers
        Worker processes that judge whole meters each; 1 judges in this process, ``None``
        takes :func:`default_workers` (at most one per meter, and none below
        ``MIN_PARALLEL_COMMITMENTS`` commitments). The judgements are the same whatever
        the number.
    """
    return _judge_rendered(inputs, workers)[0]


@dataclass(frozen=True)
class _Shared:
    """What every worker judging a file of ``meter_data/`` needs (sent once per worker)."""

    library: EventModelLibrary
    sites: dict[str, SiteSpec]
    commitments: tuple[Commitment, ...]
    positions_by_meter: dict[str, list[int]]


@dataclass(frozen=True)
class _FileJudged:
    """One file of ``meter_data/``: its meters, their data summaries, their judgements."""

    path: Path
    summaries: tuple[MeterDataSummary, ...]
    judged: tuple[tuple[int, _Judged], ...]


_shared: _Shared | None = None


def _init_worker(shared: _Shared) -> None:
    global _shared
    _shared = shared


def _judge_file(path: Path) -> _FileJudged:
    shared = _shared
    assert shared is not None, "a worker judges files only after _init_worker"
    meters = read_meter_data(path)
    positions = sorted(i for m in meters for i in shared.positions_by_meter.get(m, ()))
    commitments = [shared.commitments[i] for i in positions]
    judgements = _judge_commitments(commitments, meters, shared.sites, shared.library)
    judged = tuple((i, _rendered(j)) for i, j in zip(positions, judgements, strict=True))
    return _FileJudged(path, tuple(meter_summary(m) for m in meters.values()), judged)


def judge_meter_files(inputs: DerInputs, workers: int | None = 1) -> tuple[Judgement, ...]:
    """Judge every commitment of a folder whose meter data is a ``meter_data/`` folder.

    File by file, as ``gridmatch validate-commitments`` does: each file is read and
    its meters' commitments judged before the next is read.

    Parameters
    ----------
    inputs
        The folder's inputs, loaded with ``meter_data/`` (``inputs.meter_files``).
    workers
        Processes reading and judging files; ``None``: one per core.

    Raises
    ------
    InputError
        A file of it is malformed, or a meter's data is in two files.
    """
    return _judge_files(inputs, workers)[0]


def _judge_files(
    inputs: DerInputs, workers: int | None
) -> tuple[tuple[Judgement, ...], _Tables, list[MeterDataSummary]]:
    """Judge a folder whose meter data is a ``meter_data/`` folder, file by file.

    Raises
    ------
    InputError
        A file of it is malformed, or a meter's data is in two files.
    """
    by_meter: dict[str, list[int]] = {}
    for index, c in enumerate(inputs.commitments):
        by_meter.setdefault(c.meter_id, []).append(index)
    shared = _Shared(inputs.library, inputs.sites, inputs.commitments, by_meter)
    files = inputs.meter_files
    workers = max(min(default_workers() if workers is None else workers, len(files)), 1)
    results: list[_Judged | None] = [None] * len(inputs.commitments)
    summaries: list[MeterDataSummary] = []
    found_in: dict[str, Path] = {}

    def collect(done: _FileJudged) -> None:
        for summary in done.summaries:
            if summary.meter_id in found_in:
                raise InputError(
                    done.path,
                    f"meter '{summary.meter_id}' is also in {found_in[summary.meter_id].name}: "
                    "give each meter's data in one file",
                    field="meter_id",
                )
            found_in[summary.meter_id] = done.path
        summaries.extend(done.summaries)
        for index, judged in done.judged:
            results[index] = judged

    if workers == 1:
        _init_worker(shared)
        for path in files:
            collect(_judge_file(path))
    else:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(shared,)
        )
        try:
            for done in pool.map(_judge_file, files):
                collect(done)
        finally:
            # After a bad file, the files still queued are not read for nothing.
            pool.shutdown(wait=True, cancel_futures=True)
    missing = [i for i, r in enumerate(results) if r is None]
    # Commitments of meters no file has: judged without data (insufficient_data).
    alone = [inputs.commitments[i] for i in missing]
    no_data = _judge_commitments(alone, {}, inputs.sites, inputs.library)
    for index, j in zip(missing, no_data, strict=True):
        results[index] = _rendered(j)
    ordered = [r for r in results if r is not None]
    tables = _tables(ordered)
    return tuple(r.judgement for r in ordered), tables, summaries


def _judge_rendered(
    inputs: DerInputs, workers: int | None
) -> tuple[tuple[Judgement, ...], _Tables | None]:
    """Judge as :func:`judge_all`; with workers, also the tables they rendered."""
    n_meters = len({c.meter_id for c in inputs.commitments})
    if workers is None:
        workers = min(default_workers(), n_meters)
        if len(inputs.commitments) < MIN_PARALLEL_COMMITMENTS:
            workers = 1
    workers = max(min(workers, n_meters), 1)
    if workers == 1:
        judged = _judge_commitments(inputs.commitments, inputs.meters, inputs.sites, inputs.library)
        return tuple(judged), None
    tasks, positions = _meter_tasks(inputs, workers * TASKS_PER_WORKER)
    results: list[_Judged | None] = [None] * len(inputs.commitments)
    # fork where there is one: the workers start in milliseconds with the modules loaded.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for indices, task_results in zip(positions, pool.map(_judge_task, tasks), strict=True):
            for index, result in zip(indices, task_results, strict=True):
                results[index] = result
    ordered = [r for r in results if r is not None]
    tables = _tables(ordered)
    return tuple(r.judgement for r in ordered), tables


def meter_summary(series: MeterSeries) -> MeterDataSummary:
    """Summarise one meter's data for summary.json: span, resolution, rows, gaps."""
    span = len(series.p_kw)
    return MeterDataSummary(
        meter_id=series.meter_id,
        resolution_s=series.resolution_s,
        first=datetime.fromtimestamp(series.start_s, tz=UTC).isoformat(),
        last=datetime.fromtimestamp(series.end_s - series.resolution_s, tz=UTC).isoformat(),
        rows=series.rows,
        gaps=series.gaps,
        missing_samples=series.missing_samples,
        coverage=series.rows / span if span else 0.0,
    )


def summarise(
    inputs: DerInputs,
    judgements: tuple[Judgement, ...],
    runtime_s: float,
    meters: Sequence[MeterDataSummary] | None = None,
) -> DerSummary:
    """Summarise a validation: counts, energies, the meters' data.

    Parameters
    ----------
    meters
        The meters' data summaries (default: of ``inputs.meters``; a ``meter_data/``
        folder's come from the workers that read its files).
    """
    counts = Counter(j.row.verdict.value for j in judgements)
    by_device: dict[str, dict[str, int]] = {}
    for j in judgements:
        device = by_device.setdefault(j.row.device_type, {})
        device[j.row.verdict.value] = device.get(j.row.verdict.value, 0) + 1
    if meters is None:
        meters = [meter_summary(series) for series in inputs.meters.values()]
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
        meters=list(meters),
    )


def run_validation(
    directory: Path,
    out_dir: Path,
    *,
    slot_start: datetime | None = None,
    slot_minutes: int = 60,
    workers: int | None = None,
) -> ValidationRun:
    """Validate ``directory``, judge every commitment and write ``out_dir`` atomically.

    Parameters
    ----------
    slot_start, slot_minutes
        When given, validated deliveries are also written as settlement's meter CSV
        (``deliveries.csv``), in slots of ``slot_minutes`` counted from ``slot_start``.
    workers
        Worker processes judging meters (:func:`judge_all`; ``None``: one per CPU). The
        output is the same whatever the number, so it is not in the manifest's options.

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
    if slot_start is not None:
        _check_slot_start(inputs, slot_start)
    began = time.perf_counter()
    meter_summaries = None
    if inputs.meter_files:
        judgements, files_tables, meter_summaries = _judge_files(inputs, workers)
        tables: _Tables | None = files_tables
    else:
        judgements, tables = _judge_rendered(inputs, workers)
    summary = summarise(inputs, judgements, time.perf_counter() - began, meter_summaries)
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
        verdicts_csv=tables.verdicts_csv if tables is not None else None,
        events_csv=tables.events_csv if tables is not None else None,
    )
    write_der_result(out_dir, files)
    return ValidationRun(out_dir, summary, judgements)


def _check_slot_start(inputs: DerInputs, slot_start: datetime) -> None:
    """Refuse a slot 0 after a commitment's start: its energy before would be lost."""
    early = min(inputs.commitments, key=lambda c: c.start_s, default=None)
    if early is not None and early.start_s < slot_start.timestamp():
        raise UsageError(
            f"--slot-start {slot_start.isoformat()} is after the start of commitment "
            f"'{early.commitment_id}' ({inputs.directory / COMMITMENTS_FILE} row {early.row}, "
            f"start {early.start.isoformat()}): its deliveries would fall before slot 0; "
            f"give --slot-start {early.start.isoformat()} or earlier"
        )


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
            **input_hashes(inputs.directory, inputs.input_files),
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
