//! Matrix completion with Batch Normalization (App. P.1, Figs. 1, 6, 7, 11).

use super::{Problem, StepView, Tracker, TrackerStateError};
use crate::linalg::{axpy, dot};
use crate::objective::{Counted, Hessian, Objective};
use crate::run::Column;
use crate::spectrum::LinOp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use serde_json::json;
use std::cell::RefCell;

/// A matrix-completion instance: the full d×d ground truth (row-major, for
/// the test loss) and the observed positions Ω.
#[derive(Clone, Debug, PartialEq)]
pub struct MatcompData {
    /// Size d.
    pub d: usize,
    /// Ground truth M, d×d row-major.
    pub m: Vec<f64>,
    /// Observed positions (i, j), distinct.
    pub omega: Vec<(usize, usize)>,
}

impl MatcompData {
    /// App. P.1: M̃ = U*V*ᵀ with U*, V* ∈ R^{d×r} uniform in [−1, 1],
    /// M = d·M̃/‖M̃‖_F (second moment of the entries 1), and N positions drawn
    /// uniformly without replacement — all from one ChaCha8 stream.
    pub fn generate(d: usize, rank: usize, n_obs: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let unif = Uniform::new_inclusive(-1.0f64, 1.0).unwrap();
        let us: Vec<f64> = (0..d * rank).map(|_| unif.sample(&mut rng)).collect();
        let vs: Vec<f64> = (0..d * rank).map(|_| unif.sample(&mut rng)).collect();
        let mut m = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                m[i * d + j] = dot(&us[i * rank..(i + 1) * rank], &vs[j * rank..(j + 1) * rank]);
            }
        }
        let fro = crate::linalg::norm(&m);
        m.iter_mut().for_each(|x| *x *= d as f64 / fro);
        let idx = rand::seq::index::sample(&mut rng, d * d, n_obs.min(d * d));
        let omega = idx.into_iter().map(|k| (k / d, k % d)).collect();
        Self { d, m, omega }
    }
}

/// What can be wrong with matrix-completion data.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MatcompError {
    #[error("matcomp_bn: M has {len} entries, expected d×d = {d}×{d}")]
    Shape { len: usize, d: usize },
    #[error("matcomp_bn: observed position ({i}, {j}) is outside the {d}×{d} matrix")]
    OutOfRange { i: usize, j: usize, d: usize },
    #[error("matcomp_bn: observed position ({i}, {j}) appears twice in omega")]
    Duplicate { i: usize, j: usize },
    #[error("matcomp_bn: no observed entries (omega is empty)")]
    NoObservations,
    #[error("matcomp_bn: every observed entry of M is zero, so γ = 0 and the loss is constant")]
    ZeroTargets,
    #[error("matcomp_bn: M contains NaN or Inf")]
    NonFinite,
}

/// L(U, V) = (1/N)·Σ_{(i,j)∈Ω} ((γ/σ)(UVᵀ)_ij − M_ij)² (App. P.1), with
/// σ² = (1/N)Σ_Ω (UVᵀ)_ij² (BN without mean subtraction) and γ² = (1/N)Σ_Ω M_ij²
/// fixed, so L is scale-invariant in w = (U, V).
///
/// Layout of w (D = 2d²): U row-major (w[i·d + k] = U_ik), then V row-major
/// (w[d² + j·d + k] = V_jk).
///
/// With a_k = ⟨U_i, V_j⟩ for the k-th observed (i, j), u = a/σ and q = m/γ,
/// the residuals are γ·(u − q), so L = γ²·‖u − q‖²/N — the loss is summed from
/// the residuals themselves and reaches ~1e-32 at interpolation. The gradient
/// with respect to a is G = (2γ²/(Nσ))·(r − c·u) with r = u − q, c = rᵀu/N,
/// and then ∇_{U_i} = Σ_{k:(i,·)} G_k·V_j, ∇_{V_j} = Σ_{k:(·,j)} G_k·U_i: O(N·d),
/// never d×d×d. The HVP differentiates this along v = (Ů, V̊) (see
/// `MatcompHessian::apply`), also O(N·d). Scratch buffers are reused: no
/// allocation per step.
#[derive(Clone, Debug)]
pub struct MatcompBn {
    d: usize,
    /// Observed rows and columns, and the targets q_k = M_ij/γ.
    rows: Vec<usize>,
    cols: Vec<usize>,
    q: Vec<f64>,
    gamma: f64,
    data: MatcompData,
    /// Std of the N(0, std²) initial entries of U and V; seed of the init.
    pub init_std: f64,
    pub init_seed: u64,
    /// How many top singular values the metrics report.
    pub n_singular: usize,
    scratch: Scratch,
}

#[derive(Debug, Default)]
struct Scratch(std::sync::Mutex<(Vec<f64>, Vec<f64>)>);

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// ChaCha8 stream of the initial weights (the data use stream 0).
pub const INIT_STREAM: u64 = 1;

impl MatcompBn {
    /// Builds the problem; `init_std` defaults (in configs) to 1/√d.
    pub fn new(data: MatcompData, init_std: f64, init_seed: u64) -> Result<Self, MatcompError> {
        let d = data.d;
        if data.m.len() != d * d {
            return Err(MatcompError::Shape { len: data.m.len(), d });
        }
        if !data.m.iter().all(|x| x.is_finite()) {
            return Err(MatcompError::NonFinite);
        }
        if data.omega.is_empty() {
            return Err(MatcompError::NoObservations);
        }
        let mut seen = vec![false; d * d];
        for &(i, j) in &data.omega {
            if i >= d || j >= d {
                return Err(MatcompError::OutOfRange { i, j, d });
            }
            if std::mem::replace(&mut seen[i * d + j], true) {
                return Err(MatcompError::Duplicate { i, j });
            }
        }
        let n = data.omega.len() as f64;
        let vals: Vec<f64> = data.omega.iter().map(|&(i, j)| data.m[i * d + j]).collect();
        let gamma = (vals.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
        if gamma == 0.0 {
            return Err(MatcompError::ZeroTargets);
        }
        // Internally Ω is sorted by (row, column): consecutive observations
        // then update the same row of ∇U, which stays in L1 cache (measured:
        // 21.7 → 19.4 µs a step at d = 50, N = 800).
        let mut order: Vec<usize> = (0..data.omega.len()).collect();
        order.sort_by_key(|&k| data.omega[k]);
        Ok(Self {
            d,
            rows: order.iter().map(|&k| data.omega[k].0).collect(),
            cols: order.iter().map(|&k| data.omega[k].1).collect(),
            q: order.iter().map(|&k| vals[k] / gamma).collect(),
            gamma,
            data,
            init_std,
            init_seed,
            n_singular: 5,
            scratch: Scratch::default(),
        })
    }

    /// The data.
    pub fn data(&self) -> &MatcompData {
        &self.data
    }

    /// Number of observations N.
    pub fn n_obs(&self) -> usize {
        self.q.len()
    }

    fn u_row<'a>(&self, w: &'a [f64], i: usize) -> &'a [f64] {
        &w[i * self.d..(i + 1) * self.d]
    }

    fn v_row<'a>(&self, w: &'a [f64], j: usize) -> &'a [f64] {
        let o = self.d * self.d;
        &w[o + j * self.d..o + (j + 1) * self.d]
    }

    /// a_k = (UVᵀ)_ij over Ω into `a`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn observed(&self, w: &[f64], a: &mut [f64]) {
        let n = a.len();
        let full = n / 4 * 4;
        for k in (0..full).step_by(4) {
            let u = [0, 1, 2, 3].map(|m| self.u_row(w, self.rows[k + m]));
            let v = [0, 1, 2, 3].map(|m| self.v_row(w, self.cols[k + m]));
            a[k..k + 4].copy_from_slice(&crate::linalg::dot4(u, v));
        }
        for k in full..n {
            a[k] = dot(self.u_row(w, self.rows[k]), self.v_row(w, self.cols[k]));
        }
    }

    /// The recovered matrix (γ/σ)·UVᵀ, d×d row-major (O(d³)).
    pub fn recovered(&self, w: &[f64]) -> Vec<f64> {
        let d = self.d;
        let mut a = vec![0.0; self.n_obs()];
        self.observed(w, &mut a);
        let sigma = (dot(&a, &a) / a.len() as f64).sqrt();
        let c = self.gamma / sigma;
        let um = faer::MatRef::from_row_major_slice(&w[..d * d], d, d);
        let vm = faer::MatRef::from_row_major_slice(&w[d * d..], d, d);
        let p = um * vm.transpose();
        let mut out = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] = c * p[(i, j)];
            }
        }
        out
    }

    /// Test loss (1/d²)·Σ_{all i,j}((γ/σ)(UVᵀ)_ij − M_ij)², with the same γ/σ
    /// as on Ω (App. P.1).
    pub fn test_loss(&self, w: &[f64]) -> f64 {
        self.test_loss_of(&self.recovered(w))
    }

    /// The top `k` singular values of the recovered matrix, descending.
    pub fn singular_values(&self, w: &[f64], k: usize) -> Vec<f64> {
        self.singular_values_of(&self.recovered(w), k)
    }

    fn test_loss_of(&self, recovered: &[f64]) -> f64 {
        recovered.iter().zip(&self.data.m).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / (self.d * self.d) as f64
    }

    fn singular_values_of(&self, recovered: &[f64], k: usize) -> Vec<f64> {
        let m = faer::MatRef::from_row_major_slice(recovered, self.d, self.d);
        let mut s = m.singular_values().expect("SVD of a finite matrix");
        s.sort_by(|a, b| b.total_cmp(a));
        s.truncate(k);
        s
    }
}

impl Objective for MatcompBn {
    fn dim(&self) -> usize {
        2 * self.d * self.d
    }

    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        let n = self.n_obs();
        let mut guard = self.scratch.0.lock().unwrap_or_else(|e| e.into_inner());
        let (a, g) = &mut *guard;
        a.resize(n, 0.0);
        g.resize(n, 0.0);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { self.loss_grad_avx512(w, grad, a, g) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.loss_grad_avx2(w, grad, a, g) };
        }
        self.loss_grad_kernel(w, grad, a, g)
    }

    fn loss(&self, w: &[f64]) -> f64 {
        let mut a = vec![0.0; self.n_obs()];
        self.observed(w, &mut a);
        let sigma = (dot(&a, &a) / a.len() as f64).sqrt();
        let rr: f64 = a.iter().zip(&self.q).map(|(a, q)| (a / sigma - q).powi(2)).sum();
        self.gamma * self.gamma * rr / a.len() as f64
    }
}

#[allow(clippy::needless_range_loop)] // k indexes several parallel arrays
impl MatcompBn {
    /// The same kernel compiled for AVX2. No FMA contraction happens (Rust
    /// never fuses a·b + c on its own) and every reduction has a fixed
    /// order, so both builds give the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn loss_grad_avx2(&self, w: &[f64], grad: &mut [f64], a: &mut [f64], g: &mut [f64]) -> f64 {
        self.loss_grad_kernel(w, grad, a, g)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn loss_grad_avx512(&self, w: &[f64], grad: &mut [f64], a: &mut [f64], g: &mut [f64]) -> f64 {
        self.loss_grad_kernel(w, grad, a, g)
    }

    #[inline(always)]
    fn loss_grad_kernel(&self, w: &[f64], grad: &mut [f64], a: &mut [f64], g: &mut [f64]) -> f64 {
        let n = self.n_obs();
        let nf = n as f64;
        self.observed(w, a);
        let sigma = (dot(a, a) / nf).sqrt();
        // r = u − q, c = rᵀu/N; G = (2γ²/(Nσ))(r − c·u).
        let mut rr = 0.0;
        let mut ru = 0.0;
        for k in 0..n {
            let u = a[k] / sigma;
            let r = u - self.q[k];
            rr += r * r;
            ru += r * u;
        }
        let c = ru / nf;
        let scale = 2.0 * self.gamma * self.gamma / (nf * sigma);
        for k in 0..n {
            let u = a[k] / sigma;
            g[k] = scale * ((u - self.q[k]) - c * u);
        }
        grad.fill(0.0);
        let d = self.d;
        let (gu, gv) = grad.split_at_mut(d * d);
        for k in 0..n {
            let (i, j) = (self.rows[k], self.cols[k]);
            axpy(g[k], self.v_row(w, j), &mut gu[i * d..(i + 1) * d]);
            axpy(g[k], self.u_row(w, i), &mut gv[j * d..(j + 1) * d]);
        }
        self.gamma * self.gamma * rr / nf
    }

    /// The portable kernel, for the test that both builds agree bit for bit.
    #[doc(hidden)]
    pub fn loss_grad_portable(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        let n = self.n_obs();
        let (mut a, mut g) = (vec![0.0; n], vec![0.0; n]);
        self.loss_grad_kernel(w, grad, &mut a, &mut g)
    }
}

/// Per-point state for repeated HVPs at one w.
struct MatcompHessian<'a> {
    p: &'a MatcompBn,
    w: Vec<f64>,
    sigma: f64,
    u: Vec<f64>,
    r: Vec<f64>,
    c: f64,
    g: Vec<f64>,
    bufs: RefCell<(Vec<f64>, Vec<f64>)>,
}

impl<'a> MatcompHessian<'a> {
    fn new(p: &'a MatcompBn, w: &[f64]) -> Self {
        let n = p.n_obs();
        let nf = n as f64;
        let mut a = vec![0.0; n];
        p.observed(w, &mut a);
        let sigma = (dot(&a, &a) / nf).sqrt();
        let u: Vec<f64> = a.iter().map(|x| x / sigma).collect();
        let r: Vec<f64> = u.iter().zip(&p.q).map(|(u, q)| u - q).collect();
        let c = dot(&r, &u) / nf;
        let scale = 2.0 * p.gamma * p.gamma / (nf * sigma);
        let g = r.iter().zip(&u).map(|(r, u)| scale * (r - c * u)).collect();
        Self { p, w: w.to_vec(), sigma, u, r, c, g, bufs: RefCell::new((vec![0.0; n], vec![0.0; n])) }
    }
}

impl LinOp for MatcompHessian<'_> {
    fn dim(&self) -> usize {
        self.p.dim()
    }

    /// H·v for v = (Ů, V̊). With b_k = ⟨Ů_i, V_j⟩ + ⟨U_i, V̊_j⟩ (the derivative of
    /// a_k) and s = σ: ds = uᵀb/N, du = (b − u·ds)/s, dc = (duᵀu + rᵀdu)/N,
    /// dG = (2γ²/N)·[(du − dc·u − c·du)/s − (r − c·u)·ds/s²]. The gradient
    /// Σ_k G_k·(V_j ⊗ e_i, U_i ⊗ e_j) then differentiates to
    /// (Hv)_{U_i} = Σ_k (dG_k·V_j + G_k·V̊_j), (Hv)_{V_j} = Σ_k (dG_k·U_i + G_k·Ů_i).
    fn apply(&self, v: &[f64], out: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            unsafe { self.apply_avx512(v, out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.apply_avx2(v, out) };
            return;
        }
        self.apply_kernel(v, out)
    }
}

impl MatcompHessian<'_> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn apply_avx2(&self, v: &[f64], out: &mut [f64]) {
        self.apply_kernel(v, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn apply_avx512(&self, v: &[f64], out: &mut [f64]) {
        self.apply_kernel(v, out)
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // k indexes several parallel arrays
    fn apply_kernel(&self, v: &[f64], out: &mut [f64]) {
        let p = self.p;
        let (d, n) = (p.d, p.n_obs());
        let nf = n as f64;
        let w = &self.w;
        let mut bufs = self.bufs.borrow_mut();
        let (b, dg) = &mut *bufs;
        for k in 0..n {
            let (i, j) = (p.rows[k], p.cols[k]);
            b[k] = dot(p.u_row(v, i), p.v_row(w, j)) + dot(p.u_row(w, i), p.v_row(v, j));
        }
        let s = self.sigma;
        let ds = dot(&self.u, b) / nf;
        // du_k = (b_k − u_k·ds)/s; dc = (duᵀu + rᵀdu)/N
        let mut dc = 0.0;
        for k in 0..n {
            let du = (b[k] - self.u[k] * ds) / s;
            dc += du * (self.u[k] + self.r[k]);
        }
        dc /= nf;
        let k2 = 2.0 * p.gamma * p.gamma / nf;
        for k in 0..n {
            let du = (b[k] - self.u[k] * ds) / s;
            dg[k] = k2 * ((du - dc * self.u[k] - self.c * du) / s - (self.r[k] - self.c * self.u[k]) * ds / (s * s));
        }
        out.fill(0.0);
        let (ou, ov) = out.split_at_mut(d * d);
        for k in 0..n {
            let (i, j) = (p.rows[k], p.cols[k]);
            let oi = &mut ou[i * d..(i + 1) * d];
            axpy(dg[k], p.v_row(w, j), oi);
            axpy(self.g[k], p.v_row(v, j), oi);
            let oj = &mut ov[j * d..(j + 1) * d];
            axpy(dg[k], p.u_row(w, i), oj);
            axpy(self.g[k], p.u_row(v, i), oj);
        }
    }
}

impl Hessian for MatcompBn {
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        MatcompHessian::new(self, w).apply(v, out)
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(MatcompHessian::new(self, w))
    }
    /// ∇³L[v, v, ·] exactly, for v = (Ů, V̊). Along w + t·v the outputs
    /// a_k = ⟨U_i, V_j⟩ move with a′ = b_k = ⟨Ů_i, V_j⟩ + ⟨U_i, V̊_j⟩ and
    /// a″ = 2⟨Ů_i, V̊_j⟩; the gradient Σ_k G_k·(V_j ⊗ e_i, U_i ⊗ e_j) then has
    /// second derivative (·)_{U_i} = Σ_k (G″_k·V_j + 2G′_k·V̊_j),
    /// (·)_{V_j} = Σ_k (G″_k·U_i + 2G′_k·Ů_i), with G′, G″ from `bn_head`.
    /// O(N·d), like the HVP.
    fn third_contraction(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        let (d, n) = (self.d, self.n_obs());
        let mut a = vec![0.0; n];
        self.observed(w, &mut a);
        let mut b = vec![0.0; n];
        let mut b2 = vec![0.0; n];
        for k in 0..n {
            let (i, j) = (self.rows[k], self.cols[k]);
            let uv = dot(self.u_row(v, i), self.v_row(w, j));
            let vu = dot(self.u_row(w, i), self.v_row(v, j));
            b[k] = uv + vu;
            b2[k] = 2.0 * dot(self.u_row(v, i), self.v_row(v, j));
        }
        let kk = 2.0 * self.gamma * self.gamma / n as f64;
        let jet = super::bn_head::head_jet(&a, &b, &b2, &self.q, kk);
        out.fill(0.0);
        let (ou, ov) = out.split_at_mut(d * d);
        for k in 0..n {
            let (i, j) = (self.rows[k], self.cols[k]);
            let oi = &mut ou[i * d..(i + 1) * d];
            axpy(jet.ddg[k], self.v_row(w, j), oi);
            axpy(2.0 * jet.dg[k], self.v_row(v, j), oi);
            let oj = &mut ov[j * d..(j + 1) * d];
            axpy(jet.ddg[k], self.u_row(w, i), oj);
            axpy(2.0 * jet.dg[k], self.u_row(v, i), oj);
        }
    }
    fn third_contraction_is_exact(&self) -> bool {
        true
    }
    /// r = u − q with a_k = ⟨U_i, V_j⟩: A·v has entries ⟨Ů_i, V_j⟩ + ⟨U_i, V̊_j⟩,
    /// Aᵀ·y scatters y_k·V_j into U_i and y_k·U_i into V_j, and
    /// (AAᵀ)_kl = [i_k = i_l]⟨V_{j_k}, V_{j_l}⟩ + [j_k = j_l]⟨U_{i_k}, U_{i_l}⟩,
    /// summed over the observations sharing a row or a column only:
    /// O(Σ_rows n_i² + Σ_cols n_j²)·d, not N²·d.
    fn has_residual_geometry(&self) -> bool {
        true
    }
    fn residual_geometry<'a>(&'a self, w: &[f64]) -> Option<Box<dyn crate::ResidualGeometry + 'a>> {
        let (d, n) = (self.d, self.n_obs());
        let mut a = vec![0.0; n];
        self.observed(w, &mut a);
        let mut by_row = vec![Vec::new(); d];
        let mut by_col = vec![Vec::new(); d];
        for k in 0..n {
            by_row[self.rows[k]].push(k);
            by_col[self.cols[k]].push(k);
        }
        let mut aat = vec![0.0; n * n];
        for group in &by_row {
            for &k in group {
                for &l in group {
                    aat[k * n + l] += dot(self.v_row(w, self.cols[k]), self.v_row(w, self.cols[l]));
                }
            }
        }
        for group in &by_col {
            for &k in group {
                for &l in group {
                    aat[k * n + l] += dot(self.u_row(w, self.rows[k]), self.u_row(w, self.rows[l]));
                }
            }
        }
        let w = w.to_vec();
        let w2 = w.clone();
        Some(Box::new(super::bn_head::BnResidual::new(
            &a,
            &self.q,
            Box::new(move |v, out| {
                for (k, o) in out.iter_mut().enumerate().take(n) {
                    let (i, j) = (self.rows[k], self.cols[k]);
                    *o = dot(self.u_row(v, i), self.v_row(&w, j)) + dot(self.u_row(&w, i), self.v_row(v, j));
                }
            }),
            Box::new(move |y, out| {
                out.fill(0.0);
                let (ou, ov) = out.split_at_mut(d * d);
                for (k, yk) in y.iter().enumerate().take(n) {
                    let (i, j) = (self.rows[k], self.cols[k]);
                    axpy(*yk, self.v_row(&w2, j), &mut ou[i * d..(i + 1) * d]);
                    axpy(*yk, self.u_row(&w2, i), &mut ov[j * d..(j + 1) * d]);
                }
            }),
            aat,
        )))
    }
}

/// matcomp_bn's metrics.csv columns.
impl MatcompBn {
    /// Mean squared error over all d² entries.
    pub const TEST_LOSS: Column = Column::new("test_loss");
    /// σ2/σ3 of the recovered matrix.
    pub const SV2_OVER_SV3: Column = Column::new("sv2_over_sv3");
    /// σ1 … σ8 of the recovered matrix (the first `n_singular` are written).
    pub const SV: [Column; 8] = [
        Column::new("sv_1"),
        Column::new("sv_2"),
        Column::new("sv_3"),
        Column::new("sv_4"),
        Column::new("sv_5"),
        Column::new("sv_6"),
        Column::new("sv_7"),
        Column::new("sv_8"),
    ];
}

impl Problem for MatcompBn {
    fn name(&self) -> &'static str {
        "matcomp_bn"
    }
    fn training_examples(&self) -> Option<usize> {
        Some(self.rows.len())
    }
    fn per_example_loss_sup(&self) -> Result<f64, String> {
        Err("matcomp_bn normalises its predictions over the observed entries (BN), so an entry's loss depends on \
             the others: outside Thm C.2's per-example setting"
            .into())
    }

    /// U, V with i.i.d. N(0, init_std²) entries from ChaCha8 stream 1 (the
    /// paper does not say; the configs default to init_std = 1/√d, so
    /// ‖w0‖ ≈ √(2d)).
    fn initial_point(&self) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.init_seed);
        rng.set_stream(INIT_STREAM);
        (0..self.dim())
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                self.init_std * z
            })
            .collect()
    }

    /// The loss/gradient and HVP kernels' dispatch: the same code compiled
    /// for AVX-512F, AVX2 or portable (same bits on each, tested).
    fn kernels(&self) -> String {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f".into();
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2".into();
        }
        "portable".into()
    }

    /// The test loss, σ2/σ3 and σ1…σ_k of the recovered matrix, as in
    /// metrics.csv.
    fn point_columns(&self) -> Vec<Column> {
        let mut v = vec![MatcompBn::TEST_LOSS, MatcompBn::SV2_OVER_SV3];
        v.extend(MatcompBn::SV.iter().take(self.n_singular.min(8)));
        v
    }
    fn point_values(&self, w: &[f64]) -> Vec<f64> {
        let r = self.recovered(w);
        let sv = self.singular_values_of(&r, self.n_singular.clamp(3, 8));
        let mut out = vec![self.test_loss_of(&r), sv[1] / sv[2]];
        out.extend(sv.iter().take(self.n_singular.min(8)));
        out
    }
    fn tracker(&self) -> Box<dyn Tracker + '_> {
        Box::new(MatcompTracker { p: self, st: MatcompState::default() })
    }
}

/// The train-loss level that counts as "fitted" in the summary.
const FIT_LOSS: f64 = 1e-6;

struct MatcompTracker<'a> {
    p: &'a MatcompBn,
    st: MatcompState,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct MatcompState {
    first_fit: Option<u64>,
    test_at_fit: Option<f64>,
    sv_ratio_at_fit: Option<f64>,
}

impl Tracker for MatcompTracker<'_> {
    fn columns(&self) -> Vec<Column> {
        let mut v = vec![MatcompBn::TEST_LOSS, MatcompBn::SV2_OVER_SV3];
        v.extend(MatcompBn::SV.iter().take(self.p.n_singular.min(8)));
        v
    }

    fn observe(&mut self, _obj: &Counted, s: &StepView) -> Vec<f64> {
        let p = self.p;
        if self.st.first_fit.is_none() && s.eval.loss < FIT_LOSS {
            self.st.first_fit = Some(s.step);
            let r = p.recovered(s.w);
            self.st.test_at_fit = Some(p.test_loss_of(&r));
            let sv = p.singular_values_of(&r, 3);
            self.st.sv_ratio_at_fit = Some(sv[1] / sv[2]);
        }
        if !s.logged {
            return Vec::new();
        }
        // One d×d product serves both the test loss and the SVD.
        let r = p.recovered(s.w);
        let sv = p.singular_values_of(&r, p.n_singular.clamp(3, 8));
        let mut out = vec![p.test_loss_of(&r), sv[1] / sv[2]];
        out.extend(sv.iter().take(p.n_singular.min(8)));
        out
    }

    fn summary(&mut self, _obj: &Counted, w: &[f64]) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("n_observed".into(), json!(self.p.n_obs()));
        m.insert("first_step_train_loss_below_1e-6".into(), json!(self.st.first_fit));
        m.insert("test_loss_at_fit".into(), json!(self.st.test_at_fit));
        m.insert("sv2_over_sv3_at_fit".into(), json!(self.st.sv_ratio_at_fit));
        let ok = w.iter().all(|x| x.is_finite());
        let r = if ok { Some(self.p.recovered(w)) } else { None };
        let sv = r.as_ref().map_or(vec![f64::NAN; 5], |r| self.p.singular_values_of(r, 5));
        m.insert("test_loss_final".into(), json!(r.as_ref().map(|r| self.p.test_loss_of(r))));
        m.insert("sv2_over_sv3_final".into(), json!(sv[1] / sv[2]));
        m.insert("singular_values_final".into(), json!(sv));
        m
    }
    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.st).expect("tracker state serialises")
    }
    fn load(&mut self, state: &serde_json::Value) -> Result<(), TrackerStateError> {
        self.st = TrackerStateError::read("matcomp_bn", state)?;
        Ok(())
    }
}
