//! `--seeds`: one run per seed, in parallel on the available cores, and a
//! table of their key results (`seeds.csv`).

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
    let bad = || {
        format!(
            "--seeds {spec:?}: expected a range like 0..20 (end excluded), 0..=19, or a list like 1,5,9"
        )
    };
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

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn run_sweep(
    cfg: Config,
    spec: &str,
    out: Option<PathBuf>,
    force: bool,
    token: &CancelToken,
) -> Result<ExitCode> {
    let seeds = parse_seeds(spec)?;
    cfg.validate()?;
    let dir = out.unwrap_or_else(|| crate::default_dir(&format!("{}-seeds", cfg.name)));
    rundir::create(&dir, force)?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len());
    eprintln!(
        "running {} seeds on {workers} threads into {}",
        seeds.len(),
        dir.display()
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(u64, Result<RunSummary, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..workers {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= seeds.len() || token.is_cancelled() {
                        break;
                    }
                    let s = seeds[i];
                    let mut c = cfg.clone();
                    c.problem.set_seeds(s);
                    c.name = format!("{}-seed{s}", cfg.name);
                    let sub = dir.join(format!("seed-{s}"));
                    let r = (|| -> Result<RunSummary> {
                        rundir::create(&sub, force)?;
                        let prep = setup::prepare(&c)?;
                        Ok(crate::run_in_dir(&c, prep, &sub, token, false)?.0)
                    })()
                    .map_err(|e| format!("{e:#}"));
                    results.lock().unwrap().push((s, r));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(s, _)| *s);

    // The table: generic columns, then every scalar of the problem summary.
    let mut keys: Vec<String> = Vec::new();
    for (_, r) in &results {
        if let Ok(s) = r {
            for (k, v) in &s.problem {
                if !v.is_array() && !v.is_object() && !v.is_string() && !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let path = dir.join("seeds.csv");
    let mut w = csv::Writer::from_path(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut header: Vec<String> = [
        "seed",
        "status",
        "last_step",
        "final_loss",
        "first_eos_step",
    ]
    .map(String::from)
    .to_vec();
    header.extend(keys.iter().cloned());
    w.write_record(&header)?;
    let mut failed = 0;
    for (s, r) in &results {
        let mut row = vec![s.to_string()];
        match r {
            Ok(sum) => {
                let status = match &sum.status {
                    Status::Completed => "completed".to_string(),
                    Status::Diverged { step, .. } => format!("diverged@{step}"),
                    Status::Interrupted { step } => format!("interrupted@{step}"),
                };
                row.extend([
                    status,
                    sum.last_step.to_string(),
                    sum.final_loss.to_string(),
                    sum.first_eos_step.map_or(String::new(), |v| v.to_string()),
                ]);
                row.extend(
                    keys.iter()
                        .map(|k| sum.problem.get(k).map_or(String::new(), cell)),
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("seed {s}: error: {e}");
                row.extend([
                    "error".to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                row.extend(keys.iter().map(|_| String::new()));
            }
        }
        w.write_record(&row)?;
    }
    w.flush()?;

    print_table(&cfg, &results);
    println!("  table: {}", path.display());
    if failed > 0 {
        bail!(
            "{failed} of {} seeds failed (see the messages above)",
            results.len()
        );
    }
    Ok(if token.is_cancelled() {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(cfg: &Config, results: &[(u64, Result<RunSummary, String>)]) {
    let num = |s: &RunSummary, k: &str| s.problem.get(k).and_then(|v| v.as_f64());
    if cfg.problem.kind() == "linreg_bn" {
        println!(
            "{:>5} {:>10} {:>14} {:>14} {:>6} {:>14} {:>14}",
            "seed",
            "eos_entry",
            "test@entry",
            "test@end",
            "fell",
            "|phi-theta_M|",
            "lam1/lam_min-1"
        );
        let (mut fell, mut counted) = (0, 0);
        for (s, r) in results {
            let Ok(sum) = r else { continue };
            let (a, b) = (
                num(sum, "test_loss_at_eos_entry"),
                num(sum, "test_loss_final"),
            );
            let f = match (a, b) {
                (Some(a), Some(b)) => {
                    counted += 1;
                    if b < a {
                        fell += 1;
                    }
                    if b < a { "yes" } else { "no" }
                }
                _ => "-",
            };
            let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4e}"));
            println!(
                "{:>5} {:>10} {:>14} {:>14} {:>6} {:>14} {:>14}",
                s,
                sum.problem.get("eos_entry_step").map_or("-".into(), cell),
                fmt(a),
                fmt(b),
                f,
                fmt(num(sum, "phi_dist_m_final")),
                fmt(num(sum, "phi_sharpness_final_rel_excess")),
            );
        }
        println!("test loss fell from EoS entry to the end in {fell} of {counted} seeds");
    } else {
        for (s, r) in results {
            match r {
                Ok(sum) => println!(
                    "seed {s}: last step {}, final loss {:.6e}",
                    sum.last_step, sum.final_loss
                ),
                Err(e) => println!("seed {s}: error: {e}"),
            }
        }
    }
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
