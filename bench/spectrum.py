"""Side-by-side benchmark of `eosflow spectrum` against JAX (jit, float64,
CPU) on the digits CNN at the end of `digits-cnn`: the spectral density by
stochastic Lanczos quadrature (probes x steps, full reorthogonalisation) and
the top eigenvalue of each layer's block of the Hessian.

Usage: python3 bench/spectrum.py [--eosflow target/release/eosflow] [--run RUN_DIR]
                                 [--probes 10] [--steps 80] [--repeats 3]

Without --run the script first runs `eosflow reproduce digits-cnn` (9,000
steps, a few minutes). Both sides read the run's w_final.npy and training
data. The JAX side is written here: the network from bench/jax_nets.py, the
HVP as jit(jvp(grad)), Lanczos as one jitted fori_loop with classical
Gram-Schmidt twice against the whole basis (what eosflow does), each probe
in turn ("sequential", as PyHessian) and all probes at once under vmap
(batched HVPs, the best JAX can do). Per layer, JAX runs plain Lanczos for as
many HVPs as eosflow used for that block (eosflow: thick-restarted to a
residual tolerance), so the work is equal; the top values are printed side
by side. Times are medians of --repeats; JAX's compile time is left out.
"""

import argparse
import json
import subprocess
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import jax
import jax.numpy as jnp

from jax_nets import median_time, vgg_loss


def lanczos(matvec, n, m):
    """m Lanczos steps from v0 with full reorthogonalisation (CGS2): the
    tridiagonal's diagonal and off-diagonal."""

    def run(v0):
        q0 = v0 / jnp.linalg.norm(v0)
        basis = jnp.zeros((m + 1, n)).at[0].set(q0)

        def body(i, carry):
            basis, alpha, beta = carry
            q = basis[i]
            w = matvec(q)
            a = jnp.dot(q, w)
            mask = (jnp.arange(m + 1) <= i)[:, None]
            b_i = basis * mask
            w = w - b_i.T @ (b_i @ w)
            w = w - b_i.T @ (b_i @ w)
            b = jnp.linalg.norm(w)
            basis = basis.at[i + 1].set(w / b)
            return basis, alpha.at[i].set(a), beta.at[i].set(b)

        _, alpha, beta = jax.lax.fori_loop(0, m, body, (basis, jnp.zeros(m), jnp.zeros(m)))
        return alpha, beta[: m - 1]

    return run


def ritz(alpha, beta):
    """Nodes and Gauss weights of the tridiagonal matrix."""
    t = np.diag(np.asarray(alpha)) + np.diag(np.asarray(beta), 1) + np.diag(np.asarray(beta), -1)
    nodes, vecs = np.linalg.eigh(t)
    return nodes, vecs[0] ** 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eosflow", default="target/release/eosflow")
    ap.add_argument("--run", type=Path, help="a digits-cnn run directory (default: run the preset)")
    ap.add_argument("--probes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "digits-cnn"
            subprocess.run([args.eosflow, "reproduce", "digits-cnn", "--set", "output.figures=false", "--out", str(run)],
                           check=True, stdout=subprocess.DEVNULL)
        ours = []
        for r in range(args.repeats):
            out = Path(tmp) / f"spectrum-{r}"
            subprocess.run([args.eosflow, "spectrum", str(run), "--blocks", "layers", "--k", "1",
                            "--probes", str(args.probes), "--steps", str(args.steps), "--trace-probes", "99",
                            "--set", "output.figures=false", "--out", str(out)],
                           check=True, capture_output=True)
            ours.append(json.loads((out / "summary.json").read_text()))
            blocks = list((out / "blocks.csv").read_text().splitlines())
        header = blocks[0].split(",")
        rows = [dict(zip(header, line.split(","))) for line in blocks[1:]]

    cfg = tomllib.loads((run / "config.toml").read_text())["problem"]
    x = np.load(run / "data/x_train.npy").reshape(-1, 1, 8, 8)
    y = np.load(run / "data/y_train.npy")
    w = jnp.asarray(np.load(run / "w_final.npy"))
    loss = vgg_loss(cfg["vgg"].split(), x, y, cfg["width"], cfg["final_gamma"])
    n = w.size
    w_norm2 = float(w @ w)
    hvp = jax.jit(lambda v: jax.jvp(jax.grad(loss), (w,), (v,))[1])

    # The density: sequential probes and vmapped probes.
    m = min(args.steps, n)
    one = jax.jit(lanczos(hvp, n, m))
    batched = jax.jit(jax.vmap(lanczos(hvp, n, m)))
    rng = np.random.default_rng(0)
    probes = jnp.asarray(rng.choice([-1.0, 1.0], size=(args.probes, n)))
    jax.block_until_ready(one(probes[0]))
    jax.block_until_ready(batched(probes))
    t_seq = median_time(lambda: [one(p) for p in probes][-1], args.repeats)
    t_vmap = median_time(lambda: batched(probes), args.repeats)
    alpha, beta = batched(probes)
    nodes = np.concatenate([ritz(a, b)[0] for a, b in zip(alpha, beta)]) * w_norm2
    t_ours = float(np.median([s["timing"]["density_s"] for s in ours]))
    support = ours[0]["density"]["support"]

    # Per layer: plain Lanczos for as many HVPs as eosflow used.
    layer_rows = []
    offset = 0
    for r in rows:
        size = int(r["size"])
        if r["block"] == "all":
            continue
        lo, hi = offset, offset + size
        offset = hi
        hvps = [b for b in ours[0]["timing"]["blocks"] if b["block"] == r["block"]][0]["top_hvps"]
        steps = min(hvps, size)
        restricted = jax.jit(lambda v, lo=lo, hi=hi: hvp(jnp.zeros(n).at[lo:hi].set(v))[lo:hi])
        run_l = jax.jit(lanczos(restricted, size, steps))
        v0 = jnp.asarray(rng.standard_normal(size))
        jax.block_until_ready(run_l(v0))
        t_jax = median_time(lambda: run_l(v0), args.repeats)
        top = float(ritz(*run_l(v0))[0][-1])
        t_eos = float(np.median([[b for b in s["timing"]["blocks"] if b["block"] == r["block"]][0]["top_s"]
                                 for s in ours]))
        layer_rows.append((r["block"], size, hvps, t_eos, t_jax, float(r["top"]), top))

    print(f"digits-cnn at w_final (D = {n}, {len(y)} training images), spherical units x ||w||^2 = {w_norm2:.6g}")
    print(f"SLQ density, {args.probes} probes x {m} steps ({args.probes * m} HVPs):")
    print(f"  eosflow {t_ours:.3f} s   JAX sequential {t_seq:.3f} s ({t_seq / t_ours:.2f}x)   "
          f"JAX vmap {t_vmap:.3f} s ({t_vmap / t_ours:.2f}x)   ratio > 1: eosflow faster")
    print(f"  support: eosflow [{support[0]:.6g}, {support[1]:.6g}]   JAX [{nodes.min():.6g}, {nodes.max():.6g}]")
    print(f"{'layer':12}{'size':>7}{'HVPs':>6}{'eosflow':>10}{'JAX':>10}{'ratio':>7}{'top eosflow':>16}{'top JAX':>16}")
    for name, size, hvps, te, tj, a, b in layer_rows:
        print(f"{name:12}{size:>7}{hvps:>6}{te:>9.3f}s{tj:>9.3f}s{tj / te:>6.2f}x{a:>16.9g}{b:>16.9g}")
    total_e = sum(r[3] for r in layer_rows)
    total_j = sum(r[4] for r in layer_rows)
    print(f"{'all layers':25}{total_e:>9.3f}s{total_j:>9.3f}s{total_j / total_e:>6.2f}x")


if __name__ == "__main__":
    main()
