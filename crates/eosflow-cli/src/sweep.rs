//! `eosflow sweep`: a base config or preset and a grid or list over config
//! keys, expanded into named runs under one directory (`DIR/<run>/`, the
//! plan in `DIR/sweep.json`); run here in parallel (`--local`) or as a Slurm
//! job array ([`crate::slurm`]), one run per `--task`. Every run is
//! resumable: a sweep started again skips finished runs and resumes the
//! others from their checkpoints. `--collect` tabulates the runs
//! (`runs.csv`) and overlays them in one figure, on a partly finished sweep
//! too.
//!
//! A sweep file:
//!
//! ```toml
//! name = "fig6-sweep"        # default: the file's stem
//! preset = "fig6"            # or: config = "base.toml" (relative to this file)
//! [set]                      # every run
//! "run.steps" = 20000
//! [grid]                     # the product of these lists (keys in sorted order)
//! "problem.n_obs" = [400, 800, 1200, 1600]
//! # [[runs]]                 # or/and a list of runs, each a set of keys
//! # name = "small-lr"        # (optional; else named from its values)
//! # "optimizer.lr" = 0.01
//! ```
//!
//! A preset with runs of its own (fig14) contributes those runs, each
//! crossed with the grid and list. Run names are deterministic: the preset
//! run's label, then `<key><value>` per varied key (the key's last part,
//! the whole key where two would read alike), joined by `_`.

use crate::config::{self, Config};
use crate::multirun;
use crate::{api, presets, rundir, setup};
use anyhow::{Context, Result, bail};
use eosflow::run::{CancelToken, RunSummary, Status};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The sweep's plan in its directory: the runs, in task order.
pub const PLAN_FILE: &str = "sweep.json";
const PLAN_FORMAT: u64 = 1;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: Option<String>,
    preset: Option<String>,
    config: Option<PathBuf>,
    #[serde(default)]
    set: toml::Table,
    #[serde(default)]
    grid: toml::Table,
    #[serde(default)]
    runs: Vec<toml::Table>,
}

/// What defines a sweep on the command line: the sweep file or preset and
/// the options applied to every run (what each Slurm task is given again).
#[derive(Clone, Debug, Default)]
pub struct SweepSource {
    /// A sweep file or a preset name.
    pub target: String,
    /// `--set KEY=VALUE`, applied to every run after the sweep's own keys.
    pub sets: Vec<String>,
    /// `--data DIR` (CIFAR-10).
    pub data: Option<PathBuf>,
    /// `--steps`.
    pub steps: Option<u64>,
}

impl SweepSource {
    /// The arguments that give this source to `eosflow sweep` again, from
    /// any working directory.
    pub fn args(&self) -> Result<Vec<String>> {
        let path = Path::new(&self.target);
        let mut a =
            vec![if path.is_file() { std::path::absolute(path)?.display().to_string() } else { self.target.clone() }];
        for s in &self.sets {
            a.extend(["--set".to_string(), s.clone()]);
        }
        if let Some(d) = &self.data {
            a.extend(["--data".to_string(), std::path::absolute(d)?.display().to_string()]);
        }
        if let Some(s) = self.steps {
            a.extend(["--steps".to_string(), s.to_string()]);
        }
        Ok(a)
    }
}

/// One run of a sweep.
pub struct SweepRun {
    pub name: String,
    /// What sets it apart: the preset run's label (`preset_run`), then the
    /// keys it sets.
    pub settings: Settings,
    pub cfg: Config,
}

/// A sweep expanded into its runs.
pub struct Sweep {
    pub name: String,
    pub runs: Vec<SweepRun>,
}

/// Config keys and their values, in order.
type Settings = Vec<(String, toml::Value)>;

/// A table's leaves as dotted keys: `[grid] optimizer.wd = […]` and
/// `"optimizer.wd" = […]` are the same key.
fn flatten(prefix: &str, t: &toml::Table, out: &mut Settings) {
    for (k, v) in t {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(sub) => flatten(&key, sub, out),
            other => out.push((key, other.clone())),
        }
    }
}

fn flat(t: &toml::Table) -> Settings {
    let mut out = Vec::new();
    flatten("", t, &mut out);
    out
}

/// A value as it appears in a run name: `5e-5`, `0.1`, `400`, `60x60`.
fn value_label(v: &toml::Value) -> String {
    match v {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(x) if *x == 0.0 => "0".to_string(),
        toml::Value::Float(x) if x.abs() < 1e-3 || x.abs() >= 1e5 => format!("{x:e}"),
        toml::Value::Float(x) => format!("{x}"),
        toml::Value::String(s) => s.clone(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => a.iter().map(value_label).collect::<Vec<_>>().join("x"),
        other => other.to_string(),
    }
}

/// A key as it appears in a run name: its last part, or the whole key
/// (dots as dashes) where another varied key ends the same way.
fn key_label(key: &str, varied: &[String]) -> String {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let short = last(key);
    if varied.iter().any(|k| k != key && last(k) == short) { key.replace('.', "-") } else { short }
}

/// Keeps a run name a plain folder name on every file system.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '-' }).collect()
}

fn auto_name(settings: &[(String, toml::Value)], varied: &[String]) -> String {
    settings.iter().map(|(k, v)| format!("{}{}", key_label(k, varied), value_label(v))).collect::<Vec<_>>().join("_")
}

/// The base configs of a sweep: (label, TOML table, origin, the config
/// file where relative paths resolve).
type Base = (String, toml::Table, String, Option<PathBuf>);

fn bases(file: &SweepFile, file_dir: &Path) -> Result<Vec<Base>> {
    match (&file.preset, &file.config) {
        (Some(_), Some(_)) => bail!("a sweep has one base: give `preset` or `config`, not both"),
        (None, None) => bail!("a sweep needs its base: `preset = \"NAME\"` or `config = \"FILE.toml\"`"),
        (Some(name), None) => {
            let Some(p) = presets::find(name) else {
                let names: Vec<&str> = presets::PRESETS.iter().map(|p| p.name).collect();
                let best = names.iter().min_by_key(|n| strsim::levenshtein(name, n)).unwrap();
                bail!(
                    "preset = {name:?}: unknown preset; did you mean `{best}`? (`eosflow reproduce --list` lists them)"
                );
            };
            if p.variants.is_empty() {
                let (t, origin) = p.table(None)?;
                return Ok(vec![(String::new(), t, origin, None)]);
            }
            p.variants
                .iter()
                .map(|&(label, patch)| {
                    let (t, origin) = p.table(Some((label, patch)))?;
                    Ok((label.to_string(), t, origin, None))
                })
                .collect()
        }
        (None, Some(c)) => {
            let path = file_dir.join(c);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("config = {c:?}: cannot read {}", path.display()))?;
            let t: toml::Table =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: invalid config\n{e}", path.display()))?;
            Ok(vec![(String::new(), t, path.display().to_string(), Some(path))])
        }
    }
}

/// Expands a sweep file or preset into its runs (configs validated, names
/// unique).
pub fn expand(src: &SweepSource) -> Result<Sweep> {
    let path = Path::new(&src.target);
    let (file, file_dir, default_name) = if path.is_file() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        let file: SweepFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: invalid sweep file\n{e}", path.display()))?;
        let stem = path.file_stem().map_or("sweep".into(), |s| s.to_string_lossy().to_string());
        (file, path.parent().unwrap_or(Path::new(".")).to_path_buf(), stem)
    } else if presets::find(&src.target).is_some() {
        (SweepFile { preset: Some(src.target.clone()), ..Default::default() }, PathBuf::from("."), src.target.clone())
    } else {
        bail!(
            "{}: neither a sweep file nor a preset (a sweep file is TOML with `preset` or `config`, [set], [grid], \
             [[runs]]; `eosflow reproduce --list` lists the presets)",
            src.target
        );
    };
    let name = sanitize(file.name.as_deref().unwrap_or(&default_name));
    let bases = bases(&file, &file_dir)?;
    let common = flat(&file.set);

    let mut grid: Vec<(String, Vec<toml::Value>)> = Vec::new();
    for (key, v) in flat(&file.grid) {
        match v {
            toml::Value::Array(values) if !values.is_empty() => grid.push((key, values)),
            _ => bail!("grid.{key}: expected a non-empty list of values, e.g. \"{key}\" = [0.0, 1e-4]"),
        }
    }
    let mut listed: Vec<(Option<String>, Settings)> = Vec::new();
    for (i, r) in file.runs.iter().enumerate() {
        let mut r = r.clone();
        let name = match r.remove("name") {
            Some(toml::Value::String(s)) => Some(sanitize(&s)),
            Some(other) => bail!("runs[{i}].name: expected a string, got {other}"),
            None => None,
        };
        listed.push((name, flat(&r)));
    }
    if listed.is_empty() {
        listed.push((None, Vec::new()));
    }
    let mut varied: Vec<String> = grid.iter().map(|(k, _)| k.clone()).collect();
    for (_, s) in &listed {
        varied.extend(s.iter().map(|(k, _)| k.clone()));
    }

    // The grid's product, the first key slowest.
    let mut combos: Vec<Settings> = vec![Vec::new()];
    for (key, values) in &grid {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }

    let mut runs = Vec::new();
    for (label, table, origin, cfg_path) in &bases {
        for (run_name, listed_settings) in &listed {
            for combo in &combos {
                let mut parts: Vec<String> = Vec::new();
                if !label.is_empty() {
                    parts.push(label.clone());
                }
                match run_name {
                    Some(n) => parts.push(n.clone()),
                    None if !listed_settings.is_empty() => parts.push(auto_name(listed_settings, &varied)),
                    None => {}
                }
                if !combo.is_empty() {
                    parts.push(auto_name(combo, &varied));
                }
                let run = if parts.is_empty() { name.clone() } else { sanitize(&parts.join("_")) };
                let mut t = table.clone();
                let mut settings: Settings = Vec::new();
                if !label.is_empty() {
                    settings.push(("preset_run".into(), toml::Value::String(label.clone())));
                }
                for (k, v) in common.iter().chain(listed_settings).chain(combo) {
                    config::set_value(&mut t, k, v.clone()).with_context(|| format!("sweep run {run}: {k}"))?;
                }
                settings.extend(listed_settings.iter().chain(combo).cloned());
                config::apply_sets(&mut t, &src.sets)?;
                let text = toml::to_string(&t)?;
                let what = format!("{origin}, sweep run {run}");
                let mut cfg = match cfg_path {
                    Some(p) => config::load_text(&text, p, &[]).with_context(|| format!("sweep run {run}"))?,
                    None => config::parse(&text, &what)?,
                };
                if let Some(s) = src.steps {
                    cfg.run.steps = s;
                }
                crate::set_data_dir(&mut cfg, src.data.as_deref())?;
                cfg.name = format!("{name}-{run}");
                cfg.validate().with_context(|| format!("sweep run {run}"))?;
                cfg.data.check_inputs().with_context(|| format!("sweep run {run}"))?;
                if cfg.entry.is_some() || cfg.tracking.is_some() {
                    bail!(
                        "sweep run {run}: an [entry] or [tracking] config is many runs itself; sweep its base instead"
                    );
                }
                runs.push(SweepRun { name: run, settings, cfg });
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &runs {
        if !seen.insert(r.name.as_str()) {
            bail!(
                "two runs of the sweep are both named `{}`: give the [[runs]] entries a `name`, or vary other keys",
                r.name
            );
        }
    }
    Ok(Sweep { name, runs })
}

impl Sweep {
    fn plan_json(&self, source: &str) -> Result<serde_json::Value> {
        let runs: Vec<serde_json::Value> = self
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let settings: serde_json::Map<String, serde_json::Value> =
                    r.settings.iter().map(|(k, v)| Ok((k.clone(), serde_json::to_value(v)?))).collect::<Result<_>>()?;
                Ok(serde_json::json!({ "task": i, "name": r.name, "settings": settings }))
            })
            .collect::<Result<_>>()?;
        Ok(serde_json::json!({ "format_version": PLAN_FORMAT, "name": self.name, "source": source, "runs": runs }))
    }

    /// The default sweep directory, `runs/<name>` (no timestamp: the same
    /// command finds its sweep again and continues it).
    pub fn default_dir(&self) -> PathBuf {
        Path::new("runs").join(&self.name)
    }
}

/// The plan of a sweep directory.
struct Plan {
    name: String,
    runs: Vec<String>,
    json: serde_json::Value,
}

fn read_plan(dir: &Path) -> Result<Plan> {
    let path = dir.join(PLAN_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} does not look like a sweep directory (no {PLAN_FILE})", dir.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let version = json["format_version"].as_u64().unwrap_or(0);
    if version > PLAN_FORMAT {
        bail!(
            "{} has format {version}, newer than this eosflow reads ({PLAN_FORMAT}): upgrade eosflow",
            path.display()
        );
    }
    let runs: Option<Vec<String>> =
        json["runs"].as_array().and_then(|a| a.iter().map(|r| r["name"].as_str().map(String::from)).collect());
    let Some(runs) = runs else { bail!("{}: no list of runs (\"runs\": [{{\"name\": …}}])", path.display()) };
    let name = json["name"].as_str().unwrap_or("sweep").to_string();
    Ok(Plan { name, runs, json })
}

/// Creates the sweep directory or checks that it holds this sweep, and
/// writes the plan.
fn prepare_dir(dir: &Path, sweep: &Sweep, source: &str, force: bool) -> Result<()> {
    let plan = sweep.plan_json(source)?;
    if dir.join(PLAN_FILE).exists() {
        let old = read_plan(dir)?;
        if old.json["runs"] != plan["runs"] && !force {
            bail!(
                "{} holds another sweep (runs {}; this one: {}): choose another --out, or pass --force to replace its \
                 plan (runs of the same name are then restarted)",
                dir.display(),
                old.runs.join(", "),
                sweep.runs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        if old.json == plan {
            return Ok(());
        }
    } else if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false) && !force {
        bail!("{} is not empty and holds no {PLAN_FILE}: choose another --out (or pass --force)", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create sweep directory {}", dir.display()))?;
    rundir::write_atomic(&dir.join(PLAN_FILE), (serde_json::to_string_pretty(&plan)? + "\n").as_bytes())
}

/// Where one run of a sweep stands.
pub enum RunState {
    /// Not started (no config.toml yet).
    Fresh,
    /// Completed, or diverged (which a rerun would repeat): nothing to do.
    Finished(Box<RunSummary>),
    /// Started and stopped (killed, interrupted, preempted, failed):
    /// resumable from its last checkpoint.
    Unfinished,
}

/// Reads a run directory's summary.json, if it has one.
fn read_summary(dir: &Path) -> Option<RunSummary> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn without_version(cfg: &Config) -> Result<String> {
    api::config_to_toml(&Config { format_version: None, ..cfg.clone() })
}

/// The state of run `run` in `dir/<run>/`, refused where that directory
/// holds a run of another config.
pub fn run_state(dir: &Path, run: &SweepRun) -> Result<RunState> {
    let sub = dir.join(&run.name);
    if !sub.join("config.toml").exists() {
        return Ok(RunState::Fresh);
    }
    let there = without_version(&crate::load_run_config(&sub)?)?;
    let here = without_version(&run.cfg)?;
    if there != here {
        let diff = there
            .lines()
            .zip(here.lines())
            .find(|(a, b)| a != b)
            .map_or_else(String::new, |(a, b)| format!(" (`{a}` there, `{b}` in this sweep)"));
        bail!(
            "{} holds a run of another config{diff}: pass --force to restart it, or give the sweep another --out",
            sub.display()
        );
    }
    Ok(match read_summary(&sub) {
        Some(s) if s.status == Status::Completed && s.last_step >= run.cfg.run.steps => RunState::Finished(Box::new(s)),
        Some(s) if matches!(s.status, Status::Diverged { .. }) => RunState::Finished(Box::new(s)),
        _ => RunState::Unfinished,
    })
}

/// What one task did.
pub struct TaskOutcome {
    pub summary: RunSummary,
    /// "ran", "resumed at step t", "restarted", "finished already".
    pub action: String,
}

impl TaskOutcome {
    /// What the task did and how the run stands: "ran", "resumed at step
    /// 2000; interrupted after step 5909 (resumable)", …
    pub fn describe(&self) -> String {
        match &self.summary.status {
            Status::Completed => self.action.clone(),
            Status::Interrupted { step } => format!("{}; interrupted after step {step} (resumable)", self.action),
            Status::Diverged { step, reason } => format!("{}; diverged at step {step}: {reason}", self.action),
            Status::Error { step, op, message } => {
                format!("{}; error at step {step} in the {op}: {message} (resumable)", self.action)
            }
        }
    }
}

/// Runs (or resumes, or skips) one run of the sweep into `dir/<run>/`.
pub fn run_task(dir: &Path, run: &SweepRun, force: bool, token: &CancelToken) -> Result<TaskOutcome> {
    let sub = dir.join(&run.name);
    let state = if force { RunState::Fresh } else { run_state(dir, run)? };
    match state {
        RunState::Finished(s) => Ok(TaskOutcome { summary: *s, action: "finished already".into() }),
        RunState::Fresh => {
            let prep = setup::prepare(&run.cfg)?;
            rundir::create(&sub, true)?;
            let (summary, _) = crate::run_in_dir(&run.cfg, prep, &sub, token, false, None, None)?;
            Ok(TaskOutcome { summary, action: "ran".into() })
        }
        RunState::Unfinished => {
            let plan = api::plan_resume(&sub, None)?;
            let action = match &plan.from {
                api::ResumeFrom::Completed { .. } => "finished already".to_string(),
                api::ResumeFrom::Start => "restarted (no checkpoint yet)".to_string(),
                api::ResumeFrom::Checkpoint(state, _) => format!("resumed at step {}", state.next_step),
            };
            match api::resume(plan, token, false, None)? {
                Some(done) => Ok(TaskOutcome { summary: done.summary, action }),
                None => Ok(TaskOutcome {
                    summary: read_summary(&sub)
                        .with_context(|| format!("{}: no readable summary.json", sub.display()))?,
                    action,
                }),
            }
        }
    }
}

/// The sweep's runs not finished yet (all of them with `force`).
fn pending(dir: &Path, sweep: &Sweep, force: bool) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for (i, r) in sweep.runs.iter().enumerate() {
        if force || !matches!(run_state(dir, r)?, RunState::Finished(_)) {
            out.push(i);
        }
    }
    Ok(out)
}

/// What `eosflow sweep` was asked to do.
pub enum Mode {
    /// Every unfinished run here, in parallel.
    Local,
    /// One run: task `i` of the plan (a Slurm array task).
    Task(usize),
    /// A Slurm job array of the unfinished runs.
    Slurm(crate::slurm::SlurmArgs),
    /// The runs and their states, nothing run.
    List,
}

pub fn command(src: SweepSource, out: Option<PathBuf>, force: bool, mode: Mode) -> Result<ExitCode> {
    let sweep = expand(&src)?;
    let dir = out.unwrap_or_else(|| sweep.default_dir());
    let source = src.args()?.join(" ");
    match mode {
        Mode::List => {
            println!("sweep {}: {} runs into {}", sweep.name, sweep.runs.len(), dir.display());
            for (i, r) in sweep.runs.iter().enumerate() {
                let state = match run_state(&dir, r) {
                    Ok(RunState::Fresh) => "not started".to_string(),
                    Ok(RunState::Finished(s)) => multirun::status_cell(&s.status),
                    Ok(RunState::Unfinished) => "unfinished (resumable)".to_string(),
                    Err(e) => format!("error: {e:#}"),
                };
                let settings: Vec<String> = r.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{i:>4}  {:<28} {:<24} {}", r.name, state, settings.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Mode::Task(i) => {
            let Some(run) = sweep.runs.get(i) else {
                bail!("--task {i}: the sweep has tasks 0..={} ({} runs)", sweep.runs.len() - 1, sweep.runs.len());
            };
            if !dir.join(PLAN_FILE).exists() {
                prepare_dir(&dir, &sweep, &source, false)?;
            } else if read_plan(&dir)?.runs.get(i) != Some(&run.name) {
                bail!(
                    "--task {i}: {} plans another sweep than this command expands (its task {i} is not `{}`); \
                     submit the sweep again",
                    dir.join(PLAN_FILE).display(),
                    run.name
                );
            }
            let token = CancelToken::new();
            crate::install_signal_handler(token.clone());
            eprintln!(
                "eosflow sweep {}: task {i} of {}, run {} into {} ({})",
                sweep.name,
                sweep.runs.len(),
                run.name,
                dir.join(&run.name).display(),
                chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
            );
            let done = run_task(&dir, run, force, &token)?;
            eprintln!("{}: {}", run.name, done.describe());
            println!("{}", run.cfg.problem.get().variant_line(&run.name, &done.summary));
            Ok(crate::exit_code(&done.summary.status))
        }
        Mode::Local => {
            prepare_dir(&dir, &sweep, &source, force)?;
            let todo = pending(&dir, &sweep, force)?;
            eprintln!(
                "sweep {}: {} runs, {} finished already; running {} on {} threads into {}",
                sweep.name,
                sweep.runs.len(),
                sweep.runs.len() - todo.len(),
                todo.len(),
                multirun::workers_for(todo.len()),
                dir.display()
            );
            let token = CancelToken::new();
            crate::install_signal_handler(token.clone());
            let results = multirun::parallel_map(&todo, &token, |&i| {
                run_task(&dir, &sweep.runs[i], force, &token).map_err(|e| format!("{e:#}"))
            });
            let mut failed = 0;
            for (k, r) in &results {
                let run = &sweep.runs[todo[*k]];
                match r {
                    Ok(o) => eprintln!("{}: {}", run.name, o.describe()),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: error: {e}", run.name);
                    }
                }
            }
            let c = collect(&dir)?;
            if failed > 0 {
                bail!("{failed} of {} runs failed (see the messages above)", todo.len());
            }
            if token.is_cancelled() {
                return Ok(ExitCode::from(130));
            }
            if !c.unfinished.is_empty() {
                bail!("{} runs did not finish: {}", c.unfinished.len(), c.unfinished.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Mode::Slurm(args) => {
            prepare_dir(&dir, &sweep, &source, force)?;
            let todo = pending(&dir, &sweep, force)?;
            if force {
                for &i in &todo {
                    rundir::create(&dir.join(&sweep.runs[i].name), true)?;
                }
            }
            if todo.is_empty() {
                println!("sweep {}: all {} runs finished; nothing to submit", sweep.name, sweep.runs.len());
                collect(&dir)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut task = vec![std::env::current_exe()?.display().to_string(), "sweep".into()];
            task.extend(src.args()?);
            task.extend(["--out".into(), std::path::absolute(&dir)?.display().to_string()]);
            let script = crate::slurm::write_script(&dir, &sweep.name, &todo, &args, &task)?;
            println!(
                "sweep {}: {} runs, {} finished already; job array of {} tasks: {}",
                sweep.name,
                sweep.runs.len(),
                sweep.runs.len() - todo.len(),
                todo.len(),
                script.display()
            );
            if !args.submit {
                println!("  submit it with: sbatch {}", script.display());
                return Ok(ExitCode::SUCCESS);
            }
            let job = crate::slurm::submit(&script)?;
            println!("  submitted job {job} (logs: {})", dir.join(crate::slurm::LOG_DIR).display());
            if !args.wait {
                println!("  when it has run: eosflow sweep --collect {}", dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            crate::slurm::wait(&job, &args)?;
            // Slurm's COMPLETED is not the run's: each run directory says
            // whether its run finished.
            let mut unfinished = Vec::new();
            for &i in &todo {
                let r = &sweep.runs[i];
                if !matches!(run_state(&dir, r)?, RunState::Finished(_)) {
                    unfinished.push(format!("{} (log {})", r.name, crate::slurm::log_path(&dir, i).display()));
                }
            }
            collect(&dir)?;
            if !unfinished.is_empty() {
                bail!(
                    "job {job} ended with {} runs unfinished: {}; submit the sweep again to resume them",
                    unfinished.len(),
                    unfinished.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What [`collect`] found.
pub struct Collected {
    /// Runs without a finished summary (not started, stopped, interrupted).
    pub unfinished: Vec<String>,
}

/// `eosflow sweep --collect DIR`: `runs.csv` (one row per planned run,
/// `missing` where there is no summary yet) and the overlaid figure of the
/// runs that have one; prints each run's line and which are missing.
pub fn collect(dir: &Path) -> Result<Collected> {
    let plan = read_plan(dir)?;
    let mut summaries: Vec<(String, Option<(RunSummary, Config)>)> = Vec::new();
    for name in &plan.runs {
        let sub = dir.join(name);
        let found = match read_summary(&sub) {
            Some(s) => Some((s, crate::load_run_config(&sub)?)),
            None => None,
        };
        summaries.push((name.clone(), found));
    }
    let rows: Vec<(String, Result<&RunSummary, &str>)> =
        summaries.iter().map(|(n, f)| (n.clone(), f.as_ref().map(|(s, _)| s).ok_or("missing"))).collect();
    let table = dir.join("runs.csv");
    multirun::write_table(&table, "run", &rows)?;

    let mut unfinished = Vec::new();
    let mut drawn: Vec<(String, &Config)> = Vec::new();
    for (name, found) in &summaries {
        match found {
            Some((s, c)) => {
                println!("{}", c.problem.get().variant_line(name, s));
                let finished = s.status == Status::Completed || matches!(s.status, Status::Diverged { .. });
                if !finished {
                    println!("  {name} is {}: not finished", multirun::status_cell(&s.status));
                    unfinished.push(name.clone());
                }
                // A failed write can leave a partial last row: not drawn.
                if !matches!(s.status, Status::Error { .. }) {
                    drawn.push((name.clone(), c));
                }
            }
            None => {
                let why = if dir.join(name).join("config.toml").exists() {
                    "started, no summary yet (running, or killed: resume it by running the sweep again)"
                } else {
                    "not started"
                };
                println!("{name}: missing ({why})");
                unfinished.push(name.clone());
            }
        }
    }
    for f in multirun::combined_figure(dir, &plan.name, &drawn)? {
        println!("  figure: {}", f.display());
    }
    println!("  table: {}", table.display());
    if !unfinished.is_empty() {
        println!("  {} of {} runs not finished: {}", unfinished.len(), plan.runs.len(), unfinished.join(", "));
    }
    Ok(Collected { unfinished })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn src(target: String) -> SweepSource {
        SweepSource { target, ..Default::default() }
    }

    #[test]
    fn a_grid_expands_to_its_product_first_key_slowest_with_stable_names() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "wd.toml",
            "preset = \"fig4\"\n[set]\n\"run.steps\" = 50\n[grid]\n\"optimizer.wd\" = [0.0, 5e-5, 0.01]\nproblem.seed = [0, 1]\n",
        );
        let s = expand(&src(f)).unwrap();
        assert_eq!(s.name, "wd");
        let names: Vec<&str> = s.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["wd0_seed0", "wd0_seed1", "wd5e-5_seed0", "wd5e-5_seed1", "wd0.01_seed0", "wd0.01_seed1"]);
        let r = &s.runs[3];
        assert_eq!(r.cfg.run.steps, 50);
        assert_eq!(r.cfg.name, "wd-wd5e-5_seed1");
        assert_eq!(r.cfg.problem.seed(), 1);
        assert!(matches!(r.cfg.optimizer, crate::config::OptimizerConfig::GdWd { wd, .. } if wd == 5e-5));
    }

    #[test]
    fn listed_runs_multirun_presets_and_clashing_keys() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "s.toml",
            "name = \"x\"\npreset = \"fig6\"\n[[runs]]\nname = \"big lr\"\n\"optimizer.lr\" = 0.2\n[[runs]]\n\"optimizer.lr\" = 0.05\n",
        );
        let s = expand(&src(f)).unwrap();
        let names: Vec<&str> = s.runs.iter().map(|r| r.name.as_str()).collect();
        // fig6's own runs, each crossed with the list.
        assert_eq!(names[..4], ["N400_big-lr", "N400_lr0.05", "N800_big-lr", "N800_lr0.05"]);
        assert_eq!(names.len(), 8);
        assert_eq!(s.runs[0].settings[0], ("preset_run".to_string(), toml::Value::String("N400".into())));
        // Two keys ending alike are named in full.
        let f =
            write(d.path(), "c.toml", "preset = \"fig4\"\n[grid]\n\"problem.seed\" = [1]\n\"sharpness.seed\" = [2]\n");
        assert_eq!(expand(&src(f)).unwrap().runs[0].name, "problem-seed1_sharpness-seed2");
        // A preset name alone sweeps the preset's runs.
        let e = format!("{:#}", expand(&src("fig14".into())).err().unwrap());
        assert!(e.contains("--data DIR"), "{e}");
        // The files need only exist to expand the sweep (they are read when a run starts).
        for f in eosflow_nn::data::CIFAR10_TRAIN_FILES.iter().chain([&eosflow_nn::data::CIFAR10_TEST_FILE]) {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        let fig14 = SweepSource { target: "fig14".into(), data: Some(d.path().into()), ..Default::default() };
        let s = expand(&fig14).unwrap();
        let names: Vec<&str> = s.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["wd0", "wd5e-5", "wd1e-4", "wd5e-4"]);
        assert_eq!(s.runs[2].cfg.run.steps, 400_000);
    }

    #[test]
    fn bad_sweeps_are_refused_with_the_key_named() {
        let d = tempfile::tempdir().unwrap();
        for (text, needle) in [
            ("[grid]\n\"optimizer.wd\" = [0.1]\n", "needs its base"),
            ("preset = \"fig44\"\n", "did you mean `fig4`"),
            ("preset = \"fig4\"\n[grid]\n\"optimizer.wd\" = 0.1\n", "grid.optimizer.wd: expected a non-empty list"),
            ("preset = \"fig4\"\n[grid]\n\"optimizer.wdd\" = [0.1]\n", "wdd"),
            ("preset = \"fig4\"\n[grid]\n\"optimizer.wd\" = [-1.0]\n", "wd"),
            ("preset = \"fig4\"\ngird = 1\n", "unknown field `gird`"),
            ("preset = \"fig4\"\n[[runs]]\nname = \"a\"\n[[runs]]\nname = \"a\"\n", "both named `a`"),
        ] {
            let f = write(d.path(), "bad.toml", text);
            let e = format!("{:#}", expand(&src(f)).err().unwrap_or_else(|| panic!("{text} was accepted")));
            assert!(e.contains(needle), "{text}: {e}");
        }
        let e = format!("{:#}", expand(&src("nothing-here".into())).err().unwrap());
        assert!(e.contains("neither a sweep file nor a preset"), "{e}");
    }

    #[test]
    fn value_labels_are_short_and_exact() {
        use toml::Value as V;
        assert_eq!(value_label(&V::Float(5e-5)), "5e-5");
        assert_eq!(value_label(&V::Float(1e-4)), "1e-4");
        assert_eq!(value_label(&V::Float(0.1)), "0.1");
        assert_eq!(value_label(&V::Float(0.0)), "0");
        assert_eq!(value_label(&V::Float(2.5e6)), "2.5e6");
        assert_eq!(value_label(&V::Integer(400)), "400");
        assert_eq!(value_label(&V::Array(vec![V::Integer(60), V::Integer(30)])), "60x30");
        assert_eq!(sanitize("a/b c"), "a-b-c");
    }
}
