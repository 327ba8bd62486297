"""The README's Python examples run as they are (so they cannot rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import eosflow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args):
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, check=True)


def test_fig1_example_reproduces_the_paper_and_draws_it(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("fig1.py", "--out", str(tmp_path / "run"), "--figure", str(tmp_path / "fig1.png"))
    assert (tmp_path / "fig1.png").stat().st_size > 10_000
    run = eosflow.load_run(tmp_path / "run")
    # The README's numbers: sharpness 45.9 → 10.1, test loss 0.0021, σ2/σ3 = 87.
    assert run.summary["status"] == "completed" and run.summary["last_step"] == 50_000
    assert abs(run.summary["final_sharpness"] - 10.134) < 1e-3
    assert run.summary["problem"]["test_loss_final"] < 3e-3
    assert "figure:" in out.stdout


def test_monitor_example_shows_the_edge_of_stability_and_sharpness_reduction(tmp_path):
    pytest.importorskip("jax")
    pytest.importorskip("matplotlib")
    run_example("monitor_digits_jax.py", "--steps", "3000", "--out", str(tmp_path / "run"),
                "--figure", str(tmp_path / "m.png"))
    run = eosflow.load_run(tmp_path / "run")
    s = run.summary
    assert s["status"] == "completed" and s["last_step"] == 3000
    # It enters EoS (2/η̃ meets the sharpness) and then the sharpness falls
    # well below its value at the entry while 2/η̃ keeps it in check.
    assert s["eos_entry_step"] is not None
    assert s["final_sharpness"] < 0.5 * s["sharpness_at_eos_entry"]
    assert (run.dir / "figures" / "overview.png").exists()
    assert (tmp_path / "m.png").exists()
