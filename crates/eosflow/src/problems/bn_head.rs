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

/// G, G′ and G″ of the head along a curve through `a` with velocity `b`
/// and acceleration `b2`, for targets `q` (already divided by γ) and
/// k = 2γ²/n.
pub(super) struct HeadJet {
    pub g: Vec<f64>,
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
    let mut out = HeadJet { g: vec![0.0; n], dg: vec![0.0; n], ddg: vec![0.0; n] };
    for i in 0..n {
        let m = r[i] - c * u[i];
        let dm = du[i] - dc * u[i] - c * du[i];
        let ddm = ddu[i] - ddc * u[i] - 2.0 * dc * du[i] - c * ddu[i];
        out.g[i] = k * m / s;
        out.dg[i] = k * (dm / s - m * ds / (s * s));
        out.ddg[i] = k * (ddm / s - 2.0 * dm * ds / (s * s) - m * dds / (s * s) + 2.0 * m * ds * ds / (s * s * s));
    }
    out
}
