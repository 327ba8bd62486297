//! `[entry]`: Theorem 4.3 as an experiment. GD+WD started in the stable
//! regime near θ* ∈ Γ (θ0 = Π(θ* + ξ), η̃0 = stable_fraction·2/λ1(θ*)) at
//! several intrinsic learning rates and seeds, each run to its EoS entry t1
//! (`eosflow::tracking::eos_entry`): `entry.csv`, `summary.json` (fitted
//! exponents of the entry gap and distances against η_in; t1 against the
//! bound (14) gives) and `figures/entry.*`.

use crate::config::{Config, OptimizerConfig, check, positive};
use crate::rundir;
use crate::tracking::{fit_rows, start_near_gamma};
use anyhow::{Context, Result, bail};
use eosflow::optim::GdWd;
use eosflow::run::CancelToken;
use eosflow::tracking::{Entry, eos_entry, gd_wd_init};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// `[entry]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EntryConfig {
    /// The intrinsic learning rates η_in = η̂λ̂ (η̂ = optimizer.lr).
    pub eta_in: Vec<f64>,
    /// Seeds of the initial perturbation ξ.
    #[serde(default = "five_seeds")]
    pub seeds: Vec<u64>,
    /// ‖θ0 − θ*‖ ≈ σ0 = sigma0_scale·√η_in (Thm 4.3: O(√η_in)).
    #[serde(default = "half")]
    pub sigma0_scale: f64,
    /// η̃0 = stable_fraction·2/λ1(θ*) (the theorem's η̃_t0 ≤ 2/ρ2 < 2/λ1(θ*)).
    #[serde(default = "half")]
    pub stable_fraction: f64,
    /// θ*: "eos_entry", "w0" or a `.npy` file, projected onto Γ.
    #[serde(default = "eos_entry_spec")]
    pub theta_star: String,
    /// Step budget per run, as a multiple of the weight-decay-only entry
    /// step ln(2/(λ1(θ*)η̃0))/(−2 ln(1 − η_in)).
    #[serde(default = "four")]
    pub max_steps_factor: f64,
}

fn five_seeds() -> Vec<u64> {
    (0..5).collect()
}
fn half() -> f64 {
    0.5
}
fn four() -> f64 {
    4.0
}
fn eos_entry_spec() -> String {
    "eos_entry".into()
}

impl EntryConfig {
    pub fn validate(&self, cfg: &Config) -> Result<()> {
        check(matches!(cfg.optimizer, OptimizerConfig::GdWd { .. }), || {
            "[entry] runs GD+WD (Thm 4.3): set optimizer.kind = \"gd_wd\"".into()
        })?;
        check(!self.eta_in.is_empty(), || "[entry] needs entry.eta_in = [...], the intrinsic learning rates".into())?;
        for &r in &self.eta_in {
            positive("entry.eta_in entry", r)?;
            check(r < 0.25, || format!("entry.eta_in = {r}: η_in = η̂λ̂ must be < 1/4"))?;
            check(2f64.ln() / r <= 1e8, || format!("entry.eta_in = {r} would take over 1e8 steps; raise it"))?;
        }
        check(!self.seeds.is_empty(), || "entry.seeds is empty: give at least one seed".into())?;
        check(self.sigma0_scale >= 0.0 && self.sigma0_scale.is_finite(), || "entry.sigma0_scale must be ≥ 0".into())?;
        check(self.stable_fraction > 0.0 && self.stable_fraction < 1.0, || {
            format!(
                "entry.stable_fraction = {} must be in (0, 1): the run starts in the stable regime",
                self.stable_fraction
            )
        })?;
        check(self.max_steps_factor >= 1.0, || "entry.max_steps_factor must be ≥ 1".into())?;
        crate::tracking::check_start_spec("entry.theta_star", &self.theta_star)
    }
}

struct Row {
    problem: usize,
    eta_in: f64,
    seed: u64,
    entry: Entry,
}

/// Runs the experiments `jobs` (label, config with `[entry]`) into `dir`.
pub fn run(
    name: &str,
    jobs: Vec<(String, Config)>,
    out: Option<PathBuf>,
    force: bool,
    token: &CancelToken,
) -> Result<ExitCode> {
    let dir = crate::multirun::validated_dir(name, &jobs, out, force)?;
    let started = std::time::Instant::now();
    // θ* and λ1(θ*) per problem.
    let mut problems = Vec::new();
    for (label, cfg) in &jobs {
        let e = cfg.entry.as_ref().expect("an entry config");
        let (problem, theta_star, source) = start_near_gamma(label, cfg, &e.theta_star, "entry.theta_star")?;
        if problem.project_onto_gamma(&theta_star).is_none() {
            bail!(
                "{label}: [entry] finds t1 from the exact projection φ_t onto Γ at every step, which problem.kind = \
                 \"{}\" does not have (linreg_bn, toy3d and factorization do)",
                cfg.problem.kind()
            );
        }
        let lanczos = { cfg.sharpness.lanczos() };
        let s = eosflow::sharpness::spherical_sharpness(problem.as_ref(), &theta_star, &lanczos, None)
            .with_context(|| format!("{label}: λ1(θ*)"))?;
        eprintln!("{label}: θ* from {source}, λ1(θ*) = {:.6}", s.spherical);
        problems.push((label.clone(), cfg.clone(), problem, theta_star, s.spherical, source));
    }
    let mut tasks = Vec::new();
    for (i, (_, cfg, ..)) in problems.iter().enumerate() {
        let e = cfg.entry.as_ref().unwrap();
        for &r in &e.eta_in {
            for &seed in &e.seeds {
                tasks.push((i, r, seed));
            }
        }
    }
    tasks.sort_by(|a, b| a.1.total_cmp(&b.1));
    eprintln!(
        "running {} runs on {} threads into {}",
        tasks.len(),
        crate::multirun::workers_for(tasks.len()),
        dir.display()
    );
    let mut rows: Vec<Row> = crate::multirun::parallel_map(&tasks, token, |&(i, eta_in, seed)| {
        let (_, cfg, problem, theta_star, lambda_star, _) = &problems[i];
        let e = cfg.entry.as_ref().unwrap();
        let OptimizerConfig::GdWd { lr, .. } = cfg.optimizer else { unreachable!("validated: gd_wd") };
        let wd = eta_in / lr;
        // η̃0 = stable_fraction·2/λ1(θ*): the scheme's norm for λ1/fraction.
        let w0 = gd_wd_init(theta_star, lambda_star / e.stable_fraction, lr, wd, e.sigma0_scale * eta_in.sqrt(), seed);
        let wd_only = (1.0 / e.stable_fraction).ln() / (-2.0 * (1.0 - eta_in).ln());
        let mut opt = GdWd::new(lr, wd, w0);
        let max_steps = (e.max_steps_factor * wd_only).ceil() as u64 + 10;
        let entry =
            eos_entry(problem.as_ref(), &mut opt, theta_star, *lambda_star, max_steps, &cfg.sharpness.lanczos());
        Row { problem: i, eta_in, seed, entry }
    })
    .into_iter()
    .map(|(_, r)| r)
    .collect();
    rows.sort_by(|a, b| (a.problem, -a.eta_in, a.seed).partial_cmp(&(b.problem, -b.eta_in, b.seed)).unwrap());
    let path = dir.join("entry.csv");
    let mut w = csv::Writer::from_path(&path).with_context(|| format!("cannot write {}", path.display()))?;
    w.write_record([
        "problem",
        "eta_in",
        "seed",
        "entry_step",
        "lower_bound_step",
        "wd_only_step",
        "gap",
        "dist",
        "phi_dist",
        "dist0",
        "phi_move",
        "loss_at_entry",
        "loss_rises",
    ])?;
    let f = |x: f64| if x.is_finite() { x.to_string() } else { String::new() };
    for r in &rows {
        let e = &r.entry;
        w.write_record([
            problems[r.problem].0.clone(),
            r.eta_in.to_string(),
            r.seed.to_string(),
            e.step.map_or(String::new(), |s| s.to_string()),
            e.lower_bound.map_or(String::new(), f),
            f(e.wd_only),
            f(e.gap),
            f(e.dist),
            f(e.phi_dist),
            f(e.dist0),
            f(e.phi_move),
            f(e.loss),
            e.loss_rises.to_string(),
        ])?;
    }
    w.flush()?;
    let mut out_problems = serde_json::Map::new();
    for (i, (label, cfg, _, _, lambda_star, source)) in problems.iter().enumerate() {
        let e = cfg.entry.as_ref().unwrap();
        let mine: Vec<&Row> = rows.iter().filter(|r| r.problem == i).collect();
        let rows_of = |m: &dyn Fn(&Entry) -> f64| -> Vec<(f64, u64, f64)> {
            mine.iter().map(|r| (r.eta_in, r.seed, m(&r.entry))).collect()
        };
        let entered: Vec<&&Row> = mine.iter().filter(|r| r.entry.step.is_some()).collect();
        let below_bound = entered
            .iter()
            .filter(|r| r.entry.lower_bound.is_some_and(|lb| (r.entry.step.unwrap() as f64) < lb.floor()))
            .count();
        // t1 beyond the weight-decay-only step, in the flow's time τ = t·η_in.
        let lag: Vec<(f64, u64, f64)> = entered
            .iter()
            .map(|r| (r.eta_in, r.seed, (r.entry.step.unwrap() as f64 - r.entry.wd_only) * r.eta_in))
            .collect();
        out_problems.insert(
            label.clone(),
            json!({
                "problem": cfg.problem.kind(),
                "theta_star": source,
                "sharpness_theta_star": lambda_star,
                "sigma0": format!("sigma0 = {}*sqrt(eta_in)", e.sigma0_scale),
                "initial_eff_lr": format!("{}*2/lambda1(theta*)", e.stable_fraction),
                "runs": mine.len(),
                "entered": entered.len(),
                "entries_below_the_lower_bound": below_bound,
                "runs_with_loss_rises_before_entry": mine.iter().filter(|r| r.entry.loss_rises > 0).count(),
                "gap": fit_rows(&rows_of(&|e| e.gap), &e.seeds),
                "dist": fit_rows(&rows_of(&|e| e.dist), &e.seeds),
                "phi_dist": fit_rows(&rows_of(&|e| e.phi_dist), &e.seeds),
                "dist0": fit_rows(&rows_of(&|e| e.dist0), &e.seeds),
                "phi_move": fit_rows(&rows_of(&|e| e.phi_move), &e.seeds),
                "entry_minus_lower_bound_steps": {
                    "min": entered.iter().filter_map(|r| r.entry.lower_bound.map(|lb| r.entry.step.unwrap() as f64 - lb)).fold(f64::INFINITY, f64::min),
                    "max": entered.iter().filter_map(|r| r.entry.lower_bound.map(|lb| r.entry.step.unwrap() as f64 - lb)).fold(f64::NEG_INFINITY, f64::max),
                },
                "lag_over_wd_only_in_tau": lag.iter().map(|r| r.2).fold(f64::NEG_INFINITY, f64::max),
                "theorem_exponent": 0.5,
            }),
        );
    }
    let summary = json!({
        "name": name,
        "status": if token.is_cancelled() { "interrupted" } else { "completed" },
        "problems": out_problems,
        "eosflow": { "version": env!("CARGO_PKG_VERSION") },
        "timing": { "total_s": started.elapsed().as_secs_f64() },
    });
    rundir::write_atomic(&dir.join("summary.json"), (serde_json::to_string_pretty(&summary)? + "\n").as_bytes())?;
    for (label, cfg, _, theta_star, ..) in &problems {
        let sub = dir.join(label);
        std::fs::create_dir_all(&sub).with_context(|| format!("cannot create {}", sub.display()))?;
        let versioned = Config { format_version: Some(rundir::RUN_FORMAT), ..cfg.clone() };
        rundir::write_atomic(&sub.join("config.toml"), toml::to_string(&versioned)?.as_bytes())?;
        rundir::write_atomic(&sub.join("theta_star.npy"), &crate::npy::encode_vector(theta_star)?)?;
    }
    let data: Vec<crate::plot::EntryFigureProblem> = problems
        .iter()
        .enumerate()
        .map(|(i, (label, ..))| crate::plot::EntryFigureProblem {
            label: label.clone(),
            rows: rows
                .iter()
                .filter(|r| r.problem == i)
                .map(|r| crate::plot::EntryFigureRow {
                    eta_in: r.eta_in,
                    gap: r.entry.gap,
                    dist: r.entry.dist,
                    phi_move: r.entry.phi_move,
                    step: r.entry.step,
                    lower_bound: r.entry.lower_bound,
                })
                .collect(),
        })
        .collect();
    let output = &jobs[0].1.output;
    let figures =
        if output.figures { crate::plot::plot_entry(&dir, name, &data, &output.formats)? } else { Vec::new() };
    print_report(&summary);
    println!("  table: {}", path.display());
    for f in figures {
        println!("  figure: {}", f.display());
    }
    Ok(if token.is_cancelled() { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// `eosflow plot` on an entry directory: figures/entry.* again from
/// entry.csv and summary.json.
pub fn replot(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("summary.json"))
            .with_context(|| format!("{}: no summary.json", dir.display()))?,
    )?;
    let name = summary["name"].as_str().unwrap_or("entry").to_string();
    let rows = crate::tracking::read_rows(&dir.join("entry.csv"))?;
    let num = |r: &std::collections::HashMap<String, String>, k: &str| r.get(k).and_then(|v| v.parse::<f64>().ok());
    let mut labels: Vec<String> = Vec::new();
    for r in &rows {
        if !labels.contains(&r["problem"]) {
            labels.push(r["problem"].clone());
        }
    }
    let data: Vec<crate::plot::EntryFigureProblem> = labels
        .iter()
        .map(|label| crate::plot::EntryFigureProblem {
            label: label.clone(),
            rows: rows
                .iter()
                .filter(|r| &r["problem"] == label)
                .map(|r| crate::plot::EntryFigureRow {
                    eta_in: num(r, "eta_in").unwrap_or(f64::NAN),
                    gap: num(r, "gap").unwrap_or(f64::NAN),
                    dist: num(r, "dist").unwrap_or(f64::NAN),
                    phi_move: num(r, "phi_move").unwrap_or(f64::NAN),
                    step: num(r, "entry_step").map(|s| s as u64),
                    lower_bound: num(r, "lower_bound_step"),
                })
                .collect(),
        })
        .collect();
    crate::plot::plot_entry(dir, &name, &data, &crate::tracking::formats_in(dir, "entry"))
}

fn print_report(summary: &serde_json::Value) {
    let Some(ps) = summary["problems"].as_object() else { return };
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    for (label, p) in ps {
        println!(
            "{label}: θ* = {} (λ1 {:.4}), η̃0 = {}, {}; {} of {} runs entered EoS, {} before the bound (14)",
            p["theta_star"].as_str().unwrap_or(""),
            num(&p["sharpness_theta_star"]),
            p["initial_eff_lr"].as_str().unwrap_or(""),
            p["sigma0"].as_str().unwrap_or(""),
            p["entered"],
            p["runs"],
            p["entries_below_the_lower_bound"],
        );
        println!("      eta_in   median |η̃_t1 − 2/λ1(θ*)|   median ‖θ_t1 − θ*‖   median ‖φ_t1 − θ*‖");
        let col = |k: &str| p[k]["medians"].as_array().cloned().unwrap_or_default();
        let (rates, gap, d, pd) = (col("gap"), col("gap"), col("dist"), col("phi_dist"));
        let rates = p["gap"]["rates"].as_array().cloned().unwrap_or(rates);
        for i in 0..rates.len() {
            let g = |v: &Vec<serde_json::Value>| v.get(i).map_or(f64::NAN, num);
            println!("  {:>10.3e}   {:>24.4e}   {:>18.4e}   {:>18.4e}", g(&rates), g(&gap), g(&d), g(&pd));
        }
        println!(
            "  ∝ η_in^p: gap p = {:.3}, ‖θ_t1 − θ*‖ p = {:.3}, ‖φ_t1 − θ*‖ p = {:.3}, ‖φ_t1 − φ_0‖ p = {:.3} (medians over \
             seeds; Thm 4.3: O(η_in^0.5))",
            num(&p["gap"]["exponent_median_over_seeds"]),
            num(&p["dist"]["exponent_median_over_seeds"]),
            num(&p["phi_dist"]["exponent_median_over_seeds"]),
            num(&p["phi_move"]["exponent_median_over_seeds"]),
        );
        println!(
            "  t1 − its lower bound (14): {:.3} … {:.3} steps; runs with a loss rise before t1: {}",
            num(&p["entry_minus_lower_bound_steps"]["min"]),
            num(&p["entry_minus_lower_bound_steps"]["max"]),
            p["runs_with_loss_rises_before_entry"],
        );
    }
}
