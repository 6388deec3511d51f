"""DER commitment validation on generated, labelled households (issue #19).

Measures, on data written by ``der_validation/synthetic.py`` (seeded; no labelled data
set can be downloaded here):

* event detection per device type: precision, recall and F1 of the device runs found
  in every meter-day (``der_validation/activations.py``) against the ground truth: a
  detected run labelled D is a true positive if a true run of D starts within the
  alignment tolerance of it (PV: a PV day, on the same meter-day), each true run
  matched at most once;
* the confusion matrix of device classification: every true run against the label of
  the detected run nearest to its start (``missed`` if none is within the tolerance);
* verdict accuracy: every commitment's verdict against the verdict its acted-out
  behaviour should get (``truth/commitments.csv``), and the verdict confusion matrix;
* throughput: meter-days per second of reading meter_data.csv, of judging every
  commitment, and of the full-day detection, in this process on one core;
* end to end (``--throughput 1000x3,20x365``): folders of that many meters and days run
  through ``gridmatch validate-commitments DIR --workers N`` in a fresh process (start,
  read, judge, write), wall-clock timed. Generating a year of households is slower than
  judging it, so these folders are **tiled**: generated households (``--base-meters``
  for ``--base-days`` days, one base per quarter of the year so the sun stands about
  right) are repeated under new meter ids and shifted by whole days, commitments with
  them. The work per meter-day is that of generated data; the verdicts are not scored.
  A file holds at most 512 MiB of meter data (about 20 meter-years of 1-min data), so
  the year of 1,000 meters is the measured 20-meter year times 50, and the output says
  so. ``--meter-files N`` writes a tiled folder's meter data as N files of
  ``meter_data/`` instead of one ``meter_data.csv``, as such a year would be given:
  the workers then read the files too, file by file.

``--smoke`` runs a few meters for two days, and a tiny folder through the command, in a
few seconds (scripts/test.sh).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from gridmatch.der_validation.activations import OTHER, classify_day
from gridmatch.der_validation.run import judge_all, load
from gridmatch.der_validation.synthetic import SyntheticSpec, write_folder
from gridmatch.results_io.der_validation import Verdict
from gridmatch.scenario_io.der_input import DerInputs

DEVICES = ("ev_charger", "battery", "heat_pump", "pv", "controllable_load")
YEAR_METER_DAYS = 365 * 1000
GOAL_S = 600.0
CORES = 2
DAY_S = 86_400
# Quarters of the year the tiled folders take their generated households from.
BASE_STARTS = ("2026-01-01", "2026-04-02", "2026-07-02", "2026-10-01")


def _time_s(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def detection_scores(folder: Path, inputs, align_s: float) -> tuple[dict, dict, float, int]:
    """Per device type precision / recall / F1, the confusion matrix, time and meter-days."""
    truth_runs = defaultdict(list)
    for row in csv.DictReader((folder / "truth" / "activations.csv").open()):
        truth_runs[row["meter_id"]].append(
            (row["device_type"], _time_s(row["start"]), _time_s(row["end"]))
        )
    counts = {d: Counter() for d in DEVICES}
    confusion: dict[str, Counter] = {d: Counter() for d in DEVICES}
    began = time.perf_counter()
    meter_days = 0
    for meter_id, series in inputs.meters.items():
        site = inputs.site(meter_id)
        days = range(series.start_s, series.end_s - 3600, 86_400)
        detected = []
        for day_start in days:
            detected.extend(classify_day(series, inputs.library, site, day_start))
            meter_days += 1
        truths = truth_runs.get(meter_id, [])
        used: set[int] = set()
        for k, run in enumerate(detected):
            if run.device_type == OTHER:
                continue
            match = None
            for j, (device, start, _) in enumerate(truths):
                if j in used or device != run.device_type:
                    continue
                same = (
                    int(start // 86_400) == int(run.start_s // 86_400)
                    if device == "pv" and run.end_s - run.start_s > 6 * 3600
                    else abs(start - run.start_s) <= align_s
                )
                if same:
                    match = j
                    break
            if match is None:
                counts[run.device_type]["fp"] += 1
            else:
                used.add(match)
                counts[run.device_type]["tp"] += 1
            del k
        for j, (device, start, end) in enumerate(truths):
            if j not in used:
                counts[device]["fn"] += 1
            long_pv = device == "pv" and end - start > 6 * 3600
            near = [
                r
                for r in detected
                if (
                    int(r.start_s // 86_400) == int(start // 86_400)
                    and r.end_s - r.start_s > 6 * 3600
                    if long_pv
                    else abs(r.start_s - start) <= align_s
                )
            ]
            if not near:
                confusion[device]["missed"] += 1
            else:
                best = min(near, key=lambda r: (r.device_type != device, abs(r.start_s - start)))
                confusion[device][best.device_type] += 1
    elapsed = time.perf_counter() - began
    scores = {}
    for device in DEVICES:
        tp, fp, fn = counts[device]["tp"], counts[device]["fp"], counts[device]["fn"]
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        scores[device] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
    return scores, {d: dict(c) for d, c in confusion.items()}, elapsed, meter_days


def verdict_scores(folder: Path, judgements) -> tuple[float, dict, dict]:
    truth = {
        r["commitment_id"]: r for r in csv.DictReader((folder / "truth" / "commitments.csv").open())
    }
    confusion: dict[str, Counter] = defaultdict(Counter)
    by_device: dict[str, Counter] = defaultdict(Counter)
    right = 0
    for judgement in judgements:
        row = judgement.row
        expected = truth[row.commitment_id]["expected_verdict"]
        confusion[expected][row.verdict.value] += 1
        good = row.verdict.value == expected
        right += good
        by_device[row.device_type]["right" if good else "wrong"] += 1
    accuracy = right / len(judgements) if judgements else float("nan")
    return (
        accuracy,
        {k: dict(v) for k, v in confusion.items()},
        {k: dict(v) for k, v in by_device.items()},
    )


def _utc_stamps(times_s: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DDTHH:MM:SSZ`` of Unix times, built from digits (millions per second)."""
    days = times_s // DAY_S
    first = int(days.min())
    table = np.frombuffer(
        b"".join(
            (date(1970, 1, 1) + timedelta(days=d)).isoformat().encode()
            for d in range(first, int(days.max()) + 1)
        ),
        dtype=np.uint8,
    ).reshape(-1, 10)
    chars = np.empty((len(times_s), 20), dtype=np.uint8)
    chars[:, :10] = table[days - first]
    second_of_day = times_s % DAY_S
    for start, value in (
        (11, second_of_day // 3600),
        (14, second_of_day // 60 % 60),
        (17, second_of_day % 60),
    ):
        chars[:, start] = ord("0") + value // 10
        chars[:, start + 1] = ord("0") + value % 10
    chars[:, 10], chars[:, 13], chars[:, 16], chars[:, 19] = (ord(c) for c in "T::Z")
    return chars


def _number_strings(values: np.ndarray):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pa.array(np.round(values, 3)), pa.string())


def tiled_folder(
    folder: Path, bases: list[DerInputs], meters: int, days: int, files: int = 0
) -> tuple[int, int]:
    """Write ``meters`` x ``days`` of 1-min data tiled from generated ``bases``.

    Day ``d`` of meter ``j`` is day ``d mod base_days`` of household ``j mod base_meters``
    of the base of ``d``'s quarter, shifted to its date; commitments go with their day.
    ``files`` > 0 writes the meter data as that many files of ``meter_data/`` (whole
    meters each), as a folder too large for one file is given; 0 one ``meter_data.csv``.
    Returns the number of rows and of commitments written.
    """
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    folder.mkdir(parents=True)
    base_ids = list(bases[0].meters)
    first = bases[0].meters[base_ids[0]]
    resolution = first.resolution_s
    per_day = DAY_S // resolution
    base_days = len(first.p_kw) // per_day
    year_start = bases[0].meters[base_ids[0]].start_s
    quarter_days = math.ceil(365 / len(bases))
    with_q = first.q_kvar is not None
    header = "meter_id,timestamp,p_kw" + (",q_kvar" if with_q else "") + "\n"
    commitments = [["commitment_id", "meter_id", "device_type", "operation", "start", "end", "kw"]]
    sites = [["meter_id", "latitude_deg", "longitude_deg"]]
    per_file = math.ceil(meters / files) if files > 0 else meters
    if files > 0:
        (folder / "meter_data").mkdir()
    out = None
    try:
        for j in range(meters):
            if j % per_file == 0:
                if out is not None:
                    out.close()
                name = f"meter_data/part-{j // per_file:03d}.csv" if files > 0 else "meter_data.csv"
                out = (folder / name).open("wb")
                out.write(header.encode())
            meter_id = f"T{j + 1:05d}"
            base_id = base_ids[j % len(base_ids)]
            site = bases[0].site(base_id)
            sites.append([meter_id, f"{site.latitude_deg:g}", f"{site.longitude_deg:g}"])
            p_parts, q_parts = [], []
            for d in range(days):
                base = bases[min(d // quarter_days, len(bases) - 1)]
                series = base.meters[base_id]
                k = d % base_days
                p_parts.append(series.p_kw[k * per_day : (k + 1) * per_day])
                if with_q and series.q_kvar is not None:
                    q_parts.append(series.q_kvar[k * per_day : (k + 1) * per_day])
                shift_s = year_start + d * DAY_S - (series.start_s + k * DAY_S)
                for c in base.commitments:
                    if c.meter_id != base_id:
                        continue
                    if not 0 <= c.start_s - series.start_s - k * DAY_S < DAY_S:
                        continue  # the commitment belongs to another day of the base
                    commitments.append(
                        [
                            f"{meter_id}-D{d:03d}-{c.commitment_id}",
                            meter_id,
                            c.device_type,
                            c.operation,
                            datetime.fromtimestamp(c.start_s + shift_s, UTC).isoformat(),
                            datetime.fromtimestamp(c.end_s + shift_s, UTC).isoformat(),
                            f"{c.kw:g}",
                        ]
                    )
            times = year_start + np.arange(days * per_day, dtype=np.int64) * resolution
            chars = _utc_stamps(times)
            n = len(times)
            stamps = pa.StringArray.from_buffers(
                n,
                pa.py_buffer(np.arange(0, 20 * n + 1, 20, dtype=np.int32)),
                pa.py_buffer(chars),
            )
            columns = {
                "meter_id": pa.array([meter_id] * n),
                "timestamp": stamps,
                "p_kw": _number_strings(np.concatenate(p_parts)),
            }
            if with_q:
                columns["q_kvar"] = _number_strings(np.concatenate(q_parts))
            pa_csv.write_csv(
                pa.table(columns),
                out,
                pa_csv.WriteOptions(include_header=False, quoting_style="none"),
            )
    finally:
        if out is not None:
            out.close()
    for name, rows in (("commitments.csv", commitments), ("sites.csv", sites)):
        with (folder / name).open("w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(rows)
    return meters * days * per_day, len(commitments) - 1


def _command() -> list[str]:
    script = Path(sys.executable).parent / "gridmatch"
    if script.is_file():
        return [str(script)]
    found = shutil.which("gridmatch")
    return [found] if found else [sys.executable, "-c", "from gridmatch.cli import main; main()"]


def end_to_end(
    shapes: list[tuple[int, int]],
    workers: int,
    base_meters: int,
    base_days: int,
    seed: int,
    quarters: int = len(BASE_STARTS),
    meter_files: int = 0,
    profile: Path | None = None,
) -> list[dict]:
    """Run tiled folders of ``shapes`` through the command; wall-clock and judging times.

    With ``profile``, each folder is then judged once more in this process under
    cProfile (after the timed run, so its numbers are the command's alone), and the
    statistics are written to ``profile`` with the folder's shape in the name.
    """
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bases = []
        began = time.perf_counter()
        for k, start in enumerate(BASE_STARTS[:quarters]):
            spec = SyntheticSpec(n_meters=base_meters, days=base_days, seed=seed + k, start=start)
            write_folder(root / f"base{k}", spec)
            bases.append(load(root / f"base{k}"))
        base_s = time.perf_counter() - began
        for meters, days in shapes:
            folder = root / f"tiled-{meters}x{days}"
            began = time.perf_counter()
            n_rows, n_commitments = tiled_folder(folder, bases, meters, days, meter_files)
            write_s = time.perf_counter() - began
            size = sum(p.stat().st_size for p in folder.glob("meter_data*/**/*.csv")) or (
                (folder / "meter_data.csv").stat().st_size
            )
            out = root / f"out-{meters}x{days}"
            command = [*_command(), "validate-commitments", str(folder), "-o", str(out)]
            command += ["--workers", str(workers)]
            began = time.perf_counter()
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed: {done.stderr}")
            wall_s = time.perf_counter() - began
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # The command's CPU time and its workers' (reaped by it, so counted in its
            # children's): what the run costs whatever else the machine is doing.
            cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (
                cpu_after.ru_stime - cpu_before.ru_stime
            )
            judge_s = json.loads((out / "summary.json").read_text())["runtime_s"]
            meter_days = meters * days
            results.append(
                {
                    "meters": meters,
                    "days": days,
                    "meter_days": meter_days,
                    "rows": n_rows,
                    "meter_data_bytes": size,
                    "meter_files": meter_files,
                    "commitments": n_commitments,
                    "workers": workers,
                    "wall_s": wall_s,
                    "judge_s": judge_s,
                    "start_read_write_s": wall_s - judge_s,
                    "meter_days_per_s": meter_days / wall_s,
                    "cpu_s": cpu_s,
                    # On ``workers`` free cores: the serial part as measured, the rest
                    # of the CPU time shared out (an estimate, not a measurement).
                    "free_cores_estimate_s": (wall_s - judge_s)
                    + max(cpu_s - (wall_s - judge_s), 0.0) / workers,
                    "load_average": os.getloadavg()[0],
                    "tiling_s": write_s,
                    "base_generation_s": base_s,
                }
            )
            if profile is not None:
                profile_judging(folder, profile.with_name(f"{profile.name}-{meters}x{days}"))
            shutil.rmtree(folder)
            shutil.rmtree(out)
    return results


def profile_judging(folder: Path, stats_path: Path, top: int = 25) -> None:
    """Judge ``folder`` in this process under cProfile; write and print the statistics.

    Meter data as files of ``meter_data/`` is judged file by file, as a worker does
    (reading included); one meter_data.csv through :func:`judge_all` with one worker.
    The profiler's overhead inflates Python-heavy functions against C ones (ruptures'
    search, numpy): compare shares, not absolute times.
    """
    import cProfile
    import pstats

    from gridmatch.der_validation.run import judge_meter_files

    inputs = load(folder)
    judge = judge_meter_files if inputs.meter_files else judge_all
    profiler = cProfile.Profile()
    profiler.enable()
    judge(inputs, 1)
    profiler.disable()
    profiler.dump_stats(stats_path)
    stats = pstats.Stats(profiler)
    print(f"\nprofile of judging {folder.name} in one process (written to {stats_path}):")
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def _shape(text: str) -> tuple[int, int]:
    meters, _, days = text.partition("x")
    return int(meters), int(days)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 3 meters, 1 day")
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--resolution-s", type=int, default=60)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--throughput",
        type=lambda text: [_shape(part) for part in text.split(",")],
        default=[],
        help="end to end through the command: METERSxDAYS[,...], e.g. 1000x3,20x365",
    )
    parser.add_argument(
        "--workers", type=int, default=min(CORES, os.cpu_count() or 1), help="for --throughput"
    )
    parser.add_argument("--base-meters", type=int, default=20, help="households to tile")
    parser.add_argument("--base-days", type=int, default=7, help="days of each base")
    parser.add_argument("--only-throughput", action="store_true", help="skip the scoring")
    parser.add_argument(
        "--meter-files",
        type=int,
        default=0,
        help="for --throughput: meter data as that many files of meter_data/ (0: one file)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="for --throughput: also judge each folder in this process under cProfile, "
        "writing the statistics to PATH-<meters>x<days> (after the timed run)",
    )
    args = parser.parse_args()
    if args.smoke:
        args.meters, args.days = 3, 2
        args.throughput = args.throughput or [(4, 2)]
        args.base_meters, args.base_days = 2, 1
    if args.only_throughput:
        return _report_end_to_end(args, {})
    spec = SyntheticSpec(
        n_meters=args.meters, days=args.days, seed=args.seed, resolution_s=args.resolution_s
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "der"
        began = time.perf_counter()
        write_folder(folder, spec)
        generate_s = time.perf_counter() - began
        began = time.perf_counter()
        inputs = load(folder)
        load_s = time.perf_counter() - began
        began = time.perf_counter()
        judgements = judge_all(inputs)
        judge_s = time.perf_counter() - began
        accuracy, verdict_confusion, by_device = verdict_scores(folder, judgements)
        align_s = max(inputs.library.spec.validation.align_tolerance_s, 2 * args.resolution_s)
        scores, confusion, detect_s, meter_days = detection_scores(folder, inputs, align_s)
    commitments = len(judgements)
    per_day_judge = judge_s / meter_days
    per_day_load = load_s / meter_days
    year_s = YEAR_METER_DAYS * (per_day_judge + per_day_load) / CORES
    result = {
        "spec": spec.__dict__,
        "meter_days": meter_days,
        "commitments": commitments,
        "commitments_per_meter_day": commitments / meter_days,
        "generate_s": generate_s,
        "load_s": load_s,
        "judge_s": judge_s,
        "detect_s": detect_s,
        "verdict_accuracy": accuracy,
        "verdict_confusion": verdict_confusion,
        "verdicts_by_device": by_device,
        "detection": scores,
        "classification_confusion": confusion,
        "throughput_meter_days_per_s": {
            "read": meter_days / load_s,
            "judge": meter_days / judge_s,
            "read_and_judge": meter_days / (load_s + judge_s),
            "full_day_detection": meter_days / detect_s,
        },
        "year_1000_meters_extrapolated_s": year_s,
    }
    print(
        f"DER validation benchmark: {args.meters} meters x {args.days} days, "
        f"{args.resolution_s} s data, seed {args.seed}; {commitments} commitments "
        f"({commitments / meter_days:.2f} per meter-day)"
    )
    print()
    print("| device | runs (true) | precision | recall | F1 |")
    print("|---|---:|---:|---:|---:|")
    for device in DEVICES:
        s = scores[device]
        runs = s["tp"] + s["fn"]
        print(f"| {device} | {runs} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} |")
    print()
    labels = [*DEVICES, OTHER, "missed"]
    print("| true \\ detected | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for device in DEVICES:
        cells = " | ".join(str(confusion[device].get(label, 0)) for label in labels)
        print(f"| {device} | {cells} |")
    print()
    verdicts = [v.value for v in Verdict]
    print(f"verdict accuracy: {accuracy:.3f} ({commitments} commitments)")
    print()
    print("| expected \\ given | " + " | ".join(verdicts) + " |")
    print("|---|" + "---:|" * len(verdicts))
    for expected in verdicts:
        row = verdict_confusion.get(expected, {})
        if row:
            print(f"| {expected} | " + " | ".join(str(row.get(v, 0)) for v in verdicts) + " |")
    print()
    t = result["throughput_meter_days_per_s"]
    print(
        f"throughput, one core: read {t['read']:.0f}, judge {t['judge']:.0f}, read + judge "
        f"{t['read_and_judge']:.0f}, full-day detection {t['full_day_detection']:.0f} "
        "meter-days/s"
    )
    print(
        f"1 year x 1,000 meters (365,000 meter-days), read + judge, extrapolated to "
        f"{CORES} cores: {year_s:.0f} s (goal {GOAL_S:.0f} s)"
    )
    return _report_end_to_end(args, result)


def _report_end_to_end(args: argparse.Namespace, result: dict) -> int:
    """Run and print the end-to-end measurements; write ``--json``."""
    quarters = 1 if args.smoke else len(BASE_STARTS)  # the smoke run only checks the path
    runs = end_to_end(
        args.throughput,
        args.workers,
        args.base_meters,
        args.base_days,
        args.seed,
        quarters,
        args.meter_files,
        args.profile,
    )
    result["end_to_end"] = runs
    if runs:
        print()
        print(
            f"end to end, `gridmatch validate-commitments DIR --workers {args.workers}` "
            f"(tiled from {args.base_meters} generated households x {args.base_days} days "
            "per quarter; wall clock of a fresh process):"
        )
        print()
        print(
            "| meters x days | rows | MB | commitments | wall s | judging s "
            "| start + read + write s | meter-days/s | CPU s | free cores s | load |"
        )
        print("|---|" + "---:|" * 10)
        for r in runs:
            print(
                f"| {r['meters']} x {r['days']} | {r['rows']:,} "
                f"| {r['meter_data_bytes'] / 1e6:.0f} "
                f"| {r['commitments']:,} | {r['wall_s']:.1f} | {r['judge_s']:.1f} "
                f"| {r['start_read_write_s']:.1f} | {r['meter_days_per_s']:.0f} "
                f"| {r['cpu_s']:.1f} | {r['free_cores_estimate_s']:.1f} "
                f"| {r['load_average']:.1f} |"
            )
        year = [r for r in runs if r["days"] >= 365]
        if year:
            r = year[0]
            folders = math.ceil(1000 / r["meters"])
            scale = folders * 365 / r["days"]
            total_s = scale * r["wall_s"]
            free_s = scale * r["free_cores_estimate_s"]
            result["year_1000_meters_from_measured_s"] = total_s
            result["year_1000_meters_free_cores_estimate_s"] = free_s
            print()
            print(
                f"1 year x 1,000 meters = {folders} folders like the measured "
                f"{r['meters']} x {r['days']} run: {total_s:.0f} s at the load measured, "
                f"about {free_s:.0f} s on {args.workers} free cores (goal {GOAL_S:.0f} s; "
                "extrapolated, the folders not run)"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
