//! f32 computation against f64 on the same network, data and w: loss,
//! gradient and HVP relative errors (the f32 option is for GPU-sized runs;
//! the identity tests run in f64).

mod common;
use common::*;
use eosflow::Hessian;
use eosflow::problems::Problem;
use eosflow_nn::net::{self, VggItem};
use eosflow_nn::{NetParams, NetProblem, Precision};

#[test]
fn f32_agrees_with_f64_to_single_precision_accuracy() {
    let train = random_data(24, &[3, 16, 16], 4, 71);
    let test = random_data(8, &[3, 16, 16], 4, 72);
    let cfg = [VggItem::Conv(8), VggItem::Pool, VggItem::Conv(16), VggItem::Pool, VggItem::Conv(16), VggItem::Pool];
    let nets = [
        net::si_vgg(&cfg, 1.0, [3, 16, 16], 4, 1.353).unwrap(),
        net::resnet20(true, 0.25, [3, 16, 16], 4, 1.353).unwrap(),
    ];
    for n in nets {
        let make = |precision| {
            NetProblem::new(n.clone(), &train, &test, NetParams { ghost_batch: 12, precision, ..Default::default() })
                .unwrap()
        };
        let (p64, p32) = (make(Precision::F64), make(Precision::F32));
        let w = p64.initial_point();
        let v = random_vec(w.len(), 73);
        let (l64, g64) = grad(&p64, &w);
        let (l32, g32) = grad(&p32, &w);
        let (mut h64, mut h32) = (vec![0.0; w.len()], vec![0.0; w.len()]);
        p64.hvp(&w, &v, &mut h64);
        p32.hvp(&w, &v, &mut h32);
        let (el, eg, eh) = ((l32 - l64).abs() / l64, rel_err(&g32, &g64), rel_err(&h32, &h64));
        println!("{}: f32 vs f64 relative error: loss {el:.1e}, gradient {eg:.1e}, HVP {eh:.1e}", n.name);
        // f32 rounding (ε = 1.2e-7) through ~10–20 layers, BN divisions by
        // σ and the tangent pass: measured ≤ 1.3e-7 (loss), 9.1e-7
        // (gradient), 1.3e-6 (HVP), i.e. ≤ 11ε. The bounds allow ~100–1000ε; a wrong
        // type somewhere (f32 data through an f64 op, or the reverse) gives
        // O(1) errors or none.
        assert!(el < 1e-5, "{}: loss {el:e}", n.name);
        assert!(eg < 1e-4, "{}: gradient {eg:e}", n.name);
        assert!(eh < 1e-4, "{}: HVP {eh:e}", n.name);
        // And f32 really is f32: the results differ from f64's.
        assert!(eg > 1e-12 && eh > 1e-12, "{}: f32 path gives f64 bits", n.name);
    }
}
