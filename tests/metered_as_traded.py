"""Meters that read exactly what was traded, signed and attested: the end-to-end tests' step.

Every party's meter reads its trades of each slot: a seller exports, a buyer imports
what it traded. The readings go through the real commands (``meters sign``, ``attest``)
on the chain the result folder was settled on.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from typer.testing import CliRunner

from gridmatch.cli import app


def attest_as_traded(out: Path, work: Path) -> str:
    """Write, sign and attest meter readings equal to ``out``'s trades; return attest's stderr."""
    metered: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    with (out / "trades.csv").open(newline="") as handle:
        for t in csv.DictReader(handle):
            metered[t["seller_id"], int(t["slot"])][0] += float(t["quantity_kwh"])
            metered[t["buyer_id"], int(t["slot"])][1] += float(t["quantity_kwh"])
    meters = work / "meters.csv"
    rows = [f"{p},{s},{e:.3f},{i:.3f}" for (p, s), (e, i) in sorted(metered.items())]
    meters.write_text("meter_id,slot,exported_kwh,imported_kwh\n" + "\n".join(rows) + "\n")
    signed = work / "readings.json"
    runner = CliRunner()
    result = runner.invoke(app, ["meters", "sign", str(out), str(meters), "-o", str(signed)])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(app, ["attest", str(out), str(signed)])
    assert result.exit_code == 0, result.stderr
    return result.stderr
