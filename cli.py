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
import os
import signal
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gridmatch.batch.executors import ExecutorKind  # light: the solvers load only per run
from gridmatch.errors import ExitCode, GridmatchError, Terminated, exit_code_for
from gridmatch.matching.solution import TieBreak  # light: numpy and the standard library
from gridmatch.scenario_io.mobility_schema import BackendName, DispatchMode
from gridmatch.scenario_io.schema import MAX_LIMIT_S, MAX_THREADS
from gridmatch.units import MINUTES_PER_HOUR, SECONDS_PER_HOUR, WH_PER_KWH, micro_eur_to_eur
from gridmatch.user_files import check_path

if TYPE_CHECKING:
    from pydantic import BaseModel

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
    elif code is ExitCode.TERMINATED:
        label, message = "terminated", "stopped by SIGTERM; finished files stay whole"
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
        trade = f"slot {dropped.slot} {dropped.buy_order_id} <- {dropped.sell_order_id}"
        if dropped.reason == "escrow":
            why = (
                f"{dropped.buyer_id} has {micro_eur_to_eur(dropped.available_micro_eur):.6f} "
                f"EUR free, the trade locks {micro_eur_to_eur(dropped.required_micro_eur):.6f} EUR"
            )
        elif dropped.reason == "order_cancelled":
            why = f"{dropped.participant_id} cancelled its order on chain"
        else:
            why = f"{dropped.participant_id}'s hour is certified already"
        stderr.print(f"dropped: {trade}: {why}")
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
    advance_clock_hours: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=24 * 60,
            help="Move a local anvil's clock first, past slots not yet delivered (demos).",
        ),
    ] = 0.0,
) -> None:
    """Run the validators, each a process with its own key; agreed trades settle."""
    from gridmatch.settlement import attestation

    outcome = attestation.attest(
        out_dir, readings, rpc_url=rpc_url, advance_s=round(advance_clock_hours * SECONDS_PER_HOUR)
    )
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
    _print_issued(outcome.certificates)


def _print_issued(certificates: tuple[Any, ...]) -> None:
    """One line on the energy certificates a command issued (seller-hours now final)."""
    if certificates:
        wh = sum(c.issued_wh for c in certificates)
        stderr.print(
            f"certificates issued: {len(certificates)} (ids {certificates[0].certificate_id}"
            f"-{certificates[-1].certificate_id}, {wh} Wh); see `gridmatch certificates list`"
        )


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

    outcome = attestation.reclaim_expired(
        out_dir, rpc_url=rpc_url, advance_s=round(advance_clock_hours * SECONDS_PER_HOUR)
    )
    if not outcome.payouts:
        stderr.print("nothing reclaimed: no open trade whose round's deadline has passed")
        _print_issued(outcome.certificates)
        return
    table = Table(title="locks returned to buyers")
    for column in ("participant", "refund EUR"):
        table.add_column(column)
    for payout in outcome.payouts:
        table.add_row(payout.participant_id, f"{payout.balance_change_eur:.6f}")
    stderr.print(table)
    _print_issued(outcome.certificates)


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


certificates_app = typer.Typer(
    help="Energy certificates of verified generation: one per seller and hour, 1 unit = 1 Wh.",
    no_args_is_help=True,
)
app.add_typer(certificates_app, name="certificates")


@certificates_app.command("list")
def certificates_list(
    out_dir: Annotated[Path, typer.Argument(help="Result folder after `gridmatch attest`.")],
    rpc_url: Annotated[str | None, typer.Option(help="The node `settle` used.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print them as granular certificate bundles (JSON).")
    ] = False,
) -> None:
    """List certificates, who holds how many active Wh, and every retirement (from the chain).

    The list is also kept in OUT_DIR/settlement/certificates.json, which `gridmatch report`
    shows.
    """
    from gridmatch.settlement import certificates as certs

    book = certs.read_book(out_dir, rpc_url=rpc_url)
    certs.write_snapshot(out_dir, book)
    if as_json:
        typer.echo(json.dumps(certs.snapshot(book), indent=2, ensure_ascii=False))
        return
    table = Table(title=f"energy certificates ({book.issued_wh} Wh issued)")
    for column in ("id", "device", "production (UTC)", "holder", "active Wh", "claimed Wh"):
        table.add_column(column)
    starts = {c.certificate_id: c for c in book.certificates}
    for h in book.holdings:
        c = starts[h.certificate_id]
        table.add_row(
            str(h.certificate_id),
            book.name(c.device),
            f"{certs.iso(c.start)} - {certs.iso(c.end)}",
            book.name(h.holder),
            str(h.active_wh),
            str(h.claimed_wh),
        )
    stderr.print(table)
    if book.retirements:
        retired = Table(title="retirements (claims; final)")
        for column in ("claim", "id", "holder", "Wh", "units", "beneficiary", "purpose"):
            retired.add_column(column)
        for r in book.retirements:
            retired.add_row(
                str(r.claim_id),
                str(r.certificate_id),
                book.name(r.holder),
                str(r.wh),
                f"{r.first_unit}-{r.first_unit + r.wh - 1}",
                printable(r.beneficiary),
                printable(r.purpose),
            )
        stderr.print(retired)


@certificates_app.command("claim")
def certificates_claim(
    out_dir: Annotated[Path, typer.Argument(help="Result folder after `gridmatch attest`.")],
    certificate: Annotated[int, typer.Option("--claim", min=1, help="Certificate id.")],
    wh: Annotated[int, typer.Option(min=1, max=2**64 - 1, help="Wh to retire.")],
    holder: Annotated[str, typer.Option(help="Participant id of the holder (it signs).")],
    beneficiary: Annotated[str, typer.Option(help="Who the Wh are retired for.")],
    purpose: Annotated[str, typer.Option(help="What the claim is for.")],
    rpc_url: Annotated[str | None, typer.Option(help="The node `settle` used.")] = None,
) -> None:
    """Retire Wh of a certificate for a beneficiary and purpose, irreversibly."""
    from gridmatch.settlement import certificates as certs

    r = certs.claim(
        out_dir,
        certificate_id=certificate,
        wh=wh,
        holder_id=holder,
        beneficiary=beneficiary,
        purpose=purpose,
        rpc_url=rpc_url,
    )
    stderr.print(
        f"claim {r.claim_id}: {holder} retired {r.wh} Wh of certificate {r.certificate_id} "
        f"(units {r.first_unit}-{r.first_unit + r.wh - 1}) for {printable(beneficiary)}; "
        f"transaction {r.transaction}"
    )


@certificates_app.command("export")
def certificates_export(
    out_dir: Annotated[Path, typer.Argument(help="Result folder after `gridmatch attest`.")],
    beneficiary: Annotated[str, typer.Option(help="Whose retirements (exact name).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Statement file to write (JSON).")],
    start: Annotated[
        str | None, typer.Option(help="Production from (ISO 8601 with offset), inclusive.")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Production before (ISO 8601), exclusive.")
    ] = None,
    rpc_url: Annotated[str | None, typer.Option(help="The node `settle` used.")] = None,
) -> None:
    """Write a beneficiary's retirement statement as EnergyTag granular certificate bundles."""
    from gridmatch.settlement import certificates as certs

    written = certs.write_statement(
        out_dir, out, beneficiary=beneficiary, start=start, end=end, rpc_url=rpc_url
    )
    stderr.print(
        f"{written.bundles} claimed bundles, {written.claimed_wh} Wh, for "
        f"{printable(beneficiary)} written to {printable(str(out))}"
    )


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
    """Write OUT_DIR/report.html: network maps, supply and demand, trades, security.

    An output folder of `gridmatch prepaid` gets its own report: balance, limit and
    state per meter over time, cutoffs and reconnections; one of `gridmatch
    validate-commitments` its verdicts, with each commitment's window and events; one of
    `gridmatch battery-rewards` each period's summary against the thresholds and the
    release, on chain next to Python.
    """
    from gridmatch.report.kinds import report_kind_of

    kind = report_kind_of(out_dir)
    if kind is not None:
        with stderr.status(f"writing the report of {printable(str(out_dir))}"):
            written = kind.build(out_dir)
        stderr.print(written.headline, highlight=False)
        typer.echo(str(written.path))
        return
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
def prepaid(
    sim_dir: Annotated[
        Path, typer.Argument(help="Folder with prepaid.yaml, accounts.csv, usage.csv, ...")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (replaced atomically); default results/<SIM_DIR name>.",
        ),
    ] = None,
    with_report: Annotated[
        bool, typer.Option("--report", help="Also write OUT/report.html (charts per meter).")
    ] = False,
    as_json: SummaryJsonOption = False,
) -> None:
    """Simulate prepaid meters and their server: limits as OpenPAYGO tokens, cutoffs, top-ups."""
    from gridmatch.prepaid.run import run_prepaid

    out_dir = out if out is not None else Path("results") / sim_dir.resolve().name
    run = run_prepaid(sim_dir, out_dir)
    s = run.summary
    stderr.print(
        f"{s.name}: {s.n_meters} meters, {s.n_reports} reports each; "
        f"{s.disconnections} cutoffs, {s.reconnections} reconnections, "
        f"{s.tokens_issued} tokens issued, {s.tokens_refused} refused; billed "
        f"{micro_eur_to_eur(s.billed_micro_eur):.6f} EUR, conserved {s.conserved}; {out_dir}"
    )
    _report_and_json(out_dir, s, with_report=with_report, as_json=as_json)


def _report_and_json(
    out_dir: Path, summary: BaseModel, *, with_report: bool, as_json: bool
) -> None:
    """Write ``out_dir``'s report (``--report``) and print its summary (``--json``)."""
    if with_report:
        from gridmatch.report.kinds import report_kind_of

        kind = report_kind_of(out_dir)
        assert kind is not None, f"{out_dir} was just written by a command with a report"
        typer.echo(str(kind.build(out_dir).path))
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))


@app.command("battery-rewards")
def battery_rewards(
    folder: Annotated[Path, typer.Argument(help="Folder with agreement.yaml and telemetry.csv.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder; default results/<FOLDER name>."),
    ] = None,
    chain: Annotated[
        bool,
        typer.Option(
            "--chain", help="Also release on BatteryRewards.sol (a local anvil unless --rpc-url)."
        ),
    ] = False,
    rpc_url: Annotated[
        str | None, typer.Option(help="Release on this node instead of a local anvil.")
    ] = None,
    validators: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=16,
            help="Validators signing each period's summary (default 3; with --settlement: "
            "the settlement's own).",
        ),
    ] = None,
    settlement: Annotated[
        Path | None,
        typer.Option(
            help="Reuse the validator registry and payment token of this `gridmatch settle` "
            "result folder (its deployment.json, keystore and node); implies --chain."
        ),
    ] = None,
    reclaim: Annotated[
        bool,
        typer.Option(
            "--reclaim",
            help="After expiry: the sponsor takes back what was not released (OUT/chain.json).",
        ),
    ] = False,
    advance_clock_hours: Annotated[
        float,
        typer.Option(
            min=0.0, max=24 * 366 * 20, help="With --reclaim: move a local anvil's clock first."
        ),
    ] = 0.0,
) -> None:
    """Judge a battery reward agreement on its telemetry; optionally release it on chain."""
    from gridmatch.battery_rewards.run import evaluate_folder, write_evaluation
    from gridmatch.errors import UsageError
    from gridmatch.results_io.battery_rewards import (
        CHAIN_FILE,
        claim_output_folder,
        write_chain_record,
    )

    out_dir = out if out is not None else Path("results") / folder.resolve().name
    evaluation = evaluate_folder(folder)
    on_chain = chain or rpc_url is not None or settlement is not None
    if validators is not None and (reclaim or not on_chain):
        raise UsageError("--validators goes with --chain (or --rpc-url): they sign releases")
    if reclaim:
        if chain or settlement is not None:
            raise UsageError("--reclaim reclaims an earlier --chain run: give it alone")
        if (out_dir / CHAIN_FILE).is_file():  # else the reclaim below says what is missing
            claim_output_folder(out_dir, on_chain=True, evaluation=False)
        from gridmatch.settlement.battery_rewards import reclaim_on_chain

        reclaimed_record = reclaim_on_chain(
            evaluation,
            out_dir,
            rpc_url=rpc_url,
            advance_s=round(advance_clock_hours * SECONDS_PER_HOUR),
        )
        write_chain_record(out_dir, reclaimed_record)
        found = reclaimed_record.reclaim
        reclaimed = found.reclaimed_micro_eur if found is not None else 0
        stderr.print(
            f"{evaluation.agreement.battery_id}: the sponsor reclaimed "
            f"{micro_eur_to_eur(reclaimed):.6f} EUR (funded - "
            f"released, equal to the evaluation); {out_dir}",
            highlight=False,
        )
        return
    if advance_clock_hours:
        raise UsageError("--advance-clock-hours goes with --reclaim")
    if validators is not None and settlement is not None:
        raise UsageError("--validators: with --settlement the settlement's validators sign")
    claim_output_folder(out_dir, on_chain=on_chain)
    record = None
    if on_chain:
        from gridmatch.settlement.battery_rewards import DEFAULT_VALIDATORS, release_on_chain

        record = release_on_chain(
            evaluation,
            out_dir,
            rpc_url=rpc_url,
            validators=validators if validators is not None else DEFAULT_VALIDATORS,
            settlement_dir=settlement,
        )
    write_evaluation(evaluation, out_dir, on_chain=record is not None)
    if record is not None:
        write_chain_record(out_dir, record)
    met = sum(1 for v in evaluation.verdicts if v[2] == "met")
    stderr.print(
        f"{evaluation.agreement.battery_id}: {len(evaluation.periods)} periods, {met} conditions "
        f"met; released {micro_eur_to_eur(evaluation.total_released_micro_eur):.6f} of "
        f"{micro_eur_to_eur(evaluation.funded_micro_eur):.6f} EUR"
        + (
            f"; on chain ({record.gas_used:,} gas): equal to the last micro-EUR"
            if record is not None
            else ""
        )
        + f"; {out_dir}",
        highlight=False,
    )


@app.command("validate-commitments")
def validate_commitments(
    folder: Annotated[
        Path,
        typer.Argument(help="Folder with meter_data.csv, commitments.csv [, sites.csv, ...]"),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (replaced atomically); default results/<FOLDER name>.",
        ),
    ] = None,
    slot_start: Annotated[
        str | None,
        typer.Option(
            help="Also write deliveries.csv (settlement's meter CSV): start of slot 0, "
            "ISO-8601 with offset."
        ),
    ] = None,
    slot_minutes: Annotated[
        int, typer.Option(min=1, max=1440, help="Settlement slot length (with --slot-start).")
    ] = 60,
    with_report: Annotated[
        bool, typer.Option("--report", help="Also write OUT/report.html.")
    ] = False,
    as_json: SummaryJsonOption = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes judging meters (default: one per CPU, none for fewer "
            "than 200 commitments); the output is the same whatever the number.",
        ),
    ] = None,
) -> None:
    """Validate DER commitments against meter data: a verdict and its evidence per commitment."""
    from datetime import datetime

    from gridmatch.der_validation.run import run_validation

    start = None
    if slot_start is not None:
        try:
            start = datetime.fromisoformat(slot_start)
        except ValueError:
            raise typer.BadParameter(
                f"'{slot_start}' is not an ISO-8601 time", param_hint="--slot-start"
            ) from None
        if start.utcoffset() is None:
            raise typer.BadParameter("needs a UTC offset (e.g. +01:00)", param_hint="--slot-start")
    out_dir = out if out is not None else Path("results") / folder.resolve().name
    run = run_validation(
        folder, out_dir, slot_start=start, slot_minutes=slot_minutes, workers=workers
    )
    s = run.summary
    counts = ", ".join(f"{n} {verdict}" for verdict, n in s.verdicts.items() if n)
    stderr.print(
        f"{s.name}: {s.n_commitments} commitments: {counts}; validated "
        f"{s.validated_kwh:.3f} of {s.committed_kwh:.3f} kWh committed; {out_dir}"
    )
    _report_and_json(out_dir, s, with_report=with_report, as_json=as_json)


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
    rows = [
        (
            "formulation",
            f"{summary['formulation']} ({summary['solver']} {summary['solver_version']})",
        ),
        ("orders / trades", f"{summary['n_orders']} / {summary['n_trades']}"),
        ("traded", f"{summary['traded_kwh']:.3f} kWh"),
        ("welfare", f"{summary['welfare_eur']:.4f} EUR"),
        ("proven bound", f"{summary['bound_eur']:.4f} EUR"),
        ("gap", _gap_text(summary)),
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


def _gap_text(summary: dict[str, object]) -> str:
    gap, market, security = summary["gap"], summary.get("market_gap"), summary.get("security_gap")
    if not isinstance(gap, float):
        return str(gap)
    if isinstance(market, float) and isinstance(security, float):
        return f"{gap:.4%} (market {market:.4%}, security {security:.4%})"
    return f"{gap:.4%}"


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
    for round_no in run.restored_rounds:
        stderr.print(f"round {round_no}: its folder was gone; written again from the ledger")
    for round_no in run.unrestored_rounds:
        stderr.print(
            f"round {round_no}: its folder is gone and cleared again it gives other trades "
            f"than the ledger's; the ledger keeps them (`gridmatch rounds rerun {round_no} "
            f"--ledger {run.ledger_path}` shows the difference)"
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


# --- energy on wheels (issue #20) ---------------------------------------------------


class _MobilityCommands(typer.core.TyperGroup):
    """``gridmatch mobility DIR ...`` runs ``solve``: a folder is not a sub-command name."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["solve", *args]
        result: list[str] = super().parse_args(ctx, args)
        return result


mobility_app = typer.Typer(
    cls=_MobilityCommands,
    help="Energy on wheels: send EVs, mobile storage and fuel trucks where energy is needed.",
    no_args_is_help=True,
)
app.add_typer(mobility_app, name="mobility")


@mobility_app.command("solve")
def mobility_solve(
    mobility_dir: Annotated[
        Path, typer.Argument(help="Folder with vehicles.csv, requests.csv, roads.csv, ...")
    ],
    mode: Annotated[
        DispatchMode,
        typer.Option(help="normal: every kWh alike; emergency: critical requests first."),
    ] = DispatchMode.NORMAL,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output folder (replaced atomically); default results/<DIR>-<mode>."
        ),
    ] = None,
    backend: Annotated[
        BackendName | None, typer.Option(help="Exact MILP solver (default: mobility.yaml's).")
    ] = None,
    time_limit: Annotated[
        float | None,
        typer.Option("--time-limit", min=0.01, max=MAX_LIMIT_S, help="Seconds per dispatch."),
    ] = None,
    mip_gap: MipGapOption = None,
    seed: SeedOption = None,
    with_report: Annotated[
        bool, typer.Option("--report", help="Also write OUT/report.html (the map).")
    ] = False,
    as_json: SummaryJsonOption = False,
) -> None:
    """Dispatch vehicles to requests and points; write per-party files and a GeoJSON map."""
    from gridmatch.mobility.run import run_mobility

    out_dir = (
        out if out is not None else Path("results") / f"{mobility_dir.resolve().name}-{mode.value}"
    )
    with stderr.status(f"dispatching {printable(str(mobility_dir))} ({mode.value})"):
        run = run_mobility(
            mobility_dir,
            out_dir,
            mode,
            backend=backend,
            time_limit_s=time_limit,
            mip_gap=mip_gap,
            seed=seed,
        )
    s = run.summary
    gap = "none" if s.gap is None else f"{100 * s.gap:.4f} %"
    grid = (
        f"grid {'secure' if s.grid.secure else 'INSECURE'} after {s.grid.rounds} re-solve(s)"
        if s.grid.checked
        else "no grid check"
    )
    stderr.print(
        f"{printable(s.name)} ({s.mode}): {s.n_sent} of {s.n_vehicles} vehicles sent; "
        f"{s.n_served} served, {s.n_partial} partly, {s.n_unserved} not of {s.n_requests} "
        f"requests; critical {s.critical_served_wh / WH_PER_KWH:.3f} of "
        f"{s.critical_need_wh / WH_PER_KWH:.3f} kWh; {s.status}, gap {gap}; {grid}; "
        f"{printable(str(out_dir))}"
    )
    _report_and_json(out_dir, s, with_report=with_report, as_json=as_json)


@mobility_app.command("nearest")
def mobility_nearest(
    mobility_dir: Annotated[Path, typer.Argument(help="Mobility folder.")],
    node: Annotated[str | None, typer.Option(help="Where the energy is needed.")] = None,
    lon: Annotated[float | None, typer.Option(min=-180, max=180, help="Or: a position.")] = None,
    lat: Annotated[float | None, typer.Option(min=-90, max=90)] = None,
    need_kwh: Annotated[
        float,
        typer.Option("--need-kwh", min=0.0, max=1e6, help="What must be spare after the drive."),
    ] = 0.0,
    fuel: Annotated[
        bool, typer.Option("--fuel", help="Fuel (fuel trucks), not electricity.")
    ] = False,
    count: Annotated[int, typer.Option("--count", "-k", min=1, max=1000)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the vehicles as JSON.")] = False,
) -> None:
    """Where is my nearest supply? The soonest vehicles that can bring energy to a place."""
    import time

    from gridmatch.errors import UsageError
    from gridmatch.mobility.nearest import SupplyIndex
    from gridmatch.scenario_io.mobility_input import Carrier, load_mobility

    if (node is None) == (lon is None or lat is None):
        raise UsageError("give --node, or --lon and --lat")
    index = SupplyIndex(load_mobility(mobility_dir))
    place = node if node is not None else index.node_near(float(lon), float(lat))  # type: ignore[arg-type]
    began = time.perf_counter()
    found = index.query(
        place, need_kwh, carrier=Carrier.FUEL if fuel else Carrier.ELECTRICITY, k=count
    )
    latency_ms = 1000 * (time.perf_counter() - began)
    if as_json:
        typer.echo(json.dumps([dict(vars(s), route=list(s.route)) for s in found], indent=2))
    table = Table("vehicle", "kind", "at node", "ETA min", "km", "spare kWh", title=f"to {place}")
    for s in found:
        table.add_row(
            s.vehicle_id,
            s.kind,
            s.node,
            f"{s.eta_min:.1f}",
            f"{s.distance_km:.2f}",
            f"{s.spare_kwh:.3f}",
        )
    stderr.print(table)
    stderr.print(f"{len(found)} vehicle(s); query {latency_ms:.1f} ms")


@mobility_app.command("v2g-offers")
def mobility_v2g_offers(
    mobility_dir: Annotated[Path, typer.Argument(help="Mobility folder with parking.csv.")],
    scenario: Annotated[Path, typer.Option(help="Scenario folder whose order book to join.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New scenario folder (atomic).")],
) -> None:
    """Offer parked bidirectional EVs' discharge as sell orders in a scenario's order book."""
    from gridmatch.mobility.v2g import write_v2g_scenario

    written = write_v2g_scenario(mobility_dir, scenario, out)
    kwh = sum(o.quantity_kwh for o in written.offers)
    vehicles = len({o.vehicle_id for o in written.offers})
    stderr.print(
        f"{len(written.offers)} V2G sell orders ({kwh:.3f} kWh) of {vehicles} vehicles added to "
        f"{written.n_original_orders} orders; clear with: gridmatch clear "
        f"{printable(str(out))} -o RESULT"
    )


@mobility_app.command("v2g-credit")
def mobility_v2g_credit(
    result_dir: Annotated[Path, typer.Argument(help="Result folder of `gridmatch clear`.")],
    offers: Annotated[
        Path | None,
        typer.Option(help="v2g_offers.csv (default: the one in the cleared scenario folder)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the table as CSV here.")
    ] = None,
) -> None:
    """Report what each V2G vehicle sold and is credited in a cleared market."""
    from gridmatch.errors import UsageError
    from gridmatch.mobility.v2g import v2g_credits
    from gridmatch.results_io.atomic import write_file_atomically
    from gridmatch.results_io.folder import read_manifest
    from gridmatch.results_io.layout import TRADES_FILE
    from gridmatch.results_io.mobility import V2G_OFFERS_FILE, claim_credit_file, v2g_credit_csv

    if not (result_dir / TRADES_FILE).is_file():
        # A dispatch's folder (or any other) has no trades: say what the command reads.
        raise UsageError(
            f"{result_dir}: no {TRADES_FILE}; v2g-credit reads a result folder of "
            "`gridmatch clear` run on the folder `gridmatch mobility v2g-offers` wrote"
        )
    if offers is None:
        manifest = read_manifest(result_dir)
        if manifest is None:
            raise UsageError(f"{result_dir}: no manifest.json; give --offers")
        offers = Path(manifest.scenario_dir) / V2G_OFFERS_FILE
    rows = v2g_credits(result_dir, offers)
    table = Table("vehicle", "owner", "offered kWh", "sold kWh", "trades", "credit EUR")
    for r in rows:
        table.add_row(
            r.vehicle_id,
            r.owner_id,
            f"{r.offered_kwh:.3f}",
            f"{r.sold_kwh:.3f}",
            str(r.n_trades),
            f"{r.credit_eur:.6f}",
        )
    stderr.print(table)
    if out is not None:
        claim_credit_file(out)
        write_file_atomically(out, v2g_credit_csv(rows))
        typer.echo(str(out))


def _on_sigterm(signum: int, frame: object) -> None:
    """Unwind the command on SIGTERM as on Ctrl-C (in this process; a worker just ends)."""
    if os.getpid() != _MAIN_PID:
        # A forked worker inherited the handler: end it as SIGTERM would have.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated


_MAIN_PID = os.getpid()  # forked workers (der validation, batch) have other pids


def main() -> None:
    """Entry point of the ``gridmatch`` console script."""
    # Python's default SIGTERM ends the process on the spot: an embedded anvil would
    # outlive it, a staging folder stay behind. Raised as an exception, it unwinds.
    signal.signal(signal.SIGTERM, _on_sigterm)
    app()


if __name__ == "__main__":
    main()
