"""Side-by-side benchmark: the fig4 preset (linreg_bn, 100k steps of GD+WD
with phi_t, lambda1(phi_t), h_t and the test loss at every step) in eosflow
and in a numpy reference of the same computation on the same inputs.

Usage: python3 bench/fig4.py [--eosflow target/release/eosflow] [--steps 100000]

Runs `eosflow reproduce fig4` (figures off, CSV on: what a user runs), then
the numpy reference on the run's own data/*.npy, checks that both end at the
same point, and prints the wall times and their ratio.
"""

import argparse
import json
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np


def reference(run: Path, steps: int, csv_out=None):
    cfg = tomllib.loads((run / "config.toml").read_text())
    lr, wd = cfg["optimizer"]["lr"], cfg["optimizer"]["wd"]
    X, y, w = np.load(run / "data/x.npy"), np.load(run / "data/y.npy"), np.load(run / "data/w0.npy")
    w_gt, b_gt = np.load(run / "data/w_gt.npy"), np.load(run / "data/b_gt.npy")[0]
    n, d = X.shape
    sig_pop = np.arange(1, d + 1) / d
    mu_x, mu_y, s_y = X.mean(0), y.mean(), y.std()
    Xc = X - mu_x
    q = (y - mu_y) / s_y
    # Gamma's geometry: row-space basis, min-norm w_M, Lemma O.1's matrix.
    U, S, _ = np.linalg.svd(Xc.T, full_matrices=False)
    B = U[:, S > 1e-10 * S[0]]
    w_m = np.linalg.lstsq(Xc, q, rcond=None)[0]
    theta_m = w_m / np.linalg.norm(w_m)
    z = Xc.T @ q / n
    M = Xc.T @ Xc / n - np.outer(z, z)
    evals, evecs = np.linalg.eigh(M)
    lam_o1, v1 = evals[-1], evecs[:, -1]
    t0 = time.perf_counter()
    rows = np.empty((steps + 1, 15)) if csv_out else None
    for t in range(steps + 1):
        a = Xc @ w
        s = np.sqrt(a @ a / n)
        u = a / s
        e = u - q
        loss = s_y**2 * (e @ e) / n
        c = (e @ u) / n
        g = 2 * s_y**2 / (n * s) * (Xc.T @ (e - c * u))
        theta = w / np.linalg.norm(w)
        phi = theta - B @ (B.T @ theta) + (theta @ w_m) / (w_m @ w_m) * w_m
        phi /= np.linalg.norm(phi)
        ap = Xc @ phi
        lam = 2 * s_y**2 / (ap @ ap / n) * lam_o1
        h = (theta - phi) @ v1
        wt = s_y * w / s
        bt = mu_y - wt @ mu_x
        test = (wt - w_gt) @ (sig_pop * (wt - w_gt)) + (bt - b_gt) ** 2
        dist = np.linalg.norm(phi - theta_m)
        if rows is not None:
            # The columns of eosflow's metrics.csv (sharpness and regime left
            # empty there except every 1000 steps; zeros here).
            wn = np.linalg.norm(w)
            eff = lr / ((1 - lr * wd) * wn * wn)
            rows[t] = (t, loss, wn * np.linalg.norm(g), wn, eff, 2 / eff, 0, 0, test, test,
                       np.linalg.norm(theta - theta_m), dist, lam, h, 2 / eff - lam)
        if t < steps:
            w = (1 - lr * wd) * w - lr * g
    if rows is not None:
        np.savetxt(csv_out, rows, delimiter=",", fmt="%.17g")
    return time.perf_counter() - t0, dict(loss=loss, phi_dist_m=dist, phi_sharpness=lam, test_loss=test, h=h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eosflow", default="target/release/eosflow")
    ap.add_argument("--steps", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "fig4.toml"
        text = (Path(__file__).parent.parent / "configs/fig4.toml").read_text()
        cfg.write_text(text + "\n[output]\nfigures = false\n")
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        subprocess.run([args.eosflow, "run", str(cfg), "--out", str(out), "--steps", str(args.steps)],
                       check=True, stdout=subprocess.DEVNULL)
        t_eos = time.perf_counter() - t0
        summary = json.loads((out / "summary.json").read_text())
        t_ref_compute, ref = reference(out, args.steps)
        t_ref, _ = reference(out, args.steps, csv_out=Path(tmp) / "ref_metrics.csv")
        import csv
        with open(out / "metrics.csv") as f:
            for row in csv.DictReader(f):
                last = row
        print(f"fig4, {args.steps} steps, phi_t / lambda1(phi_t) / h_t / test loss every step")
        print(f"{'':28}{'eosflow':>14}{'numpy ref':>14}")
        for k in ("loss", "phi_dist_m", "phi_sharpness", "test_loss"):
            print(f"{'final ' + k:28}{float(last[k]):>14.6e}{ref[k]:>14.6e}")
        # v1 is defined up to sign: eosflow fixes its largest entry positive.
        print(f"{'final |h|':28}{abs(float(last['h'])):>14.6e}{abs(ref['h']):>14.6e}")
        print(f"{'wall, with metrics.csv (s)':28}{t_eos:>14.3f}{t_ref:>14.3f}")
        print(f"{'numpy without writing (s)':28}{'':>14}{t_ref_compute:>14.3f}")
        print(f"ratio numpy / eosflow, same outputs: {t_ref / t_eos:.1f}x; numpy computing only: {t_ref_compute / t_eos:.1f}x")


if __name__ == "__main__":
    main()
