//! The spectral estimators on plain matrices with known spectra: top-k and
//! bottom-k against faer's dense eigendecomposition, Hutchinson and Hutch++
//! against exact traces, SLQ's Gauss quadrature against exact moments, and
//! principal sub-blocks against the dense submatrix.

use eosflow::linalg::{dot, symmetric_eigen};
use eosflow::spectrum::{
    DenseSymmetric, LanczosParams, LinOp, Restricted, SlqParams, TraceParams, hutch_pp, hutchinson, lanczos_bottom,
    lanczos_quadrature, lanczos_top, slq, to_dense,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Q·diag(λ)·Qᵀ with Q a seeded random orthogonal matrix (Gram–Schmidt on
/// Gaussian columns).
fn with_spectrum(lambda: &[f64], seed: u64) -> DenseSymmetric {
    let n = lambda.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        for _ in 0..2 {
            for u in &q {
                let c = dot(u, &v);
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= c * b);
            }
        }
        let nv = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|a| *a /= nv);
        q.push(v);
    }
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..n).map(|k| q[k][i] * lambda[k] * q[k][j]).sum();
            a[i * n + j] = s;
            a[j * n + i] = s;
        }
    }
    DenseSymmetric::new(n, a)
}

#[test]
fn top_and_bottom_k_match_the_dense_eigendecomposition() {
    // 60 eigenvalues: the most negative (−10) is the largest in magnitude, a
    // cluster of three near 5 (1e-6 apart) at the top, the rest in [−3, 3].
    let mut lambda: Vec<f64> = (0..56).map(|i| -3.0 + 6.0 * i as f64 / 55.0).collect();
    lambda.extend([-10.0, 5.0, 5.0 + 1e-6, 5.0 + 2e-6]);
    let a = with_spectrum(&lambda, 1);
    let (dense, _) = symmetric_eigen(60, a.entries());
    let p = LanczosParams { k: 4, tol: 1e-12, max_basis: 40, ..Default::default() };
    let top = lanczos_top(&a, &p, None).unwrap();
    let bottom = lanczos_bottom(&a, &p, None).unwrap();
    assert!(top.converged && bottom.converged);
    // Eigenvalues to the residual tolerance times the spectral norm (10),
    // plus the dense solver's O(n·ε): 1e-10.
    for i in 0..4 {
        assert!((top.eigenvalues[i] - dense[i]).abs() < 1e-10, "top {i}: {} vs {}", top.eigenvalues[i], dense[i]);
        let d = dense[59 - i];
        assert!((bottom.eigenvalues[i] - d).abs() < 1e-10, "bottom {i}: {} vs {d}", bottom.eigenvalues[i]);
    }
    assert!((bottom.eigenvalues[0] + 10.0).abs() < 1e-10, "the largest-magnitude eigenvalue is the smallest");
    assert!((top.eigenvalues[0] - (5.0 + 2e-6)).abs() < 1e-10, "the largest algebraic, not the largest magnitude");
    // Residuals are A's (not −A's): ‖A y − θ y‖.
    let mut ay = vec![0.0; 60];
    for (th, y) in bottom.eigenvalues.iter().zip(&bottom.eigenvectors) {
        a.apply(y, &mut ay);
        let r: f64 = ay.iter().zip(y).map(|(u, v)| (u - th * v).powi(2)).sum::<f64>().sqrt();
        assert!(r < 1e-10, "residual {r}");
    }
}

#[test]
fn hutchinson_is_within_three_standard_errors_of_the_trace() {
    let lambda: Vec<f64> = (0..50).map(|i| 1.0 + (i as f64 * 0.37).sin() * 2.0).collect();
    let exact: f64 = lambda.iter().sum();
    let a = with_spectrum(&lambda, 2);
    for seed in 0..10 {
        let t = hutchinson(&a, &TraceParams { probes: 40, seed }).unwrap();
        assert_eq!(t.matvecs, 40);
        assert!(t.std_error > 0.0);
        assert!(
            (t.estimate - exact).abs() <= 3.0 * t.std_error,
            "seed {seed}: {} ± {} against {exact}",
            t.estimate,
            t.std_error
        );
        let pp = hutch_pp(&a, &TraceParams { probes: 42, seed }).unwrap();
        assert_eq!(pp.matvecs, 42);
        assert!(
            (pp.estimate - exact).abs() <= 3.0 * pp.std_error,
            "seed {seed}: Hutch++ {} ± {}",
            pp.estimate,
            pp.std_error
        );
    }
}

#[test]
fn hutch_pp_beats_hutchinson_on_low_rank_plus_noise_at_equal_cost() {
    // Ten large eigenvalues (100 … 10) over 190 small ones (|λ| ≤ 0.1):
    // Hutch++'s Q catches the top, Hutchinson's variance is ~2‖A‖_F²/m.
    let mut lambda: Vec<f64> = (0..10).map(|i| 100.0 - 10.0 * i as f64).collect();
    lambda.extend((0..190).map(|i| 0.1 * (i as f64 * 1.3).cos()));
    let exact: f64 = lambda.iter().sum();
    let a = with_spectrum(&lambda, 3);
    let (mut e_h, mut e_pp) = (0.0, 0.0);
    for seed in 0..20 {
        let p = TraceParams { probes: 60, seed };
        e_h += (hutchinson(&a, &p).unwrap().estimate - exact).powi(2);
        e_pp += (hutch_pp(&a, &p).unwrap().estimate - exact).powi(2);
    }
    let (rms_h, rms_pp) = ((e_h / 20.0).sqrt(), (e_pp / 20.0).sqrt());
    assert!(rms_pp < 0.1 * rms_h, "RMS error: Hutch++ {rms_pp:.3e}, Hutchinson {rms_h:.3e}");
}

#[test]
fn slq_quadrature_is_exact_to_degree_2m_minus_1_and_averages_to_the_moments() {
    let lambda: Vec<f64> = (0..80).map(|i| -1.0 + 3.0 * (i as f64 / 79.0).powi(2)).collect();
    let n = lambda.len();
    let a = with_spectrum(&lambda, 4);
    // v^T A^k v by repeated products.
    let moment = |v: &[f64], k: usize| {
        let mut x = v.to_vec();
        let mut y = vec![0.0; n];
        for _ in 0..k {
            a.apply(&x, &mut y);
            std::mem::swap(&mut x, &mut y);
        }
        dot(v, &x)
    };
    let m = 6;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for _ in 0..3 {
        let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        let nv = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|x| *x /= nv);
        let (q, used) = lanczos_quadrature(&a, &v, m).unwrap();
        assert_eq!(used, m);
        assert!((q.weights.iter().sum::<f64>() - 1.0).abs() < 1e-13);
        // Gauss quadrature with m nodes: exact for degree ≤ 2m − 1 = 11;
        // the moments are O(2^k), rounding O(k·ε) of them.
        for k in 0..=2 * m - 1 {
            let g: f64 = q.nodes.iter().zip(&q.weights).map(|(t, w)| w * t.powi(k as i32)).sum();
            let e = moment(&v, k);
            assert!((g - e).abs() < 1e-11 * e.abs().max(1.0) * 2f64.powi(k as i32), "k = {k}: {g} vs {e}");
        }
        // Degree 2m is not exact in general.
        let g: f64 = q.nodes.iter().zip(&q.weights).map(|(t, w)| w * t.powi(2 * m as i32)).sum();
        assert!((g - moment(&v, 2 * m)).abs() > 1e-9);
    }
    // Probe averages against tr(A^k)/n, within 3 of their standard errors.
    let d = slq(&a, &SlqParams { probes: 30, steps: 10, ..Default::default() }).unwrap();
    assert_eq!(d.matvecs, 300);
    for k in 1..=4 {
        let per: Vec<f64> =
            d.quadratures.iter().map(|q| q.nodes.iter().zip(&q.weights).map(|(t, w)| w * t.powi(k)).sum()).collect();
        let mean = per.iter().sum::<f64>() / 30.0;
        let se = (per.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / 29.0 / 30.0).sqrt();
        let exact = lambda.iter().map(|l| l.powi(k)).sum::<f64>() / n as f64;
        assert!((mean - exact).abs() <= 3.0 * se, "k = {k}: {mean} ± {se} against {exact}");
    }
    // The broadened density integrates to 1 and its support covers the
    // spectrum (nodes lie in [λ_min, λ_max]).
    let h = d.grid[1] - d.grid[0];
    let integral: f64 = d.density.iter().sum::<f64>() * h;
    assert!((integral - 1.0).abs() < 1e-3, "∫φ = {integral}");
    let (lo, hi) = (lambda[0], lambda[n - 1]);
    for q in &d.quadratures {
        assert!(q.nodes.iter().all(|t| *t >= lo - 1e-10 && *t <= hi + 1e-10));
    }
}

#[test]
fn slq_has_no_ghost_copies_of_an_isolated_top_eigenvalue() {
    // A spectrum with well-separated extremes, where plain Lanczos produces
    // copies of the top eigenvalue after many steps: with full
    // reorthogonalisation the top Ritz value appears once and its weight is
    // the probe's squared component along the top eigenvector.
    let mut lambda: Vec<f64> = (0..99).map(|i| i as f64 / 98.0).collect();
    lambda.push(50.0);
    let a = with_spectrum(&lambda, 5);
    let d = slq(&a, &SlqParams { probes: 1, steps: 60, ..Default::default() }).unwrap();
    let q = &d.quadratures[0];
    let near_top = q.nodes.iter().filter(|t| (*t - 50.0).abs() < 1e-6).count();
    assert_eq!(near_top, 1, "ghost copies of λ = 50: {:?}", &q.nodes[..3]);
}

#[test]
fn a_principal_sub_block_is_the_dense_submatrix_and_interlaces() {
    let lambda: Vec<f64> = (0..30).map(|i| (i as f64 * 0.7).sin() * 3.0).collect();
    let a = with_spectrum(&lambda, 6);
    let idx: Vec<usize> = (0..30).filter(|i| i % 3 != 1).collect();
    let block = Restricted::new(&a, &idx);
    let dense_block = to_dense(&block);
    let m = idx.len();
    for (r, &i) in idx.iter().enumerate() {
        for (c, &j) in idx.iter().enumerate() {
            assert_eq!(dense_block[r * m + c], a.entries()[i * 30 + j], "({i}, {j})");
        }
    }
    // Cauchy interlacing: λ1 of a principal submatrix ≤ λ1 of the matrix,
    // λ_min of it ≥ λ_min of the matrix.
    let p = LanczosParams { tol: 1e-12, ..Default::default() };
    let (full_top, block_top) = (lanczos_top(&a, &p, None).unwrap(), lanczos_top(&block, &p, None).unwrap());
    let (full_bot, block_bot) = (lanczos_bottom(&a, &p, None).unwrap(), lanczos_bottom(&block, &p, None).unwrap());
    assert!(block_top.eigenvalues[0] <= full_top.eigenvalues[0] + 1e-12);
    assert!(block_bot.eigenvalues[0] >= full_bot.eigenvalues[0] - 1e-12);
    // The block's trace is the sum of its diagonal: Hutch++ with the block's
    // full dimension in probes is exact.
    let exact: f64 = idx.iter().map(|&i| a.entries()[i * 30 + i]).sum();
    let t = hutch_pp(&block, &TraceParams { probes: 3 * m, seed: 0 }).unwrap();
    assert!((t.estimate - exact).abs() < 1e-10, "{} vs {exact}", t.estimate);
}

#[test]
fn bad_settings_are_errors_not_panics() {
    let a = with_spectrum(&[1.0, 2.0], 0);
    assert!(hutchinson(&a, &TraceParams { probes: 1, seed: 0 }).is_err());
    assert!(hutch_pp(&a, &TraceParams { probes: 7, seed: 0 }).is_err());
    assert!(slq(&a, &SlqParams { steps: 0, ..Default::default() }).is_err());
    assert!(slq(&a, &SlqParams { sigma: -1.0, ..Default::default() }).is_err());
    let msg = hutch_pp(&a, &TraceParams { probes: 4, seed: 0 }).unwrap_err().to_string();
    assert!(msg.contains("Hutch++") && msg.contains("multiple of 3"), "{msg}");
}

/// Records w at every step, and the blocks of each spectrum evaluation.
#[derive(Default)]
struct AtSpectrum {
    w: std::collections::HashMap<u64, Vec<f64>>,
    blocks: Vec<(u64, Vec<eosflow::spectrum::BlockSpectrum>)>,
}

impl eosflow::run::Observer for AtSpectrum {
    fn on_step(&mut self, r: &eosflow::run::StepRecord, w: &[f64]) -> Result<(), eosflow::run::ObserverError> {
        self.w.insert(r.step, w.to_vec());
        Ok(())
    }
    fn on_spectrum(
        &mut self,
        step: u64,
        blocks: &[eosflow::spectrum::BlockSpectrum],
    ) -> Result<(), eosflow::run::ObserverError> {
        self.blocks.push((step, blocks.to_vec()));
        Ok(())
    }
}

#[test]
fn the_runner_logs_each_blocks_top_eigenvalue_and_trace_along_training() {
    use eosflow::optim::GdWd;
    use eosflow::problems::{LinregBn, LinregData, LinregInit, Problem};
    use eosflow::run::{RunParams, Runner, SpectrumSchedule};
    use eosflow::spectrum::{Block, BlockParams, BlockSet, select_blocks};
    use eosflow::{Hessian, Objective};

    let p = LinregBn::new(LinregData::generate(12, 40, 50, 1), LinregInit::Uniform, 1).unwrap();
    let d = p.dim();
    let mut blocks = select_blocks(&p, BlockSet::Si).unwrap();
    assert_eq!(blocks.len(), 1, "linreg_bn is scale-invariant in all of w: si is the whole Hessian");
    let half: Vec<usize> = (0..d).step_by(2).collect();
    blocks.push(Block { name: "even".into(), indices: Some(half.clone()), spherical: false });
    let every = 50;
    let lanczos = LanczosParams { tol: 1e-11, ..Default::default() };
    let schedule = SpectrumSchedule {
        every,
        blocks,
        params: BlockParams { lanczos: lanczos.clone(), trace: TraceParams { probes: 12, seed: 3 } },
    };
    let mut opt = GdWd::new(0.2, 0.05, p.initial_point());
    let mut seen = AtSpectrum::default();
    let mut history = eosflow::run::History::default();
    let params =
        RunParams { steps: 210, sharpness_every: every, lanczos, spectrum: Some(schedule), ..Default::default() };
    let summary =
        Runner::for_problem(&p, &mut opt).params(params).observer(&mut seen).observer(&mut history).run().unwrap();
    // Steps 0, 50, …, 200 and the last, 210.
    let steps: Vec<u64> = seen.blocks.iter().map(|b| b.0).collect();
    assert_eq!(steps, [0, 50, 100, 150, 200, 210]);
    let block_hvps: usize = seen.blocks.iter().flat_map(|b| b.1.iter().map(|s| s.hvps)).sum();
    assert!(summary.counts.hvps >= summary.hvps + block_hvps as u64, "the blocks' HVPs are counted");
    for (step, got) in &seen.blocks {
        let w = &seen.w[step];
        let sharp = history.sharpness.iter().find(|r| r.step == *step).unwrap();
        // The whole Hessian, × ‖w‖², is the runner's spherical sharpness:
        // two Lanczos runs to a 1e-11 relative residual agree to ~1e-10.
        assert!((got[0].top_times_w_norm2() / sharp.sharpness - 1.0).abs() < 1e-9, "step {step}");
        let h = to_dense(p.hessian_at(w).as_ref());
        for (b, idx) in got.iter().zip([(0..d).collect::<Vec<_>>(), half.clone()]) {
            let m = idx.len();
            let sub: Vec<f64> =
                idx.iter().flat_map(|&i| idx.iter().map(move |&j| (i, j))).map(|(i, j)| h[i * d + j]).collect();
            let (eig, _) = symmetric_eigen(m, &sub);
            let scale = eig.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            // Lanczos's residual 1e-11·scale bounds the eigenvalue error
            // (Bauer–Fike) far below this; the dense solver is backward
            // stable to ~m·ε·scale.
            assert!(
                (b.top[0] - eig[0]).abs() < 1e-9 * scale,
                "step {step} block {}: {} vs {}",
                b.name,
                b.top[0],
                eig[0]
            );
            let exact: f64 = (0..m).map(|i| sub[i * m + i]).sum();
            let t = b.trace.as_ref().unwrap();
            assert!(
                (t.estimate - exact).abs() <= 4.0 * t.std_error + 1e-9 * scale * m as f64,
                "step {step} block {}: trace {} ± {} vs {exact}",
                b.name,
                t.estimate,
                t.std_error
            );
            assert_eq!(b.size, m);
            assert!((b.w_norm2 - idx.iter().map(|&i| w[i] * w[i]).sum::<f64>()).abs() <= 1e-15 * b.w_norm2);
        }
    }
}

#[test]
fn top_k_finds_every_copy_of_a_repeated_eigenvalue_below_the_top() {
    // The factorization's Hessian spectrum at its w0: λ1, then ±c with
    // multiplicity 4 and one more. A random start's Krylov space holds one
    // copy of each distinct eigenvalue and becomes invariant after 4
    // steps; Lanczos then goes on from a fresh random direction orthogonal
    // to it, which finds the next copies: top-k is exact, copies included.
    let lambda = [12.85, 4.008, 4.008, 4.008, 4.008, -3.126, -4.008, -4.008, -4.008, -4.008];
    for seed in 0..5 {
        let a = with_spectrum(&lambda, seed);
        for k in 1..=6 {
            let r = lanczos_top(&a, &LanczosParams { k, seed, ..Default::default() }, None).unwrap();
            for (i, (got, want)) in r.eigenvalues.iter().zip(&lambda).enumerate() {
                assert!((got - want).abs() < 1e-8, "seed {seed} k {k}: θ_{} = {got}, expected {want}", i + 1);
            }
        }
    }
}

#[test]
fn the_lanczos_start_vector_is_not_the_factorizations_w0() {
    // Regression: the factorization drew w0 from ChaCha8 stream 0 of its
    // seed, the stream of Lanczos's start vector for the same seed; the
    // start ∝ w0 spanned an invariant subspace with H·w0, and the top-2 at
    // w0 came out as (λ1, −3.13), missing +4.01. Now w0 is on stream 1.
    use eosflow::Hessian;
    use eosflow::problems::{Factorization, Problem};
    let p = Factorization::new(5, 0, 2.0);
    let w = p.initial_point();
    let h = p.hessian_at(&w);
    let (dense, _) = symmetric_eigen(10, &to_dense(h.as_ref()));
    let r = lanczos_top(h.as_ref(), &LanczosParams { k: 2, ..Default::default() }, None).unwrap();
    for i in 0..2 {
        assert!((r.eigenvalues[i] - dense[i]).abs() < 1e-10 * dense[0].abs(), "{:?} vs {:?}", r.eigenvalues, dense);
    }
}

#[test]
fn a_spectrum_schedule_that_cannot_work_is_refused_before_the_first_step() {
    use eosflow::optim::GdWd;
    use eosflow::problems::{Problem, Toy3d};
    use eosflow::run::{RunError, RunParams, Runner, SpectrumSchedule};
    use eosflow::spectrum::{Block, BlockParams};
    let p = Toy3d::new(0);
    let bad = [
        SpectrumSchedule { every: 0, blocks: vec![], params: BlockParams::default() },
        SpectrumSchedule {
            every: 1,
            blocks: vec![Block { name: "x".into(), indices: Some(vec![0, 7]), spherical: false }],
            params: BlockParams::default(),
        },
        SpectrumSchedule {
            every: 1,
            blocks: vec![Block { name: "empty".into(), indices: Some(vec![]), spherical: false }],
            params: BlockParams::default(),
        },
    ];
    for (sched, says) in bad.into_iter().zip(["every = 0", "coordinate 7", "block empty"]) {
        let mut opt = GdWd::new(0.5, 0.08, p.initial_point());
        let params = RunParams { steps: 5, spectrum: Some(sched), ..Default::default() };
        match Runner::for_problem(&p, &mut opt).params(params).run() {
            Err(e @ RunError::InvalidSpectrum(_)) => assert!(e.to_string().contains(says), "{e}"),
            other => panic!("{says}: {other:?}"),
        }
    }
}
