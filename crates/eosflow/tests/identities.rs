//! One identity suite for every analytic problem (`eosflow::identities`):
//! gradient and HVP against central differences, HVP symmetry, the
//! scale-invariance identities on the declared block, Lanczos against a
//! dense eigendecomposition, and the exponential-LR identity of GD+WD, on
//! seeded random points. (The networks run the same suite in
//! eosflow-nn/tests/identities.rs.)

use eosflow::Objective;
use eosflow::identities::{IdentityParams, IdentityReport, IdentityTolerances, check, exponential_lr_identity};
use eosflow::problems::{Factorization, LinregBn, LinregData, LinregInit, MatcompBn, MatcompData, Problem, Toy3d};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn problems() -> Vec<Box<dyn Problem>> {
    vec![
        Box::new(Toy3d::new(3)),
        // d ≥ n − 1: Γ is non-empty; d = 12 keeps the dense Hessian small.
        Box::new(LinregBn::new(LinregData::generate(12, 8, 20, 5), LinregInit::Uniform, 5).unwrap()),
        Box::new(MatcompBn::new(MatcompData::generate(6, 2, 20, 7), 0.4, 7).unwrap()),
    ]
}

fn random_points(dim: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..10).map(|_| (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect()).collect()
}

/// Tolerances, with D ≤ 72 parameters and losses built from sums of at most
/// a few hundred products (rounding ≲ 1e3·ε relative):
/// - central differences with h = ε^{1/3}: truncation h²·|L'''|/6 plus
///   rounding ε·|L|/h, each ~1e-11 relative to unit-scale derivatives; 1e-6
///   leaves room for third derivatives a few thousand times larger (toy3d
///   near its singular z-axis);
/// - every exact identity (symmetry, ⟨∇L, w⟩ = 0, Hw = −∇L, rescaling):
///   1e3·ε; the sharpness after rescaling goes through Lanczos at tol 1e-13,
///   so 1e-11;
/// - Lanczos against the dense eigenvalues: its tolerance 1e-13 relative to
///   the spectral norm, plus the dense solver's O(D·ε): 1e-11.
fn assert_identities(name: &str, r: &IdentityReport) {
    // The tolerances above are IdentityTolerances::default().
    let failed = r.failures(&IdentityTolerances::default());
    assert!(failed.is_empty(), "{name}: {failed:?}");
    for (what, x) in [
        ("gradient vs differences", r.gradient_vs_fd),
        ("HVP vs differences", r.hvp_vs_fd),
        ("<grad L, w>", r.grad_dot_block),
        ("H w + grad L", r.hessian_times_block),
        ("rescaled L", r.loss_rescaled),
        ("rescaled gradient", r.gradient_rescaled),
        ("rescaled Hessian", r.hessian_rescaled),
        ("rescaled sharpness", r.sharpness_rescaled),
        ("Lanczos vs dense", r.lanczos_vs_dense),
        ("third contraction vs differences", r.third_vs_fd),
        ("<T, w> + 2 <v, H v>", r.third_times_block),
        ("rescaled third contraction", r.third_rescaled),
    ] {
        assert!(x.is_some(), "{name}: {what} not measured");
    }
}

#[test]
fn every_analytic_problem_satisfies_the_identities() {
    for p in problems() {
        for (k, w) in random_points(p.dim(), 11).iter().enumerate() {
            let r = check(p.as_ref(), w, &IdentityParams { seed: k as u64, ..Default::default() });
            assert_identities(&format!("{} point {k}", p.name()), &r);
        }
    }
}

#[test]
fn the_factorization_satisfies_the_identities_that_apply_to_it() {
    // Not scale-invariant: the derivative identities, Lanczos and the third
    // contraction are checked, the scale-invariance ones do not apply.
    let p = Factorization::new(4, 2, 1.0);
    for (k, w) in random_points(p.dim(), 13).iter().enumerate() {
        let r = check(&p, w, &IdentityParams { seed: k as u64, ..Default::default() });
        let failed = r.failures(&IdentityTolerances::for_objective(&p));
        assert!(failed.is_empty(), "factorization point {k}: {failed:?}");
        for (what, x) in [
            ("gradient vs differences", r.gradient_vs_fd),
            ("HVP vs differences", r.hvp_vs_fd),
            ("Lanczos vs dense", r.lanczos_vs_dense),
            ("third contraction vs differences", r.third_vs_fd),
        ] {
            assert!(x.is_some(), "{what} not measured");
        }
        assert!(r.grad_dot_block.is_none() && r.loss_rescaled.is_none(), "no scale invariance to check");
    }
}

#[test]
fn gd_wd_is_gd_with_an_exponentially_growing_lr() {
    // Li & Arora (2020): exact for fully scale-invariant losses, so the two
    // iterations differ by rounding only, which the dynamics then amplify:
    // over the first 10 steps from each problem's w0 the deviation measured
    // ≤ 5e-16; at η̂ = 0.5, λ̂ = 0.08 (an unstable start) it grows to 2e-12
    // by step 20 on linreg_bn. 10 steps, 100·ε.
    for p in problems() {
        let w0 = p.initial_point();
        for (lr, wd) in [(0.1, 0.01), (0.5, 0.08)] {
            let dev = exponential_lr_identity(p.as_ref(), &w0, lr, wd, 10);
            assert!(dev < 100.0 * f64::EPSILON, "{}: η̂ = {lr}, λ̂ = {wd}: deviation {dev:e}", p.name());
        }
    }
    // And it fails when the loss is not scale-invariant (a quadratic).
    struct Quadratic;
    impl eosflow::Objective for Quadratic {
        fn dim(&self) -> usize {
            2
        }
        fn loss_grad(&self, w: &[f64], g: &mut [f64]) -> f64 {
            g.copy_from_slice(w);
            0.5 * (w[0] * w[0] + w[1] * w[1])
        }
        fn scale_invariance(&self) -> eosflow::ScaleInvariance {
            eosflow::ScaleInvariance::None
        }
    }
    let q = eosflow::FiniteDifferenceHvp::new(Quadratic);
    assert!(exponential_lr_identity(&q, &[1.0, 2.0], 0.1, 0.01, 10) > 1e-3);
}

#[test]
fn a_wrong_gradient_is_caught() {
    // The suite can fail: toy3d with its gradient scaled by 1.001.
    struct Wrong(Toy3d);
    impl eosflow::Objective for Wrong {
        fn dim(&self) -> usize {
            3
        }
        fn loss_grad(&self, w: &[f64], g: &mut [f64]) -> f64 {
            let l = self.0.loss_grad(w, g);
            g.iter_mut().for_each(|x| *x *= 1.001);
            l
        }
    }
    impl eosflow::Hessian for Wrong {
        fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
            self.0.hvp(w, v, out)
        }
        fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn eosflow::spectrum::LinOp + 'a> {
            self.0.hessian_at(w)
        }
    }
    let r = check(&Wrong(Toy3d::new(0)), &[0.3, -1.2, 0.8], &IdentityParams::default());
    assert!(r.gradient_vs_fd.unwrap() > 1e-4);
    assert!(r.hessian_times_block.unwrap() > 1e-4);
    let failed = r.failures(&IdentityTolerances::default());
    assert!(failed.iter().any(|f| f.starts_with("gradient vs central differences")), "{failed:?}");
}
