"""A scale-invariant MLP in JAX, trained full-batch with GD+WD on eosflow's
built-in 8×8 digits, with eosflow.EoSMonitor attached: the sharpness rises
until 2/η̃ meets it (the Edge of Stability), then falls while the loss stays
fitted — the sharpness reduction of Section 4, in your own training loop.

    python python/examples/monitor_digits_jax.py [--steps N] [--out DIR]

Writes a run directory (metrics.csv, sharpness.csv, summary.json,
figures/overview.png; `eosflow plot DIR` redraws it) and monitor_digits.png.
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)  # eosflow computes in float64
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import eosflow  # noqa: E402
import eosflow.jax  # noqa: E402

GAMMA = 0.3 * np.log(91.0)  # the final BN's fixed γ: label smoothing ε = 0.1 (App. R.2)


def init(key, sizes):
    """Flat parameters of Linear layers without bias (each followed by BN)."""
    keys = jax.random.split(key, len(sizes) - 1)
    ws = [jax.random.normal(k, (m, n)) / np.sqrt(m) for k, m, n in zip(keys, sizes[:-1], sizes[1:])]
    return jnp.concatenate([w.reshape(-1) for w in ws])


def make_loss(x, y, sizes):
    """Cross-entropy of Linear → BN → swish blocks, a final Linear → BN(γ
    fixed, β = 0): every weight matrix feeds a BN, so L(c·w) = L(w) (the
    paper's scale-invariant setting, Def. 1.1)."""
    shapes = list(zip(sizes[:-1], sizes[1:]))

    def bn(z):
        return (z - z.mean(0)) / jnp.sqrt(z.var(0) + 1e-12)

    def loss(w):
        h, i = x, 0
        for j, (m, n) in enumerate(shapes):
            wl = w[i:i + m * n].reshape(m, n)
            i += m * n
            h = bn(h @ wl)
            h = jax.nn.swish(h) if j < len(shapes) - 1 else GAMMA * h
        return jnp.mean(jax.nn.logsumexp(h, axis=1) - h[jnp.arange(len(y)), y])

    return loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--out", default="runs/monitor-digits")
    ap.add_argument("--figure", default="monitor_digits.png")
    args = ap.parse_args()

    data = eosflow.datasets.load_digits(train_per_class=50)
    x = jnp.asarray(data["x_train"].reshape(len(data["y_train"]), -1))
    y = jnp.asarray(data["y_train"])
    sizes = [64, 32, 32, 10]
    loss = make_loss(x, y, sizes)
    loss_and_grad = eosflow.jax.loss_and_grad(loss)
    hvp = eosflow.jax.hvp(loss)
    lr, wd = 0.02, 0.05  # η_in = η̂λ̂ = 1e-3
    w = np.asarray(init(jax.random.PRNGKey(0), sizes))

    t0 = time.perf_counter()
    with eosflow.EoSMonitor(lr, wd, hvp, w.size, args.out, every=args.every, tol=1e-8, steps=args.steps,
                            log_every=10, name="monitor-digits", source="jax", force=True) as mon:
        for _ in range(args.steps + 1):
            l, g = loss_and_grad(w)
            rec = mon.observe(w, l, g)
            if rec["sharpness"] is not None and rec["step"] % (10 * args.every) == 0:
                print(f"step {rec['step']:6d}  loss {l:.4e}  sharpness {rec['sharpness']:9.3f}  "
                      f"2/eta~ {rec['two_over_eff_lr']:9.3f}  {rec['regime']}")
            w = (1 - lr * wd) * w - lr * g
    run = mon.close()
    s = run.summary
    print(f"{args.steps} steps in {time.perf_counter() - t0:.1f} s; EoS entry step {s['eos_entry_step']}; "
          f"sharpness max {s['max_sharpness']:.2f}, final {s['final_sharpness']:.2f}; run directory {run.dir}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, sh = run.metrics, run.sharpness
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    a.semilogy(m["step"], m["loss"], lw=1)
    a.set(xlabel="step", ylabel="train loss (cross-entropy)", title="(a) loss")
    b.semilogy(sh["step"], sh["sharpness"], "o-", ms=3, label="spherical sharpness λ1(θ_t)")
    b.semilogy(m["step"], m["two_over_eff_lr"], lw=1, label="2/η̃_t")
    b.set(xlabel="step", title="(b) sharpness meets 2/η̃, then falls")
    b.legend(loc="upper right", frameon=False)
    fig.savefig(args.figure, dpi=120)
    print("figure:", args.figure)


if __name__ == "__main__":
    main()
