"""Load the pandapower network a scenario names, treating user files as untrusted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandapower as pp
import pandapower.networks as pn

from gridmatch.errors import InputError
from gridmatch.grid_models.networks import build_pandapower_network
from gridmatch.scenario_io.schema import NetworkSpec

# pandapower's JSON loader imports whatever module a file names in "_module":
# only these packages may be named.
TRUSTED_MODULE_ROOTS = frozenset({"pandapower", "pandas", "numpy"})


def load_network(spec: NetworkSpec, scenario_dir: Path, scenario_file: Path) -> pp.pandapowerNet:
    """Return the pandapower network of a scenario.

    Parameters
    ----------
    spec
        The validated ``network`` section.
    scenario_dir
        Folder a ``file`` network must lie inside.
    scenario_file
        ``scenario.yaml``, named in errors about the section.

    Raises
    ------
    InputError
        If the network cannot be had or is not acceptable.
    """
    if spec.pandapower is not None:
        net = _from_pandapower_networks(spec.pandapower, scenario_file)
    elif spec.file is not None:
        net = _from_json_file(spec.file, scenario_dir, scenario_file)
    else:
        assert spec.simbench is not None  # the schema guarantees exactly one source
        net = _from_simbench(spec.simbench, scenario_file)
    if len(net.ext_grid) == 0 or not net.ext_grid.in_service.any():
        raise InputError(
            scenario_file, "the network has no in-service external grid", field="network"
        )
    return net


def _from_pandapower_networks(name: str, scenario_file: Path) -> pp.pandapowerNet:
    factory = getattr(pn, name, None) if not name.startswith("_") else None
    if not callable(factory):
        raise InputError(
            scenario_file,
            f"'{name}' is not a function of pandapower.networks "
            "(e.g. create_cigre_network_lv, case33bw, create_kerber_vorstadtnetz_kabel_1)",
            field="network.pandapower",
        )
    try:
        net = build_pandapower_network(name)
    except Exception as exc:  # a factory may need arguments, files or packages we lack
        raise InputError(
            scenario_file,
            f"pandapower.networks.{name}() failed: {exc}",
            field="network.pandapower",
        ) from None
    if not isinstance(net, pp.pandapowerNet):
        raise InputError(
            scenario_file,
            f"pandapower.networks.{name} does not return a network",
            field="network.pandapower",
        )
    return net


def _from_json_file(relative: str, scenario_dir: Path, scenario_file: Path) -> pp.pandapowerNet:
    folder = scenario_dir.resolve()
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder):
        raise InputError(
            scenario_file, f"'{relative}' lies outside the scenario folder", field="network.file"
        )
    if not path.is_file():
        raise InputError(
            scenario_file, f"network file '{relative}' not found", field="network.file"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not valid JSON: {exc}") from None
    for module in _named_modules(document):
        if module.split(".")[0] not in TRUSTED_MODULE_ROOTS:
            raise InputError(
                path,
                f"refusing to load: the file names Python module '{module}'; only "
                f"{', '.join(sorted(TRUSTED_MODULE_ROOTS))} are allowed",
            )
    try:
        net = pp.from_json(str(path))
    except Exception as exc:  # pandapower raises many types for malformed files
        raise InputError(path, f"not a pandapower network: {exc}") from None
    if not isinstance(net, pp.pandapowerNet):
        raise InputError(path, "not a pandapower network")
    return net


def _named_modules(node: Any) -> Iterator[str]:
    """Every ``_module`` value in a JSON document, including JSON nested in strings."""
    if isinstance(node, dict):
        module = node.get("_module")
        if module is not None:
            yield str(module)
        for value in node.values():
            yield from _named_modules(value)
    elif isinstance(node, list):
        for value in node:
            yield from _named_modules(value)
    elif isinstance(node, str) and node[:1] in "{[" and "_module" in node:
        try:
            inner = json.loads(node)
        except json.JSONDecodeError:
            return
        yield from _named_modules(inner)


def _from_simbench(code: str, scenario_file: Path) -> pp.pandapowerNet:
    try:
        import simbench
    except ImportError:
        raise InputError(
            scenario_file,
            "SimBench networks need the optional package: pip install simbench",
            field="network.simbench",
        ) from None
    try:
        return simbench.get_simbench_net(code)
    except Exception as exc:  # simbench reports unknown codes with assorted errors
        raise InputError(
            scenario_file, f"unknown SimBench code '{code}': {exc}", field="network.simbench"
        ) from None
