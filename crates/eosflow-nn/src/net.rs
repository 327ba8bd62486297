//! Network descriptions: a tree of [`Module`]s, the flat parameter layout it
//! implies, its initialisation and the block it is scale-invariant in.
//!
//! Parameters cross into and out of candle as one flat `&[f64]` in the order
//! the modules are listed (depth first; a residual block lists its body, then
//! its shortcut). Within a module: linear `weight` (out×in, row-major) then
//! `bias`; conv `weight` (out×in×k×k); BN with trainable affine `gamma` then
//! `beta`. Only trainable parameters are in the vector: affine-free BN has
//! none, and the fixed γ, β of the final BN are constants of the module, so
//! they never enter the gradient or the HVP.

use eosflow::ScaleInvariance;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};

use crate::{ExpectedInput, NnError};

/// The affine part of a BN layer, y = γ·x̂ + β.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Affine {
    /// No affine parameters (y = x̂): keeps the layer's input block
    /// scale-invariant.
    None,
    /// Trainable γ (init 1) and β (init 0) per channel.
    Trainable,
    /// Constants γ, β shared by all channels (the final BN of App. R).
    Fixed {
        /// Scale γ.
        gamma: f64,
        /// Shift β.
        beta: f64,
    },
}

/// Activation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Swish / SiLU, x·σ(x): smooth, so the loss is twice differentiable.
    Swish,
    /// max(x, 0).
    Relu,
}

/// One layer or block of a network.
#[derive(Clone, Debug, PartialEq)]
pub enum Module {
    /// y = x Wᵀ (+ b); x is (n, inp).
    Linear {
        /// Input features.
        inp: usize,
        /// Output features.
        out: usize,
        /// Whether a bias b is added.
        bias: bool,
    },
    /// 2-D convolution without bias, square kernel; x is (n, cin, h, w).
    Conv {
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
        /// Kernel size k (k×k).
        k: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        pad: usize,
    },
    /// Batch normalisation over the batch (and spatial) dimensions per
    /// channel: x̂ = (x − μ)/√(σ² + ε) with the (ghost) batch's μ, σ².
    BatchNorm {
        /// Channels (features for 2-D input).
        ch: usize,
        /// The affine part.
        affine: Affine,
    },
    /// Elementwise activation.
    Act(Activation),
    /// 2×2 mean pooling with stride 2.
    MeanPool2,
    /// Mean over the spatial dimensions: (n, c, h, w) → (n, c).
    GlobalAvgPool,
    /// (n, …) → (n, prod(…)).
    Flatten,
    /// y = body(x) + shortcut(x); an empty shortcut is the identity.
    Residual {
        /// The residual branch.
        body: Vec<Module>,
        /// The shortcut branch.
        shortcut: Vec<Module>,
    },
}

/// How a parameter is drawn at initialisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// N(0, std²).
    Normal(f64),
    /// U(−b, b).
    Uniform(f64),
    /// A constant.
    Const(f64),
}

/// What a parameter tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Convolution kernel.
    ConvWeight,
    /// Kernel of a convolution on a residual shortcut (acts on the
    /// un-normalised residual stream).
    ShortcutConvWeight,
    /// Linear-layer matrix.
    LinearWeight,
    /// Linear-layer bias.
    LinearBias,
    /// BN scale γ.
    BnGamma,
    /// BN shift β.
    BnBeta,
}

/// One parameter tensor of the flat layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// Path-like name, e.g. `"3.body.2.weight"`.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// What it is.
    pub kind: ParamKind,
    /// Its initial distribution.
    pub init: Init,
    /// Offset in the flat vector.
    pub offset: usize,
}

impl ParamSpec {
    /// Number of scalars.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which parameters the network output is scale-invariant in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiDeclaration {
    /// All trainable parameters jointly (the SI variants).
    All,
    /// All convolution kernels except those on residual shortcuts, jointly
    /// (standard pre-activation ResNet, Fig. 17a). Scaling them by c scales
    /// the residual stream by c (it is a sum of conv outputs) and every
    /// consumer of the stream is a BN. A shortcut conv reads the stream
    /// itself, so scaling it too would make the shortcut grow as c² against
    /// the body's c: it belongs to the non-invariant part, with the BN affine
    /// parameters and the classifier.
    ConvWeights,
    /// None.
    None,
}

/// A network: modules, input shape per example, classes, parameter layout.
#[derive(Clone, Debug)]
pub struct Net {
    /// Short name ("si-vgg", "resnet20", …).
    pub name: String,
    /// The layers, applied in order.
    pub modules: Vec<Module>,
    /// Shape of one input example, e.g. `[3, 32, 32]` or `[64]`.
    pub input_shape: Vec<usize>,
    /// Output width C.
    pub classes: usize,
    /// The flat parameter layout.
    pub params: Vec<ParamSpec>,
    /// The declared scale-invariant block.
    pub si: SiDeclaration,
}

impl Net {
    /// Builds the layout of `modules` and checks that the shapes compose
    /// (channel counts, spatial sizes divisible by the pools).
    pub fn new(
        name: &str,
        modules: Vec<Module>,
        input_shape: Vec<usize>,
        classes: usize,
        si: SiDeclaration,
    ) -> Result<Net, NnError> {
        let mut params = Vec::new();
        let out = layout(&modules, &input_shape, "", &mut params)?;
        if out != [classes] {
            return Err(NnError::OutputShape { network: name.to_string(), got: out, classes });
        }
        let mut off = 0;
        for p in &mut params {
            p.offset = off;
            off += p.len();
        }
        Ok(Net { name: name.to_string(), modules, input_shape, classes, params, si })
    }

    /// Number of trainable parameters D.
    pub fn dim(&self) -> usize {
        self.params.iter().map(ParamSpec::len).sum()
    }

    /// The scale-invariance declaration as flat indices.
    pub fn scale_invariance(&self) -> ScaleInvariance {
        match self.si {
            SiDeclaration::All => ScaleInvariance::All,
            SiDeclaration::None => ScaleInvariance::None,
            SiDeclaration::ConvWeights => ScaleInvariance::Block(
                self.params
                    .iter()
                    .filter(|p| p.kind == ParamKind::ConvWeight)
                    .flat_map(|p| p.offset..p.offset + p.len())
                    .collect(),
            ),
        }
    }

    /// w0 drawn from ChaCha8 (seed `seed`, stream 1 — stream 0 is for data,
    /// so init and data never share random bits), in layout order.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        let mut w = Vec::with_capacity(self.dim());
        for p in &self.params {
            match p.init {
                Init::Normal(std) => {
                    let d = Normal::new(0.0, std).expect("std > 0");
                    w.extend((0..p.len()).map(|_| d.sample(&mut rng)));
                }
                Init::Uniform(b) => {
                    let d = Uniform::new_inclusive(-b, b).expect("finite bound");
                    w.extend((0..p.len()).map(|_| d.sample(&mut rng)));
                }
                Init::Const(c) => w.extend(std::iter::repeat_n(c, p.len())),
            }
        }
        w
    }
}

fn layout(
    modules: &[Module],
    shape: &[usize],
    prefix: &str,
    params: &mut Vec<ParamSpec>,
) -> Result<Vec<usize>, NnError> {
    let mut shape = shape.to_vec();
    for (i, m) in modules.iter().enumerate() {
        let name = |s: &str| format!("{prefix}{i}.{s}");
        let layer = || format!("{prefix}{i}");
        let module = || format!("{m:?}");
        let bad = |expected: ExpectedInput, got: &[usize]| {
            Err(NnError::LayerInput { layer: layer(), module: module(), got: got.to_vec(), expected })
        };
        shape = match *m {
            Module::Linear { inp, out, bias } => {
                if shape != [inp] {
                    return bad(ExpectedInput::Flat(inp), &shape);
                }
                // PyTorch's nn.Linear default (kaiming_uniform with a = √5):
                // U(±1/√fan_in) for both weight and bias.
                let b = 1.0 / (inp as f64).sqrt();
                params.push(spec(name("weight"), vec![out, inp], ParamKind::LinearWeight, Init::Uniform(b)));
                if bias {
                    params.push(spec(name("bias"), vec![out], ParamKind::LinearBias, Init::Uniform(b)));
                }
                vec![out]
            }
            Module::Conv { cin, cout, k, stride, pad } => {
                if shape.len() != 3 || shape[0] != cin {
                    return bad(ExpectedInput::Image(cin), &shape);
                }
                let o = |s: usize| (s + 2 * pad).checked_sub(k).map(|r| r / stride + 1);
                let (Some(h), Some(w)) = (o(shape[1]), o(shape[2])) else {
                    return Err(NnError::KernelTooLarge { layer: layer(), module: module(), k, input: shape });
                };
                // bearpaw/pytorch-classification: N(0, 2/n), n = k²·out_channels.
                let std = (2.0 / (k * k * cout) as f64).sqrt();
                let kind =
                    if prefix.ends_with("shortcut.") { ParamKind::ShortcutConvWeight } else { ParamKind::ConvWeight };
                params.push(spec(name("weight"), vec![cout, cin, k, k], kind, Init::Normal(std)));
                vec![cout, h, w]
            }
            Module::BatchNorm { ch, affine } => {
                if shape.first() != Some(&ch) {
                    return bad(ExpectedInput::ChannelsFirst(ch), &shape);
                }
                if affine == Affine::Trainable {
                    params.push(spec(name("gamma"), vec![ch], ParamKind::BnGamma, Init::Const(1.0)));
                    params.push(spec(name("beta"), vec![ch], ParamKind::BnBeta, Init::Const(0.0)));
                }
                shape
            }
            Module::Act(_) => shape,
            Module::MeanPool2 => {
                if shape.len() != 3 || !shape[1].is_multiple_of(2) || !shape[2].is_multiple_of(2) {
                    return bad(ExpectedInput::EvenImage, &shape);
                }
                vec![shape[0], shape[1] / 2, shape[2] / 2]
            }
            Module::GlobalAvgPool => {
                if shape.len() != 3 {
                    return bad(ExpectedInput::AnyImage, &shape);
                }
                vec![shape[0]]
            }
            Module::Flatten => vec![shape.iter().product()],
            Module::Residual { ref body, ref shortcut } => {
                let b = layout(body, &shape, &format!("{prefix}{i}.body."), params)?;
                let s = layout(shortcut, &shape, &format!("{prefix}{i}.shortcut."), params)?;
                if b != s {
                    return Err(NnError::ResidualShapes { layer: layer(), module: module(), body: b, shortcut: s });
                }
                b
            }
        };
    }
    Ok(shape)
}

fn spec(name: String, shape: Vec<usize>, kind: ParamKind, init: Init) -> ParamSpec {
    ParamSpec { name, shape, kind, init, offset: 0 }
}

/// γ of the final fixed BN, (3/10)·ln 91 ≈ 1.353 (App. R): with β = 0 it
/// matches label smoothing with ε = 0.1 and gives L_min = ln(100/91).
pub fn default_final_gamma() -> f64 {
    0.3 * 91f64.ln()
}

/// The final BN of the scale-invariant nets: fixed γ, β = 0.
fn final_bn(classes: usize, gamma: f64) -> Module {
    Module::BatchNorm { ch: classes, affine: Affine::Fixed { gamma, beta: 0.0 } }
}

fn scaled(c: usize, width: f64) -> usize {
    ((c as f64 * width).round() as usize).max(1)
}

/// Scale-invariant MLP on flattened inputs of shape `input`: [Linear (no bias) → BN (no affine) → act] per hidden
/// layer, then Linear (no bias) → BN (fixed γ, β = 0). Scale-invariant in all
/// parameters: every weight matrix feeds a BN.
///
/// ```
/// use eosflow_nn::net::{si_mlp, Activation};
/// let net = si_mlp(&[1, 8, 8], &[32, 32], 10, Activation::Swish, 1.353).unwrap();
/// assert_eq!(net.dim(), 64 * 32 + 32 * 32 + 32 * 10);
/// ```
pub fn si_mlp(input: &[usize], hidden: &[usize], classes: usize, act: Activation, gamma: f64) -> Result<Net, NnError> {
    let mut m = vec![Module::Flatten];
    let mut inp = input.iter().product();
    for &h in hidden {
        m.push(Module::Linear { inp, out: h, bias: false });
        m.push(Module::BatchNorm { ch: h, affine: Affine::None });
        m.push(Module::Act(act));
        inp = h;
    }
    m.push(Module::Linear { inp, out: classes, bias: false });
    m.push(final_bn(classes, gamma));
    Net::new("si-mlp", m, input.to_vec(), classes, SiDeclaration::All)
}

/// One entry of a VGG configuration: a 3×3 conv with this many channels
/// (before the width multiplier), or a 2×2 mean pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VggItem {
    /// Conv 3×3, padding 1, then BN (no affine), then the activation.
    Conv(usize),
    /// 2×2 mean pooling.
    Pool,
}

/// VGG-11, configuration A of Simonyan & Zisserman: 64, M, 128, M, 256, 256,
/// M, 512, 512, M, 512, 512, M.
pub fn vgg11_config() -> Vec<VggItem> {
    use VggItem::{Conv, Pool};
    vec![
        Conv(64),
        Pool,
        Conv(128),
        Pool,
        Conv(256),
        Conv(256),
        Pool,
        Conv(512),
        Conv(512),
        Pool,
        Conv(512),
        Conv(512),
        Pool,
    ]
}

/// Scale-invariant VGG (App. Q.1, Fig. 16): conv → BN (no affine) → Swish
/// per `config` entry, mean pooling, one linear layer on the flattened
/// features (no bias), final BN with fixed γ. Channels are multiplied by
/// `width`; `input` is [c, h, w].
pub fn si_vgg(config: &[VggItem], width: f64, input: [usize; 3], classes: usize, gamma: f64) -> Result<Net, NnError> {
    let mut m = Vec::new();
    let (mut c, mut h, mut w) = (input[0], input[1], input[2]);
    for item in config {
        match *item {
            VggItem::Conv(ch) => {
                let ch = scaled(ch, width);
                m.push(Module::Conv { cin: c, cout: ch, k: 3, stride: 1, pad: 1 });
                m.push(Module::BatchNorm { ch, affine: Affine::None });
                m.push(Module::Act(Activation::Swish));
                c = ch;
            }
            VggItem::Pool => {
                m.push(Module::MeanPool2);
                h /= 2;
                w /= 2;
            }
        }
    }
    m.push(Module::Flatten);
    m.push(Module::Linear { inp: c * h * w, out: classes, bias: false });
    m.push(final_bn(classes, gamma));
    Net::new("si-vgg", m, input.to_vec(), classes, SiDeclaration::All)
}

/// Pre-activation ResNet-20 (He et al. 2016; bearpaw/pytorch-classification
/// `preresnet`, Fig. 17). `scale_invariant = false`: the standard network —
/// BN with trainable affine, 1×1 strided conv shortcuts, final BN → ReLU →
/// global pool → linear with bias; its declared scale-invariant block is all
/// conv kernels but the shortcuts' ([`SiDeclaration::ConvWeights`]). `scale_invariant = true` (Fig. 17b): BNs without affine, a
/// BN with trainable affine on each downsampling shortcut, no bias, and a
/// final BN with fixed γ; scale-invariant in all parameters.
pub fn resnet20(
    scale_invariant: bool,
    width: f64,
    input: [usize; 3],
    classes: usize,
    gamma: f64,
) -> Result<Net, NnError> {
    let affine = if scale_invariant { Affine::None } else { Affine::Trainable };
    let widths = [scaled(16, width), scaled(32, width), scaled(64, width)];
    let mut m = vec![Module::Conv { cin: input[0], cout: widths[0], k: 3, stride: 1, pad: 1 }];
    let mut c = widths[0];
    for (stage, &ch) in widths.iter().enumerate() {
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let body = vec![
                Module::BatchNorm { ch: c, affine },
                Module::Act(Activation::Relu),
                Module::Conv { cin: c, cout: ch, k: 3, stride, pad: 1 },
                Module::BatchNorm { ch, affine },
                Module::Act(Activation::Relu),
                Module::Conv { cin: ch, cout: ch, k: 3, stride: 1, pad: 1 },
            ];
            let mut shortcut = Vec::new();
            if stride != 1 || c != ch {
                shortcut.push(Module::Conv { cin: c, cout: ch, k: 1, stride, pad: 0 });
                if scale_invariant {
                    shortcut.push(Module::BatchNorm { ch, affine: Affine::Trainable });
                }
            }
            m.push(Module::Residual { body, shortcut });
            c = ch;
        }
    }
    m.push(Module::BatchNorm { ch: c, affine });
    m.push(Module::Act(Activation::Relu));
    m.push(Module::GlobalAvgPool);
    if scale_invariant {
        m.push(Module::Linear { inp: c, out: classes, bias: false });
        m.push(final_bn(classes, gamma));
        Net::new("si-resnet20", m, input.to_vec(), classes, SiDeclaration::All)
    } else {
        m.push(Module::Linear { inp: c, out: classes, bias: true });
        Net::new("resnet20", m, input.to_vec(), classes, SiDeclaration::ConvWeights)
    }
}
