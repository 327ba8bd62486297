//! A partially scale-invariant objective (as a standard ResNet is, App. P.2):
//! spherical sharpness and the effective LR use the declared block only.

use eosflow::optim::{GdWd, Optimizer};
use eosflow::problems::Toy3d;
use eosflow::run::{History, RunParams, Runner};
use eosflow::sharpness::spherical_sharpness;
use eosflow::spectrum::{LanczosParams, LinOp};
use eosflow::{Hessian, HvpAt, Objective, ScaleInvariance};

/// L(w) = F(U·w[0..3]) + ½·a·w[3]²: scale-invariant in w[0..3] only.
struct Partial {
    toy: Toy3d,
    a: f64,
}

impl Objective for Partial {
    fn dim(&self) -> usize {
        4
    }
    fn loss_grad(&self, w: &[f64], g: &mut [f64]) -> f64 {
        let l = self.toy.loss_grad(&w[..3], &mut g[..3]);
        g[3] = self.a * w[3];
        l + 0.5 * self.a * w[3] * w[3]
    }
    fn scale_invariance(&self) -> ScaleInvariance {
        ScaleInvariance::Block(vec![0, 1, 2])
    }
}

impl Hessian for Partial {
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        self.toy.hvp(&w[..3], &v[..3], &mut out[..3]);
        out[3] = self.a * v[3];
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(HvpAt::new(self, w))
    }
}

#[test]
fn sharpness_uses_the_scale_invariant_block_only() {
    // a = 100 makes the non-invariant direction the sharpest of the full
    // Hessian; the partial sharpness must ignore it.
    let p = Partial { toy: Toy3d::new(1), a: 100.0 };
    let w = vec![0.3, -1.1, 0.8, 2.0];
    let lp = LanczosParams { tol: 1e-13, ..Default::default() };
    let s = spherical_sharpness(&p, &w, &lp, None).unwrap();
    let reference = spherical_sharpness(&p.toy, &w[..3], &lp, None).unwrap();
    // Same Hessian block, same formula: agreement to Lanczos' tolerance.
    assert!((s.spherical - reference.spherical).abs() <= 1e-12 * reference.spherical.abs());
    assert!(s.spherical < 100.0);
    // Rescaling the block leaves it unchanged; rescaling w[3] too.
    let w2 = vec![0.6, -2.2, 1.6, -5.0];
    let s2 = spherical_sharpness(&p, &w2, &lp, None).unwrap();
    assert!((s2.spherical - s.spherical).abs() <= 1e-12 * s.spherical.abs());
}

#[test]
fn effective_lr_uses_the_block_norm() {
    let p = Partial { toy: Toy3d::new(1), a: 1.0 };
    let mut opt = GdWd::new(0.1, 0.01, vec![0.0, 3.0, 4.0, 100.0]);
    let e = opt.evaluate(&p);
    // η̃ = η̂/((1 − η̂λ̂)‖w_S‖²) with ‖w_S‖ = 5, not ‖w‖.
    assert!((e.eff_lr - 0.1 / (0.999 * 25.0)).abs() <= 4.0 * f64::EPSILON * e.eff_lr);
}

#[test]
fn a_user_objective_runs_through_the_runner() {
    // Not a `Problem`: no tracker, the standard metrics only. Its partial
    // sharpness in the history matches a direct evaluation at the same w.
    let p = Partial { toy: Toy3d::new(1), a: 1.0 };
    let mut opt = GdWd::new(0.1, 0.01, vec![0.3, -1.1, 0.8, 2.0]);
    let mut h = History::default();
    let params = RunParams { steps: 20, sharpness_every: 10, lanczos: LanczosParams::default(), ..Default::default() };
    let s = Runner::new(&p, &mut opt).params(params).observer(&mut h).run().unwrap();
    assert_eq!(h.steps.len(), 21);
    assert!(h.columns.is_empty() && h.steps.iter().all(|r| r.extra.is_empty()));
    assert_eq!(s.counts.gradients, 21);
    assert_eq!(s.counts.hvps, h.sharpness.iter().map(|r| r.hvps as u64).sum::<u64>());
    // Replaying the same GD+WD steps by hand reaches the same w_20.
    let mut replay = GdWd::new(0.1, 0.01, vec![0.3, -1.1, 0.8, 2.0]);
    for _ in 0..20 {
        replay.evaluate(&p);
        replay.update();
    }
    let direct = spherical_sharpness(&p, replay.params(), &LanczosParams::default(), None).unwrap();
    let logged = h.sharpness.last().unwrap();
    assert_eq!(logged.step, 20);
    // Warm and cold starts converge to the same eigenvalue within tol = 1e-10.
    assert!((logged.sharpness - direct.spherical).abs() <= 1e-9 * direct.spherical.abs());
    // The records serialise (for notebooks and the Python bindings).
    let json = serde_json::to_string(&h.steps[3]).unwrap();
    let back: eosflow::run::StepRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h.steps[3]);
}

#[test]
fn invalid_lanczos_settings_are_refused_before_the_first_step() {
    // k = 4 eigenpairs of a 3-parameter scale-invariant block: a settings
    // error, not a divergence, and no step is taken.
    let p = Partial { toy: Toy3d::new(1), a: 1.0 };
    let mut opt = GdWd::new(0.1, 0.01, vec![0.3, -1.1, 0.8, 2.0]);
    let lanczos = LanczosParams { k: 4, ..Default::default() };
    let mut h = History::default();
    let r = Runner::new(&p, &mut opt)
        .params(RunParams { steps: 5, sharpness_every: 1, lanczos, ..Default::default() })
        .observer(&mut h)
        .run();
    assert!(matches!(
        r,
        Err(eosflow::run::RunError::InvalidLanczos(eosflow::spectrum::LanczosError::InvalidK { k: 4, dim: 3 }))
    ));
    assert!(h.steps.is_empty());
}
