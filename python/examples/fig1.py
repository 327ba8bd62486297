"""The paper's Figure 1 from Python: eosflow runs the matrix-completion
experiment (App. P.1; 50,000 steps of GD+WD in about 2 s) and matplotlib
draws it from the returned numpy arrays.

    python python/examples/fig1.py [--steps N] [--out DIR] [--figure FILE]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import eosflow  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's 50,000")
    ap.add_argument("--out", default="runs/fig1-python")
    ap.add_argument("--figure", default="fig1_python.png")
    args = ap.parse_args()

    run = eosflow.reproduce("fig1", args.out, steps=args.steps, force=True)
    m, s = run.metrics, run.sharpness
    print(run)
    print({k: run.summary["problem"][k] for k in ("test_loss_final", "sv2_over_sv3_final")})

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    ax[0].semilogy(m["step"], m["loss"], lw=1, label="train loss")
    ax[0].semilogy(m["step"], m["test_loss"], lw=1, label="test loss (all entries)")
    ax[0].set(xlabel="step", title="(a) fitting, then recovering M")
    ax[0].legend(loc="lower left", frameon=False)
    ax[1].semilogy(s["step"], s["sharpness"], lw=1, label="spherical sharpness")
    ax[1].semilogy(m["step"], m["two_over_eff_lr"], lw=1, label="2/η̃_t")
    ax[1].set(xlabel="step", ylim=(5, 5 * s["sharpness"].max()), title="(b) EoS, then sharpness reduction")
    ax[1].legend(loc="lower left", frameon=False)
    ax[2].semilogy(m["step"], m["eff_lr"], lw=1)
    ax[2].set(xlabel="step", ylabel="η̃_t", title="(c) effective LR (Lemma 3.1)")
    for a in ax:  # fitting, EoS entry and the slow reduction span three decades of steps
        a.set_xscale("symlog", linthresh=100)
        a.set_xlim(0, m["step"][-1])
    fig.savefig(args.figure, dpi=120)
    print("figure:", args.figure)


if __name__ == "__main__":
    main()
