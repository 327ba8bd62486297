//! `kind = "external"`: the run directory of a training loop outside
//! eosflow — a user's own PyTorch/JAX GD+WD with `eosflow.EoSMonitor`
//! attached (crate `eosflow-py`). Its config.toml records the loop's
//! settings so that `eosflow plot` and `eosflow.load_run` read it as any
//! run; eosflow cannot rerun it, since the model lives in the user's code.

use super::{DataFile, ProblemKind};
use crate::config::{Config, check};
use crate::plot::ProblemFigure;
use anyhow::{Result, bail};
use eosflow::problems::Problem;
use serde::{Deserialize, Serialize};

/// Which parameters the external loss is scale-invariant in.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExternalInvariance {
    /// All of w (the sharpness is spherical, Def. 1.1).
    All,
    /// A declared block of `block_size` coordinates (App. P.2's partial sharpness).
    Block,
    /// None: the ordinary λ1(∇²L(w)) and the plain LR.
    None,
}

/// `[problem] kind = "external"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// D, the number of parameters of the user's model.
    pub dim: usize,
    /// Which parameters the loss is scale-invariant in.
    pub scale_invariance: ExternalInvariance,
    /// The size of the scale-invariant block (`scale_invariance = "block"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// Where the loop ran, free text ("jax", "torch", "numpy", …).
    #[serde(default)]
    pub source: String,
}

impl ProblemKind for ExternalConfig {
    fn kind(&self) -> &'static str {
        "external"
    }
    fn seed(&self) -> u64 {
        0
    }
    fn set_seeds(&mut self, _s: u64) {}
    fn validate(&self, _cfg: &Config) -> Result<()> {
        check(self.dim > 0, || "problem.dim = 0: an external run's model has at least one parameter".into())?;
        match (self.scale_invariance, self.block_size) {
            (ExternalInvariance::Block, Some(n)) if n == 0 || n > self.dim => {
                bail!("problem.block_size = {n} must be in 1..={} (problem.dim)", self.dim)
            }
            (ExternalInvariance::Block, None) => {
                bail!("problem.scale_invariance = \"block\" needs problem.block_size")
            }
            (ExternalInvariance::All | ExternalInvariance::None, Some(_)) => {
                bail!("problem.block_size applies only to scale_invariance = \"block\"; remove it")
            }
            _ => Ok(()),
        }
    }
    fn build(&self, _cfg: &Config) -> Result<(Box<dyn Problem>, Vec<DataFile>)> {
        bail!(
            "this is an external run (problem.kind = \"external\"): it was written by eosflow.EoSMonitor from a \
             training loop outside eosflow{}, so eosflow can plot it (`eosflow plot`) and load it \
             (`eosflow.load_run`) but cannot run or resume it; rerun your own loop with the monitor attached",
            if self.source.is_empty() { String::new() } else { format!(" ({})", self.source) }
        )
    }
    fn figure(&self) -> ProblemFigure {
        ProblemFigure::OverviewOnly
    }
}
