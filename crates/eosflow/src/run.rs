//! The runner: steps an optimizer on any objective, schedules sharpness
//! evaluations, counts every evaluation, stops on the step budget, on
//! numerical trouble or on a cancel token, and hands every record to
//! observers — the only output channel.
//!
//! A user's own objective runs as it is: implement [`Objective`] (and an HVP,
//! or wrap it in [`FiniteDifferenceHvp`](crate::FiniteDifferenceHvp)), give
//! the runner an optimizer, and read the [`History`]:
//!
//! ```
//! use eosflow::optim::GdWd;
//! use eosflow::run::{History, RunParams, Runner};
//! use eosflow::{FiniteDifferenceHvp, Objective};
//!
//! /// L(w) = 1 − w₀²/‖w‖²: scale-invariant, minimal on the w₀ axis.
//! struct Axis;
//! impl Objective for Axis {
//!     fn dim(&self) -> usize { 2 }
//!     fn loss_grad(&self, w: &[f64], g: &mut [f64]) -> f64 {
//!         let s = w[0] * w[0] + w[1] * w[1];
//!         let c = w[0] * w[0] / s;
//!         g[0] = -2.0 * w[0] / s + 2.0 * c * w[0] / s;
//!         g[1] = 2.0 * c * w[1] / s;
//!         1.0 - c
//!     }
//! }
//!
//! let obj = FiniteDifferenceHvp::new(Axis);
//! let mut opt = GdWd::new(0.1, 0.01, vec![1.0, 1.0]);
//! let mut history = History::default();
//! let summary = Runner::new(&obj, &mut opt)
//!     .params(RunParams { steps: 500, sharpness_every: 100, ..Default::default() })
//!     .observer(&mut history)
//!     .run()
//!     .unwrap();
//! assert_eq!(history.steps.len(), 501);
//! assert!(history.steps[500].loss < 1e-6 * history.steps[0].loss);
//! assert_eq!(history.sharpness.len(), 6);
//! assert_eq!(summary.counts.gradients, 501);
//! ```

use crate::eos::{EosEntry, EosEntryRule, Regime, RegimeBand};
use crate::objective::{Counted, Counts, Hessian, Objective};
use crate::optim::{Optimizer, RestoreError};
use crate::problems::{NoTracker, Problem, StepView, Tracker, TrackerStateError};
use crate::sharpness::spherical_sharpness;
use crate::spectrum::{Block, BlockParams, BlockSpectrum, LanczosError, LanczosParams, block_spectrum};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the runner does besides stepping.
#[derive(Clone, Debug, PartialEq)]
pub struct RunParams {
    /// Number of updates T; steps 0..=T are evaluated (step 0 is w_0).
    pub steps: u64,
    /// Observers get a step record every `log_every` steps (and at the last).
    pub log_every: u64,
    /// Spherical sharpness every `sharpness_every` steps and at the last step;
    /// 0 turns it off.
    pub sharpness_every: u64,
    /// Lanczos settings for sharpness.
    pub lanczos: LanczosParams,
    /// Relative band for the regime.
    pub band: RegimeBand,
    /// Steps [a, b] in which every step is logged and gets a sharpness
    /// evaluation (a close look such as Fig. 11 without paying for it over
    /// the whole run).
    pub dense_window: Option<(u64, u64)>,
    /// Observers get a [`RunState`] every `checkpoint_every` steps and when
    /// the run is cancelled; 0 turns periodic checkpoints off.
    pub checkpoint_every: u64,
    /// Steps at which observers get w_t ([`Observer::on_snapshot`]): the
    /// iterates a flow or a spectrum starts from.
    pub snapshot_at: Vec<u64>,
    /// Also a snapshot at the EoS entry (`eos_entry_step`).
    pub snapshot_at_eos_entry: bool,
    /// A periodic checkpoint is skipped when less than this many seconds
    /// have passed since the previous one (or the start): a run of a few
    /// seconds is not worth its fsyncs. 0 checkpoints at every multiple.
    pub checkpoint_min_interval_s: f64,
    /// Per-block spectra along the run ([`SpectrumSchedule`]); None is off.
    pub spectrum: Option<SpectrumSchedule>,
}

/// The top eigenvalue and trace of each block of the Hessian
/// ([`block_spectrum`]) every `every` steps and at the last, reported to
/// [`Observer::on_spectrum`]: Fig. 2's falling sharpness, per layer. Each
/// evaluation is seeded and cold-started, so a resumed run computes the
/// same bits without extra checkpoint state.
#[derive(Clone, Debug, PartialEq)]
pub struct SpectrumSchedule {
    /// Every how many steps (≥ 1).
    pub every: u64,
    /// The blocks ([`crate::spectrum::select_blocks`]).
    pub blocks: Vec<Block>,
    /// Lanczos and Hutch++ settings.
    pub params: BlockParams,
}

impl Default for RunParams {
    fn default() -> Self {
        Self {
            steps: 1000,
            log_every: 1,
            sharpness_every: 10,
            lanczos: LanczosParams::default(),
            band: RegimeBand::default(),
            dense_window: None,
            checkpoint_every: 0,
            snapshot_at: Vec::new(),
            snapshot_at_eos_entry: false,
            checkpoint_min_interval_s: 0.0,
            spectrum: None,
        }
    }
}

/// A column of metrics.csv or sharpness.csv, as a typed handle: the runner,
/// a problem's tracker and every reader (figures, tables) name a column
/// through the same constant, so a renamed column is a compile error, not a
/// silently empty plot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Column(&'static str);

impl Column {
    /// A column named `name` in the CSV header.
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }
    /// The header name.
    pub const fn name(self) -> &'static str {
        self.0
    }
}

/// The runner's own columns: metrics.csv starts with [`columns::METRICS`],
/// sharpness.csv with [`columns::SHARPNESS_CSV`] (then `lambda_1 … lambda_k`).
pub mod columns {
    use super::Column;
    pub const STEP: Column = Column::new("step");
    pub const LOSS: Column = Column::new("loss");
    pub const GRAD_NORM: Column = Column::new("grad_norm");
    pub const W_NORM: Column = Column::new("w_norm");
    pub const EFF_LR: Column = Column::new("eff_lr");
    pub const TWO_OVER_EFF_LR: Column = Column::new("two_over_eff_lr");
    pub const SHARPNESS: Column = Column::new("sharpness");
    pub const REGIME: Column = Column::new("regime");
    pub const RESIDUAL: Column = Column::new("residual");
    pub const HVPS: Column = Column::new("hvps");
    pub const CONVERGED: Column = Column::new("converged");
    /// metrics.csv's common columns, in order.
    pub const METRICS: [Column; 8] = [STEP, LOSS, GRAD_NORM, W_NORM, EFF_LR, TWO_OVER_EFF_LR, SHARPNESS, REGIME];
    /// sharpness.csv's columns before the eigenvalues, in order.
    pub const SHARPNESS_CSV: [Column; 5] = [STEP, SHARPNESS, RESIDUAL, HVPS, CONVERGED];
}

/// One row of metrics.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// t; 0 is the initial point.
    pub step: u64,
    /// L(w_t).
    pub loss: f64,
    /// ‖∇L(θ_t)‖.
    pub grad_norm: f64,
    /// ‖w_t‖.
    pub w_norm: f64,
    /// η̃_t.
    pub eff_lr: f64,
    /// 2/η̃_t, the stability threshold.
    pub two_over_eff_lr: f64,
    /// Spherical sharpness at θ_t when computed at this step.
    pub sharpness: Option<f64>,
    /// Regime against the most recent sharpness (None before the first).
    pub regime: Option<Regime>,
    /// The problem's own columns ([`Tracker::columns`]).
    pub extra: Vec<f64>,
}

/// One row of sharpness.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharpnessRecord {
    /// t.
    pub step: u64,
    /// λ1(∇²L(θ_t)).
    pub sharpness: f64,
    /// The top-k eigenvalues at θ_t, descending.
    pub top_k: Vec<f64>,
    /// Largest Lanczos residual, in sharpness units.
    pub residual: f64,
    /// HVPs this evaluation used.
    pub hvps: usize,
    /// Whether Lanczos met its tolerance (a miss is logged, not fatal).
    pub converged: bool,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// All steps done.
    Completed,
    /// Stopped by numerical trouble at `step`.
    Diverged { step: u64, reason: String },
    /// Stopped by the cancel token after finishing `step`.
    Interrupted { step: u64 },
    /// An evaluation failed inside the objective's backend at `step`
    /// ([`crate::Objective::take_failure`]: a device error, a GPU out of
    /// memory), or an observer could not write its output (`op` =
    /// [`OUTPUT_OP`]: a full disk); the rows before `step` and the last
    /// checkpoint are kept.
    Error { step: u64, op: String, message: String },
}

/// The run's key numbers (summary.json's generic part; read back from it
/// with `wall_time_s` = 0, since a run directory keeps times under `timing`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// How the run ended.
    #[serde(flatten)]
    pub status: Status,
    /// Last step evaluated.
    pub last_step: u64,
    /// Loss at the last evaluated step.
    pub final_loss: f64,
    /// ‖w‖ at the last evaluated step.
    pub final_w_norm: f64,
    /// 2/η̃ at the last evaluated step.
    pub final_two_over_eff_lr: f64,
    /// Last sharpness computed.
    pub final_sharpness: Option<f64>,
    /// Sharpness at step 0.
    pub initial_sharpness: Option<f64>,
    /// The EoS entry ([`EosEntry`]): the first sharpness evaluation whose
    /// regime is not `stable` (2/η̃_t ≤ (1 + b)·S_t) after a stable one.
    pub eos_entry_step: Option<u64>,
    /// Sharpness at that step.
    pub sharpness_at_eos_entry: Option<f64>,
    /// First sharpness evaluation whose regime is in the EoS band (either
    /// side of S, within `eos_band`): a different notion from the entry,
    /// kept for the regime column's readers.
    pub first_in_band_step: Option<u64>,
    /// Sharpness at that step.
    pub sharpness_at_first_in_band: Option<f64>,
    /// Largest sharpness computed.
    pub max_sharpness: Option<f64>,
    /// Gradient evaluations.
    pub gradient_evals: u64,
    /// Hessian-vector products in the runner's sharpness evaluations.
    pub hvps: u64,
    /// Sharpness evaluations, and how many missed the Lanczos tolerance.
    pub sharpness_evals: u64,
    pub sharpness_unconverged: u64,
    /// Every evaluation of the objective during the run, whoever made it
    /// (optimizer, sharpness, the problem's tracker and summary).
    pub counts: Counts,
    /// Seconds spent in the runner.
    #[serde(default)]
    pub wall_time_s: f64,
    /// The problem's own results.
    pub problem: serde_json::Map<String, serde_json::Value>,
}

/// Failure of an observer (a file that cannot be written, …).
pub type ObserverError = Box<dyn std::error::Error + Send + Sync>;

/// Receives what the runner produces. Observers write files, draw progress
/// bars and plots; the library itself never does.
pub trait Observer {
    /// Before the first step, with the problem's extra column names.
    fn on_start(&mut self, _extra_columns: &[&str]) -> Result<(), ObserverError> {
        Ok(())
    }
    /// Each logged step, with w_t.
    fn on_step(&mut self, _rec: &StepRecord, _w: &[f64]) -> Result<(), ObserverError> {
        Ok(())
    }
    /// w_t at a step of `snapshot_at`, or at the EoS entry when
    /// `snapshot_at_eos_entry` (then `eos_entry` is true; a step can be both,
    /// and is then reported once).
    fn on_snapshot(&mut self, _step: u64, _w: &[f64], _eos_entry: bool) -> Result<(), ObserverError> {
        Ok(())
    }
    /// Each per-block spectrum evaluation ([`RunParams::spectrum`]): the
    /// blocks in the schedule's order.
    fn on_spectrum(&mut self, _step: u64, _blocks: &[BlockSpectrum]) -> Result<(), ObserverError> {
        Ok(())
    }
    /// Each sharpness evaluation.
    fn on_sharpness(&mut self, _rec: &SharpnessRecord) -> Result<(), ObserverError> {
        Ok(())
    }
    /// At a checkpoint: the state to resume from (rows before
    /// `state.next_step` have all been reported).
    fn on_checkpoint(&mut self, _state: &RunState) -> Result<(), ObserverError> {
        Ok(())
    }
    /// Once at the end, with the last evaluated w.
    fn on_finish(&mut self, _summary: &RunSummary, _w: &[f64]) -> Result<(), ObserverError> {
        Ok(())
    }
}

/// A cancellation flag shared with whoever may stop the run (a signal
/// handler in the binary). The runner finishes the current step first.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the run to stop after the current step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    /// Whether cancel was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Errors that stop a run early other than divergence.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An observer failed before the first step (a run directory that
    /// cannot be written; later failures end the run with
    /// [`Status::Error`] instead). The message names the file.
    #[error("output failed: {0}")]
    Observer(ObserverError),
    /// The parameter vector does not match the problem.
    #[error("initial point has {got} entries, the problem has {dim} parameters")]
    Dimension { got: usize, dim: usize },
    /// The Lanczos settings cannot work for this objective (a configuration
    /// error, found before the first step).
    #[error("sharpness settings: {0}")]
    InvalidLanczos(LanczosError),
    /// The per-block spectrum schedule cannot work for this objective.
    #[error("spectrum settings: {0}")]
    InvalidSpectrum(String),
    /// A checkpoint's optimizer state does not fit this optimizer.
    #[error("cannot resume from the checkpoint: {0}")]
    ResumeOptimizer(#[from] RestoreError),
    /// A checkpoint's tracker state does not fit this problem.
    #[error("cannot resume from the checkpoint: {0}")]
    ResumeTracker(#[from] TrackerStateError),
}

/// Everything the runner needs to continue a run exactly where it stopped:
/// written by observers at each checkpoint ([`Observer::on_checkpoint`]),
/// given back to [`Runner::resume`]. With the same config, a resumed run computes
/// the same bits as one that was never interrupted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RunState {
    /// The step to evaluate next (rows of earlier steps are written).
    pub next_step: u64,
    /// w at `next_step` (stored beside the JSON, as .npy, by the CLI).
    #[serde(skip)]
    pub params: Vec<f64>,
    /// The optimizer's scalar state ([`Optimizer::state`]).
    pub optimizer_state: Vec<(String, f64)>,
    /// Lanczos warm-start vector (stored as .npy by the CLI).
    #[serde(skip)]
    pub warm: Option<Vec<f64>>,
    pub last_sharpness: Option<f64>,
    pub initial_sharpness: Option<f64>,
    #[serde(alias = "first_eos")]
    pub first_in_band: Option<u64>,
    pub max_sharpness: Option<f64>,
    #[serde(alias = "sharpness_at_first_eos")]
    pub sharpness_at_first_in_band: Option<f64>,
    /// The EoS entry rule's state (absent in format-0 checkpoints).
    #[serde(flatten, default)]
    pub eos: EosEntry,
    #[serde(default)]
    pub sharpness_at_eos_entry: Option<f64>,
    pub gradient_evals: u64,
    pub hvps: u64,
    pub sharpness_evals: u64,
    pub sharpness_unconverged: u64,
    /// Evaluation counts so far (absent in checkpoints of eosflow ≤ 0.1.0's
    /// first format: counted from the resume on).
    #[serde(default)]
    pub counts: Counts,
    /// The problem tracker's state (`Tracker::save`).
    pub tracker: serde_json::Value,
}

impl RunState {
    /// Books step t's threshold 2/η̃_t against the sharpness: returns the
    /// regime (against the most recent sharpness, `None` before the first)
    /// and whether t is the EoS entry ([`EosEntry`]); updates the maximum,
    /// the first in-band step and the entry. `sharp` is the sharpness
    /// evaluated at t, if any: EoS is judged on steps with a fresh sharpness
    /// only, since a stale one (computed k steps ago) against a moving 2/η̃
    /// can fake it.
    pub fn observe_threshold(
        &mut self,
        t: u64,
        two_over_eff_lr: f64,
        sharp: Option<f64>,
        band: RegimeBand,
    ) -> (Option<Regime>, bool) {
        let regime = self.last_sharpness.map(|s| band.classify(two_over_eff_lr, s));
        if let Some(s) = sharp {
            self.max_sharpness = Some(self.max_sharpness.map_or(s, |m: f64| m.max(s)));
        }
        if self.first_in_band.is_none() && sharp.is_some() && regime.is_some_and(|r| r.is_eos()) {
            self.first_in_band = Some(t);
            self.sharpness_at_first_in_band = sharp;
        }
        let rule = EosEntryRule { band: band.band, run_in: 1 };
        let eos_entry = sharp.is_some_and(|s| self.eos.observe(&rule, t, two_over_eff_lr, s));
        if eos_entry {
            self.sharpness_at_eos_entry = sharp;
        }
        (regime, eos_entry)
    }

    /// The run's summary from this state, the last logged record (`None`:
    /// nothing was evaluated after step `t0`) and the run's counts.
    pub fn summary(
        &self,
        status: Status,
        t0: u64,
        last: Option<&StepRecord>,
        counts: Counts,
        wall_time_s: f64,
        problem: serde_json::Map<String, serde_json::Value>,
    ) -> RunSummary {
        RunSummary {
            status,
            last_step: last.map_or(t0, |r| r.step),
            final_loss: last.map_or(f64::NAN, |r| r.loss),
            final_w_norm: last.map_or(f64::NAN, |r| r.w_norm),
            final_two_over_eff_lr: last.map_or(f64::NAN, |r| r.two_over_eff_lr),
            final_sharpness: self.last_sharpness,
            initial_sharpness: self.initial_sharpness,
            eos_entry_step: self.eos.step(),
            sharpness_at_eos_entry: self.sharpness_at_eos_entry,
            first_in_band_step: self.first_in_band,
            sharpness_at_first_in_band: self.sharpness_at_first_in_band,
            gradient_evals: self.gradient_evals,
            hvps: self.hvps,
            sharpness_evals: self.sharpness_evals,
            sharpness_unconverged: self.sharpness_unconverged,
            counts,
            wall_time_s,
            max_sharpness: self.max_sharpness,
            problem,
        }
    }
}

/// An in-memory observer: every logged step, every sharpness evaluation and
/// the summary, for a Rust user's own analysis (or a notebook through the
/// Python bindings). The records serialise with serde.
#[derive(Clone, Debug, Default, Serialize)]
pub struct History {
    /// The tracker's extra column names (the meaning of [`StepRecord::extra`]).
    pub columns: Vec<String>,
    /// One record per logged step.
    pub steps: Vec<StepRecord>,
    /// One record per sharpness evaluation.
    pub sharpness: Vec<SharpnessRecord>,
    /// Each per-block spectrum evaluation: (step, blocks).
    pub spectrum: Vec<(u64, Vec<BlockSpectrum>)>,
    /// The run's summary, once it has finished.
    pub summary: Option<RunSummary>,
}

impl Observer for History {
    fn on_start(&mut self, extra_columns: &[&str]) -> Result<(), ObserverError> {
        self.columns = extra_columns.iter().map(|c| c.to_string()).collect();
        Ok(())
    }
    fn on_step(&mut self, rec: &StepRecord, _w: &[f64]) -> Result<(), ObserverError> {
        self.steps.push(rec.clone());
        Ok(())
    }
    fn on_sharpness(&mut self, rec: &SharpnessRecord) -> Result<(), ObserverError> {
        self.sharpness.push(rec.clone());
        Ok(())
    }
    fn on_spectrum(&mut self, step: u64, blocks: &[BlockSpectrum]) -> Result<(), ObserverError> {
        self.spectrum.push((step, blocks.to_vec()));
        Ok(())
    }
    fn on_finish(&mut self, summary: &RunSummary, _w: &[f64]) -> Result<(), ObserverError> {
        self.summary = Some(summary.clone());
        Ok(())
    }
}

/// One run: an objective, an optimizer and what happens around the steps,
/// set up by a builder and started by [`Runner::run`].
///
/// Each step t: evaluate L, ∇L at w_t; every `sharpness_every` steps compute
/// the spherical sharpness (warm-started from the previous eigenvector);
/// classify the regime; let the tracker see the step; report logged steps
/// to the observers; update to w_{t+1}. Non-finite loss, gradient or
/// weights, or ‖w‖ underflowing to 0, stop the run with
/// [`Status::Diverged`]; rows already reported stay reported. A cancelled
/// run finishes its step, reports a checkpoint and stops with
/// [`Status::Interrupted`]. Every evaluation goes through one [`Counted`]
/// wrapper, so [`RunSummary::counts`] holds them all.
pub struct Runner<'a> {
    objective: &'a dyn Hessian,
    optimizer: &'a mut dyn Optimizer,
    tracker: Box<dyn Tracker + 'a>,
    params: RunParams,
    observers: Vec<&'a mut dyn Observer>,
    cancel: CancelToken,
    agree_stop: Option<Box<dyn FnMut(bool) -> bool + 'a>>,
    resume: Option<RunState>,
}

impl<'a> Runner<'a> {
    /// Runs any objective with the standard metrics only (no tracker), with
    /// [`RunParams::default`], no observers and a fresh cancel token.
    pub fn new(objective: &'a dyn Hessian, optimizer: &'a mut dyn Optimizer) -> Self {
        Self {
            objective,
            optimizer,
            tracker: Box::new(NoTracker),
            params: RunParams::default(),
            observers: Vec::new(),
            cancel: CancelToken::new(),
            agree_stop: None,
            resume: None,
        }
    }

    /// Runs a problem with its tracker ([`Problem::tracker`]): its metrics
    /// columns and summary.
    pub fn for_problem(problem: &'a dyn Problem, optimizer: &'a mut dyn Optimizer) -> Self {
        let tracker = problem.tracker();
        Self::new(problem, optimizer).tracker(tracker)
    }

    /// The step budget, logging, sharpness and checkpoint schedule.
    pub fn params(mut self, params: RunParams) -> Self {
        self.params = params;
        self
    }

    /// A tracker of the objective's own metrics.
    pub fn tracker(mut self, tracker: Box<dyn Tracker + 'a>) -> Self {
        self.tracker = tracker;
        self
    }

    /// Adds an observer (called in the order added).
    pub fn observer(mut self, observer: &'a mut dyn Observer) -> Self {
        self.observers.push(observer);
        self
    }

    /// The token that stops the run after the current step.
    pub fn cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// For processes that run one run in lockstep (MPI ranks): each step,
    /// whether to stop is `agree(cancelled here)` — a collective OR, so that
    /// a signal reaching any process stops all of them after the same step,
    /// and none waits forever in a collective of a step the others skip.
    /// Called exactly once per step on every process.
    ///
    /// ```
    /// use eosflow::{optim::GdWd, problems::{Problem, Toy3d}, run::{RunParams, Runner}};
    /// let p = Toy3d::new(0);
    /// let mut opt = GdWd::new(0.5, 0.08, p.initial_point());
    /// // Here the other processes ask to stop at step 3 (an MPI rank would
    /// // OR its flag with theirs).
    /// let mut step = 0;
    /// let agree = |local: bool| {
    ///     step += 1;
    ///     local || step == 4
    /// };
    /// let params = RunParams { steps: 10, ..Default::default() };
    /// let s = Runner::new(&p, &mut opt).params(params).agree_stop(agree).run().unwrap();
    /// assert_eq!(s.last_step, 3);
    /// ```
    pub fn agree_stop(mut self, agree: impl FnMut(bool) -> bool + 'a) -> Self {
        self.agree_stop = Some(Box::new(agree));
        self
    }

    /// Continues from a checkpoint (the optimizer and tracker are restored
    /// from it).
    pub fn resume(mut self, state: RunState) -> Self {
        self.resume = Some(state);
        self
    }

    /// Runs to `params.steps` (or the first stop).
    pub fn run(self) -> Result<RunSummary, RunError> {
        let Runner { objective, optimizer: opt, mut tracker, params, mut observers, cancel, mut agree_stop, resume } =
            self;
        let start = std::time::Instant::now();
        let mut st = RunState { tracker: serde_json::Value::Null, ..Default::default() };
        if let Some(r) = resume {
            opt.restore(r.next_step, &r.params, &r.optimizer_state)?;
            tracker.load(&r.tracker)?;
            st = r;
        }
        if opt.params().len() != objective.dim() {
            return Err(RunError::Dimension { got: opt.params().len(), dim: objective.dim() });
        }
        if params.sharpness_every > 0 || params.dense_window.is_some() {
            let n = match objective.scale_invariance() {
                crate::ScaleInvariance::Block(idx) => idx.len(),
                _ => objective.dim(),
            };
            params.lanczos.validate(n).map_err(RunError::InvalidLanczos)?;
        }
        if let Some(sp) = &params.spectrum {
            if sp.every == 0 {
                return Err(RunError::InvalidSpectrum("every = 0; set it to a number of steps (≥ 1)".into()));
            }
            for b in &sp.blocks {
                let n = b.size(objective.dim());
                if let Some(bad) = b.indices.as_ref().and_then(|i| i.iter().find(|&&i| i >= objective.dim())) {
                    return Err(RunError::InvalidSpectrum(format!(
                        "block {} has coordinate {bad}, the problem has {} parameters",
                        b.name,
                        objective.dim()
                    )));
                }
                let p = LanczosParams { k: sp.params.lanczos.k.min(n.max(1)), ..sp.params.lanczos.clone() };
                p.validate(n).map_err(|e| RunError::InvalidSpectrum(format!("block {}: {e}", b.name)))?;
            }
        }
        let obj = Counted::starting_at(objective, st.counts);
        // A backend failure of the evaluation just made, as the run's status.
        let failed = |t: u64| {
            obj.take_failure().map(|f| Status::Error { step: t, op: f.op.to_string(), message: f.source.to_string() })
        };
        let names: Vec<&str> = tracker.columns().iter().map(|c| c.name()).collect();
        for o in observers.iter_mut() {
            o.on_start(&names).map_err(RunError::Observer)?;
        }
        let mut status = Status::Completed;
        let mut last = None;
        let t0 = opt.step();
        let t_end = t0.max(params.steps);
        let mut w_report: Option<Vec<f64>> = None;
        let mut last_checkpoint = std::time::Instant::now();

        let mut t = t0;
        'steps: loop {
            let e = opt.evaluate(&obj);
            st.gradient_evals += 1;
            if let Some(err) = failed(t) {
                status = err;
                break;
            }
            let w = opt.params();
            let reason = e.divergence(w);
            if let Some(reason) = reason {
                status = Status::Diverged { step: t, reason };
                break;
            }
            let dense = params.dense_window.is_some_and(|(a, b)| t >= a && t <= b);
            let due = dense || (params.sharpness_every > 0 && (t.is_multiple_of(params.sharpness_every) || t == t_end));
            let mut sharp = None;
            if due {
                match spherical_sharpness(&obj, w, &params.lanczos, st.warm.as_deref()) {
                    Ok(s) => {
                        st.sharpness_evals += 1;
                        st.hvps += s.hvps as u64;
                        if !s.converged {
                            st.sharpness_unconverged += 1;
                        }
                        let rec = SharpnessRecord {
                            step: t,
                            sharpness: s.spherical,
                            top_k: s.top_k.clone(),
                            residual: s.residual,
                            hvps: s.hvps,
                            converged: s.converged,
                        };
                        for o in observers.iter_mut() {
                            if let Err(e) = o.on_sharpness(&rec) {
                                status = output_failed(t, e);
                                break 'steps;
                            }
                        }
                        if t == 0 {
                            st.initial_sharpness = Some(s.spherical);
                        }
                        sharp = Some(s.spherical);
                        st.last_sharpness = Some(s.spherical);
                        st.warm = Some(s.eigenvector);
                    }
                    Err(err) => {
                        status = failed(t).unwrap_or(Status::Diverged { step: t, reason: err.to_string() });
                        break;
                    }
                }
            }
            if let Some(sp) = &params.spectrum
                && (t.is_multiple_of(sp.every) || t == t_end)
            {
                let h = obj.hessian_at(w);
                let got: Result<Vec<_>, _> =
                    sp.blocks.iter().map(|b| block_spectrum(h.as_ref(), w, b, &sp.params)).collect();
                drop(h);
                match got {
                    Ok(blocks) => {
                        for o in observers.iter_mut() {
                            if let Err(e) = o.on_spectrum(t, &blocks) {
                                status = output_failed(t, e);
                                break 'steps;
                            }
                        }
                    }
                    Err(err) => {
                        status = failed(t).unwrap_or(Status::Diverged { step: t, reason: err.to_string() });
                        break;
                    }
                }
            }
            let two = 2.0 / e.eff_lr;
            let (regime, eos_entry) = st.observe_threshold(t, two, sharp, params.band);
            let logged = dense || t == 0 || t == t_end || (params.log_every > 0 && t.is_multiple_of(params.log_every));
            let extra = tracker.observe(&obj, &StepView { step: t, w, eval: &e, sharpness: sharp, eos_entry, logged });
            if let Some(err) = failed(t) {
                status = err;
                break;
            }
            let rec = StepRecord {
                step: t,
                loss: e.loss,
                grad_norm: e.grad_norm,
                w_norm: e.w_norm,
                eff_lr: e.eff_lr,
                two_over_eff_lr: two,
                sharpness: sharp,
                regime,
                extra,
            };
            if logged {
                for o in observers.iter_mut() {
                    if let Err(e) = o.on_step(&rec, w) {
                        status = output_failed(t, e);
                        break 'steps;
                    }
                }
            }
            let snap_entry = eos_entry && params.snapshot_at_eos_entry;
            if snap_entry || params.snapshot_at.contains(&t) {
                for o in observers.iter_mut() {
                    if let Err(e) = o.on_snapshot(t, w, snap_entry) {
                        status = output_failed(t, e);
                        break 'steps;
                    }
                }
            }
            last = Some(rec);
            if t == t_end {
                break;
            }
            let mut cancelled = cancel.is_cancelled();
            if let Some(agree) = agree_stop.as_mut() {
                cancelled = agree(cancelled);
            }
            if cancelled {
                w_report = Some(opt.params().to_vec());
            }
            opt.update();
            t += 1;
            let periodic = params.checkpoint_every > 0
                && t.is_multiple_of(params.checkpoint_every)
                && last_checkpoint.elapsed().as_secs_f64() >= params.checkpoint_min_interval_s;
            if cancelled || periodic {
                last_checkpoint = std::time::Instant::now();
                st.next_step = t;
                st.params = opt.params().to_vec();
                st.optimizer_state = opt.state().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                st.tracker = tracker.save();
                st.counts = obj.counts();
                for o in observers.iter_mut() {
                    if let Err(e) = o.on_checkpoint(&st) {
                        status = output_failed(t, e);
                        break 'steps;
                    }
                }
            }
            if cancelled {
                status = Status::Interrupted { step: t - 1 };
                break;
            }
        }

        let w_final = w_report.unwrap_or_else(|| opt.params().to_vec());
        let problem_summary = tracker.summary(&obj, &w_final);
        // A failure in the summary's own evaluations leaves NaN (null) there;
        // an earlier status says more, so it wins.
        if let Some(err) = failed(last.as_ref().map_or(t0, |r| r.step))
            && !matches!(status, Status::Error { .. })
        {
            status = err;
        }
        let mut summary =
            st.summary(status, t0, last.as_ref(), obj.counts(), start.elapsed().as_secs_f64(), problem_summary);
        // Every observer finishes (w_final, buffered rows) even after an
        // output failure; the first failure is the run's status.
        for o in observers.iter_mut() {
            if let Err(e) = o.on_finish(&summary, &w_final)
                && !matches!(summary.status, Status::Error { .. })
            {
                summary.status = output_failed(summary.last_step, e);
            }
        }
        Ok(summary)
    }
}

/// The status of a run whose observer could not write (a full disk, a
/// file-size limit, a removed directory): rows before `step` were written;
/// the last checkpoint is the one before the failure.
fn output_failed(step: u64, e: ObserverError) -> Status {
    Status::Error { step, op: OUTPUT_OP.to_string(), message: e.to_string() }
}

/// [`Status::Error`]'s `op` when an observer failed to write.
pub const OUTPUT_OP: &str = "output";
