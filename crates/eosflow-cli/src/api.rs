//! The run machinery without the command line: what `eosflow run`,
//! `reproduce` and `resume` do, as functions that return what they wrote
//! instead of printing it. The Python bindings (`eosflow-py`) call these, so
//! a run started from Python writes the bytes the CLI writes.
//!
//! ```no_run
//! use eosflow::run::CancelToken;
//! let cfg = eosflow_cli::api::preset_config("toy3d", &["run.steps=100".into()]).unwrap();
//! let done = eosflow_cli::api::run(&cfg, "runs/toy3d".as_ref(), true, &CancelToken::new(), false, None).unwrap();
//! println!("{:?}", done.summary.final_sharpness);
//! ```

use crate::config::{self, Config};
use crate::{presets, rundir, setup};
use anyhow::{Context, Result, bail};
use eosflow::run::{CancelToken, Observer, RunState, RunSummary};
use std::path::{Path, PathBuf};

/// What a run wrote: its directory, the runner's summary (summary.json
/// holds it and more) and the figures drawn.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub summary: RunSummary,
    pub figures: Vec<PathBuf>,
}

/// A preset's config with `KEY=VALUE` overrides (as `--set`). Only
/// single-run presets have one config; for the others see
/// [`preset_variants`].
pub fn preset_config(name: &str, set: &[String]) -> Result<Config> {
    let p = find_preset(name)?;
    if !p.variants.is_empty() {
        let labels: Vec<&str> = p.variants.iter().map(|v| v.0).collect();
        bail!(
            "preset {name} runs {} configs ({}); run it with `eosflow reproduce {name}`, or one of its base presets",
            labels.len(),
            labels.join(", ")
        );
    }
    p.config(None, set)
}

/// The labels of a multi-run preset's variants (empty for a single run).
pub fn preset_variants(name: &str) -> Result<Vec<&'static str>> {
    Ok(find_preset(name)?.variants.iter().map(|v| v.0).collect())
}

/// Every preset: (name, the paper's figure, what it shows, expected time).
pub fn presets() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    presets::PRESETS.iter().map(|p| (p.name, p.figure, p.shows, p.expected_time)).collect()
}

fn find_preset(name: &str) -> Result<&'static presets::Preset> {
    match presets::find(name) {
        Some(p) => Ok(p),
        None => {
            let names: Vec<&str> = presets::PRESETS.iter().map(|p| p.name).collect();
            let best = names.iter().min_by_key(|n| strsim::levenshtein(name, n)).unwrap();
            bail!("unknown preset `{name}`: did you mean `{best}`? (presets: {})", names.join(", "))
        }
    }
}

/// A config file with `KEY=VALUE` overrides.
pub fn config_from_file(path: &Path, set: &[String]) -> Result<Config> {
    config::load_with(path, set)
}

/// A config from TOML text; `origin` names it in error messages and
/// resolves its relative paths.
pub fn config_from_toml(text: &str, origin: &Path, set: &[String]) -> Result<Config> {
    config::load_text(text, origin, set)
}

/// The resolved config as TOML (every default written out), as a run
/// directory's config.toml holds it.
pub fn config_to_toml(cfg: &Config) -> Result<String> {
    Ok(toml::to_string(cfg)?)
}

/// The config of a run directory (refused when a newer eosflow wrote it).
pub fn load_run_config(dir: &Path) -> Result<Config> {
    crate::load_run_config(dir)
}

/// The default run directory, `runs/<name>-<timestamp>`.
pub fn default_dir(name: &str) -> PathBuf {
    crate::default_dir(name)
}

/// Runs a single-run config into `dir` (created; with `force` eosflow's
/// files in it are replaced) as `eosflow run` does: config.toml, data/, the
/// CSVs, checkpoints, w_final.npy, figures and summary.json. `observer`
/// sees every record besides the CSV writer (a progress display); `token`
/// stops the run after the current step, with the directory written and
/// resumable.
pub fn run(
    cfg: &Config,
    dir: &Path,
    force: bool,
    token: &CancelToken,
    progress_bar: bool,
    observer: Option<&mut dyn Observer>,
) -> Result<RunOutcome> {
    if cfg.entry.is_some() || cfg.tracking.is_some() {
        bail!("an [entry] or [tracking] config is an experiment of many runs: run it with `eosflow run`");
    }
    let prep = setup::prepare(cfg)?;
    // Under MPI only rank 0 touches the run directory.
    if crate::ranks::is_writer() {
        rundir::create(dir, force)?;
    }
    let (summary, figures) = crate::run_in_dir(cfg, prep, dir, token, progress_bar, None, observer)?;
    Ok(RunOutcome { dir: dir.to_path_buf(), summary, figures })
}

/// Where [`resume`] continues a run directory from.
#[derive(Debug)]
pub enum ResumeFrom {
    /// The run is complete at `last` ≥ run.steps: nothing to do.
    Completed { last: u64 },
    /// No checkpoint yet: the run starts again from step 0 (it is
    /// deterministic, so this gives the files resuming would have).
    Start,
    /// The last checkpoint.
    Checkpoint(Box<RunState>, rundir::CsvOffsets),
}

/// A run directory's config (with `steps` applied) and where it resumes.
#[derive(Debug)]
pub struct ResumePlan {
    pub dir: PathBuf,
    pub cfg: Config,
    pub from: ResumeFrom,
}

/// Reads a run directory and decides where `resume` continues it.
pub fn plan_resume(dir: &Path, steps: Option<u64>) -> Result<ResumePlan> {
    let mut cfg = load_run_config(dir)?;
    let done: Option<serde_json::Value> =
        std::fs::read_to_string(dir.join("summary.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let completed_at = done.as_ref().filter(|s| s["status"] == "completed").and_then(|s| s["last_step"].as_u64());
    if let Some(s) = steps {
        cfg.run.steps = s;
    }
    let from = if let Some(last) = completed_at.filter(|&last| last >= cfg.run.steps) {
        ResumeFrom::Completed { last }
    } else if !rundir::has_checkpoint(dir) {
        ResumeFrom::Start
    } else {
        let (state, offsets) = rundir::read_checkpoint(dir)?;
        if state.next_step > cfg.run.steps {
            bail!(
                "the checkpoint is at step {} but run.steps is {}; pass steps to extend the run",
                state.next_step,
                cfg.run.steps
            );
        }
        ResumeFrom::Checkpoint(Box::new(state), offsets)
    };
    Ok(ResumePlan { dir: dir.to_path_buf(), cfg, from })
}

/// Continues a run as planned by [`plan_resume`]; `None` when the run was
/// complete already.
pub fn resume(
    plan: ResumePlan,
    token: &CancelToken,
    progress_bar: bool,
    observer: Option<&mut dyn Observer>,
) -> Result<Option<RunOutcome>> {
    let ResumePlan { dir, cfg, from } = plan;
    let state = match from {
        ResumeFrom::Completed { .. } => return Ok(None),
        ResumeFrom::Start => {
            if crate::ranks::is_writer() {
                rundir::create(&dir, true)?;
            }
            None
        }
        ResumeFrom::Checkpoint(state, offsets) => Some((*state, offsets)),
    };
    let prep = setup::prepare(&cfg)?;
    let (summary, figures) = crate::run_in_dir(&cfg, prep, &dir, token, progress_bar, state, observer)?;
    Ok(Some(RunOutcome { dir, summary, figures }))
}

/// The settings an external loop's run directory records
/// (`[problem] kind = "external"`, crate `eosflow-py`'s `EoSMonitor`).
#[derive(Clone, Debug)]
pub struct ExternalSettings {
    pub name: String,
    pub dim: usize,
    pub scale_invariance: crate::problems::ExternalInvariance,
    pub block_size: Option<usize>,
    pub source: String,
    pub lr: f64,
    pub wd: f64,
    /// The loop's planned number of updates (rewritten at the end to the
    /// last step observed).
    pub steps: u64,
    pub log_every: u64,
    pub sharpness: eosflow::monitor::MonitorParams,
    /// Draw the overview figure at the end.
    pub figures: bool,
}

impl ExternalSettings {
    /// The resolved config of such a run (every default written out).
    pub fn config(&self) -> Result<Config> {
        let si = match self.scale_invariance {
            crate::problems::ExternalInvariance::All => "all",
            crate::problems::ExternalInvariance::Block => "block",
            crate::problems::ExternalInvariance::None => "none",
        };
        let mut problem = toml::Table::new();
        problem.insert("kind".into(), "external".into());
        problem.insert("dim".into(), (self.dim as i64).into());
        problem.insert("scale_invariance".into(), si.into());
        if let Some(n) = self.block_size {
            problem.insert("block_size".into(), (n as i64).into());
        }
        problem.insert("source".into(), self.source.clone().into());
        let l = &self.sharpness.lanczos;
        let text = toml::to_string(&toml::Table::from_iter([
            ("name".to_string(), toml::Value::from(self.name.clone())),
            ("problem".into(), problem.into()),
            (
                "optimizer".into(),
                toml::Table::from_iter([
                    ("kind".to_string(), toml::Value::from("gd_wd")),
                    ("lr".into(), self.lr.into()),
                    ("wd".into(), self.wd.into()),
                ])
                .into(),
            ),
            (
                "run".into(),
                toml::Table::from_iter([
                    ("steps".to_string(), toml::Value::from(self.steps.max(1) as i64)),
                    ("log_every".into(), (self.log_every.max(1) as i64).into()),
                    ("checkpoint_every".into(), 0.into()),
                ])
                .into(),
            ),
            (
                "sharpness".into(),
                toml::Table::from_iter([
                    ("every".to_string(), toml::Value::from(self.sharpness.sharpness_every as i64)),
                    ("k".into(), (l.k as i64).into()),
                    ("tol".into(), l.tol.into()),
                    ("max_basis".into(), (l.max_basis as i64).into()),
                    ("max_restarts".into(), (l.max_restarts as i64).into()),
                    ("seed".into(), (l.seed as i64).into()),
                    ("warm_mix".into(), l.warm_mix.into()),
                    ("eos_band".into(), self.sharpness.band.band.into()),
                ])
                .into(),
            ),
            (
                "output".into(),
                toml::Table::from_iter([("figures".to_string(), toml::Value::from(self.figures))]).into(),
            ),
        ]))?;
        config_from_toml(&text, Path::new("EoSMonitor settings"), &[])
    }
}

/// The run directory of an external loop, written through the runner's own
/// CSV observer, so metrics.csv, sharpness.csv, w_final.npy and
/// summary.json have a run's schema.
pub struct ExternalRun {
    dir: PathBuf,
    cfg: Config,
    csv: rundir::CsvObserver,
}

impl ExternalRun {
    /// Creates `dir` (with `force`, eosflow's files in it are replaced) and
    /// writes config.toml.
    pub fn create(dir: &Path, force: bool, settings: &ExternalSettings) -> Result<Self> {
        let cfg = settings.config()?;
        rundir::create(dir, force)?;
        write_config(dir, &cfg)?;
        let mut csv = rundir::CsvObserver::new(dir, cfg.sharpness.k);
        csv.on_start(&[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { dir: dir.to_path_buf(), cfg, csv })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CSV writer, to hand records to.
    pub fn observer(&mut self) -> &mut dyn Observer {
        &mut self.csv
    }

    /// Ends the run: w_final.npy, config.toml with run.steps = the last
    /// step, the overview figure (when asked for and the CSVs are whole),
    /// summary.json. Returns the figures drawn.
    pub fn finish(mut self, summary: &RunSummary, w_final: &[f64]) -> Result<Vec<PathBuf>> {
        let mut summary = summary.clone();
        if let Err(e) = self.csv.on_finish(&summary, w_final)
            && !matches!(summary.status, eosflow::run::Status::Error { .. })
        {
            summary.status = eosflow::run::Status::Error {
                step: summary.last_step,
                op: eosflow::run::OUTPUT_OP.into(),
                message: e.to_string(),
            };
        }
        self.cfg.run.steps = summary.last_step.max(1);
        write_config(&self.dir, &self.cfg)?;
        let output_failed =
            matches!(&summary.status, eosflow::run::Status::Error { op, .. } if op == eosflow::run::OUTPUT_OP);
        let fig_start = std::time::Instant::now();
        let figures = if self.cfg.output.figures && !output_failed && summary.last_step > 0 {
            crate::plot::plot_run(
                &self.dir,
                self.cfg.problem.get().figure(),
                &self.cfg.name,
                &self.cfg.output.formats,
                Some(&summary.problem),
                None,
            )?
        } else {
            Vec::new()
        };
        let meta = crate::SummaryMeta {
            optimizer: "gd_wd".into(),
            kernels: "external".into(),
            derived: serde_json::Map::new(),
            figures_s: fig_start.elapsed().as_secs_f64(),
        };
        crate::write_summary(&self.dir, &self.cfg, &summary, meta, &figures)?;
        Ok(figures)
    }
}

/// config.toml with the run-directory format version.
pub(crate) fn write_config(dir: &Path, cfg: &Config) -> Result<()> {
    let versioned = Config { format_version: Some(rundir::RUN_FORMAT), ..cfg.clone() };
    let text = toml::to_string(&versioned).context("cannot serialise the resolved config")?;
    rundir::write_atomic(&dir.join("config.toml"), text.as_bytes())
}
