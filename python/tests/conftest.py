"""Shared fixtures: the eosflow CLI binary of this checkout (built by the
README's test command before pytest runs; built here if missing)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `eosflow` binary: $EOSFLOW_BIN, else target/release/eosflow."""
    env = os.environ.get("EOSFLOW_BIN")
    path = Path(env) if env else ROOT / "target" / "release" / "eosflow"
    if not path.exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "eosflow-cli"], cwd=ROOT, check=True)
    return path


def run_cli(cli: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), *args], capture_output=True, text=True, check=True)
