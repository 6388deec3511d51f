"""DER commitment validation: a device's flexibility proven by its meter's own data (issue #19).

``gridmatch validate-commitments DIR`` reads a folder's meter data and commitments
(``scenario_io/der_input.py``), detects events in the net signal around each committed
window (``detection.py``: ruptures' change points, steps, ramps, pulses), fits the
device models of the event-model library (``models/default.yaml``, merged with the
folder's ``event_models.yaml`` by ``scenario_io/der_models.py``; ``signatures.py``),
gives each commitment a verdict with its evidence (``verdicts.py``) and writes the
output folder (``run.py`` through ``results_io/der_validation.py``). ``settlement.py``
turns validated deliveries into the meter CSV settlement reads; ``activations.py``
classifies every device run of a meter's day (the benchmark's detection);
``synthetic.py`` generates labelled households.
"""
