//! factorization (the depth-2 factorisation ½(uᵀv − 1)², not
//! scale-invariant): its section, checks and construction.

use super::{DataFile, ProblemKind};
use crate::config::{Config, check, positive};
use crate::plot::ProblemFigure;
use anyhow::Result;
use eosflow::problems::{Factorization, Problem};
use serde::{Deserialize, Serialize};

/// `[problem] kind = "factorization"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FactorizationConfig {
    /// u, v ∈ R^k (D = 2k).
    #[serde(default = "five")]
    pub k: usize,
    /// Seed of w0.
    #[serde(default)]
    pub seed: u64,
    /// w0 ~ N(0, init_scale²/k) per entry.
    #[serde(default = "one")]
    pub init_scale: f64,
}

fn five() -> usize {
    5
}
fn one() -> f64 {
    1.0
}

impl ProblemKind for FactorizationConfig {
    fn kind(&self) -> &'static str {
        "factorization"
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn set_seeds(&mut self, s: u64) {
        self.seed = s;
    }
    fn validate(&self, cfg: &Config) -> Result<()> {
        check(self.k >= 1, || "problem.k must be at least 1 (u, v ∈ R^k)".into())?;
        positive("problem.init_scale", self.init_scale)?;
        check(cfg.data.is_empty(), || "[data] is not used by problem.kind = \"factorization\"; remove it".into())
    }
    fn build(&self, _cfg: &Config) -> Result<(Box<dyn Problem>, Vec<DataFile>)> {
        Ok((Box::new(Factorization::new(self.k, self.seed, self.init_scale)), Vec::new()))
    }
    fn figure(&self) -> ProblemFigure {
        ProblemFigure::OverviewOnly
    }
}
