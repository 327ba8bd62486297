//! Linear regression with Batch Normalization (Section 5, App. O, Q.2).

use super::{Problem, StepView, Tracker, TrackerStateError};
use crate::eos::{EosEntry, EosEntryRule};
use crate::linalg::{axpy, dot, lstsq, norm, normalize, symmetric_eigen};
use crate::manifold::{OscillationTracker, distance};
use crate::objective::{Counted, Hessian, Objective};
use crate::optim::Evaluation;
use crate::run::Column;
use crate::spectrum::LinOp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use serde_json::json;

/// The data of a regression problem: inputs row-major n×d, targets, an
/// optional held-out set, and (for generated data) the ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct LinregData {
    /// Input dimension d.
    pub d: usize,
    /// Training inputs, n×d row-major.
    pub x: Vec<f64>,
    /// Training targets, length n.
    pub y: Vec<f64>,
    /// Held-out inputs, row-major (possibly empty).
    pub x_test: Vec<f64>,
    /// Held-out targets.
    pub y_test: Vec<f64>,
    /// The generating model, when known.
    pub truth: Option<GroundTruth>,
}

/// y = w_GTᵀx + b_GT with x ~ N(0, diag(sigma_diag)).
#[derive(Clone, Debug, PartialEq)]
pub struct GroundTruth {
    pub w: Vec<f64>,
    pub b: f64,
    /// The population covariance's diagonal (x has mean 0).
    pub sigma_diag: Vec<f64>,
}

impl LinregData {
    /// App. Q.2's data: w_GT uniform on S^{d−1}, b_GT ~ N(0, 0.01) (variance),
    /// x ~ N(0, Σ) with Σ = diag(1/d, 2/d, …, 1), y = w_GTᵀx + b_GT; n
    /// training and n_test held-out points, all from one ChaCha8 stream.
    pub fn generate(d: usize, n: usize, n_test: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        normalize(&mut w);
        let b: f64 = StandardNormal.sample(&mut rng);
        let b = 0.1 * b;
        let sigma_diag: Vec<f64> = (1..=d).map(|j| j as f64 / d as f64).collect();
        let mut sample = |m: usize| {
            let mut x = Vec::with_capacity(m * d);
            let mut y = Vec::with_capacity(m);
            for _ in 0..m {
                let row: Vec<f64> = sigma_diag
                    .iter()
                    .map(|s| {
                        let g: f64 = StandardNormal.sample(&mut rng);
                        s.sqrt() * g
                    })
                    .collect();
                y.push(dot(&w, &row) + b);
                x.extend(row);
            }
            (x, y)
        };
        let (x, y) = sample(n);
        let (x_test, y_test) = sample(n_test);
        Self { d, x, y, x_test, y_test, truth: Some(GroundTruth { w, b, sigma_diag }) }
    }

    /// Number of training points.
    pub fn n(&self) -> usize {
        self.y.len()
    }
}

/// What can be wrong with regression data.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LinregError {
    #[error("linreg_bn: x has {len} values, not a multiple of d = {d} (expected n×d with n = len(y) = {n})")]
    Shape { len: usize, d: usize, n: usize },
    #[error("linreg_bn: {what} has {got} rows but {expected} targets")]
    Rows { what: &'static str, got: usize, expected: usize },
    #[error("linreg_bn: need at least 2 training points (got {0})")]
    TooFew(usize),
    #[error("linreg_bn: the training targets are constant (σ_y = 0); BN's γ = σ_y would be 0")]
    ConstantTargets,
    #[error("linreg_bn: {0} contains NaN or Inf")]
    NonFinite(&'static str),
    #[error("linreg_bn: all training inputs are identical, so wᵀx has zero variance for every w")]
    DegenerateInputs,
}

/// The geometry of Γ for interpolating data (d ≥ n − 1).
#[derive(Clone, Debug)]
struct Gamma {
    /// Orthonormal basis of the row space of X̃ (centred inputs).
    basis: Vec<Vec<f64>>,
    /// The min-norm w with X̃w = q (‖w_M‖_Σ = 1).
    w_m: Vec<f64>,
    /// θ_M = w_M/‖w_M‖, the flattest point of Γ (Thm 5.1).
    theta_m: Vec<f64>,
}

/// Moments of the held-out set, so its MSE costs O(d²) per call instead of
/// O(m·d): with a linear predictor w̃ᵀx + b̃,
/// mean((w̃ᵀx + b̃ − y)²) = w̃ᵀM₂w̃ + 2b̃·w̃ᵀm_x − 2w̃ᵀm_xy + b̃² − 2b̃·m_y + m_yy.
#[derive(Clone, Debug)]
struct TestMoments {
    m2: Vec<f64>,
    mx: Vec<f64>,
    mxy: Vec<f64>,
    my: f64,
    myy: f64,
}

impl TestMoments {
    fn new(d: usize, x: &[f64], y: &[f64]) -> Option<Self> {
        let m = y.len();
        if m == 0 {
            return None;
        }
        let mf = m as f64;
        let mut t = TestMoments { m2: vec![0.0; d * d], mx: vec![0.0; d], mxy: vec![0.0; d], my: 0.0, myy: 0.0 };
        for i in 0..m {
            let r = &x[i * d..(i + 1) * d];
            axpy(1.0 / mf, r, &mut t.mx);
            axpy(y[i] / mf, r, &mut t.mxy);
            for a in 0..d {
                axpy(r[a] / mf, r, &mut t.m2[a * d..(a + 1) * d]);
            }
            t.my += y[i] / mf;
            t.myy += y[i] * y[i] / mf;
        }
        Some(t)
    }

    fn mse(&self, wt: &[f64], b: f64) -> f64 {
        let d = wt.len();
        let quad: f64 = (0..d).map(|a| wt[a] * dot(&self.m2[a * d..(a + 1) * d], wt)).sum();
        let v = quad + 2.0 * b * dot(wt, &self.mx) - 2.0 * dot(wt, &self.mxy) + b * b - 2.0 * b * self.my + self.myy;
        v.max(0.0)
    }
}

/// ChaCha8 stream of the initial weights (the data use stream 0).
pub const INIT_STREAM: u64 = 1;

/// Init of the weights (the paper does not say; ours is PyTorch's
/// `nn.Linear` default).
#[derive(Clone, Debug, PartialEq)]
pub enum LinregInit {
    /// w0 ~ U(−1/√d, 1/√d)^d.
    Uniform,
    /// w0 ~ N(0, std²)^d.
    Gaussian { std: f64 },
}

/// L(w) = (1/n)Σ(Φ(x_i; w) − y_i)² with the BN-linear model of eq. (4),
/// Φ(x; w) = σ_y·(wᵀx − μ)/σ + μ_y, μ and σ the mean and (biased) standard
/// deviation of {wᵀx_i} over the training set, γ = σ_y and β = μ_y fixed.
///
/// With centred inputs x̃_i = x_i − μ_x, a = X̃w, s = ‖w‖_Σ = √(aᵀa/n),
/// u = a/s and q_i = (y_i − μ_y)/σ_y, the residuals are Φ(x_i) − y_i =
/// σ_y·e_i with e = u − q, so
///
/// L = σ_y²·eᵀe/n,   ∇L = (2σ_y²/(n·s))·X̃ᵀ(e − c·u),  c = eᵀu/n.
///
/// The loss is summed from the residuals e_i themselves, which reach
/// 1e-16 on Γ, so L reaches ~1e-32 (the expanded 2σ_y²(1 − ⟨u,q⟩/n) would
/// floor at 1e-16). The HVP is the exact directional derivative of ∇L
/// (see [`LinregBn::hvp`]); everything costs O(nd).
///
/// Γ (Lemma O.1) = {w ∈ S^{d−1} : X̃w = ‖w‖_Σ·q} is the unit sphere
/// intersected with the subspace V = ker X̃ ⊕ span(w_M) (the half with a
/// positive w_M component), where w_M is the min-norm solution of X̃w = q:
/// any w ∈ V has X̃w = t·q, and then ‖w‖_Σ² = t²‖q‖²/n = t². So the nearest
/// point of Γ to a unit θ is Π(P_V θ) — the projection onto a great
/// subsphere — with P_V θ = θ − BBᵀθ + (⟨θ, w_M⟩/‖w_M‖²)·w_M, B an
/// orthonormal basis of the row space of X̃ ([`LinregBn::project_exact`]).
#[derive(Clone, Debug)]
pub struct LinregBn {
    d: usize,
    n: usize,
    xc: Vec<f64>,
    mu_x: Vec<f64>,
    mu_y: f64,
    sigma_y: f64,
    q: Vec<f64>,
    /// Σ_x − zzᵀ (Lemma O.1), row-major d×d, its top eigenpair.
    lemma_o1: Vec<f64>,
    lambda_o1: f64,
    v1: Vec<f64>,
    gamma: Option<Gamma>,
    test_moments: Option<TestMoments>,
    data: LinregData,
    /// How w0 is drawn, and the seed.
    pub init: LinregInit,
    pub init_seed: u64,
}

/// Per-point state for repeated HVPs at one w.
struct LinregHessian<'a> {
    p: &'a LinregBn,
    s: f64,
    u: Vec<f64>,
    e: Vec<f64>,
    c: f64,
}

impl LinregBn {
    /// Builds the problem from data; checks shapes and values.
    pub fn new(data: LinregData, init: LinregInit, init_seed: u64) -> Result<Self, LinregError> {
        let (d, n) = (data.d, data.n());
        if data.x.len() != n * d {
            return Err(LinregError::Shape { len: data.x.len(), d, n });
        }
        if data.x_test.len() != data.y_test.len() * d {
            return Err(LinregError::Rows {
                what: "x_test",
                got: data.x_test.len() / d.max(1),
                expected: data.y_test.len(),
            });
        }
        if n < 2 {
            return Err(LinregError::TooFew(n));
        }
        for (name, v) in [("x", &data.x), ("y", &data.y), ("x_test", &data.x_test), ("y_test", &data.y_test)] {
            if !v.iter().all(|t| t.is_finite()) {
                return Err(LinregError::NonFinite(name));
            }
        }
        let nf = n as f64;
        let mut mu_x = vec![0.0; d];
        for i in 0..n {
            axpy(1.0 / nf, &data.x[i * d..(i + 1) * d], &mut mu_x);
        }
        let mut xc = data.x.clone();
        for i in 0..n {
            axpy(-1.0, &mu_x, &mut xc[i * d..(i + 1) * d]);
        }
        if norm(&xc) == 0.0 {
            return Err(LinregError::DegenerateInputs);
        }
        let mu_y = data.y.iter().sum::<f64>() / nf;
        let sigma_y = (data.y.iter().map(|y| (y - mu_y).powi(2)).sum::<f64>() / nf).sqrt();
        if sigma_y == 0.0 {
            return Err(LinregError::ConstantTargets);
        }
        let q: Vec<f64> = data.y.iter().map(|y| (y - mu_y) / sigma_y).collect();

        // Σ_x = X̃ᵀX̃/n, z = X̃ᵀq/n; Lemma O.1's matrix Σ_x − zzᵀ.
        let mut z = vec![0.0; d];
        for i in 0..n {
            axpy(q[i] / nf, &xc[i * d..(i + 1) * d], &mut z);
        }
        let mut m = vec![0.0; d * d];
        for i in 0..n {
            let r = &xc[i * d..(i + 1) * d];
            for a in 0..d {
                let ra = r[a] / nf;
                for b in 0..d {
                    m[a * d + b] += ra * r[b];
                }
            }
        }
        for a in 0..d {
            for b in 0..d {
                m[a * d + b] -= z[a] * z[b];
            }
        }
        let (vals, vecs) = symmetric_eigen(d, &m);
        let mut v1 = vecs[0].clone();
        // A fixed sign for v1: its largest-magnitude entry positive.
        let imax = (0..d).max_by(|&i, &j| v1[i].abs().total_cmp(&v1[j].abs())).unwrap();
        if v1[imax] < 0.0 {
            v1.iter_mut().for_each(|x| *x = -*x);
        }

        let gamma = Self::gamma_geometry(d, n, &xc, &q);
        let test_moments = TestMoments::new(d, &data.x_test, &data.y_test);
        Ok(Self {
            d,
            n,
            xc,
            mu_x,
            mu_y,
            sigma_y,
            q,
            lemma_o1: m,
            lambda_o1: vals[0],
            v1,
            gamma,
            test_moments,
            data,
            init,
            init_seed,
        })
    }

    fn gamma_geometry(d: usize, n: usize, xc: &[f64], q: &[f64]) -> Option<Gamma> {
        // Orthonormal basis of span{x̃_i} by CGS2, dropping rows that are
        // dependent to 1e-10 relative (the centred rows sum to zero, so the
        // rank is at most n − 1).
        let mut basis: Vec<Vec<f64>> = Vec::new();
        for i in 0..n {
            let mut r = xc[i * d..(i + 1) * d].to_vec();
            let r0 = norm(&r);
            for _ in 0..2 {
                for b in &basis {
                    let c = dot(b, &r);
                    axpy(-c, b, &mut r);
                }
            }
            if norm(&r) > 1e-10 * r0 {
                normalize(&mut r);
                basis.push(r);
            }
        }
        let k = basis.len();
        // X̃ = A·Bᵀ with A = X̃B (n×k); w_M = B·c with A·c = q (least squares).
        let mut a = vec![0.0; n * k];
        for i in 0..n {
            for (j, b) in basis.iter().enumerate() {
                a[i * k + j] = dot(&xc[i * d..(i + 1) * d], b);
            }
        }
        let c = lstsq(n, k, &a, q);
        let mut w_m = vec![0.0; d];
        for (cj, b) in c.iter().zip(&basis) {
            axpy(*cj, b, &mut w_m);
        }
        // Interpolation must be exact: otherwise (d < n − 1) Γ is empty.
        let resid: f64 = (0..n).map(|i| (dot(&xc[i * d..(i + 1) * d], &w_m) - q[i]).powi(2)).sum::<f64>().sqrt();
        if resid > 1e-8 * (n as f64).sqrt() {
            return None;
        }
        let mut theta_m = w_m.clone();
        normalize(&mut theta_m);
        Some(Gamma { basis, w_m, theta_m })
    }

    /// The problem's data.
    pub fn data(&self) -> &LinregData {
        &self.data
    }

    /// a = X̃w.
    fn outputs(&self, w: &[f64]) -> Vec<f64> {
        (0..self.n).map(|i| dot(&self.xc[i * self.d..(i + 1) * self.d], w)).collect()
    }

    /// out = X̃ᵀr.
    fn xt_times(&self, r: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for (i, ri) in r.iter().enumerate() {
            axpy(*ri, &self.xc[i * self.d..(i + 1) * self.d], out);
        }
    }

    /// (w̃, b̃) of eq. (4): Φ(x; w) = w̃ᵀx + b̃, w̃ = σ_y·w/‖w‖_Σ, b̃ = μ_y − w̃ᵀμ_x.
    pub fn coefficients(&self, w: &[f64]) -> (Vec<f64>, f64) {
        let a = self.outputs(w);
        let s = (dot(&a, &a) / self.n as f64).sqrt();
        let wt: Vec<f64> = w.iter().map(|x| self.sigma_y * x / s).collect();
        let b = self.mu_y - dot(&wt, &self.mu_x);
        (wt, b)
    }

    /// Population test loss E(Φ(x) − y)² = (w̃ − w_GT)ᵀΣ(w̃ − w_GT) + (b̃ − b_GT)²
    /// (x ~ N(0, Σ), noiseless targets), when the truth is known.
    pub fn population_test_loss(&self, w: &[f64]) -> Option<f64> {
        let (wt, b) = self.coefficients(w);
        self.truth_loss(&wt, b)
    }

    fn truth_loss(&self, wt: &[f64], b: f64) -> Option<f64> {
        let t = self.data.truth.as_ref()?;
        let quad: f64 = wt.iter().zip(&t.w).zip(&t.sigma_diag).map(|((a, g), s)| s * (a - g).powi(2)).sum();
        Some(quad + (b - t.b).powi(2))
    }

    /// Mean squared error on the held-out set (BN statistics from the
    /// training set, as eq. (4) makes Φ a fixed linear function).
    pub fn sample_test_loss(&self, w: &[f64]) -> Option<f64> {
        let t = self.test_moments.as_ref()?;
        let (wt, b) = self.coefficients(w);
        Some(t.mse(&wt, b))
    }

    /// The same MSE summed point by point, O(m·d) (a check of the moments).
    pub fn sample_test_loss_direct(&self, w: &[f64]) -> Option<f64> {
        let m = self.data.y_test.len();
        if m == 0 {
            return None;
        }
        let (wt, b) = self.coefficients(w);
        let d = self.d;
        let s: f64 =
            (0..m).map(|i| (dot(&wt, &self.data.x_test[i * d..(i + 1) * d]) + b - self.data.y_test[i]).powi(2)).sum();
        Some(s / m as f64)
    }

    /// θ_M, the unit w whose coefficients solve (M) (Thm 5.1); None when the
    /// data cannot be interpolated (d < n − 1).
    pub fn theta_m(&self) -> Option<&[f64]> {
        self.gamma.as_ref().map(|g| g.theta_m.as_slice())
    }

    /// The nearest point of Γ to θ: Π(P_V θ) (see the type's docs). None when
    /// Γ is empty or θ lies in the half-space ⟨θ, w_M⟩ ≤ 0 that Γ avoids.
    pub fn project_exact(&self, theta: &[f64]) -> Option<Vec<f64>> {
        let g = self.gamma.as_ref()?;
        let tw = dot(theta, &g.w_m);
        if tw <= 0.0 {
            return None;
        }
        let mut p = theta.to_vec();
        for b in &g.basis {
            let c = dot(b, theta);
            axpy(-c, b, &mut p);
        }
        axpy(tw / dot(&g.w_m, &g.w_m), &g.w_m, &mut p);
        normalize(&mut p);
        Some(p)
    }

    /// Spherical sharpness of a point of Γ by Lemma O.1:
    /// λ1(H(φ)) = 2‖w̃‖²·λ1(Σ_x − zzᵀ), with ‖w̃‖² = σ_y²‖φ‖²/‖φ‖_Σ²
    /// (scale-invariant in φ).
    pub fn sharpness_on_gamma(&self, phi: &[f64]) -> f64 {
        let a = self.outputs(phi);
        let s2 = dot(&a, &a) / self.n as f64;
        2.0 * self.sigma_y * self.sigma_y * dot(phi, phi) / s2 * self.lambda_o1
    }

    /// H(w) for w whose direction lies on Γ, by Lemma O.1:
    /// H(w) = (2σ_y²/‖w‖_Σ²)·(Σ_x − zzᵀ), row-major d×d. For unit w this is
    /// the lemma's 2‖w̃‖²(Σ_x − zzᵀ) (then σ_y²/‖w‖_Σ² = ‖w̃‖²); written with
    /// ‖w‖_Σ it also holds off the sphere, (−2)-homogeneous as it must be.
    pub fn hessian_on_gamma(&self, w: &[f64]) -> Vec<f64> {
        let a = self.outputs(w);
        let s2 = dot(&a, &a) / self.n as f64;
        let c = 2.0 * self.sigma_y * self.sigma_y / s2;
        self.lemma_o1.iter().map(|x| c * x).collect()
    }

    /// The top eigenvector v1 of H on Γ (the same for every point of Γ:
    /// H(φ) is a multiple of the fixed Σ_x − zzᵀ), with a fixed sign.
    pub fn top_eigenvector_on_gamma(&self) -> &[f64] {
        &self.v1
    }

    /// λ1(θ_M), the smallest spherical sharpness on Γ.
    pub fn sharpness_min(&self) -> Option<f64> {
        self.theta_m().map(|t| self.sharpness_on_gamma(t))
    }
}

impl Objective for LinregBn {
    fn dim(&self) -> usize {
        self.d
    }
    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        let nf = self.n as f64;
        let LinregHessian { s, u, e, c, .. } = self.hessian_state(w);
        let r: Vec<f64> = e.iter().zip(&u).map(|(e, u)| e - c * u).collect();
        self.xt_times(&r, grad);
        let k = 2.0 * self.sigma_y * self.sigma_y / (nf * s);
        grad.iter_mut().for_each(|g| *g *= k);
        self.sigma_y * self.sigma_y * dot(&e, &e) / nf
    }
    fn loss(&self, w: &[f64]) -> f64 {
        let nf = self.n as f64;
        let a = self.outputs(w);
        let s = (dot(&a, &a) / nf).sqrt();
        let ss: f64 = a.iter().zip(&self.q).map(|(a, q)| (a / s - q).powi(2)).sum();
        self.sigma_y * self.sigma_y * ss / nf
    }
}

impl LinregHessian<'_> {
    /// Hv = (2σ_y²/n)·X̃ᵀ·dG, the derivative along v of ∇L = (2σ_y²/n)X̃ᵀG,
    /// G = (e − c·u)/s. With b = X̃v:
    /// ds = aᵀb/(n·s), du = (b − u·ds)/s, de = du, dc = (duᵀu + eᵀdu)/n,
    /// dG = (du − dc·u − c·du)/s − (e − c·u)·ds/s².
    fn apply_to(&self, v: &[f64], out: &mut [f64]) {
        let p = self.p;
        let nf = p.n as f64;
        let b = p.outputs(v);
        let s = self.s;
        let ds = dot(&self.u, &b) / nf; // aᵀb/(n s) with a = s·u
        let du: Vec<f64> = b.iter().zip(&self.u).map(|(b, u)| (b - u * ds) / s).collect();
        let dc = (dot(&du, &self.u) + dot(&self.e, &du)) / nf;
        let dg: Vec<f64> = (0..p.n)
            .map(|i| (du[i] - dc * self.u[i] - self.c * du[i]) / s - (self.e[i] - self.c * self.u[i]) * ds / (s * s))
            .collect();
        p.xt_times(&dg, out);
        let k = 2.0 * p.sigma_y * p.sigma_y / nf;
        out.iter_mut().for_each(|x| *x *= k);
    }
}

impl LinOp for LinregHessian<'_> {
    fn dim(&self) -> usize {
        self.p.d
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.apply_to(x, y)
    }
}

impl LinregBn {
    /// The quantities of w that the loss, the gradient and every HVP share:
    /// s = ‖w‖_Σ, u = X̃w/s, e = u − q, c = eᵀu/n.
    fn hessian_state(&self, w: &[f64]) -> LinregHessian<'_> {
        let nf = self.n as f64;
        let a = self.outputs(w);
        let s = (dot(&a, &a) / nf).sqrt();
        let u: Vec<f64> = a.iter().map(|x| x / s).collect();
        let e: Vec<f64> = u.iter().zip(&self.q).map(|(u, q)| u - q).collect();
        let c = dot(&e, &u) / nf;
        LinregHessian { p: self, s, u, e, c }
    }
}

impl Hessian for LinregBn {
    /// The exact HVP (see `LinregHessian::apply_to` for the formula).
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        self.hessian_state(w).apply_to(v, out)
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(self.hessian_state(w))
    }
    /// ∇³L[v, v, ·] = X̃ᵀ·G″ exactly: a = X̃w is linear in w, so along
    /// w + t·v the outputs move with a′ = X̃v, a″ = 0 and only the BN head
    /// curves (`bn_head`). O(nd).
    fn third_contraction(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        let a = self.outputs(w);
        let b = self.outputs(v);
        let k = 2.0 * self.sigma_y * self.sigma_y / self.n as f64;
        let jet = super::bn_head::head_jet(&a, &b, &vec![0.0; self.n], &self.q, k);
        self.xt_times(&jet.ddg, out);
    }
    fn third_contraction_is_exact(&self) -> bool {
        true
    }
    /// r = u − q with a = X̃w: J = P_u·X̃/s, JJᵀ from X̃X̃ᵀ (n×n, O(n²d)).
    fn has_residual_geometry(&self) -> bool {
        true
    }
    fn residual_geometry<'a>(&'a self, w: &[f64]) -> Option<Box<dyn crate::ResidualGeometry + 'a>> {
        let (n, d) = (self.n, self.d);
        let row = |i: usize| &self.xc[i * d..(i + 1) * d];
        let mut aat = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = dot(row(i), row(j));
                aat[i * n + j] = v;
                aat[j * n + i] = v;
            }
        }
        Some(Box::new(super::bn_head::BnResidual::new(
            &self.outputs(w),
            &self.q,
            Box::new(move |v, out| out.copy_from_slice(&self.outputs(v))),
            Box::new(move |y, out| self.xt_times(y, out)),
            aat,
        )))
    }
}

/// linreg_bn's metrics.csv columns.
impl LinregBn {
    /// Population test loss (generated data).
    pub const TEST_LOSS: Column = Column::new("test_loss");
    /// Held-out MSE.
    pub const TEST_LOSS_SAMPLE: Column = Column::new("test_loss_sample");
    /// ‖θ_t − θ_M‖.
    pub const DIST_THETA_M: Column = Column::new("dist_theta_m");
    /// ‖φ_t − θ_M‖.
    pub const PHI_DIST_M: Column = Column::new("phi_dist_m");
    /// λ1(φ_t) (Lemma O.1).
    pub const PHI_SHARPNESS: Column = Column::new("phi_sharpness");
    /// h_t = ⟨θ_t − φ_t, v1⟩.
    pub const H: Column = Column::new("h");
    /// 2/η̃_t − λ1(φ_t).
    pub const TWO_OVER_EFF_LR_MINUS_PHI_SHARPNESS: Column = Column::new("two_over_eff_lr_minus_phi_sharpness");
}

/// The extra metrics.csv columns of linreg_bn, in order.
const COLUMNS: [Column; 7] = [
    LinregBn::TEST_LOSS,
    LinregBn::TEST_LOSS_SAMPLE,
    LinregBn::DIST_THETA_M,
    LinregBn::PHI_DIST_M,
    LinregBn::PHI_SHARPNESS,
    LinregBn::H,
    LinregBn::TWO_OVER_EFF_LR_MINUS_PHI_SHARPNESS,
];

impl LinregBn {
    /// The metrics.csv columns ([`COLUMNS`]) at w_t, given θ_t = w_t/‖w_t‖
    /// and its projection φ_t onto Γ.
    fn row(&self, w: &[f64], theta: &[f64], phi: Option<&[f64]>, eval: &Evaluation) -> Vec<f64> {
        let nan = f64::NAN;
        let tm = self.theta_m();
        let (phi_dist, phi_sharp, h) = match (phi, tm) {
            (Some(p), Some(tm)) => {
                (distance(p, tm), self.sharpness_on_gamma(p), crate::manifold::oscillation(theta, p, &self.v1))
            }
            _ => (nan, nan, nan),
        };
        // One set of coefficients (w̃, b̃) for both test losses.
        let (wt, b) = self.coefficients(w);
        vec![
            self.truth_loss(&wt, b).unwrap_or(nan),
            self.test_moments.as_ref().map_or(nan, |t| t.mse(&wt, b)),
            tm.map_or(nan, |t| distance(theta, t)),
            phi_dist,
            phi_sharp,
            h,
            2.0 / eval.eff_lr - phi_sharp,
        ]
    }
}

impl Problem for LinregBn {
    fn name(&self) -> &'static str {
        "linreg_bn"
    }
    fn training_examples(&self) -> Option<usize> {
        Some(self.n)
    }
    fn per_example_loss_sup(&self) -> Result<f64, String> {
        Err("linreg_bn's squared loss on Gaussian inputs and targets (App. Q.2) is unbounded over the population, \
             and BN couples the examples of a batch"
            .into())
    }
    fn initial_point(&self) -> Vec<f64> {
        // The init draws from ChaCha8 stream 1 and the data from stream 0:
        // with one stream, init_seed = seed would replay the random bits of
        // w_GT, and w0 would start correlated with the ground truth.
        let mut rng = ChaCha8Rng::seed_from_u64(self.init_seed);
        rng.set_stream(INIT_STREAM);
        match self.init {
            LinregInit::Uniform => {
                let r = 1.0 / (self.d as f64).sqrt();
                let dist = Uniform::new(-r, r).unwrap();
                (0..self.d).map(|_| dist.sample(&mut rng)).collect()
            }
            LinregInit::Gaussian { std } => (0..self.d)
                .map(|_| {
                    let g: f64 = StandardNormal.sample(&mut rng);
                    std * g
                })
                .collect(),
        }
    }
    fn tracker(&self) -> Box<dyn Tracker + '_> {
        Box::new(LinregTracker { p: Some(self), ..Default::default() })
    }
    /// ‖θ − θ_M‖ (Thm 5.1) and the population test loss (the held-out MSE
    /// when the truth is unknown).
    fn point_columns(&self) -> Vec<Column> {
        vec![LinregBn::DIST_THETA_M, LinregBn::TEST_LOSS]
    }
    fn project_onto_gamma(&self, theta: &[f64]) -> Option<Vec<f64>> {
        self.project_exact(theta)
    }
    fn point_values(&self, w: &[f64]) -> Vec<f64> {
        let mut theta = w.to_vec();
        normalize(&mut theta);
        let d = self.theta_m().map_or(f64::NAN, |m| crate::manifold::distance(&theta, m));
        let test = self.population_test_loss(w).or_else(|| self.sample_test_loss(w)).unwrap_or(f64::NAN);
        vec![d, test]
    }
}

/// The run-in of [`EosEntry`] on λ1(φ_t) at every step: at least this many
/// consecutive stable steps. It excludes the first steps, where a large
/// initial effective LR puts 2/η̃ below λ1(φ_t) far from Γ and the catapult
/// that follows oscillates across it.
const STABLE_RUN: u64 = 10;

/// Follows a linreg_bn run for its summary (Fig. 4's story).
#[derive(Default)]
struct LinregTracker<'a> {
    p: Option<&'a LinregBn>,
    st: LinregState,
}

/// The tracker's state (saved in checkpoints).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct LinregState {
    first_tiny_loss: Option<u64>,
    /// [`crate::eos::EosEntry`] on λ1(φ_t) (fields `eos_entry`, `stable_run`,
    /// as checkpoints of format 0 wrote them).
    #[serde(flatten)]
    eos: EosEntry,
    test_at_entry: Option<f64>,
    test_sample_at_entry: Option<f64>,
    /// Histogram of log10(train loss) over EoS steps, in bins of 0.01 decade
    /// (key ⌊100·log10 L⌋): a median to within 1.2% without keeping every loss, so
    /// checkpoints stay small.
    eos_loss_log_hist: std::collections::BTreeMap<i32, u64>,
    prev_above: Option<bool>,
    switches: u64,
    osc: OscillationTracker,
    h_abs_max: f64,
    last_theta: Vec<f64>,
    last_phi: Option<Vec<f64>>,
    last_step: u64,
}

impl<'a> LinregTracker<'a> {
    fn p(&self) -> &'a LinregBn {
        self.p.expect("tracker built by LinregBn::tracker")
    }
}

impl Tracker for LinregTracker<'_> {
    fn columns(&self) -> Vec<Column> {
        COLUMNS.to_vec()
    }

    fn observe(&mut self, _obj: &Counted, s: &StepView) -> Vec<f64> {
        let p = self.p();
        let (step, w, eval) = (s.step, s.w, s.eval);
        let mut theta = w.to_vec();
        normalize(&mut theta);
        if self.st.first_tiny_loss.is_none() && eval.loss < 1e-14 {
            self.st.first_tiny_loss = Some(step);
        }
        // One projection serves the summary's state and the row.
        let phi = p.project_exact(&theta);
        if let Some(phi) = &phi {
            let lam = p.sharpness_on_gamma(phi);
            let two = 2.0 / eval.eff_lr;
            if self.st.eos.observe(&EosEntryRule { band: 0.0, run_in: STABLE_RUN }, step, two, lam) {
                self.st.test_at_entry = p.population_test_loss(w);
                self.st.test_sample_at_entry = p.sample_test_loss(w);
                self.st.osc.reset_counts();
            }
            let h = self.st.osc.observe(&theta, phi, &p.v1);
            if self.st.eos.step().is_some() {
                let bin = if eval.loss > 0.0 { (100.0 * eval.loss.log10()).floor() as i32 } else { i32::MIN };
                *self.st.eos_loss_log_hist.entry(bin).or_insert(0) += 1;
                let above = two > lam;
                if let Some(prev) = self.st.prev_above
                    && prev != above
                {
                    self.st.switches += 1;
                }
                self.st.prev_above = Some(above);
                self.st.h_abs_max = self.st.h_abs_max.max(h.abs());
            }
        }
        let row = if s.logged { p.row(w, &theta, phi.as_deref(), eval) } else { Vec::new() };
        self.st.last_theta = theta;
        self.st.last_phi = phi;
        self.st.last_step = step;
        row
    }

    fn summary(&mut self, obj: &Counted, _w_final: &[f64]) -> serde_json::Map<String, serde_json::Value> {
        let p = self.p();
        let mut m = serde_json::Map::new();
        m.insert("first_step_train_loss_below_1e-14".into(), json!(self.st.first_tiny_loss));
        m.insert("eos_entry_step_on_phi".into(), json!(self.st.eos.step()));
        m.insert(
            "eos_entry_rule".into(),
            json!(
                "eos::EosEntry with band 0 on lambda1(phi_t) at every step: first t with 2/eff_lr_t <= lambda1(phi_t) after >= 10 consecutive steps with 2/eff_lr > lambda1(phi)"
            ),
        );
        // Median of the EoS losses from the log histogram: the centre of the
        // bin holding the middle count (within a factor 10^0.005 ≈ 1.2%).
        let total: u64 = self.st.eos_loss_log_hist.values().sum();
        let mut seen = 0;
        let mut median = None;
        for (&bin, &count) in &self.st.eos_loss_log_hist {
            seen += count;
            if 2 * seen > total {
                median = Some(if bin == i32::MIN { 0.0 } else { 10f64.powf((bin as f64 + 0.5) / 100.0) });
                break;
            }
        }
        m.insert("eos_train_loss_median".into(), json!(median));
        m.insert("test_loss_at_eos_entry".into(), json!(self.st.test_at_entry));
        m.insert("test_loss_sample_at_eos_entry".into(), json!(self.st.test_sample_at_entry));
        // The final θ is the last one seen (w_T).
        let w = &self.st.last_theta;
        m.insert("test_loss_final".into(), json!(p.population_test_loss(w)));
        m.insert("test_loss_sample_final".into(), json!(p.sample_test_loss(w)));
        if let (Some(tm), Some(phi)) = (p.theta_m(), &self.st.last_phi) {
            m.insert("phi_dist_m_final".into(), json!(distance(phi, tm)));
            m.insert("theta_dist_m_final".into(), json!(distance(w, tm)));
            let lam = p.sharpness_on_gamma(phi);
            let lam_min = p.sharpness_on_gamma(tm);
            m.insert("phi_sharpness_final".into(), json!(lam));
            m.insert("sharpness_min_on_gamma".into(), json!(lam_min));
            m.insert("phi_sharpness_final_rel_excess".into(), json!(lam / lam_min - 1.0));
            let lanczos = crate::sharpness::spherical_sharpness(
                obj,
                phi,
                &crate::spectrum::LanczosParams { tol: 1e-12, ..Default::default() },
                None,
            )
            .map(|s| s.spherical)
            .ok();
            m.insert("phi_sharpness_final_lanczos".into(), json!(lanczos));
        }
        m.insert("eos_switches_across_phi_sharpness".into(), json!(self.st.switches));
        m.insert("eos_periods".into(), json!(self.st.switches / 2));
        m.insert(
            "eos_h_sign_change_fraction".into(),
            json!(if self.st.osc.pairs > 0 {
                Some(self.st.osc.sign_changes as f64 / self.st.osc.pairs as f64)
            } else {
                None
            }),
        );
        m.insert("eos_h_abs_max".into(), json!(self.st.h_abs_max));
        m
    }
    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.st).expect("tracker state serialises")
    }
    fn load(&mut self, state: &serde_json::Value) -> Result<(), TrackerStateError> {
        self.st = TrackerStateError::read("linreg_bn", state)?;
        Ok(())
    }
}
