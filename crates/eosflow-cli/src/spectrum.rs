//! `eosflow spectrum TARGET`: the Hessian's spectrum at one point of a run
//! (w_final, w0, a step, a .npy) or of a config — top-k and bottom-k
//! eigenvalues (largest / smallest algebraic), the trace (Hutch++ with a
//! standard error), the spectral density (SLQ) and per-block values — into
//! `spectrum/`: eigen.csv, trace.json, density.csv, blocks.csv,
//! summary.json and figures/spectrum.*.

use crate::config::{Config, OptimizerConfig};
use anyhow::{Context, Result, bail};
use eosflow::spectrum::{
    BlockSet, LanczosParams, SlqParams, TraceParams, hutch_pp, lanczos_bottom, lanczos_top, select_blocks, slq,
};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What to compute.
pub struct SpectrumArgs {
    /// Where w comes from: "final", "w0", a step, or a .npy file.
    pub at: Option<String>,
    /// Top-k and bottom-k eigenpairs.
    pub k: usize,
    /// SLQ probes and Lanczos steps per probe.
    pub probes: usize,
    pub steps: usize,
    /// Hutch++ operator applications (rounded up to a multiple of 3).
    pub trace_probes: usize,
    /// "all", "si" or "layers".
    pub blocks: String,
    pub out: Option<PathBuf>,
}

/// The point: a run's w_final (default), w0, a step (snapshot or rerun) or
/// a .npy file.
pub(crate) fn point(
    cfg: &Config,
    run_dir: Option<&Path>,
    at: Option<&str>,
    dim: usize,
    w0: Vec<f64>,
) -> Result<(Vec<f64>, String)> {
    let at = at.unwrap_or(if run_dir.is_some() { "final" } else { "w0" });
    Ok(match (at, run_dir) {
        ("w0", _) => (w0, "w0".into()),
        ("final", Some(d)) => (crate::npy::read_vector(&d.join("w_final.npy"), Some(dim))?, "w_final".into()),
        ("final", None) => bail!("--at final needs a run directory; give one, or --at w0 / a .npy file"),
        (f, _) if f.ends_with(".npy") => (crate::npy::read_vector(Path::new(f), Some(dim))?, f.to_string()),
        (s, Some(d)) if s.parse::<u64>().is_ok() => {
            let t: u64 = s.parse()?;
            (crate::flow::iterate_at(cfg, d, dim, t, &crate::rundir::snapshot_name(t))?, format!("step {t}"))
        }
        (s, _) => bail!("--at {s}: expected final, w0, a step of a run directory, or a .npy file"),
    })
}

/// Runs the estimates for `cfg` (from `run_dir` when given).
pub fn run(cfg: &Config, run_dir: Option<&Path>, args: &SpectrumArgs) -> Result<PathBuf> {
    let prep = crate::setup::prepare(cfg)?;
    let problem = prep.problem;
    let dim = problem.dim();
    let (w, source) = point(cfg, run_dir, args.at.as_deref(), dim, prep.optimizer.params().to_vec())?;
    let dir = match (&args.out, run_dir) {
        (Some(o), _) => o.clone(),
        (None, Some(d)) => d.join("spectrum"),
        (None, None) => crate::default_dir(&format!("{}-spectrum", cfg.name)),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = std::time::Instant::now();
    let lanczos = LanczosParams { k: args.k.clamp(1, dim), ..cfg.sharpness.lanczos() };
    let trace = TraceParams { probes: args.trace_probes.max(6).div_ceil(3) * 3, seed: cfg.sharpness.seed };
    let slq_params = SlqParams {
        probes: args.probes.max(1),
        steps: args.steps.max(1),
        seed: cfg.sharpness.seed,
        ..Default::default()
    };
    let h = problem.hessian_at(&w);
    let eff_lr = |norm2: f64| match cfg.optimizer {
        OptimizerConfig::GdWd { lr, wd } => Some(lr / ((1.0 - lr * wd) * norm2)),
        _ => None,
    };
    let mut eigen = csv::Writer::from_path(dir.join("eigen.csv"))?;
    eigen.write_record(["block", "end", "index", "eigenvalue", "spherical", "residual"])?;
    let mut table = csv::Writer::from_path(dir.join("blocks.csv"))?;
    table.write_record([
        "block",
        "size",
        "w_norm2",
        "top",
        "top_times_w_norm2",
        "bottom",
        "trace",
        "trace_std_error",
        "eff_lr",
        "converged",
    ])?;
    let mut traces = serde_json::Map::new();
    let mut bars = Vec::new();
    let mut full = None;
    let mut density_s = 0.0;
    let which: BlockSet = args.blocks.parse().map_err(|e: String| anyhow::anyhow!("--blocks: {e}"))?;
    let blocks = select_blocks(problem.as_ref(), which)?;
    let n_blocks = blocks.len();
    // Stages: per block its top, bottom and trace, then the density.
    let bar = stage_bar(3 * n_blocks as u64 + 1);
    let mut block_timing = Vec::new();
    for (b, block) in blocks.into_iter().enumerate() {
        block.with_operator(h.as_ref(), |op| -> Result<()> {
            let n = op.dim();
            let norm2 = block.norm2(&w);
            let scale = if block.spherical { norm2 } else { 1.0 };
            let p = LanczosParams { k: lanczos.k.min(n), ..lanczos.clone() };
            let clock = std::time::Instant::now();
            bar.set_message(format!("block {} ({n}): top eigenvalues", block.name));
            let top = lanczos_top(op, &p, None).with_context(|| format!("block {}: Lanczos", block.name))?;
            let top_s = clock.elapsed().as_secs_f64();
            bar.inc(1);
            bar.set_message(format!("block {} ({n}): bottom eigenvalues", block.name));
            let bottom = lanczos_bottom(op, &p, None).with_context(|| format!("block {}: Lanczos", block.name))?;
            bar.inc(1);
            bar.set_message(format!("block {} ({n}): trace", block.name));
            for (end, r) in [("top", &top), ("bottom", &bottom)] {
                for (i, (l, res)) in r.eigenvalues.iter().zip(&r.residuals).enumerate() {
                    eigen.write_record([
                        block.name.clone(),
                        end.into(),
                        (i + 1).to_string(),
                        l.to_string(),
                        (l * scale).to_string(),
                        res.to_string(),
                    ])?;
                }
            }
            let t = hutch_pp(op, &trace.capped(n))?;
            bar.inc(1);
            block_timing.push(json!({
                "block": block.name,
                "top_s": top_s,
                "top_hvps": top.matvecs,
                "total_s": clock.elapsed().as_secs_f64(),
            }));
            table.write_record([
                block.name.clone(),
                n.to_string(),
                norm2.to_string(),
                top.eigenvalues[0].to_string(),
                (top.eigenvalues[0] * norm2).to_string(),
                bottom.eigenvalues[0].to_string(),
                t.estimate.to_string(),
                t.std_error.to_string(),
                eff_lr(norm2).map_or(String::new(), |v| v.to_string()),
                (top.converged && bottom.converged).to_string(),
            ])?;
            traces.insert(
                block.name.clone(),
                json!({
                    "estimator": "hutch++",
                    "trace": t.estimate,
                    "std_error": t.std_error,
                    "matvecs": t.matvecs,
                    "spherical_trace": t.estimate * scale,
                }),
            );
            bars.push((block.name.clone(), top.eigenvalues[0] * if n_blocks > 1 && b > 0 { norm2 } else { scale }));
            if b == 0 {
                bar.set_message(format!(
                    "SLQ density: {} probes × {} Lanczos steps",
                    slq_params.probes, slq_params.steps
                ));
                let clock = std::time::Instant::now();
                let d = slq(op, &slq_params)?;
                density_s = clock.elapsed().as_secs_f64();
                bar.inc(1);
                full = Some((d, scale, top.eigenvalues.clone(), bottom.eigenvalues.clone(), t.clone()));
            }
            bar.suspend(|| {
                eprintln!(
                    "block {} ({n} parameters): λ1 = {:.6e}, λ_min = {:.6e}, trace = {:.6e} ± {:.1e}",
                    block.name,
                    top.eigenvalues[0] * scale,
                    bottom.eigenvalues[0] * scale,
                    t.estimate * scale,
                    t.std_error * scale
                )
            });
            Ok(())
        })?;
    }
    bar.finish_and_clear();
    eigen.flush()?;
    table.flush()?;
    let (d, scale, top, bottom, t) = full.expect("the whole Hessian comes first");
    let mut dens = csv::Writer::from_path(dir.join("density.csv"))?;
    dens.write_record(["eigenvalue", "density"])?;
    // In spherical units the eigenvalues scale by ‖w‖² and the density by
    // 1/‖w‖² (it integrates to 1 either way).
    for (x, y) in d.grid.iter().zip(&d.density) {
        dens.write_record([(x * scale).to_string(), (y / scale).to_string()])?;
    }
    dens.flush()?;
    crate::rundir::write_atomic(&dir.join("trace.json"), (serde_json::to_string_pretty(&traces)? + "\n").as_bytes())?;
    let lo = d.quadratures.iter().flat_map(|q| q.nodes.iter().copied()).fold(f64::INFINITY, f64::min) * scale;
    let hi = d.quadratures.iter().flat_map(|q| q.nodes.iter().copied()).fold(f64::NEG_INFINITY, f64::max) * scale;
    let summary = json!({
        "point": source,
        "dim": dim,
        "spherical_units": scale != 1.0,
        "w_norm2": w.iter().map(|x| x * x).sum::<f64>(),
        "top": top.iter().map(|l| l * scale).collect::<Vec<_>>(),
        "bottom": bottom.iter().map(|l| l * scale).collect::<Vec<_>>(),
        "trace": t.estimate * scale,
        "trace_std_error": t.std_error * scale,
        "density": { "probes": slq_params.probes, "steps": slq_params.steps, "sigma": d.sigma * scale, "support": [lo, hi], "matvecs": d.matvecs },
        "blocks": args.blocks,
        "timing": { "total_s": started.elapsed().as_secs_f64(), "density_s": density_s, "blocks": block_timing },
    });
    crate::rundir::write_atomic(
        &dir.join("summary.json"),
        (serde_json::to_string_pretty(&summary)? + "\n").as_bytes(),
    )?;
    let figs = crate::plot::plot_spectrum(
        &dir,
        &cfg.name,
        &d.grid.iter().map(|x| x * scale).collect::<Vec<_>>(),
        &d.density.iter().map(|y| y / scale).collect::<Vec<_>>(),
        top[0] * scale,
        &bars,
        &cfg.output.formats,
    )?;
    println!(
        "{}: Hessian at {source} (D = {dim}{}): top {:?}, bottom {:?}, trace {:.6e} ± {:.1e}; SLQ support [{lo:.4e}, {hi:.4e}]",
        cfg.name,
        if scale != 1.0 { ", spherical units ×‖w‖²" } else { "" },
        top.iter().map(|l| format!("{:.6e}", l * scale)).collect::<Vec<_>>(),
        bottom.iter().map(|l| format!("{:.6e}", l * scale)).collect::<Vec<_>>(),
        t.estimate * scale,
        t.std_error * scale,
    );
    println!("  spectrum directory: {}", dir.display());
    for f in figs {
        println!("  figure: {}", f.display());
    }
    Ok(dir)
}

/// A bar over the estimate's stages on stderr, hidden when stderr is not a
/// terminal (a density of a large network takes minutes).
fn stage_bar(stages: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(stages);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} stages  {elapsed}  {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
