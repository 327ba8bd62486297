"""The cost of eosflow.EoSMonitor in a JAX loop, beside the CLI's own run of
the same problem (fig4's linreg_bn, D = 40, on the CLI's exported data).

Prints, as medians of --repeats: the loop's step without the monitor
(JAX loss_and_grad + the update in numpy), the monitor's overhead per step
(observe on a step without sharpness: ‖w‖, η̃, 2/η̃, one metrics.csv row),
one warm-started sharpness evaluation through the monitor's path (Lanczos
in Rust, each HVP a Python call of a jitted JAX function) with its HVP count,
and `eosflow bench fig4`'s step and warm sharpness in the CLI.

    python bench/monitor.py [--bin target/release/eosflow] [--steps 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import eosflow  # noqa: E402
import eosflow.jax  # noqa: E402


def loss_fn(x, y):
    xc, q, sig2 = x - x.mean(0), (y - y.mean()) / y.std(), y.var()

    def loss(w):
        a = xc @ w
        return sig2 * jnp.mean((a / jnp.sqrt(jnp.mean(a**2)) - q) ** 2)

    return loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/eosflow")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    subprocess.run([args.bin, "reproduce", "fig4", "--steps", "1", "--out", str(tmp / "fig4"),
                    "--set", "output.figures=false"], check=True, capture_output=True)
    run = eosflow.load_run(tmp / "fig4")
    x, y, w0 = (np.load(run.dir / f"data/{n}.npy") for n in ("x", "y", "w0"))
    lr, wd = run.config["optimizer"]["lr"], run.config["optimizer"]["wd"]
    loss = loss_fn(jnp.asarray(x), jnp.asarray(y))
    lg, hvp = eosflow.jax.loss_and_grad(loss), eosflow.jax.hvp(loss)
    lg(w0), hvp(w0, w0)  # compile

    def loop(monitor):
        w = w0.copy()
        t = time.perf_counter()
        for _ in range(args.steps + 1):
            l, g = lg(w)
            if monitor is not None:
                monitor.observe(w, l, g)
            w = (1 - lr * wd) * w - lr * g
        return time.perf_counter() - t, w

    # The CLI's warm evaluation is 100 steps after the cold one; the same here.
    w_prev = w0.copy()
    for _ in range(args.steps - 100):
        w_prev = (1 - lr * wd) * w_prev - lr * lg(w_prev)[1]
    plain, with_mon, overhead, sharp_ms, sharp_hvps, hvp_us = [], [], [], [], [], []
    for r in range(args.repeats):  # A/B interleaved; the overhead is the median of paired differences
        a = loop(None)[0] / (args.steps + 1) * 1e6
        mon = eosflow.EoSMonitor(lr, wd, hvp, w0.size, tmp / f"m{r}", every=0, figures=False)
        dt, w = loop(mon)
        mon.close()
        b = dt / (args.steps + 1) * 1e6
        plain.append(a)
        with_mon.append(b)
        overhead.append(b - a)
        s0 = eosflow.spherical_sharpness(hvp, w_prev)
        t = time.perf_counter()
        s = eosflow.spherical_sharpness(hvp, w, v0=s0.eigenvector)
        sharp_ms.append((time.perf_counter() - t) * 1e3)
        sharp_hvps.append(s.hvps)
        v = np.random.default_rng(r).standard_normal(w.size)
        t = time.perf_counter()
        for _ in range(200):
            hvp(w, v)
        hvp_us.append((time.perf_counter() - t) / 200 * 1e6)
    cli = json.loads(subprocess.run([args.bin, "bench", "fig4", "--warmup", str(args.steps), "--timed", "2000",
                                     "--evals", "20"], check=True, capture_output=True, text=True).stdout)
    med = lambda v: float(np.median(v))  # noqa: E731
    out = {
        "python_loop_step_us": med(plain),
        "python_loop_with_monitor_step_us": med(with_mon),
        "monitor_overhead_per_step_us": med(overhead),
        "monitor_sharpness_warm_ms": med(sharp_ms),
        "monitor_sharpness_warm_hvps": int(np.median(sharp_hvps)),
        "jax_hvp_call_us": med(hvp_us),
        "lanczos_overhead_per_hvp_us": med(sharp_ms) * 1e3 / np.median(sharp_hvps) - med(hvp_us),
        "cli_step_us": cli["step_us"]["median"],
        "cli_sharpness_warm_ms": cli["sharpness_warm_ms"]["median"],
        "cli_sharpness_warm_hvps": cli["sharpness_warm_hvps"],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
