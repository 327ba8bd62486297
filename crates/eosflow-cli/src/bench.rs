//! `eosflow bench`: timings of one GD+WD step, one HVP and one sharpness
//! evaluation on a config's problem, as JSON (used by `bench/*.py`, which
//! run the Python references side by side). Not a test: nothing asserts.

use crate::config::{Config, ProblemConfig};
use anyhow::Result;
use eosflow::sharpness::spherical_sharpness;
use eosflow::spectrum::LanczosParams;
use std::time::Instant;

fn quantiles(mut v: Vec<f64>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    serde_json::json!({ "median": q(0.5), "p10": q(0.1), "p90": q(0.9), "n": v.len() })
}

/// The process's peak resident memory so far (MB), where the OS reports it:
/// for networks, what a ghost batch's graph needs (the allocator keeps freed
/// memory, so this is the high-water mark of steps and HVPs together).
fn peak_rss_mb() -> Option<f64> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage fills the struct we pass; zeroed is a valid rusage.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            // ru_maxrss is in KB on Linux (bytes on macOS).
            let kb = if cfg!(target_os = "macos") { ru.ru_maxrss as f64 / 1024.0 } else { ru.ru_maxrss as f64 };
            return Some(kb / 1024.0);
        }
    }
    None
}

pub fn run(cfg: &Config, warmup: u64, timed: u64, evals: usize, hvps: usize) -> Result<serde_json::Value> {
    let mut prep = crate::setup::prepare(cfg)?;
    let p = prep.problem.as_ref();
    let opt = prep.optimizer.as_mut();
    for _ in 0..warmup {
        opt.evaluate(p);
        opt.update();
    }
    // Under MPI the exchange's share of a step and of an HVP, on rank 0.
    let c0 = crate::ranks::counters();
    let mut step_us = Vec::with_capacity(timed as usize);
    for _ in 0..timed {
        let t = Instant::now();
        opt.evaluate(p);
        opt.update();
        step_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let w = opt.params().to_vec();
    let h = p.hessian_at(&w);
    let v: Vec<f64> = (0..w.len()).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
    let c1 = crate::ranks::counters();
    let mut hv = vec![0.0; w.len()];
    let mut hvp_us = Vec::new();
    for _ in 0..hvps.max(1) {
        let t = Instant::now();
        h.apply(&v, &mut hv);
        hvp_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let c2 = crate::ranks::counters();
    let per = |a: (f64, u64), b: (f64, u64), n: usize| {
        let n = n.max(1) as f64;
        serde_json::json!({ "exchange_us": (b.0 - a.0) * 1e6 / n, "bytes_sent": (b.1 - a.1) as f64 / n })
    };
    let mpi = serde_json::json!({
        "ranks": crate::ranks::size(),
        "per_step": per(c0, c1, timed as usize),
        "per_hvp": per(c1, c2, hvps.max(1)),
    });
    let mut out = serde_json::json!({
        "problem": p.name(),
        "dim": w.len(),
        "warmup_steps": warmup,
        "step_us": quantiles(step_us),
        "hvp_us": quantiles(hvp_us),
        "peak_rss_mb_after_steps_and_hvps": peak_rss_mb(),
    });
    if crate::ranks::size() > 1 {
        out["mpi"] = mpi;
    }
    // A network computed in f32: the same HVP in f64 at the same w and v,
    // so the report states what the precision costs in accuracy.
    if let ProblemConfig::Nn(nn) = &cfg.problem
        && nn.precision == eosflow_nn::Precision::F32
    {
        let nn64 = crate::problems::NnConfig { precision: eosflow_nn::Precision::F64, ..nn.clone() };
        let (p64, _) = crate::problems::build_net_problem(&nn64, cfg)?;
        let mut hv64 = vec![0.0; w.len()];
        eosflow::Hessian::hessian_at(&p64, &w).apply(&v, &mut hv64);
        let (mut d, mut n) = (0.0, 0.0);
        for (a, b) in hv.iter().zip(&hv64) {
            d += (a - b) * (a - b);
            n += b * b;
        }
        out["hvp_f32_relative_error_vs_f64"] = serde_json::json!((d / n).sqrt());
    }
    if evals == 0 {
        return Ok(out);
    }
    let lp = LanczosParams { tol: 1e-8, ..prep.params.lanczos.clone() };
    let (mut cold_ms, mut cold_hvps) = (Vec::new(), 0);
    let mut s0 = None;
    for _ in 0..evals {
        let t = Instant::now();
        let s = spherical_sharpness(p, &w, &lp, None)?;
        cold_ms.push(t.elapsed().as_secs_f64() * 1e3);
        cold_hvps = s.hvps;
        s0 = Some(s);
    }
    let s0 = s0.expect("evals ≥ 1 here");
    // Warm start as in a run: the eigenvector from 100 steps earlier.
    for _ in 0..100 {
        opt.evaluate(p);
        opt.update();
    }
    let w2 = opt.params().to_vec();
    let (mut warm_ms, mut warm_hvps, mut warm_val, mut warm_res) = (Vec::new(), 0, 0.0, 0.0);
    for _ in 0..evals {
        let t = Instant::now();
        let s = spherical_sharpness(p, &w2, &lp, Some(&s0.eigenvector))?;
        warm_ms.push(t.elapsed().as_secs_f64() * 1e3);
        (warm_hvps, warm_val, warm_res) = (s.hvps, s.spherical, s.residual);
    }
    let extra = serde_json::json!({
        "sharpness_cold_at_step": warmup + timed,
        "sharpness_warm_at_step": warmup + timed + 100,
        "sharpness_cold_ms": quantiles(cold_ms),
        "sharpness_cold_hvps": cold_hvps,
        "sharpness_cold_value": s0.spherical,
        "sharpness_warm_ms": quantiles(warm_ms),
        "sharpness_warm_hvps": warm_hvps,
        "sharpness_warm_value": warm_val,
        "sharpness_warm_relative_residual": warm_res / warm_val.abs(),
        "lanczos_tol": lp.tol,
    });
    if let (Some(o), serde_json::Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    Ok(out)
}
