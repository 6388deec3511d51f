#!/usr/bin/env bash
# Install everything into .venv and run the checks and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The HTML report is tested in a real headless Chromium (Debian's package).
if ! command -v chromium > /dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium > /dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# Strict editable mode links the sources under build/ as the package `gridmatch`,
# which mypy (and any tool that does not run import hooks) can follow.
.venv/bin/python -m pip install --quiet -e ".[test,lint]" --config-settings editable_mode=strict
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Contracts: npm brings forge and solc-js (see contracts/README.md), then format
# check, unit, fuzz and invariant tests.
# Slither gets a venv of its own: it pins web3 < 8, which the settlement side outgrows.
python3 -m venv .venv-slither
.venv-slither/bin/python -m pip install --quiet "slither-analyzer==0.11.6" "crytic-compile==0.4.2"
(
    cd contracts
    npm ci --silent --no-audit --no-fund
    # The native binaries, not npm's wrappers in node_modules/.bin: those exit 0 even
    # when the binary fails, so a failing test or an unformatted file would pass.
    PATH="$PWD/node_modules/@foundry-rs/forge-linux-amd64/bin:$PATH"
    forge fmt --check
    # A clean build with build info for Slither (stale build info would be analysed too).
    forge clean
    forge build --build-info --quiet
    # Static analysis: any medium or high finding fails (timestamp checks are Low, by design).
    ../.venv-slither/bin/slither . --foundry-ignore-compile --filter-paths "node_modules|test/" \
        --fail-medium
    # The lighter campaign (fuzz 1,000 runs, invariants 64 x 50); scripts/forge-full.sh
    # runs the full one (10,000 runs, 256 x 100).
    FOUNDRY_PROFILE=ci forge test
)
.venv/bin/python -m pytest "$@"
# Benchmarks are not tests; a tiny run only proves the script still works.
.venv/bin/python benchmarks/bench_clearing.py --smoke > /dev/null
.venv/bin/python benchmarks/bench_knapsack.py --smoke --limit 3 > /dev/null
.venv/bin/python benchmarks/bench_security.py --smoke > /dev/null
.venv/bin/python benchmarks/bench_settlement.py --smoke > /dev/null
.venv/bin/python benchmarks/bench_tie_break.py --smoke > /dev/null
.venv/bin/python benchmarks/bench_der_validation.py --smoke > /dev/null
.venv/bin/python benchmarks/bench_mobility.py --smoke > /dev/null
