//! The RMS-drift process and its Hamiltonian (App. H.1–H.2, N.1, Fig. 5).
//!
//! In EoS the iterate oscillates across Γ along v1(φ_t), and two hidden
//! variables follow it (eq. 16): with η the base LR of the quasi-RMSprop
//! view (GD+WD: η = √(2η_in), C_b = 2, Thm B.9), μ_t = 2/λ1(φ_t) and ṽ_t the
//! moment estimate (1/η̃_t², Def. B.6),
//!
//! h_t = ⟨v1(φ_t), θ_t − φ_t⟩/η,   u_t = (μ_t²ṽ_t − 1)/η.
//!
//! To first order (x, p) = (log|h|, −u) is a unit-mass particle in the well
//! U(x) = K²e^{2x} − C_b·x with K² = 2C_b + ‖∇_Γ log λ1(φ)‖² (eq. 17), in
//! the time τ' = t·η, so the energy E = ½u² + K²h² − C_b·log|h| is
//! conserved over a period and every orbit is periodic ([`Hamiltonian`]).
//! [`RmsDrift`] measures (h, u, K, E) along a run; [`cycles`] cuts the
//! measured path into periods and sets each against the period (17)
//! predicts at its energy.
//!
//! ```
//! use eosflow::drift::Hamiltonian;
//! let ham = Hamiltonian { k: 2.0, c_b: 1.0 }; // Fig. 5's system
//! // Small oscillations about the fixed point |h*| = √(C_b/(2K²)) have
//! // period 2π/√(2C_b) (U''(x*) = 2C_b).
//! let e = ham.fixed_point_energy() + 1e-6;
//! let p = ham.period(e).unwrap();
//! assert!((p - ham.small_oscillation_period()).abs() < 1e-4);
//! ```

use crate::flow::{Flow, FlowParams};
use crate::linalg::normalize;
use crate::manifold::{ManifoldDomain, OscillationTracker};
use crate::objective::Counted;
use crate::problems::{Problem, StepView, Tracker, TrackerStateError};
use crate::run::Column;
use crate::sharpness::spherical_sharpness;
use crate::spectrum::LanczosParams;

/// The one-dimensional Hamiltonian system (17) of the RMS-drift process:
/// H(x, p) = ½p² + U(x), U(x) = K²e^{2x} − C_b·x, with x = log|h|, p = −u.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hamiltonian {
    /// K = √(2C_b + ‖∇_Γ log λ1(φ)‖²).
    pub k: f64,
    /// C_b of β = 1 − C_b·η² (GD+WD: 2).
    pub c_b: f64,
}

impl Hamiltonian {
    /// U(x) = K²e^{2x} − C_b·x.
    pub fn potential(&self, x: f64) -> f64 {
        self.k * self.k * (2.0 * x).exp() - self.c_b * x
    }

    /// U'(x) = 2K²e^{2x} − C_b.
    fn force(&self, x: f64) -> f64 {
        2.0 * self.k * self.k * (2.0 * x).exp() - self.c_b
    }

    /// E(h, u) = ½u² + K²h² − C_b·log|h| = ½p² + U(log|h|).
    pub fn energy(&self, h: f64, u: f64) -> f64 {
        0.5 * u * u + self.potential(h.abs().ln())
    }

    /// The fixed point's x* = log|h*|, |h*| = √(C_b/(2K²)) (U'(x*) = 0),
    /// with u* = 0.
    pub fn fixed_point_x(&self) -> f64 {
        0.5 * (self.c_b / (2.0 * self.k * self.k)).ln()
    }

    /// E* = U(x*) = C_b/2 − C_b·x*, the least energy.
    pub fn fixed_point_energy(&self) -> f64 {
        self.potential(self.fixed_point_x())
    }

    /// 2π/√(2C_b), the period of small oscillations (U''(x*) = 2C_b), in τ'.
    pub fn small_oscillation_period(&self) -> f64 {
        2.0 * std::f64::consts::PI / (2.0 * self.c_b).sqrt()
    }

    /// U(x* + δ) − U(x*) = (C_b/2)(e^{2δ} − 1 − 2δ) (since K²e^{2x*} = C_b/2),
    /// by its series for small δ: written this way the period of nearly
    /// small oscillations does not lose its digits to E − U(x).
    fn excess(&self, d: f64) -> f64 {
        let y = 2.0 * d;
        let r = if y.abs() < 0.5 {
            // Σ_{n≥2} yⁿ/n!; 24 terms reach rounding for |y| < 0.5.
            let (mut term, mut sum) = (y * y / 2.0, 0.0);
            for n in 3..27 {
                sum += term;
                term *= y / n as f64;
            }
            sum
        } else {
            y.exp_m1() - y
        };
        0.5 * self.c_b * r
    }

    /// The turning points x₋ < x* < x₊ with U(x±) = E (None for E ≤ E*),
    /// by bisection on each side of the well (U is convex).
    pub fn turning_points(&self, e: f64) -> Option<(f64, f64)> {
        let de = e - self.fixed_point_energy();
        let (lo, hi) = self.turning_offsets(de)?;
        let xs = self.fixed_point_x();
        Some((xs + lo, xs + hi))
    }

    /// δ₋ < 0 < δ₊ with U(x* + δ±) − U(x*) = ΔE.
    fn turning_offsets(&self, de: f64) -> Option<(f64, f64)> {
        if de.is_nan() || de <= 0.0 || de.is_infinite() {
            return None;
        }
        let solve = |dir: f64| {
            // Bracket outwards from the small-oscillation estimate √(ΔE/C_b).
            let mut step = (de / self.c_b).sqrt();
            while self.excess(dir * step) < de {
                step *= 2.0;
            }
            let (mut inner, mut outer) = (0.0, dir * step);
            for _ in 0..200 {
                let mid = 0.5 * (inner + outer);
                if self.excess(mid) < de {
                    inner = mid;
                } else {
                    outer = mid;
                }
                if (outer - inner).abs() <= 2.0 * f64::EPSILON * mid.abs() {
                    break;
                }
            }
            0.5 * (inner + outer)
        };
        Some((solve(-1.0), solve(1.0)))
    }

    /// The period of (17) at energy E, in τ' = t·η:
    /// T(E) = 2∫_{x₋}^{x₊} dx/√(2(E − U(x))). The substitution
    /// x = c + r·sin φ (c, r the centre and half-width of [x₋, x₊]) removes
    /// the inverse square-root singularities at the turning points; the
    /// smooth integrand is then summed by composite Gauss–Legendre (8 points
    /// on each of 64 panels), with E − U(x) taken relative to the fixed point.
    pub fn period(&self, e: f64) -> Option<f64> {
        let de = e - self.fixed_point_energy();
        let (lo, hi) = self.turning_offsets(de)?;
        let (c, r) = (0.5 * (lo + hi), 0.5 * (hi - lo));
        let f = |phi: f64| {
            let gap = de - self.excess(c + r * phi.sin());
            if gap > 0.0 { r * phi.cos() / (2.0 * gap).sqrt() } else { 0.0 }
        };
        let half = std::f64::consts::FRAC_PI_2;
        let panels = 64;
        let w = 2.0 * half / panels as f64;
        let mut sum = 0.0;
        for k in 0..panels {
            let mid = -half + (k as f64 + 0.5) * w;
            for (node, weight) in GL8 {
                sum += 0.5 * w * weight * f(mid + 0.5 * w * node);
            }
        }
        Some(2.0 * sum)
    }

    /// (x, p) after integrating x' = p, p' = −U'(x) from (x0, p0) for time
    /// `t` with classical RK4 steps ≤ `dt` (a reference for [`Hamiltonian::period`]).
    pub fn integrate(&self, x0: f64, p0: f64, t: f64, dt: f64) -> (f64, f64) {
        let (mut x, mut p, mut s) = (x0, p0, 0.0);
        while s < t {
            let h = dt.min(t - s);
            let (k1x, k1p) = (p, -self.force(x));
            let (k2x, k2p) = (p + 0.5 * h * k1p, -self.force(x + 0.5 * h * k1x));
            let (k3x, k3p) = (p + 0.5 * h * k2p, -self.force(x + 0.5 * h * k2x));
            let (k4x, k4p) = (p + h * k3p, -self.force(x + h * k3x));
            x += h / 6.0 * (k1x + 2.0 * k2x + 2.0 * k3x + k4x);
            p += h / 6.0 * (k1p + 2.0 * k2p + 2.0 * k3p + k4p);
            s += h;
        }
        (x, p)
    }
}

/// 8-point Gauss–Legendre nodes and weights on [−1, 1].
const GL8: [(f64, f64); 8] = [
    (-0.960_289_856_497_536_3, 0.101_228_536_290_376_26),
    (-0.796_666_477_413_626_7, 0.222_381_034_453_374_47),
    (-0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (-0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.183_434_642_495_649_8, 0.362_683_783_378_362),
    (0.525_532_409_916_329, 0.313_706_645_877_887_3),
    (0.796_666_477_413_626_7, 0.222_381_034_453_374_47),
    (0.960_289_856_497_536_3, 0.101_228_536_290_376_26),
];

/// The RMS-drift variables' metrics.csv columns ([`RmsDrift`]).
pub mod drift_columns {
    use crate::run::Column;
    /// h_t of eq. (16): ⟨v1(φ_t), θ_t − φ_t⟩/η (the linreg_bn `h` column
    /// divided by η).
    pub const H: Column = Column::new("drift_h");
    /// u_t of eq. (16): (μ_t²ṽ_t − 1)/η, μ_t = 2/λ1(φ_t), ṽ_t = 1/η̃_t².
    pub const U: Column = Column::new("drift_u");
    /// K = √(2C_b + ‖∇_Γ log λ1(φ_t)‖²) of eq. (17).
    pub const K: Column = Column::new("drift_k");
    /// E = ½u² + K²h² − C_b·log|h|.
    pub const ENERGY: Column = Column::new("drift_energy");
    /// λ1(φ_t), by Lanczos at φ_t.
    pub const SHARPNESS: Column = Column::new("drift_sharpness");
}

/// Settings of [`RmsDrift`].
#[derive(Clone, Debug, PartialEq)]
pub struct DriftParams {
    /// η of the quasi-RMSprop view (GD+WD: √(2η_in)).
    pub eta: f64,
    /// C_b (GD+WD: 2).
    pub c_b: f64,
    /// ‖∇_Γ log λ1(φ_t)‖ (for K) on every `k_every`-th logged step, held in
    /// between: it moves on the flow's time scale, thousands of steps.
    pub k_every: u64,
    /// λ1(φ_t) and v1(φ_t) by Lanczos, warm-started from the last step.
    pub lanczos: LanczosParams,
    /// The flow's settings for ∇_Γ log λ1 (the time unit is not used).
    pub flow: FlowParams,
}

/// A [`Tracker`] around the problem's own that writes the RMS-drift
/// variables `drift_h, drift_u, drift_k, drift_energy, drift_sharpness` on
/// every logged step
/// where θ_t projects onto Γ ([`Problem::project_onto_gamma`]; empty
/// elsewhere). The evaluations (Lanczos at φ_t, the third-derivative
/// contraction for K) go through the run's counters.
pub struct RmsDrift<'a> {
    inner: Box<dyn Tracker + 'a>,
    problem: &'a dyn Problem,
    params: DriftParams,
    /// θ_t = w_t/‖w_t‖ (scale-invariant losses) or w_t.
    sphere: bool,
    st: DriftState,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct DriftState {
    osc: OscillationTracker,
    warm: Option<Vec<f64>>,
    k: Option<f64>,
    logged: u64,
    inner: serde_json::Value,
}

impl<'a> RmsDrift<'a> {
    /// Wraps `inner` (the problem's tracker, or a [`crate::flow::Lockstep`]).
    pub fn new(inner: Box<dyn Tracker + 'a>, problem: &'a dyn Problem, params: DriftParams) -> Self {
        let sphere = matches!(ManifoldDomain::of(problem), Ok(ManifoldDomain::Sphere));
        Self { inner, problem, params, sphere, st: DriftState::default() }
    }

    fn row(&mut self, obj: &Counted, w: &[f64], eff_lr: f64) -> [f64; 5] {
        let nan = [f64::NAN; 5];
        let mut theta = w.to_vec();
        if self.sphere {
            normalize(&mut theta);
        }
        let Some(phi) = self.problem.project_onto_gamma(&theta) else { return nan };
        let Ok(s) = spherical_sharpness(obj, &phi, &self.params.lanczos, self.st.warm.as_deref()) else { return nan };
        let h = self.st.osc.observe(&theta, &phi, &s.eigenvector) / self.params.eta;
        self.st.warm = Some(s.eigenvector);
        let due = self.params.k_every <= 1 || self.st.logged.is_multiple_of(self.params.k_every);
        self.st.logged += 1;
        if due || self.st.k.is_none() {
            let g = Flow::new(obj, &phi, self.params.flow.clone()).map(|f| f.point().grad_gamma_norm);
            if let Ok(g) = g {
                self.st.k = Some((2.0 * self.params.c_b + g * g).sqrt());
            }
        }
        let Some(k) = self.st.k else { return nan };
        let mu = 2.0 / s.spherical;
        let u = (mu * mu / (eff_lr * eff_lr) - 1.0) / self.params.eta;
        let e = Hamiltonian { k, c_b: self.params.c_b }.energy(h, u);
        [h, u, k, e, s.spherical]
    }
}

impl Tracker for RmsDrift<'_> {
    fn columns(&self) -> Vec<Column> {
        let mut c = self.inner.columns();
        use drift_columns as D;
        c.extend([D::H, D::U, D::K, D::ENERGY, D::SHARPNESS]);
        c
    }

    fn observe(&mut self, obj: &Counted, s: &StepView) -> Vec<f64> {
        let mut row = self.inner.observe(obj, s);
        if s.logged {
            row.extend(self.row(obj, s.w, s.eval.eff_lr));
        }
        row
    }

    fn summary(&mut self, obj: &Counted, w_final: &[f64]) -> serde_json::Map<String, serde_json::Value> {
        let mut m = self.inner.summary(obj, w_final);
        m.insert(
            "rms_drift".into(),
            serde_json::json!({ "eta": self.params.eta, "c_b": self.params.c_b, "k_every": self.params.k_every }),
        );
        m
    }

    fn save(&self) -> serde_json::Value {
        let mut st = self.st.clone();
        st.inner = self.inner.save();
        serde_json::to_value(&st).expect("drift state serialises")
    }

    fn load(&mut self, state: &serde_json::Value) -> Result<(), TrackerStateError> {
        let st: DriftState = TrackerStateError::read("rms_drift", state)?;
        self.inner.load(&st.inner)?;
        self.st = st;
        Ok(())
    }
}

/// One period of the measured (h, u) oscillation: from one upward zero
/// crossing of u (x = log|h| at its largest) to the next.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Cycle {
    /// The crossings, in τ' = t·η (linearly interpolated between steps).
    pub start: f64,
    pub end: f64,
    /// end − start.
    pub measured_period: f64,
    /// T(E) of (17) at the cycle's mean energy and K.
    pub predicted_period: Option<f64>,
    /// Mean of E and K over the cycle's steps.
    pub energy: f64,
    pub k: f64,
    /// Smallest and largest |h| in the cycle.
    pub h_min: f64,
    pub h_max: f64,
    /// Mean h² over the cycle: (17) averages u' to 0, so 2K²⟨h²⟩ = C_b
    /// whatever the energy (Lemma N.2).
    pub mean_h2: f64,
}

/// Cuts a measured path (τ'_t, h_t, u_t, K_t, E_t) into [`Cycle`]s; steps
/// with a non-finite value end the current cycle without one.
pub fn cycles(tau: &[f64], h: &[f64], u: &[f64], k: &[f64], energy: &[f64], c_b: f64) -> Vec<Cycle> {
    let n = tau.len().min(h.len()).min(u.len()).min(k.len()).min(energy.len());
    let ok = |i: usize| h[i].is_finite() && u[i].is_finite() && k[i].is_finite() && energy[i].is_finite();
    let mut out = Vec::new();
    let mut start: Option<(f64, usize)> = None;
    for i in 1..n {
        if !ok(i) || !ok(i - 1) {
            start = None;
            continue;
        }
        if u[i - 1] < 0.0 && u[i] >= 0.0 {
            let s = u[i - 1] / (u[i - 1] - u[i]);
            let t = tau[i - 1] + s * (tau[i] - tau[i - 1]);
            if let Some((t0, i0)) = start {
                let idx = i0..i;
                let m = idx.len() as f64;
                let e = idx.clone().map(|j| energy[j]).sum::<f64>() / m;
                let kk = idx.clone().map(|j| k[j]).sum::<f64>() / m;
                let hs = idx.clone().map(|j| h[j].abs());
                let ham = Hamiltonian { k: kk, c_b };
                out.push(Cycle {
                    start: t0,
                    end: t,
                    measured_period: t - t0,
                    predicted_period: ham.period(e),
                    energy: e,
                    k: kk,
                    h_min: hs.clone().fold(f64::INFINITY, f64::min),
                    h_max: hs.fold(0.0, f64::max),
                    mean_h2: idx.map(|j| h[j] * h[j]).sum::<f64>() / m,
                });
            }
            start = Some((t, i));
        }
    }
    out
}
