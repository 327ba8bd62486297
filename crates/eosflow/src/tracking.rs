//! Theorem 4.6 (GD+WD), Theorem B.13 and Corollary B.14 (Scalar RMSprop) as
//! experiments: start an optimizer by the theorems' initialisation scheme
//! near ζ0 ∈ Γ, run it to τ = T, and measure how far its iterate strays from
//! the sharpness-reduction flow ζ(τ) started at ζ0.
//!
//! The theorems bound ‖θ_t − ζ(t·η_in)‖ by O(η_in^{1/4 − o(1)}) for GD+WD
//! (Thm 4.6; ‖θ_t − ζ(tη²)‖ = O(η^{1/2}·log(1/η)) in the quasi-RMSprop
//! units of Thms B.10/B.13), and Remark 4.7 puts the period-2 oscillation
//! itself at O(η_in^{1/2 − o(1)}). [`fit_exponent`] reads the rate off
//! runs at several learning rates.
//!
//! ```
//! use eosflow::flow::{Flow, FlowParams, FlowPath};
//! use eosflow::optim::GdWd;
//! use eosflow::problems::Toy3d;
//! use eosflow::tracking::{TrackingParams, gd_wd_init, track};
//! let p = Toy3d::unrotated();
//! let r = ((1.0 - 0.36) / 2.0_f64).sqrt();
//! let flow = Flow::new(&p, &[r, r, 0.6], FlowParams::default()).unwrap();
//! let (zeta0, lambda0) = (flow.point().zeta.clone(), flow.point().sharpness);
//! let path = FlowPath::record(flow, 1.0).unwrap();
//! // η_in = η̂λ̂ = 1e-3: T = 1 is 1000 steps.
//! let (lr, eta_in) = (0.5, 1e-3);
//! let w0 = gd_wd_init(&zeta0, lambda0, lr, eta_in / lr, 0.1 * eta_in.sqrt(), 0);
//! let mut opt = GdWd::new(lr, eta_in / lr, w0);
//! let params = TrackingParams { steps: 1000, tau_per_step: eta_in, ..Default::default() };
//! let t = track(&p, &mut opt, &path, &params);
//! assert!(t.diverged.is_none());
//! assert!(t.max_dist < 0.1, "{}", t.max_dist);
//! ```

use crate::flow::FlowPath;
use crate::linalg::{dist, normalize};
use crate::manifold::ManifoldDomain;
use crate::optim::{GdWd, Optimizer};
use crate::problems::Problem;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// ζ0 + ξ with ξ ~ N(0, σ0²·I/D), from ChaCha8 stream [`PERTURBATION_STREAM`]
/// of `seed` (the smoothed initial direction of Sec. 4.2.2 and App. B.3).
pub fn perturb(zeta0: &[f64], sigma0: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(PERTURBATION_STREAM);
    let s = sigma0 / (zeta0.len() as f64).sqrt();
    zeta0
        .iter()
        .map(|z| {
            let g: f64 = StandardNormal.sample(&mut rng);
            z + s * g
        })
        .collect()
}

/// The ChaCha8 stream of [`perturb`]. The problems draw their data from
/// stream 0 of their seed (linreg_bn its init from stream 1): with stream 0
/// here, seed 0 replayed linreg_bn's w_GT, whose direction lies in Γ's
/// linear span, and ξ had no normal component at all.
pub const PERTURBATION_STREAM: u64 = 7;

/// Thm 4.6's initialisation scheme for GD+WD with LR η̂ and WD λ̂: the
/// direction θ0 = Π(ζ0 + ξ) ([`perturb`]) and the norm that makes the first
/// effective LR η̃0 = η̂/((1 − η̂λ̂)‖w0‖²) equal 2/λ1(ζ0) exactly, i.e.
/// ‖w0‖² = η̂·λ1(ζ0)/(2(1 − η̂λ̂)). `sharpness0` is λ1(H(ζ0)) at unit ζ0.
pub fn gd_wd_init(zeta0: &[f64], sharpness0: f64, lr: f64, wd: f64, sigma0: f64, seed: u64) -> Vec<f64> {
    let mut w = perturb(zeta0, sigma0, seed);
    normalize(&mut w);
    let r = (lr * sharpness0 / (2.0 * (1.0 - lr * wd))).sqrt();
    w.iter_mut().for_each(|x| *x *= r);
    w
}

/// Thm B.13's initialisation scheme for Scalar RMSprop (Cor. B.14) with base
/// LR η: w0 = ζ0 + ξ and the moment v0 = η²·ṽ0 with 1/√ṽ0 = 2/λ1(ζ0), so
/// the first effective LR η/√v0 is 2/λ1(ζ0). Returns (w0, v0).
pub fn scalar_rmsprop_init(zeta0: &[f64], sharpness0: f64, eta: f64, sigma0: f64, seed: u64) -> (Vec<f64>, f64) {
    let v0 = eta * eta * sharpness0 * sharpness0 / 4.0;
    (perturb(zeta0, sigma0, seed), v0)
}

/// Settings of [`track`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrackingParams {
    /// Steps to take (T/η_in for GD+WD, T/η² for eq. (8)).
    pub steps: u64,
    /// τ per step: η_in for eq. (3), η² for eq. (8).
    pub tau_per_step: f64,
    /// About this many [`TracePoint`]s, evenly spaced in steps (and the last).
    pub trace_points: usize,
}

impl Default for TrackingParams {
    fn default() -> Self {
        Self { steps: 1000, tau_per_step: 1e-3, trace_points: 400 }
    }
}

/// One sampled step of a tracked run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TracePoint {
    /// t.
    pub step: u64,
    /// τ = t·(τ per step).
    pub tau: f64,
    /// ‖θ_t − ζ(τ)‖ (θ_t = w_t/‖w_t‖ on the sphere, w_t in full space).
    pub dist: f64,
    /// ‖φ_t − ζ(τ)‖ with φ_t the problem's projection of θ_t onto Γ
    /// ([`Problem::project_onto_gamma`]; NaN where it has none).
    pub phi_dist: f64,
    /// λ1(ζ(τ)).
    pub flow_sharpness: f64,
    /// 2/η̃_t, which sits at the sharpness in EoS.
    pub two_over_eff_lr: f64,
    /// L(w_t).
    pub loss: f64,
}

/// What [`track`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracking {
    /// Steps taken.
    pub steps: u64,
    /// max over 0 ≤ t ≤ steps of ‖θ_t − ζ(tτ)‖: what Thm 4.6 bounds.
    pub max_dist: f64,
    /// The step of that maximum.
    pub max_dist_step: u64,
    /// max of ‖φ_t − ζ(tτ)‖ (NaN without a projection): the drift alone,
    /// without the oscillation across Γ.
    pub max_phi_dist: f64,
    /// ‖θ_T − ζ(T)‖.
    pub final_dist: f64,
    /// ‖φ_T − ζ(T)‖.
    pub final_phi_dist: f64,
    /// The first step whose loss or iterate was not finite.
    pub diverged: Option<u64>,
    /// Sampled steps.
    pub trace: Vec<TracePoint>,
}

/// Runs `opt` for `params.steps` steps on `problem` and measures, at every
/// step t, ‖θ_t − ζ(t·τ)‖ against `path` (and ‖φ_t − ζ‖ where the problem
/// projects onto Γ exactly). `opt` starts where the caller put it
/// ([`gd_wd_init`], [`scalar_rmsprop_init`]).
pub fn track(problem: &dyn Problem, opt: &mut dyn Optimizer, path: &FlowPath, params: &TrackingParams) -> Tracking {
    let every = (params.steps / params.trace_points.max(1) as u64).max(1);
    let mut out = Tracking {
        steps: 0,
        max_dist: 0.0,
        max_dist_step: 0,
        max_phi_dist: f64::NAN,
        final_dist: f64::NAN,
        final_phi_dist: f64::NAN,
        diverged: None,
        trace: Vec::new(),
    };
    let mut theta = vec![0.0; problem.dim()];
    for t in 0..=params.steps {
        let e = opt.evaluate(problem);
        theta.copy_from_slice(opt.params());
        if !e.loss.is_finite() || theta.iter().any(|x| !x.is_finite()) {
            out.diverged = Some(t);
            break;
        }
        if path.domain == ManifoldDomain::Sphere {
            normalize(&mut theta);
        }
        let tau = t as f64 * params.tau_per_step;
        let (zeta, flow_sharpness) = path.at(tau);
        let d = dist(&theta, &zeta);
        let phi_dist = problem.project_onto_gamma(&theta).map_or(f64::NAN, |phi| dist(&phi, &zeta));
        if d > out.max_dist {
            out.max_dist = d;
            out.max_dist_step = t;
        }
        // f64::max keeps the number when one side is NaN.
        out.max_phi_dist = out.max_phi_dist.max(phi_dist);
        out.steps = t;
        out.final_dist = d;
        out.final_phi_dist = phi_dist;
        if t % every == 0 || t == params.steps {
            out.trace.push(TracePoint {
                step: t,
                tau,
                dist: d,
                phi_dist,
                flow_sharpness,
                two_over_eff_lr: 2.0 / e.eff_lr,
                loss: e.loss,
            });
        }
        if t < params.steps {
            opt.update();
        }
    }
    out
}

/// The least-squares line through (log x, log y): (exponent, prefactor) of
/// y ≈ c·x^p. Points with a non-positive or non-finite coordinate are
/// skipped; None with fewer than two distinct x left.
///
/// ```
/// let x = [1e-4, 1e-3, 1e-2];
/// let y: Vec<f64> = x.iter().map(|v: &f64| 3.0 * v.powf(0.5)).collect();
/// let (p, c) = eosflow::tracking::fit_exponent(&x, &y).unwrap();
/// assert!((p - 0.5).abs() < 1e-12 && (c - 3.0).abs() < 1e-10);
/// ```
pub fn fit_exponent(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let (lx, ly): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite() && **a > 0.0 && **b > 0.0)
        .map(|(a, b)| (a.ln(), b.ln()))
        .unzip();
    fit_line(&lx, &ly).map(|(slope, icpt)| (slope, icpt.exp()))
}

/// The least-squares line y ≈ a·x + b through the finite points: (a, b);
/// None with fewer than two distinct x.
pub fn fit_line(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> =
        x.iter().zip(y).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(a, b)| (*a, *b)).collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

/// What [`eos_entry`] measured: Thm 4.3's entry into EoS from the stable
/// regime near θ* ∈ Γ.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Entry {
    /// t1: the first step with η̃_t ≥ 2/λ1(φ_t) (φ_t the projection of
    /// θ_t onto Γ), None if it did not come within the step budget.
    pub step: Option<u64>,
    /// The least t1 that (14) allows: η̃ grows by at most (1 − η̂λ̂)^{−2} a
    /// step, so t1 ≥ ln(2/(λ1(φ_t1)·η̃_0)) / (−2 ln(1 − η̂λ̂)).
    pub lower_bound: Option<f64>,
    /// The step at which η̃ reaches 2/λ1(θ*) under weight decay alone
    /// (zero gradient): ln(2/(λ1(θ*)·η̃_0)) / (−2 ln(1 − η̂λ̂)).
    pub wd_only: f64,
    /// |η̃_t1 − 2/λ1(θ*)| (Thm 4.3: O(√η_in)).
    pub gap: f64,
    /// ‖θ_t1 − θ*‖ (Thm 4.3: O(√η_in)).
    pub dist: f64,
    /// ‖φ_t1 − θ*‖: how far the stable phase moved along Γ.
    pub phi_dist: f64,
    /// ‖θ_0 − θ*‖.
    pub dist0: f64,
    /// ‖φ_t1 − φ_0‖: how far the stable phase moved the projection along Γ
    /// (Thm 4.3's proof: O(√η_in) at most).
    pub phi_move: f64,
    /// L(θ_t1).
    pub loss: f64,
    /// Steps of the stable phase where the loss rose by more than 1e-9 of
    /// itself from above 1e-24 (Lemma 4.1: none while η̃_t < 2/λ_max; below
    /// 1e-24 the residual-form loss is at rounding level and moves both ways).
    pub loss_rises: u64,
}

/// Runs GD+WD (`opt`, started in the stable regime near `theta_star` ∈ Γ)
/// until its EoS entry t1 — the first step where η̃_t ≥ 2/λ1(φ_t), with
/// φ_t = [`Problem::project_onto_gamma`] and λ1 its spherical sharpness
/// (Lanczos, warm-started) — or `max_steps`, and measures what Thm 4.3
/// says of t1. Needs the problem's exact projection onto Γ.
pub fn eos_entry(
    problem: &dyn Problem,
    opt: &mut GdWd,
    theta_star: &[f64],
    sharpness_star: f64,
    max_steps: u64,
    lanczos: &crate::spectrum::LanczosParams,
) -> Entry {
    let rate = -2.0 * (1.0 - opt.lr * opt.wd).ln();
    let mut warm: Option<Vec<f64>> = None;
    let mut theta = vec![0.0; problem.dim()];
    let mut eta0 = f64::NAN;
    let mut prev_loss = f64::INFINITY;
    let mut out = Entry {
        step: None,
        lower_bound: None,
        wd_only: f64::NAN,
        gap: f64::NAN,
        dist: f64::NAN,
        phi_dist: f64::NAN,
        dist0: f64::NAN,
        phi_move: f64::NAN,
        loss: f64::NAN,
        loss_rises: 0,
    };
    let mut phi0: Option<Vec<f64>> = None;
    for t in 0..=max_steps {
        let e = opt.evaluate(problem);
        theta.copy_from_slice(opt.params());
        normalize(&mut theta);
        if t == 0 {
            eta0 = e.eff_lr;
            out.dist0 = dist(&theta, theta_star);
            out.wd_only = (2.0 / (sharpness_star * eta0)).ln() / rate;
        }
        if prev_loss > 1e-24 && e.loss > prev_loss * (1.0 + 1e-9) {
            out.loss_rises += 1;
        }
        prev_loss = e.loss;
        if let Some(phi) = problem.project_onto_gamma(&theta)
            && let Ok(s) = crate::sharpness::spherical_sharpness(problem, &phi, lanczos, warm.as_deref())
        {
            warm = Some(s.eigenvector.clone());
            let phi0 = phi0.get_or_insert_with(|| phi.clone());
            if e.eff_lr * s.spherical >= 2.0 {
                out.phi_move = dist(&phi, phi0);
                out.step = Some(t);
                out.lower_bound = Some((2.0 / (s.spherical * eta0)).ln() / rate);
                out.gap = (e.eff_lr - 2.0 / sharpness_star).abs();
                out.dist = dist(&theta, theta_star);
                out.phi_dist = dist(&phi, theta_star);
                out.loss = e.loss;
                return out;
            }
        }
        if t < max_steps {
            opt.update();
        }
    }
    out
}
