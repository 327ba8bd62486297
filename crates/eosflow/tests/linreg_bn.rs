//! Linear regression with BN (Section 5, App. O): Lemma O.1 (derivatives
//! and the scale-invariance identities run in tests/identities.rs), the projections onto Γ, the
//! period-2 oscillation and Theorem 5.1 on the paper's full run.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas they check

use eosflow::linalg::{dot, norm, normalize};
use eosflow::manifold::{PgdProjection, distance, project_by_pgd};
use eosflow::optim::GdWd;
use eosflow::problems::{LinregBn, LinregData, LinregError, LinregInit, Problem};
use eosflow::run::{RunParams, Runner};
use eosflow::sharpness::spherical_sharpness;
use eosflow::spectrum::LanczosParams;
use eosflow::{Hessian, Objective};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const EPS: f64 = f64::EPSILON;

fn paper_problem(seed: u64) -> LinregBn {
    LinregBn::new(LinregData::generate(40, 20, 500, seed), LinregInit::Uniform, seed).unwrap()
}

fn gaussian(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// A point of Γ other than θ_M: the exact projection of a random direction
/// taken from the half-space that Γ lives in.
fn point_on_gamma(p: &LinregBn, rng: &mut ChaCha8Rng) -> Vec<f64> {
    loop {
        let mut t = gaussian(40, rng);
        normalize(&mut t);
        let tm = p.theta_m().unwrap();
        let t: Vec<f64> = t.iter().zip(tm).map(|(a, b)| 0.5 * a + b).collect();
        if let Some(phi) = p.project_exact(&t) {
            return phi;
        }
    }
}

#[test]
fn lemma_o1_closed_form_hessian_on_gamma() {
    // On Γ: H(w) = 2‖w̃‖²(Σ_x − zzᵀ). The exact HVP applied to the unit
    // vectors rebuilds H column by column; both sides are sums of O(n·d)
    // rounded products, so they agree to ~1e3·ε relative to ‖H‖ (measured:
    // ~1e-14).
    let p = paper_problem(5);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut points = vec![p.theta_m().unwrap().to_vec()];
    points.push(point_on_gamma(&p, &mut rng));
    points.push(point_on_gamma(&p, &mut rng).iter().map(|x| 3.0 * x).collect()); // off the sphere: (−2)-homogeneous
    for w in points {
        assert!(p.loss(&w) < 1e-28, "not on Γ: L = {:e}", p.loss(&w));
        let h = p.hessian_on_gamma(&w);
        let hmax = h.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut e = vec![0.0; 40];
        let mut col = vec![0.0; 40];
        for j in 0..40 {
            e.fill(0.0);
            e[j] = 1.0;
            p.hvp(&w, &e, &mut col);
            for i in 0..40 {
                assert!((col[i] - h[i * 40 + j]).abs() <= 1e-12 * hmax, "H[{i},{j}]: {} vs {}", col[i], h[i * 40 + j]);
            }
        }
        // λ1 by Lanczos on the exact HVP = the closed form.
        let mut theta = w.clone();
        normalize(&mut theta);
        let s = spherical_sharpness(&p, &w, &LanczosParams { tol: 1e-13, ..Default::default() }, None).unwrap();
        let closed = p.sharpness_on_gamma(&theta);
        assert!((s.spherical - closed).abs() <= 1e-12 * closed, "{} vs {closed}", s.spherical);
    }
}

#[test]
fn theta_m_is_the_min_norm_interpolant_and_the_flattest_point() {
    let p = paper_problem(7);
    let tm = p.theta_m().unwrap();
    assert!(p.loss(tm) < 1e-28);
    // (M): w̃ interpolates the data and has the least norm among interpolants:
    // adding any null-space direction of X̃ only increases ‖w̃‖ — and the
    // sharpness (Lemma O.1: λ1 ∝ ‖w̃‖²).
    let lam_m = p.sharpness_min().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for _ in 0..20 {
        let phi = point_on_gamma(&p, &mut rng);
        assert!(p.sharpness_on_gamma(&phi) >= lam_m * (1.0 - 1e-14));
        let (wt, _) = p.coefficients(&phi);
        let (wt_m, _) = p.coefficients(tm);
        assert!(norm(&wt) >= norm(&wt_m) * (1.0 - 1e-14));
    }
}

#[test]
fn exact_and_pgd_projections_agree_where_the_loss_is_tiny() {
    // θ = φ + δ·ξ (ξ a unit direction normal to Γ). Both projections land on
    // Γ; they differ by O(δ²) (gradient-flow vs nearest point), so at
    // δ = 1e-4 they agree to ~1e-8. PGD stops at L ≤ 1e-24, i.e. within
    // ~1e-12 of Γ.
    let p = paper_problem(9);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for _ in 0..5 {
        let phi = point_on_gamma(&p, &mut rng);
        let mut xi = gaussian(40, &mut rng);
        let c = dot(&xi, &phi);
        xi.iter_mut().zip(&phi).for_each(|(x, f)| *x -= c * f);
        normalize(&mut xi);
        let delta = 1e-4;
        let mut theta: Vec<f64> = phi.iter().zip(&xi).map(|(f, x)| f + delta * x).collect();
        normalize(&mut theta);
        let exact = p.project_exact(&theta).unwrap();
        assert!((norm(&exact) - 1.0).abs() < 4.0 * EPS && p.loss(&exact) < 1e-28);
        // Nearest point: no point of Γ near it is closer (check against φ).
        assert!(distance(&theta, &exact) <= distance(&theta, &phi) + 1e-15);
        let pgd = project_by_pgd(&p, &theta, &PgdProjection { loss_tol: 1e-24, ..Default::default() }).unwrap();
        let d = distance(&exact, &pgd.phi);
        assert!(d <= 100.0 * delta * delta, "exact vs PGD projection differ by {d:e}");
    }
}

#[test]
fn held_out_loss_by_moments_equals_the_direct_sum() {
    let p = paper_problem(11);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for _ in 0..5 {
        let w = gaussian(40, &mut rng);
        let (a, b) = (p.sample_test_loss(&w).unwrap(), p.sample_test_loss_direct(&w).unwrap());
        // The moment form cancels terms of size ~‖w̃‖²·max Σ against each
        // other: 1e-12 relative is ~5000ε, ample for m = 500.
        assert!((a - b).abs() <= 1e-12 * b.max(1.0), "{a} vs {b}");
        // And the population loss is close to the sample one (m = 500).
        let pop = p.population_test_loss(&w).unwrap();
        assert!((pop - b).abs() < 0.5 * pop, "population {pop} vs sample {b}");
    }
}

#[test]
fn bad_data_is_refused() {
    let mut d = LinregData::generate(5, 4, 0, 0);
    d.y = vec![1.0; 4];
    assert_eq!(LinregBn::new(d, LinregInit::Uniform, 0).unwrap_err(), LinregError::ConstantTargets);
    let mut d = LinregData::generate(5, 4, 0, 0);
    d.x.pop();
    assert!(matches!(LinregBn::new(d, LinregInit::Uniform, 0).unwrap_err(), LinregError::Shape { .. }));
    let mut d = LinregData::generate(5, 4, 0, 0);
    d.x[3] = f64::NAN;
    assert_eq!(LinregBn::new(d, LinregInit::Uniform, 0).unwrap_err(), LinregError::NonFinite("x"));
}

#[test]
fn theorem_5_1_on_the_paper_run_and_period_two_oscillation() {
    // Fig. 4's setting: η̂ = 0.5, λ̂ = 2e-4, 100k steps (≈0.2 s here). Thm 5.1:
    // the flow converges to θ_M. Measured at the end: ‖φ_T − θ_M‖ ≈ 2e-5,
    // λ1(φ_T)/λ1(θ_M) − 1 ≈ 6e-10; the issue asks for 1e-3 and 1e-5.
    let p = paper_problem(0);
    let mut opt = GdWd::new(0.5, 2e-4, p.initial_point());
    let params = RunParams { steps: 100_000, sharpness_every: 0, ..Default::default() };
    let s = Runner::for_problem(&p, &mut opt).params(params).run().unwrap();
    // No sharpness schedule, yet HVPs are counted: the summary's Lanczos at
    // φ_T goes through the runner's counting wrapper.
    assert_eq!((s.counts.gradients, s.hvps), (100_001, 0));
    assert!(s.counts.hvps > 0);
    let m = &s.problem;
    let dist = m["phi_dist_m_final"].as_f64().unwrap();
    let excess = m["phi_sharpness_final_rel_excess"].as_f64().unwrap();
    assert!(dist < 1e-3, "‖φ_T − θ_M‖ = {dist:e}");
    assert!(excess.abs() < 1e-5, "λ1(φ_T)/λ1(θ_M) − 1 = {excess:e}");
    // Lanczos on the exact HVP agrees with Lemma O.1 at φ_T.
    let lz = m["phi_sharpness_final_lanczos"].as_f64().unwrap();
    let cf = m["phi_sharpness_final"].as_f64().unwrap();
    assert!((lz - cf).abs() <= 1e-10 * cf);
    // EoS is entered, and there h_t changes sign at (almost) every step.
    assert!(m["eos_entry_step_on_phi"].as_u64().is_some());
    let frac = m["eos_h_sign_change_fraction"].as_f64().unwrap();
    assert!(frac > 0.99, "h_t changed sign on only {frac} of EoS steps");
    assert!(m["eos_periods"].as_u64().unwrap() >= 5, "periodic 2/η̃ switching across λ1(φ_t)");
}
