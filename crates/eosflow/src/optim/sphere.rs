use super::{Evaluation, LrScheduler, Optimizer};
use crate::Objective;
use crate::linalg::{axpy, norm, normalize};

/// Projected gradient descent on the unit sphere with a scheduled effective
/// LR, eq. (2)/(9):
///
/// θ_{t+1} = Π(θ_t − η̃_t·∇L(θ_t)),   η̃_t = H(∇L(θ_0), …, ∇L(θ_t)),   Π(x) = x/‖x‖.
///
/// With the GWSI scheduler of Thm B.7 this is GD+WD seen on the sphere.
/// Meaningful for fully scale-invariant losses (the gradient is taken at the
/// unit-norm θ_t).
pub struct SphericalGd {
    theta: Vec<f64>,
    grad: Vec<f64>,
    grad_norm: f64,
    fresh: bool,
    t: u64,
    /// The scheduler producing η̃_t.
    pub scheduler: Box<dyn LrScheduler>,
}

impl SphericalGd {
    /// Starts at θ_0 = Π(w_0). Panics on w_0 = 0 (the caller validates).
    pub fn new(w0: Vec<f64>, scheduler: Box<dyn LrScheduler>) -> Self {
        let mut theta = w0;
        assert!(normalize(&mut theta) > 0.0, "SphericalGd: w0 must be non-zero");
        let d = theta.len();
        Self { theta, grad: vec![0.0; d], grad_norm: 0.0, fresh: false, t: 0, scheduler }
    }

    /// Resumes at step t from θ_t and a scheduler in its step-t state.
    pub fn resume(theta: Vec<f64>, scheduler: Box<dyn LrScheduler>, t: u64) -> Self {
        let mut s = Self::new(theta, scheduler);
        s.t = t;
        s
    }
}

impl Optimizer for SphericalGd {
    fn name(&self) -> String {
        format!("sphere_{}", self.scheduler.name())
    }
    fn params(&self) -> &[f64] {
        &self.theta
    }
    fn step(&self) -> u64 {
        self.t
    }
    fn evaluate(&mut self, obj: &dyn Objective) -> Evaluation {
        let loss = obj.loss_grad(&self.theta, &mut self.grad);
        self.grad_norm = norm(&self.grad);
        self.fresh = true;
        Evaluation { loss, grad_norm: self.grad_norm, w_norm: 1.0, eff_lr: self.scheduler.effective_lr(self.grad_norm) }
    }
    fn update(&mut self) {
        assert!(self.fresh, "SphericalGd::update called without a fresh evaluate");
        let lr = self.scheduler.effective_lr(self.grad_norm);
        axpy(-lr, &self.grad, &mut self.theta);
        normalize(&mut self.theta);
        self.scheduler.advance(self.grad_norm);
        self.fresh = false;
        self.t += 1;
    }
    fn state(&self) -> Vec<(&'static str, f64)> {
        match self.scheduler.moment() {
            Some(v) => vec![("moment", v)],
            None => vec![],
        }
    }
    fn restore(&mut self, step: u64, params: &[f64], state: &[(String, f64)]) -> Result<(), super::RestoreError> {
        if params.len() != self.theta.len() {
            return Err(super::RestoreError::Parameters { got: params.len(), dim: self.theta.len() });
        }
        if self.scheduler.moment().is_some() {
            self.scheduler.set_moment(super::saved(state, "moment")?);
        }
        self.theta.copy_from_slice(params);
        self.t = step;
        self.fresh = false;
        Ok(())
    }
}
