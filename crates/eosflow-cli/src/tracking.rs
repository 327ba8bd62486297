//! `[tracking]`: Theorem 4.6 (GD+WD) and Corollary B.14 (Scalar RMSprop)
//! as experiments. For each problem: ζ0 ∈ Γ, the sharpness-reduction flow
//! ζ(τ) from it to τ = T (integrated once), then the optimizer from the
//! theorem's initialisation scheme at every learning rate and seed, each
//! run to τ = T and measured against ζ at every step
//! (`eosflow::tracking`). Writes `tracking.csv` (one row per run),
//! `traces.csv` (sampled steps), `summary.json` (ζ0, the flow, the fitted
//! exponents of the distances against the learning rate) and
//! `figures/tracking.*`.

use crate::config::{Config, OptimizerConfig, check, positive};
use crate::{rundir, setup};
use anyhow::{Context, Result, bail};
use eosflow::flow::{Flow, FlowPath, FlowTime};
use eosflow::optim::{GdWd, Optimizer, ScalarRmsprop};
use eosflow::problems::Problem;
use eosflow::run::{CancelToken, Observer, ObserverError, Runner};
use eosflow::tracking::{TracePoint, Tracking, TrackingParams, fit_exponent, gd_wd_init, scalar_rmsprop_init, track};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `[tracking]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// GD+WD (optimizer.kind = "gd_wd"): the intrinsic learning rates
    /// η_in = η̂λ̂ to run, with η̂ = optimizer.lr and λ̂ = η_in/η̂
    /// (optimizer.wd is not used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eta_in: Vec<f64>,
    /// Scalar RMSprop (optimizer.kind = "scalar_rmsprop"): the base learning
    /// rates η, each with β = 1 − c_b·η² (Cor. B.14; optimizer.beta and v0
    /// are not used: v0 comes from the initialisation scheme).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eta: Vec<f64>,
    /// Scalar RMSprop: C_b of β = 1 − C_b·η².
    #[serde(default = "two")]
    pub c_b: f64,
    /// Seeds of the initial perturbation ξ, one run each.
    #[serde(default = "five_seeds")]
    pub seeds: Vec<u64>,
    /// σ0 = sigma0_scale·√η_in (GD+WD) or sigma0_scale·η (Scalar RMSprop):
    /// inside the theorems' ranges [exp(−η_in^(−o(1))), η_in^(1/2 − o(1))]
    /// and [exp(−α0²)η, α0η] for a constant below 1.
    #[serde(default = "tenth")]
    pub sigma0_scale: f64,
    /// T: every run goes to τ = T (T/η_in steps for GD+WD, T/η² for Scalar
    /// RMSprop).
    pub tau_end: f64,
    /// ζ0: "eos_entry" (the projection of the config's own run at its EoS
    /// entry — where Thm 4.6 starts, with t1 = 0), "w0" (the projection of
    /// the initial point) or a `.npy` file (D entries, projected).
    #[serde(default = "eos_entry")]
    pub zeta0: String,
    /// Sampled steps per run in traces.csv.
    #[serde(default = "four_hundred")]
    pub trace_points: usize,
}

fn two() -> f64 {
    2.0
}
fn five_seeds() -> Vec<u64> {
    (0..5).collect()
}
fn tenth() -> f64 {
    0.1
}
fn eos_entry() -> String {
    "eos_entry".into()
}
fn four_hundred() -> usize {
    400
}

/// Steps a run may take at most (a typo in a rate should not start a
/// billion-step run).
const MAX_STEPS: f64 = 1e8;

/// Flow steps at least over [0, T] (see `set_up`).
const DENSE_STEPS: f64 = 400.0;

/// The learning rates of one experiment and how they set a run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    /// GD+WD with η̂; the rate is η_in; eq. (3), τ = t·η_in.
    GdWd { lr: f64 },
    /// Scalar RMSprop, β = 1 − C_b η²; the rate is η; eq. (8), τ = t·η².
    ScalarRmsprop { c_b: f64 },
}

impl Method {
    fn of(cfg: &Config) -> Result<Self> {
        let t = cfg.tracking.as_ref().expect("a tracking config");
        Ok(match &cfg.optimizer {
            OptimizerConfig::GdWd { lr, .. } => Method::GdWd { lr: *lr },
            OptimizerConfig::ScalarRmsprop { .. } => Method::ScalarRmsprop { c_b: t.c_b },
            _ => bail!(
                "[tracking] runs GD+WD (optimizer.kind = \"gd_wd\", Thm 4.6) or Scalar RMSprop \
                 (optimizer.kind = \"scalar_rmsprop\", Cor. B.14); set optimizer.kind to one of them"
            ),
        })
    }
    /// The rate's column name.
    fn rate_name(&self) -> &'static str {
        match self {
            Method::GdWd { .. } => "eta_in",
            Method::ScalarRmsprop { .. } => "eta",
        }
    }
    fn rates<'c>(&self, t: &'c TrackingConfig) -> &'c [f64] {
        match self {
            Method::GdWd { .. } => &t.eta_in,
            Method::ScalarRmsprop { .. } => &t.eta,
        }
    }
    fn time(&self) -> FlowTime {
        match *self {
            Method::GdWd { .. } => FlowTime::GdWd,
            Method::ScalarRmsprop { c_b } => FlowTime::QuasiRmsprop { c_b },
        }
    }
    fn tau_per_step(&self, rate: f64) -> f64 {
        match self {
            Method::GdWd { .. } => rate,
            Method::ScalarRmsprop { .. } => rate * rate,
        }
    }
    fn sigma0(&self, t: &TrackingConfig, rate: f64) -> f64 {
        match self {
            Method::GdWd { .. } => t.sigma0_scale * rate.sqrt(),
            Method::ScalarRmsprop { .. } => t.sigma0_scale * rate,
        }
    }
    /// What σ0 is, in words, for summary.json.
    fn sigma0_rule(&self, t: &TrackingConfig) -> String {
        match self {
            Method::GdWd { .. } => format!("sigma0 = {}*sqrt(eta_in)", t.sigma0_scale),
            Method::ScalarRmsprop { .. } => format!("sigma0 = {}*eta", t.sigma0_scale),
        }
    }
    /// The optimizer of one run, started by the theorem's scheme.
    fn start(&self, zeta0: &[f64], sharpness0: f64, rate: f64, sigma0: f64, seed: u64) -> Box<dyn Optimizer> {
        match *self {
            Method::GdWd { lr } => {
                let wd = rate / lr;
                Box::new(GdWd::new(lr, wd, gd_wd_init(zeta0, sharpness0, lr, wd, sigma0, seed)))
            }
            Method::ScalarRmsprop { c_b } => {
                let (w0, v0) = scalar_rmsprop_init(zeta0, sharpness0, rate, sigma0, seed);
                Box::new(ScalarRmsprop::new(rate, 1.0 - c_b * rate * rate, v0, w0))
            }
        }
    }
}

/// Checks `[tracking]` against the rest of the config.
pub fn validate(cfg: &Config, t: &TrackingConfig) -> Result<()> {
    let method = Method::of(cfg)?;
    let (name, other) = match method {
        Method::GdWd { .. } => ("eta_in", "eta"),
        Method::ScalarRmsprop { .. } => ("eta", "eta_in"),
    };
    let rates = method.rates(t);
    check(!rates.is_empty(), || {
        format!("[tracking] needs tracking.{name} = [...], the learning rates to run ({})", cfg.optimizer_kind())
    })?;
    let others = if name == "eta" { &t.eta_in } else { &t.eta };
    check(others.is_empty(), || {
        format!("tracking.{other} does not apply to optimizer.kind = \"{}\"; use tracking.{name}", cfg.optimizer_kind())
    })?;
    positive("tracking.tau_end", t.tau_end)?;
    check(t.tau_end.is_finite(), || "tracking.tau_end must be finite".into())?;
    check(t.sigma0_scale >= 0.0 && t.sigma0_scale.is_finite(), || "tracking.sigma0_scale must be ≥ 0".into())?;
    check(!t.seeds.is_empty(), || "tracking.seeds is empty: give at least one seed".into())?;
    check(t.trace_points >= 1, || "tracking.trace_points must be at least 1".into())?;
    for &r in rates {
        positive(&format!("tracking.{name} entry"), r)?;
        match method {
            Method::GdWd { .. } => check(r < 0.25, || {
                format!("tracking.eta_in = {r}: the theorems need η_in = η̂λ̂ < 1/4 (Thm B.9); use smaller rates")
            })?,
            Method::ScalarRmsprop { c_b } => {
                positive("tracking.c_b", c_b)?;
                check(c_b * r * r < 1.0, || {
                    format!("tracking.eta = {r}: β = 1 − c_b·η² = {} must be in (0, 1)", 1.0 - c_b * r * r)
                })?
            }
        }
        let steps = t.tau_end / method.tau_per_step(r);
        check(steps <= MAX_STEPS, || {
            format!(
                "tracking.{name} = {r} with tau_end = {} is {steps:.3e} steps (at most {MAX_STEPS:e}); \
                 raise the rate or lower tau_end",
                t.tau_end
            )
        })?;
    }
    check_start_spec("tracking.zeta0", &t.zeta0)
}

/// A start near Γ for [`start_near_gamma`]: "eos_entry", "w0" or a `.npy`.
pub(crate) fn check_start_spec(key: &str, spec: &str) -> Result<()> {
    if !matches!(spec, "eos_entry" | "w0") && !spec.ends_with(".npy") {
        bail!("{key} = {spec:?}: expected \"eos_entry\", \"w0\" or a .npy file");
    }
    Ok(())
}

/// One problem's part of the experiment, ready to run.
struct Setup {
    label: String,
    cfg: Config,
    method: Method,
    problem: Box<dyn Problem>,
    zeta0: Vec<f64>,
    sharpness0: f64,
    zeta0_source: String,
    path: FlowPath,
}

/// Stops a run at its EoS entry and keeps w there.
struct EntryCapture {
    token: CancelToken,
    w: Option<(u64, Vec<f64>)>,
}

impl Observer for EntryCapture {
    fn on_snapshot(&mut self, step: u64, w: &[f64], eos_entry: bool) -> Result<(), ObserverError> {
        if eos_entry && self.w.is_none() {
            self.w = Some((step, w.to_vec()));
            self.token.cancel();
        }
        Ok(())
    }
}

/// The problem of `cfg` and the point near Γ that `spec` names — "w0", the
/// config's own run at its EoS entry ("eos_entry") or a `.npy` file —
/// projected onto Γ where the problem knows how (the retraction from a
/// point far from Γ may not converge); with where it came from.
pub(crate) fn start_near_gamma(
    label: &str,
    cfg: &Config,
    spec: &str,
    key: &str,
) -> Result<(Box<dyn Problem>, Vec<f64>, String)> {
    let prep = setup::prepare(cfg)?;
    let dim = prep.problem.dim();
    let (start, source) = match spec {
        "w0" => (prep.optimizer.params().to_vec(), "w0".to_string()),
        "eos_entry" => {
            let mut opt = prep.optimizer;
            let params =
                eosflow::run::RunParams { snapshot_at_eos_entry: true, log_every: cfg.run.steps, ..prep.params };
            let token = CancelToken::new();
            let mut cap = EntryCapture { token: token.clone(), w: None };
            Runner::for_problem(prep.problem.as_ref(), opt.as_mut())
                .params(params)
                .observer(&mut cap)
                .cancel(token)
                .run()
                .with_context(|| format!("{label}: the run to its EoS entry failed"))?;
            let Some((step, w)) = cap.w else {
                bail!(
                    "{label}: the config's run does not enter EoS within run.steps = {} (no EoS entry to start \
                     from); raise run.steps, or set {key} = \"w0\" or a .npy file",
                    cfg.run.steps
                );
            };
            (w, format!("eos_entry (step {step})"))
        }
        file => (crate::npy::read_vector(Path::new(file), Some(dim))?, file.to_string()),
    };
    let problem = prep.problem;
    let mut theta = start;
    if matches!(eosflow::manifold::ManifoldDomain::of(problem.as_ref()), Ok(eosflow::manifold::ManifoldDomain::Sphere))
    {
        eosflow::linalg::normalize(&mut theta);
    }
    let near = problem.project_onto_gamma(&theta).unwrap_or(theta);
    Ok((problem, near, source))
}

fn set_up(label: &str, cfg: &Config) -> Result<Setup> {
    let t = cfg.tracking.as_ref().expect("a tracking config");
    let method = Method::of(cfg)?;
    let (problem, near, source) = start_near_gamma(label, cfg, &t.zeta0, "tracking.zeta0")?;
    let fc = cfg.flow.clone().unwrap_or_default();
    let mut params = crate::flow::flow_params(&fc, method.time(), t.tau_end);
    // Every GD step reads the flow between its accepted points: a cubic
    // Hermite interpolant, whose error grows as h⁴ (with the error control
    // alone the factorisation's flow took steps of 1–2.5 in τ and the
    // interpolant strayed 0.2 from it between them).
    params.max_step = Some(fc.max_step.unwrap_or(t.tau_end / DENSE_STEPS));
    let (zeta0, sharpness0, path) = {
        let flow = Flow::new(problem.as_ref(), &near, params)
            .with_context(|| format!("{label}: the flow cannot start from ζ0 ({source})"))?;
        let (z, s) = (flow.point().zeta.clone(), flow.point().sharpness);
        let path = FlowPath::record(flow, t.tau_end).with_context(|| format!("{label}: the flow from ζ0 failed"))?;
        (z, s, path)
    };
    Ok(Setup {
        label: label.to_string(),
        cfg: cfg.clone(),
        method,
        problem,
        zeta0,
        sharpness0,
        zeta0_source: source,
        path,
    })
}

/// One finished run.
struct RunResult {
    setup: usize,
    rate: f64,
    seed: u64,
    tracking: Tracking,
}

/// Runs the experiments `jobs` (label, config with `[tracking]`) into `dir`.
pub fn run(
    name: &str,
    jobs: Vec<(String, Config)>,
    out: Option<PathBuf>,
    force: bool,
    token: &CancelToken,
) -> Result<ExitCode> {
    let methods: Vec<&str> = jobs.iter().map(|(_, c)| Method::of(c).map(|m| m.rate_name())).collect::<Result<_>>()?;
    if methods.iter().any(|m| *m != methods[0]) {
        bail!("{name}: all problems of one tracking experiment must use the same optimizer kind");
    }
    let dir = crate::multirun::validated_dir(name, &jobs, out, force)?;
    let started = std::time::Instant::now();
    let mut setups = Vec::new();
    for (label, cfg) in &jobs {
        let s = set_up(label, cfg)?;
        eprintln!(
            "{label}: ζ0 from {}, λ1(ζ0) = {:.6}, flow to τ = {} in {} steps (λ1 = {:.6} at the end{})",
            s.zeta0_source,
            s.sharpness0,
            s.path.tau_end(),
            s.path.points.len() - 1,
            s.path.points.last().map_or(f64::NAN, |p| p.sharpness),
            s.path.stop.map_or(String::new(), |st| format!(", stopped: {st:?}")),
        );
        setups.push(s);
    }
    let flow_s = started.elapsed().as_secs_f64();
    let mut tasks: Vec<(usize, f64, u64)> = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        let t = s.cfg.tracking.as_ref().unwrap();
        for &r in s.method.rates(t) {
            for &seed in &t.seeds {
                tasks.push((i, r, seed));
            }
        }
    }
    // Longest runs first, so the cores finish together.
    let steps_of = |&(i, r, _): &(usize, f64, u64)| {
        setups[i].cfg.tracking.as_ref().map_or(0.0, |t| t.tau_end) / setups[i].method.tau_per_step(r)
    };
    tasks.sort_by(|a, b| steps_of(b).total_cmp(&steps_of(a)));
    eprintln!(
        "running {} runs on {} threads into {}",
        tasks.len(),
        crate::multirun::workers_for(tasks.len()),
        dir.display()
    );
    let mut results: Vec<RunResult> = crate::multirun::parallel_map(&tasks, token, |&(i, rate, seed)| {
        let s = &setups[i];
        let t = s.cfg.tracking.as_ref().unwrap();
        let tps = s.method.tau_per_step(rate);
        let params =
            TrackingParams { steps: (t.tau_end / tps).round() as u64, tau_per_step: tps, trace_points: t.trace_points };
        let mut opt = s.method.start(&s.zeta0, s.sharpness0, rate, s.method.sigma0(t, rate), seed);
        let tracking = track(s.problem.as_ref(), opt.as_mut(), &s.path, &params);
        RunResult { setup: i, rate, seed, tracking }
    })
    .into_iter()
    .map(|(_, r)| r)
    .collect();
    results.sort_by(|a, b| (a.setup, -a.rate, a.seed).partial_cmp(&(b.setup, -b.rate, b.seed)).unwrap());
    let runs_s = started.elapsed().as_secs_f64() - flow_s;
    let rate_name = methods[0];
    write_tables(&dir, rate_name, &setups, &results)?;
    let summary = summarize(name, rate_name, &setups, &results, token.is_cancelled(), flow_s, runs_s);
    for s in &setups {
        write_problem_dir(&dir, s)?;
    }
    rundir::write_atomic(&dir.join("summary.json"), (serde_json::to_string_pretty(&summary)? + "\n").as_bytes())?;
    let output = &jobs[0].1.output;
    let figures = if output.figures {
        let data = figure_data(&setups, &results);
        crate::plot::plot_tracking(&dir, &figure_title(name, rate_name), rate_name, &data, &output.formats)?
    } else {
        Vec::new()
    };
    print_report(&summary, &dir, &figures);
    Ok(if token.is_cancelled() { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

fn write_tables(dir: &Path, rate_name: &str, setups: &[Setup], results: &[RunResult]) -> Result<()> {
    let path = dir.join("tracking.csv");
    let mut w = csv::Writer::from_path(&path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record([
        "problem",
        rate_name,
        "seed",
        "steps",
        "max_dist",
        "max_phi_dist",
        "final_dist",
        "final_phi_dist",
        "max_dist_step",
        "diverged_step",
    ])?;
    let f = |x: f64| if x.is_finite() { x.to_string() } else { String::new() };
    for r in results {
        let t = &r.tracking;
        w.write_record([
            setups[r.setup].label.clone(),
            r.rate.to_string(),
            r.seed.to_string(),
            t.steps.to_string(),
            f(t.max_dist),
            f(t.max_phi_dist),
            f(t.final_dist),
            f(t.final_phi_dist),
            t.max_dist_step.to_string(),
            t.diverged.map_or(String::new(), |s| s.to_string()),
        ])?;
    }
    w.flush()?;
    let path = dir.join("traces.csv");
    let mut w = csv::Writer::from_path(&path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record([
        "problem",
        rate_name,
        "seed",
        "step",
        "tau",
        "dist",
        "phi_dist",
        "flow_sharpness",
        "two_over_eff_lr",
        "loss",
    ])?;
    for r in results {
        for p in &r.tracking.trace {
            let TracePoint { step, tau, dist, phi_dist, flow_sharpness, two_over_eff_lr, loss } = p;
            w.write_record([
                setups[r.setup].label.clone(),
                r.rate.to_string(),
                r.seed.to_string(),
                step.to_string(),
                tau.to_string(),
                f(*dist),
                f(*phi_dist),
                f(*flow_sharpness),
                f(*two_over_eff_lr),
                f(*loss),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}

/// `<dir>/<label>/`: the resolved config, ζ0 and the flow's accepted points.
fn write_problem_dir(dir: &Path, s: &Setup) -> Result<()> {
    let sub = dir.join(&s.label);
    std::fs::create_dir_all(&sub).with_context(|| format!("cannot create {}", sub.display()))?;
    let versioned = Config { format_version: Some(rundir::RUN_FORMAT), ..s.cfg.clone() };
    rundir::write_atomic(&sub.join("config.toml"), toml::to_string(&versioned)?.as_bytes())?;
    rundir::write_atomic(&sub.join("zeta0.npy"), &crate::npy::encode_vector(&s.zeta0)?)?;
    let path = sub.join("flow.csv");
    let mut w = csv::Writer::from_path(&path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record(["tau", "sharpness", "grad_gamma_norm", "off_manifold"])?;
    for p in &s.path.points {
        w.write_record([
            p.tau.to_string(),
            p.sharpness.to_string(),
            p.grad_gamma_norm.to_string(),
            p.off_manifold.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The exponent p of `metric` ≈ c·rate^p: fitted per seed (its spread) and
/// through the per-rate medians.
fn fit(results: &[&RunResult], seeds: &[u64], metric: impl Fn(&Tracking) -> f64) -> serde_json::Value {
    let rows: Vec<(f64, u64, f64)> = results.iter().map(|r| (r.rate, r.seed, metric(&r.tracking))).collect();
    fit_rows(&rows, seeds)
}

/// The exponent p of value ≈ c·rate^p over (rate, seed, value) rows:
/// fitted per seed (its spread) and through the per-rate medians.
pub(crate) fn fit_rows(rows: &[(f64, u64, f64)], seeds: &[u64]) -> serde_json::Value {
    let per_seed: Vec<f64> = seeds
        .iter()
        .filter_map(|&seed| {
            let (x, y): (Vec<f64>, Vec<f64>) = rows.iter().filter(|r| r.1 == seed).map(|r| (r.0, r.2)).unzip();
            fit_exponent(&x, &y).map(|f| f.0)
        })
        .collect();
    let mut rates: Vec<f64> = rows.iter().map(|r| r.0).collect();
    rates.sort_by(|a, b| b.total_cmp(a));
    rates.dedup();
    let medians: Vec<f64> = rates
        .iter()
        .map(|&rate| median(&mut rows.iter().filter(|r| r.0 == rate).map(|r| r.2).collect::<Vec<_>>()))
        .collect();
    let of_medians = fit_exponent(&rates, &medians);
    let mut sorted = per_seed.clone();
    let med = median(&mut sorted);
    json!({
        "exponent_median_over_seeds": med,
        "exponent_min": sorted.first(),
        "exponent_max": sorted.last(),
        "exponent_per_seed": per_seed,
        "exponent_of_medians": of_medians.map(|f| f.0),
        "prefactor_of_medians": of_medians.map(|f| f.1),
        "rates": rates,
        "medians": medians,
    })
}

fn summarize(
    name: &str,
    rate_name: &str,
    setups: &[Setup],
    results: &[RunResult],
    interrupted: bool,
    flow_s: f64,
    runs_s: f64,
) -> serde_json::Value {
    let mut problems = serde_json::Map::new();
    for (i, s) in setups.iter().enumerate() {
        let t = s.cfg.tracking.as_ref().unwrap();
        let mine: Vec<&RunResult> = results.iter().filter(|r| r.setup == i).collect();
        let max_dist = fit(&mine, &t.seeds, |t| t.max_dist);
        let p = max_dist["exponent_median_over_seeds"].as_f64().unwrap_or(f64::NAN);
        // Thm 4.6 bounds the distance by O(η_in^{1/4}); Remark 4.7 puts the
        // oscillation at O(η_in^{1/2}) (in Thm B.13's η: η^{1/2} and η).
        let (bound, oscillation, why) = match s.method {
            Method::GdWd { .. } => (0.25, 0.5, "Remark 4.7"),
            Method::ScalarRmsprop { .. } => (0.5, 1.0, "x = eta*h with h = O(1), App. H.1"),
        };
        let follows = if !p.is_finite() {
            "no fit".to_string()
        } else if (p - oscillation).abs() < (p - bound).abs() {
            format!("{rate_name}^{oscillation} (the oscillation's rate, {why}), inside the bound {rate_name}^{bound}")
        } else {
            format!("{rate_name}^{bound} (the theorem's bound)")
        };
        let last = s.path.points.last();
        problems.insert(
            s.label.clone(),
            json!({
                "problem": s.cfg.problem.kind(),
                "optimizer": s.cfg.optimizer_kind(),
                "lr": match s.method { Method::GdWd { lr } => Some(lr), _ => None },
                "c_b": match s.method { Method::ScalarRmsprop { c_b } => Some(c_b), Method::GdWd { .. } => Some(2.0) },
                "zeta0": s.zeta0_source,
                "sharpness_zeta0": s.sharpness0,
                "sigma0": s.method.sigma0_rule(t),
                "tau_end": t.tau_end,
                "time_unit": s.method.time().unit(),
                "seeds": t.seeds,
                "runs": mine.len(),
                "diverged_runs": mine.iter().filter(|r| r.tracking.diverged.is_some()).count(),
                "flow": {
                    "steps": s.path.points.len() - 1,
                    "tau_reached": s.path.tau_end(),
                    "sharpness_end": last.map(|p| p.sharpness),
                    "stop": s.path.stop,
                },
                "theorem_bound_exponent": bound,
                "oscillation_exponent": oscillation,
                "max_dist": max_dist,
                "max_phi_dist": fit(&mine, &t.seeds, |t| t.max_phi_dist),
                "final_dist": fit(&mine, &t.seeds, |t| t.final_dist),
                "max_dist_follows": follows,
            }),
        );
    }
    json!({
        "name": name,
        "status": if interrupted { "interrupted" } else { "completed" },
        "rate": rate_name,
        "problems": problems,
        "eosflow": { "version": env!("CARGO_PKG_VERSION") },
        "timing": { "flows_s": flow_s, "runs_s": runs_s },
    })
}

/// What the figure needs.
pub struct TrackingFigureData {
    /// Per problem: label, (rate, seed, max_dist, max_phi_dist), and the
    /// traces of the first seed at each rate: (rate, [(τ, dist)]).
    pub problems: Vec<TrackingFigureProblem>,
}

pub struct TrackingFigureProblem {
    pub label: String,
    pub points: Vec<(f64, u64, f64, f64)>,
    pub traces: Vec<(f64, Vec<(f64, f64)>)>,
}

fn figure_title(name: &str, rate_name: &str) -> String {
    match rate_name {
        "eta_in" => format!("{name}: GD+WD from Thm 4.6's initialisation against its flow ζ(τ), eq. (3)"),
        _ => format!("{name}: Scalar RMSprop from Thm B.13's initialisation against its flow ζ(τ), eq. (8)"),
    }
}

/// The figure formats a finished experiment directory was drawn in (both
/// when it has none yet).
pub(crate) fn formats_in(dir: &Path, stem: &str) -> Vec<String> {
    let f: Vec<String> = ["png", "svg"]
        .iter()
        .filter(|e| dir.join("figures").join(format!("{stem}.{e}")).exists())
        .map(|e| e.to_string())
        .collect();
    if f.is_empty() { vec!["png".into(), "svg".into()] } else { f }
}

/// Reads a CSV into its rows as (column → text) maps.
pub(crate) fn read_rows(path: &Path) -> Result<Vec<std::collections::HashMap<String, String>>> {
    let mut rd = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = rd.headers()?.iter().map(String::from).collect();
    rd.records()
        .map(|r| {
            let r = r.with_context(|| format!("{}: a malformed row", path.display()))?;
            Ok(header.iter().cloned().zip(r.iter().map(String::from)).collect())
        })
        .collect()
}

/// `eosflow plot` on a tracking directory: figures/tracking.* again from
/// tracking.csv, traces.csv and summary.json.
pub fn replot(dir: &Path) -> Result<Vec<PathBuf>> {
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("summary.json"))
            .with_context(|| format!("{}: no summary.json", dir.display()))?,
    )?;
    let rate_name = summary["rate"].as_str().unwrap_or("eta_in").to_string();
    let name = summary["name"].as_str().unwrap_or("tracking").to_string();
    let table = read_rows(&dir.join("tracking.csv"))?;
    let traces = read_rows(&dir.join("traces.csv"))?;
    let num = |r: &std::collections::HashMap<String, String>, k: &str| {
        r.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN)
    };
    let mut labels: Vec<String> = Vec::new();
    for r in &table {
        if !labels.contains(&r["problem"]) {
            labels.push(r["problem"].clone());
        }
    }
    let problems = labels
        .iter()
        .map(|label| {
            let first_seed = summary["problems"][label]["seeds"][0].as_u64().unwrap_or(0).to_string();
            let mine = table.iter().filter(|r| &r["problem"] == label);
            let mut rates: Vec<f64> = mine.clone().map(|r| num(r, &rate_name)).collect();
            rates.dedup();
            TrackingFigureProblem {
                label: label.clone(),
                points: mine
                    .map(|r| (num(r, &rate_name), num(r, "seed") as u64, num(r, "max_dist"), num(r, "max_phi_dist")))
                    .collect(),
                traces: rates
                    .iter()
                    .map(|&rate| {
                        let pts = traces
                            .iter()
                            .filter(|t| &t["problem"] == label && t["seed"] == first_seed && num(t, &rate_name) == rate)
                            .map(|t| (num(t, "tau"), num(t, "dist")))
                            .collect();
                        (rate, pts)
                    })
                    .collect(),
            }
        })
        .collect();
    let formats = formats_in(dir, "tracking");
    crate::plot::plot_tracking(
        dir,
        &figure_title(&name, &rate_name),
        &rate_name,
        &TrackingFigureData { problems },
        &formats,
    )
}

fn figure_data(setups: &[Setup], results: &[RunResult]) -> TrackingFigureData {
    let problems = setups
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mine: Vec<&RunResult> = results.iter().filter(|r| r.setup == i).collect();
            let first_seed = s.cfg.tracking.as_ref().unwrap().seeds[0];
            TrackingFigureProblem {
                label: s.label.clone(),
                points: mine.iter().map(|r| (r.rate, r.seed, r.tracking.max_dist, r.tracking.max_phi_dist)).collect(),
                traces: mine
                    .iter()
                    .filter(|r| r.seed == first_seed)
                    .map(|r| (r.rate, r.tracking.trace.iter().map(|p| (p.tau, p.dist)).collect()))
                    .collect(),
            }
        })
        .collect();
    TrackingFigureData { problems }
}

fn print_report(summary: &serde_json::Value, dir: &Path, figures: &[PathBuf]) {
    let rate = summary["rate"].as_str().unwrap_or("rate");
    if let Some(ps) = summary["problems"].as_object() {
        for (label, p) in ps {
            println!(
                "{label}: ζ0 = {} (λ1 {:.4}), {}; {} runs to τ = {}",
                p["zeta0"].as_str().unwrap_or(""),
                p["sharpness_zeta0"].as_f64().unwrap_or(f64::NAN),
                p["sigma0"].as_str().unwrap_or(""),
                p["runs"],
                p["tau_end"],
            );
            let m = &p["max_dist"];
            if let (Some(rates), Some(meds)) = (m["rates"].as_array(), m["medians"].as_array()) {
                let it = if rate == "eta_in" { "θ_t" } else { "w_t" };
                println!("  {rate:>10}  median max ‖{it} − ζ(τ)‖   median max ‖φ_t − ζ(τ)‖");
                let phi = p["max_phi_dist"]["medians"].as_array();
                for (k, (r, d)) in rates.iter().zip(meds).enumerate() {
                    let pd = phi.and_then(|a| a.get(k)).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
                    println!(
                        "  {:>10.3e}  {:>24.4e}   {:>24.4e}",
                        r.as_f64().unwrap_or(f64::NAN),
                        d.as_f64().unwrap_or(f64::NAN),
                        pd
                    );
                }
            }
            println!(
                "  max_dist ∝ {rate}^p: p = {:.3} (median over seeds; {:.3} … {:.3}); follows {}",
                m["exponent_median_over_seeds"].as_f64().unwrap_or(f64::NAN),
                m["exponent_min"].as_f64().unwrap_or(f64::NAN),
                m["exponent_max"].as_f64().unwrap_or(f64::NAN),
                p["max_dist_follows"].as_str().unwrap_or(""),
            );
        }
    }
    println!("  table: {}", dir.join("tracking.csv").display());
    for f in figures {
        println!("  figure: {}", f.display());
    }
}
