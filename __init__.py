"""gridmatch: clearing engine for peer-to-peer energy trading.

The repository keeps the folders ``matching/``, ``grid_models/``, ``scenario_io/``,
``results_io/`` and ``cli.py``; they install as ``gridmatch.matching`` and so on.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gridmatch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
