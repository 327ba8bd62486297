//! The exact HVP on ReLU networks against candle's own double backward.
//!
//! Finite differences are no oracle on ReLU networks (a step can cross a
//! kink), so this test differentiates candle's gradient graph a second time:
//! with `CANDLE_GRAD_DO_NOT_DETACH=1` (undocumented, read once per thread)
//! the gradients keep their graph, and ∇_w⟨∇L(w), v⟩ = H·v. It lives in its
//! own test binary so the variable cannot leak into other tests.

mod common;
use candle_core::{Tensor, Var};
use common::*;
use eosflow::Hessian;
use eosflow::problems::Problem;
use eosflow_nn::net::{self, Activation};
use eosflow_nn::{ConvImpl, NetParams, NetProblem};

fn double_backward_hvp(p: &NetProblem, w: &[f64], v: &[f64]) -> Vec<f64> {
    let vars: Vec<Var> = p.param_tensors(w).unwrap().iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let dirs = p.param_tensors(v).unwrap();
    let loss = p.graph_loss(&ts).unwrap();
    let grads = loss.backward().unwrap();
    let mut gv: Option<Tensor> = None;
    for (t, d) in ts.iter().zip(&dirs) {
        let term = grads.get(t).unwrap().mul(d).unwrap().sum_all().unwrap();
        gv = Some(match gv {
            Some(acc) => (acc + term).unwrap(),
            None => term,
        });
    }
    let second = gv.unwrap().backward().unwrap();
    let mut out = vec![0.0; w.len()];
    for (spec, t) in p.net().params.iter().zip(&ts) {
        let g = second.get(t).map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap());
        if let Some(g) = g {
            out[spec.offset..spec.offset + spec.len()].copy_from_slice(&g);
        }
    }
    out
}

#[test]
fn relu_hvp_matches_candle_double_backward() {
    // SAFETY: set before any candle backward runs in this binary's only test.
    unsafe { std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1") };
    let train = random_data(10, &[1, 8, 8], 3, 11);
    let test = random_data(4, &[1, 8, 8], 3, 12);
    let nets = [
        net::si_mlp(&[1, 8, 8], &[9, 7], 3, Activation::Relu, 1.353).unwrap(),
        net::resnet20(true, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
        net::resnet20(false, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
    ];
    for n in nets {
        let name = n.name.clone();
        // Two problems on the same network: ours (fused BN/ReLU ops and the
        // tiled convolution, the default) and candle's own ops throughout
        // (`ConvImpl::Candle`), whose double backward is the oracle — so no
        // derivative rule of ours enters the reference.
        let p = NetProblem::new(n.clone(), &train, &test, NetParams { ghost_batch: 4, ..Default::default() }).unwrap();
        let reference = NetProblem::new(
            n,
            &train,
            &test,
            NetParams { ghost_batch: 4, conv: ConvImpl::Candle, ..Default::default() },
        )
        .unwrap();
        let w = p.initial_point();
        for seed in 0..2 {
            let v = random_vec(w.len(), 100 + seed);
            let mut hv = vec![0.0; w.len()];
            p.hvp(&w, &v, &mut hv);
            let oracle = double_backward_hvp(&reference, &w, &v);
            let err = rel_err(&hv, &oracle);
            // Both are exact up to rounding: the two computations sum the
            // same O(D) products in different orders through ~20 layers, so
            // agreement to ~1e3·ε·depth is expected; measured ≤ 1e-14.
            println!("{name}: ‖Hv − oracle‖/‖oracle‖ = {err:.2e}");
            assert!(err < 1e-11, "{name}: reverse-over-forward HVP differs from double backward by {err:e}");
        }
    }
}
