"""A local anvil chain whose state lives in a file, so later commands continue it."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gridmatch.settlement.artifacts import ToolchainError, tool

START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def local_chain(state_file: Path, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run anvil on 127.0.0.1, loading ``state_file`` if it exists and saving it on exit.

    Yields the RPC URL. Nothing is impersonated: every transaction is signed by a key of
    the deployment's keystore, as on any other node; EIP-7825's cap of 2^24 gas per
    transaction is enforced. ``extra_args`` go to anvil as they are.
    """
    port = _free_port()
    command = [
        str(tool("anvil")),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--silent",
        "--enable-tx-gas-limit",
        "--dump-state",
        str(state_file),
        *extra_args,
    ]
    if state_file.exists():
        command += ["--load-state", str(state_file)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        # SIGTERM lets anvil write its state; kill only if it hangs.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    began = time.monotonic()
    while time.monotonic() - began < START_TIMEOUT_S:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise ToolchainError(f"anvil exited at start: {stderr.strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise ToolchainError("anvil did not start within 10 s")
