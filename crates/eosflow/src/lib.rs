//! # eosflow — gradient descent with weight decay on scale-invariant losses
//!
//! The mathematics of Lyu, Li & Arora, "Understanding the Generalization
//! Benefit of Normalization Layers: Sharpness Reduction" (NeurIPS 2022):
//! GD+WD (eq. 1) and its spherical view (Lemma 3.1, Thm B.7), effective and
//! intrinsic learning rates, spherical sharpness (Def. 1.1) by Lanczos on
//! exact Hessian-vector products, and the Edge-of-Stability regime.
//!
//! Everything works on one vector type, `&[f64]`. The library never prints
//! or touches files: the [`run::Runner`] reports to [`run::Observer`]s, and
//! the `eosflow` binary owns the files.
//!
//! ```
//! use eosflow::{optim::GdWd, problems::{Problem, Toy3d}, run::{RunParams, Runner}};
//! let p = Toy3d::new(0);
//! let mut opt = GdWd::new(0.5, 0.08, p.initial_point());
//! let params = RunParams { steps: 200, sharpness_every: 50, ..Default::default() };
//! let s = Runner::for_problem(&p, &mut opt).params(params).run().unwrap();
//! assert_eq!(s.last_step, 200);
//! assert_eq!(s.counts.gradients, 201);
//! ```

pub mod drift;
pub mod eos;
pub mod flow;
pub mod identities;
pub mod linalg;
pub mod manifold;
pub mod monitor;
pub mod objective;
pub mod optim;
pub mod pac_bayes;
pub mod problems;
pub mod run;
pub mod sharpness;
pub mod spectrum;
pub mod tracking;

pub use objective::{
    Counted, Counts, EvalFailure, FiniteDifferenceHvp, Hessian, HvpAt, Objective, ResidualGeometry, ScaleInvariance,
};
