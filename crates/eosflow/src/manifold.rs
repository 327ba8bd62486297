//! The minimiser manifold Γ: projections φ_t of θ_t onto it and the
//! oscillation h_t = ⟨θ_t − φ_t, v1(φ_t)⟩ around it (Section 4.2.3, P.3).

use crate::linalg::{axpy, dot, norm, normalize};
use crate::objective::Objective;

/// Settings of [`project_by_pgd`], the generic projection of App. Q.3.
#[derive(Clone, Debug, PartialEq)]
pub struct PgdProjection {
    /// Fixed step of projected GD on the sphere (Q.3: 0.005).
    pub lr: f64,
    /// Stop once L(φ) ≤ `loss_tol` (Q.3: 1e-8; residual-form losses allow
    /// far smaller values).
    pub loss_tol: f64,
    /// Give up after this many steps.
    pub max_steps: usize,
}

impl Default for PgdProjection {
    fn default() -> Self {
        Self { lr: 0.005, loss_tol: 1e-8, max_steps: 1_000_000 }
    }
}

/// A projection onto Γ with how it was obtained.
#[derive(Clone, Debug)]
pub struct Projected {
    /// The unit-norm point φ of Γ.
    pub phi: Vec<f64>,
    /// L(φ).
    pub loss: f64,
    /// PGD steps used (0 for exact projections).
    pub steps: usize,
}

/// Errors of the manifold tools.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifoldError {
    /// Projected GD did not reach the loss tolerance.
    #[error(
        "projection onto Γ: loss {loss:e} still above {tol:e} after {steps} projected-GD steps; raise max_steps or loss_tol"
    )]
    NotConverged { loss: f64, steps: usize, tol: f64 },
    /// Newton's retraction onto Γ did not converge.
    #[error(
        "retraction onto Γ: the Newton step is still {step:e} (> tol {tol:e}) after {iters} iterations; start closer to Γ (a projection of a fitted iterate) or raise retraction.max_iters"
    )]
    RetractionNotConverged { step: f64, iters: usize, tol: f64 },
    /// `tangent.method = "residual"` on an objective without a residual form.
    #[error(
        "tangent.method = \"residual\" needs an objective with a residual form (linreg_bn, matcomp_bn); use \"auto\", \"dense\" or \"krylov\""
    )]
    NoResidualForm,
    /// The Krylov split of a projection did not converge.
    #[error(
        "the tangent projection did not converge within a Krylov basis of {max_basis}: raise tangent.max_basis (memory max_basis·D doubles) or use tangent.method = \"dense\""
    )]
    ProjectionNotConverged { max_basis: usize },
    /// The descent that finds D_Γ did not reach Γ.
    #[error(
        "retraction onto Γ: gradient descent towards Γ still has ‖∇L‖ = {grad:e} (> {tol:e}) after {steps} steps; start from a fitted iterate (flow.start = \"eos_entry\" or a later step) or raise retraction.max_descent_steps"
    )]
    DescentNotConverged { grad: f64, steps: usize, tol: f64 },
    /// λ1(H) ≤ 0 (or not finite): not near a local minimum.
    #[error("λ1(H) = {lambda1:e} is not positive: the point is not near a manifold of local minimisers")]
    NotAMinimum { lambda1: f64 },
    /// A non-finite value appeared.
    #[error("non-finite value in the {what}")]
    NonFinite { what: &'static str },
    /// The objective is scale-invariant in a block only.
    #[error(
        "the objective is scale-invariant in a block of {block} parameters only: the flow is defined on the sphere (all parameters scale-invariant) or in R^D (none); use a fully scale-invariant architecture"
    )]
    PartialScaleInvariance { block: usize },
    /// Lanczos failed.
    #[error(transparent)]
    Lanczos(#[from] crate::spectrum::LanczosError),
}

/// φ = lim of projected GD on the sphere from θ: θ ← Π(θ − lr·∇L(θ)) until
/// L(θ) ≤ loss_tol (App. Q.3). For a fully scale-invariant loss; near Γ the
/// limit is the gradient-flow projection, which agrees with the nearest point
/// of Γ up to O(‖θ − φ‖²).
pub fn project_by_pgd(obj: &dyn Objective, theta: &[f64], p: &PgdProjection) -> Result<Projected, ManifoldError> {
    let mut phi = theta.to_vec();
    normalize(&mut phi);
    let mut g = vec![0.0; phi.len()];
    for steps in 0..=p.max_steps {
        let loss = obj.loss_grad(&phi, &mut g);
        if loss <= p.loss_tol {
            return Ok(Projected { phi, loss, steps });
        }
        if steps == p.max_steps {
            return Err(ManifoldError::NotConverged { loss, steps, tol: p.loss_tol });
        }
        axpy(-p.lr, &g, &mut phi);
        normalize(&mut phi);
    }
    unreachable!()
}

/// h = ⟨θ − φ, v1⟩, the component of the displacement from Γ along the top
/// eigenvector of H(φ) (Section 4.2.3).
pub fn oscillation(theta: &[f64], phi: &[f64], v1: &[f64]) -> f64 {
    theta.iter().zip(phi).zip(v1).map(|((t, p), v)| (t - p) * v).sum()
}

/// Follows h_t over a run with v1(φ_t) chosen continuously (each new v1 is
/// sign-aligned with the previous one, since an eigensolver returns ±v1),
/// and counts sign changes of h_t (period-2 oscillation: h_t > 0 on even t,
/// < 0 on odd t, or the reverse).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct OscillationTracker {
    prev_v1: Option<Vec<f64>>,
    prev_h: Option<f64>,
    /// Consecutive pairs (h_{t−1}, h_t) seen.
    pub pairs: u64,
    /// Of those, how many changed sign.
    pub sign_changes: u64,
}

impl OscillationTracker {
    /// Records step t; returns h_t with the continuous choice of v1.
    pub fn observe(&mut self, theta: &[f64], phi: &[f64], v1: &[f64]) -> f64 {
        let mut v = v1.to_vec();
        if let Some(prev) = &self.prev_v1
            && dot(prev, &v) < 0.0
        {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        let h = oscillation(theta, phi, &v);
        if let Some(ph) = self.prev_h {
            self.pairs += 1;
            if ph * h < 0.0 {
                self.sign_changes += 1;
            }
        }
        self.prev_h = Some(h);
        self.prev_v1 = Some(v);
        h
    }

    /// Drops the history (e.g. at EoS entry, to count only from there).
    pub fn reset_counts(&mut self) {
        self.pairs = 0;
        self.sign_changes = 0;
    }
}

/// ‖θ − φ‖.
pub fn distance(theta: &[f64], phi: &[f64]) -> f64 {
    let d: Vec<f64> = theta.iter().zip(phi).map(|(a, b)| a - b).collect();
    norm(&d)
}

/// Where the manifold Γ of local minimisers lives: on the unit sphere for a
/// scale-invariant loss (Assumption 4.4), or in R^D (Assumption B.11,
/// Thm B.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifoldDomain {
    /// Γ ⊂ S^{D−1}; T_ζΓ = null(H(ζ)) ∩ ζ^⊥.
    Sphere,
    /// Γ ⊂ R^D; T_ζΓ = null(H(ζ)).
    FullSpace,
}

impl ManifoldDomain {
    /// The domain of an objective: the sphere when it is scale-invariant in
    /// every parameter, R^D when not at all. A partially scale-invariant
    /// objective (a standard ResNet) has no theorem of the paper behind it
    /// and is refused.
    pub fn of(obj: &dyn Objective) -> Result<Self, ManifoldError> {
        match obj.scale_invariance() {
            crate::ScaleInvariance::All => Ok(Self::Sphere),
            crate::ScaleInvariance::None => Ok(Self::FullSpace),
            crate::ScaleInvariance::Block(idx) => Err(ManifoldError::PartialScaleInvariance { block: idx.len() }),
        }
    }
}

/// How [`LocalHessian`] finds λ1, v1 and the null space of H.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TangentMethod {
    /// Dense when D ≤ `dense_max_dim`; else Residual when the objective
    /// has a residual form, else Krylov.
    #[default]
    Auto,
    /// Form H (D HVPs) and eigendecompose it: null(H) is the span of the
    /// eigenvectors with |λ_i| ≤ null_tol·λ1.
    Dense,
    /// Lanczos for λ1, v1; projections and solves by the Krylov split
    /// ([`crate::spectrum::krylov_split`]) with the same threshold.
    Krylov,
    /// Lanczos for λ1, v1; Γ = {r = 0} through the objective's residual
    /// Jacobian ([`crate::Hessian::residual_geometry`]): T_ζΓ = null(J),
    /// projections with the m×m Gram matrix JJᵀ, Gauss–Newton retraction.
    Residual,
}

/// Settings of the tangent-space projection ∇_Γ and of the pseudo-inverse
/// solves of the retraction.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TangentParams {
    /// Dense or matrix-free.
    pub method: TangentMethod,
    /// Largest D that `Auto` treats densely.
    pub dense_max_dim: usize,
    /// Eigenvalues (dense) or Ritz values (Krylov) with |λ| ≤ null_tol·λ1
    /// span null(H). It must lie
    /// below the relative gap γ of App. H.1 (λ_{D−D_Γ}/λ1) and above the
    /// rounding of the zero eigenvalues (O(D·ε) plus the retraction's
    /// distance from Γ times ‖∇³L‖).
    pub null_tol: f64,
    /// Krylov: the projected vector r has ‖H·r‖ ≤ krylov_tol·λ1·‖r‖, and a
    /// solve x has ‖H·x − (g − P₀g)‖ ≤ krylov_tol·‖g‖.
    pub krylov_tol: f64,
    /// Krylov: the largest basis (memory max_basis·D doubles).
    pub max_basis: usize,
    /// Lanczos (Krylov and residual paths) for λ1, λ2 and v1 (k is raised
    /// to 2 at least), warm-started from the last v1.
    pub lanczos: crate::spectrum::LanczosParams,
}

impl Default for TangentParams {
    fn default() -> Self {
        Self {
            method: TangentMethod::Auto,
            dense_max_dim: 400,
            null_tol: 1e-8,
            krylov_tol: 1e-10,
            max_basis: 1500,
            lanczos: crate::spectrum::LanczosParams { k: 2, tol: 1e-11, ..Default::default() },
        }
    }
}

/// The Hessian at one point w (of or near Γ), decomposed as the flow needs
/// it: λ1, v1 and projections onto its null space. On the sphere it is the
/// Hessian within w^⊥, P·H(w)·P, equal to H(w) on Γ (where H·w = 0).
pub struct LocalHessian<'a> {
    op: Box<dyn crate::spectrum::LinOp + 'a>,
    point: Vec<f64>,
    domain: ManifoldDomain,
    /// λ1(H(w)); on the sphere, at unit w, the spherical sharpness.
    pub lambda1: f64,
    /// λ2(H(w)), for the gap of Assumption 4.5.
    pub lambda2: Option<f64>,
    /// A unit top eigenvector.
    pub v1: Vec<f64>,
    /// Dense: every eigenpair, descending.
    dense: Option<(Vec<f64>, Vec<Vec<f64>>)>,
    /// Dense: which eigenpairs span null(H).
    null_mask: Vec<bool>,
    /// Residual: J at w and the pseudo-inverse of JJᵀ.
    residual: Option<ResidualSplit<'a>>,
    null_tol: f64,
    krylov: crate::spectrum::KrylovParams,
    /// HVPs used so far (forming H or Lanczos, and every projection).
    pub hvps: usize,
}

/// P·H·P with P = I − ŵŵᵀ, the Hessian within the sphere's tangent space
/// w^⊥ (the Riemannian Hessian of a scale-invariant loss, whose ⟨∇L, w⟩ = 0
/// term vanishes). Off Γ, H(w)·w = −∇L(w) ≠ 0, so w is only nearly null in
/// H; in P·H·P it is exactly null and never mixes with T_wΓ.
struct SphereTangentOp<'a> {
    inner: Box<dyn crate::spectrum::LinOp + 'a>,
    w: Vec<f64>,
    scratch: std::cell::RefCell<Vec<f64>>,
}

impl<'a> SphereTangentOp<'a> {
    fn new(inner: Box<dyn crate::spectrum::LinOp + 'a>, w: &[f64]) -> Self {
        let mut w = w.to_vec();
        normalize(&mut w);
        let n = w.len();
        Self { inner, w, scratch: std::cell::RefCell::new(vec![0.0; n]) }
    }
}

impl crate::spectrum::LinOp for SphereTangentOp<'_> {
    fn dim(&self) -> usize {
        self.w.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let mut px = self.scratch.borrow_mut();
        px.copy_from_slice(x);
        axpy(-dot(x, &self.w), &self.w, &mut px);
        self.inner.apply(&px, y);
        let c = dot(y, &self.w);
        axpy(-c, &self.w, y);
    }
}

/// J at w with a factorisation of JJᵀ, for projections and Gauss–Newton
/// steps. When the geometry names the null vectors n_i of JJᵀ, it is
/// G + c·Σ n̂_i n̂_iᵀ (c = tr G/m) by Cholesky — positive definite exactly
/// when those span the whole null space — and (JJᵀ)⁺y = P·(G + c·NNᵀ)⁻¹·P·y
/// with P the projector off them; else (or when Cholesky fails: a further
/// rank loss) an eigendecomposition with eigenvalues ≤ null_tol·max as zero.
struct ResidualSplit<'a> {
    geom: Box<dyn crate::ResidualGeometry + 'a>,
    solver: GramSolver,
}

enum GramSolver {
    Cholesky { chol: crate::linalg::Cholesky, null: Vec<Vec<f64>> },
    Eigen { vals: Vec<f64>, vecs: Vec<Vec<f64>>, thr: f64 },
}

impl<'a> ResidualSplit<'a> {
    fn new(geom: Box<dyn crate::ResidualGeometry + 'a>, null_tol: f64) -> Self {
        let m = geom.residual().len();
        let mut g = geom.gram();
        // Orthonormal null vectors (Gram–Schmidt).
        let mut null: Vec<Vec<f64>> = Vec::new();
        for mut v in geom.gram_null_vectors() {
            for u in &null {
                let c = dot(&v, u);
                axpy(-c, u, &mut v);
            }
            if normalize(&mut v) > 0.0 {
                null.push(v);
            }
        }
        if !null.is_empty() {
            let c = (0..m).map(|i| g[i * m + i]).sum::<f64>() / m as f64;
            for u in &null {
                for i in 0..m {
                    for j in 0..m {
                        g[i * m + j] += c * u[i] * u[j];
                    }
                }
            }
            if let Some(chol) = crate::linalg::Cholesky::new(m, &g) {
                return Self { geom, solver: GramSolver::Cholesky { chol, null } };
            }
            g = geom.gram();
        }
        let (vals, vecs) = crate::linalg::symmetric_eigen(m, &g);
        let thr = null_tol * vals.first().copied().unwrap_or(0.0).abs();
        Self { geom, solver: GramSolver::Eigen { vals, vecs, thr } }
    }
    fn jvp(&self, v: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.geom.residual().len()];
        self.geom.jvp(v, &mut out);
        out
    }
    /// (JJᵀ)⁺·y.
    fn gram_pinv(&self, y: &[f64]) -> Vec<f64> {
        match &self.solver {
            GramSolver::Cholesky { chol, null } => {
                let off = |mut v: Vec<f64>| {
                    for u in null {
                        let c = dot(&v, u);
                        axpy(-c, u, &mut v);
                    }
                    v
                };
                off(chol.solve(&off(y.to_vec())))
            }
            GramSolver::Eigen { vals, vecs, thr } => {
                let mut x = vec![0.0; y.len()];
                for (l, u) in vals.iter().zip(vecs) {
                    if l.abs() > *thr {
                        axpy(dot(u, y) / l, u, &mut x);
                    }
                }
                x
            }
        }
    }
}

/// A vector projected onto T_wΓ by [`LocalHessian::project_tangent`].
#[derive(Clone, Debug)]
pub struct TangentProjection {
    /// P·g.
    pub vector: Vec<f64>,
    /// ‖H·Pg‖ / (λ1·‖Pg‖): how far Pg is from null(H) (0 for an exact
    /// projection; the Krylov split stops at its tolerance).
    pub null_residual: f64,
    /// HVPs the projection used.
    pub hvps: usize,
    /// Whether the Krylov split met its tolerance (always true dense).
    pub converged: bool,
}

impl<'a> LocalHessian<'a> {
    /// Decomposes H(w). `warm` is a previous v1 (Lanczos start).
    ///
    /// `null_dim` = dim null(H) on Γ (D_Γ of Assumption 4.4), when known:
    /// the dense path then takes the `null_dim` eigenvalues smallest in
    /// magnitude as null(H) instead of thresholding. Off Γ by δ the zero
    /// eigenvalues move by O(δ·‖∇³L‖), so a threshold would count some as
    /// range and the pseudo-inverse would divide by them; the count gives
    /// the smooth spectral projector that the retraction and the flow's
    /// stages need. The matrix-free path ignores it.
    pub fn new(
        obj: &'a dyn crate::Hessian,
        w: &[f64],
        domain: ManifoldDomain,
        p: &TangentParams,
        warm: Option<&[f64]>,
        null_dim: Option<usize>,
    ) -> Result<Self, ManifoldError> {
        Self::build(obj, w, domain, p, warm, null_dim, None)
    }

    /// [`LocalHessian::new`], reusing a residual split already made at w.
    fn build(
        obj: &'a dyn crate::Hessian,
        w: &[f64],
        domain: ManifoldDomain,
        p: &TangentParams,
        warm: Option<&[f64]>,
        null_dim: Option<usize>,
        split: Option<ResidualSplit<'a>>,
    ) -> Result<Self, ManifoldError> {
        let d = w.len();
        let mut residual = None;
        let op: Box<dyn crate::spectrum::LinOp + 'a> = match domain {
            ManifoldDomain::Sphere => Box::new(SphereTangentOp::new(obj.hessian_at(w), w)),
            ManifoldDomain::FullSpace => obj.hessian_at(w),
        };
        let method = match p.method {
            TangentMethod::Auto if d <= p.dense_max_dim => TangentMethod::Dense,
            TangentMethod::Auto if obj.has_residual_geometry() => TangentMethod::Residual,
            TangentMethod::Auto => TangentMethod::Krylov,
            m => m,
        };
        let mut split = split.filter(|_| method == TangentMethod::Residual);
        if method == TangentMethod::Residual && split.is_none() {
            residual = Some(obj.residual_geometry(w).ok_or(ManifoldError::NoResidualForm)?);
        }
        let dense = method == TangentMethod::Dense;
        let mut h = Self {
            op,
            point: w.to_vec(),
            domain,
            lambda1: 0.0,
            lambda2: None,
            v1: Vec::new(),
            dense: None,
            null_mask: Vec::new(),
            residual: None,
            null_tol: p.null_tol,
            krylov: crate::spectrum::KrylovParams { tol: p.krylov_tol, null_tol: p.null_tol, max_basis: p.max_basis },
            hvps: 0,
        };
        if dense {
            let a = crate::spectrum::to_dense(h.op.as_ref());
            h.hvps += d;
            // A failed or non-finite HVP (a backend error, a user's callable)
            // must end as an error, not in the eigensolver's panic.
            if !a.iter().all(|x| x.is_finite()) {
                return Err(ManifoldError::NonFinite { what: "Hessian" });
            }
            let (vals, vecs) = crate::linalg::symmetric_eigen(d, &a);
            h.lambda1 = vals[0];
            h.lambda2 = vals.get(1).copied();
            h.v1 = vecs[0].clone();
            let thr = p.null_tol * vals[0];
            h.null_mask = match null_dim {
                Some(k) => {
                    let mut order: Vec<usize> = (0..d).collect();
                    order.sort_by(|&i, &j| vals[i].abs().total_cmp(&vals[j].abs()));
                    let mut mask = vec![false; d];
                    order.iter().take(k.min(d)).for_each(|&i| mask[i] = true);
                    mask
                }
                None => vals.iter().map(|l| l.abs() <= thr).collect(),
            };
            h.dense = Some((vals, vecs));
        } else {
            // k ≥ 2: λ2 gives the gap of Assumption 4.5.
            let lp = crate::spectrum::LanczosParams { k: p.lanczos.k.max(2).min(d), ..p.lanczos.clone() };
            let r = crate::spectrum::lanczos_top(h.op.as_ref(), &lp, warm)?;
            h.hvps += r.matvecs;
            h.lambda1 = r.eigenvalues[0];
            h.lambda2 = r.eigenvalues.get(1).copied();
            h.v1 = r.eigenvectors.into_iter().next().expect("Lanczos returns k ≥ 1 pairs");
        }
        if !(h.lambda1 > 0.0 && h.lambda1.is_finite()) {
            return Err(ManifoldError::NotAMinimum { lambda1: h.lambda1 });
        }
        if let Some(geom) = residual {
            split = Some(ResidualSplit::new(geom, p.null_tol));
        }
        h.residual = split;
        Ok(h)
    }

    /// Removes the radial component on the sphere (T_wS^{D−1} = w^⊥).
    fn remove_radial(&self, g: &mut [f64]) {
        if self.domain == ManifoldDomain::Sphere {
            let w = &self.point;
            let c = dot(g, w) / dot(w, w);
            axpy(-c, w, g);
        }
    }

    /// The projection of g onto the tangent space of Γ at w: onto null(H(w))
    /// (within w^⊥ on the sphere, where w ∈ null(H) on Γ because
    /// H(w)·w = −∇L(w) = 0). Dense: Σ over eigenvectors with
    /// |λ_i| ≤ null_tol·λ1 of ⟨u_i, g⟩u_i. Matrix-free: the residual of
    /// Krylov split of g ([`crate::spectrum::krylov_split`]).
    pub fn project_tangent(&mut self, g: &[f64]) -> TangentProjection {
        let mut r = g.to_vec();
        self.remove_radial(&mut r);
        let mut hvps = 0;
        let mut converged = true;
        if let Some(rs) = &self.residual {
            // r − Jᵀ(JJᵀ)⁺J·r: the component in null(J).
            let c = rs.gram_pinv(&rs.jvp(&r));
            let mut back = vec![0.0; r.len()];
            rs.geom.vjp(&c, &mut back);
            axpy(-1.0, &back, &mut r);
        } else if let Some((_, vecs)) = &self.dense {
            let mut out = vec![0.0; r.len()];
            for (null, u) in self.null_mask.iter().zip(vecs) {
                if *null {
                    axpy(dot(u, &r), u, &mut out);
                }
            }
            r = out;
        } else {
            let m = crate::spectrum::krylov_split(self.op.as_ref(), &r, self.lambda1, &self.krylov);
            hvps += m.matvecs;
            converged = m.converged;
            r = m.null_part;
        }
        self.remove_radial(&mut r);
        let mut hr = vec![0.0; r.len()];
        self.op.apply(&r, &mut hr);
        hvps += 1;
        self.hvps += hvps;
        let rn = norm(&r);
        let null_residual = if rn > 0.0 { norm(&hr) / (self.lambda1 * rn) } else { 0.0 };
        TangentProjection { vector: r, null_residual, hvps, converged }
    }

    /// x = H⁺·g, the minimum-norm least-squares solution over the
    /// eigenvalues (dense) or Ritz values (Krylov) above null_tol·λ1.
    pub fn pseudo_solve(&mut self, g: &[f64]) -> Vec<f64> {
        if let Some((vals, vecs)) = &self.dense {
            let mut x = vec![0.0; g.len()];
            for ((l, u), null) in vals.iter().zip(vecs).zip(&self.null_mask) {
                if !null {
                    axpy(dot(u, g) / l, u, &mut x);
                }
            }
            x
        } else {
            let m = crate::spectrum::krylov_split(self.op.as_ref(), g, self.lambda1, &self.krylov);
            self.hvps += m.matvecs;
            m.solution
        }
    }

    /// The retraction's step at w for the gradient g = ∇L(w): Gauss–Newton
    /// J⁺·r(w) = Jᵀ(JJᵀ)⁺·r on the residual path, else Newton H⁺·g.
    pub fn retraction_step(&mut self, g: &[f64]) -> Vec<f64> {
        match &self.residual {
            Some(rs) => {
                let c = rs.gram_pinv(rs.geom.residual());
                let mut x = vec![0.0; g.len()];
                rs.geom.vjp(&c, &mut x);
                x
            }
            None => self.pseudo_solve(g),
        }
    }

    /// dim null(H(w)) by the dense threshold |λ| ≤ null_tol·λ1 (None on the
    /// matrix-free path).
    pub fn null_dim_by_threshold(&self) -> Option<usize> {
        let thr = self.null_tol * self.lambda1;
        self.dense.as_ref().map(|(vals, _)| vals.iter().filter(|l| l.abs() <= thr).count())
    }
}

/// Settings of [`retract`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetractionParams {
    /// Stop when the Newton step ‖H⁺∇L‖ (the distance still to go, in the
    /// units of w) is at most this.
    pub tol: f64,
    /// Newton iterations before giving up.
    pub max_iters: usize,
    /// Gradient-descent steps (step 1/λ1) allowed for finding D_Γ when it
    /// is not known (see [`retract`]).
    pub max_descent_steps: usize,
}

impl Default for RetractionParams {
    fn default() -> Self {
        Self { tol: 1e-12, max_iters: 30, max_descent_steps: 200_000 }
    }
}

/// A point retracted onto Γ, with the decomposed Hessian there.
pub struct Retracted<'a> {
    /// The point of Γ.
    pub point: Vec<f64>,
    /// ‖y − point‖: how far y was from Γ.
    pub moved: f64,
    /// Newton iterations.
    pub iters: usize,
    /// L at the point.
    pub loss: f64,
    /// H at the point.
    pub hessian: LocalHessian<'a>,
}

/// Retracts y onto Γ by Newton's method on ∇L = 0 with minimum-norm steps,
/// y ← y − H(y)⁺∇L(y) (then Π(y) on the sphere), until the step is below
/// `tol`. The step is orthogonal to null(H), so the limit is the normal
/// projection of y onto Γ up to O(dist²) — the same as the gradient-flow
/// projection Φ of App. H.1 to that order (whose first step, −H(y − φ), is
/// normal too); the tests compare the two. Convergence is quadratic.
///
/// `null_dim` = D_Γ when known (see [`LocalHessian::new`]). When it is not,
/// the dense path first descends (gradient steps of 1/λ1) until
/// ‖∇L‖ ≤ 0.01·null_tol·λ1, reads D_Γ off the Hessian there by the
/// threshold, and runs Newton from y with that count, so the result is the
/// smooth (normal) retraction either way. (The Krylov path has no count:
/// it runs Newton with the threshold on Ritz values.)
pub fn retract<'a>(
    obj: &'a dyn crate::Hessian,
    y: &[f64],
    domain: ManifoldDomain,
    tangent: &TangentParams,
    p: &RetractionParams,
    warm: Option<&[f64]>,
    null_dim: Option<usize>,
) -> Result<Retracted<'a>, ManifoldError> {
    if null_dim.is_some() {
        return newton_retract(obj, y, domain, tangent, p, warm, null_dim);
    }
    let mut z = y.to_vec();
    if domain == ManifoldDomain::Sphere {
        normalize(&mut z);
    }
    let h0 = LocalHessian::new(obj, &z, domain, tangent, warm, None)?;
    if h0.dense.is_none() {
        // Krylov: thresholds on Ritz values; Residual: Gauss–Newton, whose
        // split (null(J)) does not move off Γ.
        drop(h0);
        return newton_retract(obj, y, domain, tangent, p, warm, None);
    }
    // D_Γ by the threshold needs a point where the zero eigenvalues have not
    // moved: off Γ by δ a tangent direction's eigenvalue is O(δ·‖∇³L‖), far
    // above null_tol·λ1. Gradient descent with step 1/λ1 (a discretised Φ)
    // gets there; Newton then starts again from y with the count.
    // The step starts at 1/λ1(y) and is halved whenever the loss would rise
    // (λ1 grows along the way from a point far from Γ) and doubled back
    // after a success, never beyond 1/λ1(y).
    let lambda1 = h0.lambda1;
    let mut g = vec![0.0; z.len()];
    let mut lr = 1.0 / lambda1;
    let mut loss = obj.loss_grad(&z, &mut g);
    let mut trial = z.clone();
    let mut reached = false;
    for _ in 0..p.max_descent_steps {
        if norm(&g) <= 1e-2 * tangent.null_tol * lambda1 {
            reached = true;
            break;
        }
        trial.copy_from_slice(&z);
        axpy(-lr, &g, &mut trial);
        if domain == ManifoldDomain::Sphere {
            normalize(&mut trial);
        }
        let l = obj.loss(&trial);
        if l <= loss {
            std::mem::swap(&mut z, &mut trial);
            loss = obj.loss_grad(&z, &mut g);
            lr = (2.0 * lr).min(1.0 / lambda1);
        } else {
            lr *= 0.5;
            if lr < 1e-12 / lambda1 {
                break;
            }
        }
    }
    if !reached {
        return Err(ManifoldError::DescentNotConverged {
            grad: norm(&g),
            steps: p.max_descent_steps,
            tol: 1e-2 * tangent.null_tol * lambda1,
        });
    }
    let k = LocalHessian::new(obj, &z, domain, tangent, Some(&h0.v1), None)?.null_dim_by_threshold();
    newton_retract(obj, y, domain, tangent, p, Some(&h0.v1), k)
}

/// Whether [`LocalHessian::new`] takes the residual path for this objective.
pub(crate) fn uses_residual(obj: &dyn crate::Hessian, d: usize, tangent: &TangentParams) -> bool {
    match tangent.method {
        TangentMethod::Residual => true,
        TangentMethod::Auto => d > tangent.dense_max_dim && obj.has_residual_geometry(),
        _ => false,
    }
}

fn newton_retract<'a>(
    obj: &'a dyn crate::Hessian,
    y: &[f64],
    domain: ManifoldDomain,
    tangent: &TangentParams,
    p: &RetractionParams,
    warm: Option<&[f64]>,
    null_dim: Option<usize>,
) -> Result<Retracted<'a>, ManifoldError> {
    let mut z = y.to_vec();
    if domain == ManifoldDomain::Sphere {
        normalize(&mut z);
    }
    let mut g = vec![0.0; z.len()];
    let mut warm = warm.map(|v| v.to_vec());
    let mut last_step = f64::INFINITY;
    // The residual path's Gauss–Newton steps need J only: λ1 and v1 (a
    // Lanczos run) are computed once, at the point reached.
    let residual = uses_residual(obj, z.len(), tangent);
    let mut iters0 = 0;
    let mut converged_split = None;
    if residual {
        while iters0 < p.max_iters {
            let geom = obj.residual_geometry(&z).ok_or(ManifoldError::NoResidualForm)?;
            let split = ResidualSplit::new(geom, tangent.null_tol);
            let c = split.gram_pinv(split.geom.residual());
            let mut x = vec![0.0; z.len()];
            split.geom.vjp(&c, &mut x);
            let step = norm(&x);
            if !step.is_finite() {
                return Err(ManifoldError::NonFinite { what: "retraction" });
            }
            if step <= p.tol {
                // z stays put: its split serves the decomposition below.
                converged_split = Some(split);
                break;
            }
            last_step = step;
            axpy(-1.0, &x, &mut z);
            if domain == ManifoldDomain::Sphere {
                normalize(&mut z);
            }
            iters0 += 1;
        }
    }
    for iters in iters0..=p.max_iters {
        let loss = obj.loss_grad(&z, &mut g);
        let split = converged_split.take();
        let mut hess = LocalHessian::build(obj, &z, domain, tangent, warm.as_deref(), null_dim, split)?;
        let x = hess.retraction_step(&g);
        let step = norm(&x);
        if !step.is_finite() || !loss.is_finite() {
            return Err(ManifoldError::NonFinite { what: "retraction" });
        }
        if step <= p.tol {
            let moved = distance(y, &z);
            return Ok(Retracted { point: z, moved, iters, loss, hessian: hess });
        }
        last_step = step;
        if iters == p.max_iters {
            break;
        }
        axpy(-1.0, &x, &mut z);
        if domain == ManifoldDomain::Sphere {
            normalize(&mut z);
        }
        warm = Some(hess.v1);
    }
    Err(ManifoldError::RetractionNotConverged { step: last_step, iters: p.max_iters, tol: p.tol })
}
