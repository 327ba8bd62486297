//! Matrix completion with BN (App. P.1): the gradient and HVP at d = 50
//! against finite differences (d = 6 and the scale-invariance identities
//! run in tests/identities.rs), and the SIMD and portable kernels agreeing
//! bit for bit.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas they check

use eosflow::linalg::norm;
use eosflow::problems::{MatcompBn, MatcompData, MatcompError, Problem};
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
