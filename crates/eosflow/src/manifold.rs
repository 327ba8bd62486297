//! The minimiser manifold Γ: projections φ_t of θ_t onto it and the
//! oscillation h_t = ⟨θ_t − φ_t, v1(φ_t)⟩ around it (Section 4.2.3, P.3).

use crate::linalg::{axpy, dot, norm, normalize};
use crate::objective::Objective;

/// Settings of [`project_by_pgd`], the generic projection of App. Q.3.
#[derive(Clone, Debug, PartialEq)]
pub struct PgdProjection {
    /// Fixed step of projected GD on the sphere (Q.3: 0.005).
    pub lr: f64,
    /// Stop once L(φ) ≤ `loss_tol` (Q.3: 1e-8; residual-form losses allow
    /// far smaller values).
    pub loss_tol: f64,
    /// Give up after this many steps.
    pub max_steps: usize,
}

impl Default for PgdProjection {
    fn default() -> Self {
        Self { lr: 0.005, loss_tol: 1e-8, max_steps: 1_000_000 }
    }
}

/// A projection onto Γ with how it was obtained.
#[derive(Clone, Debug)]
pub struct Projected {
    /// The unit-norm point φ of Γ.
    pub phi: Vec<f64>,
    /// L(φ).
    pub loss: f64,
    /// PGD steps used (0 for exact projections).
    pub steps: usize,
}

/// Errors of the manifold tools.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifoldError {
    /// Projected GD did not reach the loss tolerance.
    #[error(
        "projection onto Γ: loss {loss:e} still above {tol:e} after {steps} projected-GD steps; raise max_steps or loss_tol"
    )]
    NotConverged { loss: f64, steps: usize, tol: f64 },
}

/// φ = lim of projected GD on the sphere from θ: θ ← Π(θ − lr·∇L(θ)) until
/// L(θ) ≤ loss_tol (App. Q.3). For a fully scale-invariant loss; near Γ the
/// limit is the gradient-flow projection, which agrees with the nearest point
/// of Γ up to O(‖θ − φ‖²).
pub fn project_by_pgd(obj: &dyn Objective, theta: &[f64], p: &PgdProjection) -> Result<Projected, ManifoldError> {
    let mut phi = theta.to_vec();
    normalize(&mut phi);
    let mut g = vec![0.0; phi.len()];
    for steps in 0..=p.max_steps {
        let loss = obj.loss_grad(&phi, &mut g);
        if loss <= p.loss_tol {
            return Ok(Projected { phi, loss, steps });
        }
        if steps == p.max_steps {
            return Err(ManifoldError::NotConverged { loss, steps, tol: p.loss_tol });
        }
        axpy(-p.lr, &g, &mut phi);
        normalize(&mut phi);
    }
    unreachable!()
}

/// h = ⟨θ − φ, v1⟩, the component of the displacement from Γ along the top
/// eigenvector of H(φ) (Section 4.2.3).
pub fn oscillation(theta: &[f64], phi: &[f64], v1: &[f64]) -> f64 {
    theta.iter().zip(phi).zip(v1).map(|((t, p), v)| (t - p) * v).sum()
}

/// Follows h_t over a run with v1(φ_t) chosen continuously (each new v1 is
/// sign-aligned with the previous one, since an eigensolver returns ±v1),
/// and counts sign changes of h_t (period-2 oscillation: h_t > 0 on even t,
/// < 0 on odd t, or the reverse).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct OscillationTracker {
    prev_v1: Option<Vec<f64>>,
    prev_h: Option<f64>,
    /// Consecutive pairs (h_{t−1}, h_t) seen.
    pub pairs: u64,
    /// Of those, how many changed sign.
    pub sign_changes: u64,
}

impl OscillationTracker {
    /// Records step t; returns h_t with the continuous choice of v1.
    pub fn observe(&mut self, theta: &[f64], phi: &[f64], v1: &[f64]) -> f64 {
        let mut v = v1.to_vec();
        if let Some(prev) = &self.prev_v1
            && dot(prev, &v) < 0.0
        {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        let h = oscillation(theta, phi, &v);
        if let Some(ph) = self.prev_h {
            self.pairs += 1;
            if ph * h < 0.0 {
                self.sign_changes += 1;
            }
        }
        self.prev_h = Some(h);
        self.prev_v1 = Some(v);
        h
    }

    /// Drops the history (e.g. at EoS entry, to count only from there).
    pub fn reset_counts(&mut self) {
        self.pairs = 0;
        self.sign_changes = 0;
    }
}

/// ‖θ − φ‖.
pub fn distance(theta: &[f64], phi: &[f64]) -> f64 {
    let d: Vec<f64> = theta.iter().zip(phi).map(|(a, b)| a - b).collect();
    norm(&d)
}
