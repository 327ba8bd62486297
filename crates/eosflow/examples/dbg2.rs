use eosflow::{
    Objective,
    optim::{GdWd, Optimizer},
    problems::*,
};
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    let p = LinregBn::new(
        LinregData::generate(40, 20, 1000, seed),
        LinregInit::Uniform,
        seed,
    )
    .unwrap();
    let mut opt = GdWd::new(0.5, 2e-4, p.initial_point());
    for t in 0..6000 {
        let e = opt.evaluate(&p);
        let mut th = opt.params().to_vec();
        eosflow::linalg::normalize(&mut th);
        let phi = p.project_exact(&th);
        let lam = phi
            .as_ref()
            .map(|f| p.sharpness_on_gamma(f))
            .unwrap_or(f64::NAN);
        if t < 20 || t % 250 == 0 {
            println!(
                "{t} loss={:.3e} 2/eta={:.4} lam={:.4} wn={:.4}",
                e.loss,
                2.0 / e.eff_lr,
                lam,
                e.w_norm
            );
        }
        opt.update();
    }
    let _ = p.dim();
}
