//! The run directory: its creation, and the observer that writes
//! metrics.csv, sharpness.csv and w_final.npy.

use anyhow::{Context, Result, bail};
use eosflow::run::{Observer, ObserverError, RunState, RunSummary, SharpnessRecord, StepRecord};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The files eosflow writes into a run directory (removed by `--force`).
pub const OUTPUTS: &[&str] = &[
    "config.toml",
    "metrics.csv",
    "sharpness.csv",
    SPECTRUM_CSV,
    "summary.json",
    "w_final.npy",
    "figures",
    "snapshots",
    "flow",
    "spectrum",
    "bound.json",
];

/// The snapshot of w at step t (`run.save_w_at`), under `snapshots/`.
pub fn snapshot_name(step: u64) -> String {
    format!("w_step_{step}.npy")
}

/// The snapshot at the EoS entry (`run.save_w_at_eos_entry`), under `snapshots/`.
pub const EOS_ENTRY_SNAPSHOT: &str = "w_eos_entry.npy";

/// Creates `dir`, refusing a non-empty one unless `force`; with `force`,
/// removes eosflow's own outputs from a previous run (nothing else).
pub fn create(dir: &Path, force: bool) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("output path {} exists and is not a directory", dir.display());
        }
        let non_empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read output directory {}", dir.display()))?
            .next()
            .is_some();
        if non_empty && !force {
            bail!(
                "output directory {} is not empty; choose another --out, or pass --force to overwrite eosflow's files in it",
                dir.display()
            );
        }
        for name in OUTPUTS {
            let p = dir.join(name);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            } else if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder,
/// fsync, then rename — a crash leaves the old file or the new, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let res = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.with_context(|| format!("cannot write {}", path.display()))
}

fn fmt(x: f64) -> String {
    // Shortest representation that parses back to the same f64 (ryu), with
    // an exponent for tiny and huge values: the CSV holds the exact numbers.
    if x.is_finite() { ryu::Buffer::new().format_finite(x).to_string() } else { format!("{x}") }
}

/// Byte lengths of the CSV files at a checkpoint: resuming truncates them
/// there, so rows written after the checkpoint (before a crash) are dropped
/// and written again.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CsvOffsets {
    pub metrics_bytes: u64,
    pub sharpness_bytes: u64,
    /// spectrum.csv's length, when the run has `[spectrum]` (absent in
    /// checkpoints written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrum_bytes: Option<u64>,
}

/// The run-directory format this eosflow writes: `format_version` in
/// config.toml, checkpoint/state.json and summary.json.
///
/// - 0: eosflow 0.1.0 before formats were versioned (no `format_version`
///   key; checkpoints without evaluation counts). Read and migrated.
/// - 1: adds `format_version`, summary.json's `counts` and `eosflow` (version,
///   git commit, CPU features, kernels), the checkpoint's counts.
/// - 2: an `nn` config.toml holds only the keys of its architecture
///   (`hidden`, `activation` for si-mlp; `vgg`, `width` for si-vgg; `width`
///   for the ResNets). Formats 0 and 1 wrote all four: reading drops the
///   others.
pub const RUN_FORMAT: u32 = 2;

/// Refuses a run directory written by a newer eosflow (`what` names the file).
pub fn check_format(what: &Path, version: u32) -> Result<()> {
    if version > RUN_FORMAT {
        bail!(
            "{} was written by a newer eosflow (run-directory format {version}); this eosflow {} reads formats 0 to {RUN_FORMAT}: use the eosflow that wrote it (its summary.json names the version and git commit), or rerun the config with this one",
            what.display(),
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(())
}

/// What `checkpoint/state.json` holds: the runner's state and the CSV offsets.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CheckpointFile {
    /// [`RUN_FORMAT`] of the writer; 0 (absent) for eosflow 0.1.0's first format.
    #[serde(default)]
    pub format_version: u32,
    pub eosflow_version: String,
    pub offsets: CsvOffsets,
    pub run: RunState,
}

/// Writes a checkpoint into `dir/checkpoint/` atomically: everything goes to
/// `checkpoint.tmp/` (each file fsynced), the previous checkpoint is renamed
/// to `checkpoint.old/`, the new one into place, then the old one removed. A
/// crash at any moment leaves a complete `checkpoint/` or `checkpoint.old/`.
pub fn write_checkpoint(dir: &Path, state: &RunState, offsets: CsvOffsets) -> Result<()> {
    let tmp = dir.join("checkpoint.tmp");
    let cur = dir.join("checkpoint");
    let old = dir.join("checkpoint.old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let file = CheckpointFile {
        format_version: RUN_FORMAT,
        eosflow_version: env!("CARGO_PKG_VERSION").into(),
        offsets,
        run: state.clone(),
    };
    write_atomic(&tmp.join("state.json"), serde_json::to_string(&file)?.as_bytes())?;
    write_atomic(&tmp.join("params.npy"), &crate::npy::encode_vector(&state.params)?)?;
    if let Some(w) = &state.warm {
        write_atomic(&tmp.join("warm.npy"), &crate::npy::encode_vector(w)?)?;
    }
    if cur.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
        }
        std::fs::rename(&cur, &old).with_context(|| format!("cannot rename {}", cur.display()))?;
    }
    std::fs::rename(&tmp, &cur).with_context(|| format!("cannot rename {} to {}", tmp.display(), cur.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether `dir` holds a checkpoint to resume from (`checkpoint/` or the
/// `checkpoint.old/` a crash during a checkpoint leaves).
pub fn has_checkpoint(dir: &Path) -> bool {
    (dir.join("checkpoint/state.json").is_file() && dir.join("checkpoint/params.npy").is_file())
        || dir.join("checkpoint.old/state.json").is_file()
}

/// Reads the newest complete checkpoint of a run directory.
pub fn read_checkpoint(dir: &Path) -> Result<(RunState, CsvOffsets)> {
    let cur = dir.join("checkpoint");
    let src = if cur.join("state.json").is_file() && cur.join("params.npy").is_file() {
        cur
    } else if dir.join("checkpoint.old/state.json").is_file() {
        dir.join("checkpoint.old")
    } else {
        bail!(
            "{} has no checkpoint to resume from (set [run] checkpoint_every, or the run was stopped before its first checkpoint)",
            dir.display()
        );
    };
    let text = std::fs::read_to_string(src.join("state.json"))
        .with_context(|| format!("cannot read {}", src.join("state.json").display()))?;
    let file: CheckpointFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is corrupt or from another eosflow version", src.join("state.json").display()))?;
    check_format(&src.join("state.json"), file.format_version)?;
    let mut run = file.run;
    if file.format_version == 0 {
        // Format 0 counted only the runner's own gradients and sharpness
        // HVPs: the totals go on from those (a lower bound for the rest).
        run.counts = eosflow::Counts { gradients: run.gradient_evals, hvps: run.hvps, ..Default::default() };
    }
    run.params = crate::npy::read_vector(&src.join("params.npy"), None)?;
    let warm = src.join("warm.npy");
    run.warm = if warm.is_file() { Some(crate::npy::read_vector(&warm, None)?) } else { None };
    Ok((run, file.offsets))
}

/// `[spectrum]`'s file: one row per block per evaluation.
pub const SPECTRUM_CSV: &str = "spectrum.csv";

/// spectrum.csv's header: `top` = λ1(H_BB), `top_times_w_norm2` = λ1·‖w_B‖²
/// (the spherical sharpness of a scale-invariant block), the trace by
/// Hutch++ with its standard error (empty when skipped), all of H_BB.
pub const SPECTRUM_COLUMNS: [&str; 11] = [
    "step",
    "block",
    "size",
    "w_norm2",
    "top",
    "top_times_w_norm2",
    "residual",
    "converged",
    "trace",
    "trace_std_error",
    "hvps",
];

/// Writes metrics.csv and sharpness.csv row by row, w_final.npy at the end,
/// and the checkpoints.
pub struct CsvObserver {
    dir: PathBuf,
    metrics: Option<csv::Writer<BufWriter<File>>>,
    sharpness: Option<csv::Writer<BufWriter<File>>>,
    /// spectrum.csv, when the run has `[spectrum]`.
    spectrum: Option<csv::Writer<BufWriter<File>>>,
    with_spectrum: bool,
    k: usize,
    /// Resuming: truncate the CSVs to these lengths and append (no header).
    resume_at: Option<CsvOffsets>,
}

impl CsvObserver {
    pub fn new(dir: &Path, k: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            metrics: None,
            sharpness: None,
            spectrum: None,
            with_spectrum: false,
            k,
            resume_at: None,
        }
    }

    /// Also writes spectrum.csv (the run has `[spectrum]`).
    pub fn with_spectrum(mut self) -> Self {
        self.with_spectrum = true;
        self
    }

    /// An observer continuing the CSVs of `dir` from a checkpoint.
    pub fn resuming(dir: &Path, k: usize, offsets: CsvOffsets) -> Self {
        Self { resume_at: Some(offsets), ..Self::new(dir, k) }
    }

    fn open(&self, name: &str, keep: Option<u64>) -> Result<csv::Writer<BufWriter<File>>, ObserverError> {
        let p = self.dir.join(name);
        let f = match keep {
            None => File::create(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?,
            Some(len) => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(|e| format!("cannot open {} to resume it: {e}", p.display()))?;
                let have = f.metadata().map_err(|e| format!("{}: {e}", p.display()))?.len();
                if have < len {
                    return Err(format!(
                        "{} has {have} bytes but the checkpoint recorded {len}: the file was truncated or replaced",
                        p.display()
                    )
                    .into());
                }
                f.set_len(len).map_err(|e| format!("cannot truncate {}: {e}", p.display()))?;
                let mut f = f;
                std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).map_err(|e| format!("{}: {e}", p.display()))?;
                f
            }
        };
        Ok(csv::WriterBuilder::new().has_headers(false).from_writer(BufWriter::new(f)))
    }

    fn new_spectrum_csv(&self) -> Result<csv::Writer<BufWriter<File>>, ObserverError> {
        let mut w = self.open(SPECTRUM_CSV, None)?;
        w.write_record(SPECTRUM_COLUMNS).map_err(|e| werr(&self.dir.join(SPECTRUM_CSV), e))?;
        Ok(w)
    }

    fn flushed_len(w: &mut Option<csv::Writer<BufWriter<File>>>, path: &Path) -> Result<u64, ObserverError> {
        let w = w.as_mut().expect("on_start first");
        w.flush().map_err(|e| werr(path, e))?;
        let f = w.get_ref().get_ref();
        f.sync_data().map_err(|e| werr(path, e))?;
        Ok(f.metadata().map_err(|e| werr(path, e))?.len())
    }
}

fn werr(file: &Path, e: impl std::fmt::Display) -> ObserverError {
    format!("cannot write {}: {e}", file.display()).into()
}

impl Observer for CsvObserver {
    fn on_start(&mut self, extra: &[&str]) -> Result<(), ObserverError> {
        if let Some(at) = self.resume_at {
            self.metrics = Some(self.open("metrics.csv", Some(at.metrics_bytes))?);
            self.sharpness = Some(self.open("sharpness.csv", Some(at.sharpness_bytes))?);
            if self.with_spectrum {
                self.spectrum = Some(match at.spectrum_bytes {
                    Some(len) => self.open(SPECTRUM_CSV, Some(len))?,
                    None => self.new_spectrum_csv()?,
                });
            }
            return Ok(());
        }
        let mut m = self.open("metrics.csv", None)?;
        let mut header: Vec<&str> = eosflow::run::columns::METRICS.iter().map(|c| c.name()).collect();
        header.extend_from_slice(extra);
        m.write_record(&header).map_err(|e| werr(&self.dir.join("metrics.csv"), e))?;
        let mut s = self.open("sharpness.csv", None)?;
        let mut h: Vec<String> = eosflow::run::columns::SHARPNESS_CSV.iter().map(|c| c.name().to_string()).collect();
        h.extend((1..=self.k).map(|i| format!("lambda_{i}")));
        s.write_record(&h).map_err(|e| werr(&self.dir.join("sharpness.csv"), e))?;
        self.metrics = Some(m);
        self.sharpness = Some(s);
        if self.with_spectrum {
            self.spectrum = Some(self.new_spectrum_csv()?);
        }
        Ok(())
    }

    fn on_checkpoint(&mut self, state: &RunState) -> Result<(), ObserverError> {
        let offsets = CsvOffsets {
            metrics_bytes: Self::flushed_len(&mut self.metrics, &self.dir.join("metrics.csv"))?,
            sharpness_bytes: Self::flushed_len(&mut self.sharpness, &self.dir.join("sharpness.csv"))?,
            spectrum_bytes: match self.spectrum {
                Some(_) => Some(Self::flushed_len(&mut self.spectrum, &self.dir.join(SPECTRUM_CSV))?),
                None => None,
            },
        };
        write_checkpoint(&self.dir, state, offsets).map_err(|e| format!("{e:#}").into())
    }

    fn on_step(&mut self, r: &StepRecord, _w: &[f64]) -> Result<(), ObserverError> {
        // Field by field from a reused ryu buffer: this runs every step, and
        // allocating a String per number costs more than the arithmetic.
        let wr = self.metrics.as_mut().expect("on_start first");
        let mut buf = ryu::Buffer::new();
        let mut put = |wr: &mut csv::Writer<BufWriter<File>>, x: f64| {
            if x.is_finite() { wr.write_field(buf.format_finite(x)) } else { wr.write_field(format!("{x}")) }
        };
        let res = (|| -> csv::Result<()> {
            wr.write_field(r.step.to_string())?;
            for x in [r.loss, r.grad_norm, r.w_norm, r.eff_lr, r.two_over_eff_lr] {
                put(wr, x)?;
            }
            match r.sharpness {
                Some(x) => put(wr, x)?,
                None => wr.write_field("")?,
            }
            wr.write_field(r.regime.map_or("", |g| g.as_str()))?;
            for x in &r.extra {
                put(wr, *x)?;
            }
            wr.write_record(None::<&[u8]>)
        })();
        res.map_err(|e| werr(&self.dir.join("metrics.csv"), e))
    }

    fn on_sharpness(&mut self, r: &SharpnessRecord) -> Result<(), ObserverError> {
        let mut row =
            vec![r.step.to_string(), fmt(r.sharpness), fmt(r.residual), r.hvps.to_string(), r.converged.to_string()];
        row.extend(r.top_k.iter().map(|x| fmt(*x)));
        let path = self.dir.join("sharpness.csv");
        self.sharpness.as_mut().expect("on_start first").write_record(&row).map_err(|e| werr(&path, e))
    }

    fn on_spectrum(&mut self, step: u64, blocks: &[eosflow::spectrum::BlockSpectrum]) -> Result<(), ObserverError> {
        let path = self.dir.join(SPECTRUM_CSV);
        let Some(wr) = self.spectrum.as_mut() else { return Ok(()) };
        for b in blocks {
            let (trace, se) =
                b.trace.as_ref().map_or((String::new(), String::new()), |t| (fmt(t.estimate), fmt(t.std_error)));
            wr.write_record([
                step.to_string(),
                b.name.clone(),
                b.size.to_string(),
                fmt(b.w_norm2),
                fmt(b.top[0]),
                fmt(b.top_times_w_norm2()),
                fmt(b.residual),
                b.converged.to_string(),
                trace,
                se,
                b.hvps.to_string(),
            ])
            .map_err(|e| werr(&path, e))?;
        }
        Ok(())
    }

    fn on_snapshot(&mut self, step: u64, w: &[f64], eos_entry: bool) -> Result<(), ObserverError> {
        let dir = self.dir.join("snapshots");
        std::fs::create_dir_all(&dir).map_err(|e| werr(&dir, e))?;
        let bytes = crate::npy::encode_vector(w).map_err(|e| werr(&dir, e))?;
        let mut names = vec![snapshot_name(step)];
        if eos_entry {
            names.push(EOS_ENTRY_SNAPSHOT.to_string());
        }
        for name in names {
            write_atomic(&dir.join(&name), &bytes).map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    }

    fn on_finish(&mut self, _s: &RunSummary, w: &[f64]) -> Result<(), ObserverError> {
        // Each file is attempted even when an earlier one fails (a CSV over
        // a full disk must not cost the small w_final.npy); the first
        // failure is reported.
        let mut first: Option<ObserverError> = None;
        for (name, wr) in [
            ("metrics.csv", self.metrics.as_mut()),
            ("sharpness.csv", self.sharpness.as_mut()),
            (SPECTRUM_CSV, self.spectrum.as_mut()),
        ] {
            if let Some(Err(e)) = wr.map(|wr| wr.flush()) {
                first.get_or_insert(werr(&self.dir.join(name), e));
            }
        }
        let p = self.dir.join("w_final.npy");
        let written = crate::npy::encode_vector(w)
            .map_err(|e| werr(&p, e))
            .and_then(|bytes| write_atomic(&p, &bytes).map_err(|e| format!("{e:#}").into()));
        if let Err(e) = written {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}

/// A progress bar on stderr (step/s, ETA); hidden when stderr is not a terminal.
pub struct ProgressObserver {
    bar: indicatif::ProgressBar,
}

impl ProgressObserver {
    /// A bar for `steps` steps; hidden unless `enabled` and stderr is a terminal.
    pub fn new(steps: u64, enabled: bool) -> Self {
        use std::io::IsTerminal;
        let bar = if enabled && std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(steps);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40.cyan/blue} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        Self { bar }
    }
}

impl Observer for ProgressObserver {
    fn on_step(&mut self, r: &StepRecord, _w: &[f64]) -> Result<(), ObserverError> {
        self.bar.set_position(r.step);
        if r.step.is_multiple_of(64) {
            self.bar.set_message(format!("loss {:.3e}", r.loss));
        }
        Ok(())
    }
    fn on_finish(&mut self, _s: &RunSummary, _w: &[f64]) -> Result<(), ObserverError> {
        self.bar.finish_and_clear();
        Ok(())
    }
}
