//! Ghost BN: the full loss, gradient and HVP are the size-weighted sums of
//! independent per-batch computations, and do not depend on the number of
//! threads.

mod common;
use common::*;
use eosflow::problems::Problem;
use eosflow::{Hessian, Objective};
use eosflow_nn::net::{self, Activation};
use eosflow_nn::{Dataset, NetParams, NetProblem};

fn slice(d: &Dataset, a: usize, b: usize) -> Dataset {
    let s = d.example_size();
    Dataset {
        x: d.x[a * s..b * s].to_vec(),
        labels: d.labels[a..b].to_vec(),
        shape: d.shape.clone(),
        classes: d.classes,
    }
}

#[test]
fn ghost_batch_sums_equal_separate_batches() {
    // n = 12, B = 5: ghost batches of 5, 5 and 2 examples.
    let train = random_data(12, &[1, 8, 8], 3, 51);
    let test = random_data(4, &[1, 8, 8], 3, 52);
    let arch = || net::resnet20(true, 0.25, [1, 8, 8], 3, 1.353).unwrap();
    let full = NetProblem::new(arch(), &train, &test, NetParams { ghost_batch: 5, ..Default::default() }).unwrap();
    let w = full.initial_point();
    let v = random_vec(w.len(), 53);
    let (l, g) = grad(&full, &w);
    let mut hv = vec![0.0; w.len()];
    full.hvp(&w, &v, &mut hv);
    let (mut l_sum, mut g_sum, mut hv_sum) = (0.0, vec![0.0; w.len()], vec![0.0; w.len()]);
    for (a, b) in [(0, 5), (5, 10), (10, 12)] {
        // One problem per ghost batch, its whole set in one BN batch.
        let part = slice(&train, a, b);
        let p = NetProblem::new(arch(), &part, &test, NetParams { ghost_batch: b - a, ..Default::default() }).unwrap();
        let wgt = (b - a) as f64 / 12.0;
        let (lb, gb) = grad(&p, &w);
        let mut hb = vec![0.0; w.len()];
        p.hvp(&w, &v, &mut hb);
        l_sum += wgt * lb;
        g_sum.iter_mut().zip(&gb).for_each(|(s, x)| *s += wgt * x);
        hv_sum.iter_mut().zip(&hb).for_each(|(s, x)| *s += wgt * x);
    }
    // Same per-batch graphs, summed in the same order: equal to a few ulps.
    let tol = 8.0 * f64::EPSILON;
    assert!((l - l_sum).abs() <= tol * l, "loss {l} vs {l_sum}");
    assert!(rel_err(&g, &g_sum) <= tol, "gradient {:e}", rel_err(&g, &g_sum));
    assert!(rel_err(&hv, &hv_sum) <= tol, "HVP {:e}", rel_err(&hv, &hv_sum));
    // And ghost BN is not full-batch BN: with one batch of 12 the loss differs.
    let one = NetProblem::new(arch(), &train, &test, NetParams { ghost_batch: 12, ..Default::default() }).unwrap();
    assert!((one.loss(&w) - l).abs() > 1e-6);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let train = random_data(20, &[1, 8, 8], 3, 61);
    let test = random_data(4, &[1, 8, 8], 3, 62);
    let p = NetProblem::new(
        net::si_mlp(&[1, 8, 8], &[10, 10], 3, Activation::Swish, 1.353).unwrap(),
        &train,
        &test,
        NetParams { ghost_batch: 4, ..Default::default() },
    )
    .unwrap();
    let w = p.initial_point();
    let v = random_vec(w.len(), 63);
    let compute = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let (l, g) = grad(&p, &w);
            let mut hv = vec![0.0; w.len()];
            p.hvp(&w, &v, &mut hv);
            (
                l.to_bits(),
                g.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                hv.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            )
        })
    };
    let one = compute(1);
    for t in [2, 3, 5] {
        assert!(compute(t) == one, "{t} threads changed the bits");
    }
}

#[test]
fn a_last_ghost_batch_of_one_example_is_refused() {
    let train = random_data(11, &[1, 8, 8], 3, 71);
    let test = random_data(4, &[1, 8, 8], 3, 72);
    let net = net::si_mlp(&[1, 8, 8], &[4], 3, Activation::Swish, 1.353).unwrap();
    let e = NetProblem::new(net, &train, &test, NetParams { ghost_batch: 5, ..Default::default() }).err().unwrap();
    let msg = e.to_string();
    assert!(msg.contains("ghost_batch = 5") && msg.contains("single"), "{msg}");
}
