"""Runs from Python write what the CLI writes, read back exactly, and stop
cleanly on Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import eosflow
from conftest import run_cli

SAME_FILES = ["metrics.csv", "sharpness.csv", "w_final.npy", "config.toml"]


def same_bytes(a: Path, b: Path, names=SAME_FILES):
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), f"{n} differs between {a} and {b}"


def summary_less_timing(d: Path) -> dict:
    s = json.loads((d / "summary.json").read_text())
    s.pop("timing")
    return s


@pytest.mark.parametrize("preset, steps", [("toy3d", None), ("fig4", 1500), ("fig1", 3000)])
def test_reproduce_from_python_equals_the_cli_byte_for_byte(tmp_path, cli, preset, steps):
    args = ["--steps", str(steps)] if steps else []
    run_cli(cli, "reproduce", preset, "--out", str(tmp_path / "cli"), "--set", "output.figures=false", *args)
    run = eosflow.reproduce(preset, tmp_path / "py", steps=steps, set={"output.figures": False}, progress=False)
    assert run.status == "completed"
    same_bytes(tmp_path / "cli", tmp_path / "py")
    cli_s, py_s = summary_less_timing(tmp_path / "cli"), summary_less_timing(tmp_path / "py")
    assert cli_s == py_s


def test_a_dict_config_runs_as_its_toml_file(tmp_path, cli):
    cfg = {
        "name": "toy",
        "problem": {"kind": "toy3d", "seed": 3},
        "optimizer": {"kind": "gd_wd", "lr": 0.5, "wd": 0.08},
        "run": {"steps": 400, "log_every": 2},
        "sharpness": {"every": 20},
        "output": {"figures": False},
    }
    toml_text = (
        'name = "toy"\n[problem]\nkind = "toy3d"\nseed = 3\n[optimizer]\nkind = "gd_wd"\nlr = 0.5\nwd = 0.08\n'
        "[run]\nsteps = 400\nlog_every = 2\n[sharpness]\nevery = 20\n[output]\nfigures = false\n"
    )
    (tmp_path / "c.toml").write_text(toml_text)
    run_cli(cli, "run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "cli"))
    r1 = eosflow.run(cfg, tmp_path / "dict", progress=False)
    r2 = eosflow.run(tmp_path / "c.toml", tmp_path / "file", progress=False)
    same_bytes(tmp_path / "cli", r1.dir)
    same_bytes(tmp_path / "cli", r2.dir)
    assert eosflow.config(cfg)["sharpness"]["every"] == 20


def test_load_run_round_trips_every_column(tmp_path):
    run = eosflow.reproduce("fig4", tmp_path / "r", steps=800, set={"output.figures": False}, progress=False)
    back = eosflow.load_run(run.dir)
    with open(back.dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    m = back.metrics
    assert m["step"].dtype == np.int64 and m["step"].tolist() == [int(r["step"]) for r in rows]
    for col in ("loss", "grad_norm", "w_norm", "eff_lr", "two_over_eff_lr", "sharpness"):
        want = np.array([float(r[col]) if r[col] else np.nan for r in rows])
        np.testing.assert_array_equal(m[col], want)  # exact: the same decimal strings
    assert set(m["regime"]) <= {"", "stable", "eos_above", "eos_below", "unstable"}
    assert back.sharpness["converged"].dtype == bool
    np.testing.assert_array_equal(back.w_final, np.load(back.dir / "w_final.npy"))
    assert back.config["optimizer"]["lr"] == 0.5
    assert back.summary["last_step"] == 800
    df = back.to_pandas()
    assert len(df) == len(rows) and list(df.columns) == list(m)


def test_progress_callback_and_its_errors(tmp_path):
    seen = []
    eosflow.reproduce("toy3d", tmp_path / "a", progress=lambda s, n, info: seen.append((s, n)))
    assert seen[-1] == (3000, 3000)

    def bad(step, total, info):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        eosflow.reproduce("fig1", tmp_path / "b", progress=bad)
    # the run stopped at once, with its directory written
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["status"] == "interrupted"


def test_keyboard_interrupt_leaves_a_resumable_run(tmp_path):
    # fig1's 50,000 steps take ~2 s here; SIGINT arrives 0.2 s in, while the
    # run is in Rust with the GIL released, and is seen by check_signals.
    steps, opts = 50_000, {"output.figures": False}
    full = eosflow.reproduce("fig1", tmp_path / "full", steps=steps, set=opts, progress=False)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt, match="resumable"):
            eosflow.reproduce("fig1", tmp_path / "cut", steps=steps, set=opts, progress=False)
    finally:
        timer.cancel()
    cut = eosflow.load_run(tmp_path / "cut")
    assert cut.status == "interrupted"
    assert 0 < cut.summary["last_step"] < steps
    done = eosflow.resume(tmp_path / "cut", progress=False)
    assert done.status == "completed"
    same_bytes(full.dir, done.dir, ["metrics.csv", "sharpness.csv", "w_final.npy"])


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(eosflow.EosflowError, match="unknown preset `fig99`: did you mean"):
        eosflow.reproduce("fig99")
    with pytest.raises(eosflow.EosflowError, match="runs 4 configs"):
        eosflow.reproduce("fig6")
    with pytest.raises(eosflow.EosflowError, match="lr"):
        eosflow.run({"problem": {"kind": "toy3d"}, "optimizer": {"kind": "gd_wd", "lr": -1.0, "wd": 0.0},
                     "run": {"steps": 10}}, tmp_path / "x")
    with pytest.raises(ValueError, match="run.steps is None"):
        eosflow.run({"problem": {"kind": "toy3d"}, "run": {"steps": None}})
    with pytest.raises(FileNotFoundError, match="no config.toml"):
        eosflow.load_run(tmp_path)
    assert any(p["name"] == "fig1" for p in eosflow.presets())
