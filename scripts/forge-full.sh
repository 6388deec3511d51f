#!/usr/bin/env bash
# The contracts' full test campaign (foundry.toml's default profile: fuzz 10,000 runs,
# invariants 256 runs x 100 calls). CI runs the lighter `ci` profile (scripts/test.sh);
# run this before changing a contract. About 20-25 minutes on 2 cores (2026-12-01: the
# certificate and battery-rewards invariants at 10,000 runs take most of it).
set -euo pipefail
cd "$(dirname "$0")/../contracts"
[ -d node_modules ] || npm ci --silent --no-audit --no-fund
# The native binary: npm's wrapper in node_modules/.bin always exits 0.
PATH="$PWD/node_modules/@foundry-rs/forge-linux-amd64/bin:$PATH"
time forge test "$@"
