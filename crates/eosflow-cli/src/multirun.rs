//! Runs of many configs in one process: `--seeds` (one run per seed, a
//! table `seeds.csv`), multi-run presets (`runs.csv` and a combined figure),
//! and the workers and tables they and `eosflow sweep` share.

use crate::config::Config;
use crate::{rundir, setup};
use anyhow::{Context, Result, bail};
use eosflow::run::{CancelToken, RunSummary, Status};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Parses `a..b` (b excluded), `a..=b`, or `s1,s2,…`.
pub fn parse_seeds(spec: &str) -> Result<Vec<u64>> {
    let bad = || format!("--seeds {spec:?}: expected a range like 0..20 (end excluded), 0..=19, or a list like 1,5,9");
    let num = |t: &str| t.trim().parse::<u64>().with_context(bad);
    let seeds: Vec<u64> = if let Some((a, b)) = spec.split_once("..=") {
        (num(a)?..=num(b)?).collect()
    } else if let Some((a, b)) = spec.split_once("..") {
        (num(a)?..num(b)?).collect()
    } else {
        spec.split(',').map(num).collect::<Result<_>>()?
    };
    if seeds.is_empty() {
        bail!("--seeds {spec:?} selects no seed");
    }
    Ok(seeds)
}

pub(crate) fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// f over `items` on the available cores (at most one thread an item),
/// each item once, until the token is cancelled; the results in the
/// items' order, those not started left out.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    token: &CancelToken,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<(usize, R)> {
    let workers = workers_for(items.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..workers {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= items.len() || token.is_cancelled() {
                        break;
                    }
                    let r = f(&items[i]);
                    results.lock().unwrap().push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results
}

/// The threads [`parallel_map`] uses for `n` items.
pub(crate) fn workers_for(n: usize) -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(n).max(1)
}

/// Runs each (label, config) into `dir/<label>/`, in parallel on the
/// available cores; returns the results in the order given.
fn run_jobs(
    jobs: &[(String, Config)],
    dir: &std::path::Path,
    force: bool,
    token: &CancelToken,
) -> Vec<(String, Result<RunSummary, String>)> {
    eprintln!("running {} runs on {} threads into {}", jobs.len(), workers_for(jobs.len()), dir.display());
    let results = parallel_map(jobs, token, |(label, c)| {
        let sub = dir.join(label);
        (|| -> Result<RunSummary> {
            rundir::create(&sub, force)?;
            let prep = setup::prepare(c)?;
            Ok(crate::run_in_dir(c, prep, &sub, token, false, None, None)?.0)
        })()
        .map_err(|e| format!("{e:#}"))
    });
    results.into_iter().map(|(i, r)| (jobs[i].0.clone(), r)).collect()
}

/// Writes one row per run: generic columns, then every scalar of the
/// problem summaries. A run without a summary (`Err(word)`) gets `word` as
/// its status ("error", "missing") and empty cells.
pub(crate) fn write_table(
    path: &std::path::Path,
    first: &str,
    rows: &[(String, Result<&RunSummary, &str>)],
) -> Result<()> {
    let mut keys: Vec<String> = Vec::new();
    for (_, r) in rows {
        if let Ok(s) = r {
            for (k, v) in &s.problem {
                if !v.is_array() && !v.is_object() && !v.is_string() && !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let mut w = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut header: Vec<String> =
        [first, "status", "last_step", "final_loss", "eos_entry_step", "initial_sharpness"].map(String::from).to_vec();
    header.extend(["max_sharpness", "final_sharpness"].map(String::from));
    header.extend(keys.iter().cloned());
    w.write_record(&header)?;
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    for (label, r) in rows {
        let mut row = vec![label.clone()];
        match r {
            Ok(sum) => {
                row.extend([
                    status_cell(&sum.status),
                    sum.last_step.to_string(),
                    sum.final_loss.to_string(),
                    sum.eos_entry_step.map_or(String::new(), |v| v.to_string()),
                    opt(sum.initial_sharpness),
                    opt(sum.max_sharpness),
                    opt(sum.final_sharpness),
                ]);
                row.extend(keys.iter().map(|k| sum.problem.get(k).map_or(String::new(), cell)));
            }
            Err(word) => {
                row.push(word.to_string());
                row.extend((0..6 + keys.len()).map(|_| String::new()));
            }
        }
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

/// A run's status as a table cell: `completed`, `diverged@t`, …
pub(crate) fn status_cell(status: &Status) -> String {
    match status {
        Status::Completed => "completed".to_string(),
        Status::Diverged { step, .. } => format!("diverged@{step}"),
        Status::Interrupted { step } => format!("interrupted@{step}"),
        Status::Error { step, .. } => format!("error@{step}"),
    }
}

/// [`write_table`] of runs that ran here; returns how many failed.
fn write_results(
    path: &std::path::Path,
    first: &str,
    results: &[(String, Result<RunSummary, String>)],
) -> Result<usize> {
    let rows: Vec<(String, Result<&RunSummary, &str>)> =
        results.iter().map(|(l, r)| (l.clone(), r.as_ref().map_err(|_| "error"))).collect();
    write_table(path, first, &rows)?;
    Ok(results.iter().filter(|(_, r)| r.is_err()).count())
}

pub fn run_sweep(cfg: Config, spec: &str, out: Option<PathBuf>, force: bool, token: &CancelToken) -> Result<ExitCode> {
    let seeds = parse_seeds(spec)?;
    cfg.validate()?;
    let dir = out.unwrap_or_else(|| crate::default_dir(&format!("{}-seeds", cfg.name)));
    rundir::create(&dir, force)?;
    let jobs: Vec<(String, Config)> = seeds
        .iter()
        .map(|&s| {
            let mut c = cfg.clone();
            c.problem.set_seeds(s);
            c.name = format!("{}-seed{s}", cfg.name);
            (format!("seed-{s}"), c)
        })
        .collect();
    let results = run_jobs(&jobs, &dir, force, token);
    let path = dir.join("seeds.csv");
    let failed = write_results(&path, "run", &results)?;
    let with_seeds: Vec<(u64, Result<RunSummary, String>)> =
        seeds.iter().copied().zip(results.into_iter().map(|(_, r)| r)).collect();
    print_table(&cfg, &with_seeds);
    println!("  table: {}", path.display());
    if failed > 0 {
        bail!("{failed} of {} seeds failed (see the messages above)", with_seeds.len());
    }
    Ok(if token.is_cancelled() { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// Checks every job's config, then creates the output directory (`out` or
/// `runs/<name>-<timestamp>`): what a multi-run preset or experiment does
/// before its first run.
pub(crate) fn validated_dir(
    name: &str,
    jobs: &[(String, Config)],
    out: Option<PathBuf>,
    force: bool,
) -> Result<PathBuf> {
    for (label, c) in jobs {
        c.validate()?;
        c.data.check_inputs().with_context(|| format!("{name} ({label})"))?;
    }
    let dir = out.unwrap_or_else(|| crate::default_dir(name));
    rundir::create(&dir, force)?;
    Ok(dir)
}

/// A multi-run preset: each variant into `dir/<label>/`, a table
/// `runs.csv`, and a combined figure.
pub fn run_variants(
    name: &str,
    jobs: Vec<(String, Config)>,
    out: Option<PathBuf>,
    force: bool,
    token: &CancelToken,
) -> Result<ExitCode> {
    let dir = validated_dir(name, &jobs, out, force)?;
    let results = run_jobs(&jobs, &dir, force, token);
    let path = dir.join("runs.csv");
    let failed = write_results(&path, "run", &results)?;
    for ((label, r), (_, c)) in results.iter().zip(&jobs) {
        match r {
            Ok(s) => println!("{}", c.problem.get().variant_line(label, s)),
            Err(e) => println!("{label}: error: {e}"),
        }
        if r.is_ok() && c.drift.is_some() {
            crate::drift::print(&dir.join(label));
        }
    }
    let done: Vec<(String, &Config)> =
        results.iter().zip(&jobs).filter(|((_, r), _)| r.is_ok()).map(|((l, _), (_, c))| (l.clone(), c)).collect();
    for f in combined_figure(&dir, name, &done)? {
        println!("  figure: {}", f.display());
    }
    println!("  table: {}", path.display());
    if failed > 0 {
        bail!("{failed} of {} runs failed (see the messages above)", results.len());
    }
    Ok(if token.is_cancelled() { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// The figure of several runs of one problem overlaid (fig6, fig14, a
/// sweep), from `dir/<label>/`; none where the runs are different problems
/// (fig5's two problems each have their own figures) or there are none.
pub(crate) fn combined_figure(dir: &std::path::Path, name: &str, runs: &[(String, &Config)]) -> Result<Vec<PathBuf>> {
    let Some((_, first)) = runs.first() else { return Ok(Vec::new()) };
    let problem = first.problem.get();
    if runs.iter().any(|(_, c)| c.problem.kind() != problem.kind()) {
        return Ok(Vec::new());
    }
    let labels: Vec<String> = runs.iter().map(|(l, _)| l.clone()).collect();
    crate::plot::plot_variants(dir, name, problem.figure(), &labels, &first.output.formats)
}

/// `eosflow plot DIR` on a directory of many runs (a multi-run preset's or
/// a sweep's, listed in `DIR/runs.csv`): every run's figures, then the
/// combined figure, named as the runs were (`<name>-<label>`). Runs without
/// files yet (a sweep's missing ones) are skipped.
pub(crate) fn replot(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let table = dir.join("runs.csv");
    let mut reader = csv::Reader::from_path(&table).with_context(|| format!("cannot read {}", table.display()))?;
    let mut figs = Vec::new();
    let mut runs: Vec<(String, Config)> = Vec::new();
    for rec in reader.records() {
        let rec = rec.with_context(|| format!("{} is not a runs table", table.display()))?;
        let label = rec.get(0).unwrap_or_default().to_string();
        let sub = dir.join(&label);
        if !sub.join("metrics.csv").exists() || !sub.join("config.toml").exists() {
            continue;
        }
        figs.extend(crate::replot_run(&sub)?);
        runs.push((label, crate::load_run_config(&sub)?));
    }
    let Some((label, first)) = runs.first() else {
        bail!("{}: none of the runs in runs.csv has its files (metrics.csv, config.toml) yet", dir.display());
    };
    let name = first.name.strip_suffix(&format!("-{label}")).unwrap_or(&first.name).to_string();
    let refs: Vec<(String, &Config)> = runs.iter().map(|(l, c)| (l.clone(), c)).collect();
    figs.extend(combined_figure(dir, &name, &refs)?);
    Ok(figs)
}

fn print_table(cfg: &Config, results: &[(u64, Result<RunSummary, String>)]) {
    cfg.problem.get().print_seed_table(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_specs() {
        assert_eq!(parse_seeds("0..3").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_seeds("2..=4").unwrap(), vec![2, 3, 4]);
        assert_eq!(parse_seeds("5, 1,9").unwrap(), vec![5, 1, 9]);
        assert!(parse_seeds("3..3").is_err());
        assert!(format!("{:#}", parse_seeds("a..b").unwrap_err()).contains("expected a range"));
    }
}
