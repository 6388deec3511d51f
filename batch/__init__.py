"""Batches of runs (issue #5): every scenario under every formulation, one table, comparisons.

``plan`` lays out the run matrix, ``runner`` runs (or skips) one cell, ``executors``
run cells serially, on a local process pool or on Dask, ``progress`` draws the bar,
``table`` writes the long table, ``orchestrate`` ties them into :func:`run_batch`, and
``compare`` summarises and plots a table. Nothing is imported here, so that
``gridmatch compare`` does not pay for the solvers and pandapower.
"""
