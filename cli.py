"""The ``gridmatch`` command.

Exit codes (:class:`gridmatch.errors.ExitCode`):

* 0 success;
* 1 ``rounds rerun``: the command worked and the trades are not byte-identical;
* 2 invalid input or usage: a file (named with row and field), an option, an output
  folder; nothing was written;
* 3 solver failure: a solver error, a missing solver package, or an allocation that
  fails the built-in consistency check;
* 4 chain: a reverted or refused transaction, an unreachable node, forge or anvil;
* 5 cluster: a Dask cluster that cannot be started or reached;
* 6 internal error: a bug in gridmatch (``--debug`` shows the traceback);
* 130 interrupted (Ctrl-C).

Every command runs under one handler (:class:`_Commands`), the only place that turns
an exception into a message and an exit code. Results go to files, progress and the
readable summary to stderr, and ``--json`` prints the summary to stdout for scripts.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gridmatch.batch.executors import ExecutorKind  # light: the solvers load only per run
from gridmatch.errors import ExitCode, GridmatchError, exit_code_for
from gridmatch.matching.solution import TieBreak  # light: numpy and the standard library
from gridmatch.scenario_io.schema import MAX_LIMIT_S, MAX_THREADS
from gridmatch.units import MINUTES_PER_HOUR, SECONDS_PER_HOUR, WH_PER_KWH, micro_eur_to_eur
from gridmatch.user_files import check_path

# markup off: paths, ids and names a user chose are printed as they are, never as styles.
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


class _Commands(typer.core.TyperGroup):
    """The command group; its :meth:`invoke` is the one error handler of every command."""

    def invoke(self, ctx: Any) -> Any:  # a Typer context
        try:
            for argument in [*getattr(ctx, "_protected_args", []), *ctx.args]:
                check_path(Path(argument))  # a NUL would crash the first OS call
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # Typer's own: usage errors (exit 2) and deliberate exits
        except BaseException as exc:
            raise typer.Exit(_report(exc, debug=bool((ctx.obj or {}).get("debug")))) from None


def _report(exc: BaseException, *, debug: bool) -> int:
    """Print one clear line about ``exc`` (and the traceback with ``--debug``); its exit code."""
    code = exit_code_for(exc)
    if isinstance(exc, GridmatchError):
        label, message = exc.label, str(exc)
    elif code is ExitCode.INPUT:
        label, message = "error", f"cannot read or write the files: {exc}"
    elif code is ExitCode.INTERRUPTED:
        label, message = "interrupted", "stopped by the user; finished files stay whole"
    else:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        label = "internal error"
        message = f"{what} (a bug in gridmatch; please report it, with --debug for details)"
    stderr.print(Text.assemble((f"{label}:", "bold red"), " ", printable(message)))
    if debug:
        stderr.print("".join(traceback.format_exception(exc)))
    return int(code)


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes, so user text cannot drive a terminal."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


app = typer.Typer(
    cls=_Commands,
    help="Clear peer-to-peer energy orders: multiple-knapsack matching on HiGHS and OR-Tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="On an error, also print the traceback.")
    ] = False,
) -> None:
    ctx.obj = {"debug": debug}


# Solver options shared by the commands that clear (clear, batch, rounds run).
FormulationOption = Annotated[
    str | None, typer.Option(help="Formulation name; see `gridmatch formulations`.")
]
MipGapOption = Annotated[
    float | None, typer.Option("--mip-gap", min=0.0, max=1.0, help="Relative optimality gap.")
]
ThreadsOption = Annotated[
    int | None, typer.Option(min=1, max=MAX_THREADS, help="Slots solved at once, one process each.")
]
SeedOption = Annotated[int | None, typer.Option(min=0, max=2**31 - 1, help="Solver random seed.")]
TieBreakOption = Annotated[
    TieBreak | None,
    typer.Option(
        "--tie-break",
        help="price-time: of equally good allocations, every exact formulation picks the "
        "same one (most volume, then earlier orders first); one more MILP per slot.",
    ),
]
SummaryJsonOption = Annotated[bool, typer.Option("--json", help="Print summary.json to stdout.")]


@app.command()
def clear(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder holding scenario.yaml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Result folder (replaced atomically).")],
    formulation: FormulationOption = None,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit", min=0.01, max=MAX_LIMIT_S, help="Seconds for the whole clearing."
        ),
    ] = None,
    mip_gap: MipGapOption = None,
    threads: ThreadsOption = None,
    seed: SeedOption = None,
    tie_break: TieBreakOption = None,
    as_json: SummaryJsonOption = False,
) -> None:
    """Clear a scenario folder and write trades.csv, orders.csv, summary.json, manifest.json."""
    from gridmatch.pipeline import RunSettings, clear_scenario

    settings = RunSettings(formulation, time_limit, mip_gap, threads, seed, tie_break)
    with stderr.status(f"clearing {scenario_dir}"):
        run = clear_scenario(scenario_dir, out, settings)
    _print_summary(run.summary, out)
    if as_json:
        typer.echo(json.dumps(run.summary, indent=2))


@app.command()
def settle(
    out_dir: Annotated[Path, typer.Argument(help="Result folder of `gridmatch clear`.")],
    rpc_url: Annotated[
        str | None, typer.Option(help="Use this node instead of starting a local anvil.")
    ] = None,
    validators: Annotated[
        int, typer.Option(min=1, max=64, help="Validators (quorum: more than 2/3 of them).")
    ] = 4,
    tolerance_per_mille: Annotated[
        int, typer.Option(min=0, max=100, help="Votes agree within this per-mille of a trade.")
    ] = 20,
    deadline_hours: Annotated[
        float, typer.Option(min=0.01, max=24 * 30, help="Voting window.")
    ] = 24.0,
) -> None:
    """Deploy the contracts, sign orders, escrow the buyers' prepayments, commit the round."""
    from gridmatch.settlement.deploy import settle as settle_round

    record = settle_round(
        out_dir,
        rpc_url=rpc_url,
        validators=validators,
        tolerance_per_mille=tolerance_per_mille,
        deadline_hours=deadline_hours,
    )
    stderr.print(
        f"round {record.round_id} committed: {len(record.trades)} trades in "
        f"{record.commit_transactions} signed transactions ({record.commit_gas} gas), "
        f"{micro_eur_to_eur(record.total_locked_micro_eur):.6f} EUR locked; "
        f"settlement {record.settlement}, {len(record.validators)} validators"
    )
    for dropped in record.dropped:
        stderr.print(
            f"dropped: slot {dropped.slot} {dropped.buy_order_id} <- {dropped.sell_order_id}: "
            f"{dropped.buyer_id} has {micro_eur_to_eur(dropped.available_micro_eur):.6f} EUR "
            f"free, the trade locks {micro_eur_to_eur(dropped.required_micro_eur):.6f} EUR"
        )
    if record.unsettled:
        kwh = sum(u.unsettled_kwh for u in record.unsettled)
        below = sum(1 for u in record.unsettled if u.settled_wh == 0)
        stderr.print(
            f"not settled: {kwh:.6f} kWh ({below} trades left off chain); energy settles in "
            "whole Wh, rounded down (see deployment.json)"
        )


meters_app = typer.Typer(help="Meter readings for settlement.", no_args_is_help=True)
app.add_typer(meters_app, name="meters")


@meters_app.command("sign")
def meters_sign(
    out_dir: Annotated[Path, typer.Argument(help="Result folder after `gridmatch settle`.")],
    meter_csv: Annotated[
        Path, typer.Argument(help="meter_id, slot, exported_kwh, imported_kwh per meter and slot")
    ],
    signed: Annotated[Path, typer.Option("--out", "-o", help="Signed readings file (JSON).")],
) -> None:
    """Sign a meter export with the meters' keys of the deployment (the meters' own job)."""
    from gridmatch.settlement import attestation

    count = attestation.sign_meter_file(out_dir, meter_csv, signed)
    stderr.print(f"{count} readings signed into {printable(str(signed))}")


@meters_app.command("simulate")
def meters_simulate(
    out_dir: Annotated[Path, typer.Argument(help="Result folder after `gridmatch settle`.")],
    meter_csv: Annotated[Path, typer.Option("--out", "-o", help="Meter CSV to write.")],
) -> None:
    """Write what honest meters would read: every trade delivered, less the grid losses."""
    from gridmatch.settlement import attestation

    count = attestation.simulate_meter_file(out_dir, meter_csv)
    stderr.print(f"{count} meter readings written to {printable(str(meter_csv))}")


@app.command()
def attest(
    out_dir: Annotated[Path, typer.Argument(help="Result folder after `gridmatch settle`.")],
    readings: Annotated[Path, typer.Argument(help="Signed readings (`gridmatch meters sign`).")],
    rpc_url: Annotated[str | None, typer.Option(help="The node `settle` used.")] = None,
) -> None:
    """Run the validators, each a process with its own key; agreed trades settle."""
    from gridmatch.settlement import attestation

    outcome = attestation.attest(out_dir, readings, rpc_url=rpc_url)
    for reason in outcome.refused():
        stderr.print(Text.assemble(("refused:", "yellow"), " ", printable(reason)))
    for note in outcome.short():
        stderr.print(Text.assemble(("short:", "yellow"), " ", printable(note)))
    for problem in outcome.problems:
        stderr.print(Text.assemble(("problem:", "red"), " ", printable(problem)))
    reasons: dict[str, int] = {}
    for reason in outcome.skipped.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        stderr.print(
            f"not settled now: {count} trades ({reason}); after the deadline they are reclaimed"
        )
    title = (
        f"settled by {len(outcome.validators)} validators ({outcome.transactions} "
        f"transactions, {outcome.gas_used} gas)"
    )
    table = Table(title=title)
    for column in ("participant", "balance change EUR", "energy received kWh"):
        table.add_column(column)
    for payout in outcome.payouts:
        table.add_row(
            payout.participant_id,
            f"{payout.balance_change_eur:+.6f}",
            f"{payout.energy_received_kwh:.3f}",
        )
    stderr.print(table)


@app.command()
def reclaim(
    out_dir: Annotated[Path, typer.Argument(help="Result folder after `gridmatch settle`.")],
    rpc_url: Annotated[str | None, typer.Option(help="The node `settle` used.")] = None,
    advance_clock_hours: Annotated[
        float,
        typer.Option(min=0.0, max=24 * 60, help="Move a local anvil's clock first (demos)."),
    ] = 0.0,
) -> None:
    """After the deadline, return every unsettled trade's lock to its buyer (anyone may)."""
    from gridmatch.settlement import attestation

    payouts = attestation.reclaim_expired(
        out_dir, rpc_url=rpc_url, advance_s=round(advance_clock_hours * SECONDS_PER_HOUR)
    )
    if not payouts:
        stderr.print("nothing reclaimed: no open trade whose round's deadline has passed")
        return
    table = Table(title="locks returned to buyers")
    for column in ("participant", "refund EUR"):
        table.add_column(column)
    for payout in payouts:
        table.add_row(payout.participant_id, f"{payout.balance_change_eur:.6f}")
    stderr.print(table)


@app.command()
def balances(
    out_dir: Annotated[Path, typer.Argument(help="Result folder after `gridmatch settle`.")],
    rpc_url: Annotated[str | None, typer.Option(help="The node `settle` used.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON to stdout.")] = False,
) -> None:
    """Show each participant's escrow (free, locked) and energy tokens, read from the chain."""
    from gridmatch.settlement import attestation

    held = attestation.balances(out_dir, rpc_url=rpc_url)
    if as_json:
        document = {
            participant: {
                "free_micro_eur": free,
                "locked_micro_eur": locked,
                "energy_wh_by_slot_start": {str(k): v for k, v in sorted(energy.items())},
            }
            for participant, (free, locked, energy) in sorted(held.items())
        }
        typer.echo(json.dumps(document, indent=2))
        return
    table = Table(title="on chain")
    for column in ("participant", "free EUR", "locked EUR", "energy kWh"):
        table.add_column(column)
    for participant, (free, locked, energy) in sorted(held.items()):
        table.add_row(
            participant,
            f"{micro_eur_to_eur(free):.6f}",
            f"{micro_eur_to_eur(locked):.6f}",
            f"{sum(energy.values()) / WH_PER_KWH:.3f}",
        )
    stderr.print(table)


@app.command()
def batch(
    scenario_dirs: Annotated[
        list[Path], typer.Argument(help="Scenario folders, each holding scenario.yaml.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Batch folder: OUT/<scenario>/<formulation>/ and results tables."
        ),
    ],
    formulation: Annotated[
        list[str] | None,
        typer.Option(help="Formulation to run; repeat for several. Default: highspy."),
    ] = None,
    jobs: Annotated[
        int, typer.Option(min=1, help="Runs at once (local processes or Dask workers).")
    ] = 1,
    executor: Annotated[
        ExecutorKind, typer.Option(help="local: this machine; dask: a Dask cluster.")
    ] = ExecutorKind.LOCAL,
    scheduler_address: Annotated[
        str | None,
        typer.Option(help="Dask scheduler, e.g. tcp://host:8786; default: a local cluster."),
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option("--time-limit", min=0.01, max=MAX_LIMIT_S, help="Seconds per run."),
    ] = None,
    mip_gap: MipGapOption = None,
    seed: SeedOption = None,
    tie_break: TieBreakOption = None,
) -> None:
    """Clear every scenario with every formulation: one result folder per run, one table.

    Runs already done with the same inputs and options are skipped, so an interrupted
    batch resumes. Exit 2 if any run failed on its input, 3 if any failed otherwise.
    """
    from gridmatch.batch.orchestrate import run_batch
    from gridmatch.matching.backends.registry import DEFAULT_FORMULATION
    from gridmatch.pipeline import RunSettings

    settings = RunSettings(time_limit_s=time_limit, mip_gap=mip_gap, seed=seed, tie_break=tie_break)
    result = run_batch(
        scenario_dirs,
        formulation or [DEFAULT_FORMULATION],
        out,
        settings,
        executor=executor,
        jobs=jobs,
        scheduler_address=scheduler_address,
        console=stderr,
    )
    cleared = result.n_runs - result.n_skipped - result.n_errors
    stderr.print(
        f"{result.n_runs} runs: {cleared} cleared, {result.n_skipped} already done, "
        f"{result.n_errors} failed, in {result.wall_s:.1f} s; "
        f"table {result.parquet_path} (and .csv)"
        + (f", with {result.n_kept} rows of earlier batches" if result.n_kept else ""),
        highlight=False,
    )
    if result.n_errors:
        raise typer.Exit(ExitCode.INPUT if result.only_input_errors else ExitCode.SOLVER)


@app.command()
def compare(
    results_table: Annotated[
        Path,
        typer.Argument(help="results.parquet or results.csv of `gridmatch batch`, or its folder."),
    ],
    plots: Annotated[
        Path | None, typer.Option(help="Folder for the PNGs; default: the table's folder.")
    ] = None,
) -> None:
    """Summarise a batch table by formulation and size; plot time and gap against size (PNG)."""
    from gridmatch.batch.compare import compare_results

    comparison = compare_results(results_table, plots)
    stderr.print(comparison.table)
    stderr.print("plots: " + ", ".join(str(p) for p in comparison.plots), highlight=False)


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="Result folder of `gridmatch clear`.")],
    slots: Annotated[
        str | None,
        typer.Option(help="Slots to detail, e.g. '3,7,16-21' (default: all, at most 24)."),
    ] = None,
) -> None:
    """Write OUT_DIR/report.html: network maps, supply and demand, trades, security."""
    from gridmatch.report import build_report, parse_slots

    chosen = parse_slots(slots) if slots is not None else None
    with stderr.status(f"writing the report of {printable(str(out_dir))}"):
        info = build_report(out_dir, chosen)
    for note in info.notes:
        stderr.print(Text.assemble(("note:", "yellow"), " ", printable(note)))
    stderr.print(
        f"report of {len(info.slots)} slots, {info.size_bytes / 1e6:.2f} MB", highlight=False
    )
    typer.echo(str(info.path))


@app.command()
def formulations() -> None:
    """List the registered formulations and whether their solvers are installed."""
    from gridmatch.matching.backends.registry import BACKENDS, DEFAULT_FORMULATION

    table = Table("name", "kind", "solver", "available", "description")
    for name, backend in BACKENDS.items():
        label = f"{name} (default)" if name == DEFAULT_FORMULATION else name
        available = "yes" if backend.is_available() else f"no: {backend.install_hint()}"
        table.add_row(label, backend.kind.value, backend.solver, available, backend.description)
    Console().print(table)


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario.yaml."""
    from gridmatch.scenario_io.schema import ScenarioSpec

    typer.echo(json.dumps(ScenarioSpec.model_json_schema(), indent=2))


def _print_summary(summary: dict[str, object], out: Path) -> None:
    table = Table(title=f"{summary['scenario']}: {summary['status']}", show_header=False)
    gap = summary["gap"]
    rows = [
        (
            "formulation",
            f"{summary['formulation']} ({summary['solver']} {summary['solver_version']})",
        ),
        ("orders / trades", f"{summary['n_orders']} / {summary['n_trades']}"),
        ("traded", f"{summary['traded_kwh']:.3f} kWh"),
        ("welfare", f"{summary['welfare_eur']:.4f} EUR"),
        ("proven bound", f"{summary['bound_eur']:.4f} EUR"),
        ("gap", f"{gap:.4%}" if isinstance(gap, float) else str(gap)),
        ("runtime", f"{summary['runtime_s']:.2f} s"),
        ("grid secure (AC)", _security_text(summary)),
    ]
    if summary["secure"] is not None:
        rows.append(
            (
                "price of security",
                f"{summary['price_of_security_eur']:.4f} EUR "
                f"(unconstrained {summary['unconstrained_welfare_eur']:.4f} EUR)",
            )
        )
    rows.append(("results", str(out)))
    for key, value in rows:
        table.add_row(key, value)
    stderr.print(table)


def _security_text(summary: dict[str, object]) -> str:
    if summary["secure"] is None:
        return "not checked (security.enabled: false)"
    if summary["secure"]:
        text = (
            f"yes ({summary['ac_power_flows']} power flows, "
            f"{summary['security_iterations']} security rounds)"
        )
        fallback = summary.get("fallback_slots")
        if isinstance(fallback, list) and fallback:
            text += f"; slots {', '.join(str(s) for s in fallback)} by dropping trades"
        return text
    slots = summary.get("insecure_slots")
    listed = ", ".join(str(s) for s in slots) if isinstance(slots, list) else "?"
    return f"NO: slots {listed} (see grid.csv)"


# --- rolling rounds (issue #5) -------------------------------------------------------

rounds_app = typer.Typer(
    help="Rolling clearing rounds recorded in a round ledger (SQLite): run, rerun, diff.",
    no_args_is_help=True,
)
app.add_typer(rounds_app, name="rounds")


@rounds_app.command("run")
def rounds_run(
    scenario_dir: Annotated[
        Path,
        typer.Argument(
            help="Scenario folder: scenario.yaml with rounds:, orders.csv with submitted_at_min."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for ledger.sqlite, round-NNN/ and the day's files."
        ),
    ],
    formulation: FormulationOption = None,
    time_limit: Annotated[
        float | None,
        typer.Option("--time-limit", min=0.01, max=MAX_LIMIT_S, help="Seconds per round."),
    ] = None,
    mip_gap: MipGapOption = None,
    threads: ThreadsOption = None,
    seed: SeedOption = None,
    tie_break: TieBreakOption = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the day of OUT/ledger.sqlite (after a crash or --until); orders "
            "submitted after its last round may have been added to the orders file.",
        ),
    ] = False,
    until: Annotated[
        int | None,
        typer.Option(
            "--until",
            min=0,
            help="Clear only the rounds due at or before this minute of the day; "
            "continue later with --resume.",
        ),
    ] = None,
    as_json: SummaryJsonOption = False,
) -> None:
    """Clear a day in rolling rounds; every round goes into OUT/ledger.sqlite and OUT/round-NNN/."""
    from gridmatch.pipeline import RunSettings
    from gridmatch.rounds.engine import RoundClearing
    from gridmatch.rounds.runner import run_rounds

    def progress(clearing: RoundClearing) -> None:
        done = clearing.round_input
        stderr.print(
            f"round {done.round_no:3d} at {done.cleared_at_min // MINUTES_PER_HOUR:02d}:"
            f"{done.cleared_at_min % MINUTES_PER_HOUR:02d}: {len(done.book)} orders, "
            f"{len(clearing.result.trades)} trades, {clearing.result.welfare_eur:.4f} EUR",
            highlight=False,
        )

    settings = RunSettings(formulation, time_limit, mip_gap, threads, seed, tie_break)
    run = run_rounds(scenario_dir, out, settings, resume=resume, until_min=until, on_round=progress)
    summary = run.summary
    stderr.print(
        f"{summary['scenario']}: {summary['n_rounds']} of {summary['n_rounds_planned']} rounds, "
        f"{summary['n_trades']} trades, "
        f"{summary['traded_kwh']:.3f} kWh, welfare {summary['welfare_eur']:.4f} EUR, "
        f"secure {summary['secure']}, {summary['n_late_orders']} late orders, "
        f"{summary['runtime_s']:.1f} s; ledger {run.ledger_path}",
        highlight=False,
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))


@rounds_app.command("rerun")
def rounds_rerun(
    ledger: Annotated[Path, typer.Option("--ledger", help="OUT/ledger.sqlite of `rounds run`.")],
    round_no: Annotated[
        int | None,
        typer.Argument(min=1, help="Round number (1 = first round); default: every round."),
    ] = None,
    formulation: Annotated[
        str | None, typer.Option(help="Clear with this formulation instead of the stored one.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result to stdout.")] = False,
) -> None:
    """Reproduce rounds from the ledger alone; exit 0 if all trades are byte-identical, else 1."""
    from gridmatch.rounds.replay import replay_rounds

    wanted = None if round_no is None else [round_no]
    replays = replay_rounds(ledger, wanted, formulation)
    for replay in replays:
        for line in replay.lines():
            stderr.print(line, highlight=False, soft_wrap=True)
    if len(replays) > 1:
        same = sum(replay.identical for replay in replays)
        stderr.print(f"{same} of {len(replays)} rounds identical", highlight=False)
    if as_json:
        documents = [replay.to_dict() for replay in replays]
        typer.echo(json.dumps(documents[0] if round_no is not None else documents, indent=2))
    if not all(replay.identical for replay in replays):
        raise typer.Exit(ExitCode.DIFFERENT)


@rounds_app.command("diff")
def rounds_diff(
    round_no: Annotated[int, typer.Argument(min=1, help="Round number (1 = first round).")],
    formulation: Annotated[str, typer.Option(help="Formulation to compare with the stored one.")],
    ledger: Annotated[Path, typer.Option("--ledger", help="OUT/ledger.sqlite of `rounds run`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result to stdout.")] = False,
) -> None:
    """Show what another formulation would have traded in a round (earlier rounds as recorded)."""
    from gridmatch.rounds.replay import diff

    replay = diff(ledger, round_no, formulation)
    lines = replay.lines() if not replay.identical else [*replay.lines(), *replay.diff.lines()]
    for line in lines:
        stderr.print(line, highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(replay.to_dict(), indent=2))


def main() -> None:
    """Entry point of the ``gridmatch`` console script."""
    app()


if __name__ == "__main__":
    main()
