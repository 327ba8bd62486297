//! Spectral estimators on any [`LinOp`] (a Hessian, a principal sub-block
//! of one through [`super::Restricted`], a plain matrix): the bottom of the
//! spectrum by Lanczos, the trace by Hutchinson and Hutch++ with standard
//! errors, and the spectral density by stochastic Lanczos quadrature (SLQ).
//! Every estimate is seeded (ChaCha8), so it is reproducible bit for bit,
//! and says how many operator applications (HVPs) it used.

use super::lanczos::cgs2;
use super::{LanczosError, LanczosParams, LanczosResult, LinOp, lanczos_top};
use crate::linalg::{axpy, dot, norm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Errors of the estimators: settings that cannot give an estimate.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpectrumError {
    /// Too few probes for the estimator.
    #[error("{estimator}: probes = {probes}; it needs at least {min} (and Hutch++ a multiple of 3)")]
    Probes { estimator: &'static str, probes: usize, min: usize },
    /// SLQ needs at least one Lanczos step.
    #[error("SLQ: steps = 0; set steps to the Lanczos steps per probe (e.g. 80)")]
    Steps,
    /// The broadening width must be positive.
    #[error("SLQ: sigma = {0} must be positive and finite (a fraction of the spectral range, e.g. 0.01)")]
    Sigma(f64),
    /// The operator has dimension 0.
    #[error("the operator has dimension 0")]
    Empty,
    /// The operator returned NaN or Inf.
    #[error("the operator returned a non-finite value after {matvecs} applications")]
    NonFinite { matvecs: usize },
}

/// The operator −A: Lanczos for the largest algebraic eigenvalues of −A
/// gives the smallest of A.
struct Negated<'a>(&'a dyn LinOp);

impl LinOp for Negated<'_> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.0.apply(x, y);
        y.iter_mut().for_each(|v| *v = -*v);
    }
}

/// The k smallest *algebraic* eigenpairs (ascending), by [`lanczos_top`] on
/// −A; the residuals are those of A.
///
/// ```
/// use eosflow::spectrum::{DenseSymmetric, LanczosParams, lanczos_bottom};
/// let a = DenseSymmetric::new(3, vec![3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -5.0]);
/// let r = lanczos_bottom(&a, &LanczosParams { k: 2, ..Default::default() }, None).unwrap();
/// assert!((r.eigenvalues[0] + 5.0).abs() < 1e-12 && (r.eigenvalues[1] - 1.0).abs() < 1e-12);
/// ```
pub fn lanczos_bottom(
    op: &dyn LinOp,
    params: &LanczosParams,
    start: Option<&[f64]>,
) -> Result<LanczosResult, LanczosError> {
    let mut r = lanczos_top(&Negated(op), params, start)?;
    r.eigenvalues.iter_mut().for_each(|v| *v = -*v);
    Ok(r)
}

/// Settings of [`hutchinson`] and [`hutch_pp`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceParams {
    /// Operator applications in all (Hutch++: a multiple of 3).
    pub probes: usize,
    /// Seed of the ChaCha8 stream of the Rademacher probes.
    pub seed: u64,
}

impl Default for TraceParams {
    fn default() -> Self {
        Self { probes: 30, seed: 0 }
    }
}

impl TraceParams {
    /// These settings with `probes` capped at 3·max(n, 2) for an operator
    /// of dimension n: there Hutch++'s sketch spans the whole space and the
    /// trace is exact, so more applications add nothing.
    pub fn capped(&self, n: usize) -> Self {
        Self { probes: self.probes.min(3 * n.max(2)), ..self.clone() }
    }
}

/// A trace estimate with its standard error.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceEstimate {
    /// The estimate of tr(A).
    pub estimate: f64,
    /// Its standard error: the sample standard deviation of the random part
    /// over √(its probes).
    pub std_error: f64,
    /// Operator applications used.
    pub matvecs: usize,
}

/// A Rademacher vector (entries ±1).
fn rademacher(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 }).collect()
}

fn apply_checked(op: &dyn LinOp, x: &[f64], y: &mut [f64], matvecs: &mut usize) -> Result<(), SpectrumError> {
    op.apply(x, y);
    *matvecs += 1;
    if y.iter().all(|v| v.is_finite()) { Ok(()) } else { Err(SpectrumError::NonFinite { matvecs: *matvecs }) }
}

/// Mean and standard error of the mean of `samples`.
fn mean_and_error(samples: &[f64]) -> (f64, f64) {
    let m = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / m;
    if samples.len() < 2 {
        return (mean, f64::INFINITY);
    }
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (m - 1.0);
    (mean, (var / m).sqrt())
}

/// Hutchinson's estimator: tr(A) ≈ (1/m) Σ zᵢᵀA zᵢ with Rademacher zᵢ
/// (unbiased; variance 2(‖A‖_F² − Σ a_ii²)/m).
///
/// ```
/// use eosflow::spectrum::{DenseSymmetric, TraceParams, hutchinson};
/// // A diagonal matrix: every Rademacher probe gives its trace exactly.
/// let a = DenseSymmetric::new(2, vec![2.0, 0.0, 0.0, 5.0]);
/// let t = hutchinson(&a, &TraceParams { probes: 4, seed: 1 }).unwrap();
/// assert_eq!(t.estimate, 7.0);
/// assert_eq!(t.std_error, 0.0);
/// ```
pub fn hutchinson(op: &dyn LinOp, params: &TraceParams) -> Result<TraceEstimate, SpectrumError> {
    let n = op.dim();
    if n == 0 {
        return Err(SpectrumError::Empty);
    }
    if params.probes < 2 {
        return Err(SpectrumError::Probes { estimator: "Hutchinson", probes: params.probes, min: 2 });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut y = vec![0.0; n];
    let mut matvecs = 0;
    let mut samples = Vec::with_capacity(params.probes);
    for _ in 0..params.probes {
        let z = rademacher(&mut rng, n);
        apply_checked(op, &z, &mut y, &mut matvecs)?;
        samples.push(dot(&z, &y));
    }
    let (estimate, std_error) = mean_and_error(&samples);
    Ok(TraceEstimate { estimate, std_error, matvecs })
}

/// Hutch++ (Meyer, Musco, Musco & Woodruff 2021) with m = `probes`
/// applications: Q = orth(A·S) for k = m/3 Rademacher columns S, then
/// tr(A) ≈ tr(QᵀAQ) + (1/k) Σ gᵢᵀ(I − QQᵀ)A(I − QQᵀ)gᵢ — exact on the top
/// of a low-rank-plus-noise spectrum, Hutchinson on the rest. The standard
/// error is the random part's.
///
/// ```
/// use eosflow::spectrum::{DenseSymmetric, TraceParams, hutch_pp};
/// // Rank 1: Q captures A exactly and the residual part is 0.
/// let a = DenseSymmetric::new(2, vec![1.0, 2.0, 2.0, 4.0]);
/// let t = hutch_pp(&a, &TraceParams { probes: 6, seed: 0 }).unwrap();
/// assert!((t.estimate - 5.0).abs() < 1e-12);
/// ```
pub fn hutch_pp(op: &dyn LinOp, params: &TraceParams) -> Result<TraceEstimate, SpectrumError> {
    let n = op.dim();
    if n == 0 {
        return Err(SpectrumError::Empty);
    }
    if params.probes < 6 || !params.probes.is_multiple_of(3) {
        return Err(SpectrumError::Probes { estimator: "Hutch++", probes: params.probes, min: 6 });
    }
    let k = params.probes / 3;
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut matvecs = 0;
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(k);
    for _ in 0..k {
        let s = rademacher(&mut rng, n);
        let mut y = vec![0.0; n];
        apply_checked(op, &s, &mut y, &mut matvecs)?;
        let before = norm(&y);
        cgs2(&q, &mut y);
        let after = norm(&y);
        // Columns A·s already in span(Q) (rank below k) add nothing.
        if after > 1e-12 * before.max(f64::MIN_POSITIVE) {
            y.iter_mut().for_each(|v| *v /= after);
            q.push(y);
        }
    }
    let mut y = vec![0.0; n];
    let mut low_rank = 0.0;
    for qi in &q {
        apply_checked(op, qi, &mut y, &mut matvecs)?;
        low_rank += dot(qi, &y);
    }
    // Skipped columns still cost their application: keep m in all.
    matvecs += k - q.len();
    let mut samples = Vec::with_capacity(k);
    for _ in 0..k {
        let mut g = rademacher(&mut rng, n);
        for qi in &q {
            let c = dot(qi, &g);
            axpy(-c, qi, &mut g);
        }
        apply_checked(op, &g, &mut y, &mut matvecs)?;
        samples.push(dot(&g, &y));
    }
    let (rest, std_error) = mean_and_error(&samples);
    Ok(TraceEstimate { estimate: low_rank + rest, std_error, matvecs })
}

/// Settings of [`slq`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlqParams {
    /// Random unit start vectors (Rademacher/√n).
    pub probes: usize,
    /// Lanczos steps per probe (capped at the dimension).
    pub steps: usize,
    /// Seed of the ChaCha8 stream of the probes.
    pub seed: u64,
    /// Gaussian broadening width as a fraction of the spectral range
    /// [min node, max node] (Ghorbani et al. 2019 use ~1e-2 of it).
    pub sigma: f64,
    /// Points of the density grid, spread over the range widened by 5σ.
    pub grid: usize,
}

impl Default for SlqParams {
    fn default() -> Self {
        Self { probes: 10, steps: 80, seed: 0, sigma: 0.01, grid: 1000 }
    }
}

/// One probe's Gauss quadrature: vᵀ f(A) v ≈ Σ_j weights[j]·f(nodes[j]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Quadrature {
    /// The Ritz values θ_j of the probe's Lanczos tridiagonal matrix.
    pub nodes: Vec<f64>,
    /// τ_j = (first component of its j-th eigenvector)², summing to 1.
    pub weights: Vec<f64>,
}

/// The Gauss quadrature of one start vector v (‖v‖ = 1): m = `steps`
/// (≤ n) Lanczos steps with full reorthogonalisation give the tridiagonal
/// T_m = S Θ Sᵀ, and vᵀ p(A) v = Σ_j s_{1j}² p(θ_j) for every polynomial of
/// degree ≤ 2m − 1. Stops early, exactly, where the Krylov space closes.
/// Returns the quadrature and the operator applications used.
///
/// ```
/// use eosflow::spectrum::{DenseSymmetric, lanczos_quadrature};
/// let a = DenseSymmetric::new(2, vec![2.0, 1.0, 1.0, 2.0]);
/// let v = [1.0, 0.0];
/// let (q, _) = lanczos_quadrature(&a, &v, 2).unwrap();
/// // vᵀA²v = 5: exact for degree ≤ 3.
/// let m2: f64 = q.nodes.iter().zip(&q.weights).map(|(t, w)| w * t * t).sum();
/// assert!((m2 - 5.0).abs() < 1e-12);
/// ```
pub fn lanczos_quadrature(op: &dyn LinOp, v: &[f64], steps: usize) -> Result<(Quadrature, usize), SpectrumError> {
    let n = op.dim();
    if n == 0 {
        return Err(SpectrumError::Empty);
    }
    if steps == 0 {
        return Err(SpectrumError::Steps);
    }
    let m = steps.min(n);
    let mut matvecs = 0;
    let mut basis: Vec<Vec<f64>> = vec![v.to_vec()];
    let (mut alpha, mut beta) = (Vec::with_capacity(m), Vec::with_capacity(m));
    let mut w = vec![0.0; n];
    let mut scale = 0.0f64;
    for j in 0..m {
        apply_checked(op, &basis[j], &mut w, &mut matvecs)?;
        let a = dot(&basis[j], &w);
        alpha.push(a);
        scale = scale.max(norm(&w));
        // Full reorthogonalisation against every basis vector (CGS2):
        // without it Ritz values repeat ("ghost" eigenvalues) and the
        // weights are wrong.
        let mut r = w.clone();
        cgs2(&basis, &mut r);
        let b = norm(&r);
        if j + 1 == m || b <= 1e-12 * scale {
            break;
        }
        beta.push(b);
        r.iter_mut().for_each(|x| *x /= b);
        basis.push(r);
    }
    let (nodes, vecs) = super::tridiagonal_eigen(&alpha, &beta);
    let weights = vecs.iter().map(|s| s[0] * s[0]).collect();
    Ok((Quadrature { nodes, weights }, matvecs))
}

/// What [`slq`] found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SpectralDensity {
    /// Per probe, its nodes and weights.
    pub quadratures: Vec<Quadrature>,
    /// The grid t_i.
    pub grid: Vec<f64>,
    /// φ(t_i) = (1/probes) Σ_probes Σ_j τ_j·g_σ(t_i − θ_j), g_σ the unit
    /// Gaussian of width σ (absolute): a density of the eigenvalues of A
    /// normalised to integrate to 1 (Lin, Saad & Yang 2016).
    pub density: Vec<f64>,
    /// The absolute broadening width used.
    pub sigma: f64,
    /// Operator applications used.
    pub matvecs: usize,
}

/// Stochastic Lanczos quadrature: for each probe v (‖v‖ = 1), m steps of
/// Lanczos with full reorthogonalisation give T_m = S Θ Sᵀ, and
/// vᵀ f(A) v ≈ Σ_j s_{1j}² f(θ_j), exact for polynomials of degree ≤ 2m − 1
/// (Gauss quadrature). Averaged over probes, Σ_j τ_j δ(t − θ_j) estimates
/// the spectral density (1/n) Σ_i δ(t − λ_i); broadened by a Gaussian of
/// width σ·(θ_max − θ_min) it is drawn on a grid. A probe whose Krylov
/// space closes early (β = 0) stops there: its quadrature is then exact.
///
/// ```
/// use eosflow::spectrum::{DenseSymmetric, SlqParams, slq};
/// let a = DenseSymmetric::new(3, vec![1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 4.0]);
/// let d = slq(&a, &SlqParams { probes: 2, steps: 3, ..Default::default() }).unwrap();
/// // Three steps span R³: every probe finds the three eigenvalues.
/// let mut nodes = d.quadratures[0].nodes.clone();
/// nodes.sort_by(f64::total_cmp);
/// assert!((nodes[0] - 1.0).abs() < 1e-12 && (nodes[2] - 4.0).abs() < 1e-12);
/// // Each probe's weights sum to 1; for ±1/√3 probes they are 1/3 each.
/// assert!(d.quadratures[0].weights.iter().all(|w| (w - 1.0 / 3.0).abs() < 1e-12));
/// ```
pub fn slq(op: &dyn LinOp, params: &SlqParams) -> Result<SpectralDensity, SpectrumError> {
    let n = op.dim();
    if n == 0 {
        return Err(SpectrumError::Empty);
    }
    if params.probes == 0 {
        return Err(SpectrumError::Probes { estimator: "SLQ", probes: 0, min: 1 });
    }
    if params.steps == 0 {
        return Err(SpectrumError::Steps);
    }
    if !(params.sigma > 0.0 && params.sigma.is_finite()) {
        return Err(SpectrumError::Sigma(params.sigma));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut matvecs = 0;
    let mut quadratures = Vec::with_capacity(params.probes);
    for _ in 0..params.probes {
        let mut v = rademacher(&mut rng, n);
        let nv = norm(&v);
        v.iter_mut().for_each(|x| *x /= nv);
        let (q, used) = lanczos_quadrature(op, &v, params.steps)?;
        matvecs += used;
        quadratures.push(q);
    }
    let lo = quadratures.iter().flat_map(|q| q.nodes.iter().copied()).fold(f64::INFINITY, f64::min);
    let hi = quadratures.iter().flat_map(|q| q.nodes.iter().copied()).fold(f64::NEG_INFINITY, f64::max);
    let sigma = params.sigma * (hi - lo).max(f64::MIN_POSITIVE.max(1e-12 * hi.abs().max(lo.abs())));
    let points = params.grid.max(2);
    let (g0, g1) = (lo - 5.0 * sigma, hi + 5.0 * sigma);
    let grid: Vec<f64> = (0..points).map(|i| g0 + (g1 - g0) * i as f64 / (points - 1) as f64).collect();
    let norm_c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt() * params.probes as f64);
    let density = grid
        .iter()
        .map(|&x| {
            quadratures
                .iter()
                .flat_map(|q| q.nodes.iter().zip(&q.weights))
                .map(|(th, tau)| tau * (-0.5 * ((x - th) / sigma).powi(2)).exp())
                .sum::<f64>()
                * norm_c
        })
        .collect();
    Ok(SpectralDensity { quadratures, grid, density, sigma, matvecs })
}
