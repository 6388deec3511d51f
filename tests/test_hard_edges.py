"""Hostile and careless input, one test per class of fault (issue #15).

No input, file or fault may run code, fake success, lose a user's data, hang or crash
with a traceback: each case exits with its documented code, one line naming the file,
and leaves what was there before.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandapower as pp
import pandapower.networks as pn
import pytest
from conftest import ROUNDS_HEADER, case33bw_scenario
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridmatch.cli import app

ROWS = ["s1,ps,sell,5,0,2.0,0.10,true", "b1,pb,buy,12,0,1.0,0.30,false"]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stderr


def _refused(code: int, stderr: str, *fragments: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    return case33bw_scenario(tmp_path / "scenario", ROWS)


def _file_network_scenario(folder: Path, document: dict[str, object] | None = None) -> Path:
    case33bw_scenario(folder, ROWS)
    text = (folder / "scenario.yaml").read_text()
    (folder / "scenario.yaml").write_text(
        text.replace("pandapower: case33bw", "file: network.json")
    )
    if document is None:
        document = json.loads(pp.to_json(pn.case33bw()))
    (folder / "network.json").write_text(json.dumps(document))
    return folder


def _network_document() -> dict[str, object]:
    return dict(json.loads(pp.to_json(pn.case33bw())))


# --- a network file cannot run code or fake success ----------------------------------


@pytest.mark.parametrize(
    "module",
    ["numpy.f2py.__main__", "pandapower.test", "gridmatch_canary", "pandas.io.clipboard"],
)
def test_a_network_file_cannot_make_anything_be_imported(
    tmp_path: Path, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A canary that would record its import, on the path of this very process.
    (tmp_path / "gridmatch_canary.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    document = _network_document()
    entries = document["_object"]
    assert isinstance(entries, dict)
    entries["bus_geodata"] = {"_module": module, "_class": "Anything", "_object": "{}"}
    folder = _file_network_scenario(tmp_path / "s", document)
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out"))
    _refused(code, stderr, "network.json", f"module '{module}'")
    assert module not in sys.modules or module.startswith("pandas")
    assert not (tmp_path / "imported").exists()
    assert not (tmp_path / "out").exists()


def test_objects_hidden_in_nested_json_text_are_refused(tmp_path: Path) -> None:
    # Nested JSON text with leading space (the old check looked only at '{' and '[').
    document = _network_document()
    entries = document["_object"]
    assert isinstance(entries, dict)
    table = entries["bus"]
    assert isinstance(table, dict)
    layout = json.loads(str(table["_object"]))
    layout["data"][0][0] = ' {"_module": "os", "_class": "system", "_object": "x"}'
    table["_object"] = json.dumps(layout)
    folder = _file_network_scenario(tmp_path / "s", document)
    # A name holding such text is only text: it loads and clears, importing nothing.
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out"))
    assert code == 0, stderr
    table["_object"] = " " + json.dumps({"_module": "os", "_class": "system", "_object": "x"})
    folder = _file_network_scenario(tmp_path / "t", document)
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out2"))
    _refused(code, stderr, "module 'os'")


def test_deep_nesting_is_refused_not_a_solver_failure(tmp_path: Path) -> None:
    folder = _file_network_scenario(tmp_path / "s")
    (folder / "network.json").write_text("[" * 100_000 + "]" * 100_000)
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out"))
    _refused(code, stderr, "network.json", "nested")
    scenario_yaml = folder / "scenario.yaml"
    scenario_yaml.write_text("name: [" + "[" * 100_000 + "]" * 100_000 + "]\n")
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out"))
    _refused(code, stderr, "scenario.yaml")


@pytest.mark.parametrize(
    ("table", "column", "value", "field"),
    [
        ("line", "r_ohm_per_km", float("nan"), "line.r_ohm_per_km"),
        ("line", "x_ohm_per_km", float("inf"), "line.x_ohm_per_km"),
        ("bus", "vn_kv", float("nan"), "bus.vn_kv"),
        ("line", "from_bus", "five", "line.from_bus"),
    ],
)
def test_unusable_electrical_parameters_name_table_row_and_column(
    tmp_path: Path, table: str, column: str, value: object, field: str
) -> None:
    net = pn.case33bw()
    net[table][column] = net[table][column].astype(object)
    net[table].loc[3, column] = value
    folder = _file_network_scenario(tmp_path / "s", json.loads(pp.to_json(net)))
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out"))
    _refused(code, stderr, "network.json", f"field '{field}'", "index 3")


def test_a_string_bus_index_is_refused(tmp_path: Path) -> None:
    document = _network_document()
    entries = document["_object"]
    assert isinstance(entries, dict)
    table = entries["bus"]
    assert isinstance(table, dict)
    layout = json.loads(str(table["_object"]))
    layout["index"][2] = "two"
    table["_object"] = json.dumps(layout)
    folder = _file_network_scenario(tmp_path / "s", document)
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out"))
    _refused(code, stderr, "network.json", "index 'two' is not a whole number")


def test_a_library_exit_never_passes_for_success(
    scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gridmatch.pipeline

    def exits(*args: object) -> None:
        raise SystemExit(0)  # what numpy.f2py's command line does on import

    monkeypatch.setattr(gridmatch.pipeline, "load_scenario", exits)
    code, stderr = _run("clear", str(scenario), "--out", str(tmp_path / "out"))
    assert code == 6 and "internal error: SystemExit" in stderr


# --- user data is never lost ------------------------------------------------------------


def test_batch_never_overwrites_a_table_the_user_put_there(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch"
    out.mkdir()
    (out / "results.csv").write_text("my own numbers\n")
    code, stderr = _run("batch", str(scenario), "-o", str(out), "--formulation", "greedy")
    assert code == 2, stderr
    assert "results" in stderr and "not written by gridmatch" in stderr
    assert (out / "results.csv").read_text() == "my own numbers\n"
    # Into a folder of its own it writes, and a rerun may replace what it wrote.
    for _ in range(2):
        code, stderr = _run(
            "batch", str(scenario), "-o", str(tmp_path / "b2"), "--formulation", "greedy"
        )
        assert code == 0, stderr


def test_outputs_that_are_files_or_folders_are_refused(scenario: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    code, stderr = _run("batch", str(scenario), "-o", str(a_file), "--formulation", "greedy")
    _refused(code, stderr, "a-file", "not a folder")
    assert a_file.read_text() == "mine\n"
    batch = tmp_path / "batch"
    assert _run("batch", str(scenario), "-o", str(batch), "--formulation", "greedy")[0] == 0
    code, stderr = _run("compare", str(batch), "--plots", str(a_file))
    _refused(code, stderr, "a-file", "not a folder")
    out = batch / "scenario" / "greedy"
    (out / "report.html").mkdir()
    code, stderr = _run("report", str(out))
    _refused(code, stderr, "report.html", "not a regular file")


def test_a_killed_run_leaves_nothing_the_next_run_keeps(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # What a SIGKILL between the staging folder's creation and its rename leaves behind.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    stale = tmp_path / ".out.killed1"
    stale.mkdir()
    (stale / "trades.csv").write_text("half\n")
    (stale / ".gridmatch-staging").write_text(dead)
    foreign = tmp_path / ".out.someone-elses"
    foreign.mkdir()
    assert _run("clear", str(scenario), "--out", str(out))[0] == 0
    assert not stale.exists()
    assert foreign.exists()  # no pid file: not ours, left alone
    # Killed between the two renames: the previous result waits in the retired folder.
    retired = tmp_path / ".out.old.killed2"
    retired.mkdir()
    out.rename(retired / "out")
    (retired / ".gridmatch-staging").write_text(dead)
    before = (retired / "out" / "trades.csv").read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()  # a broken scenario: the run fails, and the old result is back
    assert _run("clear", str(bad), "--out", str(out))[0] == 2
    assert not retired.exists()
    assert (out / "trades.csv").read_bytes() == before


# --- no silent downgrade ------------------------------------------------------------------


def test_a_key_given_twice_is_refused(scenario: Path, tmp_path: Path) -> None:
    path = scenario / "scenario.yaml"
    path.write_text(path.read_text() + "security:\n  enabled: false\n")
    code, stderr = _run("clear", str(scenario), "--out", str(tmp_path / "out"))
    _refused(code, stderr, "scenario.yaml, row", "key 'security' is given twice")


# --- no injection -------------------------------------------------------------------------


def test_formula_ids_are_neutralised_in_every_output_and_read_back(
    tmp_path: Path,
) -> None:
    rows = [
        '"=HYPERLINK(""http://x"",""y"")",@SUM(1),sell,5,0,2.0,0.10,true',
        "+cmd|' /c calc'!A0,-2,buy,12,0,1.0,0.30,false",
    ]
    folder = case33bw_scenario(tmp_path / "s", rows)
    out = tmp_path / "out"
    code, stderr = _run("clear", str(folder), "--out", str(out))
    assert code == 0, stderr
    for name in ("trades.csv", "orders.csv"):
        for row in csv.reader((out / name).open()):
            assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), (name, row)
    trades = list(csv.DictReader((out / "trades.csv").open()))
    assert trades[0]["sell_order_id"] == '\'=HYPERLINK("http://x","y")'
    assert trades[0]["buyer_id"] == "'-2"
    # Our own readers give the ids back as they were.
    from gridmatch.results_io.folder import read_trades

    (trade,) = read_trades(out)
    assert (trade.sell_order_id, trade.buy_order_id, trade.buyer_id) == (
        '=HYPERLINK("http://x","y")',
        "+cmd|' /c calc'!A0",
        "-2",
    )
    assert _run("report", str(out))[0] == 0


@pytest.mark.parametrize(
    ("order_id", "message"),
    [
        ("b\x1b[31m", "control character"),
        ("b\x00", "control character"),
        ("'quoted", "apostrophe"),
        ("x" * 201, "at most 200"),
    ],
)
def test_ids_are_printable_text(tmp_path: Path, order_id: str, message: str) -> None:
    folder = case33bw_scenario(tmp_path / "s", [*ROWS[:1], f"{order_id},pb,buy,12,0,1.0,0.3,"])
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out"))
    _refused(code, stderr, "orders.csv, row 3, field 'order_id'", message)
    assert "\x1b" not in stderr and "\x00" not in stderr


# --- the ledger is checked before use ---------------------------------------------------


def test_an_edited_network_in_the_ledger_is_reported_as_altered(tmp_path: Path) -> None:
    header = ROUNDS_HEADER
    folder = case33bw_scenario(
        tmp_path / "s",
        ["s1,ps,sell,5,2,2.0,0.10,true,0", "b1,pb,buy,12,2,1.0,0.30,false,0"],
        header=header,
        yaml_extra="rounds:\n  interval_min: 60\n",
    )
    out = tmp_path / "day"
    code, stderr = _run("rounds", "run", str(folder), "-o", str(out), "--formulation", "greedy")
    assert code == 0, stderr
    with sqlite3.connect(out / "ledger.sqlite") as db:
        (text,) = db.execute("SELECT network_json FROM scenario").fetchone()
        db.execute("UPDATE scenario SET network_json = ?", (text.replace("12.66", "99.9", 1),))
    code, stderr = _run("rounds", "rerun", "--ledger", str(out / "ledger.sqlite"))
    _refused(code, stderr, "ledger altered", "field 'scenario.network_json'")


# --- nothing hangs or runs out of memory ----------------------------------------------


def test_a_fifo_is_refused_at_once(scenario: Path, tmp_path: Path) -> None:
    (scenario / "orders.csv").unlink()
    os.mkfifo(scenario / "orders.csv")
    script = textwrap.dedent(
        f"""
        import sys
        from gridmatch.cli import main
        sys.argv = ["gridmatch", "clear", {str(scenario)!r}, "--out", {str(tmp_path / "o")!r}]
        main()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    _refused(done.returncode, done.stderr, "orders.csv", "not a regular file")


@pytest.mark.parametrize(
    ("yaml_extra", "field"),
    [
        ("slot_minutes: 1.0e+308\n", "slot_minutes"),
        ("slot_minutes: 1.0e-300\n", "slot_minutes"),
        ("solver:\n  threads: 100000000\n", "solver.threads"),
        ("  max_iterations: 1000000000\n", "security.max_iterations"),
        ("solver:\n  formulation: nonesuch\n", "solver.formulation"),
        ('orders: "orders\\0.csv"\n', "orders"),
    ],
)
def test_numbers_that_drive_work_are_bounded(tmp_path: Path, yaml_extra: str, field: str) -> None:
    folder = case33bw_scenario(tmp_path / "s", ROWS)
    path = folder / "scenario.yaml"
    text = path.read_text()
    if yaml_extra.startswith(("slot_minutes", "orders")):
        key = yaml_extra.split(":")[0]
        text = "\n".join(line for line in text.splitlines() if not line.startswith(key)) + "\n"
    if yaml_extra.startswith("  "):  # a key of the security section
        text = text.replace("  enabled: false\n", "  enabled: false\n" + yaml_extra)
        yaml_extra = ""
    path.write_text(text + yaml_extra)
    code, stderr = _run("clear", str(folder), "--out", str(tmp_path / "out"))
    _refused(code, stderr, f"scenario.yaml, field '{field}'")


def test_a_rolling_day_of_millions_of_rounds_is_refused(tmp_path: Path) -> None:
    header = ROUNDS_HEADER
    folder = case33bw_scenario(
        tmp_path / "s",
        ["s1,ps,sell,5,9999999,2.0,0.10,true,0", "b1,pb,buy,12,9999999,1.0,0.30,false,0"],
        header=header,
        yaml_extra="rounds:\n  interval_min: 1\n",
    )
    code, stderr = _run("rounds", "run", str(folder), "-o", str(tmp_path / "day"))
    _refused(code, stderr, "field 'rounds.interval_min'", "rounds")


def test_report_slot_ranges_are_bounded(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run("clear", str(scenario), "--out", str(out))[0] == 0
    code, stderr = _run("report", str(out), "--slots", "0-99999999999")
    _refused(code, stderr, "--slots: at most")


# --- settlement files -----------------------------------------------------------------


def test_settlement_files_are_refused_naming_the_file(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run("clear", str(scenario), "--out", str(out))[0] == 0
    record = out / "settlement" / "deployment.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"payment": "0x0", "trades": []}))
    readings = tmp_path / "readings.json"
    readings.write_text(json.dumps({"chain_id": 1, "settlement": "0x" + "00" * 20, "readings": []}))
    code, stderr = _run("attest", str(out), str(readings))
    _refused(code, stderr, "deployment.json", "field 'rpc_url'")
    record.write_text("{corrupt")
    code, stderr = _run("attest", str(out), str(readings))
    _refused(code, stderr, "deployment.json")
    record.unlink()
    # Meter files: UTF-16 exports and giant fields are refused naming the file.
    from gridmatch.errors import InputError
    from gridmatch.settlement.meters import read_meter_csv, read_signed_readings

    meters = tmp_path / "meters.csv"
    meters.write_bytes("meter_id,slot\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        read_meter_csv(meters)
    meters.write_text("meter_id,slot,exported_kwh,imported_kwh\n" + "x" * 200_000 + ",0,1,1\n")
    with pytest.raises(InputError, match="malformed CSV"):
        read_meter_csv(meters)
    # Signed readings: nesting and bad values are named, before any validator starts.
    readings.write_text("[" * 100_000)
    with pytest.raises(InputError, match=r"readings\.json"):
        read_signed_readings(readings)
    reading = {
        "meter_id": "a",
        "meter": "0x12",
        "interval_start": 0,
        "interval_end": 1,
        "exported_wh": 0,
        "imported_wh": 0,
        "signature": "0x" + "00" * 65,
    }
    readings.write_text(
        json.dumps({"chain_id": 1, "settlement": "0x" + "00" * 20, "readings": [reading]})
    )
    with pytest.raises(InputError, match=r"readings\.0\.meter"):
        read_signed_readings(readings)


# --- random mutations of a valid scenario -----------------------------------------------

_BASE_YAML = (
    "name: fuzz\nnetwork:\n  pandapower: case33bw\nslot_minutes: 60\n"
    "security:\n  enabled: false\norders: orders.csv\n"
)
_BASE_CSV = (
    "order_id,participant_id,side,bus,slot,quantity_kwh,limit_price_eur_per_kwh,divisible\n"
    + "\n".join(ROWS)
    + "\n"
)


_INSERTS = [b":", b"\n", b",", b"- ", b"{", b"&a *a", b"\x00", b"\xff", b'"', b"1e308", b"-1"]


def _mutate(text: str, data: st.DataObject) -> bytes:
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "bytes"]))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[at] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            raw[at:at] = data.draw(
                st.sampled_from(
                    [
                        b":",
                        b"\n",
                        b",",
                        b"- ",
                        b"{",
                        b"&a *a",
                        b"\x00",
                        b"\xff",
                        b'"',
                        b"1e308",
                        b"-1",
                    ]
                )
            )
        elif kind == "delete" and raw:
            del raw[at : at + data.draw(st.integers(1, 8))]
        else:
            raw[at:at] = data.draw(st.binary(max_size=12))
    return bytes(raw)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_random_mutations_exit_0_or_2_without_traceback(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    yaml_bytes, csv_bytes = _BASE_YAML.encode(), _BASE_CSV.encode()
    if data.draw(st.booleans()):
        yaml_bytes = _mutate(_BASE_YAML, data)
    else:
        csv_bytes = _mutate(_BASE_CSV, data)
    (folder / "scenario.yaml").write_bytes(yaml_bytes)
    (folder / "orders.csv").write_bytes(csv_bytes)
    out = folder / "out"
    result = CliRunner().invoke(app, ["clear", str(folder), "--out", str(out)])
    assert result.exit_code in (0, 2), (result.stderr, yaml_bytes, csv_bytes)
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        assert not out.exists()
        assert len(result.stderr.strip().splitlines()) == 1
    else:
        assert (out / "trades.csv").is_file()
