//! `eosflow flow` and the `[flow]` section: the sharpness-reduction flow
//! from a point of a GD+WD run, into `<run dir>/flow/` (config.toml,
//! flow.csv, summary.json, figures/flow.*), compared with the run.

use crate::config::{Config, FlowConfig, FlowStart, OptimizerConfig, SchedulerKind};
use crate::plot::flow_columns as F;
use crate::rundir;
use anyhow::{Context, Result, bail};
use eosflow::flow::{Flow, FlowParams, FlowPoint, FlowStop, FlowTime};
use eosflow::run::{Observer, ObserverError, RunParams, Runner};
use serde_json::json;
use std::path::{Path, PathBuf};

impl Default for FlowConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [flow] key has a default")
    }
}

/// The flow of an optimizer and τ per step: GD+WD (and PGD with the GWSI
/// scheduler it is, Thm B.9) follow eq. (3) with τ = t·η_in; a
/// quasi-RMSprop scheduler with base LR η and decay β follows eq. (8) with
/// C_b = (1 − β)/η² and τ = t·η² (Thms B.10, B.13, Cor. B.14).
pub fn flow_time(opt: &OptimizerConfig) -> Result<(FlowTime, f64)> {
    Ok(match opt {
        OptimizerConfig::GdWd { lr, wd } => (FlowTime::GdWd, lr * wd),
        OptimizerConfig::Sphere { scheduler: SchedulerKind::Gwsi, lr: Some(lr), wd: Some(wd), .. } => {
            (FlowTime::GdWd, lr * wd)
        }
        OptimizerConfig::Sphere { scheduler: SchedulerKind::Constant, .. } => bail!(
            "the flow needs an adaptive (quasi-RMSprop) learning rate: with optimizer.scheduler = \"constant\" \
             there is no sharpness-reduction flow (App. B); use gd_wd, gwsi or rmsprop"
        ),
        OptimizerConfig::Sphere { eta: Some(eta), beta: Some(beta), .. } => {
            (FlowTime::QuasiRmsprop { c_b: (1.0 - beta) / (eta * eta) }, eta * eta)
        }
        OptimizerConfig::ScalarRmsprop { eta, beta, .. } => {
            (FlowTime::QuasiRmsprop { c_b: (1.0 - beta) / (eta * eta) }, eta * eta)
        }
        OptimizerConfig::Sphere { .. } => bail!("optimizer: the scheduler needs eta and beta for the flow's time unit"),
    })
}

/// The flow's settings from `[flow]` (τ_max filled in by the caller).
pub(crate) fn flow_params(fc: &FlowConfig, time: FlowTime, tau_max: f64) -> FlowParams {
    FlowParams {
        time,
        tol: fc.tol,
        tau_max,
        grad_tol: fc.grad_tol,
        eigengap_tol: fc.eigengap_tol,
        max_steps: fc.max_steps,
        initial_step: None,
        max_step: fc.max_step,
        tangent: fc.tangent.clone(),
        retraction: fc.retraction.clone(),
        third_by_differences: false,
    }
}

/// The lockstep settings of `[flow] lockstep = true`.
pub fn lockstep_params(cfg: &Config, fc: &FlowConfig) -> Result<eosflow::flow::LockstepParams> {
    let (time, tau_per_step) = flow_time(&cfg.optimizer)?;
    Ok(eosflow::flow::LockstepParams {
        flow: flow_params(fc, time, f64::INFINITY),
        tau_per_step,
        phi_every: fc.phi_every,
    })
}

/// w_t of a run with D parameters: its snapshot, else a deterministic rerun
/// to step t (which builds its own problem and optimizer).
pub(crate) fn iterate_at(cfg: &Config, run_dir: &Path, dim: usize, step: u64, snapshot: &str) -> Result<Vec<f64>> {
    let path = run_dir.join("snapshots").join(snapshot);
    if path.exists() {
        return crate::npy::read_vector(&path, Some(dim));
    }
    let prep = crate::setup::prepare(cfg)?;
    // GD+WD is deterministic: rerun to the step (no files).
    struct Capture(u64, Option<Vec<f64>>);
    impl Observer for Capture {
        fn on_snapshot(&mut self, step: u64, w: &[f64], _entry: bool) -> Result<(), ObserverError> {
            if step == self.0 {
                self.1 = Some(w.to_vec());
            }
            Ok(())
        }
    }
    let mut cap = Capture(step, None);
    let mut opt = prep.optimizer;
    let params = RunParams { steps: step, snapshot_at: vec![step], sharpness_every: 0, ..prep.params };
    Runner::for_problem(prep.problem.as_ref(), opt.as_mut()).params(params).observer(&mut cap).run()?;
    cap.1.with_context(|| format!("the rerun to step {step} did not reach it"))
}

/// What a finished flow reports.
pub struct FlowOutcome {
    pub dir: PathBuf,
    pub summary: serde_json::Value,
    pub figures: Vec<PathBuf>,
}

/// Runs `cfg.flow` (or the defaults) from the GD+WD run in `run_dir` into
/// `run_dir/flow/`.
pub fn run_flow(cfg: &Config, run_dir: &Path) -> Result<FlowOutcome> {
    let fc = cfg.flow.clone().unwrap_or_default();
    let (time, tau_per_step) = flow_time(&cfg.optimizer)?;
    let problem = crate::setup::prepare(cfg)?.problem;
    let dim = problem.dim();
    let run_summary: Option<serde_json::Value> =
        std::fs::read_to_string(run_dir.join("summary.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let (w_start, t_start, start_label) = match fc.start {
        FlowStart::EosEntry => {
            let Some(t) = run_summary.as_ref().and_then(|s| s["eos_entry_step"].as_u64()) else {
                bail!(
                    "{}: the run has no EoS entry (summary.json eos_entry_step is null) to start the flow from; \
                     set flow.start = \"step\" with flow.step, or \"w0\"",
                    run_dir.display()
                );
            };
            (iterate_at(cfg, run_dir, dim, t, rundir::EOS_ENTRY_SNAPSHOT)?, Some(t), format!("eos_entry (step {t})"))
        }
        FlowStart::Step => {
            let t = fc.step.expect("validated: flow.step is set");
            (iterate_at(cfg, run_dir, dim, t, &rundir::snapshot_name(t))?, Some(t), format!("step {t}"))
        }
        FlowStart::W0 => (iterate_at(cfg, run_dir, dim, 0, &rundir::snapshot_name(0))?, Some(0), "w0".to_string()),
        FlowStart::Npy => {
            let p = fc.npy.clone().expect("validated: flow.npy is set");
            let w = crate::npy::read_vector(&p, Some(dim))?;
            (w, None, format!("npy {}", p.display()))
        }
    };
    let t0 = t_start.unwrap_or(0);
    let tau_max = fc.tau_max.unwrap_or((cfg.run.steps.saturating_sub(t0)) as f64 * tau_per_step);
    let params = flow_params(&fc, time, tau_max);
    let dir = run_dir.join("flow");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let resolved = Config {
        format_version: Some(rundir::RUN_FORMAT),
        flow: Some(FlowConfig { tau_max: Some(tau_max), ..fc.clone() }),
        ..cfg.clone()
    };
    rundir::write_atomic(&dir.join("config.toml"), toml::to_string(&resolved)?.as_bytes())?;

    let started = std::time::Instant::now();
    let mut flow = Flow::new(problem.as_ref(), &w_start, params).context("cannot start the flow")?;
    let point_cols = problem.point_columns();
    let mut header: Vec<&str> = vec![F::TAU.name(), F::SHARPNESS.name(), F::GRAD_GAMMA_NORM.name()];
    header.extend(point_cols.iter().map(|c| c.name()));
    header.extend(
        [F::GD_STEP, F::LAMBDA2, F::OFF_MANIFOLD, F::LOSS, F::STEP_SIZE, F::GRADIENTS, F::HVPS, F::THIRD_CONTRACTIONS]
            .iter()
            .map(|c| c.name()),
    );
    let csv_path = dir.join("flow.csv");
    let mut wr = csv::Writer::from_path(&csv_path).with_context(|| format!("cannot create {}", csv_path.display()))?;
    wr.write_record(&header)?;
    let mut write_row = |p: &FlowPoint| -> Result<()> {
        let mut row = vec![p.tau, p.sharpness, p.grad_gamma_norm];
        row.extend(problem.point_values(&p.zeta));
        row.extend([
            t0 as f64 + p.tau / tau_per_step,
            p.lambda2.unwrap_or(f64::NAN),
            p.off_manifold,
            p.loss,
            p.step,
            p.counts.gradients as f64,
            p.counts.hvps as f64,
            p.counts.third_contractions as f64,
        ]);
        wr.write_record(row.iter().map(|x| if x.is_nan() { String::new() } else { format!("{x:e}") }))?;
        Ok(())
    };
    let start = flow.point().clone();
    write_row(&start)?;
    let mut sharp = vec![(start.tau, start.sharpness)];
    let mut err = None;
    let info = flow.run(&mut |p| {
        sharp.push((p.tau, p.sharpness));
        if err.is_none()
            && let Err(e) = write_row(p)
        {
            err = Some(e);
        }
    });
    wr.flush()?;
    if let Some(e) = err {
        return Err(e);
    }
    let info = info.context("the flow failed")?;
    let wall = started.elapsed().as_secs_f64();
    let end = flow.point().clone();
    for (name, v) in [("zeta_start.npy", &start.zeta), ("zeta_final.npy", &end.zeta)] {
        rundir::write_atomic(&dir.join(name), &crate::npy::encode_vector(v)?)?;
    }

    // GD+WD against the flow: the reference sharpness at τ = (t − t0)·(τ per
    // step), from the point where the first tenth of the flow's τ range has
    // passed (the first periods of EoS, where GD+WD is still aligning).
    let kind = cfg.problem.get();
    let fig = kind.flow_figure();
    let gd_metrics = run_dir.join("metrics.csv");
    let mut comparison = serde_json::Map::new();
    // GD+WD's CSVs, read once for the comparison and the figure.
    let gd_data =
        if t_start.is_some() && gd_metrics.exists() { Some(crate::plot::RunData::load(run_dir)?) } else { None };
    if let Some(data) = &gd_data {
        let steps = data.metrics.get(eosflow::run::columns::STEP.name()).cloned().unwrap_or_default();
        let reference = data.metrics.get(fig.sharpness.0.name()).cloned().unwrap_or_default();
        let from = 0.1 * end.tau;
        let mut worst: Option<(f64, f64)> = None;
        for (t, s) in steps.iter().zip(&reference) {
            let tau = (t - t0 as f64) * tau_per_step;
            if tau < from || tau > end.tau || !s.is_finite() {
                continue;
            }
            let f = interpolate_log(&sharp, tau);
            let gap = (f - s).abs() / s;
            if worst.is_none_or(|(g, _)| gap > g) {
                worst = Some((gap, tau));
            }
        }
        comparison.insert("reference_sharpness".into(), json!(fig.sharpness.1));
        comparison.insert("compared_from_tau".into(), json!(from));
        comparison.insert("max_relative_sharpness_gap".into(), json!(worst.map(|w| w.0)));
        comparison.insert("max_gap_at_tau".into(), json!(worst.map(|w| w.1)));
        // The problem's columns at the end: flow's ζ(τ_end) and GD+WD's last row.
        let end_vals = problem.point_values(&end.zeta);
        let mut ends = serde_json::Map::new();
        for (c, v) in point_cols.iter().zip(&end_vals) {
            // GD+WD's column for it: the figure's (φ_t where θ_t's own floors
            // at the oscillation), else the same name.
            let gc = fig.panels.iter().find(|p| p.0 == *c).map_or(*c, |p| p.1);
            let gd_last = data.metrics.get(gc.name()).and_then(|col| col.iter().rev().find(|x| x.is_finite()).copied());
            ends.insert(c.name().into(), json!({ "flow": v, "gd_wd_column": gc.name(), "gd_wd_last": gd_last }));
        }
        comparison.insert("at_end".into(), serde_json::Value::Object(ends));
    }
    let stop = match info.stop {
        FlowStop::TauMax => "tau_max",
        FlowStop::Stationary => "stationary",
        FlowStop::MaxSteps => "max_steps",
        FlowStop::MultipleTopEigenvalue => "multiple_top_eigenvalue",
    };
    let summary = json!({
        "format_version": rundir::RUN_FORMAT,
        "eosflow": { "version": env!("CARGO_PKG_VERSION"), "git_commit": env!("EOSFLOW_GIT_COMMIT") },
        "name": cfg.name,
        "problem_kind": kind.kind(),
        "flow": match time { FlowTime::GdWd => "eq. 3 (GD+WD)".to_string(), FlowTime::QuasiRmsprop { c_b } => format!("eq. 8 (quasi-RMSprop, C_b = {c_b})") },
        "time_unit": time.unit(),
        "tau_per_gd_step": tau_per_step,
        "domain": format!("{:?}", flow.domain()).to_lowercase(),
        "start": start_label,
        "start_step": t_start,
        "distance_start_to_gamma": eosflow::linalg::dist(&normalized(&w_start, flow.domain()), &start.zeta),
        "stop": stop,
        "tau_end": end.tau,
        "steps": info.steps,
        "rejected_steps": info.rejected,
        "sharpness_start": start.sharpness,
        "sharpness_end": end.sharpness,
        "lambda2_end": end.lambda2,
        "grad_gamma_norm_start": start.grad_gamma_norm,
        "grad_gamma_norm_end": end.grad_gamma_norm,
        "point_end": point_cols.iter().map(|c| c.name().to_string()).zip(problem.point_values(&end.zeta).into_iter().map(serde_json::Value::from)).collect::<serde_json::Map<_, _>>(),
        "third_contraction": if problem.third_contraction_is_exact() { "exact" } else { "hvp differences" },
        "counts": info.counts,
        "vs_gd_wd": comparison,
        "timing": { "flow_s": wall },
    });

    let figures = if cfg.output.figures {
        let unit = time.unit();
        let title = format!(
            "{}: the sharpness-reduction flow from {} against GD+WD",
            cfg.name,
            summary["start"].as_str().unwrap_or("")
        );
        let gd_tau = move |t: f64| (t - t0 as f64) * tau_per_step;
        crate::plot::plot_flow(&dir, gd_data.as_ref(), &fig, &gd_tau, &title, unit, &cfg.output.formats)?
    } else {
        Vec::new()
    };
    let mut summary = summary;
    summary["figures"] = figures.iter().map(|f| f.strip_prefix(&dir).unwrap_or(f).display().to_string()).collect();
    rundir::write_atomic(&dir.join("summary.json"), (serde_json::to_string_pretty(&summary)? + "\n").as_bytes())?;
    Ok(FlowOutcome { dir, summary, figures })
}

fn normalized(w: &[f64], domain: eosflow::manifold::ManifoldDomain) -> Vec<f64> {
    let mut v = w.to_vec();
    if domain == eosflow::manifold::ManifoldDomain::Sphere {
        eosflow::linalg::normalize(&mut v);
    }
    v
}

/// λ1 at τ from the flow's accepted points, interpolating log λ1 linearly
/// (λ1 is smooth along the flow; the points are the integrator's, spaced
/// by its error control).
fn interpolate_log(pts: &[(f64, f64)], tau: f64) -> f64 {
    let i = pts.partition_point(|p| p.0 < tau);
    if i == 0 {
        return pts[0].1;
    }
    if i >= pts.len() {
        return pts[pts.len() - 1].1;
    }
    let ((a, fa), (b, fb)) = (pts[i - 1], pts[i]);
    let s = if b > a { (tau - a) / (b - a) } else { 0.0 };
    (fa.ln() + s * (fb.ln() - fa.ln())).exp()
}

/// Prints a finished flow's key numbers.
pub fn print_outcome(o: &FlowOutcome) {
    let s = &o.summary;
    println!(
        "flow ({}): from {}; stopped ({}) at tau = {:.6} after {} steps ({} rejected) in {:.3} s",
        s["time_unit"].as_str().unwrap_or(""),
        s["start"].as_str().unwrap_or(""),
        s["stop"].as_str().unwrap_or(""),
        s["tau_end"].as_f64().unwrap_or(f64::NAN),
        s["steps"],
        s["rejected_steps"],
        s["timing"]["flow_s"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "  sharpness {:.6} -> {:.6}; |grad_Gamma log lambda1| {:.3e} -> {:.3e}",
        s["sharpness_start"].as_f64().unwrap_or(f64::NAN),
        s["sharpness_end"].as_f64().unwrap_or(f64::NAN),
        s["grad_gamma_norm_start"].as_f64().unwrap_or(f64::NAN),
        s["grad_gamma_norm_end"].as_f64().unwrap_or(f64::NAN),
    );
    if let Some(g) = s["vs_gd_wd"]["max_relative_sharpness_gap"].as_f64() {
        println!(
            "  vs GD+WD ({}): largest relative sharpness gap {:.3e} (at tau {:.4}, from tau {:.4} on)",
            s["vs_gd_wd"]["reference_sharpness"].as_str().unwrap_or(""),
            g,
            s["vs_gd_wd"]["max_gap_at_tau"].as_f64().unwrap_or(f64::NAN),
            s["vs_gd_wd"]["compared_from_tau"].as_f64().unwrap_or(f64::NAN),
        );
    }
    if let Some(ends) = s["vs_gd_wd"]["at_end"].as_object() {
        for (k, v) in ends {
            println!("  {k}: flow {} vs GD+WD {}", v["flow"], v["gd_wd_last"]);
        }
    }
    println!("  flow directory: {}", o.dir.display());
    for f in &o.figures {
        println!("  figure: {}", f.display());
    }
}
