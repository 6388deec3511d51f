"""Prepaid accounts: the meter/server loop of a prepaid utility, simulated (issue #18).

A meter with a cutoff switch receives a usage limit from a server, measures what it
supplies and reports it at configurable intervals; the server bills the reports against
the account's balance, sends a further limit computed from the balance, and a cutoff
command when balance and emergency credit are exhausted (unless in friendly-credit
hours); a top-up above the clearance threshold reconnects. Limits travel as OpenPAYGO
tokens that the meter verifies (:mod:`~gridmatch.prepaid.tokens`).

Modules: ``tokens`` (OpenPAYGO, keys), ``meter`` (registers, switch, limit),
``account`` (billing and decisions), ``simulation`` (the loop, one meter at a time),
``run`` (``gridmatch prepaid``: read, simulate, write), ``timeline`` (per-meter timeline
data for plots), ``example`` (the bundled example's generator).

State fields are named after DLMS/COSEM's Account (class 111), Credit (class 112) and
Disconnect control (class 70) objects. That is naming, so that a metering engineer
recognises them; this package is not a COSEM implementation and speaks no DLMS.
"""

from gridmatch.prepaid.run import PrepaidRun, run_prepaid

__all__ = ["PrepaidRun", "run_prepaid"]
