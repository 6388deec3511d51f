"""`gridmatch report`: one self-contained HTML file, checked in a real headless Chromium.

The Chromium tests prove what string matching cannot: that the browser decodes every
inline image (the page's own script counts them on load), that the slot picker runs,
and that the page renders to something that is not blank, with the network cut off.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from conftest import REPO, ROUNDS_HEADER, case33bw_scenario, without_security
from matplotlib.image import imread

from gridmatch.errors import InputError, UsageError
from gridmatch.pipeline import RunSettings, clear_scenario
from gridmatch.report import REPORT_FILE, build_report, parse_slots
from gridmatch.results_io.atomic import MARKER

CHROMIUM = Path("/usr/bin/chromium")
SCENARIO = REPO / "scenarios" / "case33bw-evening"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium (apt chromium)"
)


class _Page(HTMLParser):
    """Every tag with its attributes, and the text outside tags (script and style too)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(markup: str) -> _Page:
    page = _Page()
    page.feed(markup)
    return page


@pytest.fixture(scope="module")
def cleared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("secure") / "out"
    clear_scenario(SCENARIO, out, RunSettings())
    build_report(out)
    return out


@pytest.fixture(scope="module")
def cleared_without_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("free")
    out = folder / "out"
    clear_scenario(without_security(SCENARIO, folder / "scenario"), out, RunSettings())
    build_report(out)
    return out


def _chromium(profile: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # No network: a page that needed any external URL would fail to load it.
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=5000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


@needs_chromium
def test_chromium_decodes_every_image_and_runs_the_slot_picker(
    cleared: Path, tmp_path: Path
) -> None:
    source = _parse((cleared / REPORT_FILE).read_text(encoding="utf-8"))
    images = [attrs for tag, attrs in source.tags if tag == "img"]
    # Overview, security, 6 slot curves and a map for each of the 4 traded slots.
    assert len(images) == 12

    run = _chromium(tmp_path / "profile", cleared / REPORT_FILE, "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = _parse(run.stdout)
    body = next(attrs for tag, attrs in dom.tags if tag == "body")
    assert body.get("data-images-total") == str(len(images))
    assert body.get("data-images-ok") == str(len(images))
    panels = [attrs for _, attrs in dom.tags if "data-slot-panel" in attrs]
    assert [p["data-slot-panel"] for p in panels] == ["0", "1", "2", "3", "4", "5"]
    # The script showed exactly one panel, the slot closest to a grid limit, and the picker.
    shown = [p["data-slot-panel"] for p in panels if "hidden" not in p]
    picker = next(attrs for _, attrs in dom.tags if attrs.get("id") == "slot-picker")
    assert shown == [picker["data-initial"]]
    assert "hidden" not in picker
    pressed = [a["data-slot-button"] for _, a in dom.tags if a.get("aria-pressed") == "true"]
    assert pressed == shown


@needs_chromium
def test_chromium_screenshot_is_not_blank(cleared: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    run = _chromium(
        tmp_path / "profile",
        cleared / REPORT_FILE,
        f"--screenshot={shot}",
        "--window-size=1280,2000",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    grey = pixels.mean(axis=2)
    assert grey.std() > 0.05
    # Charts, tables and text: a good share of the page is not white.
    assert (grey < 0.9).mean() > 0.05
    # Colour, not only text: the bars and the network map are drawn.
    assert (np.ptp(pixels, axis=2) > 0.3).mean() > 0.005


def test_report_references_no_external_url(cleared: Path) -> None:
    page = _parse((cleared / REPORT_FILE).read_text(encoding="utf-8"))
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if name in ("src", "href") or (value or "").startswith(("http:", "https:", "//")):
                assert value is not None
                assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:80])
    text = "".join(page.text)
    assert "http://" not in text
    assert "https://" not in text
    assert "@import" not in text


def test_report_lists_trades_slots_and_security(cleared: Path) -> None:
    markup = (cleared / REPORT_FILE).read_text(encoding="utf-8")
    summary = json.loads((cleared / "summary.json").read_text())
    page = _parse(markup)
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert {"overview", "slots", "security", "trades"} <= ids
    maps = [a for t, a in page.tags if t == "figure" and a.get("class") == "network-map"]
    assert len(maps) == 4  # the traded slots 2-5
    assert f"{summary['n_trades']} trades from trades.csv" in markup
    assert f"{summary['price_of_security_eur']:.4f} EUR" in markup
    # One table row per trade, and the binding elements of grid.csv.
    rows = sum(1 for t, _ in page.tags if t == "tr")
    n_binding = sum(
        1 for line in (cleared / "grid.csv").read_text().splitlines() if line.endswith(",true")
    )
    assert rows >= summary["n_trades"] + n_binding
    # The report is listed in the result marker, so `clear` may replace the folder.
    assert REPORT_FILE in (cleared / MARKER).read_text().split()


def test_report_without_grid_has_no_network_section(cleared_without_grid: Path) -> None:
    markup = (cleared_without_grid / REPORT_FILE).read_text(encoding="utf-8")
    page = _parse(markup)
    assert not [a for _, a in page.tags if a.get("class") == "network-map"]
    assert "No grid.csv: the clearing ran with security disabled" in markup
    assert "Not checked: the scenario has security.enabled: false" in markup
    # The overview and one curve chart per slot: no maps, no security chart.
    assert sum(1 for t, _ in page.tags if t == "img") == 1 + 6


def test_clear_replaces_a_folder_holding_a_report(cleared_without_grid: Path) -> None:
    scenario = cleared_without_grid.parent / "scenario"
    clear_scenario(scenario, cleared_without_grid, RunSettings())
    assert not (cleared_without_grid / REPORT_FILE).exists()  # a stale report goes too
    build_report(cleared_without_grid, slots=[2])


@pytest.mark.parametrize("missing", ["summary.json", "trades.csv", "orders.csv"])
def test_missing_result_file_is_an_input_error_naming_it(
    cleared_without_grid: Path, tmp_path: Path, missing: str
) -> None:
    out = tmp_path / "out"
    shutil.copytree(cleared_without_grid, out)
    (out / REPORT_FILE).unlink()
    (out / missing).unlink()
    with pytest.raises(InputError) as caught:
        build_report(out)
    assert caught.value.path.name == missing
    assert missing in str(caught.value)
    assert sorted(p.name for p in out.iterdir() if "report" in p.name) == []


def test_malformed_trades_row_is_reported_by_row_and_field(
    cleared_without_grid: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(cleared_without_grid, out)
    lines = (out / "trades.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[2].split(",")
    cells[header.index("quantity_kwh")] = "lots"
    lines[2] = ",".join(cells)
    (out / "trades.csv").write_text("\n".join(lines) + "\n")
    before = (out / REPORT_FILE).read_bytes()
    with pytest.raises(InputError) as caught:
        build_report(out)
    # lines[2] is the file's third line: rows are file lines (header = row 1), as every
    # reader of the result folder counts them.
    assert (caught.value.path.name, caught.value.row, caught.value.field) == (
        "trades.csv",
        3,
        "quantity_kwh",
    )
    assert (out / REPORT_FILE).read_bytes() == before  # the old report stays whole


def test_network_without_coordinates_gets_a_tree_layout(cleared: Path, tmp_path: Path) -> None:
    # The same clearing, its manifest pointed at a copy of the scenario whose network
    # file has no bus coordinates (same buses, so grid.csv still fits).
    scenario = tmp_path / "scenario"
    shutil.copytree(SCENARIO, scenario)
    net = pn.case33bw()
    net.bus["geo"] = None
    pp.to_json(net, str(scenario / "x.json"))
    text = (scenario / "scenario.yaml").read_text().replace("pandapower: case33bw", "file: x.json")
    (scenario / "scenario.yaml").write_text(text)
    out = tmp_path / "out"
    shutil.copytree(cleared, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["scenario_dir"] = str(scenario)
    (out / "manifest.json").write_text(json.dumps(manifest))

    info = build_report(out, slots=[3])
    assert info.slots == (3,)
    assert any("laid out as a tree" in note for note in info.notes)
    assert any("scenario.yaml changed since the clearing" in note for note in info.notes)
    markup = info.path.read_text(encoding="utf-8")
    assert markup.count('class="network-map"') == 1
    assert "Generic tree layout" in markup


def test_slot_selection() -> None:
    assert parse_slots("3, 7,16-18") == (3, 7, 16, 17, 18)
    with pytest.raises(UsageError, match="not a slot"):
        parse_slots("3,x")
    with pytest.raises(UsageError, match="backwards"):
        parse_slots("5-2")


def test_unknown_slot_is_refused(cleared_without_grid: Path) -> None:
    with pytest.raises(UsageError, match=r"slot 9 is not in this result \(it has slots 0-5\)"):
        build_report(cleared_without_grid, slots=[2, 9])


def test_report_command_writes_the_page_and_refuses_bad_slots(
    cleared_without_grid: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from gridmatch.cli import app

    out = tmp_path / "out"
    shutil.copytree(cleared_without_grid, out)
    (out / REPORT_FILE).unlink()
    result = CliRunner().invoke(app, ["report", str(out), "--slots", "2"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out / REPORT_FILE)
    assert (out / REPORT_FILE).stat().st_size > 0
    result = CliRunner().invoke(app, ["report", str(out), "--slots", "2-x"])
    assert result.exit_code == 2
    assert "error" in result.stderr


def test_a_rounds_day_points_to_its_round_folders(tmp_path: Path) -> None:
    from gridmatch.rounds.runner import run_rounds

    scenario = case33bw_scenario(
        tmp_path / "s",
        ["s,ps,sell,5,2,1.0,0.05,true,0", "b,pb,buy,7,2,1.0,0.3,false,0"],
        header=ROUNDS_HEADER,
        yaml_extra="rounds:\n  interval_min: 60\n",
    )
    out = tmp_path / "day"
    run_rounds(scenario, out, RunSettings(formulation="greedy"))
    with pytest.raises(InputError, match=r"rolling rounds.*round-002") as caught:
        build_report(out)
    assert str(caught.value).startswith(str(out))
    assert build_report(out / "round-001").path.is_file()
