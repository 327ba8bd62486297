//! Problems: an objective with exact gradient and HVP, its default initial
//! point, its own per-step metrics and a summary of a whole run.

mod linreg_bn;
mod matcomp_bn;
mod toy3d;

pub use linreg_bn::{GroundTruth, LinregBn, LinregData, LinregError, LinregInit};
pub use matcomp_bn::{MatcompBn, MatcompData, MatcompError};
pub use toy3d::Toy3d;

use crate::objective::Hessian;
use crate::optim::Evaluation;

/// A problem the runner can train on.
pub trait Problem: Hessian {
    /// Short name ("toy3d", …).
    fn name(&self) -> &'static str;
    /// The problem's default w_0.
    fn initial_point(&self) -> Vec<f64>;
    /// Names of the extra metrics.csv columns, after the common ones.
    fn metric_names(&self) -> Vec<&'static str>;
    /// Values of those columns at w_t, given the step's evaluation (loss,
    /// effective LR) for columns that compare against it.
    fn metrics(&self, w: &[f64], eval: &Evaluation) -> Vec<f64>;
    /// A fresh tracker that sees every step and summarises the run.
    fn tracker(&self) -> Box<dyn Tracker + '_>;
}

/// Sees every step's parameters (logged or not) and produces the
/// problem-specific part of summary.json.
pub trait Tracker {
    /// Called once per step t with w_t and its evaluation, before the update.
    fn observe(&mut self, step: u64, w: &[f64], eval: &Evaluation);
    /// Called with the spherical sharpness at step t when the runner computed
    /// one, before [`Tracker::observe`] of that step. The default ignores it.
    fn observe_sharpness(&mut self, _step: u64, _sharpness: f64) {}
    /// Key results, as JSON, given the last evaluated parameters w_T.
    fn summary(&self, w_final: &[f64]) -> serde_json::Map<String, serde_json::Value>;
    /// The tracker's state, for checkpoints.
    fn save(&self) -> serde_json::Value;
    /// Restores a state written by [`Tracker::save`].
    fn load(&mut self, state: &serde_json::Value) -> Result<(), String>;
}
