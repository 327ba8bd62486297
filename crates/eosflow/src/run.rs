//! The runner: steps an optimizer on a problem, schedules sharpness
//! evaluations, stops on the step budget, on numerical trouble or on a cancel
//! token, and hands every record to observers — the only output channel.

use crate::eos::{Regime, RegimeBand};
use crate::optim::Optimizer;
use crate::problems::Problem;
use crate::sharpness::spherical_sharpness;
use crate::spectrum::LanczosParams;
use serde::Serialize;
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
    /// A periodic checkpoint is skipped when less than this many seconds
    /// have passed since the previous one (or the start): a run of a few
    /// seconds is not worth its fsyncs. 0 checkpoints at every multiple.
    pub checkpoint_min_interval_s: f64,
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
            checkpoint_min_interval_s: 0.0,
        }
    }
}

/// One row of metrics.csv.
#[derive(Clone, Debug, PartialEq)]
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
    /// The problem's own columns ([`Problem::metric_names`]).
    pub extra: Vec<f64>,
}

/// One row of sharpness.csv.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// All steps done.
    Completed,
    /// Stopped by numerical trouble at `step`.
    Diverged { step: u64, reason: String },
    /// Stopped by the cancel token after finishing `step`.
    Interrupted { step: u64 },
}

/// The run's key numbers (summary.json's generic part).
#[derive(Clone, Debug, Serialize)]
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
    /// First step with a sharpness evaluation whose regime is EoS (either side).
    pub first_eos_step: Option<u64>,
    /// Sharpness at that step.
    pub sharpness_at_first_eos: Option<f64>,
    /// Largest sharpness computed.
    pub max_sharpness: Option<f64>,
    /// Gradient evaluations.
    pub gradient_evals: u64,
    /// Hessian-vector products in all sharpness evaluations.
    pub hvps: u64,
    /// Sharpness evaluations, and how many missed the Lanczos tolerance.
    pub sharpness_evals: u64,
    pub sharpness_unconverged: u64,
    /// Seconds spent in the runner.
    pub wall_time_s: f64,
    /// The problem's own results.
    pub problem: serde_json::Map<String, serde_json::Value>,
}

/// Failure of an observer (a file that cannot be written, …).
pub type ObserverError = Box<dyn std::error::Error + Send + Sync>;

/// Receives what the runner produces. Observers write files, draw progress
/// bars and plots; the library itself never does.
pub trait Observer {
    /// Before step 0, with the problem's extra column names.
    fn on_start(&mut self, _extra_columns: &[&str]) -> Result<(), ObserverError> {
        Ok(())
    }
    /// Each logged step, with w_t.
    fn on_step(&mut self, _rec: &StepRecord, _w: &[f64]) -> Result<(), ObserverError> {
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
    /// An observer failed (the message names the file).
    #[error("output failed: {0}")]
    Observer(ObserverError),
    /// The parameter vector does not match the problem.
    #[error("initial point has {got} entries, the problem has {dim} parameters")]
    Dimension { got: usize, dim: usize },
    /// A checkpoint does not fit this problem or optimizer.
    #[error("cannot resume from the checkpoint: {0}")]
    Resume(String),
}

/// Everything the runner needs to continue a run exactly where it stopped:
/// written by observers at each checkpoint ([`Observer::on_checkpoint`]),
/// given back to [`run_from`]. With the same config, a resumed run computes
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
    pub first_eos: Option<u64>,
    pub max_sharpness: Option<f64>,
    pub sharpness_at_first_eos: Option<f64>,
    pub gradient_evals: u64,
    pub hvps: u64,
    pub sharpness_evals: u64,
    pub sharpness_unconverged: u64,
    /// The problem tracker's state (`Tracker::save`).
    pub tracker: serde_json::Value,
}

/// Runs `opt` on `problem` for `params.steps` updates.
///
/// Each step t: evaluate L, ∇L at w_t; every `sharpness_every` steps compute
/// the spherical sharpness (warm-started from the previous eigenvector);
/// classify the regime; report to observers; update to w_{t+1}.
/// Non-finite loss, gradient or weights, or ‖w‖ underflowing to 0, stop the
/// run with [`Status::Diverged`]; rows already reported stay reported. A
/// cancelled run finishes its step, reports a checkpoint and stops with
/// [`Status::Interrupted`].
pub fn run(
    problem: &dyn Problem,
    opt: &mut dyn Optimizer,
    params: &RunParams,
    observers: &mut [&mut dyn Observer],
    cancel: &CancelToken,
) -> Result<RunSummary, RunError> {
    run_from(problem, opt, params, observers, cancel, None)
}

/// [`run`], continuing from a checkpoint when `resume` is given (the
/// optimizer is restored from it).
pub fn run_from(
    problem: &dyn Problem,
    opt: &mut dyn Optimizer,
    params: &RunParams,
    observers: &mut [&mut dyn Observer],
    cancel: &CancelToken,
    resume: Option<&RunState>,
) -> Result<RunSummary, RunError> {
    let start = std::time::Instant::now();
    let mut tracker = problem.tracker();
    let mut st = RunState { tracker: serde_json::Value::Null, ..Default::default() };
    if let Some(r) = resume {
        opt.restore(r.next_step, &r.params, &r.optimizer_state).map_err(RunError::Resume)?;
        tracker.load(&r.tracker).map_err(RunError::Resume)?;
        st = r.clone();
    }
    if opt.params().len() != problem.dim() {
        return Err(RunError::Dimension { got: opt.params().len(), dim: problem.dim() });
    }
    let names = problem.metric_names();
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
    loop {
        let e = opt.evaluate(problem);
        st.gradient_evals += 1;
        let w = opt.params();
        let reason = if !e.loss.is_finite() {
            Some(format!("loss is {}", e.loss))
        } else if !e.grad_norm.is_finite() {
            Some(format!("gradient norm is {}", e.grad_norm))
        } else if !w.iter().all(|x| x.is_finite()) {
            Some("weights are not finite".to_string())
        } else if e.w_norm < 1e-150 {
            Some(format!("‖w‖ = {:e} collapsed to zero", e.w_norm))
        } else {
            None
        };
        if let Some(reason) = reason {
            status = Status::Diverged { step: t, reason };
            break;
        }
        let dense = params.dense_window.is_some_and(|(a, b)| t >= a && t <= b);
        let due = dense || (params.sharpness_every > 0 && (t.is_multiple_of(params.sharpness_every) || t == t_end));
        let mut sharp = None;
        if due {
            match spherical_sharpness(problem, w, &params.lanczos, st.warm.as_deref()) {
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
                        o.on_sharpness(&rec).map_err(RunError::Observer)?;
                    }
                    if t == 0 {
                        st.initial_sharpness = Some(s.spherical);
                    }
                    sharp = Some(s.spherical);
                    st.last_sharpness = Some(s.spherical);
                    st.warm = Some(s.eigenvector);
                }
                Err(err) => {
                    status = Status::Diverged { step: t, reason: err.to_string() };
                    break;
                }
            }
        }
        let two = 2.0 / e.eff_lr;
        let regime = st.last_sharpness.map(|s| params.band.classify(two, s));
        if let Some(s) = sharp {
            st.max_sharpness = Some(st.max_sharpness.map_or(s, |m: f64| m.max(s)));
        }
        // The first EoS step is judged on steps with a fresh sharpness only: a
        // stale one (computed k steps ago) against a moving 2/η̃ can fake it.
        if st.first_eos.is_none() && sharp.is_some() && regime.is_some_and(|r| r.is_eos()) {
            st.first_eos = Some(t);
            st.sharpness_at_first_eos = sharp;
        }
        if let Some(s) = sharp {
            tracker.observe_sharpness(t, s);
        }
        tracker.observe(t, w, &e);
        let logged = dense || t == 0 || t == t_end || (params.log_every > 0 && t.is_multiple_of(params.log_every));
        let rec = StepRecord {
            step: t,
            loss: e.loss,
            grad_norm: e.grad_norm,
            w_norm: e.w_norm,
            eff_lr: e.eff_lr,
            two_over_eff_lr: two,
            sharpness: sharp,
            regime,
            extra: if logged { problem.metrics(w, &e) } else { Vec::new() },
        };
        if logged {
            for o in observers.iter_mut() {
                o.on_step(&rec, w).map_err(RunError::Observer)?;
            }
        }
        last = Some(rec);
        if t == t_end {
            break;
        }
        let cancelled = cancel.is_cancelled();
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
            for o in observers.iter_mut() {
                o.on_checkpoint(&st).map_err(RunError::Observer)?;
            }
        }
        if cancelled {
            status = Status::Interrupted { step: t - 1 };
            break;
        }
    }

    let w_final = w_report.unwrap_or_else(|| opt.params().to_vec());
    let last_rec = last.as_ref();
    let summary = RunSummary {
        status,
        last_step: last_rec.map_or(t0, |r| r.step),
        final_loss: last_rec.map_or(f64::NAN, |r| r.loss),
        final_w_norm: last_rec.map_or(f64::NAN, |r| r.w_norm),
        final_two_over_eff_lr: last_rec.map_or(f64::NAN, |r| r.two_over_eff_lr),
        final_sharpness: st.last_sharpness,
        initial_sharpness: st.initial_sharpness,
        first_eos_step: st.first_eos,
        gradient_evals: st.gradient_evals,
        hvps: st.hvps,
        sharpness_evals: st.sharpness_evals,
        sharpness_unconverged: st.sharpness_unconverged,
        wall_time_s: start.elapsed().as_secs_f64(),
        max_sharpness: st.max_sharpness,
        sharpness_at_first_eos: st.sharpness_at_first_eos,
        problem: tracker.summary(&w_final),
    };
    for o in observers.iter_mut() {
        o.on_finish(&summary, &w_final).map_err(RunError::Observer)?;
    }
    Ok(summary)
}
