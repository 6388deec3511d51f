import json
from pathlib import Path

from typer.testing import CliRunner

from gridmatch.cli import app

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_clear_bundled_scenario_writes_all_result_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["clear", str(SCENARIOS / "case33bw-evening"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "optimal"
    assert summary["welfare_eur"] <= summary["bound_eur"] + 1e-9
    assert {p.name for p in out.iterdir()} == {"trades.csv", "orders.csv", "summary.json", "manifest.json"}
