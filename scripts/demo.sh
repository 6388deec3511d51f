#!/usr/bin/env bash
# Install gridmatch into .venv, clear the bundled CIGRE LV day into results/cigre-lv-day,
# then settle it on a local anvil chain: signed orders, three validator processes and
# signed meter readings (the chain toolchain comes from npm into contracts/node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
out=results/cigre-lv-day
# Each demo run makes a fresh deployment with fresh demo keys: the previous one goes.
rm -rf "$out/settlement"
.venv/bin/gridmatch clear scenarios/cigre-lv-day --out "$out"
(cd contracts && npm ci --silent --no-audit --no-fund)
.venv/bin/gridmatch settle "$out" --validators 3
.venv/bin/gridmatch meters simulate "$out" --out "$out/settlement/meters.csv"
.venv/bin/gridmatch meters sign "$out" "$out/settlement/meters.csv" --out "$out/settlement/readings.json"
.venv/bin/gridmatch attest "$out" "$out/settlement/readings.json"
