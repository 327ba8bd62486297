//! Scale-invariant neural networks on candle (f64, CPU) with exact gradients
//! and exact Hessian-vector products, for eosflow's optimizers, Lanczos and
//! runner.
//!
//! - [`net`]: architectures as module trees with a flat parameter layout —
//!   scale-invariant MLP, scale-invariant VGG (App. Q.1, Fig. 16), the
//!   scale-invariant and the standard pre-activation ResNet-20 (Fig. 17).
//! - [`problem::NetProblem`]: full-batch loss with ghost BN (App. Q.1),
//!   H·v by reverse-over-forward (a forward pass carrying a tangent, then one
//!   backward pass of the directional derivative), accuracies, L_min (eq. 53).
//! - [`data`]: in-memory datasets; the 8×8 digits ship with the crate.

pub mod conv;
pub mod data;
mod forward;
pub mod net;
pub mod problem;

pub use data::{Dataset, Split};
pub use forward::{ConvImpl, LossKind};
pub use net::{Activation, Affine, Module, Net};
pub use problem::{NetEval, NetParams, NetProblem, TestBn};

/// Errors of the network crate; messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// The architecture does not compose (shapes, channels).
    #[error("network architecture: {0}")]
    Arch(String),
    /// The data do not fit the network or are malformed.
    #[error("data: {0}")]
    Data(String),
    /// An error inside candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}
