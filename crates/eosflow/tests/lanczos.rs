//! Lanczos against faer's dense symmetric eigen-decomposition.

#![allow(clippy::needless_range_loop)] // index loops mirror the formulas they check

use eosflow::linalg::{dot, norm, symmetric_eigen};
use eosflow::spectrum::{DenseSymmetric, LanczosError, LanczosParams, LinOp, Restricted, lanczos_top};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn random_orthogonal(n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let mut q: Vec<Vec<f64>> = Vec::new();
    for _ in 0..n {
        let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
        for _ in 0..2 {
            for u in &q {
                let c = dot(u, &v);
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= c * b);
            }
        }
        let nv = norm(&v);
        v.iter_mut().for_each(|a| *a /= nv);
        q.push(v);
    }
    q
}

/// A = Q·diag(eigs)·Qᵀ with Q seeded random orthogonal.
fn with_spectrum(eigs: &[f64], seed: u64) -> DenseSymmetric {
    let n = eigs.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let q = random_orthogonal(n, &mut rng);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..n).map(|k| q[k][i] * eigs[k] * q[k][j]).sum();
            a[i * n + j] = s;
            a[j * n + i] = s;
        }
    }
    DenseSymmetric::new(n, a)
}

fn random_symmetric(n: usize, seed: u64) -> DenseSymmetric {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let x: f64 = StandardNormal.sample(&mut rng);
            a[i * n + j] = x;
            a[j * n + i] = x;
        }
    }
    DenseSymmetric::new(n, a)
}

/// Checks the Lanczos pairs against the dense ones.
///
/// Tolerances: a Ritz pair with residual r has an eigenvalue within r of its
/// Ritz value (Bauer–Fike for symmetric A), and r ≤ tol·‖A‖ at convergence;
/// the dense solver is itself accurate to O(n·ε·‖A‖). So each eigenvalue must
/// agree to tol·‖A‖ + 16·n·ε·‖A‖.
fn check_against_dense(a: &DenseSymmetric, k: usize, params: &LanczosParams) {
    let n = a.dim();
    let (dense, _) = symmetric_eigen(n, a.entries());
    let anorm = dense.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let p = LanczosParams { k, ..params.clone() };
    let r = lanczos_top(a, &p, None).unwrap();
    assert!(r.converged, "did not converge: residuals {:?}", r.residuals);
    let tol = p.tol * anorm + 16.0 * n as f64 * f64::EPSILON * anorm;
    for i in 0..k {
        assert!(
            (r.eigenvalues[i] - dense[i]).abs() <= tol,
            "eigenvalue {i}: lanczos {} dense {} (tol {tol:e})",
            r.eigenvalues[i],
            dense[i]
        );
        // The reported residual is the true one: recompute it.
        let mut av = vec![0.0; n];
        a.apply(&r.eigenvectors[i], &mut av);
        let res: Vec<f64> = av.iter().zip(&r.eigenvectors[i]).map(|(x, v)| x - r.eigenvalues[i] * v).collect();
        assert!((norm(&res) - r.residuals[i]).abs() <= 16.0 * n as f64 * f64::EPSILON * anorm);
        assert!(norm(&res) <= p.tol * anorm * 1.01 + 16.0 * n as f64 * f64::EPSILON * anorm);
        // Orthonormal Ritz vectors: ‖VᵀV − I‖ = O(√n·ε).
        for j in 0..=i {
            let d = dot(&r.eigenvectors[i], &r.eigenvectors[j]);
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((d - want).abs() <= 1e3 * (n as f64).sqrt() * f64::EPSILON, "⟨v{i}, v{j}⟩ = {d}");
        }
    }
}

#[test]
fn random_symmetric_matrices_top_k() {
    for (n, seed) in [(30, 1u64), (100, 2), (250, 3)] {
        let a = random_symmetric(n, seed);
        for k in [1, 3, 6] {
            check_against_dense(&a, k, &LanczosParams::default());
        }
    }
}

#[test]
fn small_basis_forces_thick_restarts_and_still_converges() {
    let a = random_symmetric(200, 7);
    let p = LanczosParams { max_basis: 12, ..Default::default() };
    check_against_dense(&a, 3, &p);
    let r = lanczos_top(&a, &LanczosParams { k: 3, ..p }, None).unwrap();
    assert!(r.restarts > 0, "expected restarts with a basis of 12");
}

#[test]
fn indefinite_returns_largest_algebraic_not_largest_magnitude() {
    // Most negative eigenvalue −10 dominates in magnitude; the answer is 3.
    let mut eigs: Vec<f64> = (0..60).map(|i| -1.0 + 3.0 * i as f64 / 60.0).collect();
    eigs[0] = -10.0;
    eigs[59] = 3.0;
    let a = with_spectrum(&eigs, 11);
    let r = lanczos_top(&a, &LanczosParams { k: 2, ..Default::default() }, None).unwrap();
    assert!((r.eigenvalues[0] - 3.0).abs() < 1e-9, "{:?}", r.eigenvalues);
    assert!(r.eigenvalues[1] < 2.0);
    check_against_dense(&a, 2, &LanczosParams::default());
}

#[test]
fn clustered_top_eigenvalue() {
    // λ1 = 1, λ2 = 1 − 1e-8: k = 2 must return both, in order.
    let mut eigs: Vec<f64> = (0..80).map(|i| -1.0 + 1.9 * i as f64 / 80.0).collect();
    eigs[78] = 1.0 - 1e-8;
    eigs[79] = 1.0;
    let a = with_spectrum(&eigs, 5);
    let p = LanczosParams { k: 2, tol: 1e-12, ..Default::default() };
    let r = lanczos_top(&a, &p, None).unwrap();
    assert!(r.converged);
    assert!((r.eigenvalues[0] - 1.0).abs() < 1e-11, "{:?}", r.eigenvalues);
    assert!((r.eigenvalues[1] - (1.0 - 1e-8)).abs() < 1e-11, "{:?}", r.eigenvalues);
    check_against_dense(&a, 2, &p);
}

#[test]
fn warm_start_saves_matvecs_and_is_deterministic() {
    let a = random_symmetric(300, 9);
    let p = LanczosParams::default();
    let cold = lanczos_top(&a, &p, None).unwrap();
    let cold2 = lanczos_top(&a, &p, None).unwrap();
    assert_eq!(cold.eigenvalues, cold2.eigenvalues, "same seed, same bits");
    let warm = lanczos_top(&a, &p, Some(&cold.eigenvectors[0])).unwrap();
    assert!(warm.converged);
    assert!(warm.matvecs < cold.matvecs, "warm {} vs cold {}", warm.matvecs, cold.matvecs);
    assert!((warm.eigenvalues[0] - cold.eigenvalues[0]).abs() < 1e-9 * cold.eigenvalues[0].abs());
}

#[test]
fn non_convergence_is_reported_not_fatal() {
    let a = random_symmetric(300, 4);
    let p = LanczosParams { k: 1, tol: 1e-14, max_basis: 4, max_restarts: 1, ..Default::default() };
    let r = lanczos_top(&a, &p, None).unwrap();
    assert!(!r.converged);
    assert!(r.residuals[0] > 0.0);
}

#[test]
fn full_space_is_exact_for_tiny_operators() {
    let a = DenseSymmetric::new(2, vec![2.0, 1.0, 1.0, 2.0]);
    let r = lanczos_top(&a, &LanczosParams { k: 2, ..Default::default() }, None).unwrap();
    assert!((r.eigenvalues[0] - 3.0).abs() < 1e-14 && (r.eigenvalues[1] - 1.0).abs() < 1e-14);
}

#[test]
fn invalid_parameters_are_errors() {
    let a = DenseSymmetric::new(2, vec![2.0, 1.0, 1.0, 2.0]);
    let e = lanczos_top(&a, &LanczosParams { k: 3, ..Default::default() }, None).unwrap_err();
    assert_eq!(e, LanczosError::InvalidK { k: 3, dim: 2 });
    assert!(e.to_string().contains("set k between 1 and 2"));
    let e = lanczos_top(&a, &LanczosParams { tol: 0.0, ..Default::default() }, None).unwrap_err();
    assert_eq!(e, LanczosError::InvalidTol(0.0));
    let e = lanczos_top(&a, &LanczosParams::default(), Some(&[1.0])).unwrap_err();
    assert_eq!(e, LanczosError::StartLength { got: 1, dim: 2 });
}

#[test]
fn restricted_operator_is_the_principal_submatrix() {
    let a = random_symmetric(20, 21);
    let idx: Vec<usize> = (0..20).step_by(2).collect();
    let sub: Vec<f64> =
        idx.iter().flat_map(|&i| idx.iter().map(move |&j| (i, j))).map(|(i, j)| a.entries()[i * 20 + j]).collect();
    let (dense, _) = symmetric_eigen(idx.len(), &sub);
    let r = lanczos_top(&Restricted::new(&a, &idx), &LanczosParams::default(), None).unwrap();
    assert!((r.eigenvalues[0] - dense[0]).abs() < 1e-9 * dense[0].abs().max(1.0));
}

/// Counts its applications.
struct Counting<'a> {
    a: &'a DenseSymmetric,
    n: std::cell::Cell<usize>,
}

impl LinOp for Counting<'_> {
    fn dim(&self) -> usize {
        self.a.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.n.set(self.n.get() + 1);
        self.a.apply(x, y)
    }
}

#[test]
fn matvecs_count_every_application_including_the_confirmation() {
    // Thick restarts (basis 10 for n = 120) and k = 3: the reported count is
    // every application, the k confirmations of the returned pairs among them.
    let a = random_symmetric(120, 11);
    let op = Counting { a: &a, n: std::cell::Cell::new(0) };
    let p = LanczosParams { k: 3, max_basis: 10, ..Default::default() };
    let r = lanczos_top(&op, &p, None).unwrap();
    assert!(r.converged && r.restarts > 0);
    assert_eq!(r.matvecs, op.n.get());
}
