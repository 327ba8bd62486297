//! The PAC-Bayes bound of Thm C.2: with probability ≥ 1 − δ over a
//! training set S of n i.i.d. examples, for every θ ∈ S^{D−1} and every
//! σ ≤ σ_max = 1/(2 + 2√(ln n / D)),
//!
//! E_{ε∼N(0, σ²I/D)} L(θ + ε) − L_S(θ)
//!   ≤ (σ²/2)·λ1(∇²L_S(θ))                                   (sharpness)
//!   + (16σ³/3)·ρ3(L_S)·(1 + (ln n / D)^{3/2})                (third order)
//!   + ℓ_max·√((D/σ² + 2 ln(n/δ)) / (n − 1))                  (complexity)
//!
//! where λ1 is the spherical sharpness (Def. 1.1), ρ3(L_S) =
//! sup_{θ∈S^{D−1}} ‖∇³L_S(θ)‖₂ and ℓ_max = sup_{z, w∈S^{D−1}} ℓ(w, z).
//!
//! Two things decide whether a number from here means anything, and the
//! types say them: ρ3 is a supremum over the whole sphere, so only a
//! user-supplied value certifies the bound — [`Rho3::LowerEstimate`] (from
//! [`rho3_lower_estimate`]) gives a number that is not a bound; and the
//! generalization gap never exceeds ℓ_max, so a total ≥ ℓ_max (always the
//! case when n − 1 ≤ 4D, since D/σ² > 4D) is [`Verdict::Vacuous`].

use crate::linalg::{dot, norm};
use crate::objective::Hessian;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Where ρ3 came from.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Rho3 {
    /// A value the user vouches for (an analytic supremum): the bound is
    /// certified.
    Supplied(f64),
    /// The largest |∇³L_S(θ)[u, u, u]| found by sampling: a lower estimate
    /// of the supremum, so the "bound" is not certified.
    LowerEstimate(f64),
}

impl Rho3 {
    /// The number.
    pub fn value(self) -> f64 {
        match self {
            Self::Supplied(v) | Self::LowerEstimate(v) => v,
        }
    }
}

/// The quantities Thm C.2's bound is made of.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BoundInputs {
    /// λ1(∇²L_S(θ)) at θ = w/‖w‖ (the spherical sharpness).
    pub sharpness: f64,
    /// ρ3(L_S).
    pub rho3: Rho3,
    /// The training-set size n.
    pub n: u64,
    /// The dimension D of the sphere.
    pub dim: usize,
    /// The confidence parameter δ ∈ (0, 1).
    pub delta: f64,
    /// ℓ_max, +∞ when the per-example loss is unbounded.
    pub l_max: f64,
}

/// The bound's terms at one σ.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BoundTerms {
    /// σ, the perturbation's scale (ε ∼ N(0, σ²I/D), E‖ε‖² = σ²).
    pub sigma: f64,
    /// σ_max = 1/(2 + 2√(ln n / D)).
    pub sigma_max: f64,
    /// (σ²/2)·λ1.
    pub sharpness_term: f64,
    /// (16σ³/3)·ρ3·(1 + (ln n / D)^{3/2}).
    pub third_order_term: f64,
    /// ℓ_max·√((D/σ² + 2 ln(n/δ)) / (n − 1)).
    pub complexity_term: f64,
    /// Their sum: the bound on the generalization gap.
    pub total: f64,
    /// Whether the number says anything.
    pub verdict: Verdict,
}

/// Whether a bound is worth printing as a number.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// total < ℓ_max and ρ3 was supplied: a certified, non-trivial bound.
    Certified,
    /// total < ℓ_max but ρ3 is a lower estimate: the number is not a bound.
    NotCertified,
    /// total ≥ ℓ_max (the gap is at most ℓ_max anyway), or ℓ_max = ∞.
    Vacuous { reason: String },
}

/// Inputs outside the theorem.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BoundError {
    #[error("n = {0}: the bound needs at least 2 training examples")]
    TooFewExamples(u64),
    #[error("D = 0: the sphere needs at least one dimension")]
    ZeroDim,
    #[error("δ = {0} must be in (0, 1)")]
    Delta(f64),
    #[error("σ = {sigma} is outside Thm C.2's range (0, σ_max = {sigma_max:.6}] (σ_max = 1/(2 + 2√(ln n / D)))")]
    Sigma { sigma: f64, sigma_max: f64 },
    #[error("ρ3 = {0} must be ≥ 0 and finite")]
    Rho3(f64),
    #[error("λ1 = {0} must be finite")]
    Sharpness(f64),
    #[error("ℓ_max = {0} must be > 0 (+∞ for an unbounded loss)")]
    LMax(f64),
}

impl BoundInputs {
    fn check(&self) -> Result<(), BoundError> {
        if self.n < 2 {
            return Err(BoundError::TooFewExamples(self.n));
        }
        if self.dim == 0 {
            return Err(BoundError::ZeroDim);
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(BoundError::Delta(self.delta));
        }
        let r = self.rho3.value();
        if !(r >= 0.0 && r.is_finite()) {
            return Err(BoundError::Rho3(r));
        }
        if !self.sharpness.is_finite() {
            return Err(BoundError::Sharpness(self.sharpness));
        }
        if self.l_max.is_nan() || self.l_max <= 0.0 {
            return Err(BoundError::LMax(self.l_max));
        }
        Ok(())
    }

    /// ln n / D.
    fn log_n_over_d(&self) -> f64 {
        (self.n as f64).ln() / self.dim as f64
    }

    /// σ_max = 1/(2 + 2√(ln n / D)), the largest σ of Thm C.2 (its proof
    /// needs (1 + √(ln n / D))·σ ≤ 1/2 so that θ + ε stays at norm ≥ 1/2).
    pub fn sigma_max(&self) -> f64 {
        1.0 / (2.0 + 2.0 * self.log_n_over_d().sqrt())
    }

    /// The terms of the bound at σ.
    ///
    /// ```
    /// use eosflow::pac_bayes::{BoundInputs, Rho3, Verdict};
    /// let b = BoundInputs { sharpness: 10.0, rho3: Rho3::Supplied(1.0), n: 1_000_000, dim: 10, delta: 0.05, l_max: 1.0 };
    /// let t = b.terms(0.1).unwrap();
    /// assert!((t.sharpness_term - 0.05).abs() < 1e-15);
    /// assert!((t.total - (t.sharpness_term + t.third_order_term + t.complexity_term)).abs() < 1e-15);
    /// assert_eq!(t.verdict, Verdict::Certified);
    /// ```
    pub fn terms(&self, sigma: f64) -> Result<BoundTerms, BoundError> {
        self.check()?;
        let sigma_max = self.sigma_max();
        if !(sigma > 0.0 && sigma <= sigma_max) {
            return Err(BoundError::Sigma { sigma, sigma_max });
        }
        let (n, d) = (self.n as f64, self.dim as f64);
        let sharpness_term = 0.5 * sigma * sigma * self.sharpness;
        let third_order_term = 16.0 / 3.0 * sigma.powi(3) * self.rho3.value() * (1.0 + self.log_n_over_d().powf(1.5));
        let complexity_term = self.l_max * ((d / (sigma * sigma) + 2.0 * (n / self.delta).ln()) / (n - 1.0)).sqrt();
        let total = sharpness_term + third_order_term + complexity_term;
        let verdict = if self.l_max.is_infinite() {
            Verdict::Vacuous {
                reason: "ℓ_max = ∞: the per-example loss is unbounded, so is the complexity term".into(),
            }
        } else if total >= self.l_max {
            let why = if n - 1.0 <= 4.0 * d {
                format!(
                    "n − 1 = {} ≤ 4D = {}: the complexity term alone is ≥ ℓ_max at every admissible σ",
                    n - 1.0,
                    4.0 * d
                )
            } else {
                "the terms add up to more than the loss can differ".to_string()
            };
            Verdict::Vacuous { reason: format!("total {total:.4e} ≥ ℓ_max = {:.4e} ({why})", self.l_max) }
        } else if matches!(self.rho3, Rho3::Supplied(_)) {
            Verdict::Certified
        } else {
            Verdict::NotCertified
        };
        Ok(BoundTerms { sigma, sigma_max, sharpness_term, third_order_term, complexity_term, total, verdict })
    }

    /// The terms at the σ ∈ (0, σ_max] that minimises the total. For λ1 ≥ 0
    /// the total's derivative λ1σ + 16ρ3(1 + (ln n/D)^{3/2})σ² −
    /// ℓ_max·D/(σ²·√((n − 1)(D + 2σ² ln(n/δ)))) increases strictly in σ, so
    /// the minimiser is its root (found by bisection to rounding) or σ_max;
    /// with ℓ_max = ∞ the complexity term is infinite everywhere and σ_max
    /// is returned.
    pub fn minimise(&self) -> Result<BoundTerms, BoundError> {
        self.check()?;
        let sigma_max = self.sigma_max();
        if self.l_max.is_infinite() {
            return self.terms(sigma_max);
        }
        let (n, d) = (self.n as f64, self.dim as f64);
        let k = 2.0 * (n / self.delta).ln();
        let b = 16.0 * self.rho3.value() * (1.0 + self.log_n_over_d().powf(1.5));
        let deriv =
            |s: f64| self.sharpness * s + b * s * s - self.l_max * d / (s * s * ((n - 1.0) * (d + k * s * s)).sqrt());
        if self.sharpness < 0.0 {
            // Not monotone: a golden-section search on a fine log grid's best
            // bracket (λ1 < 0 is a saddle, not a minimiser; kept for
            // completeness).
            return self.terms(golden_on_log_grid(|s| self.terms(s).map_or(f64::INFINITY, |t| t.total), sigma_max));
        }
        if deriv(sigma_max) <= 0.0 {
            return self.terms(sigma_max);
        }
        // deriv → −∞ as σ → 0: bracket from below by halving.
        let mut lo = sigma_max;
        while deriv(lo) > 0.0 {
            lo *= 0.5;
        }
        let mut hi = lo * 2.0;
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            if deriv(mid) > 0.0 { hi = mid } else { lo = mid }
        }
        self.terms(0.5 * (lo + hi))
    }
}

fn golden_on_log_grid(f: impl Fn(f64) -> f64, hi: f64) -> f64 {
    let grid: Vec<f64> = (0..=400).map(|i| hi * 10f64.powf(-8.0 * (1.0 - i as f64 / 400.0))).collect();
    let best = (0..grid.len()).min_by(|&a, &b| f(grid[a]).total_cmp(&f(grid[b]))).unwrap_or(grid.len() - 1);
    let (mut a, mut b) = (grid[best.saturating_sub(1)], grid[(best + 1).min(grid.len() - 1)]);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..100 {
        let (c, e) = (b - g * (b - a), a + g * (b - a));
        if f(c) < f(e) { b = e } else { a = c }
    }
    0.5 * (a + b)
}

/// Settings of [`rho3_lower_estimate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Rho3Params {
    /// Random starting directions u per point.
    pub restarts: usize,
    /// Power iterations per start.
    pub iterations: usize,
    /// Random points of the sphere (uniform: normalised Gaussians) searched
    /// after the given ones: ρ3 is a supremum over all of the sphere, and
    /// near a trained θ the third derivative can be small.
    pub random_points: usize,
    /// Seed of the ChaCha8 stream of the points and directions.
    pub seed: u64,
}

impl Default for Rho3Params {
    fn default() -> Self {
        Self { restarts: 4, iterations: 30, random_points: 0, seed: 0 }
    }
}

/// What [`rho3_lower_estimate`] found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Rho3Estimate {
    /// max over the points and starts of |∇³L(θ)[u, u, u]|, ‖u‖ = ‖θ‖ = 1:
    /// ≤ ‖∇³L(θ)‖₂ ≤ ρ3 (for a symmetric tensor the spectral norm is the
    /// largest |T[u, u, u]|, Banach 1938), so a lower estimate of ρ3.
    pub value: f64,
    /// The point (index into the points given) where it was found.
    pub at_point: usize,
    /// Per point, its best value.
    pub per_point: Vec<f64>,
    /// ∇³L contractions used.
    pub contractions: usize,
}

/// A lower estimate of ρ3 = sup_{θ∈S^{D−1}} ‖∇³L(θ)‖₂ by the symmetric
/// higher-order power method u ← ∇³L(θ)[u, u, ·]/‖·‖ (each iterate's
/// |T[u, u, u]| is a valid lower value; the best is kept) at each of
/// `points`, normalised onto the sphere, then at `params.random_points`
/// random points (listed after the given ones in `per_point`).
///
/// ```
/// use eosflow::pac_bayes::{rho3_lower_estimate, Rho3Params};
/// use eosflow::problems::Toy3d;
/// let p = Toy3d::new(0);
/// let e = rho3_lower_estimate(&p, &[vec![0.3, 1.3, 1.2]], &Rho3Params::default());
/// assert!(e.value > 0.0 && e.value.is_finite());
/// ```
pub fn rho3_lower_estimate(h: &dyn Hessian, points: &[Vec<f64>], params: &Rho3Params) -> Rho3Estimate {
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut per_point = Vec::with_capacity(points.len() + params.random_points);
    let mut contractions = 0;
    let mut random = Vec::with_capacity(params.random_points);
    for _ in 0..params.random_points {
        random.push((0..h.dim()).map(|_| StandardNormal.sample(&mut rng)).collect::<Vec<f64>>());
    }
    for p in points.iter().chain(&random) {
        let n = norm(p);
        let theta: Vec<f64> = p.iter().map(|x| x / n).collect();
        let d = theta.len();
        let mut best = 0.0f64;
        let mut t = vec![0.0; d];
        for _ in 0..params.restarts.max(1) {
            let mut u: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
            let nu = norm(&u);
            u.iter_mut().for_each(|x| *x /= nu);
            for _ in 0..params.iterations.max(1) {
                h.third_contraction(&theta, &u, &mut t);
                contractions += 1;
                let value = dot(&u, &t);
                if value.is_finite() {
                    best = best.max(value.abs());
                }
                let nt = norm(&t);
                if !(nt > 0.0 && nt.is_finite()) {
                    break;
                }
                // The sign keeps the iteration on one of ±u (T[−u,−u,·] = T[u,u,·]).
                let s = if value < 0.0 { -1.0 } else { 1.0 };
                u.iter_mut().zip(&t).for_each(|(ui, ti)| *ui = s * ti / nt);
            }
        }
        per_point.push(best);
    }
    let (at_point, value) =
        per_point.iter().copied().enumerate().fold((0, 0.0), |acc, (i, v)| if v > acc.1 { (i, v) } else { acc });
    Rho3Estimate { value, at_point, per_point, contractions }
}
