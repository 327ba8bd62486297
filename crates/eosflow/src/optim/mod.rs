//! Optimizers as state machines: `evaluate` the loss and gradient at the
//! current point, then `update` with that gradient. Every quantity the paper
//! plots is a readable field.
//!
//! - [`GdWd`]: GD with weight decay, eq. (1).
//! - [`SphericalGd`]: projected GD on the unit sphere, eq. (2)/(9), with its
//!   effective LR from an [`LrScheduler`] ([`ConstantLr`], [`RmspropScheduler`]
//!   (Def. B.3), [`GwsiScheduler`] (Def. B.6)).
//! - [`ScalarRmsprop`]: Scalar RMSprop in full space (Def. B.1).
//!
//! GD+WD and "PGD + GWSI scheduler" are two views of one dynamics (Lemma 3.1,
//! Thm B.7); the tests check they agree to rounding.

mod gd_wd;
mod rmsprop;
mod schedulers;
mod sphere;

pub use gd_wd::GdWd;
pub use rmsprop::ScalarRmsprop;
pub use schedulers::{ConstantLr, GwsiScheduler, LrScheduler, QuasiRmspropHyper, RmspropScheduler};
pub use sphere::SphericalGd;

/// What one evaluation at the current point w_t (before the update) gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// L(w_t).
    pub loss: f64,
    /// ‖∇L(θ_t)‖ for a fully scale-invariant loss (= ‖w_t‖·‖∇L(w_t)‖ by
    /// (−1)-homogeneity); ‖∇L(w_t)‖ otherwise.
    pub grad_norm: f64,
    /// ‖w_t‖ over all parameters.
    pub w_norm: f64,
    /// The effective LR η̃_t this step uses (Lemma 3.1 / Def. B.2).
    pub eff_lr: f64,
}

impl Evaluation {
    /// The evaluation of GD+WD (eq. 1) at w_t from L(w_t) and ∇L(w_t): ‖w_t‖,
    /// ‖∇L(θ_t)‖ and the effective LR η̃_t = η̂/((1 − η̂λ̂)‖w_S‖²) of Lemma 3.1
    /// on the declared scale-invariant block (η̂ itself when the loss is
    /// not scale-invariant). [`GdWd`] and [`crate::run::Monitor`] (a user's
    /// own training loop) both compute it here.
    ///
    /// ```
    /// use eosflow::ScaleInvariance;
    /// use eosflow::optim::Evaluation;
    /// let e = Evaluation::gd_wd(&ScaleInvariance::All, 0.5, 0.08, &[0.0, 2.0], 0.3, &[1.0, 0.0]);
    /// assert_eq!((e.w_norm, e.grad_norm), (2.0, 2.0)); // ‖∇L(θ)‖ = ‖w‖·‖∇L(w)‖
    /// assert!((e.eff_lr - 0.5 / (0.96 * 4.0)).abs() < 1e-15);
    /// ```
    pub fn gd_wd(si: &crate::ScaleInvariance, lr: f64, wd: f64, w: &[f64], loss: f64, grad: &[f64]) -> Self {
        let w_norm = crate::linalg::norm(w);
        let g_norm = crate::linalg::norm(grad);
        let eff_lr = match si {
            crate::ScaleInvariance::All => crate::eos::effective_lr(lr, wd, w_norm),
            crate::ScaleInvariance::Block(_) => crate::eos::effective_lr(lr, wd, si.block_norm(w)),
            crate::ScaleInvariance::None => lr,
        };
        Evaluation { loss, grad_norm: theta_grad_norm(si, w_norm, g_norm), w_norm, eff_lr }
    }
}

impl Evaluation {
    /// Why this evaluation at w ends a run as diverged: a non-finite loss,
    /// gradient norm or weight, or ‖w‖ collapsed below 1e-150 (the
    /// sphere's projection is undefined there); `None` when it is healthy.
    /// The runner and [`crate::monitor::Monitor`] stop on it alike.
    pub fn divergence(&self, w: &[f64]) -> Option<String> {
        if !self.loss.is_finite() {
            Some(format!("loss is {}", self.loss))
        } else if !self.grad_norm.is_finite() {
            Some(format!("gradient norm is {}", self.grad_norm))
        } else if !w.iter().all(|x| x.is_finite()) {
            Some("weights are not finite".to_string())
        } else if self.w_norm < 1e-150 {
            Some(format!("‖w‖ = {:e} collapsed to zero", self.w_norm))
        } else {
            None
        }
    }
}

/// An optimizer as a state machine over a flat parameter vector.
pub trait Optimizer: Send {
    /// Short name ("gd_wd", "sphere_gwsi", …).
    fn name(&self) -> String;
    /// The current parameters w_t (θ_t for spherical methods).
    fn params(&self) -> &[f64];
    /// Updates done so far (t).
    fn step(&self) -> u64;
    /// Evaluates L and ∇L at the current point and caches the gradient.
    fn evaluate(&mut self, obj: &dyn crate::Objective) -> Evaluation;
    /// Moves to w_{t+1} with the gradient of the last [`Optimizer::evaluate`].
    /// Panics if called without a fresh evaluation.
    fn update(&mut self);
    /// Named scalar state (the scheduler moment ṽ_t, …) for logs and
    /// checkpoints.
    fn state(&self) -> Vec<(&'static str, f64)>;
    /// Puts the optimizer at step `step` with parameters `params` and the
    /// scalar state `state` (as returned by [`Optimizer::state`]), for
    /// resuming from a checkpoint. Hyperparameters come from the config.
    fn restore(&mut self, step: u64, params: &[f64], state: &[(String, f64)]) -> Result<(), RestoreError>;
}

/// A checkpoint's optimizer state that does not fit this optimizer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RestoreError {
    /// The saved parameter vector has the wrong length.
    #[error("the checkpoint has {got} parameters, the problem {dim}")]
    Parameters { got: usize, dim: usize },
    /// A named scalar of [`Optimizer::state`] is missing.
    #[error("the checkpoint lacks the optimizer state `{0}` (was it written by another optimizer?)")]
    MissingState(&'static str),
}

/// The named value `name` of a saved optimizer state.
pub(crate) fn saved(state: &[(String, f64)], name: &'static str) -> Result<f64, RestoreError> {
    state.iter().find(|(k, _)| k == name).map(|(_, v)| *v).ok_or(RestoreError::MissingState(name))
}

/// ‖∇L(θ)‖ from ‖w‖ and ‖∇L(w)‖ for the declared scale invariance: the
/// gradient is (−1)-homogeneous, so ‖∇L(θ)‖ = ‖w‖·‖∇L(w)‖ when L is fully
/// scale-invariant; otherwise ‖∇L(w)‖ itself.
pub(crate) fn theta_grad_norm(si: &crate::ScaleInvariance, w_norm: f64, g_norm: f64) -> f64 {
    match si {
        crate::ScaleInvariance::All => g_norm * w_norm,
        _ => g_norm,
    }
}
