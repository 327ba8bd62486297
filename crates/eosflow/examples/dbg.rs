use eosflow::{optim::GdWd, problems::*, run};
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    let steps: u64 = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(100000);
    let p = LinregBn::new(
        LinregData::generate(40, 20, 1000, seed),
        LinregInit::Uniform,
        seed,
    )
    .unwrap();
    let mut opt = GdWd::new(0.5, 2e-4, p.initial_point());
    let params = run::RunParams {
        steps,
        sharpness_every: 0,
        log_every: 1000,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let s = run::run(&p, &mut opt, &params, &mut [], &run::CancelToken::new()).unwrap();
    println!("{:?}", t.elapsed());
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
}
