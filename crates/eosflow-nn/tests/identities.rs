//! The shared identity suite (`eosflow::identities`, as for the analytic
//! problems in eosflow/tests/identities.rs) on every architecture at small
//! width: gradient and HVP against central differences (Swish networks
//! only: on ReLU networks a difference step can cross a kink, and
//! double_backward.rs compares their HVPs with candle's double backward
//! instead), HVP symmetry, the scale-invariance identities on the declared
//! block (all parameters, or the standard ResNet-20's conv kernels), Lanczos
//! against the dense Hessian where D ≤ 1000, and the exponential-LR
//! identity on the fully scale-invariant networks.

mod common;
use common::*;
use eosflow::identities::{IdentityParams, IdentityTolerances, check, exponential_lr_identity};
use eosflow::problems::Problem;
use eosflow::{Objective, ScaleInvariance};
use eosflow_nn::net::{self, Activation, VggItem};
use eosflow_nn::{NetParams, NetProblem};

/// (name, network, smooth: Swish everywhere).
fn networks() -> Vec<(&'static str, net::Net, bool)> {
    let vgg = [VggItem::Conv(3), VggItem::Pool, VggItem::Conv(4), VggItem::Pool];
    vec![
        ("si-mlp swish", net::si_mlp(&[1, 4, 4], &[6, 5], 3, Activation::Swish, 1.353).unwrap(), true),
        ("si-mlp relu", net::si_mlp(&[1, 4, 4], &[6], 3, Activation::Relu, 1.353).unwrap(), false),
        ("si-vgg", net::si_vgg(&vgg, 1.0, [1, 8, 8], 3, 1.353).unwrap(), true),
        ("si-resnet20", net::resnet20(true, 0.25, [1, 8, 8], 3, 1.353).unwrap(), false),
        ("resnet20", net::resnet20(false, 0.25, [1, 8, 8], 3, 1.353).unwrap(), false),
    ]
}

#[test]
fn every_architecture_satisfies_the_identities() {
    // Tolerances (IdentityTolerances::default()): the networks are ≤ 25
    // layers of sums of ≤ ~600 products, so rounding is ≲ 1e3·ε relative
    // (measured ≤ 1.1e-14) and the exact identities get 1e3·ε; the
    // sharpness under rescaling and Lanczos against the dense eigenvalues go
    // through Lanczos at tol 1e-13: 1e-11 (measured ≤ 1.1e-14).
    // Second-order central differences with h = ε^{1/3}: truncation
    // h²·|∇³L|/6 with third derivatives of a few hundred at these widths,
    // rounding ε·|L|/h; 1e-6 (measured ≤ 7e-10). The networks' third
    // contraction is by HVP differences, so its identities carry the same
    // O(ε^{2/3}) error and get 1e-6 too (IdentityTolerances::for_objective).
    for (name, network, smooth) in networks() {
        let shape = network.input_shape.clone();
        let train = random_data(12, &shape, 3, 41);
        let test = random_data(4, &shape, 3, 42);
        let p = NetProblem::new(network, &train, &test, NetParams { ghost_batch: 6, ..Default::default() }).unwrap();
        let w = p.initial_point();
        let params =
            IdentityParams { finite_differences: smooth, dense_max: 1000, fd_coordinates: 40, ..Default::default() };
        let r = check(&p, &w, &params);
        let failed = r.failures(&IdentityTolerances::for_objective(&p));
        assert!(failed.is_empty(), "{name}: {failed:?}");
        // What must have been measured: differences on smooth networks only
        // (never across ReLU kinks), the block identities always, the dense
        // comparison where D ≤ 1000.
        assert_eq!(r.gradient_vs_fd.is_some() && r.hvp_vs_fd.is_some(), smooth, "{name}");
        assert!(r.grad_dot_block.is_some() && r.hessian_rescaled.is_some() && r.sharpness_rescaled.is_some());
        assert_eq!(r.third_vs_fd.is_some() && r.third_times_block.is_some(), smooth, "{name}");
        assert_eq!(r.lanczos_vs_dense.is_some(), p.dim() <= 1000, "{name}");
        // Li & Arora's identity needs scale invariance in every parameter.
        if p.scale_invariance() == ScaleInvariance::All {
            let dev = exponential_lr_identity(&p, &w, 0.1, 0.01, 10);
            assert!(dev < 1e3 * f64::EPSILON, "{name}: exponential-LR identity off by {dev:e}");
        }
    }
}
