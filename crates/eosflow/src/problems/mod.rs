//! Problems: an objective with exact gradient and HVP, its default initial
//! point, and a tracker that computes its own per-step metrics and a summary
//! of a whole run.

mod bn_head;
mod factorization;
mod linreg_bn;
mod matcomp_bn;
mod toy3d;

pub use factorization::Factorization;
pub use linreg_bn::{GroundTruth, LinregBn, LinregData, LinregError, LinregInit};
pub use matcomp_bn::{MatcompBn, MatcompData, MatcompError};
pub use toy3d::Toy3d;

use crate::objective::{Counted, Hessian};
use crate::optim::Evaluation;
use crate::run::Column;

/// A problem the runner can train on: an objective with a default w_0 and,
/// optionally, its own metrics ([`Problem::tracker`]). Any [`Hessian`]
/// objective also runs without being a `Problem`
/// ([`crate::run::Runner::new`]), with the standard metrics only.
pub trait Problem: Hessian {
    /// Short name ("toy3d", …).
    fn name(&self) -> &'static str;
    /// The problem's default w_0.
    fn initial_point(&self) -> Vec<f64>;
    /// Which compute kernels this problem runs on this machine (the SIMD
    /// path a run-time dispatch picks, a backend), for summary.json. The
    /// default: portable Rust, no dispatch.
    fn kernels(&self) -> String {
        "portable".into()
    }
    /// A fresh tracker that sees every step, writes the problem's metrics.csv
    /// columns and summarises the run. The default has no columns and an
    /// empty summary.
    fn tracker(&self) -> Box<dyn Tracker + '_> {
        Box::new(NoTracker)
    }
    /// The problem's description of a single point w — its columns of the
    /// flow's flow.csv (after tau, sharpness, grad_gamma_norm), with the
    /// same names as the matching metrics.csv columns so that a figure can
    /// put a flow next to GD+WD. The default has none.
    fn point_columns(&self) -> Vec<Column> {
        Vec::new()
    }
    /// The values of [`Problem::point_columns`] at w.
    fn point_values(&self, _w: &[f64]) -> Vec<f64> {
        Vec::new()
    }
    /// An exact, cheap projection of θ onto Γ where the problem has one
    /// (linreg_bn: Π(P_V θ); toy3d: the nearest point of the curve); None
    /// for the rest, which retract ([`crate::manifold::retract`]).
    fn project_onto_gamma(&self, _theta: &[f64]) -> Option<Vec<f64>> {
        None
    }
    /// Named blocks of the parameter vector (a network's parameter
    /// tensors, in layout order) for per-block spectra; the default has
    /// none.
    fn parameter_blocks(&self) -> Vec<(String, std::ops::Range<usize>)> {
        Vec::new()
    }
    /// The number n of training examples the loss averages over (the n of
    /// Thm C.2's PAC-Bayes bound); None for a loss with no data (toy3d).
    fn training_examples(&self) -> Option<usize> {
        None
    }
    /// ℓ_max = sup over examples z and w ∈ S^{D−1} of the per-example loss
    /// ℓ(w, z) (Thm C.2's setting), or why it is infinite or unknown.
    fn per_example_loss_sup(&self) -> Result<f64, String> {
        Err(format!("the {} problem states no bound on its per-example loss", self.name()))
    }
}

/// What a tracker sees of one step t (before the update).
#[derive(Clone, Copy, Debug)]
pub struct StepView<'a> {
    /// t; 0 is the initial point.
    pub step: u64,
    /// w_t.
    pub w: &'a [f64],
    /// The optimizer's evaluation at w_t (loss, effective LR, …).
    pub eval: &'a Evaluation,
    /// The spherical sharpness at θ_t when the runner computed one this step.
    pub sharpness: Option<f64>,
    /// Whether t is the run's EoS entry ([`crate::eos::EosEntry`] on the
    /// runner's sharpness, `eos_entry_step` in the summary).
    pub eos_entry: bool,
    /// Whether step t gets a metrics.csv row: [`Tracker::observe`] then
    /// returns its columns. Work needed only for the row (a d×d SVD, a
    /// test-set forward pass) is done on logged steps only.
    pub logged: bool,
}

/// Sees every step (logged or not) once, produces the problem's metrics.csv
/// columns on logged steps and the problem-specific part of summary.json.
///
/// Evaluations of the objective go through `obj`, the runner's counting
/// wrapper, so that summary.json's counts include them.
pub trait Tracker {
    /// The extra metrics.csv columns, after the common ones.
    fn columns(&self) -> Vec<Column> {
        Vec::new()
    }
    /// Called once per step; returns the values of [`Tracker::columns`] when
    /// `step.logged` (and an empty vector otherwise).
    fn observe(&mut self, obj: &Counted, step: &StepView) -> Vec<f64>;
    /// Key results, as JSON, given the last parameters w_T.
    fn summary(&mut self, obj: &Counted, w_final: &[f64]) -> serde_json::Map<String, serde_json::Value>;
    /// The tracker's state, for checkpoints.
    fn save(&self) -> serde_json::Value;
    /// Restores a state written by [`Tracker::save`].
    fn load(&mut self, state: &serde_json::Value) -> Result<(), TrackerStateError>;
}

/// A checkpoint's tracker state that does not fit this problem's tracker.
#[derive(Debug, thiserror::Error)]
#[error("the checkpoint's {problem} tracker state cannot be read: {source}")]
pub struct TrackerStateError {
    /// The problem whose tracker failed to load.
    pub problem: &'static str,
    /// What serde found.
    #[source]
    pub source: serde_json::Error,
}

impl TrackerStateError {
    /// Reads a state saved by `serde_json::to_value`, naming the problem on failure.
    pub fn read<T: serde::de::DeserializeOwned>(
        problem: &'static str,
        state: &serde_json::Value,
    ) -> Result<T, TrackerStateError> {
        serde_json::from_value(state.clone()).map_err(|source| TrackerStateError { problem, source })
    }
}

/// The tracker of an objective without metrics of its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTracker;

impl Tracker for NoTracker {
    fn observe(&mut self, _obj: &Counted, _step: &StepView) -> Vec<f64> {
        Vec::new()
    }
    fn summary(&mut self, _obj: &Counted, _w_final: &[f64]) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
    fn save(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn load(&mut self, _state: &serde_json::Value) -> Result<(), TrackerStateError> {
        Ok(())
    }
}
