//! The sharpness-reduction flow on the manifold Γ of local minimisers
//! (eq. 3 / eq. 8, Thms 4.6, B.10, B.13), integrated for any objective with
//! a gradient and an HVP.
//!
//! At ζ ∈ Γ with a simple top eigenvalue λ1 and unit eigenvector v1,
//! ∇λ1(ζ) = ∇³L(ζ)[v1, v1, ·] ([`crate::Hessian::third_contraction`]: exact or
//! by differences of HVPs), ∇_Γ is the projection onto T_ζΓ = null(H(ζ))
//! (∩ ζ^⊥ on the sphere, [`LocalHessian::project_tangent`]), and with
//! G = ∇_Γ log λ1 = ∇_Γ λ1/λ1 the flow is
//!
//! - eq. (8), Scalar RMSprop / any quasi-RMSprop scheduler with base LR η
//!   and β = 1 − C_b·η²: dζ/dτ = −G / (4 + (2/C_b)‖G‖²), τ = t·η²;
//! - eq. (3), GD+WD (η = √(2η_in), C_b = 2, and ζ₍₃₎(τ) = ζ₍₁₀₎(2τ)):
//!   dζ/dτ = −2G / (4 + ‖G‖²), τ = t·η_in.
//!
//! Integration: Dormand–Prince 5(4) with an embedded error estimate and
//! step-size control, on the vector field F(y) = f(R(y)), where R is the
//! retraction onto Γ ([`retract`]): F is smooth near Γ, equals f on Γ, and
//! its exact solutions from a point of Γ stay on Γ, so the method keeps its
//! order; every accepted point is the retraction of the 5th-order solution
//! (first-same-as-last: that retraction is the next step's first stage).
//! On the residual path (Γ = {r = 0}) F(y) projects onto null(J(y)) at y
//! itself — the tangent of the level set of r through y — so only the
//! accepted points are retracted (Gauss–Newton), and F at each one starts
//! the next step.
//! The distance the retraction moves it is reported as `off_manifold`.
//!
//! ```
//! use eosflow::flow::{Flow, FlowParams};
//! use eosflow::problems::Toy3d;
//! let p = Toy3d::unrotated();
//! // A point of Γ = {x = y > 0} at height z = 0.6.
//! let z: f64 = 0.6;
//! let r = ((1.0 - z * z) / 2.0).sqrt();
//! let params = FlowParams { tau_max: 20.0, ..Default::default() };
//! let mut flow = Flow::new(&p, &[r, r, z], params).unwrap();
//! let info = flow.run(&mut |_| {}).unwrap();
//! // It ends at ζ* = (1/√2, 1/√2, 0), where λ1 = 6 (App. F).
//! assert!(flow.point().zeta[2].abs() < 1e-6);
//! assert!((flow.point().sharpness - 6.0).abs() < 1e-9);
//! assert!(info.counts.third_contractions > 0);
//! ```

use crate::linalg::{axpy, norm};
use crate::manifold::{LocalHessian, ManifoldDomain, ManifoldError, RetractionParams, TangentParams, retract};
use crate::objective::{Counted, Counts, Hessian};
use crate::problems::{Problem, StepView, Tracker, TrackerStateError};
use crate::run::Column;

/// Which flow, in which time unit.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FlowTime {
    /// GD+WD, eq. (3): dζ/dτ = −2G/(4 + ‖G‖²) with τ = t·η_in (η_in = η̂λ̂),
    /// so GD+WD's step t sits at τ = t·η_in.
    GdWd,
    /// A quasi-RMSprop scheduler with β = 1 − C_b·η² (Scalar RMSprop,
    /// Cor. B.14), eq. (8): dζ/dτ = −G/(4 + (2/C_b)‖G‖²) with τ = t·η².
    QuasiRmsprop {
        /// C_b.
        c_b: f64,
    },
}

impl FlowTime {
    /// The time unit, for every output: "tau = t*eta_in (eq. 3)" or
    /// "tau = t*eta^2 (eq. 8)".
    pub fn unit(&self) -> &'static str {
        match self {
            FlowTime::GdWd => "tau = t*eta_in (eq. 3)",
            FlowTime::QuasiRmsprop { .. } => "tau = t*eta^2 (eq. 8)",
        }
    }

    /// dζ/dτ given G = ∇_Γ log λ1.
    pub fn velocity(&self, g: &[f64]) -> Vec<f64> {
        let gg = crate::linalg::dot(g, g);
        let c = match *self {
            FlowTime::GdWd => -2.0 / (4.0 + gg),
            FlowTime::QuasiRmsprop { c_b } => -1.0 / (4.0 + (2.0 / c_b) * gg),
        };
        g.iter().map(|x| c * x).collect()
    }
}

/// Settings of the flow integrator (faer-style: a plain struct with
/// `Default`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowParams {
    /// Which flow and time unit.
    pub time: FlowTime,
    /// Local error tolerance per step, on ‖ζ‖-scaled positions: a step is
    /// accepted when the 5(4) estimate ‖ζ₅ − ζ₄‖ ≤ tol·max(1, ‖ζ‖).
    pub tol: f64,
    /// Stop at this τ.
    pub tau_max: f64,
    /// Stop early once ‖∇_Γ log λ1‖ < grad_tol (a stationary point of λ1 on Γ).
    pub grad_tol: f64,
    /// Stop once (λ1 − λ2)/λ1 < eigengap_tol: Assumption 4.5 (a simple top
    /// eigenvalue) fails there, λ1 is not differentiable on Γ where two
    /// eigenvalues meet, and the flow (3) is not defined beyond (the step
    /// size would collapse as the field turns).
    pub eigengap_tol: f64,
    /// Accepted steps before giving up.
    pub max_steps: usize,
    /// The first step; `None` picks 0.01/‖dζ/dτ‖ (capped at tau_max).
    pub initial_step: Option<f64>,
    /// The largest step in τ (`None`: as large as the error control
    /// allows). The error control bounds each step's endpoint; the dense
    /// output between accepted points ([`Flow::interpolate`],
    /// [`FlowPath::at`]) is a cubic Hermite interpolant whose error grows as
    /// h⁴, so a flow that is read between its points (a tracking
    /// experiment) caps the step.
    pub max_step: Option<f64>,
    /// ∇_Γ: dense or Krylov, null-space threshold, tolerances.
    pub tangent: TangentParams,
    /// The retraction onto Γ after every stage.
    pub retraction: RetractionParams,
    /// Take ∇³L[v1, v1, ·] by differences of HVPs even where the objective
    /// has an exact kernel (a cross-check).
    pub third_by_differences: bool,
}

impl Default for FlowParams {
    fn default() -> Self {
        Self {
            time: FlowTime::GdWd,
            tol: 1e-8,
            tau_max: 1.0,
            grad_tol: 1e-9,
            eigengap_tol: 1e-3,
            max_steps: 100_000,
            initial_step: None,
            max_step: None,
            tangent: TangentParams::default(),
            retraction: RetractionParams::default(),
            third_by_differences: false,
        }
    }
}

/// Errors of the flow.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FlowError {
    /// The manifold tools failed (retraction, Lanczos, domain).
    #[error("at tau = {tau}")]
    Manifold {
        /// Where.
        tau: f64,
        /// What.
        #[source]
        source: ManifoldError,
    },
    /// A setting is out of range.
    #[error("flow parameter {key} = {value}: {why}")]
    InvalidParam {
        /// The key.
        key: &'static str,
        /// Its value.
        value: f64,
        /// What is allowed.
        why: &'static str,
    },
    /// The step-size control shrank the step below rounding.
    #[error(
        "step size {h:e} underflowed at tau = {tau}: the vector field is not smooth there (a multiple top eigenvalue?)"
    )]
    StepUnderflow {
        /// Where.
        tau: f64,
        /// The rejected step.
        h: f64,
    },
    /// The start point's dimension does not match the objective.
    #[error("the start point has {got} entries, the objective has {dim} parameters")]
    Dimension {
        /// Entries given.
        got: usize,
        /// The objective's D.
        dim: usize,
    },
}

impl FlowParams {
    fn validate(&self) -> Result<(), FlowError> {
        let pos = |key, value: f64| {
            if value > 0.0 && value.is_finite() {
                Ok(())
            } else {
                Err(FlowError::InvalidParam { key, value, why: "must be positive and finite" })
            }
        };
        pos("tol", self.tol)?;
        pos("tangent.null_tol", self.tangent.null_tol)?;
        pos("retraction.tol", self.retraction.tol)?;
        // +∞ is allowed: a flow that follows a run (Lockstep) has no end.
        if self.tau_max.is_nan() || self.tau_max < 0.0 {
            return Err(FlowError::InvalidParam {
                key: "tau_max", value: self.tau_max, why: "must be ≥ 0 (or +inf)"
            });
        }
        if let FlowTime::QuasiRmsprop { c_b } = self.time {
            pos("c_b", c_b)?;
        }
        if let Some(h) = self.initial_step {
            pos("initial_step", h)?;
        }
        if let Some(h) = self.max_step {
            pos("max_step", h)?;
        }
        Ok(())
    }
}

/// One accepted point of the flow.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowPoint {
    /// τ, in the unit of [`FlowTime::unit`].
    pub tau: f64,
    /// ζ(τ) ∈ Γ.
    pub zeta: Vec<f64>,
    /// λ1(H(ζ)), the (spherical) sharpness.
    pub sharpness: f64,
    /// λ2(H(ζ)) (Assumption 4.5 needs λ1 > λ2).
    pub lambda2: Option<f64>,
    /// ‖∇_Γ log λ1(ζ)‖.
    pub grad_gamma_norm: f64,
    /// dζ/dτ at ζ.
    pub velocity: Vec<f64>,
    /// How far the step's 5th-order point was from Γ before its retraction
    /// (0 for the start after its own retraction).
    pub off_manifold: f64,
    /// The step that reached this point (0 at the start).
    pub step: f64,
    /// L(ζ), the loss the retraction left.
    pub loss: f64,
    /// ‖H·∇_Γ‖/(λ1‖∇_Γ‖) of the projection (0 for an exact one).
    pub null_residual: f64,
    /// Evaluations since the flow started.
    pub counts: Counts,
}

/// [`Flow`]'s state between steps ([`Flow::state`], [`Flow::restore`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowState {
    /// The current point.
    pub point: FlowPoint,
    /// The point before it (dense output).
    pub prev: Option<FlowPoint>,
    /// The next step to try.
    pub h: f64,
    /// D_Γ (dense path).
    pub null_dim: Option<usize>,
    /// Accepted and rejected steps.
    pub steps: usize,
    pub rejected: usize,
}

/// Why [`Flow::run`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStop {
    /// τ reached tau_max.
    TauMax,
    /// ‖∇_Γ log λ1‖ < grad_tol.
    Stationary,
    /// max_steps accepted steps.
    MaxSteps,
    /// λ1 and λ2 met ((λ1 − λ2)/λ1 < eigengap_tol).
    MultipleTopEigenvalue,
}

/// What a finished [`Flow::run`] reports.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowInfo {
    /// Why it stopped.
    pub stop: FlowStop,
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps (error above tol).
    pub rejected: usize,
    /// All evaluations.
    pub counts: Counts,
}

/// Dormand–Prince 5(4) tableau (Dormand & Prince 1980; scipy's RK45).
const C: [f64; 6] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0];
const A: [&[f64]; 6] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
    &[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
];
/// 5th-order weights (also the 7th stage's row: first-same-as-last).
const B: [f64; 6] = [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0];
/// B − B̂ (B̂ the embedded 4th-order weights), for stages 1…7.
const E: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];

/// The flow as a state machine (argmin-style): [`Flow::new`] retracts the
/// start onto Γ, [`Flow::step`] takes one accepted step,
/// [`Flow::advance_to`] lands exactly on a τ, [`Flow::run`] goes to the end.
/// Evaluations are counted from the start ([`FlowPoint::counts`]).
pub struct Flow<'a> {
    obj: Counted<'a>,
    params: FlowParams,
    domain: ManifoldDomain,
    point: FlowPoint,
    /// The accepted point before `point` (for dense output).
    prev: Option<FlowPoint>,
    /// The next step to try.
    h: f64,
    /// D_Γ = dim null(H) on Γ, read off the start (dense path).
    null_dim: Option<usize>,
    /// Whether every stage is retracted onto Γ (all but the residual path).
    retract_stages: bool,
    steps: usize,
    rejected: usize,
}

/// f at a point of Γ, with what the flow reports about it.
struct Stage {
    zeta: Vec<f64>,
    velocity: Vec<f64>,
    sharpness: f64,
    lambda2: Option<f64>,
    grad_gamma_norm: f64,
    moved: f64,
    loss: f64,
    null_residual: f64,
    v1: Vec<f64>,
    /// dim null(H) at ζ by the threshold (dense path).
    null_dim: Option<usize>,
}

impl<'a> Flow<'a> {
    /// Starts the flow at the retraction of `zeta0` onto Γ (so a nearby
    /// iterate of GD+WD is a valid start: its projection, App. H.1).
    pub fn new(obj: &'a dyn Hessian, zeta0: &[f64], params: FlowParams) -> Result<Self, FlowError> {
        params.validate()?;
        if zeta0.len() != obj.dim() {
            return Err(FlowError::Dimension { got: zeta0.len(), dim: obj.dim() });
        }
        let domain = ManifoldDomain::of(obj).map_err(|source| FlowError::Manifold { tau: 0.0, source })?;
        let retract_stages = !crate::manifold::uses_residual(obj, zeta0.len(), &params.tangent);
        let mut flow = Self {
            obj: Counted::new(obj),
            params,
            domain,
            point: FlowPoint {
                tau: 0.0,
                zeta: Vec::new(),
                sharpness: 0.0,
                lambda2: None,
                grad_gamma_norm: 0.0,
                velocity: Vec::new(),
                off_manifold: 0.0,
                step: 0.0,
                loss: 0.0,
                null_residual: 0.0,
                counts: Counts::default(),
            },
            prev: None,
            h: 0.0,
            null_dim: None,
            retract_stages,
            steps: 0,
            rejected: 0,
        };
        let s = flow.stage(zeta0, None, 0.0)?;
        flow.null_dim = s.null_dim;
        flow.h = match flow.params.initial_step {
            Some(h) => h,
            None => {
                let v = norm(&s.velocity);
                if v > 0.0 { 0.01 / v } else { flow.params.tau_max.clamp(1e-3, 1.0) }
            }
        };
        flow.point = flow.point_from(s, 0.0, 0.0, 0.0);
        flow.point.off_manifold = 0.0;
        Ok(flow)
    }

    /// The current point.
    pub fn point(&self) -> &FlowPoint {
        &self.point
    }

    /// The domain of Γ (sphere or R^D).
    pub fn domain(&self) -> ManifoldDomain {
        self.domain
    }

    /// The settings.
    pub fn params(&self) -> &FlowParams {
        &self.params
    }

    /// Accepted and rejected steps so far.
    pub fn steps(&self) -> (usize, usize) {
        (self.steps, self.rejected)
    }

    /// The step size the next step will try.
    pub fn next_step(&self) -> f64 {
        self.h
    }

    /// D_Γ as read off the start (dense path).
    pub fn null_dim(&self) -> Option<usize> {
        self.null_dim
    }

    /// The integrator's whole state, for checkpoints ([`Flow::restore`]).
    pub fn state(&self) -> FlowState {
        FlowState {
            point: self.point.clone(),
            prev: self.prev.clone(),
            h: self.h,
            null_dim: self.null_dim,
            steps: self.steps,
            rejected: self.rejected,
        }
    }

    /// Continues a flow from [`Flow::state`] without an evaluation, so a
    /// resumed flow takes the same steps, bit for bit, as one never stopped.
    pub fn restore(obj: &'a dyn Hessian, params: FlowParams, st: FlowState) -> Result<Self, FlowError> {
        params.validate()?;
        if st.point.zeta.len() != obj.dim() {
            return Err(FlowError::Dimension { got: st.point.zeta.len(), dim: obj.dim() });
        }
        let domain = ManifoldDomain::of(obj).map_err(|source| FlowError::Manifold { tau: st.point.tau, source })?;
        let retract_stages = !crate::manifold::uses_residual(obj, obj.dim(), &params.tangent);
        Ok(Self {
            obj: Counted::starting_at(obj, st.point.counts),
            params,
            domain,
            point: st.point,
            prev: st.prev,
            h: st.h,
            null_dim: st.null_dim,
            retract_stages,
            steps: st.steps,
            rejected: st.rejected,
        })
    }

    /// ζ(τ) and λ1(ζ(τ)) for τ in the last accepted step [τ_prev, τ_cur]
    /// (clamped to it), by cubic Hermite interpolation of ζ with the
    /// velocities at both ends (error O(h⁴), then Π onto the sphere) and of
    /// log λ1 with d log λ1/dτ = ⟨G, dζ/dτ⟩ at both ends — a dense output
    /// that costs no evaluation, so a run can follow the flow at every step.
    pub fn interpolate(&self, tau: f64) -> (Vec<f64>, f64) {
        match &self.prev {
            Some(a) => hermite(a, &self.point, tau, self.domain),
            None => (self.point.zeta.clone(), self.point.sharpness),
        }
    }

    fn point_from(&self, s: Stage, tau: f64, step: f64, off: f64) -> FlowPoint {
        FlowPoint {
            tau,
            zeta: s.zeta,
            sharpness: s.sharpness,
            lambda2: s.lambda2,
            grad_gamma_norm: s.grad_gamma_norm,
            velocity: s.velocity,
            off_manifold: off.max(s.moved),
            step,
            loss: s.loss,
            null_residual: s.null_residual,
            counts: self.obj.counts(),
        }
    }

    /// F(y) = f(R(y)): retract, decompose H, contract ∇³L with v1, project.
    fn stage(&self, y: &[f64], warm: Option<&[f64]>, tau: f64) -> Result<Stage, FlowError> {
        self.stage_at(y, warm, tau, true)
    }

    /// F at y, with the retraction onto Γ first (`retract`) or, on the
    /// residual path, at y itself: there null(J(y)) is the tangent space of
    /// the level set {r = r(y)}, a smooth extension of T_ζΓ whose solutions
    /// from Γ stay on Γ, so the stages need no retraction — only the
    /// accepted points do.
    fn stage_at(&self, y: &[f64], warm: Option<&[f64]>, tau: f64, retract_first: bool) -> Result<Stage, FlowError> {
        let obj: &dyn Hessian = &self.obj;
        let err = |source| FlowError::Manifold { tau, source };
        let r = if retract_first {
            retract(obj, y, self.domain, &self.params.tangent, &self.params.retraction, warm, self.null_dim)
                .map_err(err)?
        } else {
            let mut z = y.to_vec();
            if self.domain == ManifoldDomain::Sphere {
                crate::linalg::normalize(&mut z);
            }
            let hessian =
                LocalHessian::new(obj, &z, self.domain, &self.params.tangent, warm, self.null_dim).map_err(err)?;
            // An unretracted stage is never reported (the accepted point is
            // retracted and evaluated again), so its loss is not needed.
            crate::manifold::Retracted { loss: f64::NAN, point: z, moved: 0.0, iters: 0, hessian }
        };
        let null_dim = r.hessian.null_dim_by_threshold();
        let mut hess: LocalHessian = r.hessian;
        let d = y.len();
        let mut t = vec![0.0; d];
        if self.params.third_by_differences {
            crate::objective::third_contraction_by_hvp_differences(obj, &r.point, &hess.v1, &mut t);
        } else {
            obj.third_contraction(&r.point, &hess.v1, &mut t);
        }
        let lambda1 = hess.lambda1;
        t.iter_mut().for_each(|x| *x /= lambda1);
        let proj = hess.project_tangent(&t);
        if !proj.converged {
            return Err(err(ManifoldError::ProjectionNotConverged { max_basis: self.params.tangent.max_basis }));
        }
        let g = proj.vector;
        if g.iter().any(|x| !x.is_finite()) {
            return Err(err(ManifoldError::NonFinite { what: "tangent projection of grad log lambda1" }));
        }
        Ok(Stage {
            velocity: self.params.time.velocity(&g),
            grad_gamma_norm: norm(&g),
            sharpness: lambda1,
            lambda2: hess.lambda2,
            moved: r.moved,
            loss: r.loss,
            null_residual: proj.null_residual,
            v1: hess.v1.clone(),
            zeta: r.point,
            null_dim,
        })
    }

    /// One accepted step towards τ = `target`, landing on it exactly when
    /// the step reaches it (rejected tries are retried with a smaller step).
    fn step_toward(&mut self, target: f64) -> Result<&FlowPoint, FlowError> {
        let h_max = target - self.point.tau;
        let d = self.point.zeta.len();
        let y0 = self.point.zeta.clone();
        let scale = norm(&y0).max(1.0);
        let mut warm = None::<Vec<f64>>;
        loop {
            let h = self.h.min(h_max).min(self.params.max_step.unwrap_or(f64::INFINITY));
            // A step that would leave a remainder at rounding level (τ summed
            // from max_step-sized steps) stretches to land on the target.
            let h = if h_max.is_finite() && h_max - h <= 1e-10 * h_max { h_max } else { h };
            if h < 1e-14 * self.point.tau.abs().max(1.0) {
                return Err(FlowError::StepUnderflow { tau: self.point.tau, h });
            }
            let mut k: Vec<Vec<f64>> = vec![self.point.velocity.clone()];
            for (i, row) in A.iter().enumerate().skip(1) {
                let mut y = y0.clone();
                for (a, kj) in row.iter().zip(&k) {
                    axpy(h * a, kj, &mut y);
                }
                let s = self.stage_at(&y, warm.as_deref(), self.point.tau + C[i] * h, self.retract_stages)?;
                warm = Some(s.v1.clone());
                k.push(s.velocity);
            }
            let mut y5 = y0.clone();
            for (b, kj) in B.iter().zip(&k) {
                axpy(h * b, kj, &mut y5);
            }
            let s7 = self.stage_at(&y5, warm.as_deref(), self.point.tau + h, self.retract_stages)?;
            let mut e = vec![0.0; d];
            for (c, kj) in E.iter().zip(k.iter().chain(std::iter::once(&s7.velocity))) {
                axpy(h * c, kj, &mut e);
            }
            let err = norm(&e) / (self.params.tol * scale);
            let factor = if err == 0.0 { 5.0 } else { (0.9 * err.powf(-0.2)).clamp(0.2, 5.0) };
            if err <= 1.0 {
                // Grow after an accepted step; a clipped step keeps the
                // proposal it was clipped from.
                self.h = if h < self.h { self.h } else { h * factor };
                // Without stage retractions the accepted point is retracted
                // here, and F there starts the next step.
                let s7 = if self.retract_stages { s7 } else { self.stage(&y5, warm.as_deref(), self.point.tau + h)? };
                let off = crate::linalg::dist(&y5, &s7.zeta);
                let tau = if h == h_max { target } else { self.point.tau + h };
                let next = self.point_from(s7, tau, h, off);
                self.prev = Some(std::mem::replace(&mut self.point, next));
                self.steps += 1;
                return Ok(&self.point);
            }
            self.rejected += 1;
            self.h = h * factor.min(1.0);
        }
    }

    /// One accepted step, clipped so as not to pass tau_max.
    pub fn step(&mut self) -> Result<&FlowPoint, FlowError> {
        self.step_toward(self.params.tau_max)
    }

    /// Why the flow cannot go on from its current point, if it cannot.
    fn stop_here(&self) -> Option<FlowStop> {
        if self.point.grad_gamma_norm < self.params.grad_tol {
            return Some(FlowStop::Stationary);
        }
        if let Some(l2) = self.point.lambda2
            && self.point.sharpness - l2 < self.params.eigengap_tol * self.point.sharpness
        {
            return Some(FlowStop::MultipleTopEigenvalue);
        }
        (self.steps >= self.params.max_steps).then_some(FlowStop::MaxSteps)
    }

    /// Steps until τ = `tau` exactly (the last step clipped), calling
    /// `on_step` at every accepted point, or until the flow is stationary
    /// (‖∇_Γ log λ1‖ < grad_tol), meets a multiple top eigenvalue, or runs
    /// out of steps.
    pub fn advance_to(&mut self, tau: f64, on_step: &mut dyn FnMut(&FlowPoint)) -> Result<Option<FlowStop>, FlowError> {
        while self.point.tau < tau {
            if let Some(stop) = self.stop_here() {
                return Ok(Some(stop));
            }
            let p = self.step_toward(tau)?;
            on_step(p);
        }
        Ok(None)
    }

    /// Takes unclipped steps until τ_cur ≥ `tau` (so [`Flow::interpolate`]
    /// covers `tau`), or until a stop.
    pub fn advance_past(&mut self, tau: f64) -> Result<Option<FlowStop>, FlowError> {
        while self.point.tau < tau {
            if let Some(stop) = self.stop_here() {
                return Ok(Some(stop));
            }
            self.step_toward(f64::INFINITY)?;
        }
        Ok(None)
    }

    /// Runs to tau_max (or stationarity, or max_steps).
    pub fn run(&mut self, on_step: &mut dyn FnMut(&FlowPoint)) -> Result<FlowInfo, FlowError> {
        let stop = self.advance_to(self.params.tau_max, on_step)?.unwrap_or(FlowStop::TauMax);
        Ok(FlowInfo { stop, steps: self.steps, rejected: self.rejected, counts: self.obj.counts() })
    }
}

/// The dense output between two accepted points a, b (τ clamped to
/// [τ_a, τ_b]): cubic Hermite interpolation of ζ with the velocities at
/// both ends (error O(h⁴); then Π onto the sphere) and of log λ1 with
/// d log λ1/dτ = ⟨G, dζ/dτ⟩ at both ends.
fn hermite(a: &FlowPoint, b: &FlowPoint, tau: f64, domain: ManifoldDomain) -> (Vec<f64>, f64) {
    let h = b.tau - a.tau;
    if h <= 0.0 {
        return (b.zeta.clone(), b.sharpness);
    }
    let s = ((tau - a.tau) / h).clamp(0.0, 1.0);
    let (h00, h10, h01, h11) = (
        2.0 * s.powi(3) - 3.0 * s * s + 1.0,
        s.powi(3) - 2.0 * s * s + s,
        -2.0 * s.powi(3) + 3.0 * s * s,
        s.powi(3) - s * s,
    );
    let mut z: Vec<f64> = (0..b.zeta.len())
        .map(|i| h00 * a.zeta[i] + h10 * h * a.velocity[i] + h01 * b.zeta[i] + h11 * h * b.velocity[i])
        .collect();
    if domain == ManifoldDomain::Sphere {
        crate::linalg::normalize(&mut z);
    }
    // ⟨G, f⟩ = −c‖G‖² with f = −c·G.
    let dlog = |p: &FlowPoint| {
        let g2 = p.grad_gamma_norm * p.grad_gamma_norm;
        -g2 * crate::linalg::norm(&p.velocity) / p.grad_gamma_norm.max(f64::MIN_POSITIVE)
    };
    let l = h00 * a.sharpness.ln() + h10 * h * dlog(a) + h01 * b.sharpness.ln() + h11 * h * dlog(b);
    (z, l.exp())
}

/// A whole solution ζ : [0, τ_end] → Γ kept as its accepted points, with
/// the same dense output as [`Flow::interpolate`] between any two — so one
/// integration serves many GD+WD runs that follow the same flow at
/// different learning rates (Thm 4.6: the flow in τ = t·η_in does not
/// depend on η_in).
///
/// ```
/// use eosflow::flow::{Flow, FlowParams, FlowPath};
/// use eosflow::problems::Toy3d;
/// let p = Toy3d::unrotated();
/// let r = ((1.0 - 0.36) / 2.0_f64).sqrt();
/// // Steps of at most 0.1 in τ keep the dense output close between points.
/// let params = FlowParams { max_step: Some(0.1), ..Default::default() };
/// let flow = Flow::new(&p, &[r, r, 0.6], params).unwrap();
/// let path = FlowPath::record(flow, 2.0).unwrap();
/// assert_eq!(path.tau_end(), 2.0);
/// let (zeta, sharpness) = path.at(1.0);
/// // On Γ = {x = y}, λ1 = 6/(1 − z²) (App. F).
/// assert!((sharpness - 6.0 / (1.0 - zeta[2] * zeta[2])).abs() < 1e-6);
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowPath {
    /// The accepted points, τ increasing, the first at τ = 0.
    pub points: Vec<FlowPoint>,
    /// Sphere or full space (for the dense output's Π).
    pub domain: ManifoldDomain,
    /// Why the flow stopped before τ_end, if it did (then ζ stays at its
    /// last point beyond it).
    pub stop: Option<FlowStop>,
}

impl FlowPath {
    /// Runs `flow` to τ = `tau_end` (or an earlier stop) and keeps every
    /// accepted point.
    pub fn record(mut flow: Flow<'_>, tau_end: f64) -> Result<Self, FlowError> {
        let mut points = vec![flow.point().clone()];
        let stop = flow.advance_to(tau_end, &mut |p| points.push(p.clone()))?;
        Ok(Self { points, domain: flow.domain(), stop })
    }

    /// The last τ the flow reached.
    pub fn tau_end(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.tau)
    }

    /// ζ(τ) and λ1(ζ(τ)) by the dense output of the step that holds τ
    /// (clamped to [0, τ_end]).
    pub fn at(&self, tau: f64) -> (Vec<f64>, f64) {
        let i = self.points.partition_point(|p| p.tau < tau).clamp(1, self.points.len().max(2) - 1);
        match (self.points.get(i - 1), self.points.get(i)) {
            (Some(a), Some(b)) => hermite(a, b, tau, self.domain),
            (Some(a), None) => (a.zeta.clone(), a.sharpness),
            _ => (Vec::new(), f64::NAN),
        }
    }
}

/// The columns [`Lockstep`] adds to metrics.csv.
pub mod lockstep_columns {
    use crate::run::Column;
    /// τ_t = (t − t_entry)·(τ per step), the flow's time at GD+WD's step t.
    pub const FLOW_TAU: Column = Column::new("flow_tau");
    /// λ1(ζ(τ_t)).
    pub const FLOW_SHARPNESS: Column = Column::new("flow_sharpness");
    /// ‖θ_t − ζ(τ_t)‖ (θ_t = w_t/‖w_t‖ on the sphere).
    pub const DIST_TO_FLOW: Column = Column::new("dist_to_flow");
    /// ‖φ_t − ζ(τ_t)‖, φ_t the projection of θ_t onto Γ.
    pub const PHI_DIST_TO_FLOW: Column = Column::new("phi_dist_to_flow");
}

/// Settings of [`Lockstep`].
#[derive(Clone, Debug, PartialEq)]
pub struct LockstepParams {
    /// The flow's settings (`tau_max` is ignored: the flow follows the run).
    pub flow: FlowParams,
    /// τ per GD+WD step: η_in = η̂λ̂ for eq. (3), η² for eq. (8).
    pub tau_per_step: f64,
    /// φ_t by a retraction on every `phi_every`-th logged step (0: never);
    /// problems with an exact projection ([`crate::problems::Problem::project_onto_gamma`])
    /// get it on every logged step.
    pub phi_every: u64,
}

/// GD+WD and its flow side by side, as Damian et al.'s self-stabilisation
/// code runs GD, its projection and the predicted dynamics together: a
/// [`Tracker`] around the problem's own that starts the flow at the run's
/// EoS entry (from the projection of w_entry) and, on every logged step t
/// after it, advances the flow to τ_t = (t − t_entry)·(τ per step) and
/// writes `flow_tau, flow_sharpness, dist_to_flow, phi_dist_to_flow`
/// (empty before the entry). The flow's evaluations are counted on their
/// own (summary `lockstep.counts`), not in the run's.
pub struct Lockstep<'a> {
    inner: Box<dyn Tracker + 'a>,
    problem: &'a dyn Problem,
    params: LockstepParams,
    flow: Option<Flow<'a>>,
    st: LockstepState,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct LockstepState {
    t_entry: Option<u64>,
    /// The flow's state, for checkpoints.
    flow: Option<FlowState>,
    max_dist: f64,
    max_phi_dist: f64,
    max_sharpness_gap: f64,
    last: Option<(u64, f64, f64)>,
    stop: Option<String>,
    error: Option<String>,
    inner: serde_json::Value,
}

impl<'a> Lockstep<'a> {
    /// Wraps `inner` (normally `problem.tracker()`).
    pub fn new(inner: Box<dyn Tracker + 'a>, problem: &'a dyn Problem, params: LockstepParams) -> Self {
        Self { inner, problem, params, flow: None, st: LockstepState::default() }
    }

    fn start(&mut self, step: u64, w: &[f64]) {
        let p = FlowParams { tau_max: f64::INFINITY, ..self.params.flow.clone() };
        match Flow::new(self.problem, w, p) {
            Ok(f) => {
                self.st.t_entry = Some(step);
                self.flow = Some(f);
            }
            Err(e) => self.st.error = Some(format!("the flow could not start at step {step}: {e}")),
        }
    }

    fn row(&mut self, step: u64, w: &[f64], sharpness: Option<f64>) -> [f64; 4] {
        let (Some(t0), Some(flow)) = (self.st.t_entry, self.flow.as_mut()) else { return [f64::NAN; 4] };
        let tau = (step - t0) as f64 * self.params.tau_per_step;
        if self.st.stop.is_none() {
            match flow.advance_past(tau) {
                Ok(Some(stop)) => self.st.stop = Some(format!("{stop:?} at tau = {}", flow.point().tau)),
                Ok(None) => {}
                Err(e) => {
                    self.st.error = Some(format!("at step {step}: {e}"));
                    self.st.stop = Some("error".into());
                }
            }
        }
        // Past a stop the flow stays where it stopped.
        let (zeta, flow_sharpness) = flow.interpolate(tau);
        let flow_tau = tau.min(flow.point().tau);
        let mut theta = w.to_vec();
        if flow.domain() == ManifoldDomain::Sphere {
            crate::linalg::normalize(&mut theta);
        }
        let dist = crate::linalg::dist(&theta, &zeta);
        let logged_phi = self.params.phi_every > 0 && step.is_multiple_of(self.params.phi_every);
        let phi = self.problem.project_onto_gamma(&theta).or_else(|| {
            logged_phi
                .then(|| {
                    retract(
                        self.problem,
                        &theta,
                        flow.domain(),
                        &flow.params().tangent,
                        &flow.params().retraction,
                        None,
                        flow.null_dim(),
                    )
                    .ok()
                    .map(|r| r.point)
                })
                .flatten()
        });
        let phi_dist = phi.map_or(f64::NAN, |p| crate::linalg::dist(&p, &zeta));
        self.st.max_dist = self.st.max_dist.max(dist);
        if phi_dist.is_finite() {
            self.st.max_phi_dist = self.st.max_phi_dist.max(phi_dist);
        }
        if let Some(s) = sharpness {
            self.st.max_sharpness_gap = self.st.max_sharpness_gap.max((flow_sharpness - s).abs() / s);
        }
        self.st.last = Some((step, dist, phi_dist));
        [flow_tau, flow_sharpness, dist, phi_dist]
    }
}

impl Tracker for Lockstep<'_> {
    fn columns(&self) -> Vec<Column> {
        let mut c = self.inner.columns();
        use lockstep_columns as L;
        c.extend([L::FLOW_TAU, L::FLOW_SHARPNESS, L::DIST_TO_FLOW, L::PHI_DIST_TO_FLOW]);
        c
    }

    fn observe(&mut self, obj: &Counted, s: &StepView) -> Vec<f64> {
        let mut row = self.inner.observe(obj, s);
        if s.eos_entry && self.flow.is_none() && self.st.error.is_none() {
            self.start(s.step, s.w);
        }
        if s.logged {
            row.extend(self.row(s.step, s.w, s.sharpness));
        }
        row
    }

    fn summary(&mut self, obj: &Counted, w_final: &[f64]) -> serde_json::Map<String, serde_json::Value> {
        let mut m = self.inner.summary(obj, w_final);
        let mut l = serde_json::Map::new();
        l.insert("eos_entry_step".into(), serde_json::json!(self.st.t_entry));
        l.insert("time_unit".into(), serde_json::json!(self.params.flow.time.unit()));
        l.insert("tau_per_step".into(), serde_json::json!(self.params.tau_per_step));
        if let Some(f) = &self.flow {
            let p = f.point();
            l.insert("flow_tau_final".into(), serde_json::json!(p.tau));
            l.insert("flow_sharpness_final".into(), serde_json::json!(p.sharpness));
            l.insert("flow_steps".into(), serde_json::json!(f.steps().0));
            l.insert("counts".into(), serde_json::json!(p.counts));
            l.insert("max_dist_to_flow".into(), serde_json::json!(self.st.max_dist));
            l.insert("max_phi_dist_to_flow".into(), serde_json::json!(self.st.max_phi_dist));
            l.insert("max_rel_gap_flow_sharpness_vs_sharpness".into(), serde_json::json!(self.st.max_sharpness_gap));
            if let Some((step, d, pd)) = self.st.last {
                l.insert("last_logged_step".into(), serde_json::json!(step));
                l.insert("dist_to_flow_final".into(), serde_json::json!(d));
                l.insert("phi_dist_to_flow_final".into(), serde_json::json!(pd.is_finite().then_some(pd)));
            }
        }
        l.insert("flow_stop".into(), serde_json::json!(self.st.stop));
        l.insert("error".into(), serde_json::json!(self.st.error));
        m.insert("lockstep".into(), serde_json::Value::Object(l));
        m
    }

    fn save(&self) -> serde_json::Value {
        let mut st = self.st.clone();
        st.flow = self.flow.as_ref().map(|f| f.state());
        st.inner = self.inner.save();
        serde_json::to_value(&st).expect("lockstep state serialises")
    }

    fn load(&mut self, state: &serde_json::Value) -> Result<(), TrackerStateError> {
        let st: LockstepState = TrackerStateError::read("lockstep", state)?;
        self.inner.load(&st.inner)?;
        self.flow = match st.flow.clone() {
            Some(fs) => {
                let p = FlowParams { tau_max: f64::INFINITY, ..self.params.flow.clone() };
                Flow::restore(self.problem, p, fs).ok()
            }
            None => None,
        };
        self.st = st;
        Ok(())
    }
}
