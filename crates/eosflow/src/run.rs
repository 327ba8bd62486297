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
}

/// Runs `opt` on `problem` for `params.steps` updates.
///
/// Each step t: evaluate L, ∇L at w_t; every `sharpness_every` steps compute
/// the spherical sharpness (warm-started from the previous eigenvector);
/// classify the regime; report to observers; update to w_{t+1}.
/// Non-finite loss, gradient or weights, or ‖w‖ underflowing to 0, stop the
/// run with [`Status::Diverged`]; rows already reported stay reported.
pub fn run(
    problem: &dyn Problem,
    opt: &mut dyn Optimizer,
    params: &RunParams,
    observers: &mut [&mut dyn Observer],
    cancel: &CancelToken,
) -> Result<RunSummary, RunError> {
    let start = std::time::Instant::now();
    if opt.params().len() != problem.dim() {
        return Err(RunError::Dimension { got: opt.params().len(), dim: problem.dim() });
    }
    let names = problem.metric_names();
    for o in observers.iter_mut() {
        o.on_start(&names).map_err(RunError::Observer)?;
    }
    let mut tracker = problem.tracker();
    let mut warm: Option<Vec<f64>> = None;
    let mut last_sharpness: Option<f64> = None;
    let mut initial_sharpness = None;
    let mut first_eos = None;
    let mut max_sharpness = None;
    let mut sharpness_at_first_eos = None;
    let (mut grads, mut hvps, mut sevals, mut sbad) = (0u64, 0u64, 0u64, 0u64);
    let mut status = Status::Completed;
    let mut last = None;
    let t0 = opt.step();
    let t_end = t0.max(params.steps);

    let mut t = t0;
    loop {
        let e = opt.evaluate(problem);
        grads += 1;
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
            match spherical_sharpness(problem, w, &params.lanczos, warm.as_deref()) {
                Ok(s) => {
                    sevals += 1;
                    hvps += s.hvps as u64;
                    if !s.converged {
                        sbad += 1;
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
                    if t == t0 {
                        initial_sharpness = Some(s.spherical);
                    }
                    sharp = Some(s.spherical);
                    last_sharpness = Some(s.spherical);
                    warm = Some(s.eigenvector);
                }
                Err(err) => {
                    status = Status::Diverged { step: t, reason: err.to_string() };
                    break;
                }
            }
        }
        let two = 2.0 / e.eff_lr;
        let regime = last_sharpness.map(|s| params.band.classify(two, s));
        // The first EoS step is judged on steps with a fresh sharpness only: a
        // stale one (computed k steps ago) against a moving 2/η̃ can fake it.
        if let Some(s) = sharp {
            max_sharpness = Some(max_sharpness.map_or(s, |m: f64| m.max(s)));
        }
        if first_eos.is_none() && sharp.is_some() && regime.is_some_and(|r| r.is_eos()) {
            first_eos = Some(t);
            sharpness_at_first_eos = sharp;
        }
        tracker.observe(t, w, &e);
        let logged = dense || t == t0 || t == t_end || (params.log_every > 0 && t.is_multiple_of(params.log_every));
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
        if cancel.is_cancelled() {
            status = Status::Interrupted { step: t };
            break;
        }
        opt.update();
        t += 1;
    }

    let last_rec = last.as_ref();
    let summary = RunSummary {
        status,
        last_step: last_rec.map_or(t0, |r| r.step),
        final_loss: last_rec.map_or(f64::NAN, |r| r.loss),
        final_w_norm: last_rec.map_or(f64::NAN, |r| r.w_norm),
        final_two_over_eff_lr: last_rec.map_or(f64::NAN, |r| r.two_over_eff_lr),
        final_sharpness: last_sharpness,
        initial_sharpness,
        first_eos_step: first_eos,
        gradient_evals: grads,
        hvps,
        sharpness_evals: sevals,
        sharpness_unconverged: sbad,
        wall_time_s: start.elapsed().as_secs_f64(),
        max_sharpness,
        sharpness_at_first_eos,
        problem: tracker.summary(opt.params()),
    };
    let w_final = opt.params().to_vec();
    for o in observers.iter_mut() {
        o.on_finish(&summary, &w_final).map_err(RunError::Observer)?;
    }
    Ok(summary)
}
