//! The batch-normalised squared-loss head that linreg_bn and matcomp_bn
//! share, differentiated twice along a curve — the part of their exact
//! third-derivative contractions that does not depend on how the outputs a
//! are made from w.
//!
//! Both losses are L = γ²·‖u − q‖²/n with u = a/s, s = √(aᵀa/n), and their
//! gradients are Jᵀ·G with G = (2γ²/n)·(r − c·u)/s, r = u − q, c = rᵀu/n
//! (J = ∂a/∂w). Along a curve a(t) with a′ = b and a″ = b₂ the derivatives
//! follow from a = s·u and the product rule:
//!
//! s′ = aᵀb/(n·s),  s″ = (bᵀb + aᵀb₂)/(n·s) − s′²/s,
//! u′ = (b − u·s′)/s,  u″ = (b₂ − 2u′·s′ − u·s″)/s,
//! c′ = (u′ᵀu + rᵀu′)/n,  c″ = (u″ᵀu + 2u′ᵀu′ + rᵀu″)/n,
//! m = r − c·u,  m′ = u′ − c′·u − c·u′,  m″ = u″ − c″·u − 2c′·u′ − c·u″,
//! G′ = k·(m′/s − m·s′/s²),  G″ = k·(m″/s − 2m′·s′/s² − m·s″/s² + 2m·s′²/s³),
//!
//! with k = 2γ²/n. G′ matches the HVP kernels' dG term for term.

use crate::linalg::dot;

/// G′ and G″ of the head along a curve through `a` with velocity `b` and
/// acceleration `b2`, for targets `q` (already divided by γ) and k = 2γ²/n
/// (G itself is the gradient kernels' business).
pub(super) struct HeadJet {
    pub dg: Vec<f64>,
    pub ddg: Vec<f64>,
}

pub(super) fn head_jet(a: &[f64], b: &[f64], b2: &[f64], q: &[f64], k: f64) -> HeadJet {
    let n = a.len();
    let nf = n as f64;
    let s = (dot(a, a) / nf).sqrt();
    let ds = dot(a, b) / (nf * s);
    let dds = (dot(b, b) + dot(a, b2)) / (nf * s) - ds * ds / s;
    let u: Vec<f64> = a.iter().map(|x| x / s).collect();
    let r: Vec<f64> = u.iter().zip(q).map(|(u, q)| u - q).collect();
    let du: Vec<f64> = (0..n).map(|i| (b[i] - u[i] * ds) / s).collect();
    let ddu: Vec<f64> = (0..n).map(|i| (b2[i] - 2.0 * du[i] * ds - u[i] * dds) / s).collect();
    let c = dot(&r, &u) / nf;
    let dc = (dot(&du, &u) + dot(&r, &du)) / nf;
    let ddc = (dot(&ddu, &u) + 2.0 * dot(&du, &du) + dot(&r, &ddu)) / nf;
    let mut out = HeadJet { dg: vec![0.0; n], ddg: vec![0.0; n] };
    for i in 0..n {
        let m = r[i] - c * u[i];
        let dm = du[i] - dc * u[i] - c * du[i];
        let ddm = ddu[i] - ddc * u[i] - 2.0 * dc * du[i] - c * ddu[i];
        out.dg[i] = k * (dm / s - m * ds / (s * s));
        out.ddg[i] = k * (ddm / s - 2.0 * dm * ds / (s * s) - m * dds / (s * s) + 2.0 * m * ds * ds / (s * s * s));
    }
    out
}

/// The residual map of a BN head, r(w) = u(a(w)) − q with u = a/s (the
/// losses are L = γ²‖r‖²/n), and its Jacobian J = P_u·A/s, where A = ∂a/∂w
/// and P_u = I − uuᵀ/n (the derivative of the normalisation, since
/// u′ = (b − u·s′)/s with s′ = uᵀb/n). Then JJᵀ = P_u·AAᵀ·P_u/s², and u
/// spans its null space exactly (‖u‖² = n for every w).
/// A linear map v ↦ out (A·v or Aᵀ·y).
pub(super) type LinearMap<'a> = Box<dyn Fn(&[f64], &mut [f64]) + 'a>;

pub(super) struct BnResidual<'a> {
    pub u: Vec<f64>,
    pub r: Vec<f64>,
    pub s: f64,
    /// b ← A·v.
    pub a_apply: LinearMap<'a>,
    /// out ← Aᵀ·y.
    pub at_apply: LinearMap<'a>,
    /// A·Aᵀ, n×n row-major.
    pub aat: Vec<f64>,
}

impl<'a> BnResidual<'a> {
    pub fn new(a: &[f64], q: &[f64], a_apply: LinearMap<'a>, at_apply: LinearMap<'a>, aat: Vec<f64>) -> Self {
        let n = a.len();
        let s = (dot(a, a) / n as f64).sqrt();
        let u: Vec<f64> = a.iter().map(|x| x / s).collect();
        let r = u.iter().zip(q).map(|(u, q)| u - q).collect();
        Self { u, r, s, a_apply, at_apply, aat }
    }

    /// y ← P_u·y/s.
    fn project(&self, y: &mut [f64]) {
        let n = y.len() as f64;
        let c = dot(&self.u, y) / n;
        for (yi, ui) in y.iter_mut().zip(&self.u) {
            *yi = (*yi - c * ui) / self.s;
        }
    }
}

impl crate::objective::ResidualGeometry for BnResidual<'_> {
    fn residual(&self) -> &[f64] {
        &self.r
    }
    fn jvp(&self, v: &[f64], out: &mut [f64]) {
        (self.a_apply)(v, out);
        self.project(out);
    }
    fn vjp(&self, y: &[f64], out: &mut [f64]) {
        let mut z = y.to_vec();
        self.project(&mut z);
        (self.at_apply)(&z, out);
    }
    /// u: ‖u‖² = n for every w, so uᵀJ = 0.
    fn gram_null_vectors(&self) -> Vec<Vec<f64>> {
        vec![self.u.clone()]
    }
    fn gram(&self) -> Vec<f64> {
        // P·M·P for M = AAᵀ is M − (Mu)uᵀ/n − u(Mu)ᵀ/n + κ·uuᵀ with
        // κ = uᵀMu/n²; with a = Mu/n − κu that is M − auᵀ − uaᵀ − κuuᵀ.
        let n = self.u.len();
        let nf = n as f64;
        let mu: Vec<f64> = self.aat.chunks_exact(n).map(|row| dot(row, &self.u)).collect();
        let kappa = dot(&self.u, &mu) / (nf * nf);
        let inv = 1.0 / (self.s * self.s);
        let a: Vec<f64> = mu.iter().zip(&self.u).map(|(m, u)| m / nf - kappa * u).collect();
        let mut g = self.aat.clone();
        for ((row, ui), ai) in g.chunks_exact_mut(n).zip(&self.u).zip(&a) {
            for ((gij, uj), aj) in row.iter_mut().zip(&self.u).zip(&a) {
                *gij = (*gij - ai * uj - ui * aj - kappa * ui * uj) * inv;
            }
        }
        g
    }
}
