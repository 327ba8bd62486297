//! Thm C.2's PAC-Bayes bound against values computed by hand (an
//! independent Python evaluation of the theorem's formula, quoted below),
//! its minimising σ against the derivative's root, its verdicts, and the
//! ρ3 lower estimate on a tensor whose norm is known.

use eosflow::pac_bayes::{BoundError, BoundInputs, Rho3, Rho3Params, Verdict, rho3_lower_estimate};
use eosflow::spectrum::LinOp;
use eosflow::{Hessian, HvpAt, Objective};

fn inputs(rho3: Rho3) -> BoundInputs {
    BoundInputs { sharpness: 10.0, rho3, n: 1_000_000, dim: 10, delta: 0.05, l_max: 1.0 }
}

#[test]
fn the_terms_match_the_hand_computed_values() {
    // λ1 = 10, ρ3 = 100, n = 1e6, D = 10, δ = 0.05, ℓ_max = 1, σ = 0.1:
    //   σ²λ1/2 = 0.05,
    //   16σ³ρ3(1 + (ln n/D)^1.5)/3 = (1.6/3)·(1 + 1.381551…^1.5) = 1.399395638403279,
    //   √((D/σ² + 2 ln(n/δ))/(n − 1)) = √(1033.6198…/999999) = 0.03215001585204206,
    //   σ_max = 1/(2 + 2√1.381551…) = 0.22984342144237108
    // (Python's math module, double precision). Each term is a handful of
    // correctly rounded operations: agreement to 1e-14 relative.
    let t = inputs(Rho3::Supplied(100.0)).terms(0.1).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * b.abs();
    assert!(close(t.sharpness_term, 0.05), "{}", t.sharpness_term);
    assert!(close(t.third_order_term, 1.399395638403279), "{}", t.third_order_term);
    assert!(close(t.complexity_term, 0.03215001585204206), "{}", t.complexity_term);
    assert!(close(t.total, 1.4815456542553211), "{}", t.total);
    assert!(close(t.sigma_max, 0.22984342144237108), "{}", t.sigma_max);
    // 1.48 ≥ ℓ_max = 1: the gap can never exceed ℓ_max, so this is vacuous.
    assert!(matches!(t.verdict, Verdict::Vacuous { .. }), "{:?}", t.verdict);
    // With ρ3 = 1 the total is 0.0961…: certified when ρ3 is supplied, not
    // when it is only a lower estimate.
    assert_eq!(inputs(Rho3::Supplied(1.0)).terms(0.1).unwrap().verdict, Verdict::Certified);
    assert_eq!(inputs(Rho3::LowerEstimate(1.0)).terms(0.1).unwrap().verdict, Verdict::NotCertified);
}

#[test]
fn the_minimising_sigma_is_the_root_of_the_derivative() {
    let b = inputs(Rho3::Supplied(1.0));
    let best = b.minimise().unwrap();
    assert!(best.sigma > 0.0 && best.sigma < best.sigma_max, "interior here: {}", best.sigma);
    // A strict minimum: ±0.1% in σ costs more (the total is smooth, so the
    // excess is ~ f''·(δσ)²/2 ≫ rounding).
    for s in [best.sigma * 0.999, best.sigma * 1.001] {
        assert!(b.terms(s).unwrap().total > best.total, "σ = {s}");
    }
    // And against a fine scan of the whole admissible range.
    let scan =
        (1..=20000).map(|i| b.terms(best.sigma_max * i as f64 / 20000.0).unwrap().total).fold(f64::INFINITY, f64::min);
    assert!(best.total <= scan * (1.0 + 1e-12));
    // A large ℓ_max pushes σ to the edge of the range.
    let edge = BoundInputs { l_max: 1e6, ..b.clone() }.minimise().unwrap();
    assert_eq!(edge.sigma, edge.sigma_max);
}

#[test]
fn vacuous_and_invalid_settings_say_why() {
    // D ≥ n: the complexity term alone exceeds ℓ_max at every σ.
    let big = BoundInputs { dim: 1_000_000, n: 1000, ..inputs(Rho3::Supplied(0.0)) };
    match big.minimise().unwrap().verdict {
        Verdict::Vacuous { reason } => assert!(reason.contains("4D"), "{reason}"),
        v => panic!("{v:?}"),
    }
    let unbounded = BoundInputs { l_max: f64::INFINITY, ..inputs(Rho3::Supplied(1.0)) };
    match unbounded.minimise().unwrap().verdict {
        Verdict::Vacuous { reason } => assert!(reason.contains("unbounded"), "{reason}"),
        v => panic!("{v:?}"),
    }
    let b = inputs(Rho3::Supplied(1.0));
    assert!(matches!(b.terms(0.5), Err(BoundError::Sigma { .. })));
    assert!(matches!(b.terms(0.0), Err(BoundError::Sigma { .. })));
    assert_eq!(BoundInputs { n: 1, ..b.clone() }.terms(0.1), Err(BoundError::TooFewExamples(1)));
    assert_eq!(BoundInputs { delta: 1.0, ..b.clone() }.terms(0.1), Err(BoundError::Delta(1.0)));
    assert_eq!(BoundInputs { rho3: Rho3::Supplied(-1.0), ..b.clone() }.minimise(), Err(BoundError::Rho3(-1.0)));
    assert_eq!(BoundInputs { l_max: 0.0, ..b }.minimise(), Err(BoundError::LMax(0.0)));
}

/// L(w) = (1/6)·Σ a_i w_i³: ∇³L = diag(a) as a 3-tensor, everywhere, so
/// ρ3 = max |a_i| (a diagonal symmetric tensor's spectral norm).
struct Cubic(Vec<f64>);

impl Objective for Cubic {
    fn dim(&self) -> usize {
        self.0.len()
    }
    fn loss_grad(&self, w: &[f64], g: &mut [f64]) -> f64 {
        for ((gi, wi), ai) in g.iter_mut().zip(w).zip(&self.0) {
            *gi = 0.5 * ai * wi * wi;
        }
        w.iter().zip(&self.0).map(|(wi, ai)| ai * wi.powi(3) / 6.0).sum()
    }
}

impl Hessian for Cubic {
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        for i in 0..w.len() {
            out[i] = self.0[i] * w[i] * v[i];
        }
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(HvpAt::new(self, w))
    }
}

#[test]
fn the_rho3_estimate_is_a_lower_value_that_finds_a_known_norm() {
    let p = Cubic(vec![1.0, -3.0, 2.0, 0.5]);
    let points = vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.3, -0.2, 0.9, 0.1]];
    let e = rho3_lower_estimate(&p, &points, &Rho3Params { restarts: 16, iterations: 60, random_points: 1, seed: 1 });
    // The HVP is linear in w, so the third derivative by central
    // differences of two HVPs is exact up to rounding of size ~ε/h·|a|.
    assert!(e.value <= 3.0 * (1.0 + 1e-8), "never above the norm: {}", e.value);
    assert!((e.value - 3.0).abs() < 1e-6, "16 starts find the largest |a_i|: {}", e.value);
    assert_eq!(e.per_point.len(), 3, "two given points and one random");
    assert_eq!(e.contractions, 3 * 16 * 60);
}
