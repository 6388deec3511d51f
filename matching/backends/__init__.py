"""Solver backends, one per file, registered by name in :mod:`.registry`."""
