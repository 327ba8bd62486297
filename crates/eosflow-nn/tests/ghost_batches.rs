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

/// Threads standing for MPI ranks: channels from each rank to the next,
/// and from the last rank to every other for the broadcast.
struct ThreadExchange {
    rank: usize,
    size: usize,
    to_next: Option<Sender<Vec<f64>>>,
    from_prev: Option<Mutex<Receiver<Vec<f64>>>>,
    to_all: Vec<Sender<Vec<f64>>>,
    from_last: Option<Mutex<Receiver<Vec<f64>>>>,
}

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

fn thread_exchanges(size: usize) -> Vec<ThreadExchange> {
    let (mut next_tx, mut prev_rx): (Vec<_>, Vec<_>) = (0..size).map(|_| channel()).unzip();
    let (mut all_tx, mut last_rx): (Vec<_>, Vec<_>) = (0..size).map(|_| channel()).unzip();
    let mut out: Vec<ThreadExchange> = (0..size)
        .map(|rank| ThreadExchange { rank, size, to_next: None, from_prev: None, to_all: Vec::new(), from_last: None })
        .collect();
    // Channel r carries rank r − 1's partial sum to rank r, and the last
    // rank's total to rank r.
    for r in (0..size).rev() {
        let (tx, rx) = (next_tx.remove(r), prev_rx.remove(r));
        if r > 0 {
            out[r - 1].to_next = Some(tx);
            out[r].from_prev = Some(Mutex::new(rx));
        }
        let (tx, rx) = (all_tx.remove(r), last_rx.remove(r));
        if r + 1 < size {
            out[size - 1].to_all.push(tx);
            out[r].from_last = Some(Mutex::new(rx));
        }
    }
    out
}

impl eosflow_nn::problem::BatchExchange for ThreadExchange {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn recv_prev(&self, buf: &mut [f64]) {
        buf.copy_from_slice(&self.from_prev.as_ref().unwrap().lock().unwrap().recv().unwrap());
    }
    fn send_next(&self, buf: &[f64]) {
        self.to_next.as_ref().unwrap().send(buf.to_vec()).unwrap();
    }
    fn broadcast_from_last(&self, buf: &mut [f64]) {
        match &self.from_last {
            Some(rx) => buf.copy_from_slice(&rx.lock().unwrap().recv().unwrap()),
            None => self.to_all.iter().for_each(|tx| tx.send(buf.to_vec()).unwrap()),
        }
    }
}

#[test]
fn ranks_sharing_the_ghost_batches_get_the_single_process_bits() {
    // n = 24 in ghost batches of 5: batches of 5, 5, 5, 5 and 4, shared by
    // 2, 3, 4 and 6 ranks (blocks of 2+3, 1+2+2, 1+1+1+2 and 0+1+1+1+1+1
    // batches); an SI MLP and a ResNet (convolutions, residual BN).
    let train = random_data(24, &[1, 8, 8], 3, 71);
    let test = random_data(4, &[1, 8, 8], 3, 72);
    for arch in
        [(|| net::si_mlp(&[1, 8, 8], &[12, 10], 3, Activation::Swish, 1.353).unwrap()) as fn() -> net::Net, || {
            net::resnet20(true, 0.25, [1, 8, 8], 3, 1.353).unwrap()
        }]
    {
        ranks_agree_with_one_process(arch, &train, &test);
    }
}

fn ranks_agree_with_one_process(arch: fn() -> net::Net, train: &Dataset, test: &Dataset) {
    let params = NetParams { ghost_batch: 5, ..Default::default() };
    let single = NetProblem::new(arch(), train, test, params.clone()).unwrap();
    let w = single.initial_point();
    let v = random_vec(w.len(), 73);
    let (l1, g1) = grad(&single, &w);
    let mut h1 = vec![0.0; w.len()];
    single.hvp(&w, &v, &mut h1);
    let loss1 = single.loss(&w);
    for size in [2, 3, 4, 6] {
        let results: Vec<(f64, Vec<f64>, Vec<f64>, f64)> = std::thread::scope(|sc| {
            let handles: Vec<_> = thread_exchanges(size)
                .into_iter()
                .map(|ex| {
                    let (arch, params, w, v) = (arch(), params.clone(), &w, &v);
                    sc.spawn(move || {
                        let p =
                            NetProblem::new(arch, train, test, params).unwrap().with_exchange(std::sync::Arc::new(ex));
                        let (l, g) = grad(&p, w);
                        let mut h = vec![0.0; w.len()];
                        p.hvp(w, v, &mut h);
                        (l, g, h, p.loss(w))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, (l, g, h, loss)) in results.into_iter().enumerate() {
            // Bit for bit: the same per-batch vectors added in the same order.
            assert_eq!(l.to_bits(), l1.to_bits(), "{size} ranks, rank {rank}: loss");
            assert!(g.iter().zip(&g1).all(|(a, b)| a.to_bits() == b.to_bits()), "{size} ranks, rank {rank}: gradient");
            assert!(h.iter().zip(&h1).all(|(a, b)| a.to_bits() == b.to_bits()), "{size} ranks, rank {rank}: HVP");
            assert_eq!(loss.to_bits(), loss1.to_bits(), "{size} ranks, rank {rank}: loss()");
        }
    }
}
