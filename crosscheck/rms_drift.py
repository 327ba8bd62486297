"""Independent numpy/scipy reference for the RMS-drift measurement (App. H.2).

Reads an eosflow linreg_bn run directory written with [drift] (config.toml,
metrics.csv, drift_cycles.csv) and checks, with its own formulas:

  * h of eq. (16) against linreg_bn's own h column (exact v1 of Lemma O.1):
    |drift_h| * eta = |h|;
  * u of eq. (16) from the eff_lr and phi_sharpness columns (lambda1 of
    Lemma O.1, not eosflow's Lanczos): u = ((2/lambda1)^2/eff_lr^2 - 1)/eta;
  * K from the closed form on linreg_bn's Gamma: lambda1 = lambda1(theta_M)/
    cos^2(beta), so ||grad_Gamma log lambda1|| = 2 tan(beta), with
    cos(beta) = 1 - ||phi - theta_M||^2/2 (unit vectors), on the steps where
    eosflow recomputed K (every k_every-th logged step);
  * the energy E = u^2/2 + K^2 h^2 - C_b log|h| from those;
  * each valid cycle's predicted period T(E) = 2 int dx / sqrt(2(E - U(x)))
    by scipy.integrate.quad with turning points from scipy.optimize.brentq
    (eosflow: Gauss-Legendre after a sine substitution).

Prints the largest discrepancies and exits 1 if any exceeds its tolerance.

Usage: python3 crosscheck/rms_drift.py RUN_DIR
"""

import csv
import math
import sys
import tomllib
from pathlib import Path

import numpy as np
from scipy import integrate, optimize


def period(k, c_b, e):
    u = lambda x: k * k * math.exp(2 * x) - c_b * x
    xs = 0.5 * math.log(c_b / (2 * k * k))
    if e <= u(xs):
        return float("nan")
    lo = xs - 1.0
    while u(lo) < e:
        lo -= 1.0
    hi = xs + 1.0
    while u(hi) < e:
        hi += 1.0
    a = optimize.brentq(lambda x: u(x) - e, lo, xs, xtol=1e-15, rtol=1e-15)
    b = optimize.brentq(lambda x: u(x) - e, xs, hi, xtol=1e-15, rtol=1e-15)
    f = lambda x: 1.0 / math.sqrt(max(2.0 * (e - u(x)), 1e-300))
    # quad handles the integrable 1/sqrt endpoint singularities (algebraic
    # weight through its QAGS extrapolation); split at the bottom of the well.
    left, _ = integrate.quad(f, a, xs, limit=400, epsabs=0, epsrel=1e-10)
    right, _ = integrate.quad(f, xs, b, limit=400, epsabs=0, epsrel=1e-10)
    return 2.0 * (left + right)


def main():
    run = Path(sys.argv[1])
    cfg = tomllib.loads((run / "config.toml").read_text())
    opt = cfg["optimizer"]
    eta_in = opt["lr"] * opt["wd"]
    eta, c_b = math.sqrt(2 * eta_in), 2.0
    k_every = cfg["drift"].get("k_every", 100)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    num = lambda r, c: float(r[c]) if r[c] not in ("", "NaN") else float("nan")
    worst = {"h": 0.0, "u": 0.0, "k": 0.0, "energy": 0.0, "period": 0.0}
    logged = 0
    for r in rows:
        h, dh = num(r, "h"), num(r, "drift_h")
        if not (math.isfinite(h) and math.isfinite(dh)):
            continue
        due = logged % k_every == 0
        logged += 1
        if abs(h) > 1e-9:
            worst["h"] = max(worst["h"], abs(abs(dh) * eta / abs(h) - 1.0))
        lam, eff = num(r, "phi_sharpness"), num(r, "eff_lr")
        u = ((2.0 / lam) ** 2 / eff**2 - 1.0) / eta
        worst["u"] = max(worst["u"], abs(u - num(r, "drift_u")) / max(1.0, abs(u)))
        if due:
            d = num(r, "phi_dist_m")
            cb = 1.0 - d * d / 2.0
            tb = math.sqrt(max(1.0 - cb * cb, 0.0)) / cb
            k = math.sqrt(2 * c_b + 4 * tb * tb)
            worst["k"] = max(worst["k"], abs(k / num(r, "drift_k") - 1.0))
            e = 0.5 * u * u + k * k * h * h / eta**2 - c_b * math.log(abs(h) / eta)
            worst["energy"] = max(worst["energy"], abs(e - num(r, "drift_energy")) / max(1.0, abs(e)))
    with open(run / "drift_cycles.csv") as f:
        cycles = [c for c in csv.DictReader(f) if c["valid"] == "true" and c["predicted_period_steps"]]
    for c in cycles:
        p = period(float(c["k"]), c_b, float(c["energy"])) / eta
        worst["period"] = max(worst["period"], abs(p / float(c["predicted_period_steps"]) - 1.0))
    # h: Lanczos's v1 against Lemma O.1's (tol 1e-11 on the eigenpair);
    # u: eff_lr and lambda1 through (2/lambda1)^2/eff^2 - 1 = O(eta u), so
    # rounding of ~1e-15 becomes 1e-15/eta; K: eosflow's ∇³L contraction and
    # projection against the closed form (1e-8 relative); E from them;
    # T(E): quad's 1e-10 against Gauss-Legendre's.
    tol = {"h": 1e-8, "u": 1e-9, "k": 1e-7, "energy": 1e-7, "period": 1e-7}
    failed = [w for w in worst if not worst[w] <= tol[w]]
    for w in worst:
        print(f"{w:>7}: worst relative difference {worst[w]:.3e} (tolerance {tol[w]:.0e})")
    print(f"{len(cycles)} cycles, {logged} measured steps")
    print(f"{0 if failed else 1} passed, {1 if failed else 0} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
