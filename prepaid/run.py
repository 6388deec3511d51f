"""``gridmatch prepaid SIM_DIR``: read the folder, run every meter's loop, write the output.

Independent of the command line, so tests call it directly. Everything is validated
before the first meter is simulated, and the output folder is written atomically: after
any failure it holds the previous complete output or nothing.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import gridmatch
from gridmatch.prepaid.simulation import MeterRun, simulate_meter
from gridmatch.prepaid.tokens import scheme_name
from gridmatch.results_io.atomic import recover
from gridmatch.results_io.manifest import input_hashes, package_versions
from gridmatch.results_io.prepaid import (
    PrepaidResultFiles,
    PrepaidSummary,
    write_prepaid_result,
)
from gridmatch.scenario_io.prepaid_input import PrepaidInputs, load_prepaid


@dataclass(frozen=True)
class PrepaidRun:
    """What :func:`run_prepaid` simulated and wrote."""

    out_dir: Path
    summary: PrepaidSummary
    runs: tuple[MeterRun, ...]


def simulate(inputs: PrepaidInputs) -> tuple[PrepaidSummary, tuple[MeterRun, ...]]:
    """Run every meter of validated inputs; return the summary and the meters' runs."""
    began = time.perf_counter()
    policy = inputs.policy
    runs = tuple(simulate_meter(policy, meter) for meter in inputs.meters)
    totals = [run.totals for run in runs]
    end = policy.start + timedelta(minutes=policy.n_reports * policy.report_interval_min)
    summary = PrepaidSummary(
        name=policy.name,
        start=policy.report_time(0).isoformat(),
        end=end.astimezone(policy.zone).isoformat(),
        timezone=str(policy.zone),
        reading_minutes=policy.reading_minutes,
        report_interval_min=policy.report_interval_min,
        n_reports=policy.n_reports,
        tariff_micro_eur_per_kwh=dict(
            zip(policy.tariff.band_names, policy.tariff.micro_eur_per_kwh, strict=True)
        ),
        token_scheme=scheme_name(),
        token_unit_wh=policy.token_unit_wh,
        n_meters=len(runs),
        start_balance_micro_eur=sum(t.start_balance_micro_eur for t in totals),
        topups_micro_eur=sum(t.topups_micro_eur for t in totals),
        billed_micro_eur=sum(
            t.billed_energy_micro_eur + t.billed_standing_micro_eur for t in totals
        ),
        end_balance_micro_eur=sum(t.end_balance_micro_eur for t in totals),
        conserved=all(t.conserved for t in totals),
        supplied_wh=sum(t.supplied_wh for t in totals),
        unserved_wh=sum(t.unserved_wh for t in totals),
        disconnections=sum(t.disconnections for t in totals),
        reconnections=sum(t.reconnections for t in totals),
        tokens_issued=sum(t.tokens_issued for t in totals),
        tokens_refused=sum(t.tokens_refused for t in totals),
        runtime_s=time.perf_counter() - began,
        meters=totals,
    )
    return summary, runs


def result_files(inputs: PrepaidInputs) -> tuple[PrepaidResultFiles, tuple[MeterRun, ...]]:
    """Simulate and return the output folder's contents (nothing is written)."""
    summary, runs = simulate(inputs)
    # events.csv in time order; within an instant, meters in accounts.csv order and each
    # meter's events in the order they happened (sorted() is stable).
    order = {meter.meter_id: n for n, meter in enumerate(inputs.meters)}
    events = sorted(
        (event for run in runs for event in run.events),
        key=lambda e: (datetime.fromisoformat(e.time), order[e.meter_id]),
    )
    files = PrepaidResultFiles(
        summary=summary,
        timelines={run.totals.meter_id: run.timeline for run in runs},
        events=events,
        manifest=prepaid_manifest(inputs),
    )
    return files, runs


def run_prepaid(sim_dir: Path, out_dir: Path) -> PrepaidRun:
    """Validate ``sim_dir``, simulate every meter and write ``out_dir`` atomically.

    Raises
    ------
    gridmatch.errors.InputError
        A file of ``sim_dir`` is missing or malformed (file, row and field named);
        nothing is written.
    gridmatch.errors.OutputFolderError
        ``out_dir`` holds files gridmatch did not write.
    """
    recover(out_dir)  # a killed earlier run's staging folder, before anything can fail
    inputs = load_prepaid(sim_dir)
    files, runs = result_files(inputs)
    write_prepaid_result(out_dir, files)
    return PrepaidRun(out_dir, files.summary, runs)


def prepaid_manifest(inputs: PrepaidInputs) -> dict[str, Any]:
    """Everything needed to reproduce a prepaid simulation."""
    root = inputs.directory.resolve()
    return {
        "kind": "prepaid",
        "scenario": inputs.policy.name,
        "scenario_dir": str(root),
        "inputs": {
            **input_hashes(inputs.directory, inputs.input_files),
        },
        "options": inputs.spec.model_dump(mode="json"),
        "versions": {
            "python": sys.version.split()[0],
            **package_versions(),
            "openpaygo": scheme_name(),
            "gridmatch_files_sha256": files_fingerprint(),
        },
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@cache
def files_fingerprint() -> str:
    """SHA-256 over the installed gridmatch's Python files (relative names and bytes).

    Like ``results_io.manifest.source_fingerprint``, but read from the files without
    importing every module (which would load pandapower for a simulation that needs
    none of it): a different digest of the same code, hence its own manifest key.
    """
    # Not resolved: an editable install links each file from a tree of real folders.
    root = Path(gridmatch.__file__).parent
    files = list(root.glob("*.py"))
    for package in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
        files.extend(package.rglob("*.py"))
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
