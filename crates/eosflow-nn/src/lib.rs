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
//! - [`data`]: in-memory datasets; the 8×8 digits ship with the crate,
//!   CIFAR-10 is read from the user's binary files.
//!
//! ```
//! use eosflow::{Objective, optim::{GdWd, Optimizer}, problems::Problem, sharpness::spherical_sharpness};
//! use eosflow_nn::{data, net, NetParams, NetProblem};
//! let split = data::digits(20).unwrap();
//! let net = net::si_vgg(&[net::VggItem::Conv(4), net::VggItem::Pool], 1.0, [1, 8, 8], 10,
//!                       net::default_final_gamma()).unwrap();
//! let p = NetProblem::new(net, &split.train, &split.test,
//!                         NetParams { ghost_batch: 200, ..Default::default() }).unwrap();
//! let w = p.initial_point();
//! // ‖w‖²·λ1(∇²L(w)) from exact Hessian-vector products.
//! let s = spherical_sharpness(&p, &w, &Default::default(), None).unwrap();
//! assert!(s.converged && s.spherical > 0.0);
//! let mut opt = GdWd::new(0.01, 0.05, w);
//! let e = opt.evaluate(&p);
//! opt.update();
//! assert!(p.loss(opt.params()) < e.loss);
//! ```

pub mod conv;
pub mod data;
mod forward;
mod fused;
mod kernels;
pub mod net;
pub mod problem;

pub use data::{Dataset, Split};
pub use forward::{ConvImpl, LossKind};
pub use net::{Activation, Affine, Module, Net};
pub use problem::{Compute, NetEval, NetParams, NetProblem, Precision, TestBn};

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
