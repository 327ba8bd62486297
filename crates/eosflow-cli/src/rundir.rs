//! The run directory: its creation, and the observer that writes
//! metrics.csv, sharpness.csv and w_final.npy.

use anyhow::{Context, Result, bail};
use eosflow::run::{Observer, ObserverError, RunSummary, SharpnessRecord, StepRecord};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The files eosflow writes into a run directory (removed by `--force`).
pub const OUTPUTS: &[&str] = &["config.toml", "metrics.csv", "sharpness.csv", "summary.json", "w_final.npy", "figures"];

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

/// Writes metrics.csv and sharpness.csv row by row, and w_final.npy at the end.
pub struct CsvObserver {
    dir: PathBuf,
    metrics: Option<csv::Writer<BufWriter<File>>>,
    sharpness: Option<csv::Writer<BufWriter<File>>>,
    k: usize,
}

impl CsvObserver {
    pub fn new(dir: &Path, k: usize) -> Self {
        Self { dir: dir.to_path_buf(), metrics: None, sharpness: None, k }
    }

    fn open(&self, name: &str) -> Result<csv::Writer<BufWriter<File>>, ObserverError> {
        let p = self.dir.join(name);
        let f = File::create(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
        Ok(csv::Writer::from_writer(BufWriter::new(f)))
    }
}

fn itoa_u64(n: u64) -> String {
    n.to_string()
}

fn werr(file: &Path, e: impl std::fmt::Display) -> ObserverError {
    format!("cannot write {}: {e}", file.display()).into()
}

impl Observer for CsvObserver {
    fn on_start(&mut self, extra: &[&str]) -> Result<(), ObserverError> {
        let mut m = self.open("metrics.csv")?;
        let mut header =
            vec!["step", "loss", "grad_norm", "w_norm", "eff_lr", "two_over_eff_lr", "sharpness", "regime"];
        header.extend_from_slice(extra);
        m.write_record(&header).map_err(|e| werr(&self.dir.join("metrics.csv"), e))?;
        let mut s = self.open("sharpness.csv")?;
        let mut h: Vec<String> = ["step", "sharpness", "residual", "hvps", "converged"].map(String::from).to_vec();
        h.extend((1..=self.k).map(|i| format!("lambda_{i}")));
        s.write_record(&h).map_err(|e| werr(&self.dir.join("sharpness.csv"), e))?;
        self.metrics = Some(m);
        self.sharpness = Some(s);
        Ok(())
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
            wr.write_field(itoa_u64(r.step))?;
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

    fn on_finish(&mut self, _s: &RunSummary, w: &[f64]) -> Result<(), ObserverError> {
        for (name, wr) in [("metrics.csv", self.metrics.as_mut()), ("sharpness.csv", self.sharpness.as_mut())] {
            if let Some(wr) = wr {
                wr.flush().map_err(|e| werr(&self.dir.join(name), e))?;
            }
        }
        let p = self.dir.join("w_final.npy");
        let bytes = crate::npy::encode_vector(w).map_err(|e| werr(&p, e))?;
        write_atomic(&p, &bytes).map_err(|e| format!("{e:#}"))?;
        Ok(())
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
