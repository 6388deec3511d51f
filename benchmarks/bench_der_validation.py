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
  commitment, and of the full-day detection, on one core; the year of 1,000 meters is
  extrapolated from that (divided by two for two cores: meters are independent), and
  the table says so.

``--smoke`` runs a few meters for a day in a few seconds (scripts/test.sh).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

from gridmatch.der_validation.activations import OTHER, classify_day
from gridmatch.der_validation.run import judge_all, load
from gridmatch.der_validation.synthetic import SyntheticSpec, write_folder
from gridmatch.results_io.der_validation import Verdict

DEVICES = ("ev_charger", "battery", "heat_pump", "pv", "controllable_load")
YEAR_METER_DAYS = 365 * 1000
GOAL_S = 600.0
CORES = 2


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 3 meters, 1 day")
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--resolution-s", type=int, default=60)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if args.smoke:
        args.meters, args.days = 3, 2
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
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
