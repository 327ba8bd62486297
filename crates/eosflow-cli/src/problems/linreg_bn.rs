//! linreg_bn (Section 5, App. Q.2): its section, checks, construction and
//! seed table.

use super::{DataFile, ProblemKind};
use crate::config::{Config, check, positive};
use crate::plot::{FlowFigure, ProblemFigure};
use anyhow::{Context, Result, bail};
use eosflow::problems::{LinregBn, LinregData, LinregInit, Problem};
use eosflow::run::RunSummary;
use serde::{Deserialize, Serialize};

/// `[problem] kind = "linreg_bn"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinregConfig {
    /// Input dimension (generated data).
    #[serde(default = "d40")]
    pub d: usize,
    /// Training points (generated data).
    #[serde(default = "n20")]
    pub n: usize,
    /// Held-out points (generated data).
    #[serde(default = "n1000")]
    pub n_test: usize,
    /// Seed of the data.
    #[serde(default)]
    pub seed: u64,
    /// Initial weights: uniform (U(−1/√d, 1/√d)) or gaussian.
    #[serde(default)]
    pub init: InitKind,
    /// Standard deviation for init = "gaussian".
    #[serde(default = "one")]
    pub init_std: f64,
    /// Seed of the initial weights.
    #[serde(default)]
    pub init_seed: u64,
}

/// Initial-weight distribution of linreg_bn.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitKind {
    /// U(−1/√d, 1/√d), PyTorch nn.Linear's default.
    #[default]
    Uniform,
    /// N(0, init_std²).
    Gaussian,
}

fn d40() -> usize {
    40
}
fn n20() -> usize {
    20
}
fn n1000() -> usize {
    1000
}
fn one() -> f64 {
    1.0
}

impl ProblemKind for LinregConfig {
    fn kind(&self) -> &'static str {
        "linreg_bn"
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn set_seeds(&mut self, s: u64) {
        self.seed = s;
        self.init_seed = s;
    }
    fn validate(&self, cfg: &Config) -> Result<()> {
        let dc = &cfg.data;
        check(dc.m_npy.is_none() && dc.omega_npy.is_none(), || {
            "[data]: linreg_bn reads x_npy/y_npy, not m_npy/omega_npy".into()
        })?;
        check(self.d >= 1, || "problem.d must be at least 1".into())?;
        check(self.n >= 2, || format!("problem.n = {}: need at least 2 training points", self.n))?;
        positive("problem.init_std", self.init_std)?;
        check(dc.x_npy.is_some() == dc.y_npy.is_some(), || {
            "[data]: give both x_npy and y_npy (or neither, to generate the data)".into()
        })?;
        check(dc.x_test_npy.is_some() == dc.y_test_npy.is_some(), || {
            "[data]: give both x_test_npy and y_test_npy (or neither)".into()
        })?;
        check(dc.x_npy.is_some() || dc.x_test_npy.is_none(), || {
            "[data]: a test set needs the training set (x_npy, y_npy) too".into()
        })
    }
    fn build(&self, cfg: &Config) -> Result<(Box<dyn Problem>, Vec<DataFile>)> {
        let data = match (&cfg.data.x_npy, &cfg.data.y_npy) {
            (Some(xp), Some(yp)) => {
                let (rows, cols, x) = crate::npy::read_matrix(xp)?;
                let targets =
                    |n: usize, x: &std::path::Path| (n, format!("{} has {n} rows, one target each", x.display()));
                let y = crate::npy::read_vector_of(yp, Some(targets(rows, xp)))
                    .context("[data] y_npy must hold one target per row of x_npy")?;
                let (x_test, y_test) = match (&cfg.data.x_test_npy, &cfg.data.y_test_npy) {
                    (Some(xt), Some(yt)) => {
                        let (rt, ct, x_test) = crate::npy::read_matrix(xt)?;
                        if ct != cols {
                            bail!("{} has {ct} columns but {} has {cols}", xt.display(), xp.display());
                        }
                        let y_test = crate::npy::read_vector_of(yt, Some(targets(rt, xt)))
                            .context("[data] y_test_npy must hold one target per row of x_test_npy")?;
                        (x_test, y_test)
                    }
                    _ => (Vec::new(), Vec::new()),
                };
                LinregData { d: cols, x, y, x_test, y_test, truth: None }
            }
            _ => LinregData::generate(self.d, self.n, self.n_test, self.seed),
        };
        let init = match self.init {
            InitKind::Uniform => LinregInit::Uniform,
            InitKind::Gaussian => LinregInit::Gaussian { std: self.init_std },
        };
        let mut files = vec![
            ("x.npy".to_string(), crate::npy::encode_matrix(data.n(), data.d, &data.x)?),
            ("y.npy".to_string(), crate::npy::encode_vector(&data.y)?),
        ];
        if !data.y_test.is_empty() {
            files.push(("x_test.npy".into(), crate::npy::encode_matrix(data.y_test.len(), data.d, &data.x_test)?));
            files.push(("y_test.npy".into(), crate::npy::encode_vector(&data.y_test)?));
        }
        if let Some(t) = &data.truth {
            files.push(("w_gt.npy".into(), crate::npy::encode_vector(&t.w)?));
            files.push(("b_gt.npy".into(), crate::npy::encode_vector(&[t.b])?));
        }
        let p = LinregBn::new(data, init, self.init_seed)?;
        Ok((Box::new(p), files))
    }
    fn figure(&self) -> ProblemFigure {
        ProblemFigure::Fig4
    }
    fn flow_figure(&self) -> FlowFigure {
        FlowFigure {
            sharpness: (LinregBn::PHI_SHARPNESS, "λ1(φ_t)"),
            // GD+WD's projection φ_t: θ_t's own distance floors at the
            // oscillation |h_t|.
            panels: vec![
                (LinregBn::DIST_THETA_M, LinregBn::PHI_DIST_M, "‖ζ − θ_M‖ (GD+WD: ‖φ_t − θ_M‖)", true),
                (LinregBn::TEST_LOSS, LinregBn::TEST_LOSS, "test loss", false),
            ],
        }
    }
    fn print_seed_table(&self, results: &[(u64, Result<RunSummary, String>)]) {
        let num = |s: &RunSummary, k: &str| s.problem.get(k).and_then(|v| v.as_f64());
        println!(
            "{:>5} {:>10} {:>14} {:>14} {:>6} {:>14} {:>14}",
            "seed", "entry(phi)", "test@entry", "test@end", "fell", "|phi-theta_M|", "lam1/lam_min-1"
        );
        let (mut fell, mut counted) = (0, 0);
        for (s, r) in results {
            let Ok(sum) = r else { continue };
            let (a, b) = (num(sum, "test_loss_at_eos_entry"), num(sum, "test_loss_final"));
            let f = match (a, b) {
                (Some(a), Some(b)) => {
                    counted += 1;
                    if b < a {
                        fell += 1;
                    }
                    if b < a { "yes" } else { "no" }
                }
                _ => "-",
            };
            let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4e}"));
            println!(
                "{:>5} {:>10} {:>14} {:>14} {:>6} {:>14} {:>14}",
                s,
                sum.problem.get("eos_entry_step_on_phi").map_or("-".into(), crate::multirun::cell),
                fmt(a),
                fmt(b),
                f,
                fmt(num(sum, "phi_dist_m_final")),
                fmt(num(sum, "phi_sharpness_final_rel_excess")),
            );
        }
        println!("test loss fell from EoS entry to the end in {fell} of {counted} seeds");
    }
}
