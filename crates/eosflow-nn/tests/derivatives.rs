//! Gradients and exact HVPs of smooth (Swish) networks against central
//! finite differences, and Hessian symmetry on every architecture.

mod common;
use common::*;
use eosflow::problems::Problem;
use eosflow::{Hessian, Objective};
use eosflow_nn::net::{self, Activation, VggItem};
use eosflow_nn::{NetParams, NetProblem};

fn smooth_problems() -> Vec<NetProblem> {
    let train = random_data(14, &[1, 8, 8], 4, 21);
    let test = random_data(5, &[1, 8, 8], 4, 22);
    let params = NetParams { ghost_batch: 5, ..Default::default() };
    let nets = [
        net::si_mlp(&[1, 8, 8], &[9, 7], 4, Activation::Swish, 1.353).unwrap(),
        net::si_vgg(&[VggItem::Conv(4), VggItem::Pool, VggItem::Conv(6), VggItem::Pool], 1.0, [1, 8, 8], 4, 1.353)
            .unwrap(),
    ];
    nets.into_iter().map(|n| NetProblem::new(n, &train, &test, params.clone()).unwrap()).collect()
}

/// Fourth-order central difference of f along a unit direction:
/// (−f(2h) + 8f(h) − 8f(−h) + f(−2h)) / 12h, truncation O(h⁴·f⁽⁵⁾).
fn fd4(f: impl Fn(f64) -> Vec<f64>, h: f64) -> Vec<f64> {
    let (p2, p1, m1, m2) = (f(2.0 * h), f(h), f(-h), f(-2.0 * h));
    (0..p1.len()).map(|i| (-p2[i] + 8.0 * p1[i] - 8.0 * m1[i] + m2[i]) / (12.0 * h)).collect()
}

fn shifted(w: &[f64], u: &[f64], t: f64) -> Vec<f64> {
    w.iter().zip(u).map(|(a, b)| a + t * b).collect()
}

#[test]
fn gradient_matches_finite_differences_of_the_loss() {
    for p in smooth_problems() {
        let w = p.initial_point();
        let (_, g) = grad(&p, &w);
        for seed in 0..3 {
            let mut u = random_vec(w.len(), seed);
            let un = norm(&u);
            u.iter_mut().for_each(|x| *x /= un);
            // h = ε^{1/5}·‖w‖ balances the O(h⁴) truncation against the
            // O(ε·|L|/h) rounding of the fourth-order formula.
            let h = f64::EPSILON.powf(0.2) * norm(&w);
            let fd = fd4(|t| vec![p.loss(&shifted(&w, &u, t))], h)[0];
            let exact = dot(&g, &u);
            let err = (fd - exact).abs() / norm(&g);
            println!("{}: directional derivative error {err:.2e}", p.net().name);
            assert!(err < 1e-8, "{}: ⟨∇L, u⟩ = {exact:e} but finite differences give {fd:e}", p.net().name);
        }
    }
}

#[test]
fn hvp_matches_finite_differences_of_the_gradient() {
    for p in smooth_problems() {
        let w = p.initial_point();
        for seed in 0..3 {
            let mut v = random_vec(w.len(), 10 + seed);
            let vn = norm(&v);
            v.iter_mut().for_each(|x| *x /= vn);
            let mut hv = vec![0.0; w.len()];
            p.hvp(&w, &v, &mut hv);
            // Fourth-order differences with h = ε^{1/5}/8 ≈ 9e-5 (the layer
            // weights are O(1)): measured on the MLP, the error falls as h⁴
            // (3.5e-7 at h = ε^{1/5}‖w‖ ≈ 1.8e-3, ÷16 per halving) down to the
            // rounding floor ~8e-12, so the exact HVP agrees to ~1e-11.
            let h = f64::EPSILON.powf(0.2) / 8.0;
            let fd = fd4(|t| grad(&p, &shifted(&w, &v, t)).1, h);
            let err = rel_err(&hv, &fd);
            println!("{}: ‖Hv − FD‖/‖FD‖ = {err:.2e}", p.net().name);
            assert!(err < 1e-7, "{}: exact HVP and finite differences differ by {err:e}", p.net().name);
        }
    }
}

#[test]
fn hessian_is_symmetric_on_every_architecture() {
    let train = random_data(10, &[1, 8, 8], 3, 31);
    let test = random_data(4, &[1, 8, 8], 3, 32);
    let nets = [
        net::si_mlp(&[1, 8, 8], &[6], 3, Activation::Relu, 1.353).unwrap(),
        net::si_vgg(&[VggItem::Conv(3), VggItem::Pool], 1.0, [1, 8, 8], 3, 1.353).unwrap(),
        net::resnet20(true, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
        net::resnet20(false, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
    ];
    for n in nets {
        let p = NetProblem::new(n, &train, &test, NetParams { ghost_batch: 5, ..Default::default() }).unwrap();
        let w = p.initial_point();
        let (u, v) = (random_vec(w.len(), 1), random_vec(w.len(), 2));
        let (mut hu, mut hv) = (vec![0.0; w.len()], vec![0.0; w.len()]);
        p.hvp(&w, &u, &mut hu);
        p.hvp(&w, &v, &mut hv);
        let (a, b) = (dot(&u, &hv), dot(&v, &hu));
        // ⟨u, Hv⟩ = ⟨v, Hu⟩ up to the rounding of two D-term dot products of
        // O(‖u‖‖Hv‖) size: tolerance 1e3·ε relative to that scale.
        let scale = norm(&u) * norm(&hv);
        assert!((a - b).abs() < 1e3 * f64::EPSILON * scale, "{}: {a:e} vs {b:e}", p.net().name);
    }
}
