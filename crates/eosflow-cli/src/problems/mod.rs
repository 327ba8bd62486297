//! One module per problem kind: its `[problem]` section (keys and
//! defaults), its checks, how it is built, its seeds, its figure and its
//! lines in sweep tables. Adding a problem is its library file, a module
//! here and one line in [`ProblemConfig`]; the compiler points at every
//! `match` that needs the new arm.

mod external;
mod factorization;
mod linreg_bn;
mod matcomp_bn;
mod nn;
mod toy3d;

pub use external::{ExternalConfig, ExternalInvariance};
pub use nn::{NnConfig, build_net_problem, migrate_format_1};

use crate::config::Config;
use crate::plot::{FlowFigure, ProblemFigure};
use anyhow::Result;
use eosflow::problems::Problem;
use eosflow::run::RunSummary;
use serde::{Deserialize, Serialize};

/// A file of the run directory's `data/` folder: (name, .npy bytes).
pub type DataFile = (String, Vec<u8>);

/// The CLI side of one problem kind.
pub trait ProblemKind {
    /// The name in `[problem] kind`.
    fn kind(&self) -> &'static str;
    /// The seed summary.json reports for the problem.
    fn seed(&self) -> u64;
    /// Sets every seed of the problem (data and init) to `s`, for sweeps.
    fn set_seeds(&mut self, s: u64);
    /// At parse time: refuses keys that do not apply given other keys of
    /// the section (a network architecture's keys) and fills in the
    /// defaults that depend on them, so the resolved config writes every
    /// default out.
    fn resolve(&mut self) -> Result<()> {
        Ok(())
    }
    /// Checks the section and the `[data]` keys it reads, given the whole
    /// config (some checks depend on `[sharpness]`).
    fn validate(&self, cfg: &Config) -> Result<()>;
    /// The problem and the `.npy` files of its data.
    fn build(&self, cfg: &Config) -> Result<(Box<dyn Problem>, Vec<DataFile>)>;
    /// The problem's own figure.
    fn figure(&self) -> ProblemFigure;
    /// What the flow's figure compares with GD+WD. The default: the
    /// runner's sharpness at θ_t and no problem panels.
    fn flow_figure(&self) -> FlowFigure {
        FlowFigure { sharpness: (eosflow::run::columns::SHARPNESS, "λ1 at θ_t"), panels: Vec::new() }
    }
    /// One line about a finished run of a multi-run preset.
    fn variant_line(&self, label: &str, s: &RunSummary) -> String {
        format!(
            "{label}: final loss {:.6e}; sharpness max {} -> final {}",
            s.final_loss,
            s.max_sharpness.map_or("-".into(), |v| format!("{v:.3}")),
            s.final_sharpness.map_or("-".into(), |v| format!("{v:.3}")),
        )
    }
    /// The table printed after a seed sweep; the default lists each seed's
    /// last step and final loss.
    fn print_seed_table(&self, results: &[(u64, Result<RunSummary, String>)]) {
        for (s, r) in results {
            match r {
                Ok(sum) => println!("seed {s}: last step {}, final loss {:.6e}", sum.last_step, sum.final_loss),
                Err(e) => println!("seed {s}: error: {e}"),
            }
        }
    }
}

/// Which problem to train on (`kind` selects it; each section's keys live
/// in its module).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemConfig {
    /// App. F: L(w) = F(U·w), F(x,y,z) = 2 − (x+y)/√(x² − xy + y²).
    Toy3d(toy3d::Toy3dConfig),
    /// App. P.1: matrix completion with BN.
    MatcompBn(matcomp_bn::MatcompConfig),
    /// Section 5 / App. Q.2: linear regression with BN.
    LinregBn(linreg_bn::LinregConfig),
    /// A network (eosflow-nn) trained full-batch with ghost BN (App. P.2, Q.1).
    Nn(nn::NnConfig),
    /// App. B.3.2 / Cor. B.14: the depth-2 factorisation ½(uᵀv − 1)², not
    /// scale-invariant.
    Factorization(factorization::FactorizationConfig),
    /// A user's own training loop with `eosflow.EoSMonitor` attached: read
    /// and plotted, never run.
    External(external::ExternalConfig),
}

impl ProblemConfig {
    /// The section's problem kind.
    pub fn get(&self) -> &dyn ProblemKind {
        match self {
            ProblemConfig::Toy3d(c) => c,
            ProblemConfig::MatcompBn(c) => c,
            ProblemConfig::LinregBn(c) => c,
            ProblemConfig::Nn(c) => c,
            ProblemConfig::Factorization(c) => c,
            ProblemConfig::External(c) => c,
        }
    }

    /// The section's problem kind, mutable.
    pub fn get_mut(&mut self) -> &mut dyn ProblemKind {
        match self {
            ProblemConfig::Toy3d(c) => c,
            ProblemConfig::MatcompBn(c) => c,
            ProblemConfig::LinregBn(c) => c,
            ProblemConfig::Nn(c) => c,
            ProblemConfig::Factorization(c) => c,
            ProblemConfig::External(c) => c,
        }
    }

    /// The problem's name as in `[problem] kind`.
    pub fn kind(&self) -> &'static str {
        self.get().kind()
    }

    /// The data seed.
    pub fn seed(&self) -> u64 {
        self.get().seed()
    }

    /// Sets every seed of the problem (data and init) to `s`, for sweeps.
    pub fn set_seeds(&mut self, s: u64) {
        self.get_mut().set_seeds(s)
    }
}
