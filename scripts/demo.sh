#!/usr/bin/env bash
# Install gridmatch into .venv and clear the bundled CIGRE LV day into results/cigre-lv-day.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
.venv/bin/gridmatch clear scenarios/cigre-lv-day --out results/cigre-lv-day
