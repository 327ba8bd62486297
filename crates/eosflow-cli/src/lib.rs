//! The `eosflow` program as a library: its command line ([`Cli`],
//! [`dispatch`]), and the run machinery behind it — configs and presets,
//! run directories, resume, figures — for the binary (`main.rs`) and the
//! Python bindings (`eosflow-py`), which call [`api`] instead of printing.

pub mod api;
mod bench;
mod bound;
pub mod config;
mod drift;
mod entry;
mod fault;
mod flow;
mod multirun;
mod npy;
pub mod plot;
pub mod presets;
pub mod problems;
pub mod ranks;
pub mod rundir;
pub mod setup;
mod slurm;
mod spectrum;
mod sweep;
mod ticks;
mod tracking;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use config::Config;
use eosflow::run::{CancelToken, Status};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "eosflow",
    version,
    about = "GD+WD on scale-invariant losses: effective LR, spherical sharpness, Edge of Stability",
    long_about = "eosflow trains with gradient descent + weight decay (or its spherical views) on \
                  scale-invariant problems, tracks the effective learning rate, the spherical sharpness \
                  (exact Hessian-vector products + Lanczos) and the Edge-of-Stability regime, and \
                  writes a run directory (config.toml, metrics.csv, sharpness.csv, summary.json, \
                  w_final.npy, figures/).\n\nExit codes: 0 completed, 1 error, 2 bad arguments, \
                  3 the run diverged, 4 an evaluation failed in the backend (status \"error\"), 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct OutArgs {
    /// Run directory [default: runs/<name>-<timestamp>]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite eosflow's files in a non-empty run directory
    #[arg(long)]
    force: bool,
    /// Override the number of steps (run.steps)
    #[arg(long)]
    steps: Option<u64>,
    /// Run one copy per seed in parallel (data and init seeds set to each):
    /// a range `0..20` (end excluded), `0..=19`, or a list `1,5,9`. Each run
    /// goes to DIR/seed-<s>/, and DIR/seeds.csv tabulates the results.
    #[arg(long, value_name = "SPEC")]
    seeds: Option<String>,
    /// Folder of the CIFAR-10 binary files (data_batch_1.bin … test_batch.bin)
    /// for dataset = "cifar10" (sets [data] cifar_dir)
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Override a config value, e.g. `--set problem.width=0.25` or
    /// `--set optimizer.wd=1e-4` (repeatable; applied after a preset's
    /// per-run settings)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    set: Vec<String>,
}

impl OutArgs {
    /// Applies --steps and --data to a config.
    fn apply(&self, cfg: &mut Config) -> Result<()> {
        if let Some(s) = self.steps {
            cfg.run.steps = s;
        }
        set_data_dir(cfg, self.data.as_deref())
    }
}

/// `--data DIR`: the CIFAR-10 folder, made absolute so the run directory's
/// config reruns from anywhere.
fn set_data_dir(cfg: &mut Config, dir: Option<&Path>) -> Result<()> {
    if let Some(d) = dir {
        cfg.data.cifar_dir = Some(std::path::absolute(d).with_context(|| format!("bad --data path {}", d.display()))?);
    }
    Ok(())
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the experiment described by a TOML config
    Run {
        /// The config file (see the README for every key)
        config: PathBuf,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Reproduce one of the paper's experiments (see --list)
    Reproduce {
        /// Preset name, e.g. toy3d
        #[arg(required_unless_present = "list")]
        preset: Option<String>,
        /// List the presets: paper figure, what it shows, expected run time
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        out: OutArgs,
    },
    /// Continue a run from its last checkpoint (after a crash, a kill or an
    /// interrupt); the files end up as if the run had never stopped
    Resume {
        /// The run directory
        run_dir: PathBuf,
        /// Extend the run to this many steps (run.steps)
        #[arg(long)]
        steps: Option<u64>,
    },
    /// Time one step, one HVP and one sharpness evaluation (JSON on stdout;
    /// bench/*.py run the Python references beside it)
    Bench {
        /// A preset name or a config file
        target: String,
        /// Steps run before timing (to reach a representative state)
        #[arg(long, default_value_t = 2000)]
        warmup: u64,
        /// Steps timed one by one
        #[arg(long, default_value_t = 2000)]
        timed: u64,
        /// Sharpness evaluations timed (cold and warm start each; 0 skips them)
        #[arg(long, default_value_t = 20)]
        evals: usize,
        /// Hessian-vector products timed
        #[arg(long, default_value_t = 200)]
        hvps: usize,
        /// Folder of the CIFAR-10 binary files (for the CIFAR presets)
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Override a config value (as for `run`), e.g. `--set problem.precision=f32`
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        set: Vec<String>,
    },
    /// Integrate the sharpness-reduction flow (eq. 3 / eq. 8) from a point of
    /// a finished run, into RUN_DIR/flow/ (flow.csv, summary.json, figures),
    /// compared with the run
    Flow {
        /// A run directory written by `eosflow run` or `eosflow reproduce`
        /// (or the directory of a [tracking] or [entry] experiment)
        run_dir: PathBuf,
        /// Where the flow starts: eos_entry, w0, a step number, or a .npy file
        /// (its projection onto Γ is ζ(0)) [default: the config's flow.start,
        /// else eos_entry]
        #[arg(long)]
        start: Option<String>,
        /// The flow's end time τ_max (GD+WD: τ = t·η_in) [default: the run's end]
        #[arg(long)]
        tau_max: Option<f64>,
        /// Override a config value, e.g. `--set flow.tol=1e-10`
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        set: Vec<String>,
    },
    /// The Hessian's spectrum at a point of a run or config: top-k and
    /// bottom-k eigenvalues, the trace (Hutch++ ± standard error), the
    /// spectral density (SLQ) and per-block values, into TARGET/spectrum/
    Spectrum {
        /// A run directory, a preset or a config file
        target: String,
        /// The point: final (a run's w_final.npy, the default for a run),
        /// w0 (the default for a config), a step of the run, or FILE.npy
        #[arg(long)]
        at: Option<String>,
        /// Top-k and bottom-k eigenpairs
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// SLQ probes
        #[arg(long, default_value_t = 10)]
        probes: usize,
        /// Lanczos steps per SLQ probe
        #[arg(long, default_value_t = 80)]
        steps: usize,
        /// Hutch++ operator applications (a multiple of 3)
        #[arg(long, default_value_t = 99)]
        trace_probes: usize,
        /// Blocks: all (the whole Hessian), si (the declared scale-invariant
        /// block), layers (every parameter tensor of a network)
        #[arg(long, default_value = "all")]
        blocks: String,
        /// Output directory [default: TARGET/spectrum/ for a run]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a config value (as for run)
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        set: Vec<String>,
    },
    /// Thm C.2's PAC-Bayes bound at a point of a run or config: each term
    /// (sharpness, third order, complexity), the minimising σ, and whether
    /// the number is a certified bound, not certified (ρ3 only estimated)
    /// or vacuous; into TARGET/bound.json
    Bound {
        /// A run directory, a preset or a config file
        target: String,
        /// The point, as for spectrum: final, w0, a step, or FILE.npy
        #[arg(long)]
        at: Option<String>,
        /// The confidence parameter δ
        #[arg(long, default_value_t = 0.05)]
        delta: f64,
        /// σ, in (0, 1/(2 + 2√(ln n/D))] [default: the minimising σ]
        #[arg(long)]
        sigma: Option<f64>,
        /// ρ3 = sup over the sphere of ‖∇³L_S‖₂, if known: certifies the bound
        /// [default: a lower estimate by sampling, which does not]
        #[arg(long)]
        rho3: Option<f64>,
        /// ℓ_max, the supremum of the per-example loss [default: the
        /// problem's, ∞ where it is unbounded or unknown]
        #[arg(long)]
        l_max: Option<f64>,
        /// Random points of the sphere for the ρ3 estimate (besides θ and θ0)
        #[arg(long, default_value_t = 4)]
        rho3_points: usize,
        /// Power-iteration starts per point for the ρ3 estimate
        #[arg(long, default_value_t = 2)]
        rho3_restarts: usize,
        /// Power iterations per start
        #[arg(long, default_value_t = 20)]
        rho3_iterations: usize,
        /// Output directory [default: TARGET for a run]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a config value (as for run)
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        set: Vec<String>,
    },
    /// Run a sweep: a base config or preset and a grid or list over config
    /// keys, one run per point into DIR/<run>/ (DIR/sweep.json the plan).
    /// Here in parallel (--local, the default) or as a Slurm job array
    /// (--slurm); started again, it skips finished runs and resumes the
    /// others from their checkpoints. Ends with DIR/runs.csv and the
    /// overlaid figure (--collect DIR redraws them)
    Sweep {
        /// A sweep file (TOML: `preset` or `config`, [set], [grid], [[runs]];
        /// see the README) or a preset name (its own runs)
        #[arg(required_unless_present = "collect")]
        sweep: Option<String>,
        /// Tabulate and draw the runs of the sweep directory DIR
        /// (runs.csv, figures/), saying which are missing
        #[arg(long, value_name = "DIR", conflicts_with_all = ["sweep", "slurm", "task", "list"])]
        collect: Option<PathBuf>,
        /// Sweep directory [default: runs/<sweep name>]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Restart every run (and replace another sweep's plan in DIR)
        #[arg(long)]
        force: bool,
        /// Override run.steps of every run
        #[arg(long)]
        steps: Option<u64>,
        /// Folder of the CIFAR-10 binary files (sets [data] cifar_dir)
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Override a config value of every run (after the sweep's own keys)
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        set: Vec<String>,
        /// Run the unfinished runs here, in parallel on the available cores
        /// (the default)
        #[arg(long, conflicts_with_all = ["slurm", "task"])]
        local: bool,
        /// Write a Slurm job array of the unfinished runs (DIR/slurm/array.sbatch;
        /// one task each, logs in DIR/slurm/logs/); --submit submits it
        #[arg(long, conflicts_with = "task")]
        slurm: bool,
        /// Run one run of the sweep, the task-th of DIR/sweep.json (what
        /// each array task runs): runs it, resumes it, or skips it if finished
        #[arg(long, value_name = "INDEX")]
        task: Option<usize>,
        /// List the runs, their settings and states; run nothing
        #[arg(long, conflicts_with_all = ["slurm", "task"])]
        list: bool,
        #[command(flatten)]
        slurm_args: slurm::SlurmArgs,
    },
    /// Regenerate the figures of a run directory from its CSV files
    Plot {
        /// A run directory written by `eosflow run` or `eosflow reproduce`
        /// (or the directory of a [tracking] or [entry] experiment)
        run_dir: PathBuf,
    },
}

/// eosflow parallelises across ghost batches (eosflow-nn) and across the runs
/// of a sweep; candle would also split every single op over all cores (gemm
/// through `RAYON_NUM_THREADS`, elementwise ops on a spinning pool sized by
/// `CANDLE_NUM_THREADS`). For eosflow's per-op sizes that costs more than it
/// gains (digits-mlp, 500 steps: 1.61 s with per-op threads on 2 cores, 1.26 s
/// without). So the global rayon pool gets the user's `RAYON_NUM_THREADS`
/// (default: all cores) and candle's per-op parallelism is set to
/// `EOSFLOW_CANDLE_THREADS` (default 1). Results do not depend on either.
pub fn configure_threads() {
    let var = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<usize>().ok()).filter(|&n| n > 0);
    let n = var("RAYON_NUM_THREADS").unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Fails only if a pool exists already, which cannot happen this early.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    let per_op = var("EOSFLOW_CANDLE_THREADS").unwrap_or(1).to_string();
    // SAFETY: called first in main, before any other thread exists.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", &per_op);
        std::env::set_var("CANDLE_NUM_THREADS", &per_op);
    }
}

/// A command line that names something that does not exist (a preset):
/// exit code 2, as clap's own argument errors.
#[derive(Debug)]
pub struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `--set KEY=VALUE`, checked when the command line is parsed (exit 2 for a
/// missing `=`); the value itself is checked against the config's schema.
pub fn parse_set(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => Ok(s.to_string()),
        _ => Err(format!("expected KEY=VALUE, e.g. --set problem.width=0.25 (got {s:?})")),
    }
}

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    // Under mpirun, only one network run is shared by the ranks; any other
    // command runs on rank 0 alone.
    let shareable = matches!(
        cli.cmd,
        Cmd::Run { .. } | Cmd::Reproduce { list: false, .. } | Cmd::Resume { .. } | Cmd::Bench { .. }
    );
    if ranks::launched_size() > 1 && !shareable && !ranks::solo() {
        return Ok(ExitCode::SUCCESS);
    }
    match cli.cmd {
        Cmd::Run { config, out } => {
            let cfg = config::load_with(&config, &out.set)?;
            execute(cfg, out)
        }
        Cmd::Reproduce { list: true, .. } => {
            println!("{:<14} {:<26} {:<24} {:<22} what it shows", "preset", "paper", "time here", "paper's steps");
            for p in presets::PRESETS {
                println!("{:<14} {:<26} {:<24} {:<22} {}", p.name, p.figure, p.expected_time, p.paper_steps, p.shows);
            }
            println!(
                "\nfig2 … fig18 read CIFAR-10 from the binary files you supply (--data DIR); their time is per step \
                 on the 2-core reference machine, so they are GPU-sized runs (README, \"CIFAR-10\")."
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reproduce { preset, out, .. } => {
            let name = preset.unwrap_or_default();
            let Some(p) = presets::find(&name) else {
                let names: Vec<&str> = presets::PRESETS.iter().map(|p| p.name).collect();
                let best = names.iter().min_by_key(|n| strsim::levenshtein(&name, n)).unwrap();
                return Err(UsageError(format!(
                    "unknown preset `{name}`: did you mean `{best}`? (`eosflow reproduce --list` lists them)"
                ))
                .into());
            };
            if !p.variants.is_empty() {
                if !alone_unless_shared(None, &format!("preset {name} is {} runs", p.variants.len())) {
                    return Ok(ExitCode::SUCCESS);
                }
                let mut jobs: Vec<(String, Config)> = Vec::new();
                for &(label, patch) in p.variants {
                    let mut cfg = p.config(Some((label, patch)), &out.set)?;
                    out.apply(&mut cfg)?;
                    cfg.name = format!("{}-{label}", p.name);
                    jobs.push((label.to_string(), cfg));
                }
                let token = CancelToken::new();
                install_signal_handler(token.clone());
                if jobs.iter().all(|(_, c)| c.entry.is_some()) {
                    for (label, c) in &mut jobs {
                        c.name = label.clone();
                    }
                    return entry::run(p.name, jobs, out.out.clone(), out.force, &token);
                }
                if jobs.iter().all(|(_, c)| c.tracking.is_some()) {
                    // A tracking experiment over several problems: one table.
                    for (label, c) in &mut jobs {
                        c.name = label.clone();
                    }
                    return tracking::run(p.name, jobs, out.out.clone(), out.force, &token);
                }
                return multirun::run_variants(p.name, jobs, out.out.clone(), out.force, &token);
            }
            execute(p.config(None, &out.set)?, out)
        }
        Cmd::Resume { run_dir, steps } => resume(&run_dir, steps),
        Cmd::Sweep { collect: Some(dir), .. } => {
            let c = sweep::collect(&dir)?;
            if !c.unfinished.is_empty() {
                eprintln!("(a partial sweep: run it again to finish it)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sweep { sweep, out, force, steps, data, set, slurm, task, list, slurm_args, .. } => {
            let src = sweep::SweepSource { target: sweep.unwrap_or_default(), sets: set, data, steps };
            let mode = match (task, slurm, list) {
                (Some(i), _, _) => sweep::Mode::Task(i),
                (None, true, _) => sweep::Mode::Slurm(slurm_args),
                (None, false, true) => sweep::Mode::List,
                (None, false, false) => sweep::Mode::Local,
            };
            sweep::command(src, out, force, mode)
        }
        Cmd::Bench { target, warmup, timed, evals, hvps, data, set } => {
            let mut cfg = match presets::find(&target) {
                Some(p) => p.config(None, &set)?,
                None => config::load_with(Path::new(&target), &set)?,
            };
            set_data_dir(&mut cfg, data.as_deref())?;
            if !alone_unless_shared(Some(&cfg), &format!("problem kind `{}`", cfg.problem.kind())) {
                return Ok(ExitCode::SUCCESS);
            }
            let json = bench::run(&cfg, warmup, timed, evals, hvps)?;
            if ranks::is_writer() {
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Flow { run_dir, start, tau_max, set } => {
            let mut cfg = load_run_config(&run_dir)?;
            if !set.is_empty() {
                cfg = config::load_text(&toml::to_string(&cfg)?, &run_dir.join("config.toml"), &set)?;
            }
            let mut fc = cfg.flow.clone().unwrap_or_default();
            if let Some(s) = start {
                match s.as_str() {
                    "eos_entry" => fc.start = config::FlowStart::EosEntry,
                    "w0" => fc.start = config::FlowStart::W0,
                    _ if s.parse::<u64>().is_ok() => {
                        fc.start = config::FlowStart::Step;
                        fc.step = s.parse().ok();
                    }
                    _ if s.ends_with(".npy") => {
                        fc.start = config::FlowStart::Npy;
                        fc.npy = Some(std::path::absolute(&s)?);
                    }
                    _ => bail!("--start {s}: expected eos_entry, w0, a step number or a .npy file"),
                }
            }
            if tau_max.is_some() {
                fc.tau_max = tau_max;
            }
            cfg.flow = Some(fc);
            cfg.validate()?;
            let outcome = flow::run_flow(&cfg, &run_dir)?;
            flow::print_outcome(&outcome);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Spectrum { target, at, k, probes, steps, trace_probes, blocks, out, set } => {
            let (cfg, run_dir) = resolve_target(&target, &set)?;
            let args = spectrum::SpectrumArgs { at, k, probes, steps, trace_probes, blocks, out };
            spectrum::run(&cfg, run_dir.as_deref(), &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bound { target, at, delta, sigma, rho3, l_max, rho3_points, rho3_restarts, rho3_iterations, out, set } => {
            let (cfg, run_dir) = resolve_target(&target, &set)?;
            let rho3_search = eosflow::pac_bayes::Rho3Params {
                restarts: rho3_restarts,
                iterations: rho3_iterations,
                random_points: rho3_points,
                seed: cfg.sharpness.seed,
            };
            let args = bound::BoundArgs { at, delta, sigma, rho3, l_max, rho3_search, out };
            bound::run(&cfg, run_dir.as_deref(), &args)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plot { run_dir } => {
            // Experiment directories ([tracking], [entry]) hold tables, not a run.
            let replot = if run_dir.join("tracking.csv").exists() {
                Some(tracking::replot(&run_dir)?)
            } else if run_dir.join("entry.csv").exists() {
                Some(entry::replot(&run_dir)?)
            } else {
                None
            };
            if let Some(figs) = replot {
                for f in figs {
                    println!("{}", f.display());
                }
                return Ok(ExitCode::SUCCESS);
            }
            // Directories of many runs (a multi-run preset, a sweep): every
            // run's figures and the combined one.
            let figs = if !run_dir.join("config.toml").exists() && run_dir.join("runs.csv").exists() {
                multirun::replot(&run_dir)?
            } else {
                replot_run(&run_dir)?
            };
            for f in figs {
                println!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Redraws one run directory's figures from its files.
fn replot_run(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let cfg = load_run_config(run_dir)?;
    let summary: Option<serde_json::Value> =
        std::fs::read_to_string(run_dir.join("summary.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let problem = summary.as_ref().and_then(|s| s.get("problem")).and_then(|p| p.as_object());
    let mut figs = plot::plot_run(
        run_dir,
        cfg.problem.get().figure(),
        &cfg.name,
        &cfg.output.formats,
        problem,
        cfg.run.dense_window.map(|[a, b]| (a, b)),
    )?;
    if let Some(d) = &cfg.drift {
        let a = drift::analyse(&cfg, d, run_dir)?;
        figs.extend(plot::plot_drift(run_dir, &cfg.name, &a, &cfg.output.formats)?);
    }
    Ok(figs)
}

fn problem_kind(cfg: &Config) -> &'static str {
    cfg.problem.kind()
}

fn problem_seed(cfg: &Config) -> u64 {
    cfg.problem.seed()
}

fn install_signal_handler(token: CancelToken) {
    // First SIGINT/SIGTERM: finish the current step, write the files, exit
    // 130. A second one exits at once.
    let _ = ctrlc::set_handler(move || {
        if token.is_cancelled() {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step and writing the run directory (again to exit now)");
        token.cancel();
    });
}

/// A command's TARGET: a run directory (its config.toml), a single-run
/// preset, or a config file; `--set` applied to each.
fn resolve_target(target: &str, set: &[String]) -> Result<(Config, Option<PathBuf>)> {
    let path = Path::new(target);
    Ok(if path.join("config.toml").exists() {
        let mut cfg = load_run_config(path)?;
        if !set.is_empty() {
            cfg = config::load_text(&toml::to_string(&cfg)?, &path.join("config.toml"), set)?;
        }
        (cfg, Some(path.to_path_buf()))
    } else if let Some(p) = presets::find(target).filter(|p| p.variants.is_empty()) {
        (p.config(None, set)?, None)
    } else {
        (config::load_with(path, set)?, None)
    })
}

pub(crate) fn default_dir(name: &str) -> PathBuf {
    Path::new("runs").join(format!("{}-{}", name, chrono::Local::now().format("%Y%m%d-%H%M%S")))
}

/// Under mpirun: whether this rank takes part. A single network run
/// (`cfg`) is shared by every rank; anything else (`what`) runs on rank 0
/// alone, which says so, while the other ranks return at once.
fn alone_unless_shared(cfg: Option<&Config>, what: &str) -> bool {
    let n = ranks::launched_size();
    if n == 1 || cfg.is_some_and(|c| c.problem.kind() == "nn") {
        return true;
    }
    let here = ranks::solo();
    if here {
        eprintln!(
            "note: {what}: it runs on rank 0 alone (ranks 1..{} idle); MPI shares the ghost batches of one network \
             run (kind = \"nn\"); for many runs use `eosflow sweep --slurm`",
            n - 1
        );
    }
    here
}

fn execute(mut cfg: Config, out: OutArgs) -> Result<ExitCode> {
    out.apply(&mut cfg)?;
    let many = cfg.entry.is_some() || cfg.tracking.is_some() || out.seeds.is_some();
    let what =
        if many { "an experiment of many runs".to_string() } else { format!("problem kind `{}`", cfg.problem.kind()) };
    if !alone_unless_shared(Some(&cfg).filter(|_| !many), &what) {
        return Ok(ExitCode::SUCCESS);
    }
    let token = CancelToken::new();
    install_signal_handler(token.clone());
    if cfg.entry.is_some() {
        if out.seeds.is_some() {
            bail!("--seeds does not apply to an [entry] config: it runs entry.seeds itself");
        }
        let label = cfg.problem.kind().to_string();
        return entry::run(&cfg.name.clone(), vec![(label, cfg)], out.out.clone(), out.force, &token);
    }
    if cfg.tracking.is_some() {
        if out.seeds.is_some() {
            bail!("--seeds does not apply to a [tracking] config: it runs tracking.seeds itself");
        }
        let label = cfg.problem.kind().to_string();
        return tracking::run(&cfg.name.clone(), vec![(label, cfg)], out.out.clone(), out.force, &token);
    }
    if let Some(spec) = &out.seeds {
        return multirun::run_sweep(cfg, spec, out.out.clone(), out.force, &token);
    }
    let dir = out.out.clone().unwrap_or_else(|| default_dir(&cfg.name));
    let api::RunOutcome { summary, figures, .. } = api::run(&cfg, &dir, out.force, &token, true, None)?;
    if !ranks::is_writer() {
        return Ok(exit_code(&summary.status));
    }
    print_summary(&cfg, &summary, &dir, &figures);
    if cfg.drift.is_some() {
        drift::print(&dir);
    }
    let flow_after = cfg.flow.as_ref().is_some_and(|f| f.run_after) && summary.status == Status::Completed;
    if flow_after && ranks::size() > 1 {
        println!("  the flow runs on one process: `eosflow flow {}`", dir.display());
    } else if flow_after {
        let outcome = flow::run_flow(&cfg, &dir)?;
        flow::print_outcome(&outcome);
    }
    Ok(exit_code(&summary.status))
}

/// The config of a run directory, refused when a newer eosflow wrote it
/// (format 0, before versions, reads as it is).
pub fn load_run_config(dir: &Path) -> Result<Config> {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} does not look like a run directory (no config.toml)", dir.display()))?;
    // The version first, so a newer format's unknown keys are explained as such.
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return config::load(&path).with_context(|| format!("{} does not look like a run directory", dir.display()));
    };
    let version = match table.get("format_version").and_then(|v| v.as_integer()) {
        Some(v) => u32::try_from(v).unwrap_or(u32::MAX),
        None => 0,
    };
    rundir::check_format(&path, version)?;
    if version < 2
        && let Some(toml::Value::Table(problem)) = table.get_mut("problem")
    {
        problems::migrate_format_1(problem);
    }
    config::load_text(&toml::to_string(&table)?, &path, &[])
        .with_context(|| format!("{} does not look like a run directory", dir.display()))
}

fn resume(dir: &Path, steps: Option<u64>) -> Result<ExitCode> {
    let plan = api::plan_resume(dir, steps)?;
    if !alone_unless_shared(Some(&plan.cfg), &format!("problem kind `{}`", plan.cfg.problem.kind())) {
        return Ok(ExitCode::SUCCESS);
    }
    let quiet = !ranks::is_writer();
    match &plan.from {
        _ if quiet => {}
        api::ResumeFrom::Completed { last } => {
            match steps {
                Some(s) => println!(
                    "{}: already completed at step {last}; --steps {s} does not extend it (pass more than {last})",
                    dir.display()
                ),
                None => println!("{}: already completed ({last} steps); pass --steps to extend it", dir.display()),
            }
            return Ok(ExitCode::SUCCESS);
        }
        api::ResumeFrom::Start => eprintln!(
            "{} has no checkpoint yet (stopped before its first one): starting it again from step 0, which gives \
             the same files as a run that never stopped",
            dir.display()
        ),
        api::ResumeFrom::Checkpoint(state, _) => eprintln!("resuming {} at step {}", dir.display(), state.next_step),
    }
    let token = CancelToken::new();
    install_signal_handler(token.clone());
    let cfg = plan.cfg.clone();
    let Some(done) = api::resume(plan, &token, true, None)? else {
        return Ok(ExitCode::SUCCESS);
    };
    if quiet {
        return Ok(exit_code(&done.summary.status));
    }
    print_summary(&cfg, &done.summary, dir, &done.figures);
    Ok(exit_code(&done.summary.status))
}

fn exit_code(status: &Status) -> ExitCode {
    match status {
        Status::Completed => ExitCode::SUCCESS,
        Status::Diverged { .. } => ExitCode::from(3),
        Status::Error { .. } => ExitCode::from(4),
        Status::Interrupted { .. } => ExitCode::from(130),
    }
}

/// Runs a prepared config into an existing, empty `dir`: config.toml, data/,
/// the CSVs, w_final.npy, figures and summary.json.
pub(crate) fn run_in_dir(
    cfg: &Config,
    mut prep: setup::Prepared,
    dir: &Path,
    token: &CancelToken,
    progress_bar: bool,
    resume: Option<(eosflow::run::RunState, rundir::CsvOffsets)>,
    extra: Option<&mut dyn eosflow::run::Observer>,
) -> Result<(eosflow::run::RunSummary, Vec<PathBuf>)> {
    // Under MPI, rank 0 writes the run directory; the other ranks compute
    // the same run beside it and write nothing.
    let writer = ranks::is_writer();
    if writer {
        api::write_config(dir, cfg)?;
    }
    if writer && resume.is_none() && !prep.data_files.is_empty() {
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        for (name, bytes) in &prep.data_files {
            rundir::write_atomic(&data_dir.join(name), bytes)?;
        }
    }

    let mut csv = match &resume {
        Some((_, offsets)) => rundir::CsvObserver::resuming(dir, cfg.sharpness.k, *offsets),
        None => rundir::CsvObserver::new(dir, cfg.sharpness.k),
    };
    if cfg.spectrum.is_some() {
        csv = csv.with_spectrum();
    }
    let mut progress = rundir::ProgressObserver::new(if progress_bar { cfg.run.steps } else { 0 }, progress_bar);
    let mut runner = eosflow::run::Runner::for_problem(prep.problem.as_ref(), prep.optimizer.as_mut());
    // The problem's tracker, wrapped by the lockstep flow and the RMS-drift
    // variables when the config asks for them.
    let problem = prep.problem.as_ref();
    let mut tracker: Option<Box<dyn eosflow::problems::Tracker>> = None;
    if let Some(f) = cfg.flow.as_ref().filter(|f| f.lockstep) {
        let params = flow::lockstep_params(cfg, f)?;
        tracker = Some(Box::new(eosflow::flow::Lockstep::new(problem.tracker(), problem, params)));
    }
    if let Some(d) = &cfg.drift {
        let inner = tracker.take().unwrap_or_else(|| problem.tracker());
        tracker = Some(Box::new(eosflow::drift::RmsDrift::new(inner, problem, drift::params(cfg, d)?)));
    }
    if let Some(t) = tracker {
        runner = runner.tracker(t);
    }
    let shared = ranks::size() > 1;
    let mut csv_or_abort = ranks::AbortOnFailure(&mut csv);
    let mut agreement = ranks::Agreement::default();
    let mut runner = runner.params(prep.params.clone()).cancel(token.clone());
    if writer {
        runner = runner.observer(if shared { &mut csv_or_abort } else { csv_or_abort.0 }).observer(&mut progress);
    }
    if shared {
        // Every rank stops after the same step, whichever rank a signal reached.
        runner = runner.observer(&mut agreement).agree_stop(ranks::any);
    }
    if let Some(o) = extra {
        runner = runner.observer(o);
    }
    if let Some((state, _)) = resume {
        runner = runner.resume(state);
    }
    let summary = runner.run()?;
    let kernels = prep.problem.kernels();
    if shared {
        // Lanczos and the optimizer run replicated on the reduced
        // gradients and HVPs: the ranks must agree bit for bit.
        if !ranks::same_on_all(&agreement.0) {
            bail!(
                "the {} ranks ended with different sharpness evaluations or w_final bits (rank {}): the run is not \
                 the single-process run; please report this",
                ranks::size(),
                ranks::rank()
            );
        }
        if !writer {
            return Ok((summary, Vec::new()));
        }
        eprintln!("all {} ranks agree bit for bit on every sharpness evaluation and on w_final", ranks::size());
    }

    // After a failed write (a full disk) the CSVs may end in a partial row:
    // no analysis or figures from them; summary.json (small) still says
    // what happened, and `resume` truncates the CSVs to the checkpoint.
    let output_failed = matches!(&summary.status, Status::Error { op, .. } if op == eosflow::run::OUTPUT_OP);
    let drift = match &cfg.drift {
        Some(d) if !output_failed => Some(drift::analyse(cfg, d, dir)?),
        _ => None,
    };
    let fig_start = std::time::Instant::now();
    let mut figures = if cfg.output.figures && !output_failed {
        plot::plot_run(
            dir,
            cfg.problem.get().figure(),
            &cfg.name,
            &cfg.output.formats,
            Some(&summary.problem),
            cfg.run.dense_window.map(|[a, b]| (a, b)),
        )?
    } else {
        Vec::new()
    };
    if let Some(a) = drift.as_ref().filter(|_| cfg.output.figures) {
        figures.extend(plot::plot_drift(dir, &cfg.name, a, &cfg.output.formats)?);
    }
    let fig_s = fig_start.elapsed().as_secs_f64();

    let meta = SummaryMeta {
        optimizer: prep.optimizer.name(),
        kernels,
        derived: std::mem::take(&mut prep.derived),
        figures_s: fig_s,
    };
    write_summary(dir, cfg, &summary, meta, &figures)?;
    Ok((summary, figures))
}

/// What summary.json says besides the runner's summary.
pub(crate) struct SummaryMeta {
    pub optimizer: String,
    /// The problem's kernels (`Problem::kernels`).
    pub kernels: String,
    /// Values derived from the config (`setup::Prepared::derived`).
    pub derived: serde_json::Map<String, serde_json::Value>,
    /// Seconds spent drawing the figures.
    pub figures_s: f64,
}

/// Writes `dir/summary.json`: format and build, the run's identity, the
/// runner's summary, the figures, and wall-clock times under `timing` only.
pub(crate) fn write_summary(
    dir: &Path,
    cfg: &Config,
    summary: &eosflow::run::RunSummary,
    meta: SummaryMeta,
    figures: &[PathBuf],
) -> Result<()> {
    let mut json = serde_json::to_value(summary)?;
    let obj = json.as_object_mut().unwrap();
    obj.remove("wall_time_s");
    let mut top = serde_json::Map::new();
    top.insert("format_version".into(), rundir::RUN_FORMAT.into());
    top.insert("eosflow_version".into(), env!("CARGO_PKG_VERSION").into());
    top.insert(
        "eosflow".into(),
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "git_commit": env!("EOSFLOW_GIT_COMMIT"),
            "cpu_features": cpu_features(),
            "kernels": meta.kernels,
        }),
    );
    top.insert("name".into(), cfg.name.clone().into());
    top.insert("problem_kind".into(), problem_kind(cfg).into());
    top.insert("optimizer".into(), meta.optimizer.into());
    top.insert("seeds".into(), serde_json::json!({ "problem": problem_seed(cfg), "lanczos": cfg.sharpness.seed }));
    top.insert("derived".into(), serde_json::Value::Object(meta.derived));
    top.extend(std::mem::take(obj));
    top.insert(
        "figures".into(),
        figures.iter().map(|f| f.strip_prefix(dir).unwrap_or(f).display().to_string()).collect(),
    );
    // Wall-clock fields live here and only here, so two runs of the same
    // config differ in this object alone.
    let mut timing = serde_json::json!({ "run_s": summary.wall_time_s, "figures_s": meta.figures_s });
    if let Some(mpi) = ranks::timing() {
        timing["mpi"] = mpi;
    }
    top.insert("timing".into(), timing);
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(top))? + "\n";
    rundir::write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    Ok(())
}

/// The SIMD features of this CPU that eosflow's kernels (and candle's gemm)
/// can dispatch to.
fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    for (name, on) in [
        ("sse4.2", std::arch::is_x86_feature_detected!("sse4.2")),
        ("avx", std::arch::is_x86_feature_detected!("avx")),
        ("avx2", std::arch::is_x86_feature_detected!("avx2")),
        ("fma", std::arch::is_x86_feature_detected!("fma")),
        ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
    ] {
        if on {
            f.push(name);
        }
    }
    f
}

fn print_summary(cfg: &Config, s: &eosflow::run::RunSummary, dir: &Path, figures: &[PathBuf]) {
    let status = match &s.status {
        Status::Completed => "completed".to_string(),
        Status::Diverged { step, reason } => format!("DIVERGED at step {step}: {reason}"),
        Status::Interrupted { step } => format!("interrupted after step {step}"),
        Status::Error { step, op, message } if op == eosflow::run::OUTPUT_OP => format!(
            "ERROR at step {step}, writing the output: {message}. The last checkpoint is intact: free the space \
             (or fix the file) and run `eosflow resume {}`",
            dir.display()
        ),
        Status::Error { step, op, message } => format!("ERROR at step {step} in the {op}: {message}"),
    };
    println!(
        "{}: {status}; {} steps in {:.3} s ({} gradients, {} HVPs in {} sharpness evaluations)",
        cfg.name, s.last_step, s.wall_time_s, s.gradient_evals, s.hvps, s.sharpness_evals
    );
    let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.6}"));
    println!(
        "  final loss {:.6e}; sharpness: start {}, max {}, end {}; final 2/eta~ {:.6}; EoS entry step {}",
        s.final_loss,
        opt(s.initial_sharpness),
        opt(s.max_sharpness),
        opt(s.final_sharpness),
        s.final_two_over_eff_lr,
        s.eos_entry_step.map_or("-".into(), |v| v.to_string())
    );
    if s.sharpness_unconverged > 0 {
        println!(
            "  warning: {} sharpness evaluations missed the Lanczos tolerance (see sharpness.csv)",
            s.sharpness_unconverged
        );
    }
    for (k, v) in &s.problem {
        println!("  {k}: {v}");
    }
    println!("  run directory: {}", dir.display());
    for f in figures {
        println!("  figure: {}", f.display());
    }
}
