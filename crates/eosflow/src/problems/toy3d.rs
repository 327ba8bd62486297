//! The 3D scale-invariant example of App. F (Fig. 3c).

use super::{Problem, StepView, Tracker, TrackerStateError};
use crate::linalg::{dot, normalize};
use crate::objective::{Counted, Hessian, Objective};
use crate::run::Column;
use crate::spectrum::{DenseSymmetric, LinOp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;

/// L(w) = F(U·w) with F(x, y, z) = 2 − (x + y)/√(x² − xy + y²) (App. F) and
/// U a seeded random orthogonal 3×3 matrix.
///
/// F is scale-invariant; its minimisers on the sphere form
/// Γ = {(x, y, z) ∈ S² : x = y > 0}, and on Γ its Hessian is
/// 3/(1 − z²)·[[1, −1, 0], [−1, 1, 0], [0, 0, 0]], so the spherical sharpness
/// there is 6/(1 − z²): the flattest minimiser is ζ* = (1/√2, 1/√2, 0).
///
/// Numerics: with q = x² − xy + y² and s = x + y,
/// F = 3(x − y)²/(√q·(2√q + s)) when s > 0 (no cancellation, so the loss
/// keeps its relative accuracy down to the smallest values);
/// ∂F/∂x = (3/2)·y(x − y)·q^{−3/2}, ∂F/∂y = (3/2)·x(y − x)·q^{−3/2}, ∂F/∂z = 0;
/// and the Hessian is the derivative of those (see `hessian_domain`).
#[derive(Clone, Debug)]
pub struct Toy3d {
    /// U, row-major: domain point u = U·w.
    u: [[f64; 3]; 3],
    /// Seed that generated U.
    pub seed: u64,
    /// Initial point in F's domain; w_0 = Uᵀ·u_0.
    pub w0_domain: [f64; 3],
}

/// F(x, y, ·) in residual form.
fn f_value(x: f64, y: f64) -> f64 {
    let q = x * x - x * y + y * y;
    let s = x + y;
    let rq = q.sqrt();
    if s > 0.0 { 3.0 * (x - y) * (x - y) / (rq * (2.0 * rq + s)) } else { 2.0 - s / rq }
}

/// ∇F at (x, y, ·); the z-component is 0.
fn f_grad(x: f64, y: f64) -> [f64; 3] {
    let q = x * x - x * y + y * y;
    let q32 = q * q.sqrt();
    [1.5 * y * (x - y) / q32, 1.5 * x * (y - x) / q32, 0.0]
}

/// ∇²F at (x, y, ·), row-major 3×3. From ∂F/∂x = (3/2)(xy − y²)q^{−3/2}:
/// F_xx = (3/2)[y·q^{−3/2} − (3/2)(2x − y)(xy − y²)q^{−5/2}],
/// F_xy = (3/2)[(x − 2y)·q^{−3/2} − (3/2)(2y − x)(xy − y²)q^{−5/2}],
/// F_yy = (3/2)[x·q^{−3/2} − (3/2)(2y − x)(xy − x²)q^{−5/2}].
fn hessian_domain(x: f64, y: f64) -> [[f64; 3]; 3] {
    let q = x * x - x * y + y * y;
    let q32 = q * q.sqrt();
    let q52 = q32 * q;
    let fxx = 1.5 * (y / q32 - 1.5 * (2.0 * x - y) * (x * y - y * y) / q52);
    let fxy = 1.5 * ((x - 2.0 * y) / q32 - 1.5 * (2.0 * y - x) * (x * y - y * y) / q52);
    let fyy = 1.5 * (x / q32 - 1.5 * (2.0 * y - x) * (x * y - x * x) / q52);
    [[fxx, fxy, 0.0], [fxy, fyy, 0.0], [0.0, 0.0, 0.0]]
}

/// The third derivatives (F_xxx, F_xxy, F_xyy, F_yyy) at (x, y, ·) (F does
/// not depend on z). Each second derivative above has the form
/// T = (3/2)[P·q^{−3/2} − (3/2)·Q·q^{−5/2}] (F_xx: P = y, Q = (xy − y²)(2x − y);
/// F_yy: P = x, Q = (xy − x²)(2y − x)), so
/// ∂T = (3/2)[∂P·q^{−3/2} − (3/2)(P·∂q + ∂Q)·q^{−5/2} + (15/4)·Q·∂q·q^{−7/2}],
/// with q_x = 2x − y, q_y = 2y − x: F_xxx = ∂_x F_xx, F_xxy = ∂_y F_xx,
/// F_xyy = ∂_x F_yy, F_yyy = ∂_y F_yy.
fn third_domain(x: f64, y: f64) -> [f64; 4] {
    let q = x * x - x * y + y * y;
    let (qx, qy) = (2.0 * x - y, 2.0 * y - x);
    let q32 = q * q.sqrt();
    let (q52, q72) = (q32 * q, q32 * q * q);
    let d = |dp: f64, p: f64, dq: f64, qq: f64, dqq: f64| {
        1.5 * (dp / q32 - 1.5 * (p * dq + dqq) / q52 + 3.75 * qq * dq / q72)
    };
    // F_xx: P = y, Q = A·q_x with A = xy − y².
    let a = x * y - y * y;
    let qxx = a * qx;
    let fxxx = d(0.0, y, qx, qxx, y * qx + 2.0 * a);
    let fxxy = d(1.0, y, qy, qxx, (x - 2.0 * y) * qx - a);
    // F_yy: P = x, Q = B·q_y with B = xy − x².
    let bb = x * y - x * x;
    let qyy = bb * qy;
    let fxyy = d(1.0, x, qx, qyy, (y - 2.0 * x) * qy - bb);
    let fyyy = d(0.0, x, qy, qyy, x * qy + 2.0 * bb);
    [fxxx, fxxy, fxyy, fyyy]
}

impl Toy3d {
    /// The paper's initial point (0.3, 1.3, 1.2) in F's domain (App. F).
    pub const PAPER_W0: [f64; 3] = [0.3, 1.3, 1.2];

    /// The problem with U drawn from `seed` (Gram–Schmidt on a ChaCha8
    /// Gaussian matrix) and the paper's initial point.
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows = [[0.0f64; 3]; 3];
        for r in rows.iter_mut() {
            for v in r.iter_mut() {
                *v = StandardNormal.sample(&mut rng);
            }
        }
        for i in 0..3 {
            for _pass in 0..2 {
                for j in 0..i {
                    let c = dot(&rows[i], &rows[j]);
                    let rj = rows[j];
                    for (a, b) in rows[i].iter_mut().zip(rj) {
                        *a -= c * b;
                    }
                }
            }
            normalize(&mut rows[i]);
        }
        Self { u: rows, seed, w0_domain: Self::PAPER_W0 }
    }

    /// The identity rotation (L = F), for tests and pictures.
    pub fn unrotated() -> Self {
        Self { u: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], seed: 0, w0_domain: Self::PAPER_W0 }
    }

    /// u = U·w: a parameter vector in F's coordinates.
    pub fn to_domain(&self, w: &[f64]) -> [f64; 3] {
        let mut out = [0.0; 3];
        for (o, row) in out.iter_mut().zip(&self.u) {
            *o = dot(row, w);
        }
        out
    }

    /// w = Uᵀ·u: a point of F's domain in parameter coordinates.
    pub fn from_domain(&self, u: &[f64]) -> Vec<f64> {
        (0..3).map(|k| (0..3).map(|i| self.u[i][k] * u[i]).sum()).collect()
    }

    /// The rotation U, row-major.
    pub fn rotation(&self) -> [[f64; 3]; 3] {
        self.u
    }

    /// The Hessian ∇²L(w) = Uᵀ·∇²F(U·w)·U, row-major.
    #[allow(clippy::needless_range_loop)] // index form mirrors Σ_ij U_ia H_ij U_jb
    pub fn hessian_matrix(&self, w: &[f64]) -> [f64; 9] {
        let p = self.to_domain(w);
        let hf = hessian_domain(p[0], p[1]);
        let mut out = [0.0; 9];
        for a in 0..3 {
            for b in 0..3 {
                let mut s = 0.0;
                for i in 0..3 {
                    for j in 0..3 {
                        s += self.u[i][a] * hf[i][j] * self.u[j][b];
                    }
                }
                out[a * 3 + b] = s;
            }
        }
        // Symmetrise exactly: both triangles come from the same products in
        // another order, and Lanczos wants an exactly symmetric operator.
        for a in 0..3 {
            for b in 0..a {
                let m = 0.5 * (out[a * 3 + b] + out[b * 3 + a]);
                out[a * 3 + b] = m;
                out[b * 3 + a] = m;
            }
        }
        out
    }

    /// The spherical sharpness of the minimiser of Γ with height z:
    /// λ1 = 6/(1 − z²) (App. F).
    pub fn sharpness_on_gamma(z: f64) -> f64 {
        6.0 / (1.0 - z * z)
    }
}

impl Objective for Toy3d {
    fn dim(&self) -> usize {
        3
    }
    fn loss_grad(&self, w: &[f64], grad: &mut [f64]) -> f64 {
        let p = self.to_domain(w);
        let gf = f_grad(p[0], p[1]);
        for (k, g) in grad.iter_mut().enumerate() {
            *g = (0..3).map(|i| self.u[i][k] * gf[i]).sum();
        }
        f_value(p[0], p[1])
    }
    fn loss(&self, w: &[f64]) -> f64 {
        let p = self.to_domain(w);
        f_value(p[0], p[1])
    }
}

impl Hessian for Toy3d {
    fn hvp(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        DenseSymmetric::new(3, self.hessian_matrix(w).to_vec()).apply(v, out);
    }
    fn hessian_at<'a>(&'a self, w: &[f64]) -> Box<dyn LinOp + 'a> {
        Box::new(DenseSymmetric::new(3, self.hessian_matrix(w).to_vec()))
    }
    /// ∇³L(w)[v, v, ·] = Uᵀ·∇³F(U·w)[U·v, U·v, ·] exactly, from the closed-form
    /// third derivatives of F (`third_domain`).
    fn third_contraction(&self, w: &[f64], v: &[f64], out: &mut [f64]) {
        let p = self.to_domain(w);
        let e = self.to_domain(v);
        let [fxxx, fxxy, fxyy, fyyy] = third_domain(p[0], p[1]);
        let tx = fxxx * e[0] * e[0] + 2.0 * fxxy * e[0] * e[1] + fxyy * e[1] * e[1];
        let ty = fxxy * e[0] * e[0] + 2.0 * fxyy * e[0] * e[1] + fyyy * e[1] * e[1];
        out.copy_from_slice(&self.from_domain(&[tx, ty, 0.0]));
    }
    fn third_contraction_is_exact(&self) -> bool {
        true
    }
}

/// toy3d's metrics.csv columns.
impl Toy3d {
    /// θ_t in F's coordinates.
    pub const THETA_X: Column = Column::new("theta_x");
    pub const THETA_Y: Column = Column::new("theta_y");
    pub const THETA_Z: Column = Column::new("theta_z");
    /// 6/(1 − θ_z²), the sharpness of Γ at θ_t's height.
    pub const SHARPNESS_ON_GAMMA: Column = Column::new("sharpness_on_gamma");
}

impl Problem for Toy3d {
    fn name(&self) -> &'static str {
        "toy3d"
    }
    fn initial_point(&self) -> Vec<f64> {
        self.from_domain(&self.w0_domain)
    }
    fn tracker(&self) -> Box<dyn Tracker + '_> {
        Box::new(Toy3dTracker { problem: self, st: Toy3dState::default() })
    }
    /// θ = w/‖w‖ in F's coordinates.
    fn point_columns(&self) -> Vec<Column> {
        vec![Toy3d::THETA_X, Toy3d::THETA_Y, Toy3d::THETA_Z]
    }
    fn point_values(&self, w: &[f64]) -> Vec<f64> {
        let mut p = self.to_domain(w);
        normalize(&mut p);
        p.to_vec()
    }
    /// The nearest point of Γ = {x = y > 0} ∩ S² to θ: Π((m, m, z)) with
    /// m = (x + y)/2 in F's coordinates (None when x + y ≤ 0).
    fn project_onto_gamma(&self, theta: &[f64]) -> Option<Vec<f64>> {
        let u = self.to_domain(theta);
        let m = 0.5 * (u[0] + u[1]);
        if m <= 0.0 {
            return None;
        }
        let mut p = [m, m, u[2]];
        normalize(&mut p);
        Some(self.from_domain(&p))
    }
}

struct Toy3dTracker<'a> {
    problem: &'a Toy3d,
    st: Toy3dState,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Toy3dState {
    first_small_z: Option<u64>,
    last: Option<[f64; 3]>,
    prev: Option<[f64; 3]>,
}

impl Tracker for Toy3dTracker<'_> {
    fn columns(&self) -> Vec<Column> {
        vec![Toy3d::THETA_X, Toy3d::THETA_Y, Toy3d::THETA_Z, Toy3d::SHARPNESS_ON_GAMMA]
    }
    fn observe(&mut self, _obj: &Counted, s: &StepView) -> Vec<f64> {
        let mut p = self.problem.to_domain(s.w);
        normalize(&mut p);
        if self.st.first_small_z.is_none() && p[2].abs() < 0.01 {
            self.st.first_small_z = Some(s.step);
        }
        self.st.prev = self.st.last;
        self.st.last = Some(p);
        if s.logged { vec![p[0], p[1], p[2], Toy3d::sharpness_on_gamma(p[2])] } else { Vec::new() }
    }
    fn summary(&mut self, _obj: &Counted, _w_final: &[f64]) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let zeta = [std::f64::consts::FRAC_1_SQRT_2, std::f64::consts::FRAC_1_SQRT_2, 0.0];
        m.insert("zeta_star".into(), json!(zeta));
        m.insert("first_step_abs_z_below_0.01".into(), json!(self.st.first_small_z));
        if let Some(last) = self.st.last {
            m.insert("theta_final_domain".into(), json!(last));
            m.insert("sharpness_on_gamma_final".into(), json!(Toy3d::sharpness_on_gamma(last[2])));
            if let Some(prev) = self.st.prev {
                let mut mid = [0.0; 3];
                for k in 0..3 {
                    mid[k] = 0.5 * (last[k] + prev[k]);
                }
                normalize(&mut mid);
                m.insert("midpoint_last_two_domain".into(), json!(mid));
                m.insert("midpoint_distance_to_zeta_star".into(), json!(crate::linalg::dist(&mid, &zeta)));
            }
        }
        m
    }
    fn save(&self) -> serde_json::Value {
        serde_json::to_value(&self.st).expect("tracker state serialises")
    }
    fn load(&mut self, state: &serde_json::Value) -> Result<(), TrackerStateError> {
        self.st = TrackerStateError::read("toy3d", state)?;
        Ok(())
    }
}
