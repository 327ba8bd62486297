"""Independent numpy + JAX reference for matcomp_bn (App. P.1 of Lyu, Li, Arora 2022).

Reads an eosflow run directory (data/m.npy, omega.npy, w0.npy, config.toml,
metrics.csv, sharpness.csv) and checks, with its own code:

  * numpy: the loss, the test loss and the GD+WD trajectory (eq. 1) with a
    dense formulation (W = U V^T, gradient by scattering dL/da into a d x d
    matrix S and forming S V, S^T U), step by step against metrics.csv;
  * JAX: the Hessian-vector product as jax.jvp(jax.grad(loss)) in float64,
    fed to scipy's eigsh (which='LA') at the last step with a sharpness
    value in sharpness.csv; the spherical sharpness ||w||^2 lambda1 must agree.

Usage: python3 crosscheck/matcomp_bn.py RUN_DIR [STEPS]
Exit status 1 if any discrepancy exceeds its tolerance.
"""

import csv
import sys
import tomllib
from pathlib import Path

import numpy as np


def unpack(w, d):
    return w[: d * d].reshape(d, d), w[d * d :].reshape(d, d)


def loss_grad(w, d, rows, cols, m_obs, gamma):
    U, V = unpack(w, d)
    W = U @ V.T
    a = W[rows, cols]
    n = a.size
    sigma = np.sqrt(np.mean(a**2))
    pred = gamma / sigma * a
    loss = np.mean((pred - m_obs) ** 2)
    g_pred = 2.0 * (pred - m_obs) / n
    # pred = gamma a / sigma(a), d sigma/da = a / (n sigma)
    g_a = gamma / sigma * (g_pred - a * (a @ g_pred) / (n * sigma**2))
    S = np.zeros((d, d))
    np.add.at(S, (rows, cols), g_a)
    return loss, np.concatenate([(S @ V).ravel(), (S.T @ U).ravel()])


def test_loss(w, d, rows, cols, M, gamma):
    U, V = unpack(w, d)
    W = U @ V.T
    sigma = np.sqrt(np.mean(W[rows, cols] ** 2))
    return np.mean((gamma / sigma * W - M) ** 2)


def jax_sharpness(w, d, rows, cols, m_obs, gamma):
    import jax
    import jax.numpy as jnp
    import scipy.sparse.linalg as sla

    jax.config.update("jax_enable_x64", True)

    def loss(x):
        U = x[: d * d].reshape(d, d)
        V = x[d * d :].reshape(d, d)
        a = jnp.sum(U[rows] * V[cols], axis=1)
        sigma = jnp.sqrt(jnp.mean(a**2))
        return jnp.mean((gamma / sigma * a - m_obs) ** 2)

    wj = jnp.asarray(w)
    hvp = jax.jit(lambda v: jax.jvp(jax.grad(loss), (wj,), (v,))[1])
    op = sla.LinearOperator((w.size, w.size), matvec=lambda v: np.asarray(hvp(jnp.asarray(v))), dtype=np.float64)
    lam = sla.eigsh(op, k=1, which="LA", tol=1e-14, v0=np.ones(w.size))[0][0]
    return float(w @ w) * lam


def main():
    run = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    cfg = tomllib.loads((run / "config.toml").read_text())
    lr, wd = cfg["optimizer"]["lr"], cfg["optimizer"]["wd"]
    M = np.load(run / "data/m.npy")
    omega = np.load(run / "data/omega.npy")
    w = np.load(run / "data/w0.npy")
    d = M.shape[0]
    rows, cols = omega[:, 0], omega[:, 1]
    m_obs = M[rows, cols]
    gamma = np.sqrt(np.mean(m_obs**2))

    with open(run / "metrics.csv") as f:
        metrics = {int(r["step"]): r for r in csv.DictReader(f)}
    with open(run / "sharpness.csv") as f:
        sharp = {int(r["step"]): float(r["sharpness"]) for r in csv.DictReader(f)}
    check_at = max(s for s in sharp if s <= steps)

    eps = np.finfo(float).eps
    delta = 4.0 * d * eps  # rounding of a residual: a dot product of length d
    worst = {"loss": 0.0, "test_loss": 0.0}
    worst_rel = 0.0
    w_check = None
    for t in range(steps + 1):
        loss, g = loss_grad(w, d, rows, cols, m_obs, gamma)
        row = metrics.get(t)
        if row is not None:
            # Loss: 1e-9 relative plus the rounding bound gamma^2 (2 sqrt(L/gamma^2) delta + delta^2),
            # which matters only near the ~1e-30 floor.
            bound = 1e-9 * loss + gamma**2 * (2 * np.sqrt(loss) / gamma * delta + delta**2)
            diff = abs(loss - float(row["loss"]))
            worst["loss"] = max(worst["loss"], diff / bound)
            if loss > 1e-16 * gamma**2:
                worst_rel = max(worst_rel, diff / loss)
            tl = test_loss(w, d, rows, cols, M, gamma)
            worst["test_loss"] = max(worst["test_loss"], abs(tl - float(row["test_loss"])) / tl)
        if t == check_at:
            w_check = w.copy()
        if t < steps:
            w = (1.0 - lr * wd) * w - lr * g

    s_ref = jax_sharpness(w_check, d, rows, cols, m_obs, gamma)
    s_rel = abs(s_ref - sharp[check_at]) / abs(s_ref)

    ok = worst["loss"] <= 1.0 and worst["test_loss"] <= 1e-9 and s_rel <= 1e-8
    print(f"max relative train-loss discrepancy while L > 1e-16 gamma^2: {worst_rel:.3e}")
    print(f"max train-loss discrepancy / allowed bound: {worst['loss']:.3e} (must be <= 1)")
    print(f"max relative test-loss discrepancy: {worst['test_loss']:.3e} (tolerance 1e-9)")
    print(f"sharpness at step {check_at}: eosflow {sharp[check_at]!r}, JAX+eigsh {s_ref!r}, "
          f"relative {s_rel:.3e} (tolerance 1e-8)")
    print("crosscheck matcomp_bn:", "1 passed, 0 failed" if ok else "0 passed, 1 failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
