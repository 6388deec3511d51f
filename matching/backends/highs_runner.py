"""Hand knapsack arrays to HiGHS through highspy and read back a checked answer.

Shared by the direct MILP backend, the LP relaxation and the tie-break's second stage:
they differ only in whether the integrality of the columns is passed on. highspy is
imported when a model is solved, never when this module is, so the backend registry
(and every heuristic) works where highspy is missing.

HiGHS looks at its clock only between phases; on a 300,000-binary slot its root LP ran
1.7 s without a check (no interrupt callback fires in it either), 50 % past a 2 s
limit. Models that large run in a forked child process that is killed at the deadline
(:func:`run_highs`); the caller then has no answer, as if HiGHS had found nothing in
time, and falls back to its start.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gridmatch.matching.knapsack_model import KnapsackArrays
from gridmatch.matching.solution import SolveOptions, SolverFailedError, TerminationCondition

if TYPE_CHECKING:
    import multiprocessing.connection

    import highspy

# Measured on a 1,000-order slot (213,000 binaries, benchmarks/bench_clearing.py):
# with presolve on, HiGHS 1.x spent 30 s in presolve under a 9 s time limit, without
# one LP iteration; with it off it kept the limit and found a better solution. Slot
# models have no redundancy presolve could remove (only compatible pairs exist).
#
# Feasibility jump, HiGHS's first primal heuristic, does not look at the clock: on a
# 300,000-binary slot it ran 1.6 s past a 1 s limit. The backends on highspy start
# from a feasible allocation (seller-DP or better), which is what it would look for;
# pyomo-highs, which passes no start, runs without it too, to keep its limit.
TUNED_MIP_OPTIONS: dict[str, str | bool | int | float] = {
    "presolve": "off",
    "mip_heuristic_run_feasibility_jump": False,
}
# Models with at least this many nonzeros run in a child process killed at the deadline
# (a fork of a 500 MB process costs ~20 ms; HiGHS ran 25-45 % past its limit on a model
# of 180,000 nonzeros, benchmarks/bench_knapsack.py --only-limits).
GUARD_NONZEROS = 50_000
# HiGHS in the child gets this share of the limit, so that it usually stops by itself
# with its incumbent (it overran a 0.85 s limit by 0.2-0.45 s on 90,000 binaries); the
# child is killed at the limit plus a grace (a share of the limit, and at least the time
# the answer takes to come back through the pipe).
GUARD_INNER_SHARE = 0.7
GUARD_GRACE_SHARE = 0.01
GUARD_GRACE_MIN_S = 0.05


@dataclass(frozen=True)
class HighsAnswer:
    """What one HiGHS run gave."""

    col_values: npt.NDArray[np.float64] | None
    bound_eur: float | None
    termination: TerminationCondition
    proven_optimal: bool
    runtime_s: float
    # Row duals of an LP solved to optimality (HiGHS's sign convention); else None.
    row_duals: npt.NDArray[np.float64] | None = None


@cache
def _silence_banner() -> None:
    """Create the process's first Highs object with stdout closed.

    HiGHS prints its banner from C++ on the first construction, before any option can
    be set; it would corrupt ``gridmatch clear --json`` on stdout.
    """
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def new_highs() -> highspy.Highs:
    """Return a Highs object that prints nothing."""
    import highspy

    _silence_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    # HiGHS's thread scheduler is global and fixed by the first run of a process; a
    # later run asking for another count fails with an error. One thread, as every
    # slot solve uses (run_highs sets the user's count for the one-model baseline).
    h.setOptionValue("threads", 1)
    return h


def highs_version() -> str:
    """Version string of the HiGHS library behind highspy."""
    h = new_highs()
    return f"{h.versionMajor()}.{h.versionMinor()}.{h.versionPatch()}"


def run_highs(
    arrays: KnapsackArrays,
    options: SolveOptions,
    time_limit_s: float,
    *,
    relax: bool,
    start_values: npt.NDArray[np.float64] | None = None,
    exact: bool = False,
) -> HighsAnswer:
    """Solve the arrays as a MILP (or, with ``relax``, as its LP relaxation).

    Parameters
    ----------
    start_values
        A feasible column vector handed to HiGHS as incumbent, so the search starts
        from a known solution instead of from nothing.
    exact
        Search to a zero gap, relative and absolute (``options.mip_gap`` is ignored).
    """
    if arrays.n_cols == 0:
        return HighsAnswer(np.zeros(0), 0.0, TerminationCondition.CONVERGED, True, 0.0, np.zeros(0))
    call = _HighsCall(arrays, options, time_limit_s, relax, start_values, exact)
    if arrays.matrix.nnz >= GUARD_NONZEROS and "fork" in multiprocessing.get_all_start_methods():
        return _run_killable(call)
    return _run_here(call)


@dataclass(frozen=True)
class _HighsCall:
    """One HiGHS run's inputs (see :func:`run_highs`)."""

    arrays: KnapsackArrays
    options: SolveOptions
    time_limit_s: float
    relax: bool
    start_values: npt.NDArray[np.float64] | None
    exact: bool


def _run_killable(call: _HighsCall) -> HighsAnswer:
    """Run HiGHS in a forked child; kill it if it is not back by the deadline."""
    began = time.perf_counter()
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    inner = replace(call, time_limit_s=GUARD_INNER_SHARE * call.time_limit_s)
    child = context.Process(target=_child_main, args=(sender, inner), daemon=True)
    child.start()
    sender.close()
    grace_s = max(GUARD_GRACE_SHARE * call.time_limit_s, GUARD_GRACE_MIN_S)
    try:
        outcome = receiver.recv() if receiver.poll(call.time_limit_s + grace_s) else None
    except EOFError:  # the child died without an answer
        outcome = SolverFailedError("HiGHS's process ended without an answer")
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()
    if isinstance(outcome, BaseException):
        raise SolverFailedError(f"HiGHS failed in its process: {outcome}") from outcome
    if outcome is None:
        return HighsAnswer(
            None, None, TerminationCondition.TIME_LIMIT, False, time.perf_counter() - began
        )
    answer: HighsAnswer = outcome
    return answer


def _child_main(sender: multiprocessing.connection.Connection, call: _HighsCall) -> None:
    try:
        answer: HighsAnswer | BaseException = _run_here(call)
    except Exception as exc:  # handed to the parent, which raises it
        answer = exc
    sender.send(answer)
    sender.close()


def _run_here(call: _HighsCall) -> HighsAnswer:
    """Run HiGHS in this process."""
    import highspy

    arrays, options, start_values, exact = call.arrays, call.options, call.start_values, call.exact
    start = time.perf_counter()
    h = new_highs()
    h.setOptionValue("time_limit", float(call.time_limit_s))
    h.setOptionValue("mip_rel_gap", 0.0 if exact else float(options.mip_gap))
    if exact:
        h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("threads", int(options.threads))
    h.setOptionValue("random_seed", int(options.seed))
    for key, value in TUNED_MIP_OPTIONS.items():
        h.setOptionValue(key, value)

    lp = highspy.HighsLp()
    lp.num_col_ = arrays.n_cols
    lp.num_row_ = arrays.n_rows
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = arrays.col_cost
    lp.col_lower_ = arrays.col_lower
    lp.col_upper_ = arrays.col_upper
    lp.row_lower_ = arrays.row_lower
    lp.row_upper_ = arrays.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = arrays.matrix.indptr
    lp.a_matrix_.index_ = arrays.matrix.indices
    lp.a_matrix_.value_ = arrays.matrix.data
    is_mip = not call.relax and bool(arrays.col_integer.any())
    if is_mip:
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous
            for flag in arrays.col_integer
        ]
    h.passModel(lp)
    if is_mip and start_values is not None:
        incumbent = highspy.HighsSolution()
        incumbent.col_value = list(start_values)
        incumbent.value_valid = True
        h.setSolution(incumbent)
    h.run()

    status = h.getModelStatus()
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    values = np.asarray(h.getSolution().col_value, dtype=float) if has_solution else None
    if status == highspy.HighsModelStatus.kOptimal:
        termination = TerminationCondition.CONVERGED
    elif status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt):
        termination = TerminationCondition.TIME_LIMIT
    else:
        termination = TerminationCondition.ERROR
    if is_mip:
        bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
    else:
        # An LP solved to optimality is its own bound.
        bound = (
            float(info.objective_function_value)
            if status == highspy.HighsModelStatus.kOptimal
            else None
        )
    duals = None
    if not is_mip and status == highspy.HighsModelStatus.kOptimal:
        duals = np.asarray(h.getSolution().row_dual, dtype=float)
    return HighsAnswer(
        col_values=values,
        bound_eur=bound,
        termination=termination,
        proven_optimal=termination is TerminationCondition.CONVERGED,
        runtime_s=time.perf_counter() - start,
        row_duals=duals,
    )
