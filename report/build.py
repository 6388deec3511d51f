"""``gridmatch report``: one self-contained HTML file from a result folder."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from gridmatch.errors import UsageError
from gridmatch.report import markup
from gridmatch.report.data import ResultFolder, read_result_folder
from gridmatch.report.holdings import budgets_section, certificates_section
from gridmatch.report.network import result_network
from gridmatch.report.sections import (
    SlotFacts,
    overview_section,
    security_section,
    slot_facts,
    slots_section,
    trades_section,
)
from gridmatch.results_io.atomic import claim_file, write_file_atomically
from gridmatch.results_io.layout import REPORT_FILE

# Slot panels by default: a day of hourly slots fits; beyond it the report would grow
# by ~50 KB per slot for slots nobody looks at.
MAX_DEFAULT_SLOTS = 24
# Panels a report may be asked for: a year of hourly slots.
MAX_SLOTS_ASKED = 8784
_SLOT_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


@dataclass(frozen=True)
class ReportInfo:
    """What :func:`build_report` wrote.

    Attributes
    ----------
    slots
        Slots that got a panel (curves and, with a grid, the network map).
    notes
        Caveats also shown in the report (e.g. no network drawn, and why).
    """

    path: Path
    size_bytes: int
    slots: tuple[int, ...]
    notes: tuple[str, ...]


def build_report(out_dir: Path, slots: Sequence[int] | None = None) -> ReportInfo:
    """Write ``OUT_DIR/report.html`` for a result folder of ``gridmatch clear``.

    Everything is read from the folder's files (and the network from the scenario its
    manifest names); nothing is solved and no power flow is run. The page is built in
    memory and then written atomically, so a failure leaves no partial report.

    Parameters
    ----------
    out_dir
        The result folder.
    slots
        Slots to give a panel; default: every slot, or if there are more than
        :data:`MAX_DEFAULT_SLOTS`, the grid-constrained ones and then the busiest.

    Raises
    ------
    gridmatch.errors.InputError
        A required file (trades.csv, orders.csv, summary.json) is missing or malformed.
    ValueError
        A requested slot is not in the result.
    """
    folder = read_result_folder(out_dir)
    facts = slot_facts(folder)
    chosen = choose_slots(facts, slots)
    lookup = result_network(folder)
    initial = _initial_slot(folder, facts, chosen)
    body = (
        overview_section(folder, facts)
        + slots_section(folder, facts, chosen, initial, lookup.network, lookup.notes)
        + security_section(folder, facts)
        + trades_section(folder)
        + budgets_section(out_dir)
        + certificates_section(out_dir)
    )
    document = markup.page(
        f"gridmatch clearing report: {folder.summary.scenario}",
        _subtitle(folder),
        body,
        _footer(folder),
    )
    path = out_dir / REPORT_FILE
    claim_file(path)
    write_file_atomically(path, document)
    return ReportInfo(path, path.stat().st_size, tuple(chosen), lookup.notes)


def choose_slots(facts: SlotFacts, requested: Sequence[int] | None) -> list[int]:
    """Return the slots that get a panel, in slot order.

    Raises
    ------
    ValueError
        A requested slot is not in the result.
    """
    table = facts.table
    available = [int(s) for s in table.index]
    if requested is not None:
        unknown = sorted(set(requested) - set(available))
        if unknown:
            raise UsageError(
                f"slot {unknown[0]} is not in this result (it has slots {_ranges(available)})"
            )
        return sorted(set(requested))
    if len(available) <= MAX_DEFAULT_SLOTS:
        return available
    ranked = sorted(
        available,
        key=lambda s: (s not in facts.constrained, -float(table.traded_kwh[s]), s),
    )
    return sorted(ranked[:MAX_DEFAULT_SLOTS])


def parse_slots(text: str) -> tuple[int, ...]:
    """Parse a slot list such as ``"3,7,16-21"``.

    Raises
    ------
    UsageError
        Not a comma-separated list of slots and ranges, or more than
        :data:`MAX_SLOTS_ASKED` slots (the report has a panel per slot).
    """
    slots: set[int] = set()
    if len(text) > 10_000:
        raise UsageError("--slots: the list is too long")
    for part in text.split(","):
        match = _SLOT_RANGE.match(part)
        if match is None:
            raise UsageError(f"--slots: '{part.strip()}' is not a slot or a range like 16-21")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise UsageError(f"--slots: range '{part.strip()}' runs backwards")
        if last - first + 1 + len(slots) > MAX_SLOTS_ASKED:
            raise UsageError(
                f"--slots: at most {MAX_SLOTS_ASKED} slots (one panel each); "
                f"'{part.strip()}' asks for {last - first + 1}"
            )
        slots.update(range(first, last + 1))
    return tuple(sorted(slots))


def _initial_slot(folder: ResultFolder, facts: SlotFacts, chosen: list[int]) -> int:
    """Pick the panel shown first: the slot closest to a grid limit, else the busiest."""
    grid = folder.grid
    if grid is not None:
        stress = _stress(grid[grid.slot.isin(chosen)])
        if not stress.empty:
            return int(stress.index.to_numpy()[int(np.argmax(stress.to_numpy()))])
    traded = facts.table.traded_kwh.reindex(chosen).to_numpy(dtype=float)
    return chosen[int(np.argmax(traded))] if traded.max() > 0.0 else chosen[0]


def _stress(grid: pd.DataFrame) -> pd.Series:
    """Per slot, how close the worst element comes to its limit (1 = at the limit).

    Loadings count as after / limit; voltages as the distance from the band's centre
    over half the band.
    """
    after = grid.after.to_numpy(dtype=float)
    low = grid.limit_low.to_numpy(dtype=float)
    high = grid.limit_high.to_numpy(dtype=float)
    is_bus = (grid.element == "bus").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (low + high) / 2.0
        voltage = np.abs(after - centre) / ((high - low) / 2.0)
        loading = after / high
    value = np.where(is_bus, voltage, loading)
    value[~np.isfinite(value)] = np.nan
    return pd.Series(value, index=grid.slot.to_numpy()).groupby(level=0).max().dropna()


def _subtitle(folder: ResultFolder) -> str:
    parts = [f"result folder {folder.directory.resolve()}"]
    if folder.manifest is not None:
        if folder.manifest.created_utc:
            parts.append(f"cleared {folder.manifest.created_utc}")
        parts.append(f"scenario folder {folder.manifest.scenario_dir}")
    return " · ".join(parts)


def _footer(folder: ResultFolder) -> str:
    try:
        ours = version("gridmatch")
    except PackageNotFoundError:
        ours = "unknown"
    lines = [f"Written by gridmatch {ours} `gridmatch report` from the files of the folder."]
    if folder.manifest is not None:
        inputs = ", ".join(
            f"{name} (sha256 {entry.get('sha256', '?')[:12]}…)"
            for name, entry in sorted(folder.manifest.inputs.items())
        )
        lines.append(f"Inputs: {inputs}.")
        versions = ", ".join(
            f"{name} {value}" for name, value in folder.manifest.versions.items() if value
        )
        lines.append(f"Cleared with {versions}.")
    return "".join(f"<p>{escape(line)}</p>" for line in lines)


def _ranges(slots: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0-2, 5"``."""
    parts: list[str] = []
    start = previous = slots[0]
    for slot in [*slots[1:], None]:
        if slot is not None and slot == previous + 1:
            previous = slot
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if slot is not None:
            start = previous = slot
    return ", ".join(parts)
