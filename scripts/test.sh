#!/usr/bin/env bash
# Every test, in one command (the README's): the Rust workspace, then the
# Python package built and installed into a virtual environment (so it works
# where the system Python refuses `pip install`) and its pytest suite.
#   EOSFLOW_VENV  the virtual environment (default .venv, created if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust: cargo test --release --workspace"
cargo test --release --workspace

echo "== Python: pip install ./python[test] into ${EOSFLOW_VENV:-.venv}, then pytest"
venv="${EOSFLOW_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./python[test]"
EOSFLOW_BIN="$PWD/target/release/eosflow" "$venv/bin/python" -m pytest python/tests
