//! Small dense vector helpers on `&[f64]`, the one vector type of eosflow.
//!
//! Every routine asserts matching lengths: a mismatch is a programming error
//! inside the library (shapes are checked once, at the boundary).

/// ⟨x, y⟩.
#[inline(always)]
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "dot: length mismatch");
    // Four independent accumulators over exact chunks: no bounds checks in
    // the loop, and the compiler vectorises it. (The summation order is
    // fixed, so results are reproducible bit for bit.)
    let (xc, xr) = x.as_chunks::<4>();
    let (yc, yr) = y.as_chunks::<4>();
    let mut acc = [0.0f64; 4];
    for (a, b) in xc.iter().zip(yc) {
        acc[0] += a[0] * b[0];
        acc[1] += a[1] * b[1];
        acc[2] += a[2] * b[2];
        acc[3] += a[3] * b[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (a, b) in xr.iter().zip(yr) {
        s += a * b;
    }
    s
}

/// Four dot products ⟨x_m, y_m⟩ at once, each summed in exactly the order of
/// [`dot`] (so the results are bit-identical to four calls). Interleaving
/// four independent accumulation chains hides the latency of the additions,
/// which bounds a single short dot product.
#[inline(always)]
pub fn dot4(x: [&[f64]; 4], y: [&[f64]; 4]) -> [f64; 4] {
    let n = x[0].len();
    for m in 0..4 {
        assert!(x[m].len() == n && y[m].len() == n, "dot4: length mismatch");
    }
    let chunks = n / 4;
    let mut acc = [[0.0f64; 4]; 4];
    for c in 0..chunks {
        let o = 4 * c;
        for m in 0..4 {
            let (xa, ya) = (&x[m][o..o + 4], &y[m][o..o + 4]);
            acc[m][0] += xa[0] * ya[0];
            acc[m][1] += xa[1] * ya[1];
            acc[m][2] += xa[2] * ya[2];
            acc[m][3] += xa[3] * ya[3];
        }
    }
    let mut out = [0.0; 4];
    for m in 0..4 {
        let mut s = (acc[m][0] + acc[m][1]) + (acc[m][2] + acc[m][3]);
        for i in 4 * chunks..n {
            s += x[m][i] * y[m][i];
        }
        out[m] = s;
    }
    out
}

/// ‖x‖₂, computed without overflow or underflow for any finite x.
///
/// Fast path √⟨x, x⟩ (relative error O(n·ε)); only when the sum of squares
/// overflows or comes near the underflow range is it recomputed with
/// scaling by max|x_i|, as BLAS nrm2 does.
pub fn norm(x: &[f64]) -> f64 {
    let s = dot(x, x);
    if s.is_finite() && s > 1e-280 {
        return s.sqrt();
    }
    let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    let inv = 1.0 / scale;
    let s: f64 = x.iter().map(|v| (v * inv) * (v * inv)).sum();
    scale * s.sqrt()
}

/// y ← y + a·x.
#[inline(always)]
pub fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    assert_eq!(x.len(), y.len(), "axpy: length mismatch");
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// x ← a·x.
#[inline]
pub fn scale(a: f64, x: &mut [f64]) {
    for xi in x.iter_mut() {
        *xi *= a;
    }
}

/// Π(x) = x/‖x‖₂ in place; returns ‖x‖₂ (the input's norm). A zero vector is
/// left unchanged and 0 is returned.
pub fn normalize(x: &mut [f64]) -> f64 {
    let n = norm(x);
    if n > 0.0 {
        scale(1.0 / n, x);
    }
    n
}

/// ‖x − y‖₂.
pub fn dist(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "dist: length mismatch");
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    norm(&d)
}

/// Eigen-decomposition of a dense symmetric n×n matrix given row-major.
/// Returns (eigenvalues in *descending* order, eigenvectors as rows matching
/// them). Uses faer's self-adjoint solver on the lower triangle.
pub fn symmetric_eigen(n: usize, a: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
    assert_eq!(a.len(), n * n, "symmetric_eigen: expected an n×n matrix");
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let evd = m
        .self_adjoint_eigen(faer::Side::Lower)
        .expect("faer self-adjoint eigensolver failed on a finite symmetric matrix");
    let s = evd.S().column_vector();
    let u = evd.U();
    // faer sorts ascending; we want the largest algebraic first.
    let mut vals = Vec::with_capacity(n);
    let mut vecs = Vec::with_capacity(n);
    for j in (0..n).rev() {
        vals.push(s[j]);
        vecs.push((0..n).map(|i| u[(i, j)]).collect());
    }
    (vals, vecs)
}

/// The Cholesky factorisation A = LLᵀ of a dense symmetric positive
/// definite matrix (faer), for repeated solves.
pub struct Cholesky {
    llt: faer::linalg::solvers::Llt<f64>,
    n: usize,
}

impl Cholesky {
    /// Factorises a row-major n×n matrix (its lower triangle); None when it
    /// is not numerically positive definite.
    pub fn new(n: usize, a: &[f64]) -> Option<Self> {
        assert_eq!(a.len(), n * n, "Cholesky: expected an n×n matrix");
        let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
        m.llt(faer::Side::Lower).ok().map(|llt| Self { llt, n })
    }

    /// x = A⁻¹·b.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        use faer::linalg::solvers::Solve;
        let mut x = faer::Mat::<f64>::from_fn(self.n, 1, |i, _| b[i]);
        self.llt.solve_in_place(x.as_mut());
        (0..self.n).map(|i| x[(i, 0)]).collect()
    }
}

/// Least-squares solution of A·x ≈ b for a dense m×n matrix A (row-major,
/// m ≥ n, full column rank) by Householder QR (faer).
pub fn lstsq(m: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    use faer::prelude::SolveLstsq;
    assert_eq!(a.len(), m * n, "lstsq: expected an m×n matrix");
    assert_eq!(b.len(), m, "lstsq: right-hand side length");
    let am = faer::Mat::<f64>::from_fn(m, n, |i, j| a[i * n + j]);
    let bm = faer::Mat::<f64>::from_fn(m, 1, |i, _| b[i]);
    let x = am.qr().solve_lstsq(&bm);
    (0..n).map(|i| x[(i, 0)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_is_robust_to_scale() {
        let x = [3e200, 4e200];
        assert!((norm(&x) / 5e200 - 1.0).abs() < 4.0 * f64::EPSILON);
        let y = [3e-200, 4e-200];
        assert!((norm(&y) / 5e-200 - 1.0).abs() < 4.0 * f64::EPSILON);
        assert_eq!(norm(&[0.0, 0.0]), 0.0);
    }

    #[test]
    fn dot4_is_bitwise_four_dots() {
        let v: Vec<f64> = (0..53).map(|i| ((i * 7919) % 101) as f64 / 13.0 - 3.7).collect();
        let w: Vec<f64> = (0..53).map(|i| ((i * 104729) % 97) as f64 / 11.0 - 4.1).collect();
        let xs = [&v[..50], &w[..50], &v[1..51], &w[3..53]];
        let ys = [&w[..50], &v[2..52], &w[1..51], &v[..50]];
        let r = dot4(xs, ys);
        for m in 0..4 {
            assert_eq!(r[m].to_bits(), dot(xs[m], ys[m]).to_bits());
        }
    }

    #[test]
    fn symmetric_eigen_of_diagonal_is_sorted_descending() {
        let a = [1.0, 0.0, 0.0, 0.0, -3.0, 0.0, 0.0, 0.0, 2.0];
        let (vals, vecs) = symmetric_eigen(3, &a);
        assert_eq!(vals, vec![2.0, 1.0, -3.0]);
        assert!((vecs[0][2].abs() - 1.0).abs() < 1e-15);
    }
}
