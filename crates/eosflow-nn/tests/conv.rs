//! The tiled im2col convolution against candle's conv2d (forward, both
//! gradients, across tile boundaries), by exact adjoint differences, in the
//! tangent pass against finite differences, for any thread count, and whole
//! networks (loss, gradient, HVP) computed by eosflow's kernels (tiled
//! convolution, fused BN/Swish/ReLU) or by candle's own ops.

mod common;
use candle_core::{Device, Tensor, Var};
use common::*;
use eosflow::problems::Problem;
use eosflow::{Hessian, Objective};
use eosflow_nn::net::{self, VggItem};
use eosflow_nn::{ConvImpl, NetParams, NetProblem};

fn t(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(random_vec(n, seed), shape, &Device::Cpu).unwrap()
}

fn flat(x: &Tensor) -> Vec<f64> {
    x.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

#[test]
fn forward_and_gradients_match_candle_conv2d() {
    // Odd sizes, both strides, with and without padding, 1×1 and 3×3.
    for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (3, 1, 0), (1, 2, 0), (3, 2, 0)] {
        // Square inputs: candle's own conv2d backward assumes h = w when it
        // sizes the transposed convolution (7×6 with stride 2 fails in
        // candle 0.11); non-square inputs are checked below without it.
        let x = Var::from_tensor(&t(&[2, 3, 7, 7], 1)).unwrap();
        let w = Var::from_tensor(&t(&[4, 3, k, k], 2)).unwrap();
        let ours = eosflow_nn::conv::conv2d(&x, &w, stride, pad).unwrap();
        let theirs = x.conv2d(&w, pad, stride, 1, 1).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        // Sums of c·k² ≤ 27 products of O(1) numbers in another order:
        // differences ≲ 27ε relative to the output's scale.
        let tol = 64.0 * f64::EPSILON;
        assert!(rel_err(&flat(&ours), &flat(&theirs)) < tol, "forward k={k} s={stride} p={pad}");
        // ⟨R, conv(x, W)⟩ for a random R: gradients in x and W.
        let r = t(ours.dims(), 3);
        let go = ours.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = theirs.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", &x), ("W", &w)] {
            let (a, b) = (flat(go.get(v).unwrap()), flat(gt.get(v).unwrap()));
            let e = rel_err(&a, &b);
            // Gradient entries sum up to n·oh·ow ≈ 84 products.
            assert!(e < 256.0 * f64::EPSILON, "∂/∂{name} k={k} s={stride} p={pad}: {e:e}");
        }
    }
}

#[test]
fn many_tiles_and_kernel_gradient_groups_match_candle_for_any_thread_count() {
    // 20 examples of 32×32 (one example per tile, 20 tiles in 10 groups of
    // 2 for the kernel gradient) and 40 of 6×6 stride 2 (3×3 outputs: all
    // 40 in one tile, gathered channel-major). Both shapes square so that
    // candle's conv2d backward can serve as the reference.
    for (shape, k, stride, pad) in [([20, 2, 32, 32], 3, 1, 1), ([40, 3, 6, 6], 3, 2, 1)] {
        let x = Var::from_tensor(&t(&shape, 21)).unwrap();
        let w = Var::from_tensor(&t(&[5, shape[1], k, k], 22)).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let y = eosflow_nn::conv::conv2d(&x, &w, stride, pad).unwrap();
                let r = t(y.dims(), 23);
                let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
                (flat(&y), flat(g.get(&x).unwrap()), flat(g.get(&w).unwrap()))
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads changed the bits ({shape:?})");
        }
        let y = x.conv2d(&w, pad, stride, 1, 1).unwrap();
        let r = t(y.dims(), 23);
        let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        // Output entries are sums of c·k² ≤ 27 products; gradient entries of
        // up to n·oh·ow = 20,480 (kernel) products: rounding grows like the
        // square root of the count for random signs, bounded by the count.
        assert!(rel_err(&one.0, &flat(&y)) < 64.0 * f64::EPSILON);
        assert!(rel_err(&one.1, &flat(g.get(&x).unwrap())) < 256.0 * f64::EPSILON);
        assert!(rel_err(&one.2, &flat(g.get(&w).unwrap())) < 1e3 * f64::EPSILON);
    }
}

#[test]
fn tangent_of_a_convolution_matches_finite_differences() {
    // The tangent pass computes d/dε conv(x + εẋ, W + εẆ) at ε = 0 as
    // conv(ẋ, W) + conv(x, Ẇ); conv is bilinear, so the central difference
    // (f(ε) − f(−ε))/2ε is exact up to rounding for any ε (here 1).
    let (x, dx) = (t(&[3, 2, 9, 9], 31), t(&[3, 2, 9, 9], 32));
    let (w, dw) = (t(&[4, 2, 3, 3], 33), t(&[4, 2, 3, 3], 34));
    let conv = |x: &Tensor, w: &Tensor| flat(&eosflow_nn::conv::conv2d(x, w, 2, 1).unwrap());
    let tangent: Vec<f64> = conv(&dx, &w).iter().zip(conv(&x, &dw)).map(|(a, b)| a + b).collect();
    let plus = conv(&(&x + &dx).unwrap(), &(&w + &dw).unwrap());
    let minus = conv(&(&x - &dx).unwrap(), &(&w - &dw).unwrap());
    let fd: Vec<f64> = plus.iter().zip(&minus).map(|(p, m)| (p - m) / 2.0).collect();
    // Each entry: 18 products of (x ± ẋ)(W ± Ẇ) with |·| ~ 2, differenced.
    assert!(rel_err(&tangent, &fd) < 64.0 * f64::EPSILON, "{:e}", rel_err(&tangent, &fd));
}

#[test]
fn fused_tangent_equals_two_convolutions_and_their_gradients() {
    // conv2d_tangent(x, ẋ, W, Ẇ) = conv(ẋ, W) + conv(x, Ẇ) with Ẇ constant,
    // in one pass: the value and the gradients in x, ẋ and W of ⟨R, ·⟩.
    for (shape, stride, pad) in [([3, 2, 9, 9], 1, 1), ([20, 2, 32, 32], 2, 1), ([4, 3, 6, 6], 1, 0)] {
        let x = Var::from_tensor(&t(&shape, 51)).unwrap();
        let xd = Var::from_tensor(&t(&shape, 52)).unwrap();
        let w = Var::from_tensor(&t(&[5, shape[1], 3, 3], 53)).unwrap();
        let dw = t(&[5, shape[1], 3, 3], 54);
        let fused = eosflow_nn::conv::conv2d_tangent(&x, &xd, &w, &dw, stride, pad).unwrap();
        let conv = |a: &Tensor, k: &Tensor| eosflow_nn::conv::conv2d(a, k, stride, pad).unwrap();
        let plain = (conv(&xd, &w) + conv(&x, &dw)).unwrap();
        // The same products summed in the same order, one accumulation
        // apart: equal to a few ε of the output's scale.
        assert!(rel_err(&flat(&fused), &flat(&plain)) < 16.0 * f64::EPSILON, "{shape:?}");
        let r = t(fused.dims(), 55);
        let gf = fused.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = plain.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", &x), ("ẋ", &xd), ("W", &w)] {
            let e = rel_err(&flat(gf.get(v).unwrap()), &flat(gp.get(v).unwrap()));
            assert!(e < 16.0 * f64::EPSILON, "{shape:?} ∂/∂{name}: {e:e}");
        }
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let x = t(&[1, 2, 5, 5], 41);
    let e = eosflow_nn::conv::conv2d(&x, &t(&[3, 4, 3, 3], 42), 1, 1).unwrap_err().to_string();
    assert!(e.contains("do not match"), "{e}");
    let e = eosflow_nn::conv::conv2d(&x, &t(&[3, 2, 7, 7], 43), 1, 0).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
}

#[test]
fn non_square_inputs_have_exact_adjoint_gradients() {
    // f(x, W) = ⟨R, conv(x, W)⟩ is linear in x and in W, so a central
    // difference with a unit step is exact up to rounding: ⟨∇f, u⟩ must
    // equal (f(x + u) − f(x − u))/2.
    for (k, stride, pad) in [(3, 2, 0), (3, 2, 1), (1, 2, 0), (3, 1, 1)] {
        let x = Var::from_tensor(&t(&[2, 3, 7, 6], 11)).unwrap();
        let w = Var::from_tensor(&t(&[4, 3, k, k], 12)).unwrap();
        let y = eosflow_nn::conv::conv2d(&x, &w, stride, pad).unwrap();
        let (_, _, oh, ow) = y.dims4().unwrap();
        let o = |s: usize| (s + 2 * pad - k) / stride + 1;
        assert_eq!((oh, ow), (o(7), o(6)));
        let r = t(y.dims(), 13);
        let f = |x: &Tensor, w: &Tensor| {
            eosflow_nn::conv::conv2d(x, w, stride, pad)
                .unwrap()
                .mul(&r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let g = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        let (ux, uw) = (t(&[2, 3, 7, 6], 14), t(&[4, 3, k, k], 15));
        let dx = dot(&flat(g.get(&x).unwrap()), &flat(&ux));
        let fdx = (f(&(x.as_tensor() + &ux).unwrap(), &w) - f(&(x.as_tensor() - &ux).unwrap(), &w)) / 2.0;
        let dw = dot(&flat(g.get(&w).unwrap()), &flat(&uw));
        let fdw = (f(&x, &(w.as_tensor() + &uw).unwrap()) - f(&x, &(w.as_tensor() - &uw).unwrap())) / 2.0;
        // |f| is a sum of ~10³ products: rounding ≲ 1e3·ε·Σ|terms|; scale by
        // the norms involved.
        let scale = norm(&flat(&r)) * norm(&flat(&ux)).max(norm(&flat(&uw))) * norm(&flat(&w)).max(norm(&flat(&x)));
        assert!((dx - fdx).abs() < 1e3 * f64::EPSILON * scale, "x: {dx} vs {fdx} (k={k} s={stride} p={pad})");
        assert!((dw - fdw).abs() < 1e3 * f64::EPSILON * scale, "W: {dw} vs {fdw} (k={k} s={stride} p={pad})");
    }
}

#[test]
fn networks_agree_whether_eosflow_kernels_or_candle_ops_compute_them() {
    let train = random_data(10, &[1, 8, 8], 3, 7);
    let test = random_data(4, &[1, 8, 8], 3, 8);
    let nets = [
        net::si_vgg(&[VggItem::Conv(4), VggItem::Pool, VggItem::Conv(6), VggItem::Pool], 1.0, [1, 8, 8], 3, 1.353)
            .unwrap(),
        net::resnet20(true, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
        net::resnet20(false, 0.25, [1, 8, 8], 3, 1.353).unwrap(),
    ];
    for n in nets {
        let name = n.name.clone();
        let make = |conv| {
            NetProblem::new(n.clone(), &train, &test, NetParams { ghost_batch: 5, conv, ..Default::default() }).unwrap()
        };
        let (a, b) = (make(ConvImpl::Im2col), make(ConvImpl::Candle));
        let w = a.initial_point();
        let v = random_vec(w.len(), 9);
        let (la, ga) = grad(&a, &w);
        let (lb, gb) = grad(&b, &w);
        let (mut ha, mut hb) = (vec![0.0; w.len()], vec![0.0; w.len()]);
        a.hvp(&w, &v, &mut ha);
        b.hvp(&w, &v, &mut hb);
        // Same function, different summation order, through ~20 layers
        // (the same 1e3·ε budget as the scale-invariance tests).
        let tol = 1e3 * f64::EPSILON;
        assert!((la - lb).abs() < tol * la, "{name}: loss {la} vs {lb}");
        assert!(rel_err(&ga, &gb) < tol, "{name}: gradient {:e}", rel_err(&ga, &gb));
        assert!(rel_err(&ha, &hb) < tol, "{name}: HVP {:e}", rel_err(&ha, &hb));
        assert_eq!(a.loss(&w), la);
        println!(
            "{name}: loss {:.1e}, gradient {:.1e}, HVP {:.1e}",
            (la - lb).abs() / la,
            rel_err(&ga, &gb),
            rel_err(&ha, &hb)
        );
    }
}
