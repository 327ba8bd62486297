//! Gradient-based learning-rate schedulers (Def. B.2): η̃_t = H(g_0, …, g_t).
//!
//! A scheduler here depends on the gradients only through their norms, as
//! all of the paper's do. [`LrScheduler::effective_lr`] reads η̃_t without
//! changing state; [`LrScheduler::advance`] consumes ‖g_t‖ and moves to t+1.

/// A gradient-based learning-rate scheduler (Def. B.2).
pub trait LrScheduler: Send {
    /// Short name: "constant", "rmsprop", "gwsi".
    fn name(&self) -> &'static str;
    /// η̃_t, given ‖g_t‖.
    fn effective_lr(&self, grad_norm: f64) -> f64;
    /// Reads ‖g_t‖ and moves the internal state to step t+1.
    fn advance(&mut self, grad_norm: f64);
    /// The moment estimate ṽ_t, if the scheduler has one.
    fn moment(&self) -> Option<f64>;
    /// Sets ṽ_t (resuming from a checkpoint); no-op without a moment.
    fn set_moment(&mut self, _v: f64) {}
}

/// η̃_t = η̃ for all t: plain projected GD on the sphere, eq. (9).
#[derive(Clone, Debug, PartialEq)]
pub struct ConstantLr {
    /// η̃.
    pub lr: f64,
}

impl LrScheduler for ConstantLr {
    fn name(&self) -> &'static str {
        "constant"
    }
    fn effective_lr(&self, _grad_norm: f64) -> f64 {
        self.lr
    }
    fn advance(&mut self, _grad_norm: f64) {}
    fn moment(&self) -> Option<f64> {
        None
    }
}

/// RMSprop scheduler (Def. B.3):
///
/// η̃_t = 1/√ṽ_t,   ṽ_{t+1} = β·ṽ_t + (1 − β)·ḡ_t²,   ḡ_t = ‖g_t‖/η.
///
/// ```
/// use eosflow::optim::{LrScheduler, RmspropScheduler};
/// let mut s = RmspropScheduler { v: 4.0, eta: 0.1, beta: 0.9 };
/// assert_eq!(s.effective_lr(1.0), 0.5);
/// s.advance(0.1); // ḡ = 1: ṽ = 0.9·4 + 0.1·1
/// assert!((s.v - 3.7).abs() < 1e-15);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RmspropScheduler {
    /// The moment ṽ_t (ṽ_0 at the start).
    pub v: f64,
    /// Base learning rate η.
    pub eta: f64,
    /// Decay rate β.
    pub beta: f64,
}

impl LrScheduler for RmspropScheduler {
    fn name(&self) -> &'static str {
        "rmsprop"
    }
    fn effective_lr(&self, _grad_norm: f64) -> f64 {
        1.0 / self.v.sqrt()
    }
    fn advance(&mut self, grad_norm: f64) {
        let g_bar = grad_norm / self.eta;
        self.v = self.beta * self.v + (1.0 - self.beta) * g_bar * g_bar;
    }
    fn moment(&self) -> Option<f64> {
        Some(self.v)
    }
    fn set_moment(&mut self, v: f64) {
        self.v = v;
    }
}

/// GWSI scheduler (Def. B.6), the exact effective-LR dynamics of GD+WD on a
/// scale-invariant loss (Thm B.7):
///
/// η̃_t = 1/√ṽ_t,
/// ṽ_{t+1} = β·ṽ_t + (1 − β)·ḡ_t² + (1 − β)²·ḡ_t⁴ / (4β·ṽ_t),   ḡ_t = ‖g_t‖/η.
#[derive(Clone, Debug, PartialEq)]
pub struct GwsiScheduler {
    /// The moment ṽ_t (ṽ_0 at the start).
    pub v: f64,
    /// Base learning rate η.
    pub eta: f64,
    /// Decay rate β.
    pub beta: f64,
}

impl GwsiScheduler {
    /// The GWSI scheduler that reproduces GD+WD with LR η̂ = `lr`, WD λ̂ = `wd`
    /// from ‖w_0‖ = `w0_norm` (Thm B.7):
    ///
    /// ṽ_0 = (1 − η̂λ̂)²‖w_0‖⁴/η̂²,  β = (1 − η̂λ̂)⁴,  η = √((β⁻¹ − 1)/2).
    ///
    /// Needs λ̂ > 0 (β < 1); returns `None` otherwise.
    ///
    /// ```
    /// use eosflow::optim::{GwsiScheduler, LrScheduler};
    /// let s = GwsiScheduler::from_gd_wd(0.5, 0.08, 2.0).unwrap();
    /// // η̃_0 = η̂/((1 − η̂λ̂)‖w_0‖²)
    /// assert!((s.effective_lr(0.0) - 0.5 / (0.96 * 4.0)).abs() < 1e-15);
    /// ```
    pub fn from_gd_wd(lr: f64, wd: f64, w0_norm: f64) -> Option<Self> {
        let decay = 1.0 - lr * wd;
        if !(wd > 0.0 && decay > 0.0 && lr > 0.0) {
            return None;
        }
        let beta = decay.powi(4);
        Some(Self { v: decay * decay * w0_norm.powi(4) / (lr * lr), beta, eta: ((1.0 / beta - 1.0) / 2.0).sqrt() })
    }

    /// The quasi-RMSprop scheduler H_QRMS of Thm B.9 (App. E.2): a GWSI
    /// scheduler with β' = (1 − (1 − β)/4)⁴ and η' = √((β'⁻¹ − 1)/2),
    /// started from ṽ_0. (E.2 prints η' = √((β' − 1)/2), a typo: Thm B.7's
    /// relation η = √((β⁻¹ − 1)/2) is what makes it reproduce GD+WD.)
    pub fn quasi_rmsprop(hyper: QuasiRmspropHyper, v0: f64) -> Self {
        let beta_p = (1.0 - (1.0 - hyper.beta) / 4.0).powi(4);
        Self { v: v0, beta: beta_p, eta: ((1.0 / beta_p - 1.0) / 2.0).sqrt() }
    }
}

impl LrScheduler for GwsiScheduler {
    fn name(&self) -> &'static str {
        "gwsi"
    }
    fn effective_lr(&self, _grad_norm: f64) -> f64 {
        1.0 / self.v.sqrt()
    }
    fn advance(&mut self, grad_norm: f64) {
        let g2 = (grad_norm / self.eta).powi(2);
        let one_m_beta = 1.0 - self.beta;
        self.v = self.beta * self.v + one_m_beta * g2 + one_m_beta * one_m_beta * g2 * g2 / (4.0 * self.beta * self.v);
    }
    fn moment(&self) -> Option<f64> {
        Some(self.v)
    }
    fn set_moment(&mut self, v: f64) {
        self.v = v;
    }
}

/// Hyperparameters (η, β) of the quasi-RMSprop form of GD+WD (Thm B.9).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuasiRmspropHyper {
    /// Base learning rate η.
    pub eta: f64,
    /// Decay rate β.
    pub beta: f64,
}

impl QuasiRmspropHyper {
    /// Thm B.9: for intrinsic LR η_in = η̂λ̂ ∈ (0, 1/4),
    /// η = √(2η_in), β = 1 − 4η_in (so β = 1 − 2η²).
    ///
    /// ```
    /// use eosflow::optim::QuasiRmspropHyper;
    /// let h = QuasiRmspropHyper::from_intrinsic_lr(0.04).unwrap();
    /// assert!((h.beta - (1.0 - 2.0 * h.eta * h.eta)).abs() < 1e-15);
    /// ```
    pub fn from_intrinsic_lr(eta_in: f64) -> Option<Self> {
        if !(eta_in > 0.0 && eta_in < 0.25) {
            return None;
        }
        Some(Self { eta: (2.0 * eta_in).sqrt(), beta: 1.0 - 4.0 * eta_in })
    }
}
