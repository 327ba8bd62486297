//! One GD+WD step of every architecture at tiny width on tiny data, the
//! parameter layouts, and the errors for nets and data that do not fit.

mod common;
use common::*;
use eosflow::optim::{GdWd, Optimizer};
use eosflow::problems::Problem;
use eosflow::{Hessian, Objective, ScaleInvariance};
use eosflow_nn::net::{self, Activation, ParamKind, VggItem};
use eosflow_nn::{NetParams, NetProblem};

fn one_step(p: &NetProblem) {
    let name = &p.net().name;
    let w0 = p.initial_point();
    assert_eq!(w0.len(), p.dim());
    let l0 = p.loss(&w0);
    // A small step: GD+WD must decrease L + (λ̂/2)‖w‖² for small η̂.
    let (lr, wd) = (1e-3, 5e-4);
    let mut opt = GdWd::new(lr, wd, w0.clone());
    let e = opt.evaluate(p);
    assert_eq!(e.loss, l0, "{name}: the optimizer's loss is the objective's");
    opt.update();
    let w1 = opt.params().to_vec();
    let obj = |w: &[f64], l: f64| l + 0.5 * wd * dot(w, w);
    let l1 = p.loss(&w1);
    assert!(l1.is_finite() && obj(&w1, l1) < obj(&w0, l0), "{name}: one step went from {l0} to {l1}");
    let mut hv = vec![0.0; w0.len()];
    p.hvp(&w1, &w0, &mut hv);
    assert!(hv.iter().all(|x| x.is_finite()), "{name}: HVP not finite");
    let ev = p.evaluate(&w1);
    assert!((0.0..=1.0).contains(&ev.train_acc) && (0.0..=1.0).contains(&ev.test_acc));
    assert!(ev.test_loss.is_finite());
    println!("{name}: D = {}, loss {l0:.6} → {l1:.6}, {ev:?}", p.dim());
}

#[test]
fn every_architecture_takes_a_step_on_cifar_shaped_inputs() {
    // The paper's networks at 1/16 (VGG-11) and 1/4 (ResNet-20) width on
    // four 3×32×32 examples.
    let train = random_data(6, &[3, 32, 32], 10, 81);
    let test = random_data(3, &[3, 32, 32], 10, 82);
    let params = NetParams { ghost_batch: 3, ..Default::default() };
    let nets = [
        net::si_mlp(&[3, 32, 32], &[16, 16], 10, Activation::Swish, net::default_final_gamma()).unwrap(),
        net::si_vgg(&net::vgg11_config(), 1.0 / 16.0, [3, 32, 32], 10, net::default_final_gamma()).unwrap(),
        net::resnet20(true, 0.25, [3, 32, 32], 10, net::default_final_gamma()).unwrap(),
        net::resnet20(false, 0.25, [3, 32, 32], 10, net::default_final_gamma()).unwrap(),
    ];
    for n in nets {
        one_step(&NetProblem::new(n, &train, &test, params.clone()).unwrap());
    }
}

#[test]
fn layouts_count_the_paper_architectures() {
    // Full-width parameter counts (no biases but the standard ResNet's head).
    let vgg = net::si_vgg(&net::vgg11_config(), 1.0, [3, 32, 32], 10, 1.353).unwrap();
    let convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)];
    let expected: usize = convs.iter().map(|(i, o)| i * o * 9).sum::<usize>() + 512 * 10;
    assert_eq!(vgg.dim(), expected);
    let si = net::resnet20(true, 1.0, [3, 32, 32], 10, 1.353).unwrap();
    let std = net::resnet20(false, 1.0, [3, 32, 32], 10, 1.353).unwrap();
    let conv_count = |n: &net::Net| n.params.iter().filter(|p| p.kind == ParamKind::ConvWeight).count();
    let shortcut_count = |n: &net::Net| n.params.iter().filter(|p| p.kind == ParamKind::ShortcutConvWeight).count();
    // 1 stem + 9 blocks × 2 convs, plus 2 downsampling shortcuts.
    assert_eq!((conv_count(&si), shortcut_count(&si)), (19, 2));
    assert_eq!((conv_count(&std), shortcut_count(&std)), (19, 2));
    // ResNet-20 (He et al.) has ~0.27M parameters.
    assert!((260_000..280_000).contains(&std.dim()), "{}", std.dim());
    // The standard net's declared block: the 19 non-shortcut convs.
    let ScaleInvariance::Block(idx) = std.scale_invariance() else { panic!("standard ResNet declares a block") };
    let conv_params: usize = std.params.iter().filter(|p| p.kind == ParamKind::ConvWeight).map(|p| p.len()).sum();
    assert_eq!(idx.len(), conv_params);
    assert_eq!(si.scale_invariance(), ScaleInvariance::All);
    // Layout: consecutive, in order, covering 0..D.
    let mut off = 0;
    for p in &std.params {
        assert_eq!(p.offset, off, "{}", p.name);
        off += p.len();
    }
    assert_eq!(off, std.dim());
}

#[test]
fn the_standard_resnet_is_not_invariant_in_all_parameters() {
    let train = random_data(8, &[1, 8, 8], 3, 91);
    let test = random_data(3, &[1, 8, 8], 3, 92);
    let p = NetProblem::new(
        net::resnet20(false, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
        &train,
        &test,
        NetParams { ghost_batch: 4, ..Default::default() },
    )
    .unwrap();
    let w = p.initial_point();
    let (_, g) = grad(&p, &w);
    // ⟨∇L, w⟩ over all parameters is far from 0: the block declaration matters.
    assert!(dot(&g, &w).abs() / (norm(&g) * norm(&w)) > 1e-6);
}

#[test]
fn shapes_that_do_not_compose_are_explained() {
    // Three pools on 8×8 leave 1×1, a fourth cannot halve it.
    let cfg = [VggItem::Conv(4), VggItem::Pool, VggItem::Pool, VggItem::Pool, VggItem::Pool];
    let e = net::si_vgg(&cfg, 1.0, [1, 8, 8], 10, 1.353).unwrap_err().to_string();
    assert!(e.contains("pooling") && e.contains("[4, 1, 1]"), "{e}");
    // Data of the wrong shape for the network.
    let net = net::si_mlp(&[1, 8, 8], &[4], 3, Activation::Swish, 1.353).unwrap();
    let train = random_data(6, &[3, 8, 8], 3, 1);
    let e = NetProblem::new(net.clone(), &train, &train, NetParams::default()).err().unwrap().to_string();
    assert!(e.contains("[3, 8, 8]") && e.contains("[1, 8, 8]"), "{e}");
    // A label outside 0..C.
    let mut bad = random_data(6, &[1, 8, 8], 3, 1);
    bad.labels[4] = 7;
    let e = NetProblem::new(net.clone(), &bad, &bad, NetParams::default()).err().unwrap().to_string();
    assert!(e.contains("example 4 has label 7"), "{e}");
    // Classes that do not match the output width.
    let train = random_data(6, &[1, 8, 8], 4, 1);
    let e = NetProblem::new(net, &train, &train, NetParams::default()).err().unwrap().to_string();
    assert!(e.contains("4 classes") && e.contains("outputs 3"), "{e}");
}

#[test]
fn l_min_and_label_smoothing_match_eq_53_and_app_r2() {
    use eosflow_nn::LossKind;
    let g = net::default_final_gamma();
    assert!((g - 0.3 * 91f64.ln()).abs() < 1e-15);
    let net10 = net::si_mlp(&[4], &[3], 10, Activation::Swish, g).unwrap();
    // γ = (3/10)·ln 91 ⇒ γ(√9 + 1/√9) = ln 91 ⇒ L_min = ln(1 + 9/91) = ln(100/91).
    assert!((eosflow_nn::problem::l_min(&net10, LossKind::Ce) - (100.0f64 / 91.0).ln()).abs() < 1e-15);
    assert_eq!(eosflow_nn::problem::l_min(&net10, LossKind::Mse), 0.0);
    let std = net::resnet20(false, 0.25, [1, 8, 8], 10, g).unwrap();
    assert_eq!(eosflow_nn::problem::l_min(&std, LossKind::Ce), 0.0);
    // Eq. (53) for C = 2: ln(1 + exp(−2γ)).
    let net2 = net::si_mlp(&[4], &[3], 2, Activation::Swish, 1.0).unwrap();
    assert!((eosflow_nn::problem::l_min(&net2, LossKind::Ce) - (1.0 + (-2.0f64).exp()).ln()).abs() < 1e-15);
    // The label smoothing of App. R.2: ε = C/((C−1) + e^{γ(√(C−1) + 1/√(C−1))})
    // = 10/(9 + 91) = 0.1 for the paper's γ; and L_min = −ln(1 − (1 − 1/C)ε),
    // the cross-entropy against the argmax at the smoothed optimum.
    let eps = eosflow_nn::problem::label_smoothing_epsilon(&net10, LossKind::Ce).unwrap();
    assert!((eps - 0.1).abs() < 1e-15, "{eps}");
    let l = eosflow_nn::problem::l_min(&net10, LossKind::Ce);
    assert!((l + (1.0 - 0.9 * eps).ln()).abs() < 1e-15);
    for (net, c) in [(&net2, 2.0f64), (&net10, 10.0)] {
        let e = eosflow_nn::problem::label_smoothing_epsilon(net, LossKind::Ce).unwrap();
        let l = eosflow_nn::problem::l_min(net, LossKind::Ce);
        assert!((l + (1.0 - (1.0 - 1.0 / c) * e).ln()).abs() < 1e-14, "C = {c}");
    }
    assert_eq!(eosflow_nn::problem::label_smoothing_epsilon(&net10, LossKind::Mse), None);
    assert_eq!(eosflow_nn::problem::label_smoothing_epsilon(&std, LossKind::Ce), None);
}
