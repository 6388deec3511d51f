"""The ``gridmatch`` command.

Exit codes: 0 success; 2 invalid input or usage (nothing written); 3 solver failure.
Results go to files, progress and the readable summary to stderr, and ``--json``
prints the summary to stdout for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

EXIT_INPUT = 2
EXIT_SOLVER = 3

app = typer.Typer(
    help="Clear peer-to-peer energy orders: multiple-knapsack matching on HiGHS and OR-Tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stderr = Console(stderr=True)


@app.command()
def clear(
    scenario_dir: Annotated[Path, typer.Argument(help="Scenario folder holding scenario.yaml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Result folder (replaced atomically).")],
    formulation: Annotated[
        str | None, typer.Option(help="Formulation name; see `gridmatch formulations`.")
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", min=0.01, help="Seconds for the whole clearing.")
    ] = None,
    mip_gap: Annotated[
        float | None, typer.Option("--mip-gap", min=0.0, help="Relative optimality gap.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Slots solved at once, one process each.")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Solver random seed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout.")] = False,
) -> None:
    """Clear a scenario folder and write trades.csv, orders.csv, summary.json, manifest.json."""
    from gridmatch.matching.backends.registry import (
        SolverUnavailableError,
        UnknownFormulationError,
    )
    from gridmatch.matching.clearing import InconsistentAllocationError
    from gridmatch.pipeline import RunSettings, clear_scenario
    from gridmatch.results_io.atomic import OutputFolderError
    from gridmatch.scenario_io.errors import InputError

    settings = RunSettings(formulation, time_limit, mip_gap, threads, seed)
    try:
        with stderr.status(f"clearing {scenario_dir}"):
            run = clear_scenario(scenario_dir, out, settings)
    except (InputError, OutputFolderError, UnknownFormulationError, ValueError) as exc:
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INPUT) from None
    except (SolverUnavailableError, InconsistentAllocationError, RuntimeError) as exc:
        stderr.print(f"[bold red]solver failure:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_SOLVER) from None
    _print_summary(run.summary, out)
    if as_json:
        typer.echo(json.dumps(run.summary, indent=2))


@app.command()
def formulations() -> None:
    """List the registered formulations and whether their solvers are installed."""
    from gridmatch.matching.backends.registry import BACKENDS, DEFAULT_FORMULATION

    table = Table("name", "kind", "solver", "available", "description")
    for name, backend in BACKENDS.items():
        label = f"{name} (default)" if name == DEFAULT_FORMULATION else name
        available = "yes" if backend.is_available() else f"no: {backend.install_hint}"
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


def main() -> None:
    """Entry point of the ``gridmatch`` console script."""
    app()


if __name__ == "__main__":
    main()
