//! toy3d (App. F): its section, checks and construction.

use super::{DataFile, ProblemKind};
use crate::config::{Config, check, check_w0};
use crate::plot::{FlowFigure, ProblemFigure};
use anyhow::Result;
use eosflow::problems::{Problem, Toy3d};
use serde::{Deserialize, Serialize};

/// `[problem] kind = "toy3d"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Toy3dConfig {
    /// Seed of the random orthogonal U.
    #[serde(default)]
    pub seed: u64,
    /// Initial point in F's coordinates (w0 = Uᵀ·w0_domain).
    #[serde(default = "paper_w0")]
    pub w0_domain: [f64; 3],
}

fn paper_w0() -> [f64; 3] {
    Toy3d::PAPER_W0
}

impl ProblemKind for Toy3dConfig {
    fn kind(&self) -> &'static str {
        "toy3d"
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn set_seeds(&mut self, s: u64) {
        self.seed = s;
    }
    fn validate(&self, cfg: &Config) -> Result<()> {
        check_w0("problem.w0_domain", &self.w0_domain)?;
        check(cfg.data.is_empty(), || "[data] is not used by problem.kind = \"toy3d\"; remove it".into())
    }
    fn build(&self, _cfg: &Config) -> Result<(Box<dyn Problem>, Vec<DataFile>)> {
        let mut p = Toy3d::new(self.seed);
        p.w0_domain = self.w0_domain;
        Ok((Box::new(p), Vec::new()))
    }
    fn figure(&self) -> ProblemFigure {
        ProblemFigure::Toy3d
    }
    fn flow_figure(&self) -> FlowFigure {
        // λ1 of Γ at θ_t's height, 6/(1 − θ_z²): the oscillation across Γ
        // leaves it smooth.
        FlowFigure {
            sharpness: (Toy3d::SHARPNESS_ON_GAMMA, "6/(1 − θ_z²)"),
            panels: vec![(Toy3d::THETA_Z, Toy3d::THETA_Z, "θ_z", false)],
        }
    }
}
