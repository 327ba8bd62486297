//! Objectives: a loss with its gradient, its Hessian-vector product, and a
//! declaration of which parameters the loss is scale-invariant in.
//!
//! The traits follow argmin's "one capability per trait": [`Objective`] is
//! loss + gradient (fused, like `value_and_grad`), [`Hessian`] adds the
//! Hessian-vector product and a per-point operator for Lanczos.

use crate::linalg;
use crate::spectrum::LinOp;

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
        f64::EPSILON.cbrt() * w_norm.max(1.0)
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

/// Central-difference gradient of `obj` at `w` (a test oracle):
/// ∂L/∂w_i ≈ (L(w + h e_i) − L(w − h e_i)) / (2h), h = ε^{1/3}·max(1, |w_i|).
pub fn finite_difference_gradient(obj: &dyn Objective, w: &[f64]) -> Vec<f64> {
    let mut x = w.to_vec();
    (0..w.len())
        .map(|i| {
            let h = f64::EPSILON.cbrt() * w[i].abs().max(1.0);
            x[i] = w[i] + h;
            let lp = obj.loss(&x);
            x[i] = w[i] - h;
            let lm = obj.loss(&x);
            x[i] = w[i];
            (lp - lm) / (2.0 * h)
        })
        .collect()
}
