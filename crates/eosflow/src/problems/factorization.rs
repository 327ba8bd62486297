//! The depth-2 factorisation L(u, v) = ½(uᵀv − 1)²: a loss that is *not*
//! scale-invariant, with a manifold of minimisers, for Scalar RMSprop's
//! sharpness-reduction flow in full space (Thm B.13, Cor. B.14).

use super::Problem;
use crate::linalg::{dot, norm};
use crate::objective::{Hessian, HvpAt, Objective, ScaleInvariance};
use crate::spectrum::LinOp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// L(w) = ½ s², s = uᵀv − 1, for w = (u, v) ∈ R^k × R^k (D = 2k).
///
/// With g = ∇s = (v, u) and J the swap (a, b) ↦ (b, a):
/// ∇L = s·g, ∇²L = g gᵀ + s·J, and ∇³L[x, x, ·] = 2(gᵀx)·Jx + (xᵀJx)·g
/// (s is quadratic, so its third derivative vanishes).
///
/// Γ = {uᵀv = 1} is a (2k − 1)-dimensional manifold of global minimisers.
/// On Γ, ∇²L = g gᵀ has rank 1 = D − dim Γ (Assumption B.11) and the simple
/// top eigenvalue λ1 = ‖g‖² = ‖u‖² + ‖v‖² = ‖w‖² (Assumption B.12), which
/// is least, λ1 = 2, on the balanced minimisers u = v, ‖u‖ = 1.
///
/// In a = u + v, b = u − v the gradient flow of L is a' = −s·a, b' = s·b,
/// so it ends at Φ(w) = ((a/√y + b√y)/2, (a/√y − b√y)/2) with y the
/// positive root of ‖b‖²y² + 4y − ‖a‖² = 0 (then uᵀv = (‖a‖²/y − ‖b‖²y)/4
/// = 1): the exact projection of App. H.1 ([`Problem::project_onto_gamma`]).
///
/// ```
/// use eosflow::problems::{Factorization, Problem};
/// use eosflow::{Hessian, Objective};
/// let p = Factorization::new(3, 0, 1.0);
/// let phi = p.project_onto_gamma(&p.initial_point()).unwrap();
/// assert!(p.loss(&phi) < 1e-28);
/// // On Γ the Hessian is g gᵀ: λ1 = ‖w‖², along g = (v, u).
/// let (u, v) = phi.split_at(3);
/// let g: Vec<f64> = v.iter().chain(u).copied().collect();
/// let mut hg = vec![0.0; 6];
/// p.hvp(&phi, &g, &mut hg);
/// let lambda = eosflow::linalg::dot(&phi, &phi);
/// assert!(hg.iter().zip(&g).all(|(a, b)| (a - lambda * b).abs() < 1e-12));
/// ```
#[derive(Clone, Debug)]
pub struct Factorization {
    k: usize,
    /// Seed of w0.
    pub seed: u64,
    /// w0 ~ N(0, init_scale²/k) per entry (‖u0‖ ≈ ‖v0‖ ≈ init_scale).
    pub init_scale: f64,
}

impl Factorization {
    /// L on R^k × R^k.
    pub fn new(k: usize, seed: u64, init_scale: f64) -> Self {
        assert!(k >= 1, "the factorisation needs k ≥ 1");
        Self { k, seed, init_scale }
    }

    /// k.
    pub fn k(&self) -> usize {
        self.k
    }

    fn residual(&self, w: &[f64]) -> f64 {
        let (u, v) = w.split_at(self.k);
        dot(u, v) - 1.0
    }

    /// The minimal sharpness on Γ, 2 (at u = v, ‖u‖ = 1).
    pub const SHARPNESS_MIN: f64 = 2.0;
}

impl Objective for Factorization {
    fn dim(&self) -> usize {
        2 * self.k
    }
    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        let k = self.k;
        let s = self.residual(w);
        for i in 0..k {
            grad[i] = s * w[k + i];
            grad[k + i] = s * w[i];
        }
        0.5 * s * s
    }
    fn loss(&self, w: &[f64]) -> f64 {
        let s = self.residual(w);
        0.5 * s * s
    }
    fn scale_invariance(&self) -> ScaleInvariance {
        ScaleInvariance::None
    }
}

impl Hessian for Factorization {
    /// (g gᵀ + s·J)·x = (gᵀx)·g + s·Jx.
    fn hvp(&self, w: &[f64], x: &[f64], out: &mut [f64]) {
        let k = self.k;
        let s = self.residual(w);
        let (u, v) = w.split_at(k);
        let (a, b) = x.split_at(k);
        let gx = dot(v, a) + dot(u, b);
        for i in 0..k {
            out[i] = gx * v[i] + s * b[i];
            out[k + i] = gx * u[i] + s * a[i];
        }
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(HvpAt::new(self, w))
    }
    /// 2(gᵀx)·Jx + (xᵀJx)·g, exactly.
    fn third_contraction(&self, w: &[f64], x: &[f64], out: &mut [f64]) {
        let k = self.k;
        let (u, v) = w.split_at(k);
        let (a, b) = x.split_at(k);
        let gx = dot(v, a) + dot(u, b);
        let xjx = 2.0 * dot(a, b);
        for i in 0..k {
            out[i] = 2.0 * gx * b[i] + xjx * v[i];
            out[k + i] = 2.0 * gx * a[i] + xjx * u[i];
        }
    }
    fn third_contraction_is_exact(&self) -> bool {
        true
    }
}

impl Problem for Factorization {
    fn name(&self) -> &'static str {
        "factorization"
    }
    fn initial_point(&self) -> Vec<f64> {
        // Stream 1, as every problem's init: stream 0 of the same seed is
        // the Lanczos start vector's (`LanczosParams::seed`), and a start
        // vector ∝ w0 spans an invariant subspace with H·w0 here (top-2 at
        // w0 came out as λ1 and −3.13, missing the fourfold +4.01).
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(1);
        let s = self.init_scale / (self.k as f64).sqrt();
        (0..2 * self.k)
            .map(|_| {
                let g: f64 = StandardNormal.sample(&mut rng);
                s * g
            })
            .collect()
    }
    /// Φ(w), the end of the gradient flow from w (see the type's docs);
    /// None when u + v = 0, from where the flow runs to 0 (not on Γ).
    fn project_onto_gamma(&self, w: &[f64]) -> Option<Vec<f64>> {
        let k = self.k;
        let (u, v) = w.split_at(k);
        let a: Vec<f64> = u.iter().zip(v).map(|(x, y)| x + y).collect();
        let b: Vec<f64> = u.iter().zip(v).map(|(x, y)| x - y).collect();
        let (aa, bb) = (dot(&a, &a), dot(&b, &b));
        if aa <= 0.0 || !aa.is_finite() || !bb.is_finite() {
            return None;
        }
        // y = (√(4 + AB) − 2)/B, written without the cancellation.
        let y = aa / (2.0 + (4.0 + aa * bb).sqrt());
        let (ca, cb) = (1.0 / y.sqrt(), y.sqrt());
        let mut out = vec![0.0; 2 * k];
        for i in 0..k {
            out[i] = 0.5 * (ca * a[i] + cb * b[i]);
            out[k + i] = 0.5 * (ca * a[i] - cb * b[i]);
        }
        debug_assert!(norm(&out).is_finite());
        Some(out)
    }
}
