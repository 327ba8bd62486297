//! Per-block spectra: the top eigenvalue and the trace of a principal
//! sub-block H_BB = P_B·∇²L(w)·P_Bᵀ of the Hessian, for the blocks a user
//! asks about — the whole of w, the declared scale-invariant block, or
//! every parameter tensor of a network. One home for "which blocks" and
//! "what a block's numbers are", shared by `eosflow spectrum` (one point)
//! and the runner's `[spectrum]` schedule (along training).
//!
//! Units: a block's eigenvalues are reported raw and × ‖w_B‖². For a
//! scale-invariant block S that product is the spherical sharpness of
//! Def. 1.1, λ1(∇²_S L(θ)) with θ = w/‖w_S‖ (Lemma D.1: ∇²L(cw) = c⁻²∇²L(w));
//! for a layer l of a network whose loss is scale-invariant in w_l alone it
//! is that layer's own spherical value, which differs between BN layers as
//! ‖w_l‖ does.

use super::{LanczosError, LanczosParams, LinOp, Restricted, SpectrumError, TraceEstimate, TraceParams};
use crate::ScaleInvariance;
use crate::problems::Problem;

/// Which blocks of the Hessian to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockSet {
    /// The whole Hessian only.
    #[default]
    All,
    /// The whole Hessian and the declared scale-invariant block.
    Si,
    /// The whole Hessian and every named parameter block
    /// ([`Problem::parameter_blocks`]: a network's tensors).
    Layers,
}

impl std::str::FromStr for BlockSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "si" => Ok(Self::Si),
            "layers" => Ok(Self::Layers),
            other => Err(format!("blocks = {other:?}: expected all, si or layers")),
        }
    }
}

impl BlockSet {
    /// The name as in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Si => "si",
            Self::Layers => "layers",
        }
    }
}

/// One principal sub-block of the Hessian.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// "all", "si" or the parameter tensor's name.
    pub name: String,
    /// The coordinates of the block; None is all of w.
    pub indices: Option<Vec<usize>>,
    /// Whether the block is a declared scale-invariant block, so that its
    /// values × ‖w_B‖² are spherical sharpness (Def. 1.1).
    pub spherical: bool,
}

/// Why the blocks asked for do not exist for a problem.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BlockError {
    /// `si` on a problem with no scale-invariant block.
    #[error("blocks = si: the {problem} problem declares no scale-invariant block; use blocks = all")]
    NoScaleInvariantBlock { problem: String },
    /// `layers` on a problem without named parameter blocks.
    #[error("blocks = layers: the {problem} problem has no parameter blocks (networks do); use blocks = all or si")]
    NoLayers { problem: String },
}

/// The blocks of `set` for `problem`: always the whole Hessian first (in
/// spherical units when the loss is scale-invariant in all of w), then the
/// scale-invariant block or the parameter tensors in layout order.
///
/// ```
/// use eosflow::problems::Toy3d;
/// use eosflow::spectrum::{BlockSet, select_blocks};
/// let blocks = select_blocks(&Toy3d::new(0), BlockSet::Si).unwrap();
/// // toy3d is scale-invariant in all of w: "si" is the whole Hessian.
/// assert_eq!(blocks.len(), 1);
/// assert!(blocks[0].spherical && blocks[0].indices.is_none());
/// ```
pub fn select_blocks(problem: &dyn Problem, set: BlockSet) -> Result<Vec<Block>, BlockError> {
    let si = problem.scale_invariance();
    let mut out = vec![Block { name: "all".into(), indices: None, spherical: matches!(si, ScaleInvariance::All) }];
    match set {
        BlockSet::All => {}
        BlockSet::Si => match si {
            ScaleInvariance::All => {}
            ScaleInvariance::Block(idx) => out.push(Block { name: "si".into(), indices: Some(idx), spherical: true }),
            ScaleInvariance::None => {
                return Err(BlockError::NoScaleInvariantBlock { problem: problem.name().to_string() });
            }
        },
        BlockSet::Layers => {
            let layers = problem.parameter_blocks();
            if layers.is_empty() {
                return Err(BlockError::NoLayers { problem: problem.name().to_string() });
            }
            out.extend(layers.into_iter().map(|(name, r)| Block {
                name,
                indices: Some(r.collect()),
                spherical: false,
            }));
        }
    }
    Ok(out)
}

impl Block {
    /// The number of coordinates of the block in a w of length `dim`.
    pub fn size(&self, dim: usize) -> usize {
        self.indices.as_ref().map_or(dim, |i| i.len())
    }

    /// ‖w_B‖².
    pub fn norm2(&self, w: &[f64]) -> f64 {
        match &self.indices {
            Some(idx) => idx.iter().map(|&i| w[i] * w[i]).sum(),
            None => w.iter().map(|x| x * x).sum(),
        }
    }

    /// Runs `f` on the block's operator H_BB (H itself for the whole).
    pub fn with_operator<R>(&self, h: &dyn LinOp, f: impl FnOnce(&dyn LinOp) -> R) -> R {
        match &self.indices {
            Some(idx) => f(&Restricted::new(h, idx)),
            None => f(h),
        }
    }
}

/// Settings of [`block_spectrum`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct BlockParams {
    /// Lanczos for the top eigenvalue (its `k` is capped at the block size).
    pub lanczos: LanczosParams,
    /// Hutch++ for the trace; `probes = 0` skips it.
    pub trace: TraceParams,
}

/// A block's numbers at one w.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BlockSpectrum {
    /// The block's name.
    pub name: String,
    /// Its number of coordinates.
    pub size: usize,
    /// ‖w_B‖².
    pub w_norm2: f64,
    /// The largest algebraic eigenvalues of H_BB, descending (raw units).
    pub top: Vec<f64>,
    /// The largest Lanczos residual ‖H_BB·y − θ·y‖ (raw units).
    pub residual: f64,
    /// Whether Lanczos met its tolerance.
    pub converged: bool,
    /// tr(H_BB) by Hutch++ with its standard error (raw units), unless
    /// skipped.
    pub trace: Option<TraceEstimate>,
    /// Operator applications (HVPs) used.
    pub hvps: usize,
}

impl BlockSpectrum {
    /// λ1(H_BB)·‖w_B‖²: the spherical sharpness of a scale-invariant block.
    pub fn top_times_w_norm2(&self) -> f64 {
        self.top[0] * self.w_norm2
    }
}

/// Why [`block_spectrum`] gave no estimate.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BlockSpectrumError {
    #[error("block {block}: {source}")]
    Lanczos { block: String, source: LanczosError },
    #[error("block {block}: {source}")]
    Trace { block: String, source: SpectrumError },
}

/// The top eigenvalues (Lanczos, largest algebraic) and the trace
/// (Hutch++) of the block H_BB of `h` = ∇²L(w), seeded as `params` say so
/// that the same w gives the same bits.
///
/// ```
/// use eosflow::spectrum::{Block, BlockParams, DenseSymmetric, TraceParams, block_spectrum};
/// // diag(3, 1, −5): the block {1, 2} has top eigenvalue 1 and trace −4.
/// let h = DenseSymmetric::new(3, vec![3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -5.0]);
/// let b = Block { name: "tail".into(), indices: Some(vec![1, 2]), spherical: false };
/// let p = BlockParams { trace: TraceParams { probes: 6, seed: 0 }, ..Default::default() };
/// let s = block_spectrum(&h, &[0.0, 1.0, 2.0], &b, &p).unwrap();
/// assert!((s.top[0] - 1.0).abs() < 1e-12 && s.w_norm2 == 5.0);
/// assert!((s.trace.unwrap().estimate + 4.0).abs() < 1e-12);
/// ```
pub fn block_spectrum(
    h: &dyn LinOp,
    w: &[f64],
    block: &Block,
    params: &BlockParams,
) -> Result<BlockSpectrum, BlockSpectrumError> {
    block.with_operator(h, |op| {
        let n = op.dim();
        let lanczos = LanczosParams { k: params.lanczos.k.min(n), ..params.lanczos.clone() };
        let top = super::lanczos_top(op, &lanczos, None)
            .map_err(|source| BlockSpectrumError::Lanczos { block: block.name.clone(), source })?;
        let trace = if params.trace.probes == 0 {
            None
        } else {
            Some(
                super::hutch_pp(op, &params.trace.capped(n))
                    .map_err(|source| BlockSpectrumError::Trace { block: block.name.clone(), source })?,
            )
        };
        Ok(BlockSpectrum {
            name: block.name.clone(),
            size: n,
            w_norm2: block.norm2(w),
            residual: top.residuals.iter().copied().fold(0.0, f64::max),
            converged: top.converged,
            hvps: top.matvecs + trace.as_ref().map_or(0, |t| t.matvecs),
            top: top.eigenvalues,
            trace,
        })
    })
}
