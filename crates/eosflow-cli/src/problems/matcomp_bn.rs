//! matcomp_bn (App. P.1): its section, checks, construction and lines.

use super::{DataFile, ProblemKind};
use crate::config::{Config, check, positive};
use crate::plot::{FlowFigure, ProblemFigure};
use anyhow::{Result, bail};
use eosflow::problems::{MatcompBn, MatcompData, Problem};
use eosflow::run::RunSummary;
use serde::{Deserialize, Serialize};

/// `[problem] kind = "matcomp_bn"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatcompConfig {
    /// Matrix size d (generated data).
    #[serde(default = "d50")]
    pub d: usize,
    /// Rank of the ground truth (generated data).
    #[serde(default = "r2")]
    pub rank: usize,
    /// Number of observed entries N (generated data).
    #[serde(default = "n800")]
    pub n_obs: usize,
    /// Seed of the data.
    #[serde(default)]
    pub seed: u64,
    /// Std of the N(0, std²) entries of U and V at init [default: 1/√d].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<f64>,
    /// Seed of the initial weights.
    #[serde(default)]
    pub init_seed: u64,
    /// Top singular values written to metrics.csv.
    #[serde(default = "five")]
    pub n_singular: usize,
}

fn d50() -> usize {
    50
}
fn r2() -> usize {
    2
}
fn n800() -> usize {
    800
}
fn five() -> usize {
    5
}

impl ProblemKind for MatcompConfig {
    fn kind(&self) -> &'static str {
        "matcomp_bn"
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn set_seeds(&mut self, s: u64) {
        self.seed = s;
        self.init_seed = s;
    }
    fn validate(&self, cfg: &Config) -> Result<()> {
        let (d, rank, n_obs) = (self.d, self.rank, self.n_obs);
        check(d >= 3, || format!("problem.d = {d}: need d ≥ 3 (σ2/σ3 is reported)"))?;
        check(rank >= 1 && rank <= d, || format!("problem.rank = {rank} must be in 1..=d"))?;
        check(n_obs >= 1 && n_obs <= d * d, || format!("problem.n_obs = {n_obs} must be in 1..=d² = {}", d * d))?;
        if let Some(s) = self.init_std {
            positive("problem.init_std", s)?;
        }
        check(self.n_singular <= 8, || "problem.n_singular must be at most 8".into())?;
        let dc = &cfg.data;
        check(dc.m_npy.is_some() == dc.omega_npy.is_some(), || {
            "[data]: give both m_npy and omega_npy (or neither, to generate the data)".into()
        })?;
        check(dc.x_npy.is_none() && dc.y_npy.is_none() && dc.x_test_npy.is_none() && dc.y_test_npy.is_none(), || {
            "[data]: matcomp_bn reads m_npy and omega_npy, not x/y files".into()
        })
    }
    fn build(&self, cfg: &Config) -> Result<(Box<dyn Problem>, Vec<DataFile>)> {
        let data = match (&cfg.data.m_npy, &cfg.data.omega_npy) {
            (Some(mp), Some(op)) => {
                let (r, c, m) = crate::npy::read_matrix(mp)?;
                if r != c {
                    bail!("{}: M is {r}×{c}, expected a square matrix", mp.display());
                }
                let omega = crate::npy::read_positions(op)?;
                MatcompData { d: r, m, omega }
            }
            _ => MatcompData::generate(self.d, self.rank, self.n_obs, self.seed),
        };
        let dd = data.d;
        let files = vec![
            ("m.npy".to_string(), crate::npy::encode_matrix(dd, dd, &data.m)?),
            ("omega.npy".to_string(), crate::npy::encode_positions(&data.omega)?),
        ];
        let std = self.init_std.unwrap_or(1.0 / (dd as f64).sqrt());
        let mut p = MatcompBn::new(data, std, self.init_seed)?;
        p.n_singular = self.n_singular;
        Ok((Box::new(p), files))
    }
    fn figure(&self) -> ProblemFigure {
        ProblemFigure::Fig1
    }
    fn flow_figure(&self) -> FlowFigure {
        FlowFigure {
            sharpness: (eosflow::run::columns::SHARPNESS, "λ1 at θ_t"),
            panels: vec![
                (MatcompBn::TEST_LOSS, MatcompBn::TEST_LOSS, "test loss", true),
                (MatcompBn::SV2_OVER_SV3, MatcompBn::SV2_OVER_SV3, "σ2/σ3", true),
            ],
        }
    }
    fn variant_line(&self, label: &str, s: &RunSummary) -> String {
        let f = |k: &str| s.problem.get(k).and_then(|v| v.as_f64()).map_or("-".into(), |v| format!("{v:.4e}"));
        format!(
            "{label}: test loss {} at fit -> {} final; sharpness max {} -> final {}; sigma2/sigma3 {} -> {}",
            f("test_loss_at_fit"),
            f("test_loss_final"),
            s.max_sharpness.map_or("-".into(), |v| format!("{v:.3}")),
            s.final_sharpness.map_or("-".into(), |v| format!("{v:.3}")),
            f("sv2_over_sv3_at_fit"),
            f("sv2_over_sv3_final"),
        )
    }
}
