"""Run one cell of the batch: re-read it if its folder already holds this very run, else clear it.

A run is "this very run" when the manifest it would write now equals the one in its
folder, apart from when and where it ran (:data:`VOLATILE_MANIFEST_KEYS`): same input
bytes, formulation, options and package versions. Because the pipeline writes a
result folder atomically, a folder with a manifest is complete, and a run that died
midway left either its previous complete result or nothing; so an interrupted batch,
started again with the same arguments, redoes exactly the runs that did not finish.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from gridmatch.batch.plan import RunCell
from gridmatch.batch.table import Row, error_row, summary_row
from gridmatch.errors import InputError, exit_code_for
from gridmatch.pipeline import RunSettings, clear_scenario, resolve_spec_settings
from gridmatch.results_io.folder import read_summary
from gridmatch.results_io.layout import MANIFEST_FILE, SUMMARY_FILE
from gridmatch.results_io.manifest import build_manifest
from gridmatch.scenario_io.loader import SCENARIO_FILE, read_scenario_spec, scenario_input_files
from gridmatch.user_files import RECORD_LIMIT_BYTES, parse_json, read_text

# Manifest fields that say when and where a run happened, not what it computed. The
# scenario folder's location is one of them: its files are compared by hash.
VOLATILE_MANIFEST_KEYS = ("created_utc", "scenario_dir")
VOLATILE_VERSION_KEYS = ("platform",)


def run_cell(cell: RunCell, settings: RunSettings) -> Row:
    """Clear one scenario with one formulation, unless its folder already holds that run.

    Never raises for a failed run (bad input, solver failure, a folder that is not
    ours to replace): the error becomes a row with ``status='error'``, so one bad
    run cannot stop a batch of hundreds. ``KeyboardInterrupt`` still stops it.

    Parameters
    ----------
    cell
        The run: scenario folder, formulation and result folder.
    settings
        Time limit, gap, threads and seed for every run of the batch; its
        ``formulation`` is replaced by the cell's.

    Returns
    -------
    dict
        The table row (see :mod:`gridmatch.batch.table`), read back from the run's
        ``summary.json`` whether the run was done now or skipped, so both give the
        same row.
    """
    cell_settings = replace(settings, formulation=cell.formulation)
    try:
        summary = finished_summary(cell, cell_settings)
        if summary is not None:
            return summary_row(cell, summary, skipped=True)
        clear_scenario(cell.scenario_dir, cell.run_dir, cell_settings)
        summary = read_summary(cell.run_dir).document()
    # A batch of hundreds must not stop at one run: every failure, a bug included,
    # becomes that run's row, classified by the one mapping of errors to exit codes.
    except Exception as exc:
        return error_row(cell, type(exc).__name__, str(exc) or repr(exc), exit_code_for(exc))
    return summary_row(cell, summary, skipped=False)


def finished_summary(cell: RunCell, settings: RunSettings) -> dict[str, Any] | None:
    """Return the summary in ``cell.run_dir`` if that folder holds the run ``settings`` make.

    Returns ``None`` (run it) when the folder has no manifest or summary, when
    either cannot be read, or when the scenario cannot be read: the run itself then
    reports the problem properly.
    """
    manifest_path = cell.run_dir / MANIFEST_FILE
    summary_path = cell.run_dir / SUMMARY_FILE
    if not (manifest_path.is_file() and summary_path.is_file()):
        return None
    try:
        existing = _read_json(manifest_path)
        expected = expected_manifest(cell.scenario_dir, settings)
        summary = read_summary(cell.run_dir).document()
    except (OSError, ValueError, InputError):
        return None
    if _comparable(existing) != _comparable(expected):
        return None
    return summary


def expected_manifest(scenario_dir: Path, settings: RunSettings) -> dict[str, Any]:
    """Compute the manifest a run of ``scenario_dir`` with ``settings`` would write now.

    Reads only ``scenario.yaml`` and hashes the input files; the network is not
    built and the orders are not parsed, so checking a finished run costs
    milliseconds instead of the second or more that loading a scenario takes.

    Raises
    ------
    InputError
        ``scenario.yaml`` is missing or invalid.
    OSError
        An input file cannot be read.
    """
    spec = read_scenario_spec(scenario_dir / SCENARIO_FILE)
    formulation, options = resolve_spec_settings(spec, settings)
    return build_manifest(
        spec.name, scenario_dir, scenario_input_files(scenario_dir, spec), formulation, options
    )


def _comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    # Through JSON so that what was read and what was computed have the same types
    # (lists, not tuples; keys as strings).
    document: dict[str, Any] = json.loads(json.dumps(manifest))
    for key in VOLATILE_MANIFEST_KEYS:
        document.pop(key, None)
    versions = document.get("versions")
    if isinstance(versions, dict):
        for key in VOLATILE_VERSION_KEYS:
            versions.pop(key, None)
    return document


def _read_json(path: Path) -> dict[str, Any]:
    document = parse_json(read_text(path, RECORD_LIMIT_BYTES, "manifest"), path)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return document
