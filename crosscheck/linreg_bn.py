"""Independent numpy reference for linreg_bn (Section 5 of Lyu, Li, Arora 2022).

Reads an eosflow run directory (data/x.npy, y.npy, w0.npy, w_gt.npy,
b_gt.npy, config.toml, metrics.csv), re-runs GD+WD (eq. 1) on the BN-linear
regression loss with its own formulas, and compares step by step:

  * the training loss L(w_t),
  * the population test loss (w~ - w_GT)^T Sigma (w~ - w_GT) + (b~ - b_GT)^2,
  * ||theta_t - theta_M||, with theta_M from numpy's least squares.

Prints the largest discrepancies and exits 1 if any exceeds its tolerance.

The loss and gradient are written differently from eosflow's: raw inputs
with an explicit centring matrix C = I - 11^T/n, and the chain rule
grad = X^T C (I - u u^T / n) / s * 2 sigma_y^2 (u - q) / n.

Usage: python3 crosscheck/linreg_bn.py RUN_DIR [STEPS]
"""

import csv
import sys
import tomllib
from pathlib import Path

import numpy as np


def loss_grad(X, y, w):
    n = X.shape[0]
    C = np.eye(n) - np.ones((n, n)) / n
    mu_y, sigma_y = y.mean(), y.std()
    q = (y - mu_y) / sigma_y
    abar = C @ (X @ w)
    s = np.sqrt(np.mean(abar**2))
    u = abar / s
    r = u - q  # residuals in units of sigma_y
    loss = sigma_y**2 * np.mean(r**2)
    dL_du = 2.0 * sigma_y**2 * r / n
    dL_dabar = (dL_du - u * (u @ dL_du) / n) / s
    grad = X.T @ (C @ dL_dabar)
    return loss, grad


def coefficients(X, y, w):
    mu_x = X.mean(axis=0)
    a = (X - mu_x) @ w
    wt = y.std() * w / np.sqrt(np.mean(a**2))
    return wt, y.mean() - wt @ mu_x


def main():
    run = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    cfg = tomllib.loads((run / "config.toml").read_text())
    lr, wd = cfg["optimizer"]["lr"], cfg["optimizer"]["wd"]
    X, y = np.load(run / "data/x.npy"), np.load(run / "data/y.npy")
    w = np.load(run / "data/w0.npy")
    w_gt, b_gt = np.load(run / "data/w_gt.npy"), np.load(run / "data/b_gt.npy")[0]
    d = X.shape[1]
    sigma_pop = np.arange(1, d + 1) / d  # App. Q.2: Sigma = diag(1/d, ..., 1)

    Xc, yc = X - X.mean(axis=0), y - y.mean()
    w_m = np.linalg.lstsq(Xc, yc / y.std(), rcond=None)[0]
    theta_m = w_m / np.linalg.norm(w_m)

    with open(run / "metrics.csv") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f)}

    worst = {"loss": 0.0, "test_loss": 0.0, "dist_theta_m": 0.0}
    worst_rel = 0.0  # relative loss discrepancy while L > 1e-16 sigma_y^2 (residuals >> rounding)
    for t in range(steps + 1):
        loss, g = loss_grad(X, y, w)
        wt, bt = coefficients(X, y, w)
        test = (wt - w_gt) @ (sigma_pop * (wt - w_gt)) + (bt - b_gt) ** 2
        dist = np.linalg.norm(w / np.linalg.norm(w) - theta_m)
        row = rows.get(t)
        if row is not None:
            # Loss: 1e-9 relative, plus what rounding alone allows. Each residual
            # r_i = u_i - q_i carries an absolute rounding error delta ~ d*eps*4 from
            # the dot products (in either implementation), so L = sigma^2 mean(r^2) is
            # only determined to sigma^2 (2 sqrt(L/sigma^2) delta + delta^2). That
            # bound matters only near the floor (L < 1e-20); above it the check is
            # purely relative.
            sig2 = y.std() ** 2
            delta = 4.0 * d * np.finfo(float).eps
            bound = 1e-9 * abs(loss) + sig2 * (2.0 * np.sqrt(abs(loss) / sig2) * delta + delta**2)
            diff = abs(loss - float(row["loss"]))
            worst["loss"] = max(worst["loss"], diff / bound)
            if loss > 1e-16 * sig2:  # residuals ~1e-8, far above delta
                worst_rel = max(worst_rel, diff / abs(loss))
            worst["test_loss"] = max(worst["test_loss"], abs(test - float(row["test_loss"])) / test)
            worst["dist_theta_m"] = max(worst["dist_theta_m"], abs(dist - float(row["dist_theta_m"])))
        w = (1.0 - lr * wd) * w - lr * g

    # "loss" is the discrepancy divided by its allowed bound (must be <= 1).
    tol = {"loss": 1.0, "test_loss": 1e-9, "dist_theta_m": 1e-9}
    ok = all(worst[k] <= tol[k] for k in tol)
    print(f"max relative loss discrepancy while L > 1e-16 sigma_y^2: {worst_rel:.3e}")
    print(f"max loss discrepancy / allowed bound: {worst['loss']:.3e} (must be <= 1)")
    for k in ("test_loss", "dist_theta_m"):
        print(f"max discrepancy {k}: {worst[k]:.3e} (tolerance {tol[k]:.0e})")
    print("crosscheck linreg_bn:", "1 passed, 0 failed" if ok else "0 passed, 1 failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
