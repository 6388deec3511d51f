"""pandapower networks the scenarios name: the built-in factories, made reproducible."""

from __future__ import annotations

import random

import numpy as np
import pandapower as pp
import pandapower.networks as pn

# Seed of the random draws some pandapower.networks factories make.
NETWORK_SEED = 0


def build_pandapower_network(name: str) -> pp.pandapowerNet:
    """Call ``pandapower.networks.<name>()`` with its random draws seeded.

    Some factories draw at random: the Kerber grids pick each line's cable type with
    Python's ``random`` (73 of 292 lines differ between two unseeded calls). Seeded,
    a scenario always meets the same network, and a rerun gives the same trades. The
    caller's random states are restored afterwards.
    """
    factory = getattr(pn, name)
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    random.seed(NETWORK_SEED)
    np.random.seed(NETWORK_SEED)
    try:
        net: pp.pandapowerNet = factory()
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return net
