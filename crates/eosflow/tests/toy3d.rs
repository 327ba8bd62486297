//! The App. F example: derivatives, scale-invariance identities, the
//! closed-form Hessian on Γ, and the end of the paper's 3000-step run.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas they check

use eosflow::linalg::{dot, norm};
use eosflow::objective::finite_difference_gradient;
use eosflow::optim::GdWd;
use eosflow::problems::{Problem, Toy3d};
use eosflow::run::{History, RunParams, Runner};
use eosflow::sharpness::spherical_sharpness;
use eosflow::spectrum::LanczosParams;
use eosflow::{FiniteDifferenceHvp, Hessian, Objective};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};

const EPS: f64 = f64::EPSILON;

/// Seeded random points whose domain image keeps q = x² − xy + y² away from 0
/// (F is singular on the z-axis) and whose norm spans two decades.
fn sample_points(p: &Toy3d, n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = Uniform::new(0.3f64, 30.0).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let w: Vec<f64> = (0..3).map(|_| StandardNormal.sample(&mut rng)).collect();
        let u = p.to_domain(&w);
        let q = u[0] * u[0] - u[0] * u[1] + u[1] * u[1];
        if q > 0.1 * dot(&w, &w) {
            let c = scale.sample(&mut rng);
            out.push(w.iter().map(|x| x * c).collect());
        }
    }
    out
}

#[test]
fn gradient_matches_central_differences() {
    let p = Toy3d::new(3);
    for w in sample_points(&p, 40, 1) {
        let mut g = vec![0.0; 3];
        p.loss_grad(&w, &mut g);
        let fd = finite_difference_gradient(&p, &w);
        // Central differences with h = ε^{1/3}·max(1,|w_i|) err by about
        // ε^{2/3}·(|L'''|·h_scale² + |L|) ≈ 4e-11·M; on these points the third
        // derivatives of F stay below ~1e2/‖w‖³, so 1e-8 absolute (plus a
        // relative part) leaves a margin of ~100 without hiding real bugs
        // (a wrong factor would be O(|g|)).
        for i in 0..3 {
            assert!((g[i] - fd[i]).abs() <= 1e-8 + 1e-7 * g[i].abs(), "w={w:?} i={i}: {} vs {}", g[i], fd[i]);
        }
    }
}

#[test]
fn hvp_matches_central_differences_of_the_gradient() {
    let p = Toy3d::new(4);
    let fd = FiniteDifferenceHvp::new(p.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for w in sample_points(&p, 40, 2) {
        let v: Vec<f64> = (0..3).map(|_| StandardNormal.sample(&mut rng)).collect();
        let (mut hv, mut hv_fd) = (vec![0.0; 3], vec![0.0; 3]);
        p.hvp(&w, &v, &mut hv);
        fd.hvp(&w, &v, &mut hv_fd);
        // Same ε^{2/3} error budget as the gradient test, times ‖v‖ and the
        // Hessian's scale 1/‖w‖².
        let s = norm(&v) / dot(&w, &w).min(1.0);
        for i in 0..3 {
            assert!((hv[i] - hv_fd[i]).abs() <= 1e-7 * s, "w={w:?}: {hv:?} vs {hv_fd:?}");
        }
    }
}

#[test]
fn scale_invariance_identities() {
    let p = Toy3d::new(5);
    let lp = LanczosParams { tol: 1e-13, ..Default::default() };
    for w in sample_points(&p, 30, 3) {
        let mut g = vec![0.0; 3];
        p.loss_grad(&w, &mut g);
        let (wn, gn) = (norm(&w), norm(&g));
        // ⟨∇L(w), w⟩ = 0 (Lemma D.1): each product carries relative rounding
        // ε, so the sum is within a few ε·‖∇L‖‖w‖ (plus the rotation's ε).
        assert!(dot(&g, &w).abs() <= 16.0 * EPS * gn * wn.max(1.0), "⟨g,w⟩ = {:e}", dot(&g, &w));
        // ∇²L(w)·w = −∇L(w): error O(ε·‖H‖·‖w‖), ‖H‖ ≲ 10/‖w‖² here.
        let mut hw = vec![0.0; 3];
        p.hvp(&w, &w, &mut hw);
        let hnorm = 10.0 / (wn * wn);
        for i in 0..3 {
            assert!((hw[i] + g[i]).abs() <= 64.0 * EPS * (hnorm * wn + gn), "Hw = {hw:?}, g = {g:?}");
        }
        // ‖cw‖²·λ1(H(cw)) does not depend on c: the Hessian is (−2)-homogeneous.
        let s1 = spherical_sharpness(&p, &w, &lp, None).unwrap().spherical;
        for c in [1e-3, 0.5, 7.0, 1e4] {
            let cw: Vec<f64> = w.iter().map(|x| c * x).collect();
            let sc = spherical_sharpness(&p, &cw, &lp, None).unwrap().spherical;
            assert!((sc - s1).abs() <= 1e-12 * s1.abs().max(1.0), "c={c}: {sc} vs {s1}");
        }
        // Gradient is (−1)-homogeneous.
        let mut g2 = vec![0.0; 3];
        let w2: Vec<f64> = w.iter().map(|x| 3.0 * x).collect();
        p.loss_grad(&w2, &mut g2);
        for i in 0..3 {
            assert!((3.0 * g2[i] - g[i]).abs() <= 16.0 * EPS * gn);
        }
    }
}

#[test]
fn hessian_on_gamma_matches_appendix_f() {
    // On Γ: ∇²F = 3/(1 − z²)·[[1,−1,0],[−1,1,0],[0,0,0]] (App. F), and the
    // spherical sharpness is 6/(1 − z²). Entries are O(3/(1−z²)) and
    // computed with a handful of roundings: 1e-12 relative is ~500ε.
    let unrot = Toy3d::unrotated();
    let rot = Toy3d::new(8);
    for z in [0.0, 0.1, -0.35, 0.6, 0.9] {
        let a = ((1.0 - z * z) / 2.0f64).sqrt();
        let u = [a, a, z];
        let h = unrot.hessian_matrix(&u);
        let c = 3.0 / (1.0 - z * z);
        let want = [c, -c, 0.0, -c, c, 0.0, 0.0, 0.0, 0.0];
        for i in 0..9 {
            assert!((h[i] - want[i]).abs() <= 1e-12 * c, "z={z}: {h:?}");
        }
        let w = rot.from_domain(&u);
        let s = spherical_sharpness(&rot, &w, &LanczosParams { tol: 1e-13, ..Default::default() }, None).unwrap();
        assert!((s.spherical - 2.0 * c).abs() <= 1e-12 * 2.0 * c, "z={z}: {}", s.spherical);
        // The gradient vanishes on Γ (a minimiser), and the loss is exactly 0
        // thanks to the residual form.
        let mut g = vec![0.0; 3];
        assert!(unrot.loss_grad(&u, &mut g).abs() <= 1e-30);
        assert!(norm(&g) <= 1e-15);
    }
}

#[test]
fn loss_keeps_relative_accuracy_near_gamma() {
    // Residual form: F = 3(x−y)²/(√q(2√q+s)). At x = y + δ the naive
    // 2 − s/√q would floor at ~1e-16; ours keeps F ≈ 3δ²/(4y²)·(…) exact.
    let p = Toy3d::unrotated();
    let x = 0.5 + 1e-12;
    let d = x - 0.5; // exact (Sterbenz), the δ actually represented
    let f = p.loss(&[x, 0.5, 0.0]);
    let want = 3.0 * d * d / (0.5 * (2.0 * 0.5 + 1.0)); // q→¼, √q = ½, s→1; O(δ) relative change
    assert!((f / want - 1.0).abs() < 1e-9, "{f:e} vs {want:e}");
}

#[test]
fn paper_run_ends_at_the_flattest_minimiser() {
    // App. F: w0 = (0.3, 1.3, 1.2) in F's domain, η̂ = 0.5, λ̂ = 0.08, 3000 steps.
    let p = Toy3d::new(0);
    let mut opt = GdWd::new(0.5, 0.08, p.initial_point());
    let params = RunParams { steps: 3000, sharpness_every: 100, log_every: 10, ..Default::default() };
    let mut h = History::default();
    let s = Runner::for_problem(&p, &mut opt).params(params).observer(&mut h).run().unwrap();
    // Counted evaluations: one gradient per evaluated step (0..=3000), and
    // every HVP is one of a sharpness evaluation's (toy3d's tracker calls
    // none); the history holds every logged step (0, 10, …, 3000) with the
    // tracker's four columns.
    assert_eq!(s.counts.gradients, 3001);
    assert_eq!(s.counts.losses, 0);
    assert_eq!(s.counts.hvps, h.sharpness.iter().map(|r| r.hvps as u64).sum::<u64>());
    assert_eq!(h.sharpness.len(), 31);
    assert_eq!(h.steps.len(), 301);
    assert_eq!(h.columns, ["theta_x", "theta_y", "theta_z", "sharpness_on_gamma"]);
    assert!(h.steps.iter().all(|r| r.extra.len() == 4));
    assert_eq!(h.summary.as_ref().unwrap().counts, s.counts);
    let th: Vec<f64> =
        s.problem["theta_final_domain"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(th[2].abs() < 1e-6, "final z = {}", th[2]);
    let d = s.problem["midpoint_distance_to_zeta_star"].as_f64().unwrap();
    assert!(d < 1e-8, "midpoint distance {d:e}");
    // In EoS, 2/η̃ sits near the sharpness of Γ at ζ* (6), and θ_t
    // oscillates across Γ with period 2.
    assert!((s.final_two_over_eff_lr - 6.0).abs() < 1.0, "2/η̃ = {}", s.final_two_over_eff_lr);
    assert!(s.eos_entry_step.is_some() && s.first_in_band_step.is_some());
}
