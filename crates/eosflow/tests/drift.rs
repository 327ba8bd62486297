//! The RMS-drift process (App. H.2): its Hamiltonian's period against a
//! direct integration of (17), and GD+WD's measured two-step transitions on
//! linreg_bn against Def. H.2's auxiliary state.

use eosflow::Objective;
use eosflow::drift::Hamiltonian;
use eosflow::flow::{Flow, FlowParams, FlowTime};
use eosflow::linalg::{dist, dot, norm, normalize};
use eosflow::optim::{GdWd, Optimizer};
use eosflow::problems::{LinregBn, LinregData, LinregInit, Problem};
use eosflow::tracking::{fit_exponent, gd_wd_init};

#[test]
fn the_period_integral_matches_a_direct_integration_of_17() {
    // Start at the bottom of the well with p = √(2(E − E*)), integrate
    // (17) with RK4 (dt = 1e-4: error ~1e-13 per unit time) and time the
    // return to x* with p > 0 (linear interpolation between steps, error
    // O(dt²) ≈ 1e-8): against T(E) by quadrature.
    for (k, c_b) in [(2.0, 1.0), (2.1, 2.0), (0.7, 0.5)] {
        let ham = Hamiltonian { k, c_b };
        let (xs, es) = (ham.fixed_point_x(), ham.fixed_point_energy());
        for de in [1e-3, 0.3, 2.0, 8.0] {
            let e = es + de;
            let predicted = ham.period(e).unwrap();
            let dt = 1e-4;
            let (mut x, mut p, mut t) = (xs, (2.0 * de).sqrt(), 0.0);
            let measured = loop {
                let (x1, p1) = ham.integrate(x, p, dt, dt);
                t += dt;
                // Crossing x* upwards after at least one turn.
                if t > 0.5 * predicted && x < xs && x1 >= xs && p1 > 0.0 {
                    break t - dt + dt * (xs - x) / (x1 - x);
                }
                (x, p) = (x1, p1);
                assert!(t < 10.0 * predicted, "no return at E = {e}");
            };
            assert!(
                (measured / predicted - 1.0).abs() < 1e-6,
                "K = {k}, C_b = {c_b}, E − E* = {de}: integrated {measured}, quadrature {predicted}"
            );
            // Energy is conserved along the integration (RK4 drift only).
            let (xe, pe) = ham.integrate(xs, (2.0 * de).sqrt(), predicted, dt);
            assert!((0.5 * pe * pe + ham.potential(xe) - e).abs() < 1e-8 * e.abs().max(1.0));
        }
        // Small oscillations: 2π/√(2C_b).
        let p0 = ham.period(es + 1e-8).unwrap();
        assert!((p0 / ham.small_oscillation_period() - 1.0).abs() < 1e-6);
        // Larger energies swing further out and take longer.
        assert!(ham.period(es + 4.0).unwrap() > ham.period(es + 1.0).unwrap());
        assert!(ham.turning_points(es - 1e-9).is_none());
    }
}

/// One η_in: GD+WD from Thm 4.6's initialisation on linreg_bn, then the
/// largest normalised residuals of the measured transitions S_t → S_{t+2}
/// against Def. H.2 over a window in EoS: |h_{t+2} − h'|/(α²|h_t|),
/// |u_{t+2} − u'|/(α(1 + h_t²)), ‖φ_{t+2} − φ'‖/(α h_t²) (the definition's
/// bounds, divided by η^k), and whether h_t
/// alternated sign at every step of the window.
fn transition_residuals(p: &LinregBn, zeta0: &[f64], lambda0: f64, eta_in: f64) -> ([f64; 3], bool) {
    let (lr, c_b) = (0.5, 2.0);
    let eta = (2.0 * eta_in).sqrt();
    let w0 = gd_wd_init(zeta0, lambda0, lr, eta_in / lr, 0.1 * eta_in.sqrt(), 1);
    let mut opt = GdWd::new(lr, eta_in / lr, w0);
    let theta_m = p.theta_m().unwrap().to_vec();
    let v1 = p.top_eigenvector_on_gamma().to_vec();
    // The state S_t = (h, u, φ) of eq. (16) at the current iterate, with
    // ∇_Γ log λ1(φ) in closed form: on linreg_bn's Γ, λ1(φ) = λ1(θ_M)/cos²β
    // with cos β = ⟨φ, θ_M⟩ (Lemma O.1), so ∇_Γ log λ1 = 2(φ − θ_M/cos β).
    let state = |opt: &mut GdWd, v1: &[f64]| {
        let e = opt.evaluate(p);
        let mut theta = opt.params().to_vec();
        normalize(&mut theta);
        let phi = p.project_onto_gamma(&theta).unwrap();
        let h = dot(v1, &theta) / eta - dot(v1, &phi) / eta;
        let mu = 2.0 / p.sharpness_on_gamma(&phi);
        let u = (mu * mu / (e.eff_lr * e.eff_lr) - 1.0) / eta;
        let cb = dot(&phi, &theta_m);
        let g: Vec<f64> = phi.iter().zip(&theta_m).map(|(a, m)| 2.0 * (a - m / cb)).collect();
        opt.update();
        (h, u, phi, g)
    };
    // Into EoS, to the same flow time τ = t·η_in = 0.5 at every η_in: the
    // first burst of the oscillation (from σ0) has relaxed by then, and the
    // orbits' energies — which set α — are alike.
    let period = std::f64::consts::PI / eta;
    for _ in 0..(0.5 / eta_in) as usize {
        opt.evaluate(p);
        opt.update();
    }
    let window = (4.0 * period) as usize;
    let states: Vec<(f64, f64, Vec<f64>, Vec<f64>)> = (0..window).map(|_| state(&mut opt, &v1)).collect();
    let mut r = [0.0f64; 3];
    let mut alternates = true;
    for t in 0..window - 2 {
        let (h, u, phi, g) = &states[t];
        let (h2, u2, phi2, _) = &states[t + 2];
        alternates &= states[t + 1].0.signum() == -h.signum();
        let gg = dot(g, g);
        let h_aux = (1.0 - 2.0 * eta * u) * h;
        let u_aux = u + 4.0 * eta * h * h * (2.0 * c_b + gg) - 2.0 * eta * c_b;
        let phi_aux: Vec<f64> = phi.iter().zip(g).map(|(a, gi)| a - 2.0 * eta * eta * h * h * gi).collect();
        // Def. H.2's bounds, with S_t α-bounded for α = max(1, |h|, |u|).
        let alpha = 1f64.max(h.abs()).max(u.abs());
        r[0] = r[0].max((h2 - h_aux).abs() / (alpha * alpha * h.abs()));
        r[1] = r[1].max((u2 - u_aux).abs() / (alpha * (1.0 + h * h)));
        r[2] = r[2].max(dist(phi2, &phi_aux) / (alpha * h * h));
    }
    (r, alternates)
}

#[test]
fn gd_wd_transitions_follow_the_rms_drift_process_with_residuals_of_its_order() {
    let p = LinregBn::new(LinregData::generate(40, 20, 200, 0), LinregInit::Uniform, 3).unwrap();
    let mut theta = p.initial_point();
    normalize(&mut theta);
    let zeta0 = p.project_onto_gamma(&theta).unwrap();
    let lambda0 = p.sharpness_on_gamma(&zeta0);
    // The closed-form ∇_Γ log λ1 against the flow's (third-derivative
    // contraction, projection onto T_ζΓ) at ζ0.
    let flow =
        Flow::new(&p, &zeta0, FlowParams { time: FlowTime::QuasiRmsprop { c_b: 2.0 }, ..Default::default() }).unwrap();
    let tm = p.theta_m().unwrap();
    let g: Vec<f64> = zeta0.iter().zip(tm).map(|(a, m)| 2.0 * (a - m / dot(&zeta0, tm))).collect();
    assert!(
        (norm(&g) / flow.point().grad_gamma_norm - 1.0).abs() < 1e-6,
        "{} vs {}",
        norm(&g),
        flow.point().grad_gamma_norm
    );
    assert!(p.loss(&zeta0) < 1e-25);
    let etas_in = [1e-3, 2.5e-4, 6.25e-5];
    let mut res = Vec::new();
    for &eta_in in &etas_in {
        let (r, alternates) = transition_residuals(&p, &zeta0, lambda0, eta_in);
        assert!(alternates, "η_in = {eta_in}: h_t did not alternate sign at every step of the window");
        res.push(r);
    }
    let etas: Vec<f64> = etas_in.iter().map(|e| (2.0 * e).sqrt()).collect();
    // Def. H.2's error terms: O(η²) for h and u, O(η³) for φ (α = O(1)).
    for (i, (what, expect)) in [("h", 2.0), ("u", 2.0), ("φ", 3.0)].into_iter().enumerate() {
        let r: Vec<f64> = res.iter().map(|r| r[i]).collect();
        let (slope, _) = fit_exponent(&etas, &r).unwrap();
        eprintln!("{what}: residuals {r:?}, slope {slope:.3}");
        assert!(
            (slope - expect).abs() < 0.5,
            "{what}: residuals {r:?} at η = {etas:?} fall as η^{slope}, not η^{expect}"
        );
    }
}
