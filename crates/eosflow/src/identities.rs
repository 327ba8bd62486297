//! The identities every objective must satisfy, measured: gradient and HVP
//! against central differences, HVP symmetry, the identities of a
//! scale-invariant loss on its declared block, Lanczos against a dense
//! eigendecomposition, and the exponential-LR identity of GD+WD.
//!
//! The functions return the measured errors (relative, dimensionless); the
//! tests decide the tolerances. One suite for every problem and network
//! (and for a user's own objective: run [`check`] on it before a long run).
//!
//! ```
//! use eosflow::identities::{check, IdentityParams};
//! use eosflow::problems::Toy3d;
//! let p = Toy3d::new(0);
//! let r = check(&p, &[0.3, -1.2, 0.8], &IdentityParams::default());
//! assert!(r.gradient_vs_fd.unwrap() < 1e-7);
//! assert!(r.grad_dot_block.unwrap() < 1e-14);
//! assert!(r.lanczos_vs_dense.unwrap() < 1e-12);
//! assert!(r.failures(&Default::default()).is_empty());
//! ```

use crate::linalg::{axpy, dot, norm, symmetric_eigen};
use crate::objective::{Hessian, ScaleInvariance, central_difference_step, finite_difference_partial};
use crate::sharpness::spherical_sharpness;
use crate::spectrum::{LanczosParams, Restricted, to_dense};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// What [`check`] measures.
#[derive(Clone, Debug)]
pub struct IdentityParams {
    /// Compare the gradient, the HVP and the third contraction with central
    /// differences (and measure the third contraction's identities). Off for
    /// ReLU networks: a difference step can cross a kink, and the result is
    /// then meaningless (compare with a double-backward oracle instead).
    pub finite_differences: bool,
    /// Coordinates of the gradient compared with differences (all when D is
    /// at most this; else this many, seeded).
    pub fd_coordinates: usize,
    /// Build the dense Hessian (D HVPs) and compare Lanczos with its
    /// eigendecomposition when D ≤ this.
    pub dense_max: usize,
    /// The factors c of the rescaling identities (block scaled by c); the
    /// report gives the worst over them.
    pub scales: Vec<f64>,
    /// Seed of the random directions u, v.
    pub seed: u64,
}

impl Default for IdentityParams {
    fn default() -> Self {
        Self {
            finite_differences: true,
            fd_coordinates: 64,
            dense_max: 400,
            scales: vec![1e-3, 0.3, 7.0, 1e4],
            seed: 0,
        }
    }
}

/// Measured errors, each relative to the natural scale named in its doc
/// (so rounding alone gives O(ε·size)); `None` where not measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdentityReport {
    /// max_i |∂_i L − (L(w + h e_i) − L(w − h e_i))/2h| / ‖∇L‖∞ over the
    /// compared coordinates, h = ε^{1/3}·max(1, |w_i|): truncation O(h²),
    /// rounding O(ε·|L|/h).
    pub gradient_vs_fd: Option<f64>,
    /// ‖Hv − (∇L(w + h v) − ∇L(w − h v))/2h‖ / ‖Hv‖ for a unit random v,
    /// h = ε^{1/3}·max(1, ‖w‖).
    pub hvp_vs_fd: Option<f64>,
    /// |⟨u, Hv⟩ − ⟨v, Hu⟩| / (‖Hv‖ + ‖Hu‖) for unit random u, v.
    pub hvp_symmetry: f64,
    /// |⟨∇L, ŵ⟩| / (‖∇L‖·‖ŵ‖), ŵ = w on the declared block, 0 elsewhere:
    /// 0 for a loss invariant to scaling that block.
    pub grad_dot_block: Option<f64>,
    /// ‖H ŵ + P∇L‖ / (‖H‖·‖ŵ‖ + ‖∇L‖), P keeping the block's coordinates:
    /// the derivative in w of ⟨∇L, ŵ⟩ = 0. ‖H‖ is estimated by ‖Hv‖.
    pub hessian_times_block: Option<f64>,
    /// |L(w with the block scaled by c) − L(w)| / |L(w)|.
    pub loss_rescaled: Option<f64>,
    /// ‖c·∇L(w_c) − ∇L(w)‖ / ‖∇L(w)‖ on the block, w_c = w with the block
    /// scaled by c (∇ is (−1)-homogeneous in the block).
    pub gradient_rescaled: Option<f64>,
    /// ‖c²·H(w_c)v̂ − H(w)v̂‖ / ‖H(w)v̂‖ on the block, v̂ = v on the block and
    /// 0 elsewhere (the Hessian block is (−2)-homogeneous).
    pub hessian_rescaled: Option<f64>,
    /// |s(cw) − s(w)| / |s(w)| for the spherical sharpness s = ‖w_S‖²λ1
    /// (Lanczos at tol 1e-13).
    pub sharpness_rescaled: Option<f64>,
    /// |λ1(Lanczos) − λ1(dense)| / max|λ(dense)| on the block's Hessian,
    /// where D ≤ `dense_max`.
    pub lanczos_vs_dense: Option<f64>,
    /// max_i |T_i − (g(w + h e_i) − g(w − h e_i))/2h| / ‖T‖∞ over the
    /// compared coordinates, for T = [`Hessian::third_contraction`] at
    /// (w, v) (exact or by HVP differences, whichever the objective has) and
    /// g(w) = ⟨v, ∇²L(w)·v⟩, whose gradient T is.
    pub third_vs_fd: Option<f64>,
    /// |⟨T, ŵ⟩ + 2⟨v̂, Hv̂⟩| / (‖T‖·‖ŵ‖ + 2|⟨v̂, Hv̂⟩|) with T = ∇³L[v̂, v̂, ·],
    /// v̂ = v on the block: differentiating H(w)·ŵ = −P∇L(w) once more gives
    /// ∇³L[ŵ, v̂, v̂] = −2⟨v̂, Hv̂⟩ on a scale-invariant block.
    pub third_times_block: Option<f64>,
    /// ‖c³·T(c·w_S) − T(w)‖ / ‖T(w)‖ on the block (∇³L is (−3)-homogeneous
    /// in the block); the worst over `scales`.
    pub third_rescaled: Option<f64>,
}

/// Tolerances for [`IdentityReport::failures`], each for the errors of the
/// kind its doc names.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentityTolerances {
    /// The identities that hold exactly (symmetry, ⟨∇L, w_S⟩ = 0,
    /// H w_S = −P∇L, the rescalings of L, ∇L, H): rounding only, O(ε·size).
    pub exact: f64,
    /// Gradient and HVP against central differences: truncation and
    /// rounding of the difference, O(ε^{2/3}) relative to the derivatives'
    /// scale.
    pub finite_differences: f64,
    /// The spherical sharpness under rescaling and Lanczos against the
    /// dense Hessian: Lanczos's tolerance (1e-13 here) plus rounding.
    pub lanczos: f64,
    /// The exact identities of the third contraction (⟨T, w_S⟩ = −2⟨v, Hv⟩,
    /// (−3)-homogeneity); `None` means `exact`. Set it to
    /// `Some(finite_differences)` for an objective whose contraction is by
    /// HVP differences ([`IdentityTolerances::for_objective`]).
    pub third_exact_tol: Option<f64>,
}

impl Default for IdentityTolerances {
    /// 1e3·ε, 1e-6 and 1e-11: the bounds the test suite uses for problems
    /// of up to ~10⁴ parameters built from sums of at most ~10³ products.
    fn default() -> Self {
        Self { exact: 1e3 * f64::EPSILON, finite_differences: 1e-6, lanczos: 1e-11, third_exact_tol: None }
    }
}

impl IdentityTolerances {
    /// The defaults, with the third contraction's identities held to the
    /// finite-difference tolerance when `obj` has no exact kernel.
    pub fn for_objective(obj: &dyn Hessian) -> Self {
        let d = Self::default();
        let third = (!obj.third_contraction_is_exact()).then_some(d.finite_differences);
        Self { third_exact_tol: third, ..d }
    }

    /// The exact identities of the third contraction: `exact` for an exact
    /// kernel. A contraction by HVP differences carries its own O(ε^{2/3})
    /// error, so objectives without an exact kernel are held to
    /// `finite_differences` instead (see [`IdentityReport::failures`]).
    fn third_exact(&self) -> f64 {
        self.third_exact_tol.unwrap_or(self.exact)
    }
}

impl IdentityReport {
    /// Every measured error above its tolerance, as "what = measured > tolerance".
    pub fn failures(&self, tol: &IdentityTolerances) -> Vec<String> {
        let checks = [
            ("gradient vs central differences", self.gradient_vs_fd, tol.finite_differences),
            ("HVP vs central differences", self.hvp_vs_fd, tol.finite_differences),
            ("HVP symmetry", Some(self.hvp_symmetry), tol.exact),
            ("<grad L, w_S>", self.grad_dot_block, tol.exact),
            ("H w_S + P grad L", self.hessian_times_block, tol.exact),
            ("L(c w_S) - L(w)", self.loss_rescaled, tol.exact),
            ("c grad_S L(c w_S) - grad_S L(w)", self.gradient_rescaled, tol.exact),
            ("c^2 H(c w_S) v_S - H(w) v_S", self.hessian_rescaled, tol.exact),
            ("|w_S|^2 lambda1 under w_S -> c w_S", self.sharpness_rescaled, tol.lanczos),
            ("Lanczos vs dense", self.lanczos_vs_dense, tol.lanczos),
            ("third contraction vs central differences", self.third_vs_fd, tol.finite_differences),
            ("<T, w_S> + 2 <v, H v>", self.third_times_block, tol.third_exact()),
            ("c^3 T(c w_S) - T(w)", self.third_rescaled, tol.third_exact()),
        ];
        checks
            .iter()
            // NaN fails too.
            .filter_map(|&(what, x, t)| x.filter(|x| x.is_nan() || *x > t).map(|x| format!("{what} = {x:e} > {t:e}")))
            .collect()
    }
}

fn unit_random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    let nv = norm(&v);
    v.iter_mut().for_each(|x| *x /= nv);
    v
}

fn hvp(obj: &dyn Hessian, w: &[f64], v: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; w.len()];
    obj.hvp(w, v, &mut out);
    out
}

fn grad(obj: &dyn Hessian, w: &[f64]) -> (f64, Vec<f64>) {
    let mut g = vec![0.0; w.len()];
    let l = obj.loss_grad(w, &mut g);
    (l, g)
}

fn rel(a: &[f64], b: &[f64], scale: f64) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&d) / scale
}

/// The declared block's indices (all coordinates for `All`), or None.
fn block(obj: &dyn Hessian, d: usize) -> Option<Vec<usize>> {
    match obj.scale_invariance() {
        ScaleInvariance::All => Some((0..d).collect()),
        ScaleInvariance::Block(idx) => Some(idx),
        ScaleInvariance::None => None,
    }
}

/// Measures every identity at w (see [`IdentityReport`]).
pub fn check(obj: &dyn Hessian, w: &[f64], params: &IdentityParams) -> IdentityReport {
    let d = obj.dim();
    assert_eq!(w.len(), d, "identities::check: w has {} entries, the objective {d}", w.len());
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let (l, g) = grad(obj, w);
    let u = unit_random(&mut rng, d);
    let v = unit_random(&mut rng, d);
    let hv = hvp(obj, w, &v);
    let hu = hvp(obj, w, &u);
    let mut r = IdentityReport {
        hvp_symmetry: (dot(&u, &hv) - dot(&v, &hu)).abs() / (norm(&hv) + norm(&hu)).max(f64::MIN_POSITIVE),
        ..Default::default()
    };

    if params.finite_differences {
        let coords: Vec<usize> = if d <= params.fd_coordinates {
            (0..d).collect()
        } else {
            let mut c: Vec<usize> = (0..params.fd_coordinates).map(|k| k * d / params.fd_coordinates).collect();
            c.dedup();
            c
        };
        let gmax = g.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE);
        let mut x = w.to_vec();
        let worst = coords
            .iter()
            .map(|&i| (finite_difference_partial(obj, &mut x, i) - g[i]).abs() / gmax)
            .fold(0.0f64, f64::max);
        r.gradient_vs_fd = Some(worst);
        let h = f64::EPSILON.cbrt() * norm(w).max(1.0);
        let (mut wp, mut wm) = (w.to_vec(), w.to_vec());
        axpy(h, &v, &mut wp);
        axpy(-h, &v, &mut wm);
        let (_, gp) = grad(obj, &wp);
        let (_, gm) = grad(obj, &wm);
        let fd: Vec<f64> = gp.iter().zip(&gm).map(|(a, b)| (a - b) / (2.0 * h)).collect();
        r.hvp_vs_fd = Some(rel(&fd, &hv, norm(&hv).max(f64::MIN_POSITIVE)));

        let mut t = vec![0.0; d];
        obj.third_contraction(w, &v, &mut t);
        let tmax = t.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE);
        let quad = |x: &[f64]| dot(&v, &hvp(obj, x, &v));
        let worst = coords
            .iter()
            .map(|&i| {
                let xi = x[i];
                let h = central_difference_step(xi.abs());
                x[i] = xi + h;
                let gp = quad(&x);
                x[i] = xi - h;
                let gm = quad(&x);
                x[i] = xi;
                ((gp - gm) / (2.0 * h) - t[i]).abs() / tmax
            })
            .fold(0.0f64, f64::max);
        r.third_vs_fd = Some(worst);
    }

    if let Some(idx) = block(obj, d) {
        let mut wb = vec![0.0; d];
        let mut pg = vec![0.0; d];
        for &i in &idx {
            wb[i] = w[i];
            pg[i] = g[i];
        }
        let gn = norm(&g);
        r.grad_dot_block = Some(dot(&g, &wb).abs() / (gn * norm(&wb)).max(f64::MIN_POSITIVE));
        let mut hw = hvp(obj, w, &wb);
        axpy(1.0, &pg, &mut hw);
        r.hessian_times_block = Some(norm(&hw) / (norm(&hv) * norm(&wb) + gn).max(f64::MIN_POSITIVE));
        let lp = LanczosParams { tol: 1e-13, max_restarts: 500, ..Default::default() };
        let s1 = spherical_sharpness(obj, w, &lp, None).ok();
        let mut vb = vec![0.0; d];
        for &i in &idx {
            vb[i] = v[i];
        }
        let hvb = hvp(obj, w, &vb);
        let gb: Vec<f64> = idx.iter().map(|&i| g[i]).collect();
        let hb: Vec<f64> = idx.iter().map(|&i| hvb[i]).collect();
        // The third derivative exists only where the loss is smooth: a
        // contraction by HVP differences across a ReLU kink is meaningless.
        let third = params.finite_differences || obj.third_contraction_is_exact();
        let mut t = vec![0.0; d];
        let mut tb = Vec::new();
        if third {
            obj.third_contraction(w, &vb, &mut t);
            tb = idx.iter().map(|&i| t[i]).collect();
            let vhv = dot(&vb, &hvb);
            r.third_times_block = Some(
                (dot(&t, &wb) + 2.0 * vhv).abs() / (norm(&t) * norm(&wb) + 2.0 * vhv.abs()).max(f64::MIN_POSITIVE),
            );
        }
        let worst = |slot: &mut Option<f64>, x: f64| *slot = Some(slot.map_or(x, |y: f64| y.max(x)));
        for &c in &params.scales {
            let mut wc = w.to_vec();
            for &i in &idx {
                wc[i] *= c;
            }
            let (lc, gc) = grad(obj, &wc);
            worst(&mut r.loss_rescaled, (lc - l).abs() / l.abs().max(f64::MIN_POSITIVE));
            let gcb: Vec<f64> = idx.iter().map(|&i| c * gc[i]).collect();
            worst(&mut r.gradient_rescaled, rel(&gcb, &gb, norm(&gb).max(f64::MIN_POSITIVE)));
            let hc = hvp(obj, &wc, &vb);
            let hcb: Vec<f64> = idx.iter().map(|&i| c * c * hc[i]).collect();
            worst(&mut r.hessian_rescaled, rel(&hcb, &hb, norm(&hb).max(f64::MIN_POSITIVE)));
            if let (Some(s), Ok(sc)) = (&s1, spherical_sharpness(obj, &wc, &lp, None)) {
                worst(&mut r.sharpness_rescaled, (sc.spherical - s.spherical).abs() / s.spherical.abs());
            }
            if third {
                let mut tc = vec![0.0; d];
                obj.third_contraction(&wc, &vb, &mut tc);
                let tcb: Vec<f64> = idx.iter().map(|&i| c * c * c * tc[i]).collect();
                worst(&mut r.third_rescaled, rel(&tcb, &tb, norm(&tb).max(f64::MIN_POSITIVE)));
            }
        }
    }

    let rows: Vec<usize> = block(obj, d).unwrap_or_else(|| (0..d).collect());
    if rows.len() <= params.dense_max {
        let m = rows.len();
        let op = obj.hessian_at(w);
        let a = to_dense(&Restricted::new(op.as_ref(), &rows));
        let (vals, _) = symmetric_eigen(m, &a);
        let amax = vals.iter().fold(0.0f64, |x, y| x.max(y.abs())).max(f64::MIN_POSITIVE);
        let lp = LanczosParams { tol: 1e-13, max_restarts: 500, ..Default::default() };
        if let Ok(s) = spherical_sharpness(obj, w, &lp, None) {
            let scale = block(obj, d).map_or(1.0, |idx| idx.iter().map(|&i| w[i] * w[i]).sum::<f64>());
            r.lanczos_vs_dense = Some((s.spherical / scale - vals[0]).abs() / amax);
        }
    }
    r
}

/// The exact exponential-LR identity of Li & Arora (2020) for a fully
/// scale-invariant loss: GD+WD with (η̂, λ̂) from w_0,
/// w_{t+1} = (1 − η̂λ̂)·w_t − η̂∇L(w_t), is GD without WD on
/// w̃_t = w_t/(1 − η̂λ̂)^t with the learning rate η̂·(1 − η̂λ̂)^(−2t−1):
///
/// w̃_{t+1} = w̃_t − η̂(1 − η̂λ̂)^(−2t−1)·∇L(w̃_t),
///
/// because ∇L is (−1)-homogeneous. Runs both for `steps` steps and returns
/// max_t ‖w_t/(1 − η̂λ̂)^t − w̃_t‖ / ‖w̃_t‖ (rounding grows with t through
/// the dynamics' own sensitivity, so keep `steps` to the first tens).
///
/// ```
/// use eosflow::identities::exponential_lr_identity;
/// use eosflow::problems::{Problem, Toy3d};
/// let p = Toy3d::new(0);
/// assert!(exponential_lr_identity(&p, &p.initial_point(), 0.5, 0.08, 20) < 1e-12);
/// ```
pub fn exponential_lr_identity(obj: &dyn Hessian, w0: &[f64], lr: f64, wd: f64, steps: usize) -> f64 {
    let rho = 1.0 - lr * wd;
    let (mut w, mut wt) = (w0.to_vec(), w0.to_vec());
    let mut g = vec![0.0; w0.len()];
    let mut worst = 0.0f64;
    for t in 0..steps {
        obj.loss_grad(&w, &mut g);
        w.iter_mut().zip(&g).for_each(|(x, gi)| *x = rho * *x - lr * gi);
        obj.loss_grad(&wt, &mut g);
        let lr_t = lr * rho.powi(-(2 * t as i32) - 1);
        axpy(-lr_t, &g, &mut wt);
        let f = rho.powi(-(t as i32) - 1);
        let scaled: Vec<f64> = w.iter().map(|x| x * f).collect();
        worst = worst.max(rel(&scaled, &wt, norm(&wt)));
    }
    worst
}
