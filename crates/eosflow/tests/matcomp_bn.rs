//! Matrix completion with BN (App. P.1): exact gradient and HVP against
//! finite differences, the scale-invariance identities, HVP symmetry, and
//! the SIMD and portable kernels agreeing bit for bit.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas they check

use eosflow::linalg::{dot, norm};
use eosflow::objective::finite_difference_gradient;
use eosflow::problems::{MatcompBn, MatcompData, MatcompError, Problem};
use eosflow::sharpness::spherical_sharpness;
use eosflow::spectrum::LanczosParams;
use eosflow::{FiniteDifferenceHvp, Hessian, Objective};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const EPS: f64 = f64::EPSILON;

fn problem(d: usize, n_obs: usize, seed: u64) -> MatcompBn {
    MatcompBn::new(MatcompData::generate(d, 2, n_obs, seed), 1.0 / (d as f64).sqrt(), seed).unwrap()
}

fn gaussian(n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

#[test]
fn gradient_matches_central_differences_small_d() {
    // d = 6 (D = 72): every coordinate checked. Central differences err by
    // ~ε^{2/3}·(|L'''|·h² + |L|)/h-scale ≈ 4e-11·M; 1e-7 relative to ‖∇L‖
    // (plus 1e-9 absolute) leaves a margin without hiding a wrong factor.
    for seed in 0..3 {
        let p = problem(6, 20, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 10);
        let w = gaussian(p.dim(), &mut rng);
        let mut g = vec![0.0; p.dim()];
        p.loss_grad(&w, &mut g);
        let fd = finite_difference_gradient(&p, &w);
        let gn = norm(&g);
        for i in 0..p.dim() {
            assert!((g[i] - fd[i]).abs() <= 1e-9 + 1e-7 * gn, "∂_{i}: {} vs {}", g[i], fd[i]);
        }
    }
}

#[test]
fn hvp_matches_central_differences_small_d_and_d50() {
    for (d, n) in [(6, 20), (50, 800)] {
        let p = problem(d, n, 1);
        let fd = FiniteDifferenceHvp::new(p.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..3 {
            let w: Vec<f64> = gaussian(p.dim(), &mut rng).iter().map(|x| x / (d as f64).sqrt()).collect();
            let v = gaussian(p.dim(), &mut rng);
            let (mut hv, mut hv_fd) = (vec![0.0; p.dim()], vec![0.0; p.dim()]);
            p.hvp(&w, &v, &mut hv);
            fd.hvp(&w, &v, &mut hv_fd);
            // Same ε^{2/3} budget, relative to ‖Hv‖ (all entries are checked).
            let scale = norm(&hv);
            for i in 0..p.dim() {
                assert!((hv[i] - hv_fd[i]).abs() <= 1e-6 * scale, "d={d} (Hv)_{i}: {} vs {}", hv[i], hv_fd[i]);
            }
        }
    }
}

#[test]
fn gradient_at_d50_matches_central_differences_on_sampled_coordinates() {
    let p = problem(50, 800, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let w: Vec<f64> = gaussian(p.dim(), &mut rng).iter().map(|x| x / 50f64.sqrt()).collect();
    let mut g = vec![0.0; p.dim()];
    p.loss_grad(&w, &mut g);
    let gn = norm(&g);
    let mut x = w.clone();
    for i in (0..p.dim()).step_by(97) {
        let h = EPS.cbrt() * w[i].abs().max(1.0);
        x[i] = w[i] + h;
        let lp = p.loss(&x);
        x[i] = w[i] - h;
        let lm = p.loss(&x);
        x[i] = w[i];
        let fd = (lp - lm) / (2.0 * h);
        assert!((g[i] - fd).abs() <= 1e-9 + 1e-7 * gn, "∂_{i}: {} vs {fd}", g[i]);
    }
}

#[test]
fn scale_invariance_identities_and_symmetry() {
    let p = problem(20, 150, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let lp = LanczosParams { tol: 1e-12, ..Default::default() };
    for _ in 0..3 {
        let w = gaussian(p.dim(), &mut rng);
        let mut g = vec![0.0; p.dim()];
        p.loss_grad(&w, &mut g);
        // ⟨∇L(w), w⟩ = 0: a sum of 2·N·d rounded products.
        assert!(dot(&g, &w).abs() <= 1e3 * EPS * norm(&g) * norm(&w), "{:e}", dot(&g, &w));
        // H(w)·w = −∇L(w).
        let mut hw = vec![0.0; p.dim()];
        p.hvp(&w, &w, &mut hw);
        let scale = norm(&g).max(norm(&hw));
        for i in 0..p.dim() {
            assert!((hw[i] + g[i]).abs() <= 1e4 * EPS * scale, "{} vs {}", hw[i], -g[i]);
        }
        // ⟨u, Hv⟩ = ⟨v, Hu⟩.
        let (u, v) = (gaussian(p.dim(), &mut rng), gaussian(p.dim(), &mut rng));
        let (mut hu, mut hv) = (vec![0.0; p.dim()], vec![0.0; p.dim()]);
        p.hvp(&w, &u, &mut hu);
        p.hvp(&w, &v, &mut hv);
        let (a, b) = (dot(&u, &hv), dot(&v, &hu));
        assert!((a - b).abs() <= 1e4 * EPS * norm(&hv) * norm(&u), "{a} vs {b}");
        // Spherical sharpness does not depend on the scale of w.
        let s1 = spherical_sharpness(&p, &w, &lp, None).unwrap().spherical;
        let cw: Vec<f64> = w.iter().map(|x| 0.01 * x).collect();
        let s2 = spherical_sharpness(&p, &cw, &lp, None).unwrap().spherical;
        assert!((s1 - s2).abs() <= 1e-9 * s1.abs(), "{s1} vs {s2}");
    }
}

#[test]
fn simd_and_portable_kernels_agree_bit_for_bit() {
    let p = problem(50, 800, 7);
    let w = p.initial_point();
    let (mut g1, mut g2) = (vec![0.0; p.dim()], vec![0.0; p.dim()]);
    let l1 = p.loss_grad(&w, &mut g1);
    let l2 = p.loss_grad_portable(&w, &mut g2);
    assert_eq!(l1.to_bits(), l2.to_bits());
    assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()));
    // And the fused loss_grad matches loss() to rounding.
    assert!((p.loss(&w) - l1).abs() <= 64.0 * EPS * l1);
}

#[test]
fn data_generation_and_errors() {
    let d = MatcompData::generate(50, 2, 800, 0);
    assert_eq!(d.omega.len(), 800);
    // M = d·M̃/‖M̃‖_F: second moment of the entries 1.
    let m2 = d.m.iter().map(|x| x * x).sum::<f64>() / 2500.0;
    assert!((m2 - 1.0).abs() < 1e-13);
    let p = MatcompBn::new(d.clone(), 0.1, 0).unwrap();
    assert!(p.n_obs() == 800);
    let mut dup = d.clone();
    dup.omega[1] = dup.omega[0];
    assert!(matches!(MatcompBn::new(dup, 0.1, 0).unwrap_err(), MatcompError::Duplicate { .. }));
    let mut out = d.clone();
    out.omega[0] = (50, 0);
    assert_eq!(MatcompBn::new(out, 0.1, 0).unwrap_err(), MatcompError::OutOfRange { i: 50, j: 0, d: 50 });
    let mut zero = d;
    zero.m.iter_mut().for_each(|x| *x = 0.0);
    assert_eq!(MatcompBn::new(zero, 0.1, 0).unwrap_err(), MatcompError::ZeroTargets);
}
