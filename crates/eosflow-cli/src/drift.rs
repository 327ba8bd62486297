//! `[drift]`: the RMS-drift variables (h, u) of eq. (16) and the energy of
//! (17) along a run (`eosflow::drift::RmsDrift`), then the run's cycles
//! against the Hamiltonian's predictions: `drift_cycles.csv`, `drift.json`
//! and `figures/fig5.*`.

use crate::config::{Config, check};
use anyhow::{Context, Result};
use eosflow::drift::{Cycle, DriftParams, Hamiltonian, cycles, drift_columns as D};
use eosflow::flow::FlowTime;
use eosflow::run::columns as C;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;

/// `[drift]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// K's ‖∇_Γ log λ1(φ_t)‖ on every k_every-th logged step.
    #[serde(default = "hundred")]
    pub k_every: u64,
    /// Cycles whose smallest displacement η·|h| is below this are left out
    /// of the comparisons: there the oscillation is at rounding level and
    /// grows from noise, not by (17).
    #[serde(default = "floor")]
    pub displacement_floor: f64,
    /// The last fraction of the valid cycles that stands for "late in the
    /// run" in the fixed-point comparison.
    #[serde(default = "fifth")]
    pub late_fraction: f64,
}

fn hundred() -> u64 {
    100
}
fn floor() -> f64 {
    1e-10
}
fn fifth() -> f64 {
    0.2
}

impl DriftConfig {
    pub fn validate(&self, cfg: &Config) -> Result<()> {
        check(self.k_every >= 1, || "drift.k_every must be at least 1".into())?;
        check(self.displacement_floor >= 0.0, || "drift.displacement_floor must be ≥ 0".into())?;
        check(self.late_fraction > 0.0 && self.late_fraction <= 1.0, || {
            "drift.late_fraction must be in (0, 1]".into()
        })?;
        check(cfg.run.log_every <= 10, || {
            format!(
                "[drift] measures the oscillation on logged steps: run.log_every = {} would alias it; set it to 1 \
                 (at most 10)",
                cfg.run.log_every
            )
        })?;
        crate::flow::flow_time(&cfg.optimizer).map(|_| ())
    }
}

/// η and C_b of the quasi-RMSprop view of the config's optimizer: GD+WD is
/// a quasi-RMSprop scheduler with η = √(2η_in), C_b = 2 (Thm B.9); Scalar
/// RMSprop has its own η and C_b = (1 − β)/η².
pub fn eta_c_b(cfg: &Config) -> Result<(f64, f64)> {
    let (time, tau_per_step) = crate::flow::flow_time(&cfg.optimizer)?;
    Ok(match time {
        FlowTime::GdWd => ((2.0 * tau_per_step).sqrt(), 2.0),
        FlowTime::QuasiRmsprop { c_b } => (tau_per_step.sqrt(), c_b),
    })
}

/// The tracker's settings.
pub fn params(cfg: &Config, d: &DriftConfig) -> Result<DriftParams> {
    let (eta, c_b) = eta_c_b(cfg)?;
    let fc = cfg.flow.clone().unwrap_or_default();
    let mut lanczos = cfg.sharpness.lanczos();
    lanczos.k = 1;
    Ok(DriftParams {
        eta,
        c_b,
        k_every: d.k_every,
        lanczos,
        flow: crate::flow::flow_params(&fc, FlowTime::QuasiRmsprop { c_b }, 0.0),
    })
}

/// What the analysis found, for the report and the figure.
pub struct DriftAnalysis {
    pub eta: f64,
    pub c_b: f64,
    pub cycles: Vec<Cycle>,
    /// Which cycles passed the displacement floor.
    pub valid: Vec<bool>,
    /// The measured path: (τ', x = log|h|, p = −u, E) on finite steps.
    pub path: Vec<(f64, f64, f64, f64)>,
    pub summary: serde_json::Value,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

/// Reads the run's drift columns, cuts them into cycles and compares them
/// with (17): writes `drift_cycles.csv` and `drift.json` into `dir`.
pub fn analyse(cfg: &Config, d: &DriftConfig, dir: &Path) -> Result<DriftAnalysis> {
    let (eta, c_b) = eta_c_b(cfg)?;
    let data = crate::plot::RunData::load(dir)?;
    let col = |c: eosflow::run::Column| data.metrics.get(c.name()).cloned().unwrap_or_default();
    let (step, h, u, k, e, loss, lam) =
        (col(C::STEP), col(D::H), col(D::U), col(D::K), col(D::ENERGY), col(C::LOSS), col(D::SHARPNESS));
    let tau: Vec<f64> = step.iter().map(|s| s * eta).collect();
    let cyc = cycles(&tau, &h, &u, &k, &e, c_b);
    let valid: Vec<bool> = cyc.iter().map(|c| eta * c.h_min >= d.displacement_floor).collect();
    let path: Vec<(f64, f64, f64, f64)> = (0..tau.len().min(h.len()).min(u.len()).min(e.len()))
        .filter(|&i| h[i].is_finite() && h[i] != 0.0 && u[i].is_finite() && e[i].is_finite())
        .map(|i| (tau[i], h[i].abs().ln(), -u[i], e[i]))
        .collect();
    // Cycles table, in steps (τ'/η) as well as τ'.
    let path_csv = dir.join("drift_cycles.csv");
    let mut w = csv::Writer::from_path(&path_csv).with_context(|| format!("cannot write {}", path_csv.display()))?;
    w.write_record([
        "start_step",
        "end_step",
        "measured_period_steps",
        "predicted_period_steps",
        "energy",
        "k",
        "h_min",
        "h_max",
        "mean_h2",
        "predicted_mean_h2",
        "valid",
    ])?;
    let f = |x: f64| if x.is_finite() { x.to_string() } else { String::new() };
    for (c, ok) in cyc.iter().zip(&valid) {
        w.write_record([
            f(c.start / eta),
            f(c.end / eta),
            f(c.measured_period / eta),
            c.predicted_period.map_or(String::new(), |p| f(p / eta)),
            f(c.energy),
            f(c.k),
            f(c.h_min),
            f(c.h_max),
            f(c.mean_h2),
            f(c_b / (2.0 * c.k * c.k)),
            ok.to_string(),
        ])?;
    }
    w.flush()?;
    let good: Vec<&Cycle> = cyc.iter().zip(&valid).filter(|(_, v)| **v).map(|(c, _)| c).collect();
    let rel = |c: &&Cycle| c.predicted_period.map(|p| c.measured_period / p - 1.0);
    let period_err: Vec<f64> = good.iter().filter_map(rel).collect();
    let n_late = ((good.len() as f64 * d.late_fraction).ceil() as usize).min(good.len());
    let late = &good[good.len() - n_late..];
    let in_late = |t: f64| late.first().is_some_and(|c| t >= c.start) && late.last().is_some_and(|c| t <= c.end);
    let late_loss = mean(tau.iter().zip(&loss).filter(|(t, _)| in_late(**t)).map(|(_, l)| *l));
    let late_lam = mean(tau.iter().zip(&lam).filter(|(t, _)| in_late(**t)).map(|(_, l)| *l));
    let late_k = mean(late.iter().map(|c| c.k));
    let late_h2 = mean(late.iter().map(|c| c.mean_h2));
    let late_period = mean(late.iter().map(|c| c.measured_period));
    let late_pred = mean(late.iter().filter_map(|c| c.predicted_period));
    let ham = Hamiltonian { k: late_k, c_b };
    // The end of the run: the last late_fraction of the measured steps,
    // where the oscillation may have settled at the map's fixed point.
    let finite: Vec<usize> = (0..h.len().min(u.len()).min(k.len()))
        .filter(|&i| h[i].is_finite() && u[i].is_finite() && k[i].is_finite())
        .collect();
    let tail = &finite[finite.len() - ((finite.len() as f64 * d.late_fraction).ceil() as usize).min(finite.len())..];
    let end_k = mean(tail.iter().map(|&i| k[i]));
    let end_h2 = mean(tail.iter().map(|&i| h[i] * h[i]));
    let end_lam = mean(tail.iter().filter_map(|&i| lam.get(i).copied()));
    let end_loss = mean(tail.iter().filter_map(|&i| loss.get(i).copied()));
    let end_h_star2 = c_b / (2.0 * end_k * end_k);
    // E − E* per valid cycle against the flow's time τ = t·η²/2 (= t·η_in
    // for GD+WD): the rate at which the oscillation's energy relaxes
    // (negative) or grows.
    let decay: Vec<(f64, f64)> = good
        .iter()
        .map(|c| (0.5 * (c.start + c.end) * eta / 2.0, c.energy - Hamiltonian { k: c.k, c_b }.fixed_point_energy()))
        .filter(|p| p.1 > 1e-3)
        .collect();
    let (tx, ly): (Vec<f64>, Vec<f64>) = decay.iter().map(|p| (p.0, p.1.ln())).unzip();
    let rate = (decay.len() >= 3).then(|| eosflow::tracking::fit_line(&tx, &ly)).flatten().map(|f| f.0);
    let energies: Vec<f64> = good.iter().map(|c| c.energy).collect();
    let summary = json!({
        "eta": eta,
        "c_b": c_b,
        "time_unit": "tau' = t*eta (eq. 17); periods also in steps",
        "cycles": cyc.len(),
        "valid_cycles": good.len(),
        "displacement_floor": d.displacement_floor,
        "first_valid_cycle_step": good.first().map(|c| c.start / eta),
        "period_rel_error": {
            "median": median(period_err.clone()),
            "max_abs": period_err.iter().fold(0.0f64, |a, b| a.max(b.abs())),
        },
        "energy": {
            "first_valid_cycle": energies.first(),
            "last_valid_cycle": energies.last(),
            "min": energies.iter().copied().fold(f64::INFINITY, f64::min),
            "max": energies.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "fixed_point": late_k.is_finite().then(|| ham.fixed_point_energy()),
            "log_excess_rate_per_unit_flow_time": rate,
        },
        "late": {
            "cycles": late.len(),
            "from_step": late.first().map(|c| c.start / eta),
            "measured_period_steps": late_period / eta,
            "predicted_period_at_energy_steps": late_pred / eta,
            "small_oscillation_period_steps": ham.small_oscillation_period() / eta,
            "measured_rms_h": late_h2.sqrt(),
            "predicted_rms_h": (c_b / (2.0 * late_k * late_k)).sqrt(),
            "measured_rms_displacement": eta * late_h2.sqrt(),
            "predicted_rms_displacement": eta * (c_b / (2.0 * late_k * late_k)).sqrt(),
            "measured_train_loss": late_loss,
            "predicted_train_loss": late_lam * eta * eta * c_b / (4.0 * late_k * late_k),
            "k": late_k,
        },
        "end": {
            "steps": tail.len(),
            "from_step": tail.first().and_then(|&i| step.get(i)),
            "measured_rms_h": end_h2.sqrt(),
            "fixed_point_h": end_h_star2.sqrt(),
            "measured_mean_u": mean(tail.iter().map(|&i| u[i])),
            "measured_train_loss": end_loss,
            "fixed_point_train_loss": end_lam * eta * eta * end_h_star2 / 2.0,
            "k": end_k,
        },
    });
    crate::rundir::write_atomic(&dir.join("drift.json"), (serde_json::to_string_pretty(&summary)? + "\n").as_bytes())?;
    Ok(DriftAnalysis { eta, c_b, cycles: cyc, valid, path, summary })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// The report's lines, from the run directory's drift.json.
pub fn print(dir: &Path) {
    let Some(s) = std::fs::read_to_string(dir.join("drift.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return;
    };
    let late = &s["late"];
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!("  drift: {}", dir.join("drift_cycles.csv").display());
    println!(
        "  RMS drift (η = {:.4}, C_b = {}): {} cycles, {} above the displacement floor; period vs (17) at the measured \
         energy: median {:+.2e}, worst {:.2e}",
        num(&s["eta"]),
        num(&s["c_b"]),
        s["cycles"],
        s["valid_cycles"],
        num(&s["period_rel_error"]["median"]),
        num(&s["period_rel_error"]["max_abs"]),
    );
    println!(
        "  energy over the valid cycles: {:.4} → {:.4} (fixed point {:.4})",
        num(&s["energy"]["first_valid_cycle"]),
        num(&s["energy"]["last_valid_cycle"]),
        num(&s["energy"]["fixed_point"]),
    );
    println!(
        "  late: period {:.1} steps (at that energy {:.1}, small oscillations {:.1}); RMS displacement {:.3e} (predicted \
         {:.3e}); train loss {:.3e} (predicted {:.3e})",
        num(&late["measured_period_steps"]),
        num(&late["predicted_period_at_energy_steps"]),
        num(&late["small_oscillation_period_steps"]),
        num(&late["measured_rms_displacement"]),
        num(&late["predicted_rms_displacement"]),
        num(&late["measured_train_loss"]),
        num(&late["predicted_train_loss"]),
    );
    let end = &s["end"];
    println!(
        "  end: RMS h {:.4} (fixed point of (17) {:.4}), mean u {:+.3e} (0), train loss {:.3e} (fixed point {:.3e})",
        num(&end["measured_rms_h"]),
        num(&end["fixed_point_h"]),
        num(&end["measured_mean_u"]),
        num(&end["measured_train_loss"]),
        num(&end["fixed_point_train_loss"]),
    );
}
