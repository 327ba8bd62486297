//! Turns a validated [`Config`] into a problem, an initial point, an
//! optimizer and runner parameters.

use crate::config::{Config, OptimizerConfig, SchedulerKind, check_w0};
use anyhow::{Result, bail};
use eosflow::eos::RegimeBand;
use eosflow::linalg::norm;
use eosflow::optim::{
    ConstantLr, GdWd, GwsiScheduler, LrScheduler, Optimizer, RmspropScheduler, ScalarRmsprop, SphericalGd,
};
use eosflow::problems::Problem;
use eosflow::run::RunParams;

/// Everything a run needs.
pub struct Prepared {
    pub problem: Box<dyn Problem>,
    pub optimizer: Box<dyn Optimizer>,
    pub params: RunParams,
    /// Values derived from the config (e.g. GWSI's ṽ0, β, η), for summary.json.
    pub derived: serde_json::Map<String, serde_json::Value>,
    /// Files for the run directory's `data/` folder: (name, .npy bytes).
    pub data_files: Vec<DataFile>,
}

pub use crate::problems::DataFile;

pub fn prepare(cfg: &Config) -> Result<Prepared> {
    cfg.validate()?;
    let (problem, mut data_files) = cfg.problem.get().build(cfg)?;
    let dim = problem.dim();
    let w0 = if let Some(w) = &cfg.init.w0 {
        if w.len() != dim {
            bail!("init.w0 has {} entries, but the problem has {dim} parameters", w.len());
        }
        w.clone()
    } else if let Some(p) = &cfg.init.w0_npy {
        crate::npy::read_vector(p, Some(dim))?
    } else {
        problem.initial_point()
    };
    check_w0("initial weights", &w0)?;
    if !data_files.is_empty() {
        data_files.push(("w0.npy".into(), crate::npy::encode_vector(&w0)?));
    }
    if cfg.sharpness.every > 0 && cfg.sharpness.k > dim {
        bail!("sharpness.k = {} exceeds the number of parameters {dim}", cfg.sharpness.k);
    }
    let mut derived = serde_json::Map::new();
    let optimizer: Box<dyn Optimizer> = match &cfg.optimizer {
        OptimizerConfig::GdWd { lr, wd } => {
            derived.insert("intrinsic_lr".into(), (lr * wd).into());
            derived.insert("initial_eff_lr".into(), eosflow::eos::effective_lr(*lr, *wd, norm(&w0)).into());
            Box::new(GdWd::new(*lr, *wd, w0))
        }
        OptimizerConfig::Sphere { scheduler, eff_lr, eta, beta, v0, lr, wd } => {
            let sched: Box<dyn LrScheduler> = match scheduler {
                SchedulerKind::Constant => Box::new(ConstantLr { lr: eff_lr.unwrap() }),
                SchedulerKind::Rmsprop => {
                    Box::new(RmspropScheduler { v: v0.unwrap(), eta: eta.unwrap(), beta: beta.unwrap() })
                }
                SchedulerKind::Gwsi => {
                    let s = match (lr, wd) {
                        (Some(lr), Some(wd)) => GwsiScheduler::from_gd_wd(*lr, *wd, norm(&w0)).unwrap(),
                        _ => GwsiScheduler { v: v0.unwrap(), eta: eta.unwrap(), beta: beta.unwrap() },
                    };
                    derived.insert("gwsi_v0".into(), s.v.into());
                    derived.insert("gwsi_beta".into(), s.beta.into());
                    derived.insert("gwsi_eta".into(), s.eta.into());
                    Box::new(s)
                }
            };
            Box::new(SphericalGd::new(w0, sched))
        }
        OptimizerConfig::ScalarRmsprop { eta, beta, v0 } => Box::new(ScalarRmsprop::new(*eta, *beta, *v0, w0)),
    };
    let s = &cfg.sharpness;
    let mut params = RunParams {
        steps: cfg.run.steps,
        log_every: cfg.run.log_every,
        sharpness_every: s.every,
        lanczos: s.lanczos(),
        band: RegimeBand { band: s.eos_band },
        dense_window: cfg.run.dense_window.map(|[a, b]| (a, b)),
        checkpoint_every: cfg.run.checkpoint_every,
        checkpoint_min_interval_s: cfg.run.checkpoint_min_interval_s,
        snapshot_at: snapshot_steps(cfg),
        snapshot_at_eos_entry: cfg.run.save_w_at_eos_entry
            || cfg.flow.as_ref().is_some_and(|f| f.start == crate::config::FlowStart::EosEntry),
        spectrum: None,
    };
    if let Some(sp) = &cfg.spectrum {
        let blocks = eosflow::spectrum::select_blocks(problem.as_ref(), sp.blocks)?;
        params.spectrum = Some(eosflow::run::SpectrumSchedule {
            every: sp.every,
            blocks,
            params: eosflow::spectrum::BlockParams {
                lanczos: eosflow::spectrum::LanczosParams { k: 1, ..s.lanczos() },
                trace: eosflow::spectrum::TraceParams { probes: sp.trace_probes, seed: s.seed },
            },
        });
    }
    let problem = crate::fault::wrap(problem)?;
    Ok(Prepared { problem, optimizer, params, derived, data_files })
}

/// run.save_w_at, plus the flow's start step.
fn snapshot_steps(cfg: &Config) -> Vec<u64> {
    let mut v = cfg.run.save_w_at.clone();
    if let Some(f) = &cfg.flow
        && f.start == crate::config::FlowStart::Step
        && let Some(s) = f.step
    {
        v.push(s);
    }
    v.sort_unstable();
    v.dedup();
    v
}
