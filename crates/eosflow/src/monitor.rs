//! The EoS monitor for a training loop that is not eosflow's: a user's own
//! full-batch GD+WD (eq. 1) in PyTorch, JAX or Rust hands it w_t, L(w_t),
//! ∇L(w_t) and the Hessian at w_t as an operator at each step; it computes
//! what the runner computes — ‖w_t‖, ‖∇L(θ_t)‖, the effective LR η̃_t
//! (Lemma 3.1), 2/η̃_t, every `sharpness_every` steps the spherical
//! sharpness (Def. 1.1, warm-started Lanczos) and the regime — with the
//! runner's own bookkeeping ([`RunState::observe_threshold`]), so its
//! records and summary mean what a run's do. The monitor never steps the
//! parameters and never writes: observers (the Python package's run
//! directory writer) do.
//!
//! ```
//! use eosflow::ScaleInvariance;
//! use eosflow::monitor::{Monitor, MonitorParams};
//! use eosflow::spectrum::DenseSymmetric;
//! // A stand-in "loop": L(w) = ½ wᵀAw, any loss would do.
//! let a = DenseSymmetric::new(2, vec![2.0, 0.0, 0.0, 1.0]);
//! let params = MonitorParams { lr: 0.1, wd: 0.01, sharpness_every: 1, ..Default::default() };
//! let mut m = Monitor::new(2, ScaleInvariance::None, params).unwrap();
//! let mut w = vec![1.0, 1.0];
//! for t in 0..3 {
//!     let g = vec![2.0 * w[0], w[1]];
//!     let loss = 0.5 * (2.0 * w[0] * w[0] + w[1] * w[1]);
//!     let step = m.observe(t, &w, loss, &g, &a).unwrap();
//!     assert!((step.sharpness.unwrap().sharpness - 2.0).abs() < 1e-10);
//!     for i in 0..2 {
//!         w[i] = (1.0 - 0.1 * 0.01) * w[i] - 0.1 * g[i];
//!     }
//! }
//! assert_eq!(m.summary(eosflow::run::Status::Completed).sharpness_evals, 3);
//! ```

use crate::ScaleInvariance;
use crate::eos::RegimeBand;
use crate::objective::Counts;
use crate::optim::Evaluation;
use crate::run::{RunState, RunSummary, SharpnessRecord, Status, StepRecord};
use crate::sharpness::spherical_sharpness_of;
use crate::spectrum::{LanczosError, LanczosParams, LinOp};

/// Settings of a [`Monitor`]: the loop's hyperparameters and the runner's
/// sharpness and regime settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorParams {
    /// η̂ of the user's GD+WD.
    pub lr: f64,
    /// λ̂ of the user's GD+WD.
    pub wd: f64,
    /// Spherical sharpness every this many steps (0: never).
    pub sharpness_every: u64,
    /// Steps whose record is marked `logged` (every `log_every`-th, and
    /// every step with a sharpness).
    pub log_every: u64,
    /// Lanczos settings of the sharpness.
    pub lanczos: LanczosParams,
    /// The regime's relative band.
    pub band: RegimeBand,
}

impl Default for MonitorParams {
    fn default() -> Self {
        Self {
            lr: 0.1,
            wd: 0.0,
            sharpness_every: 10,
            log_every: 1,
            lanczos: LanczosParams::default(),
            band: RegimeBand::default(),
        }
    }
}

/// What [`Monitor::observe`] found at one step.
#[derive(Clone, Debug)]
pub struct MonitorStep {
    /// The step's metrics row, as the runner writes it.
    pub record: StepRecord,
    /// The sharpness evaluation of this step, if one was due.
    pub sharpness: Option<SharpnessRecord>,
    /// Whether the record belongs in metrics.csv (`log_every`).
    pub logged: bool,
    /// Whether this step is the EoS entry.
    pub eos_entry: bool,
}

/// Errors of [`Monitor`]: bad settings or inputs, and a diverged loop.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MonitorError {
    /// The settings cannot describe GD+WD.
    #[error("EoS monitor: {0}")]
    InvalidParams(String),
    /// w or ∇L has the wrong length.
    #[error("EoS monitor: {what} has length {got}, the model has {dim} parameters")]
    Dimension { what: &'static str, got: usize, dim: usize },
    /// Steps must increase.
    #[error("EoS monitor: step {got} after step {last}; steps must increase")]
    StepOrder { got: u64, last: u64 },
    /// The loss, gradient or parameters are not finite: the loop diverged.
    #[error("EoS monitor: the loop diverged at step {step}: {what}")]
    NonFinite { step: u64, what: String },
    /// Lanczos failed (a non-finite HVP).
    #[error("EoS monitor: sharpness at step {step}: {source}")]
    Lanczos { step: u64, source: LanczosError },
}

/// The runner's per-step measurements for an external GD+WD loop.
#[derive(Clone, Debug)]
pub struct Monitor {
    params: MonitorParams,
    si: ScaleInvariance,
    dim: usize,
    st: RunState,
    first: Option<u64>,
    last: Option<StepRecord>,
    counts: Counts,
    start: std::time::Instant,
}

impl Monitor {
    /// A monitor for a model of `dim` parameters, scale-invariant as `si`
    /// says (the block's sharpness and effective LR use ‖w_S‖).
    pub fn new(dim: usize, si: ScaleInvariance, params: MonitorParams) -> Result<Self, MonitorError> {
        let (lr, wd) = (params.lr, params.wd);
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(MonitorError::InvalidParams(format!("lr = {lr} must be positive and finite")));
        }
        if !(wd >= 0.0 && lr * wd < 1.0) {
            return Err(MonitorError::InvalidParams(format!("wd = {wd} must be ≥ 0 with lr·wd < 1 (lr = {lr})")));
        }
        if dim == 0 {
            return Err(MonitorError::InvalidParams("the model has no parameters".into()));
        }
        let n = match &si {
            ScaleInvariance::Block(idx) => {
                if idx.is_empty() || idx.iter().any(|&i| i >= dim) || idx.windows(2).any(|p| p[0] >= p[1]) {
                    return Err(MonitorError::InvalidParams(format!(
                        "the scale-invariant block must be sorted, distinct indices below {dim} (not empty)"
                    )));
                }
                idx.len()
            }
            _ => dim,
        };
        if params.sharpness_every > 0 {
            params.lanczos.validate(n).map_err(|e| MonitorError::InvalidParams(e.to_string()))?;
        }
        let st = RunState { tracker: serde_json::Value::Null, ..Default::default() };
        Ok(Self {
            params,
            si,
            dim,
            st,
            first: None,
            last: None,
            counts: Counts::default(),
            start: std::time::Instant::now(),
        })
    }

    /// The settings.
    pub fn params(&self) -> &MonitorParams {
        &self.params
    }

    /// The declared scale invariance.
    pub fn scale_invariance(&self) -> &ScaleInvariance {
        &self.si
    }

    /// Whether step t gets a sharpness evaluation.
    pub fn due(&self, t: u64) -> bool {
        self.params.sharpness_every > 0 && t.is_multiple_of(self.params.sharpness_every)
    }

    /// The last record observed.
    pub fn last(&self) -> Option<&StepRecord> {
        self.last.as_ref()
    }

    /// Step t of the loop: w_t, L(w_t), ∇L(w_t) and the Hessian at w_t
    /// (applied only when a sharpness is due, `hessian.dim()` = D).
    pub fn observe(
        &mut self,
        t: u64,
        w: &[f64],
        loss: f64,
        grad: &[f64],
        hessian: &dyn LinOp,
    ) -> Result<MonitorStep, MonitorError> {
        for (what, got) in [("w", w.len()), ("the gradient", grad.len()), ("the Hessian operator", hessian.dim())] {
            if got != self.dim {
                return Err(MonitorError::Dimension { what, got, dim: self.dim });
            }
        }
        if let Some(last) = self.last.as_ref().map(|r| r.step)
            && t <= last
        {
            return Err(MonitorError::StepOrder { got: t, last });
        }
        let e = Evaluation::gd_wd(&self.si, self.params.lr, self.params.wd, w, loss, grad);
        self.st.gradient_evals += 1;
        self.counts.gradients += 1;
        let bad = e.divergence(w);
        if let Some(what) = bad {
            return Err(MonitorError::NonFinite { step: t, what });
        }
        self.first.get_or_insert(t);
        let mut sharpness = None;
        if self.due(t) {
            let s = spherical_sharpness_of(hessian, &self.si, w, &self.params.lanczos, self.st.warm.as_deref())
                .map_err(|source| MonitorError::Lanczos { step: t, source })?;
            self.st.sharpness_evals += 1;
            self.st.hvps += s.hvps as u64;
            self.counts.hvps += s.hvps as u64;
            if !s.converged {
                self.st.sharpness_unconverged += 1;
            }
            if self.first == Some(t) {
                self.st.initial_sharpness = Some(s.spherical);
            }
            self.st.last_sharpness = Some(s.spherical);
            sharpness = Some(SharpnessRecord {
                step: t,
                sharpness: s.spherical,
                top_k: s.top_k,
                residual: s.residual,
                hvps: s.hvps,
                converged: s.converged,
            });
            self.st.warm = Some(s.eigenvector);
        }
        let two = 2.0 / e.eff_lr;
        let sharp = sharpness.as_ref().map(|s| s.sharpness);
        let (regime, eos_entry) = self.st.observe_threshold(t, two, sharp, self.params.band);
        let record = StepRecord {
            step: t,
            loss,
            grad_norm: e.grad_norm,
            w_norm: e.w_norm,
            eff_lr: e.eff_lr,
            two_over_eff_lr: two,
            sharpness: sharp,
            regime,
            extra: Vec::new(),
        };
        let logged = sharp.is_some()
            || self.first == Some(t)
            || (self.params.log_every > 0 && t.is_multiple_of(self.params.log_every));
        self.last = Some(record.clone());
        Ok(MonitorStep { record, sharpness, logged, eos_entry })
    }

    /// The summary of the loop so far, as a run's (`status` says how it
    /// ended; `wall_time_s` counts from the monitor's creation).
    pub fn summary(&self, status: Status) -> RunSummary {
        let t0 = self.first.unwrap_or(0);
        let wall = self.start.elapsed().as_secs_f64();
        self.st.summary(status, t0, self.last.as_ref(), self.counts, wall, serde_json::Map::new())
    }
}
