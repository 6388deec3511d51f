#!/usr/bin/env bash
# Install everything into .venv and run the checks and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,lint]"
.venv/bin/ruff check . || true
.venv/bin/mypy || true
.venv/bin/python -m pytest
