"""EoSMonitor in a JAX training loop against the CLI's run of the same
problem on the same inputs (fig4's linreg_bn, Section 5)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import eosflow
from conftest import run_cli

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import eosflow.jax  # noqa: E402

STEPS = 2000  # fig4 enters EoS at step ~3000: the comparison is before it
EVERY = 100


def linreg_bn_loss(x, y):
    """Eq. (52)'s BN-linear regression, written independently in JAX:
    L(w) = σ_y²·mean((u − q)²), u = C·X·w / s, s = ‖C·X·w‖/√n."""
    xc = x - x.mean(axis=0)
    q = (y - y.mean()) / y.std()
    sig2 = y.var()

    def loss(w):
        a = xc @ w
        u = a / jnp.sqrt(jnp.mean(a**2))
        return sig2 * jnp.mean((u - q) ** 2)

    return loss


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("cli") / "fig4"
    run_cli(cli, "reproduce", "fig4", "--steps", str(STEPS), "--out", str(out), "--set", f"sharpness.every={EVERY}",
            "--set", "output.figures=false", "--set", "flow.lockstep=false")
    return eosflow.load_run(out)


def monitored_loop(run, out, **kw):
    x, y = np.load(run.dir / "data/x.npy"), np.load(run.dir / "data/y.npy")
    w = np.load(run.dir / "data/w0.npy")
    lr, wd = run.config["optimizer"]["lr"], run.config["optimizer"]["wd"]
    loss = linreg_bn_loss(jnp.asarray(x), jnp.asarray(y))
    f = eosflow.jax.loss_and_grad(loss)
    hvp = eosflow.jax.hvp(loss)
    with eosflow.EoSMonitor(lr, wd, hvp, w.size, out, every=EVERY, tol=1e-10, source="jax", **kw) as mon:
        for _ in range(STEPS + 1):
            l, g = f(w)
            mon.observe(w, l, g)
            w = (1 - lr * wd) * w - lr * g
    return mon.close()


def test_jax_loop_with_the_monitor_agrees_with_the_cli(cli_run, tmp_path):
    ext = monitored_loop(cli_run, tmp_path / "jax")
    a, b = cli_run.metrics, ext.metrics
    assert np.array_equal(a["step"], b["step"])
    # Loss: 1e-9 relative plus the rounding bound of the numpy cross-check
    # (crosscheck/linreg_bn.py): each residual carries ~4·d·ε absolute error.
    d = np.load(cli_run.dir / "data/x.npy").shape[1]
    sig2 = np.load(cli_run.dir / "data/y.npy").var()
    delta = 4 * d * np.finfo(float).eps
    bound = 1e-9 * np.abs(a["loss"]) + sig2 * (2 * np.sqrt(np.abs(a["loss"]) / sig2) * delta + delta**2)
    assert np.all(np.abs(a["loss"] - b["loss"]) <= bound)
    for col in ("w_norm", "eff_lr", "two_over_eff_lr"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-9, err_msg=col)
    # ‖∇L(θ)‖ falls to the rounding floor (~1e-16) once the loss is fitted:
    # each of its terms is of the size of the first gradient and computed
    # to ~d·ε relative, so an absolute 100·d·ε·‖∇L(θ_0)‖ on top of 1e-9.
    floor = 100 * d * np.finfo(float).eps * a["grad_norm"][0]
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-9, atol=floor)
    sa, sb = cli_run.sharpness, ext.sharpness
    assert np.array_equal(sa["step"], sb["step"]) and len(sa["step"]) == STEPS // EVERY + 1
    rel = np.abs(sa["sharpness"] - sb["sharpness"]) / np.abs(sa["sharpness"])
    assert rel.max() <= 1e-8, rel.max()
    fitted = a["loss"] > 1e-16 * sig2  # where the loss is far above its rounding floor
    print(f"\nmonitor vs CLI: loss max rel {np.max(np.abs(a['loss'] - b['loss'])[fitted] / a['loss'][fitted]):.2e} "
          f"(diff/bound max {np.max(np.abs(a['loss'] - b['loss']) / bound):.2e}), "
          f"sharpness max rel {rel.max():.2e}, 2/eta max rel "
          f"{np.max(np.abs(a['two_over_eff_lr'] - b['two_over_eff_lr']) / a['two_over_eff_lr']):.2e}")
    assert list(a["regime"]) == list(b["regime"])
    assert ext.config["problem"]["kind"] == "external"
    assert ext.summary["status"] == "completed" and ext.summary["last_step"] == STEPS
    assert ext.summary["eos_entry_step"] == cli_run.summary["eos_entry_step"]
    np.testing.assert_allclose(ext.summary["max_sharpness"], cli_run.summary["max_sharpness"], rtol=1e-8)


def test_an_external_run_is_plotted_by_the_cli_and_refused_by_run(cli_run, tmp_path, cli):
    ext = monitored_loop(cli_run, tmp_path / "jax", figures=False)
    out = run_cli(cli, "plot", str(ext.dir))
    assert "overview.png" in out.stdout
    r = subprocess.run([str(cli), "resume", str(ext.dir), "--steps", str(STEPS + 10)], capture_output=True, text=True)
    assert r.returncode == 1 and "external run" in r.stderr and "EoSMonitor" in r.stderr


def test_monitor_input_errors_and_divergence(tmp_path):
    h = np.diag([2.0, 1.0])
    mon = eosflow.EoSMonitor(0.1, 0.0, lambda w, v: h @ v, 2, tmp_path / "m", every=1, scale_invariant=False)
    rec = mon.observe(np.array([1.0, 1.0]), 1.5, np.array([2.0, 1.0]))
    assert abs(rec["sharpness"] - 2.0) < 1e-10 and rec["eff_lr"] == 0.1
    with pytest.raises(ValueError, match="length 3, the model has 2"):
        mon.observe(np.ones(3), 1.0, np.ones(3))
    with pytest.raises(ValueError, match="float64"):
        mon.observe(np.ones(2, dtype=np.float32), 1.0, np.ones(2))
    with pytest.raises(ValueError, match="steps must increase"):
        mon.observe(np.ones(2), 1.0, np.ones(2), step=0)
    with pytest.raises(FloatingPointError, match="loss is NaN"):
        mon.observe(np.ones(2), float("nan"), np.ones(2))
    run = mon.close()
    assert run.summary["status"] == "diverged"
    with pytest.raises(ValueError, match="hvp returned an array of shape"):
        m2 = eosflow.EoSMonitor(0.1, 0.0, lambda w, v: np.ones(3), 2, tmp_path / "m2", every=1)
        m2.observe(np.ones(2), 1.0, np.ones(2))
    with pytest.raises(ValueError, match="lr·wd < 1"):
        eosflow.EoSMonitor(1.0, 2.0, lambda w, v: v, 2, tmp_path / "m3")


def test_jax_helpers_refuse_32_bit_mode():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(RuntimeError, match="jax_enable_x64"):
            eosflow.jax.hvp(lambda w: w @ w)
        with pytest.raises(RuntimeError, match="jax_enable_x64"):
            eosflow.jax.loss_and_grad(lambda w: w @ w)
    finally:
        jax.config.update("jax_enable_x64", True)
