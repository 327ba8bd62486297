//! Spherical sharpness (Def. 1.1), computed as in App. Q.3.

use crate::objective::{Hessian, ScaleInvariance};
use crate::spectrum::{LanczosError, LanczosParams, LinOp, Restricted, lanczos_top};

/// Spherical sharpness at one point, with what Lanczos reports.
#[derive(Clone, Debug)]
pub struct Sharpness {
    /// λ1(∇²L(θ)) at θ = w_S/‖w_S‖, computed as ‖w_S‖²·λ1(∇²_S L(w)).
    pub spherical: f64,
    /// The top-k eigenvalues of ∇²_S L(θ) (each ‖w_S‖²·λ_i(∇²_S L(w))), descending.
    pub top_k: Vec<f64>,
    /// max_i ‖H v_i − λ_i v_i‖ over the top-k pairs, in the units of
    /// `spherical` (scaled by ‖w_S‖²), so `residual / spherical` is relative.
    pub residual: f64,
    /// Hessian-vector products used.
    pub hvps: usize,
    /// Whether Lanczos met its tolerance.
    pub converged: bool,
    /// Unit top eigenvector on the scale-invariant block: the warm start for
    /// the next evaluation.
    pub eigenvector: Vec<f64>,
}

/// Spherical sharpness at w (Def. 1.1, App. Q.3):
///
/// λ1(∇²L(w_S/‖w_S‖)) = ‖w_S‖²·λ1(∇²_S L(w)),
///
/// which holds because the Hessian of a scale-invariant loss is
/// (−2)-homogeneous (Lemma D.1). For a partially scale-invariant objective
/// the Hessian is restricted to the declared block (the "partial
/// sharpness" of App. P.2); for `ScaleInvariance::None` it is the ordinary
/// λ1(∇²L(w)).
///
/// ```
/// use eosflow::problems::Toy3d;
/// use eosflow::sharpness::spherical_sharpness;
/// let p = Toy3d::new(0);
/// // A point of Γ (x = y > 0, z = 0) in F's domain, scaled by 3.
/// let w = p.from_domain(&[3.0 / 2f64.sqrt(), 3.0 / 2f64.sqrt(), 0.0]);
/// let s = spherical_sharpness(&p, &w, &Default::default(), None).unwrap();
/// assert!((s.spherical - 6.0).abs() < 1e-9); // 6/(1 − z²) on Γ (App. F)
/// ```
pub fn spherical_sharpness(
    obj: &dyn Hessian,
    w: &[f64],
    params: &LanczosParams,
    warm: Option<&[f64]>,
) -> Result<Sharpness, LanczosError> {
    let h = obj.hessian_at(w);
    spherical_sharpness_of(h.as_ref(), &obj.scale_invariance(), w, params, warm)
}

/// [`spherical_sharpness`] from the Hessian at w as an operator `h` (any
/// [`LinOp`]: a user's HVP from Python, a curvature library's operator) and
/// the declared scale invariance: ‖w_S‖²·λ1(∇²_S L(w)), Lanczos on the
/// principal sub-block of S.
///
/// ```
/// use eosflow::ScaleInvariance;
/// use eosflow::sharpness::spherical_sharpness_of;
/// use eosflow::spectrum::DenseSymmetric;
/// // The block {0, 1} of diag(4, 1, 9) at ‖w_S‖ = 2: 2²·4.
/// let h = DenseSymmetric::new(3, vec![4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 9.0]);
/// let si = ScaleInvariance::Block(vec![0, 1]);
/// let s = spherical_sharpness_of(&h, &si, &[0.0, 2.0, 5.0], &Default::default(), None).unwrap();
/// assert!((s.spherical - 16.0).abs() < 1e-12);
/// ```
pub fn spherical_sharpness_of(
    h: &dyn LinOp,
    si: &ScaleInvariance,
    w: &[f64],
    params: &LanczosParams,
    warm: Option<&[f64]>,
) -> Result<Sharpness, LanczosError> {
    let scale = si.block_norm(w).powi(2);
    let res = match si {
        ScaleInvariance::Block(idx) => {
            let op = Restricted::new(h, idx);
            lanczos_top(&op, params, warm)?
        }
        _ => lanczos_top(h, params, warm)?,
    };
    let top_k: Vec<f64> = res.eigenvalues.iter().map(|l| l * scale).collect();
    Ok(Sharpness {
        spherical: top_k[0],
        top_k,
        residual: res.residuals.iter().fold(0.0f64, |a, b| a.max(*b)) * scale,
        hvps: res.matvecs,
        converged: res.converged,
        eigenvector: res.eigenvectors.into_iter().next().unwrap(),
    })
}
