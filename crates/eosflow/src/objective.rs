//! Objectives: a loss with its gradient, its Hessian-vector product, and a
//! declaration of which parameters the loss is scale-invariant in.
//!
//! The traits follow argmin's "one capability per trait": [`Objective`] is
//! loss + gradient (fused, like `value_and_grad`), [`Hessian`] adds the
//! Hessian-vector product and a per-point operator for Lanczos.

use crate::linalg;
use crate::spectrum::LinOp;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which parameters a loss is scale-invariant in: L(…, c·w_S, …) = L(…, w_S, …)
/// for every c > 0, where w_S is the declared block.
///
/// Spherical sharpness (Def. 1.1) and the effective learning rate (Lemma 3.1)
/// are defined on that block: for a standard ResNet only the convolution
/// weights before BN are scale-invariant (App. P.2, Fig. 9).
#[derive(Clone, Debug, PartialEq, Default)]
pub enum ScaleInvariance {
    /// L(cw) = L(w) for all c > 0 (the paper's main setting).
    #[default]
    All,
    /// Only the coordinates with these indices (sorted, distinct) form a
    /// scale-invariant block.
    Block(Vec<usize>),
    /// Not scale-invariant: the effective LR is the plain LR and sharpness is
    /// the ordinary λ1(∇²L(w)).
    None,
}

impl ScaleInvariance {
    /// ‖w_S‖₂, the norm of the scale-invariant block (‖w‖ for `All`; 1 for
    /// `None`, so formulas that scale by it reduce to the unnormalised ones).
    pub fn block_norm(&self, w: &[f64]) -> f64 {
        match self {
            ScaleInvariance::All => linalg::norm(w),
            ScaleInvariance::Block(idx) => {
                let v: Vec<f64> = idx.iter().map(|&i| w[i]).collect();
                linalg::norm(&v)
            }
            ScaleInvariance::None => 1.0,
        }
    }
}

/// A differentiable loss on a flat parameter vector.
pub trait Objective: Sync {
    /// Number of parameters D.
    fn dim(&self) -> usize;

    /// Returns L(w) and writes ∇L(w) into `grad` (length D).
    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64;

    /// L(w) alone. The default calls [`Objective::loss_grad`]; objectives
    /// with a cheaper loss override it.
    fn loss(&self, w: &[f64]) -> f64 {
        let mut g = vec![0.0; self.dim()];
        self.loss_grad(w, &mut g)
    }

    /// Which block of parameters the loss is scale-invariant in.
    fn scale_invariance(&self) -> ScaleInvariance {
        ScaleInvariance::All
    }

    /// Takes the first evaluation failure since the last call: a backend
    /// error inside a loss, gradient, HVP or forward pass (a device error, a
    /// GPU out of memory) that the trait's infallible signatures cannot
    /// return. A failed evaluation also writes NaN, so a caller that does
    /// not ask stops on non-finite values anyway; the runner asks after
    /// every evaluation and ends the run with `Status::Error` naming the
    /// operation. Objectives that cannot fail keep the default (`None`).
    fn take_failure(&self) -> Option<EvalFailure> {
        None
    }
}

/// An evaluation that failed inside an objective's backend
/// ([`Objective::take_failure`]).
#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {source}")]
pub struct EvalFailure {
    /// The operation: "loss", "gradient", "hvp", "forward pass", ….
    pub op: &'static str,
    /// The backend's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Objectives with a Hessian-vector product ∇²L(w)·v.
pub trait Hessian: Objective {
    /// out ← ∇²L(w)·v.
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]);

    /// The Hessian at one point as a matrix-free operator. Lanczos applies it
    /// many times at the same w, so an objective may precompute per-w state
    /// here (the toy3d problem forms its 3×3 Hessian once). Objectives with
    /// nothing to precompute return `Box::new(HvpAt::new(self, w))`.
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a>;

    /// out ← ∇³L(w)[v, v, ·] = d/dt (∇²L(w + t·v)·v) at t = 0, the gradient
    /// of w ↦ ⟨v, ∇²L(w)·v⟩ (for a unit top eigenvector v1 of ∇²L(w) with a
    /// simple eigenvalue it is ∇λ1(w), the driving term of the flow, eq. 3).
    ///
    /// The default takes central differences of two HVPs along v
    /// ([`third_contraction_by_hvp_differences`]); problems with an exact
    /// kernel override it and [`Hessian::third_contraction_is_exact`].
    fn third_contraction(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        third_contraction_by_hvp_differences(self, w, v, out)
    }

    /// Whether [`Hessian::third_contraction`] is an exact kernel (`false`: the
    /// default differences of HVPs).
    fn third_contraction_is_exact(&self) -> bool {
        false
    }

    /// Γ as the zero set of residuals, when the objective has that form
    /// (the squared-loss BN problems: L = c·‖r(w)‖² with Γ = {r = 0}): the
    /// residual map's Jacobian J at w. Then T_ζΓ = null(J(ζ)) = null(H(ζ))
    /// (H = 2c·JᵀJ on Γ), so the flow projects with the m×m Gram matrix
    /// JJᵀ instead of a D-dimensional Krylov space, and retracts by
    /// Gauss–Newton on r. The default: no such form.
    fn residual_geometry<'a>(&'a self, _w: &[f64]) -> Option<Box<dyn ResidualGeometry + 'a>> {
        None
    }

    /// Whether [`Hessian::residual_geometry`] returns one (without building it).
    fn has_residual_geometry(&self) -> bool {
        false
    }
}

/// The residual map r: R^D → R^m of an objective at one point w
/// ([`Hessian::residual_geometry`]), with J = ∂r/∂w.
pub trait ResidualGeometry {
    /// r(w).
    fn residual(&self) -> &[f64];
    /// out (m) ← J·v.
    fn jvp(&self, v: &[f64], out: &mut [f64]);
    /// out (D) ← Jᵀ·y.
    fn vjp(&self, y: &[f64], out: &mut [f64]);
    /// J·Jᵀ, m×m row-major.
    fn gram(&self) -> Vec<f64>;
    /// Vectors known to span null(Jᵀ) (the residuals' own constraints, such
    /// as u ⟂ … of a BN head, ‖u‖² = n). With them JJᵀ is factorised by
    /// Cholesky after adding their projector, instead of an m×m
    /// eigendecomposition. The default: none known.
    fn gram_null_vectors(&self) -> Vec<Vec<f64>> {
        Vec::new()
    }
}

/// ∇³L[v, v, ·] for a wrapper around `inner` (a counter, a fault
/// injector): `inner`'s exact kernel when it has one, else differences of
/// the *wrapper's* HVPs, so that whatever the wrapper does to an HVP applies
/// to them too.
pub fn third_contraction_through<W: Hessian + ?Sized>(
    wrapper: &W,
    inner: &dyn Hessian,
    w: &[f64],
    v: &[f64],
    out: &mut [f64],
) {
    if inner.third_contraction_is_exact() {
        inner.third_contraction(w, v, out)
    } else {
        third_contraction_by_hvp_differences(wrapper, w, v, out)
    }
}

/// ∇³L(w)[v, v, ·] ≈ (∇²L(w + h·v̂)·v − ∇²L(w − h·v̂)·v)/(2h)·‖v‖, v̂ = v/‖v‖,
/// with h = ε^{1/3}·max(1, ‖w‖) (ε^{1/3}·‖w‖ for a fully scale-invariant
/// loss): two HVPs.
///
/// The truncation error is (h²/6)·∇⁵L[v̂, v̂, v̂, v, ·]-sized and the rounding
/// error ε‖∇²L·v‖/h; h ∝ ε^{1/3} balances them (about 10 correct digits),
/// and the factor ‖w‖ keeps the step relative for scale-invariant losses,
/// whose derivatives scale as powers of 1/‖w‖. The same rule as
/// [`FiniteDifferenceHvp`], one derivative higher.
///
/// ```
/// use eosflow::objective::{third_contraction_by_hvp_differences, Hessian};
/// use eosflow::problems::Toy3d;
/// let p = Toy3d::new(3);
/// let (w, v) = ([0.4, -0.7, 0.6], [0.3, 0.5, -0.2]);
/// let (mut exact, mut diff) = ([0.0; 3], [0.0; 3]);
/// p.third_contraction(&w, &v, &mut exact);
/// third_contraction_by_hvp_differences(&p, &w, &v, &mut diff);
/// for i in 0..3 {
///     assert!((exact[i] - diff[i]).abs() < 1e-7 * (1.0 + exact[i].abs()));
/// }
/// ```
pub fn third_contraction_by_hvp_differences<H: Hessian + ?Sized>(obj: &H, w: &[f64], v: &[f64], out: &mut [f64]) {
    let vn = linalg::norm(v);
    if vn == 0.0 {
        out.fill(0.0);
        return;
    }
    let wn = linalg::norm(w);
    // A fully scale-invariant loss looks the same at every ‖w‖, so its step
    // is relative to ‖w‖ outright (max(1, ‖w‖) would be a huge step at
    // ‖w‖ = 1e-3).
    let h = match obj.scale_invariance() {
        ScaleInvariance::All if wn > 0.0 => f64::EPSILON.cbrt() * wn,
        _ => central_difference_step(wn),
    };
    let d = w.len();
    let mut wp = w.to_vec();
    let mut wm = w.to_vec();
    linalg::axpy(h / vn, v, &mut wp);
    linalg::axpy(-h / vn, v, &mut wm);
    let mut hm = vec![0.0; d];
    obj.hvp(&wp, v, out);
    obj.hvp(&wm, v, &mut hm);
    for (o, m) in out.iter_mut().zip(&hm) {
        *o = (*o - m) / (2.0 * h) * vn;
    }
}

/// v ↦ ∇²L(w)·v at a fixed w, through [`Hessian::hvp`].
pub struct HvpAt<'a, O: Hessian + ?Sized> {
    obj: &'a O,
    w: Vec<f64>,
}

impl<'a, O: Hessian + ?Sized> HvpAt<'a, O> {
    /// Freezes `w` (copied) for repeated products.
    pub fn new(obj: &'a O, w: &[f64]) -> Self {
        Self { obj, w: w.to_vec() }
    }
}

impl<O: Hessian + ?Sized> LinOp for HvpAt<'_, O> {
    fn dim(&self) -> usize {
        self.w.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.obj.hvp(&self.w, x, y)
    }
}

/// Fallback HVP by central differences of the gradient, for objectives without
/// an exact one:
///
/// ∇²L(w)·v ≈ (∇L(w + h·v̂) − ∇L(w − h·v̂)) / (2h) · ‖v‖,  v̂ = v/‖v‖,
///
/// with h = ε^{1/3}·max(1, ‖w‖). The truncation error is O(h²‖∇³L‖) and the
/// rounding error O(ε‖∇L‖/h); h ∝ ε^{1/3} balances them, giving about 10
/// correct digits on smooth losses. Never use it on ReLU networks: a step
/// can cross a kink and the result is then meaningless. It is a test oracle
/// and a last resort; exact HVPs are the rule in eosflow.
pub struct FiniteDifferenceHvp<O: Objective> {
    /// The wrapped objective.
    pub inner: O,
}

impl<O: Objective> FiniteDifferenceHvp<O> {
    /// Wraps an objective that only has a gradient.
    pub fn new(inner: O) -> Self {
        Self { inner }
    }

    /// The central-difference step for a point of norm `w_norm`.
    pub fn step_size(w_norm: f64) -> f64 {
        central_difference_step(w_norm)
    }
}

impl<O: Objective> Objective for FiniteDifferenceHvp<O> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        self.inner.loss_grad(w, grad)
    }
    fn loss(&self, w: &[f64]) -> f64 {
        self.inner.loss(w)
    }
    fn scale_invariance(&self) -> ScaleInvariance {
        self.inner.scale_invariance()
    }
    fn take_failure(&self) -> Option<EvalFailure> {
        self.inner.take_failure()
    }
}

impl<O: Objective> Hessian for FiniteDifferenceHvp<O> {
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        let vn = linalg::norm(v);
        if vn == 0.0 {
            out.fill(0.0);
            return;
        }
        let h = Self::step_size(linalg::norm(w));
        let d = w.len();
        let mut wp = w.to_vec();
        let mut wm = w.to_vec();
        linalg::axpy(h / vn, v, &mut wp);
        linalg::axpy(-h / vn, v, &mut wm);
        let mut gp = vec![0.0; d];
        let mut gm = vec![0.0; d];
        self.inner.loss_grad(&wp, &mut gp);
        self.inner.loss_grad(&wm, &mut gm);
        for i in 0..d {
            out[i] = (gp[i] - gm[i]) / (2.0 * h) * vn;
        }
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(HvpAt::new(self, w))
    }
}

/// The step of eosflow's central differences of derivatives at a point of
/// norm `w_norm`: h = ε^{1/3}·max(1, ‖w‖) (see [`FiniteDifferenceHvp`]).
pub fn central_difference_step(w_norm: f64) -> f64 {
    f64::EPSILON.cbrt() * w_norm.max(1.0)
}

/// Central-difference gradient of `obj` at `w` (a test oracle):
/// ∂L/∂w_i ≈ (L(w + h e_i) − L(w − h e_i)) / (2h), h = ε^{1/3}·max(1, |w_i|).
pub fn finite_difference_gradient(obj: &dyn Objective, w: &[f64]) -> Vec<f64> {
    let mut x = w.to_vec();
    (0..w.len()).map(|i| finite_difference_partial(obj, &mut x, i)).collect()
}

/// One coordinate of [`finite_difference_gradient`] at `x` (restored on
/// return).
pub fn finite_difference_partial(obj: &dyn Objective, x: &mut [f64], i: usize) -> f64 {
    let xi = x[i];
    let h = f64::EPSILON.cbrt() * xi.abs().max(1.0);
    x[i] = xi + h;
    let lp = obj.loss(x);
    x[i] = xi - h;
    let lm = obj.loss(x);
    x[i] = xi;
    (lp - lm) / (2.0 * h)
}

/// Evaluations of an objective, by kind: the real cost of a run.
///
/// `forward_passes` counts whole-data-set forward passes that are not part of
/// a loss, gradient or HVP — a network's accuracy and test-set evaluation on
/// logged steps (one pass over the training set and one over the test set
/// each time). Trackers report them with [`Counted::add_forward_passes`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// [`Objective::loss`] calls (loss without gradient).
    pub losses: u64,
    /// [`Objective::loss_grad`] calls.
    pub gradients: u64,
    /// Hessian-vector products: [`Hessian::hvp`] calls and applications of
    /// the operators [`Hessian::hessian_at`] returns.
    pub hvps: u64,
    /// Forward passes over a data set outside the three above.
    pub forward_passes: u64,
    /// Exact [`Hessian::third_contraction`] kernels (a contraction by
    /// differences counts as its two HVPs instead).
    #[serde(default)]
    pub third_contractions: u64,
    /// Residual Jacobians built ([`Hessian::residual_geometry`]; each costs
    /// about a gradient plus its Gram matrix).
    #[serde(default)]
    pub residual_jacobians: u64,
}

/// Wraps an objective and counts every evaluation made through it, whoever
/// makes it: the optimizer's gradients, Lanczos's HVPs, a tracker's
/// projections and summaries (argmin's counting wrapper). The counters are
/// atomic, so the wrapper is `Sync` like any objective.
///
/// ```
/// use eosflow::objective::{Counted, Hessian, Objective};
/// use eosflow::problems::Toy3d;
/// let p = Toy3d::new(0);
/// let c = Counted::new(&p);
/// let w = [1.0, 2.0, 3.0];
/// let mut g = [0.0; 3];
/// c.loss_grad(&w, &mut g);
/// let h = c.hessian_at(&w);
/// h.apply(&g, &mut [0.0; 3]);
/// h.apply(&w, &mut [0.0; 3]);
/// assert_eq!((c.counts().gradients, c.counts().hvps), (1, 2));
/// ```
pub struct Counted<'a> {
    inner: &'a dyn Hessian,
    losses: AtomicU64,
    gradients: AtomicU64,
    hvps: AtomicU64,
    forward_passes: AtomicU64,
    third_contractions: AtomicU64,
    residual_jacobians: AtomicU64,
}

impl<'a> Counted<'a> {
    /// Counts from zero.
    pub fn new(inner: &'a dyn Hessian) -> Self {
        Self::starting_at(inner, Counts::default())
    }

    /// Counts on from `start` (a resumed run's totals so far).
    pub fn starting_at(inner: &'a dyn Hessian, start: Counts) -> Self {
        Self {
            inner,
            losses: AtomicU64::new(start.losses),
            gradients: AtomicU64::new(start.gradients),
            hvps: AtomicU64::new(start.hvps),
            forward_passes: AtomicU64::new(start.forward_passes),
            third_contractions: AtomicU64::new(start.third_contractions),
            residual_jacobians: AtomicU64::new(start.residual_jacobians),
        }
    }

    /// The wrapped objective.
    pub fn inner(&self) -> &'a dyn Hessian {
        self.inner
    }

    /// The totals so far.
    pub fn counts(&self) -> Counts {
        Counts {
            losses: self.losses.load(Ordering::Relaxed),
            gradients: self.gradients.load(Ordering::Relaxed),
            hvps: self.hvps.load(Ordering::Relaxed),
            forward_passes: self.forward_passes.load(Ordering::Relaxed),
            third_contractions: self.third_contractions.load(Ordering::Relaxed),
            residual_jacobians: self.residual_jacobians.load(Ordering::Relaxed),
        }
    }

    /// Records `n` forward passes made outside the objective's methods.
    pub fn add_forward_passes(&self, n: u64) {
        self.forward_passes.fetch_add(n, Ordering::Relaxed);
    }
}

impl Objective for Counted<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        self.gradients.fetch_add(1, Ordering::Relaxed);
        self.inner.loss_grad(w, grad)
    }
    fn loss(&self, w: &[f64]) -> f64 {
        self.losses.fetch_add(1, Ordering::Relaxed);
        self.inner.loss(w)
    }
    fn scale_invariance(&self) -> ScaleInvariance {
        self.inner.scale_invariance()
    }
    fn take_failure(&self) -> Option<EvalFailure> {
        self.inner.take_failure()
    }
}

impl Hessian for Counted<'_> {
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        self.hvps.fetch_add(1, Ordering::Relaxed);
        self.inner.hvp(w, v, out)
    }
    fn hessian_at<'b>(&'b self, w: &[f64]) -> Box<dyn LinOp + 'b> {
        Box::new(CountedOp { op: self.inner.hessian_at(w), hvps: &self.hvps })
    }
    fn third_contraction(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        if self.inner.third_contraction_is_exact() {
            self.third_contractions.fetch_add(1, Ordering::Relaxed);
        }
        // By differences through `self`, so that the two HVPs are counted.
        third_contraction_through(self, self.inner, w, v, out)
    }
    fn third_contraction_is_exact(&self) -> bool {
        self.inner.third_contraction_is_exact()
    }
    fn residual_geometry<'b>(&'b self, w: &[f64]) -> Option<Box<dyn ResidualGeometry + 'b>> {
        let g = self.inner.residual_geometry(w)?;
        self.residual_jacobians.fetch_add(1, Ordering::Relaxed);
        Some(g)
    }
    fn has_residual_geometry(&self) -> bool {
        self.inner.has_residual_geometry()
    }
}

/// An operator of [`Hessian::hessian_at`] that counts its applications.
struct CountedOp<'b> {
    op: Box<dyn LinOp + 'b>,
    hvps: &'b AtomicU64,
}

impl LinOp for CountedOp<'_> {
    fn dim(&self) -> usize {
        self.op.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.hvps.fetch_add(1, Ordering::Relaxed);
        self.op.apply(x, y)
    }
}
