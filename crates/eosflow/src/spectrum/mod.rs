//! Matrix-free spectral tools: the [`LinOp`] interface, Lanczos (top and
//! bottom of the spectrum), trace estimators (Hutchinson, Hutch++), the
//! spectral density by stochastic Lanczos quadrature, principal sub-blocks
//! ([`Restricted`]), and the null-space split of a vector under a singular
//! operator.
//!
//! Lanczos never sees a model: it is tested on plain dense matrices
//! ([`DenseSymmetric`]) and applied to Hessians through [`crate::Hessian::hessian_at`].

mod blocks;
mod estimators;
mod krylov;
mod lanczos;

pub use blocks::{
    Block, BlockError, BlockParams, BlockSet, BlockSpectrum, BlockSpectrumError, block_spectrum, select_blocks,
};
pub use estimators::{
    Quadrature, SlqParams, SpectralDensity, SpectrumError, TraceEstimate, TraceParams, hutch_pp, hutchinson,
    lanczos_bottom, lanczos_quadrature, slq,
};
pub use krylov::{KrylovParams, KrylovSplit, krylov_split};
pub use lanczos::{LanczosError, LanczosParams, LanczosResult, lanczos_top};

/// A symmetric linear operator y = A·x given only by its action.
pub trait LinOp {
    /// n, the size of x and y.
    fn dim(&self) -> usize;
    /// y ← A·x.
    fn apply(&self, x: &[f64], y: &mut [f64]);
}

/// A dense symmetric matrix stored row-major, as a [`LinOp`].
#[derive(Clone, Debug)]
pub struct DenseSymmetric {
    n: usize,
    a: Vec<f64>,
}

impl DenseSymmetric {
    /// Wraps a row-major n×n matrix. Panics if it is not n×n or not symmetric
    /// to rounding (|a_ij − a_ji| ≤ 8ε·max|a|).
    pub fn new(n: usize, a: Vec<f64>) -> Self {
        assert_eq!(a.len(), n * n, "DenseSymmetric: expected n*n entries");
        let amax = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..n {
            for j in 0..i {
                assert!(
                    (a[i * n + j] - a[j * n + i]).abs() <= 8.0 * f64::EPSILON * amax,
                    "DenseSymmetric: matrix is not symmetric at ({i},{j})"
                );
            }
        }
        Self { n, a }
    }

    /// The row-major entries.
    pub fn entries(&self) -> &[f64] {
        &self.a
    }
}

impl LinOp for DenseSymmetric {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = crate::linalg::dot(&self.a[i * self.n..(i + 1) * self.n], x);
        }
    }
}

/// The operator as a dense row-major n×n matrix, column j = A·e_j (n
/// applications), symmetrised: an HVP is symmetric only to rounding, and a
/// dense eigensolver wants an exactly symmetric input.
pub fn to_dense(op: &dyn LinOp) -> Vec<f64> {
    let n = op.dim();
    let mut e = vec![0.0; n];
    let mut col = vec![0.0; n];
    let mut a = vec![0.0; n * n];
    for j in 0..n {
        e[j] = 1.0;
        op.apply(&e, &mut col);
        e[j] = 0.0;
        for i in 0..n {
            a[i * n + j] = col[i];
        }
    }
    for i in 0..n {
        for j in 0..i {
            let s = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = s;
            a[j * n + i] = s;
        }
    }
    a
}

/// The eigenpairs of the symmetric tridiagonal matrix with diagonal
/// `alpha` and off-diagonal `beta` (Lanczos's T), largest first, each
/// eigenvector in T's coordinates.
pub(crate) fn tridiagonal_eigen(alpha: &[f64], beta: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let k = alpha.len();
    let mut t = vec![0.0; k * k];
    for i in 0..k {
        t[i * k + i] = alpha[i];
        if i + 1 < k {
            t[i * k + i + 1] = beta[i];
            t[(i + 1) * k + i] = beta[i];
        }
    }
    crate::linalg::symmetric_eigen(k, &t)
}

/// The restriction P·A·Pᵀ of an operator to a subset of coordinates, where P
/// selects `idx`. Used for the Hessian of a scale-invariant block.
pub struct Restricted<'a> {
    inner: &'a dyn LinOp,
    idx: &'a [usize],
    scratch: std::cell::RefCell<(Vec<f64>, Vec<f64>)>,
}

impl<'a> Restricted<'a> {
    /// Restricts `inner` to the coordinates `idx`.
    pub fn new(inner: &'a dyn LinOp, idx: &'a [usize]) -> Self {
        let n = inner.dim();
        Self { inner, idx, scratch: std::cell::RefCell::new((vec![0.0; n], vec![0.0; n])) }
    }
}

impl LinOp for Restricted<'_> {
    fn dim(&self) -> usize {
        self.idx.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let mut s = self.scratch.borrow_mut();
        let (full_x, full_y) = &mut *s;
        full_x.fill(0.0);
        for (k, &i) in self.idx.iter().enumerate() {
            full_x[i] = x[k];
        }
        self.inner.apply(full_x, full_y);
        for (k, &i) in self.idx.iter().enumerate() {
            y[k] = full_y[i];
        }
    }
}
