"""Distribution grids: loading pandapower networks and reading their topology."""
