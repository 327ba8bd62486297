//! The TOML run configuration: parsing with helpful errors, defaults,
//! validation, and the resolved form written to `config.toml`.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::problems::ProblemConfig;

/// A whole run configuration. Every key is documented in the README.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run name (default output folder `runs/<name>-<timestamp>`).
    #[serde(default = "default_name")]
    pub name: String,
    /// The run-directory format (`crate::rundir::RUN_FORMAT`) of a run
    /// directory's config.toml; configs written by hand leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
    pub problem: ProblemConfig,
    /// Data files (problems with data: linreg_bn).
    #[serde(default, skip_serializing_if = "DataConfig::is_empty")]
    pub data: DataConfig,
    #[serde(default)]
    pub init: InitConfig,
    pub optimizer: OptimizerConfig,
    pub run: RunConfig,
    #[serde(default)]
    pub sharpness: SharpnessConfig,
    #[serde(default)]
    pub output: OutputConfig,
    /// The sharpness-reduction flow after the run (`eosflow flow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowConfig>,
    /// Thm 4.6 / Cor. B.14 as an experiment (`crate::tracking`): the
    /// config's problem at several learning rates and seeds against its flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<crate::tracking::TrackingConfig>,
    /// The RMS-drift variables (eq. 16) and the energy of (17) along the
    /// run (`crate::drift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::drift::DriftConfig>,
    /// Thm 4.3 as an experiment (`crate::entry`): from the stable regime
    /// near θ* into EoS at several learning rates and seeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<crate::entry::EntryConfig>,
    /// Per-block top eigenvalue and trace along the run (spectrum.csv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrum: Option<SpectrumConfig>,
}

/// `[spectrum]`: every `every` steps (and at the last), each block's top
/// eigenvalue (Lanczos with `[sharpness]`'s tol, basis and seed) and its
/// trace (Hutch++), one row per block in spectrum.csv.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpectrumConfig {
    /// Every how many steps.
    pub every: u64,
    /// "all", "si" (the declared scale-invariant block) or "layers" (every
    /// parameter tensor of a network); the whole Hessian always comes first.
    #[serde(default)]
    pub blocks: eosflow::spectrum::BlockSet,
    /// Hutch++ applications per block (a multiple of 3; 0 skips the trace).
    #[serde(default = "thirty")]
    pub trace_probes: usize,
}

fn thirty() -> usize {
    30
}

/// Where the flow starts.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FlowStart {
    /// The projection of the run's iterate at its EoS entry.
    #[default]
    EosEntry,
    /// The projection of w_0.
    W0,
    /// The projection of the iterate at `flow.step`.
    Step,
    /// The projection of the vector in `flow.npy`.
    Npy,
}

/// `[flow]`: the sharpness-reduction flow (eq. 3 / eq. 8) from a point of
/// the run, written to `<run dir>/flow/`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Where it starts (its projection onto Γ is ζ(0)).
    #[serde(default)]
    pub start: FlowStart,
    /// The step for `start = "step"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// The file for `start = "npy"` (1-D float64, D entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npy: Option<PathBuf>,
    /// The flow's end time, in its unit (GD+WD: τ = t·η_in); default: the
    /// run's remaining steps, (run.steps − t_start)·η_in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau_max: Option<f64>,
    /// Local error tolerance per step.
    #[serde(default = "flow_tol")]
    pub tol: f64,
    /// Stop when ‖∇_Γ log λ1‖ falls below this.
    #[serde(default = "flow_grad_tol")]
    pub grad_tol: f64,
    /// Stop when (λ1 − λ2)/λ1 falls below this (Assumption 4.5).
    #[serde(default = "flow_gap_tol")]
    pub eigengap_tol: f64,
    /// Accepted steps at most.
    #[serde(default = "flow_max_steps")]
    pub max_steps: usize,
    /// The largest step in τ (default: none for a flow on its own; τ_end/400
    /// in a tracking experiment, which reads the flow between its points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step: Option<f64>,
    /// ∇_Γ: `method` ("auto", "dense", "krylov"), `dense_max_dim`,
    /// `null_tol`, `krylov_tol`, `max_basis`, `[flow.tangent.lanczos]`.
    #[serde(default)]
    pub tangent: eosflow::manifold::TangentParams,
    /// The retraction: `tol`, `max_iters`, `max_descent_steps`.
    #[serde(default)]
    pub retraction: eosflow::manifold::RetractionParams,
    /// Run the flow beside GD+WD from the run's EoS entry and log
    /// `flow_tau, flow_sharpness, dist_to_flow, phi_dist_to_flow` in
    /// metrics.csv (`eosflow::flow::Lockstep`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lockstep: bool,
    /// Lockstep: φ_t by a retraction on the logged steps that are multiples
    /// of this (0 = never); problems with an exact projection (linreg_bn,
    /// toy3d) have it on every logged step.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub phi_every: u64,
    /// After the run, integrate the flow from `start` into `flow/`.
    #[serde(default = "yes")]
    pub run_after: bool,
}

fn yes() -> bool {
    true
}
fn is_zero(x: &u64) -> bool {
    *x == 0
}

fn flow_tol() -> f64 {
    1e-8
}
fn flow_grad_tol() -> f64 {
    1e-9
}
fn flow_gap_tol() -> f64 {
    1e-3
}
fn flow_max_steps() -> usize {
    100_000
}

fn default_name() -> String {
    "run".into()
}

/// `.npy` data files (relative to the config file). x files are 2-D n×d
/// float64, y files 1-D float64.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_npy: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y_npy: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_test_npy: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y_test_npy: Option<PathBuf>,
    /// matcomp_bn: the ground truth M, 2-D float64 d×d.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m_npy: Option<PathBuf>,
    /// matcomp_bn: observed positions, N×2 integer array of (row, column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omega_npy: Option<PathBuf>,
    /// nn with dataset = "cifar10": the folder holding data_batch_1.bin …
    /// data_batch_5.bin and test_batch.bin (CIFAR-10 binary version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cifar_dir: Option<PathBuf>,
}

impl DataConfig {
    pub fn is_empty(&self) -> bool {
        self == &DataConfig::default()
    }
    /// Checks that the files the config names exist (and that `cifar_dir`
    /// holds CIFAR-10's six binary files), before anything is created: what
    /// a multi-run preset or a sweep does before its first run directory.
    pub fn check_inputs(&self) -> Result<()> {
        let files = [
            ("x_npy", &self.x_npy),
            ("y_npy", &self.y_npy),
            ("x_test_npy", &self.x_test_npy),
            ("y_test_npy", &self.y_test_npy),
            ("m_npy", &self.m_npy),
            ("omega_npy", &self.omega_npy),
        ];
        for (key, path) in files {
            if let Some(p) = path
                && !p.is_file()
            {
                bail!("[data] {key} = {}: no such file", p.display());
            }
        }
        if let Some(dir) = &self.cifar_dir {
            let names = eosflow_nn::data::CIFAR10_TRAIN_FILES.iter().chain([&eosflow_nn::data::CIFAR10_TEST_FILE]);
            for name in names {
                if !dir.join(name).is_file() {
                    bail!(
                        "[data] cifar_dir (--data) = {}: no {name} there; the folder needs data_batch_1.bin … \
                         data_batch_5.bin and test_batch.bin (CIFAR-10's binary version; nothing is downloaded)",
                        dir.display()
                    );
                }
            }
        }
        Ok(())
    }

    fn paths_mut(&mut self) -> [&mut Option<PathBuf>; 7] {
        [
            &mut self.x_npy,
            &mut self.y_npy,
            &mut self.x_test_npy,
            &mut self.y_test_npy,
            &mut self.m_npy,
            &mut self.omega_npy,
            &mut self.cifar_dir,
        ]
    }
}

/// Overrides of the problem's initial point.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    /// The flat initial parameter vector, inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub w0: Option<Vec<f64>>,
    /// A 1-D float64 `.npy` file with the flat initial parameter vector
    /// (relative to the config file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub w0_npy: Option<PathBuf>,
}

/// The optimizer (`kind` selects it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// GD+WD, eq. (1): w ← (1 − η̂λ̂)w − η̂∇L(w).
    GdWd {
        /// η̂ > 0.
        lr: f64,
        /// λ̂ ≥ 0, with η̂λ̂ < 1.
        wd: f64,
    },
    /// Projected GD on the sphere, eq. (2)/(9), with a scheduler.
    Sphere {
        /// constant | rmsprop | gwsi.
        scheduler: SchedulerKind,
        /// constant: the effective LR η̃.
        #[serde(skip_serializing_if = "Option::is_none")]
        eff_lr: Option<f64>,
        /// rmsprop/gwsi: base LR η.
        #[serde(skip_serializing_if = "Option::is_none")]
        eta: Option<f64>,
        /// rmsprop/gwsi: decay β ∈ (0, 1).
        #[serde(skip_serializing_if = "Option::is_none")]
        beta: Option<f64>,
        /// rmsprop/gwsi: initial moment ṽ0 > 0.
        #[serde(skip_serializing_if = "Option::is_none")]
        v0: Option<f64>,
        /// gwsi: derive (ṽ0, β, η) from GD+WD's η̂ (Thm B.7) …
        #[serde(skip_serializing_if = "Option::is_none")]
        lr: Option<f64>,
        /// … and λ̂.
        #[serde(skip_serializing_if = "Option::is_none")]
        wd: Option<f64>,
    },
    /// Scalar RMSprop, Def. B.1.
    ScalarRmsprop { eta: f64, beta: f64, v0: f64 },
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    Constant,
    Rmsprop,
    Gwsi,
}

/// Step budget and logging.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Number of updates T (steps 0..=T are logged).
    pub steps: u64,
    /// Write a metrics row every `log_every` steps (and at the first and last).
    #[serde(default = "one")]
    pub log_every: u64,
    /// Steps [a, b] logged at every step, each with a sharpness evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_window: Option<[u64; 2]>,
    /// Write a checkpoint (for `eosflow resume`) every this many steps; 0 = never
    /// (SIGINT/SIGTERM always write one).
    #[serde(default = "ckpt_default")]
    pub checkpoint_every: u64,
    /// …but at most one periodic checkpoint per this many seconds.
    #[serde(default = "ckpt_interval_default")]
    pub checkpoint_min_interval_s: f64,
    /// Save w_t at these steps as snapshots/w_step_<t>.npy (the starts of
    /// `eosflow flow` and of spectra).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub save_w_at: Vec<u64>,
    /// Save w_t at the EoS entry (summary's eos_entry_step) as
    /// snapshots/w_eos_entry.npy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub save_w_at_eos_entry: bool,
}

fn ckpt_interval_default() -> f64 {
    10.0
}

fn ckpt_default() -> u64 {
    10_000
}

fn one() -> u64 {
    1
}

/// Spherical sharpness schedule and Lanczos settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SharpnessConfig {
    /// Every how many steps (0 = never); the last step always.
    pub every: u64,
    /// Top-k eigenvalues to compute.
    pub k: usize,
    /// Lanczos residual tolerance, relative to max|θ|.
    pub tol: f64,
    /// Lanczos basis size before a thick restart.
    pub max_basis: usize,
    /// Lanczos restarts before reporting non-convergence.
    pub max_restarts: usize,
    /// Seed of the Lanczos start vector.
    pub seed: u64,
    /// Random admixture to the warm-start vector.
    pub warm_mix: f64,
    /// Relative band around the sharpness that counts as EoS.
    pub eos_band: f64,
}

impl Default for SharpnessConfig {
    fn default() -> Self {
        let l = eosflow::spectrum::LanczosParams::default();
        Self {
            every: 10,
            k: l.k,
            tol: l.tol,
            max_basis: l.max_basis,
            max_restarts: l.max_restarts,
            seed: l.seed,
            warm_mix: l.warm_mix,
            eos_band: eosflow::eos::RegimeBand::default().band,
        }
    }
}

impl SharpnessConfig {
    /// The Lanczos settings these keys stand for (the inverse of `Default`).
    pub fn lanczos(&self) -> eosflow::spectrum::LanczosParams {
        eosflow::spectrum::LanczosParams {
            k: self.k,
            tol: self.tol,
            max_basis: self.max_basis,
            max_restarts: self.max_restarts,
            seed: self.seed,
            warm_mix: self.warm_mix,
        }
    }
}

/// What goes into the run directory besides the CSVs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Draw figures at the end of the run.
    pub figures: bool,
    /// Figure formats: "png", "svg".
    pub formats: Vec<String>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { figures: true, formats: vec!["png".into(), "svg".into()] }
    }
}

/// Parses TOML text. `origin` names the file in messages.
pub fn parse(text: &str, origin: &str) -> Result<Config> {
    match toml::from_str::<Config>(text) {
        Ok(mut c) => {
            c.problem.get_mut().resolve().with_context(|| format!("{origin}: invalid config"))?;
            Ok(c)
        }
        Err(e) => bail!("{origin}: invalid config\n{}", explain_toml_error(&e, Some(text))),
    }
}

/// Where serde reports a wrong value at its section's header (sections
/// read through a tagged enum, such as [optimizer] and [problem], lose the
/// key's position), the key in that section holding the value the message
/// quotes: `optimizer.lr` for `invalid type: string "0.2", expected f64`.
fn locate_bad_value(text: &str, e: &toml::de::Error) -> Option<(String, usize)> {
    let body = e.message();
    let found = ["invalid type: ", "invalid value: "].iter().find_map(|p| body.strip_prefix(p))?;
    let found = &found[..found.find(", expected")?];
    let start = e.span()?.start;
    let line_no = text[..start].matches('\n').count();
    let header = text.lines().nth(line_no)?.trim();
    let section = header.strip_prefix('[')?.strip_suffix(']')?.trim();
    let table: toml::Table = toml::from_str(text).ok()?;
    let mut t = &table;
    for part in section.split('.') {
        t = t.get(part.trim())?.as_table()?;
    }
    let describe = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(format!("string {s:?}")),
        toml::Value::Integer(i) => Some(format!("integer `{i}`")),
        toml::Value::Float(x) => Some(format!("floating point `{x}`")),
        toml::Value::Boolean(b) => Some(format!("boolean `{b}`")),
        _ => None,
    };
    let key = t.iter().find(|(_, v)| describe(v).as_deref() == Some(found)).map(|(k, _)| k)?;
    // The key's own line, if it is written there as `key = …`.
    let line = text
        .lines()
        .enumerate()
        .skip(line_no + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| l.trim_start().strip_prefix(key.as_str()).is_some_and(|r| r.trim_start().starts_with('=')))
        .map_or(line_no + 1, |(i, _)| i + 1);
    Some((format!("{section}.{key}"), line))
}

/// Adds a "did you mean" to serde's unknown-key and unknown-variant errors,
/// and the key a wrong value belongs to where serde points at its section.
fn explain_toml_error(e: &toml::de::Error, text: Option<&str>) -> String {
    if let Some((key, line)) = text.and_then(|t| locate_bad_value(t, e)) {
        return format!("`{key}` (line {line}): {}", e.message());
    }
    let msg = e.to_string();
    match did_you_mean(e.message()) {
        Some(hint) => format!("{msg}{hint}"),
        None => msg,
    }
}

/// "unknown key `log_evry`: did you mean `log_every`? (valid: …)" for
/// serde's unknown-field and unknown-variant messages.
fn did_you_mean(body: &str) -> Option<String> {
    for (marker, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        if let Some(start) = body.find(marker) {
            let rest = &body[start + marker.len()..];
            let Some(end) = rest.find('`') else { continue };
            let bad = &rest[..end];
            let valid: Vec<&str> = rest[end + 1..].split('`').skip(1).step_by(2).collect();
            if let Some(best) = valid.iter().min_by_key(|v| strsim::levenshtein(bad, v)) {
                return Some(format!("unknown {what} `{bad}`: did you mean `{best}`? (valid: {})", valid.join(", ")));
            }
        }
    }
    None
}

/// Applies command-line overrides `KEY=VALUE` to a config's TOML table.
/// KEY is a dotted path (`problem.width`, `optimizer.wd`); VALUE is a TOML
/// value (`0.25`, `true`, `[1, 2]`, `"f32"`), and a bare word that is not
/// one is taken as a string (`problem.precision=f32`).
pub fn apply_sets(table: &mut toml::Table, sets: &[String]) -> Result<()> {
    for set in sets {
        let Some((key, value)) = set.split_once('=') else {
            bail!("--set {set}: expected KEY=VALUE, e.g. --set problem.width=0.25");
        };
        let value = match toml::from_str::<toml::Table>(&format!("v = {}", value.trim())) {
            Ok(mut t) => t.remove("v").expect("parsed key"),
            Err(_) => toml::Value::String(value.trim().to_string()),
        };
        set_value(table, key, value).with_context(|| format!("--set {set}"))?;
    }
    Ok(())
}

/// Sets the dotted `key` (`optimizer.wd`) of a config's TOML table to
/// `value`, creating missing sections.
pub fn set_value(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.iter().any(|k| k.is_empty()) {
        bail!("the key `{key}` has an empty part; write section.key, e.g. optimizer.wd");
    }
    let mut t = table;
    for k in &path[..path.len() - 1] {
        let entry = t.entry(k.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(sub) = entry else {
            bail!("`{k}` in `{key}` is a value, not a section");
        };
        t = sub;
    }
    t.insert(path[path.len() - 1].to_string(), value);
    Ok(())
}

/// Parses TOML text after applying `--set` overrides (see [`apply_sets`]).
pub fn parse_with(text: &str, origin: &str, sets: &[String]) -> Result<Config> {
    if sets.is_empty() {
        return parse(text, origin);
    }
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => bail!("{origin}: invalid config\n{}", explain_toml_error(&e, None)),
    };
    parse_table_with_sets(table, origin, sets)
}

/// Parses a config's TOML table after the `--set` overrides. A value that
/// does not fit the schema is reported as the `--set` that brought it
/// (`--set run.steps=-5: invalid value: integer `-5`, expected u64`), found
/// by applying the overrides one at a time.
pub fn parse_table_with_sets(table: toml::Table, origin: &str, sets: &[String]) -> Result<Config> {
    if sets.is_empty() {
        return parse(&toml::to_string(&table)?, origin);
    }
    let mut all = table.clone();
    apply_sets(&mut all, sets)?;
    let text = toml::to_string(&all)?;
    if let Err(e) = toml::from_str::<Config>(&text)
        && toml::from_str::<Config>(&toml::to_string(&table)?).is_ok()
    {
        for i in 0..sets.len() {
            let mut t = table.clone();
            apply_sets(&mut t, &sets[..=i])?;
            if let Err(e) = toml::from_str::<Config>(&toml::to_string(&t)?) {
                bail!(
                    "{origin}: --set {}: {}",
                    sets[i],
                    did_you_mean(e.message()).unwrap_or_else(|| e.message().into())
                );
            }
        }
        bail!("{origin} with --set {}: invalid config\n{}", sets.join(" --set "), explain_toml_error(&e, None));
    }
    parse(&text, &format!("{origin} with --set {}", sets.join(" --set ")))
}

/// Reads and parses a config file; relative `.npy` paths are resolved
/// against the file's directory.
pub fn load(path: &Path) -> Result<Config> {
    load_with(path, &[])
}

/// [`load`] with `--set` overrides.
pub fn load_with(path: &Path, sets: &[String]) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    load_text(&text, path, sets)
}

/// [`load_with`] on the text of the file at `path` (already read, or
/// migrated from an older run-directory format).
pub fn load_text(text: &str, path: &Path, sets: &[String]) -> Result<Config> {
    let mut cfg = parse_with(text, &path.display().to_string(), sets)?;
    // Relative paths are relative to the config file; the resolved config
    // written into the run directory holds absolute ones.
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let base = std::path::absolute(&base).unwrap_or(base);
    let mut paths = cfg.data.paths_mut().into_iter().collect::<Vec<_>>();
    paths.push(&mut cfg.init.w0_npy);
    if let Some(f) = cfg.flow.as_mut() {
        paths.push(&mut f.npy);
    }
    for p in paths {
        if let Some(rel) = p.as_ref()
            && rel.is_relative()
        {
            *p = Some(base.join(rel));
        }
    }
    Ok(cfg)
}

pub(crate) fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond { Ok(()) } else { bail!(msg()) }
}

pub(crate) fn positive(name: &str, v: f64) -> Result<()> {
    check(v > 0.0 && v.is_finite(), || format!("{name} = {v} must be a positive finite number"))
}

impl Config {
    /// optimizer.kind as written in the TOML.
    pub fn optimizer_kind(&self) -> &'static str {
        match self.optimizer {
            OptimizerConfig::GdWd { .. } => "gd_wd",
            OptimizerConfig::Sphere { .. } => "sphere",
            OptimizerConfig::ScalarRmsprop { .. } => "scalar_rmsprop",
        }
    }

    /// Checks every value that does not depend on the problem's data.
    pub fn validate(&self) -> Result<()> {
        check(!self.name.is_empty() && !self.name.contains(['/', '\\']), || {
            format!("name = {:?} must be non-empty and contain no path separators", self.name)
        })?;
        check(self.run.steps > 0, || "run.steps = 0: set run.steps to the number of updates, at least 1".into())?;
        check(self.run.log_every > 0, || "run.log_every = 0: set it to at least 1".into())?;
        match &self.optimizer {
            OptimizerConfig::GdWd { lr, wd } => check_gd_wd("optimizer", *lr, *wd)?,
            OptimizerConfig::Sphere { scheduler, eff_lr, eta, beta, v0, lr, wd } => match scheduler {
                SchedulerKind::Constant => {
                    let Some(e) = eff_lr else {
                        bail!("optimizer.scheduler = \"constant\" needs optimizer.eff_lr (the effective LR η̃ > 0)")
                    };
                    positive("optimizer.eff_lr", *e)?;
                }
                SchedulerKind::Rmsprop | SchedulerKind::Gwsi => {
                    let explicit = eta.is_some() || beta.is_some() || v0.is_some();
                    let derived = lr.is_some() || wd.is_some();
                    if *scheduler == SchedulerKind::Gwsi && derived && !explicit {
                        let (Some(lr), Some(wd)) = (lr, wd) else {
                            bail!("optimizer: the GWSI scheduler derived from GD+WD (Thm B.7) needs both lr and wd")
                        };
                        check_gd_wd("optimizer", *lr, *wd)?;
                        check(*wd > 0.0, || {
                            "optimizer.wd must be > 0 for the GWSI scheduler (β = (1 − η̂λ̂)⁴ < 1)".into()
                        })?;
                    } else {
                        let (Some(eta), Some(beta), Some(v0)) = (eta, beta, v0) else {
                            bail!(
                                "optimizer.scheduler = \"{}\" needs eta, beta and v0{}",
                                if *scheduler == SchedulerKind::Gwsi { "gwsi" } else { "rmsprop" },
                                if *scheduler == SchedulerKind::Gwsi {
                                    " (or lr and wd of the GD+WD it reproduces)"
                                } else {
                                    ""
                                }
                            )
                        };
                        check(!derived, || "optimizer: give either eta/beta/v0 or lr/wd, not both".into())?;
                        positive("optimizer.eta", *eta)?;
                        positive("optimizer.v0", *v0)?;
                        check(*beta > 0.0 && *beta < 1.0, || format!("optimizer.beta = {beta} must be in (0, 1)"))?;
                    }
                }
            },
            OptimizerConfig::ScalarRmsprop { eta, beta, v0 } => {
                positive("optimizer.eta", *eta)?;
                positive("optimizer.v0", *v0)?;
                check(*beta > 0.0 && *beta < 1.0, || format!("optimizer.beta = {beta} must be in (0, 1)"))?;
            }
        }
        let s = &self.sharpness;
        check(s.k >= 1, || "sharpness.k = 0: ask for at least one eigenvalue".into())?;
        positive("sharpness.tol", s.tol)?;
        check(s.max_basis >= 2, || "sharpness.max_basis must be at least 2".into())?;
        check(s.warm_mix >= 0.0 && s.warm_mix.is_finite(), || "sharpness.warm_mix must be ≥ 0".into())?;
        check(s.eos_band > 0.0 && s.eos_band < 1.0, || {
            format!("sharpness.eos_band = {} must be in (0, 1)", s.eos_band)
        })?;
        for f in &self.output.formats {
            check(f == "png" || f == "svg", || {
                format!("output.formats: unknown format {f:?}; use \"png\" and/or \"svg\"")
            })?;
        }
        self.problem.get().validate(self)?;
        check(self.init.w0.is_none() || self.init.w0_npy.is_none(), || "init: give w0 or w0_npy, not both".into())?;
        if let Some(t) = &self.tracking {
            crate::tracking::validate(self, t)?;
        }
        if let Some(d) = &self.drift {
            d.validate(self)?;
        }
        if let Some(e) = &self.entry {
            e.validate(self)?;
        }
        if let Some(sp) = &self.spectrum {
            check(sp.every >= 1, || "spectrum.every = 0: set it to a number of steps, at least 1".into())?;
            check(sp.trace_probes == 0 || (sp.trace_probes >= 3 && sp.trace_probes.is_multiple_of(3)), || {
                format!(
                    "spectrum.trace_probes = {}: Hutch++ needs a multiple of 3 (e.g. 30), or 0 to skip the trace",
                    sp.trace_probes
                )
            })?;
        }
        if let Some(f) = &self.flow {
            positive("flow.tol", f.tol)?;
            if let Some(h) = f.max_step {
                positive("flow.max_step", h)?;
            }
            check(f.grad_tol >= 0.0, || "flow.grad_tol must be ≥ 0".into())?;
            check(f.eigengap_tol >= 0.0 && f.eigengap_tol < 1.0, || "flow.eigengap_tol must be in [0, 1)".into())?;
            positive("flow.tangent.null_tol", f.tangent.null_tol)?;
            if let Some(t) = f.tau_max {
                check(t >= 0.0 && t.is_finite(), || format!("flow.tau_max = {t} must be ≥ 0 and finite"))?;
            }
            match f.start {
                FlowStart::Step => check(f.step.is_some_and(|s| s <= self.run.steps), || {
                    format!("flow.start = \"step\" needs flow.step, a step of the run (0..={})", self.run.steps)
                })?,
                FlowStart::Npy => {
                    check(f.npy.is_some(), || "flow.start = \"npy\" needs flow.npy = \"file.npy\"".into())?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn check_gd_wd(table: &str, lr: f64, wd: f64) -> Result<()> {
    positive(&format!("{table}.lr"), lr)?;
    check(wd >= 0.0 && wd.is_finite(), || format!("{table}.wd = {wd} must be ≥ 0 (weight decay λ̂)"))?;
    check(lr * wd < 1.0, || {
        format!(
            "{table}.lr × {table}.wd = {} must be < 1: the decay factor 1 − η̂λ̂ of eq. (1) must stay positive",
            lr * wd
        )
    })
}

/// Initial weights must be finite and not all zero (L is undefined at 0).
pub fn check_w0(what: &str, w0: &[f64]) -> Result<()> {
    if let Some(i) = w0.iter().position(|x| !x.is_finite()) {
        bail!("{what}: entry {i} is {} — initial weights must be finite", w0[i]);
    }
    check(w0.iter().any(|&x| x != 0.0), || {
        format!("{what}: all {} initial weights are zero; a scale-invariant loss is undefined at w = 0", w0.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        "[problem]\nkind = \"toy3d\"\n[optimizer]\nkind = \"gd_wd\"\nlr = 0.5\nwd = 0.08\n[run]\nsteps = 10\n";

    #[test]
    fn minimal_config_gets_defaults_and_round_trips() {
        let c = parse(MIN, "t").unwrap();
        c.validate().unwrap();
        assert_eq!(c.sharpness.k, 1);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(parse(&text, "t").unwrap(), c);
        assert!(text.contains("eos_band"), "resolved config writes every default:\n{text}");
    }

    #[test]
    fn unknown_key_names_nearest() {
        let e = parse(&MIN.replace("lr = 0.5", "lrr = 0.5"), "t").unwrap_err().to_string();
        assert!(e.contains("unknown key `lrr`: did you mean `lr`?"), "{e}");
        let e = parse(&format!("{MIN}[sharpnes]\nk = 2\n"), "t").unwrap_err().to_string();
        assert!(e.contains("did you mean `sharpness`?"), "{e}");
        let e = parse(&MIN.replace("\"toy3d\"", "\"toy3\""), "t").unwrap_err().to_string();
        assert!(e.contains("did you mean `toy3d`?"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Arbitrary text never panics the parser or the validation.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Ok(c) = parse(&text, "fuzz") {
                let _ = c.validate();
            }
        }

        /// Cut or corrupt a valid config anywhere: an error or a config, never a panic.
        #[test]
        fn mutated_configs_never_panic(cut in 0usize..200, pos in 0usize..200, byte in 0u8..128) {
            let base = MIN.to_string() + "[sharpness]\nevery = 5\nk = 2\n[output]\nformats = [\"png\"]\n";
            let mut b = base.as_bytes().to_vec();
            let p = pos % b.len();
            b[p] = byte;
            b.truncate(cut.min(b.len()));
            if let Ok(text) = String::from_utf8(b)
                && let Ok(c) = parse(&text, "fuzz")
            {
                let _ = c.validate();
            }
        }
    }
}
