"""Side-by-side benchmark for the CIFAR-10 networks: eosflow against JAX
(jit, CPU) on the same scale-invariant VGG-11, batch, weights and precision.

Usage: python3 bench/cifar.py [--eosflow target/release/eosflow]
                              [--n 256] [--width 0.25] [--precisions f64 f32] [--reps 9]

Writes n random images in CIFAR-10's binary format to a temporary folder
(no download), then for each precision:
  * eosflow: `eosflow bench fig2 --data DIR --set problem.width=W
    --set problem.ghost_batch=n ...` — one loss + gradient (its GD+WD step)
    and one exact HVP, medians of `reps`;
  * JAX: jax.jit(value_and_grad(loss)) and jax.jit(jvp(grad(loss))) of the
    same network written here from the paper's description (App. Q.1,
    Fig. 16): conv 3×3 (no bias) → BN (batch statistics, no affine, ε = 0)
    → Swish, 2×2 mean pooling, one linear layer, final BN with fixed
    γ = 0.3·ln 91, mean cross-entropy; one ghost batch = the n images.
The loss at w0 (eosflow's first metrics row) is printed next to JAX's as a
check that both compute the same function on the same standardised data.
"""

import argparse
import csv
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp

from jax_nets import median_time, vgg_loss

VGG11 = "64 M 128 M 256 256 M 512 512 M 512 512 M".split()
FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def write_cifar(folder, n, seed=0):
    """n training images spread over the five batch files, 10 test images."""
    rng = np.random.default_rng(seed)
    counts = [n // 5 + (i < n % 5) for i in range(5)] + [10]
    for name, k in zip(FILES, counts):
        labels = (np.arange(k) % 10).astype(np.uint8)
        pixels = rng.integers(0, 256, size=(k, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], pixels], 1).tobytes())


def read_train(folder):
    """Training images and labels, pixels/255 standardised per channel with
    the training set's mean and population standard deviation."""
    raw = np.concatenate([np.frombuffer((folder / f).read_bytes(), np.uint8).reshape(-1, 3073) for f in FILES[:5]])
    y = raw[:, 0].astype(np.int64)
    x = raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
    mean = x.mean((0, 2, 3), keepdims=True)
    std = x.std((0, 2, 3), keepdims=True)
    return (x - mean) / std, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eosflow", default="target/release/eosflow")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--precisions", nargs="+", default=["f64", "f32"])
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cifar"
        data.mkdir()
        write_cifar(data, args.n)
        x, y = read_train(data)
        for prec in args.precisions:
            sets = [f"problem.width={args.width}", f"problem.ghost_batch={args.n}", "problem.hessian_examples=0",
                    f"problem.precision={prec}"]
            flags = [a for s in sets for a in ("--set", s)] + ["--data", str(data)]
            run = Path(tmp) / f"run-{prec}"
            subprocess.run([args.eosflow, "reproduce", "fig2", "--steps", "1", "--out", str(run), *flags,
                            "--set", "sharpness.every=0", "--set", "output.figures=false"],
                           check=True, stdout=subprocess.DEVNULL)
            ours = json.loads(subprocess.run(
                [args.eosflow, "bench", "fig2", "--warmup", "1", "--timed", str(args.reps), "--evals", "0",
                 "--hvps", str(args.reps), *flags], check=True, capture_output=True, text=True).stdout)
            dt = jnp.float64 if prec == "f64" else jnp.float32
            loss = vgg_loss(VGG11, jnp.asarray(x, dt), jnp.asarray(y), args.width)
            w0 = jnp.asarray(np.load(run / "data/w0.npy"), dt)
            v = jnp.asarray(np.random.default_rng(0).standard_normal(w0.size), dt)
            vg = jax.jit(jax.value_and_grad(loss))
            hvp = jax.jit(lambda w, v: jax.jvp(jax.grad(loss), (w,), (v,))[1])
            ref_loss = float(jax.block_until_ready(vg(w0))[0])
            jax.block_until_ready(hvp(w0, v))
            t_grad = median_time(lambda: vg(w0), args.reps)
            t_hvp = median_time(lambda: hvp(w0, v), args.reps)
            with open(run / "metrics.csv") as f:
                our_loss = float(next(csv.DictReader(f))["loss"])
            rows.append((prec, w0.size, ours["step_us"]["median"] / 1e6, t_grad, ours["hvp_us"]["median"] / 1e6,
                         t_hvp, our_loss, ref_loss, ours.get("hvp_f32_relative_error_vs_f64")))
    print(f"SI VGG-11 at width {args.width}, {args.n} CIFAR-shaped images in one ghost batch, {jax.devices()[0]}")
    print(f"{'':6}{'D':>9}{'grad eosflow':>14}{'grad JAX':>10}{'ratio':>7}{'HVP eosflow':>13}{'HVP JAX':>9}"
          f"{'ratio':>7}{'HVP/grad ours':>15}{'JAX':>6}")
    for p, d, s, g, h, hj, *_ in rows:
        print(f"{p:6}{d:>9}{s:>12.3f} s{g:>8.3f} s{g / s:>6.2f}x{h:>11.3f} s{hj:>7.3f} s{hj / h:>6.2f}x"
              f"{h / s:>14.2f}x{hj / g:>5.2f}x")
    for p, *_, lo, lr, err in rows:
        print(f"{p}: loss at w0: eosflow {lo!r}, JAX {lr!r} (rel. {abs(lo - lr) / abs(lr):.1e})"
              + (f"; eosflow's f32 HVP vs its f64 HVP: rel. {err:.1e}" if err is not None else ""))
    print("ratio > 1: eosflow faster. eosflow's step also applies the GD+WD update (negligible).")


if __name__ == "__main__":
    main()
