"""Side-by-side benchmark for the digits network presets (eosflow-nn):
eosflow against JAX (jit, float64, CPU) on the same network, data and weights.

Usage: python3 bench/digits.py [--eosflow target/release/eosflow] [--presets digits-mlp digits-cnn]

For each preset, at w0 (timings do not depend on w):
  * one loss + gradient over the training set (ghost BN with one ghost batch,
    as the presets use): eosflow's GD+WD step (`eosflow bench`) against
    jax.jit(jax.value_and_grad(loss));
  * one Hessian-vector product: eosflow's reverse-over-forward HVP against
    jax.jit(jvp(grad(loss))).
The JAX networks are written here from the paper's description (App. Q.1):
the loss values at w0 are printed next to eosflow's as a check that both
compute the same function.
"""

import argparse
import csv
import json
import subprocess
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp

from jax_nets import bn, median_time, swish, vgg_loss


def mlp_loss(cfg, x, y):
    sizes = [x.shape[1]] + list(cfg["hidden"]) + [10]
    gamma = cfg["final_gamma"]

    def loss(w):
        h, off = x, 0
        for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
            W = w[off : off + i * o].reshape(o, i)
            off += i * o
            h = bn(h @ W.T, 0)
            h = swish(h) if k < len(sizes) - 2 else gamma * h
        return jnp.mean(jax.nn.logsumexp(h, 1) - h[jnp.arange(len(y)), y])

    return loss


def cnn_loss(cfg, x, y):
    return vgg_loss(cfg["vgg"].split(), x.reshape(-1, 1, 8, 8), y, cfg["width"], cfg["final_gamma"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eosflow", default="target/release/eosflow")
    ap.add_argument("--presets", nargs="+", default=["digits-mlp", "digits-cnn"])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            run = Path(tmp) / preset
            subprocess.run([args.eosflow, "reproduce", preset, "--steps", "1", "--out", str(run)], check=True,
                           stdout=subprocess.DEVNULL)
            ours = json.loads(subprocess.run(
                [args.eosflow, "bench", preset, "--warmup", "0", "--timed", "100", "--evals", "1"],
                check=True, capture_output=True, text=True).stdout)
            cfg = tomllib.loads((run / "config.toml").read_text())["problem"]
            x, y = np.load(run / "data/x_train.npy"), np.load(run / "data/y_train.npy")
            w0 = jnp.asarray(np.load(run / "data/w0.npy"))
            loss = (mlp_loss if cfg["arch"] == "si-mlp" else cnn_loss)(cfg, x, y)
            vg = jax.jit(jax.value_and_grad(loss))
            v = jnp.asarray(np.random.default_rng(0).standard_normal(w0.size))
            hvp = jax.jit(lambda w, v: jax.jvp(jax.grad(loss), (w,), (v,))[1])
            jax.block_until_ready(vg(w0))
            jax.block_until_ready(hvp(w0, v))
            t_grad = median_time(lambda: vg(w0), 100)
            t_hvp = median_time(lambda: hvp(w0, v), 100)
            ref_loss = float(vg(w0)[0])
            with open(run / "metrics.csv") as f:
                our_loss = float(next(csv.DictReader(f))["loss"])
            rows.append((preset, w0.size, ours["step_us"]["median"] / 1e3, t_grad * 1e3,
                         ours["hvp_us"]["median"] / 1e3, t_hvp * 1e3, our_loss, ref_loss))
    print(f"{'':16}{'D':>7}{'step eosflow':>14}{'grad JAX':>10}{'ratio':>7}{'HVP eosflow':>13}{'HVP JAX':>9}{'ratio':>7}")
    for p, d, s, g, h, hj, lo, lr in rows:
        print(f"{p:16}{d:>7}{s:>11.2f} ms{g:>7.2f} ms{g / s:>6.2f}x{h:>10.2f} ms{hj:>6.2f} ms{hj / h:>6.2f}x")
    for p, *_, lo, lr in rows:
        print(f"{p}: loss at w0: eosflow {lo!r}, JAX {lr!r} (rel. {abs(lo - lr) / lr:.1e})")
    print("ratio > 1: eosflow faster. eosflow's step also applies the GD+WD update (negligible).")


if __name__ == "__main__":
    main()
