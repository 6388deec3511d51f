"""Load the pandapower network a scenario names, treating user files as untrusted."""

from __future__ import annotations

from pathlib import Path

import pandapower as pp
import pandapower.networks as pn

from gridmatch.errors import InputError
from gridmatch.grid_models.networks import build_pandapower_network
from gridmatch.scenario_io.network_json import read_network_json
from gridmatch.scenario_io.schema import NetworkSpec
from gridmatch.user_files import NETWORK_LIMIT_BYTES, read_text


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
    # Only the network factories defined in pandapower.networks, not what it imports.
    module = getattr(factory, "__module__", "") or ""
    if not callable(factory) or not module.startswith("pandapower.networks"):
        raise InputError(
            scenario_file,
            f"'{name}' is not a function of pandapower.networks "
            "(e.g. create_cigre_network_lv, case33bw, create_kerber_vorstadtnetz_kabel_1)",
            field="network.pandapower",
        )
    try:
        net = build_pandapower_network(name)
    # A factory may need arguments, files or packages we lack.
    except (TypeError, ValueError, KeyError, IndexError, OSError, ImportError) as exc:
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
    if not path.exists():
        raise InputError(
            scenario_file, f"network file '{relative}' not found", field="network.file"
        )
    text = read_text(path, NETWORK_LIMIT_BYTES, "network file")
    return read_network_json(path, text)


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
    # simbench reports unknown codes with assorted errors.
    except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
        raise InputError(
            scenario_file, f"unknown SimBench code '{code}': {exc}", field="network.simbench"
        ) from None
