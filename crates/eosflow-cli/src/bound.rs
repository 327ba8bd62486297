//! `eosflow bound TARGET`: Thm C.2's PAC-Bayes bound at a point of a run —
//! each term, the minimising σ, and whether the number means anything
//! (certified, not certified because ρ3 is only a lower estimate, or
//! vacuous) — into bound.json.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use eosflow::ScaleInvariance;
use eosflow::pac_bayes::{BoundInputs, Rho3, Rho3Params, Verdict, rho3_lower_estimate};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What to compute.
pub struct BoundArgs {
    /// Where w comes from, as for `eosflow spectrum`.
    pub at: Option<String>,
    pub delta: f64,
    /// σ; None minimises the bound over Thm C.2's range.
    pub sigma: Option<f64>,
    /// A ρ3 the user vouches for; None estimates a lower value.
    pub rho3: Option<f64>,
    /// ℓ_max; None asks the problem.
    pub l_max: Option<f64>,
    /// The ρ3 estimate's starts, power iterations and random points
    /// (searched after θ and θ0).
    pub rho3_search: Rho3Params,
    pub out: Option<PathBuf>,
}

pub fn run(cfg: &Config, run_dir: Option<&Path>, args: &BoundArgs) -> Result<PathBuf> {
    let prep = crate::setup::prepare(cfg)?;
    let problem = prep.problem;
    let dim = problem.dim();
    let w0 = prep.optimizer.params().to_vec();
    let (w, source) = crate::spectrum::point(cfg, run_dir, args.at.as_deref(), dim, w0.clone())?;
    match problem.scale_invariance() {
        ScaleInvariance::All => {}
        ScaleInvariance::Block(idx) => bail!(
            "Thm C.2 is stated for a loss that is scale-invariant in all of w (θ on S^(D−1)); the {} loss is \
             scale-invariant only in a block of {} of its {dim} parameters",
            problem.name(),
            idx.len()
        ),
        ScaleInvariance::None => {
            bail!("Thm C.2 needs a scale-invariant loss (θ on the sphere); the {} loss is not", problem.name())
        }
    }
    let Some(n) = problem.training_examples() else {
        bail!(
            "Thm C.2 bounds the generalization gap of a loss averaged over n training examples; the {} problem has \
             no training set",
            problem.name()
        );
    };
    let dir = match (&args.out, run_dir) {
        (Some(o), _) => o.clone(),
        (None, Some(d)) => d.to_path_buf(),
        (None, None) => crate::default_dir(&format!("{}-bound", cfg.name)),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = std::time::Instant::now();
    let s = eosflow::sharpness::spherical_sharpness(problem.as_ref(), &w, &cfg.sharpness.lanczos(), None)
        .context("the spherical sharpness λ1")?;
    let (l_max, l_max_note) = match args.l_max {
        Some(v) => (v, "supplied".to_string()),
        None => match problem.per_example_loss_sup() {
            Ok(v) => (v, "from the problem".to_string()),
            Err(why) => (f64::INFINITY, why),
        },
    };
    let (rho3, estimate) = match args.rho3 {
        Some(v) => (Rho3::Supplied(v), None),
        None => {
            let e = rho3_lower_estimate(problem.as_ref(), &[w.clone(), w0], &args.rho3_search);
            (Rho3::LowerEstimate(e.value), Some(e))
        }
    };
    let inputs = BoundInputs { sharpness: s.spherical, rho3, n: n as u64, dim, delta: args.delta, l_max };
    let terms = match args.sigma {
        Some(sigma) => inputs.terms(sigma)?,
        None => inputs.minimise()?,
    };
    let train_loss = problem.loss(&w);
    let verdict_line = match &terms.verdict {
        Verdict::Certified => "certified: a bound on E L(θ + ε) − L_S(θ) with probability ≥ 1 − δ".to_string(),
        Verdict::NotCertified => "NOT a certified bound: ρ3 is a lower estimate from sampling (the theorem needs \
                                  its supremum over the sphere; give --rho3 to certify)"
            .to_string(),
        Verdict::Vacuous { reason } => format!("vacuous: {reason}"),
    };
    let summary = json!({
        "theorem": "C.2",
        "point": source,
        "inputs": inputs,
        "l_max_source": l_max_note,
        "rho3_estimate": estimate,
        "terms": terms,
        "sigma_minimised": args.sigma.is_none(),
        "train_loss": train_loss,
        "verdict_line": verdict_line,
        "timing": { "total_s": started.elapsed().as_secs_f64() },
    });
    let path = dir.join("bound.json");
    crate::rundir::write_atomic(&path, (serde_json::to_string_pretty(&summary)? + "\n").as_bytes())?;
    let num = |v: f64| if v.is_finite() { format!("{v:.6e}") } else { "∞".to_string() };
    println!("{}: Thm C.2's PAC-Bayes bound at {source} (D = {dim}, n = {n}, δ = {})", cfg.name, args.delta);
    let rho3_line = match (&rho3, &estimate) {
        (_, Some(e)) => format!(
            "≥ {} (a lower estimate from {} points, {} contractions: not the supremum)",
            num(e.value),
            e.per_point.len(),
            e.contractions
        ),
        _ => format!("{} (supplied)", num(rho3.value())),
    };
    let sigma_line = format!(
        "{:.6} ({}; σ_max = {:.6})",
        terms.sigma,
        if args.sigma.is_none() { "minimising" } else { "given" },
        terms.sigma_max
    );
    for (label, value) in [
        ("λ1, the spherical sharpness", num(s.spherical)),
        ("ρ3", rho3_line),
        ("ℓ_max", format!("{} ({l_max_note})", num(l_max))),
        ("σ", sigma_line),
        ("σ²λ1/2", num(terms.sharpness_term)),
        ("16σ³ρ3(1 + (ln n/D)^1.5)/3", num(terms.third_order_term)),
        ("ℓ_max·√((D/σ² + 2 ln(n/δ))/(n − 1))", num(terms.complexity_term)),
        ("total", num(terms.total)),
        ("training loss L_S(θ)", num(train_loss)),
    ] {
        println!("  {label:<38} {value}");
    }
    println!("  {verdict_line}");
    println!("  bound.json: {}", path.display());
    Ok(path)
}
