use super::{Evaluation, Optimizer};
use crate::Objective;

/// Gradient descent with weight decay, eq. (1):
///
/// w_{t+1} = (1 − η̂λ̂)·w_t − η̂·∇L(w_t).
///
/// ```
/// use eosflow::optim::{GdWd, Optimizer};
/// use eosflow::problems::Toy3d;
/// let p = Toy3d::new(0);
/// let mut opt = GdWd::new(0.5, 0.08, p.from_domain(&[0.3, 1.3, 1.2]));
/// let e = opt.evaluate(&p);
/// // η̃_0 = η̂ / ((1 − η̂λ̂)‖w_0‖²)
/// assert!((e.eff_lr - 0.5 / (0.96 * (0.09 + 1.69 + 1.44))).abs() < 1e-14);
/// opt.update();
/// assert_eq!(opt.step(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct GdWd {
    /// Learning rate η̂.
    pub lr: f64,
    /// Weight decay λ̂.
    pub wd: f64,
    w: Vec<f64>,
    grad: Vec<f64>,
    fresh: bool,
    t: u64,
}

impl GdWd {
    /// Starts at w_0. The caller validates η̂ > 0, λ̂ ≥ 0, η̂λ̂ < 1.
    pub fn new(lr: f64, wd: f64, w0: Vec<f64>) -> Self {
        let d = w0.len();
        Self { lr, wd, w: w0, grad: vec![0.0; d], fresh: false, t: 0 }
    }

    /// Resumes at step t (weights only: GD+WD has no other state).
    pub fn resume(lr: f64, wd: f64, w: Vec<f64>, t: u64) -> Self {
        let mut s = Self::new(lr, wd, w);
        s.t = t;
        s
    }
}

impl Optimizer for GdWd {
    fn name(&self) -> String {
        "gd_wd".into()
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
        Evaluation::gd_wd(&obj.scale_invariance(), self.lr, self.wd, &self.w, loss, &self.grad)
    }
    fn update(&mut self) {
        assert!(self.fresh, "GdWd::update called without a fresh evaluate");
        let decay = 1.0 - self.lr * self.wd;
        for (wi, gi) in self.w.iter_mut().zip(&self.grad) {
            *wi = decay * *wi - self.lr * gi;
        }
        self.fresh = false;
        self.t += 1;
    }
    fn state(&self) -> Vec<(&'static str, f64)> {
        vec![("lr", self.lr), ("wd", self.wd)]
    }
    fn restore(&mut self, step: u64, params: &[f64], _state: &[(String, f64)]) -> Result<(), super::RestoreError> {
        if params.len() != self.w.len() {
            return Err(super::RestoreError::Parameters { got: params.len(), dim: self.w.len() });
        }
        self.w.copy_from_slice(params);
        self.t = step;
        self.fresh = false;
        Ok(())
    }
}
