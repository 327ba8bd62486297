"""Side-by-side benchmark for matrix completion with BN (fig1 preset, App. P.1):
eosflow against a numpy + JAX reference of the same experiment on the same inputs.

Usage: python3 bench/fig1.py [--eosflow target/release/eosflow] [--full]

1. One GD+WD step (d = 50, N = 800) after 2000 warm-up steps: median time.
   eosflow: `eosflow bench fig1`; reference: numpy with hand-written
   gradients in dense BLAS form (W = U V^T, S V, S^T U), the fastest numpy
   form we found (gathers with np.add.at took ~0.9 ms a step).
2. One sharpness evaluation (top eigenvalue, residual <= 1e-8 lambda) at the
   same point: eosflow's Lanczos on exact HVPs vs JAX jvp(grad) HVPs (jit,
   float64) + scipy eigsh(which='LA', tol=1e-8); cold (random start) and
   warm (the eigenvector from 100 steps earlier).
3. With --full: the whole fig1 preset (50k steps, sharpness/test loss/SVD
   every 100 steps, metrics CSV, figures for eosflow) in both.
"""

import argparse
import csv
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def setup(run: Path):
    M = np.load(run / "data/m.npy")
    omega = np.load(run / "data/omega.npy")
    w0 = np.load(run / "data/w0.npy")
    d = M.shape[0]
    rows, cols = omega[:, 0], omega[:, 1]
    m_obs = M[rows, cols]
    gamma = np.sqrt(np.mean(m_obs**2))
    return M, d, rows, cols, m_obs, gamma, w0


def make_step(d, rows, cols, m_obs, gamma, lr, wd):
    n = rows.size

    def loss_grad(w):
        # Dense BLAS form (faster in numpy than gathers and np.add.at here):
        # W = U V^T, a = W[Omega]; the gradient scatters G into S (Omega has
        # no duplicates) and takes S V and S^T U.
        U, V = w[: d * d].reshape(d, d), w[d * d :].reshape(d, d)
        a = (U @ V.T)[rows, cols]
        sigma = np.sqrt(a @ a / n)
        u = a / sigma
        r = u - m_obs / gamma
        c = (r @ u) / n
        S = np.zeros((d, d))
        S[rows, cols] = 2 * gamma**2 / (n * sigma) * (r - c * u)
        return gamma**2 * (r @ r) / n, np.concatenate([(S @ V).ravel(), (S.T @ U).ravel()])

    def step(w):
        loss, g = loss_grad(w)
        return loss, (1 - lr * wd) * w - lr * g

    return step


def make_sharpness(d, rows, cols, m_obs, gamma):
    import jax
    import jax.numpy as jnp
    import scipy.sparse.linalg as sla

    jax.config.update("jax_enable_x64", True)

    def loss(x):
        U, V = x[: d * d].reshape(d, d), x[d * d :].reshape(d, d)
        a = jnp.sum(U[rows] * V[cols], axis=1)
        sigma = jnp.sqrt(jnp.mean(a**2))
        return jnp.mean((gamma / sigma * a - m_obs) ** 2)

    hvp = jax.jit(lambda w, v: jax.jvp(jax.grad(loss), (w,), (v,))[1])

    def sharpness(w, v0=None):
        wj = jnp.asarray(w)
        op = sla.LinearOperator((w.size, w.size), matvec=lambda v: np.asarray(hvp(wj, jnp.asarray(v))), dtype=float)
        vals, vecs = sla.eigsh(op, k=1, which="LA", tol=1e-8, v0=v0)
        return float(w @ w) * vals[0], vecs[:, 0]

    return sharpness


def median_time(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eosflow", default="target/release/eosflow")
    ap.add_argument("--full", action="store_true", help="also run the whole fig1 preset in both")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours = json.loads(subprocess.run([args.eosflow, "bench", "fig1", "--evals", "10"], check=True,
                                         capture_output=True, text=True).stdout)
        subprocess.run([args.eosflow, "reproduce", "fig1", "--steps", "1", "--out", str(tmp / "data_run")],
                       check=True, stdout=subprocess.DEVNULL)
        M, d, rows, cols, m_obs, gamma, w = setup(tmp / "data_run")
        step = make_step(d, rows, cols, m_obs, gamma, 0.1, 0.01)
        for _ in range(2000):
            _, w = step(w)
        t_step = median_time(lambda: step(w), 500)
        # The sharpness is measured where eosflow measured it (after its timed steps).
        for _ in range(ours["sharpness_cold_at_step"] - 2000):
            _, w = step(w)
        sharp = make_sharpness(d, rows, cols, m_obs, gamma)
        sharp(w)  # jit compile
        lam, v = sharp(w)
        t_cold = median_time(lambda: sharp(w), 5)
        w2 = w
        for _ in range(100):
            _, w2 = step(w2)
        t_warm = median_time(lambda: sharp(w2, v), 5)

        print("fig1 (matcomp_bn, d = 50, N = 800), after 2000 warm-up steps")
        print(f"{'':36}{'eosflow':>12}{'numpy/JAX':>12}{'ratio':>8}")
        rows_out = [
            ("one GD+WD step (us, median)", ours["step_us"]["median"], t_step * 1e6),
            ("sharpness, cold start (ms)", ours["sharpness_cold_ms"]["median"], t_cold * 1e3),
            ("sharpness, warm start (ms)", ours["sharpness_warm_ms"]["median"], t_warm * 1e3),
        ]
        for name, a, b in rows_out:
            print(f"{name:36}{a:>12.3f}{b:>12.3f}{b / a:>7.1f}x")
        print(f"sharpness at step {ours['sharpness_cold_at_step']}: eosflow {ours['sharpness_cold_value']:.10f}, "
              f"JAX+eigsh {lam:.10f}")

        if args.full:
            t0 = time.perf_counter()
            subprocess.run([args.eosflow, "reproduce", "fig1", "--out", str(tmp / "full")], check=True,
                           stdout=subprocess.DEVNULL)
            t_ours = time.perf_counter() - t0
            w = np.load(tmp / "data_run/data/w0.npy")
            t0 = time.perf_counter()
            v = None
            rec = []
            for t in range(50001):
                if t % 100 == 0:
                    lam, v = sharp(w, v)
                    U, V = w[: d * d].reshape(d, d), w[d * d :].reshape(d, d)
                    W = U @ V.T
                    sig = np.sqrt(np.mean(W[rows, cols] ** 2))
                    test = np.mean((gamma / sig * W - M) ** 2)
                    sv = np.linalg.svd(gamma / sig * W, compute_uv=False)[:5]
                    loss, w_next = step(w)
                    rec.append([t, loss, lam, test, *sv])
                else:
                    loss, w_next = step(w)
                w = w_next
            with open(tmp / "ref.csv", "w", newline="") as f:
                csv.writer(f).writerows(rec)
            t_ref = time.perf_counter() - t0
            print(f"{'whole fig1 preset (s)':36}{t_ours:>12.2f}{t_ref:>12.2f}{t_ref / t_ours:>7.1f}x")
            print(f"final test loss: reference {rec[-1][3]:.4e}")


if __name__ == "__main__":
    main()
