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

/// Errors of the network crate: each variant names the layer, shape, set,
/// file or setting at fault, and its message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A layer's input shape does not fit the layer.
    #[error("network architecture: layer {layer} ({module}): input shape {got:?}, expected {expected}")]
    LayerInput { layer: String, module: String, got: Vec<usize>, expected: ExpectedInput },
    /// A convolution kernel larger than its padded input.
    #[error("network architecture: layer {layer} ({module}): kernel {k} larger than the padded input {input:?}")]
    KernelTooLarge { layer: String, module: String, k: usize, input: Vec<usize> },
    /// A residual block whose body and shortcut disagree.
    #[error("network architecture: layer {layer} ({module}): body outputs {body:?} but shortcut outputs {shortcut:?}")]
    ResidualShapes { layer: String, module: String, body: Vec<usize>, shortcut: Vec<usize> },
    /// The network does not end in one output per class.
    #[error("network architecture: {network}: the last layer outputs shape {got:?}, expected [{classes}]")]
    OutputShape { network: String, got: Vec<usize>, classes: usize },
    /// A data set's examples do not have the network's input shape.
    #[error("data: {set} examples have shape {got:?}, but the network {network} takes {expected:?}")]
    InputShape { set: &'static str, got: Vec<usize>, network: String, expected: Vec<usize> },
    /// A data set's class count differs from the network's outputs.
    #[error("data: {set} set has {got} classes, the network outputs {network_classes}")]
    Classes { set: &'static str, got: usize, network_classes: usize },
    /// No training examples.
    #[error("data: the training set is empty")]
    EmptyTrainingSet,
    /// A label outside 0..classes.
    #[error("data: {set} example {index} has label {label}, but the set has {classes} classes (labels 0..{})", classes - 1)]
    Label { set: &'static str, index: usize, label: u32, classes: usize },
    /// The pixel array does not hold n whole examples.
    #[error("data: {set} set: {values} values for {examples} examples of shape {shape:?}")]
    DataSize { set: &'static str, values: usize, examples: usize, shape: Vec<usize> },
    /// A ghost batch of fewer than 2 examples.
    #[error("data: ghost_batch = {ghost_batch}: BN needs at least 2 examples per batch")]
    GhostBatchTooSmall { ghost_batch: usize },
    /// The last ghost batch of a set would hold a single example.
    #[error(
        "data: ghost_batch = {ghost_batch} cuts the {set} of {n} examples into batches whose last one has a single \
         example, where BN's variance is 0; choose a ghost_batch that leaves 0 or ≥ 2 examples over"
    )]
    GhostBatchRemainder { ghost_batch: usize, set: &'static str, n: usize },
    /// The embedded digits file cannot be read (a broken build).
    #[error("data: embedded digits.csv.gz: {0}")]
    DigitsEmbedded(std::io::Error),
    /// A line of the embedded digits file is malformed (a broken build).
    #[error(
        "data: digits.csv.gz line {line}: {numbers} numbers in {fields} fields, expected 65 (64 pixels, the label)"
    )]
    DigitsLine { line: usize, fields: usize, numbers: usize },
    /// A digits split that leaves a class without test examples.
    #[error(
        "data: digits: train_per_class = {train_per_class}, but the smallest class has {min_class} examples; \
         choose 1 to {} so every class keeps test examples", min_class - 1
    )]
    DigitsSplit { train_per_class: usize, min_class: usize },
    /// The CIFAR-10 folder does not exist.
    #[error(
        "data: CIFAR-10 folder {} does not exist; pass the folder holding data_batch_1.bin … test_batch.bin \
         (`--data DIR` or `[data] cifar_dir`)", dir.display()
    )]
    CifarDir { dir: std::path::PathBuf },
    /// A CIFAR-10 file cannot be read.
    #[error(
        "data: {}: {source}. eosflow reads the CIFAR-10 binary version (data_batch_1.bin … data_batch_5.bin, \
         test_batch.bin, from cifar-10-binary.tar.gz) from a folder you supply; nothing is downloaded", path.display()
    )]
    CifarRead { path: std::path::PathBuf, source: std::io::Error },
    /// A CIFAR-10 file that is not a whole number of records.
    #[error(
        "data: {}: {bytes} bytes is not a whole number of {record}-byte records (a label byte and 3×32×32 \
         pixels); the file is truncated or not the CIFAR-10 binary version (a full batch has 30,730,000 bytes)",
        path.display(), record = crate::data::CIFAR10_RECORD
    )]
    CifarSize { path: std::path::PathBuf, bytes: usize },
    /// A CIFAR-10 record with a label above 9.
    #[error("data: {}: record {record} has label {label}, expected 0..9 (is this CIFAR-100 or another format?)", path.display())]
    CifarLabel { path: std::path::PathBuf, record: usize, label: u8 },
    /// A per-class subset of zero examples.
    #[error("data: per_class = 0 leaves no training examples")]
    PerClassZero,
    /// A class with fewer examples than the per-class subset asks for.
    #[error(
        "data: the training set has only {have} examples of class {class}, fewer than the {want} per class asked for"
    )]
    TooFewPerClass { class: usize, have: usize, want: usize },
    /// `device = "cuda"` in a build without CUDA.
    #[error(
        "device: this eosflow was built without CUDA support; rebuild with `cargo build --release --features cuda` \
         on a machine with the CUDA toolkit, or set device = \"cpu\""
    )]
    NoCuda,
    /// An error inside candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// What a layer expects of its input shape ([`NnError::LayerInput`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedInput {
    /// A flat vector of this length.
    Flat(usize),
    /// [c, h, w] with this c.
    Image(usize),
    /// This many channels first.
    ChannelsFirst(usize),
    /// [c, h, w] with h and w even (2×2 pooling).
    EvenImage,
    /// Any [c, h, w].
    AnyImage,
}

impl std::fmt::Display for ExpectedInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedInput::Flat(n) => write!(f, "[{n}]"),
            ExpectedInput::Image(c) => write!(f, "[{c}, h, w]"),
            ExpectedInput::ChannelsFirst(c) => write!(f, "{c} channels first"),
            ExpectedInput::EvenImage => write!(f, "[c, even h, even w] (2×2 pooling)"),
            ExpectedInput::AnyImage => write!(f, "[c, h, w]"),
        }
    }
}
