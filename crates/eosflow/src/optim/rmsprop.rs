use super::{Evaluation, Optimizer, theta_grad_norm};
use crate::Objective;
use crate::linalg::{axpy, norm};

/// Scalar RMSprop in full space, standard form (Def. B.1):
///
/// θ_{t+1} = θ_t − η/√v_t · ∇L(θ_t),   v_{t+1} = β·v_t + (1 − β)·‖∇L(θ_t)‖².
///
/// Equivalently (Def. B.4) GD with an RMSprop scheduler of moment ṽ_t = v_t/η².
/// No projection: this is the full-space method of Corollary B.14.
#[derive(Clone, Debug)]
pub struct ScalarRmsprop {
    /// Base learning rate η.
    pub eta: f64,
    /// Decay rate β.
    pub beta: f64,
    /// The moment v_t.
    pub v: f64,
    w: Vec<f64>,
    grad: Vec<f64>,
    fresh: bool,
    t: u64,
}

impl ScalarRmsprop {
    /// Starts at w_0 with moment v_0 > 0.
    pub fn new(eta: f64, beta: f64, v0: f64, w0: Vec<f64>) -> Self {
        let d = w0.len();
        Self { eta, beta, v: v0, w: w0, grad: vec![0.0; d], fresh: false, t: 0 }
    }
}

impl Optimizer for ScalarRmsprop {
    fn name(&self) -> String {
        "scalar_rmsprop".into()
    }
    fn params(&self) -> &[f64] {
        &self.w
    }
    fn step(&self) -> u64 {
        self.t
    }
    fn evaluate(&mut self, obj: &dyn Objective) -> Evaluation {
        let loss = obj.loss_grad(&self.w, &mut self.grad);
        self.fresh = true;
        let w_norm = norm(&self.w);
        Evaluation {
            loss,
            grad_norm: theta_grad_norm(&obj.scale_invariance(), w_norm, norm(&self.grad)),
            w_norm,
            eff_lr: self.eta / self.v.sqrt(),
        }
    }
    fn update(&mut self) {
        assert!(self.fresh, "ScalarRmsprop::update called without a fresh evaluate");
        let g2 = norm(&self.grad).powi(2);
        axpy(-self.eta / self.v.sqrt(), &self.grad, &mut self.w);
        self.v = self.beta * self.v + (1.0 - self.beta) * g2;
        self.fresh = false;
        self.t += 1;
    }
    fn state(&self) -> Vec<(&'static str, f64)> {
        vec![("moment", self.v)]
    }
    fn restore(&mut self, step: u64, params: &[f64], state: &[(String, f64)]) -> Result<(), super::RestoreError> {
        if params.len() != self.w.len() {
            return Err(super::RestoreError::Parameters { got: params.len(), dim: self.w.len() });
        }
        self.v = super::saved(state, "moment")?;
        self.w.copy_from_slice(params);
        self.t = step;
        self.fresh = false;
        Ok(())
    }
}
