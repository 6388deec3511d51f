"""Energy on wheels: EVs, mobile storage and fuel trucks sent where energy is needed (#20).

Vehicles are knapsacks of the energy they can spare (what they hold, less their reserve
and the drive there); requests and point sessions are the items; the road graph decides
who can get where in time. ``gridmatch mobility DIR`` dispatches them as an exact MILP
(HiGHS or CP-SAT), in normal mode or in emergency mode (critical requests first,
lexicographically), checks what points inject into the grid with pandapower, and writes
per-party files and a GeoJSON map; ``mobility v2g-offers`` puts parked bidirectional EVs
into a scenario's order book as sell orders.

Modules: ``roads`` (road graph, shortest-path trees), ``pairs`` (who can serve whom),
``model`` (the MILP as arrays), ``heuristic`` (a fast feasible start), ``pricing``
(column generation and the Lagrangian bound of large instances), ``solve`` (one stage on
HiGHS or CP-SAT, ``cpsat_solver``), ``dispatch`` (the modes), ``grid_check`` (the AC
loop), ``plan`` (the output rows), ``run`` (read, solve, write), ``nearest`` (the
nearest-supply query), ``v2g`` (offers and credits), ``example`` (generated towns).
Input through ``scenario_io`` (``mobility_input.py``, ``mobility_schema.py``), output
through ``results_io/mobility.py``; ``report/mobility.py`` draws the map.
"""
