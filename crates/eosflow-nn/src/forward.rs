//! The forward pass with an optional tangent (JVP) pass, written in candle
//! ops so that candle's first-order backward differentiates both.
//!
//! Each layer maps (x, ẋ) ↦ (f(x), ∂f(x)[ẋ] + ∂_w f(x)[ẇ]), where ẇ is the
//! slice of the direction v for that layer's parameters. The loss's
//! directional derivative ⟨∇L(w), v⟩ is then a scalar built from candle ops
//! on w (a `Var`) and v (a constant); one backward pass of it gives
//! ∇_w⟨∇L(w), v⟩ = ∇²L(w)·v exactly (reverse-over-forward).

use std::cell::{Cell, RefCell};

use candle_core::{D, DType, Result, Tensor};

use crate::net::{Activation, Affine, Module};

/// A value and its tangent.
pub(crate) struct Dual {
    pub x: Tensor,
    pub t: Option<Tensor>,
}

/// Where BN takes its statistics from.
pub(crate) enum BnSource<'a> {
    /// The current (ghost) batch; optionally records (μ, σ²) per BN layer in
    /// call order.
    Batch(Option<&'a RefCell<Vec<(Tensor, Tensor)>>>),
    /// Given per-layer (μ, σ²), used in call order (test-time evaluation).
    Fixed(&'a [(Tensor, Tensor)]),
}

/// How convolutions are computed (the same function up to summation order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvImpl {
    /// eosflow's kernels: convolutions by im2col + matrix product over
    /// tiles of examples ([`crate::conv`]) and fused BN, Swish and ReLU ops
    /// with their own tangent and backward rules (`fused.rs`). CPU only: on
    /// other devices candle's ops are used. See BENCHMARKS.md for speed.
    #[default]
    Im2col,
    /// candle's own ops throughout: `conv2d` (backward through a
    /// transposed convolution), and BN and the activations as chains of
    /// elementwise ops differentiated by candle — slower, and the
    /// independent reference the tests compare against.
    Candle,
}

/// Per-pass context: parameter tensors, their tangents, the BN mode.
pub(crate) struct Pass<'a> {
    pub params: &'a [Tensor],
    pub tangents: Option<&'a [Tensor]>,
    pub bn: BnSource<'a>,
    pub eps: f64,
    pub conv: ConvImpl,
    next_param: Cell<usize>,
    next_bn: Cell<usize>,
}

impl<'a> Pass<'a> {
    pub fn new(params: &'a [Tensor], tangents: Option<&'a [Tensor]>, bn: BnSource<'a>, eps: f64) -> Self {
        Pass { params, tangents, bn, eps, conv: ConvImpl::default(), next_param: Cell::new(0), next_bn: Cell::new(0) }
    }

    /// The same pass with convolutions computed by `conv`.
    pub fn with_conv(mut self, conv: ConvImpl) -> Self {
        self.conv = conv;
        self
    }

    /// Whether eosflow's own kernels compute this layer (the tiled
    /// convolution and the fused BN/Swish/ReLU ops: CPU, `ConvImpl::Im2col`)
    /// rather than candle's ops (other devices, or `ConvImpl::Candle`, the
    /// reference the tests compare against).
    fn ours(&self, x: &Tensor) -> bool {
        self.conv == ConvImpl::Im2col && x.device().is_cpu()
    }

    /// The next parameter tensor and its tangent.
    fn take(&self) -> (&'a Tensor, Option<&'a Tensor>) {
        let i = self.next_param.get();
        self.next_param.set(i + 1);
        (&self.params[i], self.tangents.map(|t| &t[i]))
    }

    pub fn run(&self, modules: &[Module], mut h: Dual) -> Result<Dual> {
        for m in modules {
            h = self.module(m, h)?;
        }
        Ok(h)
    }

    fn module(&self, m: &Module, h: Dual) -> Result<Dual> {
        match *m {
            Module::Linear { bias, .. } => {
                let (w, dw) = self.take();
                let wt = w.t()?;
                let mut y = h.x.matmul(&wt)?;
                let mut t = bilinear_tangent(h.t.as_ref(), dw, |t| t.matmul(&wt), |dw| h.x.matmul(&dw.t()?))?;
                if bias {
                    let (b, db) = self.take();
                    y = y.broadcast_add(b)?;
                    if let (Some(tt), Some(db)) = (t.as_ref(), db) {
                        t = Some(tt.broadcast_add(db)?);
                    }
                }
                Ok(Dual { x: y, t })
            }
            Module::Conv { stride, pad, .. } if self.ours(&h.x) => {
                let (w, dw) = self.take();
                let conv = |x: &Tensor, k: &Tensor| crate::conv::conv2d(x, k, stride, pad);
                let y = conv(&h.x, w)?;
                let t = match (h.t.as_ref(), dw) {
                    (Some(t), Some(dw)) => Some(crate::conv::conv2d_tangent(&h.x, t, w, dw, stride, pad)?),
                    (t, dw) => bilinear_tangent(t, dw, |t| conv(t, w), |dw| conv(&h.x, dw))?,
                };
                Ok(Dual { x: y, t })
            }
            Module::Conv { stride, pad, .. } => {
                let (w, dw) = self.take();
                let conv = |x: &Tensor, k: &Tensor| x.conv2d(k, pad, stride, 1, 1);
                let y = conv(&h.x, w)?;
                let t = bilinear_tangent(h.t.as_ref(), dw, |t| conv(t, w), |dw| conv(&h.x, dw))?;
                Ok(Dual { x: y, t })
            }
            Module::BatchNorm { affine, .. } => self.batch_norm(h, affine),
            Module::Act(a) if self.ours(&h.x) => {
                let t = h.t.map(|t| crate::fused::activation_jvp(&h.x, &t, a)).transpose()?;
                Ok(Dual { x: crate::fused::activation(&h.x, a)?, t })
            }
            Module::Act(Activation::Relu) => {
                let y = h.x.relu()?;
                // ReLU' = 1[x > 0], piecewise constant: candle does not
                // differentiate through the comparison, which is the exact
                // derivative away from the kinks.
                let t = match h.t {
                    Some(t) => Some(t.mul(&h.x.gt(0.0)?.to_dtype(h.x.dtype())?)?),
                    None => None,
                };
                Ok(Dual { x: y, t })
            }
            Module::Act(Activation::Swish) => {
                // σ(x) = (1 + tanh(x/2))/2 has no overflow for large |x|.
                let sig = ((h.x.affine(0.5, 0.0)?.tanh()? + 1.0)? * 0.5)?;
                let y = h.x.mul(&sig)?;
                let t = match h.t {
                    // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
                    Some(t) => {
                        let one_minus = sig.affine(-1.0, 1.0)?;
                        let d = sig.mul(&(h.x.mul(&one_minus)? + 1.0)?)?;
                        Some(t.mul(&d)?)
                    }
                    None => None,
                };
                Ok(Dual { x: y, t })
            }
            Module::MeanPool2 => Ok(Dual { x: h.x.avg_pool2d(2)?, t: h.t.map(|t| t.avg_pool2d(2)).transpose()? }),
            Module::GlobalAvgPool => Ok(Dual { x: h.x.mean((2, 3))?, t: h.t.map(|t| t.mean((2, 3))).transpose()? }),
            Module::Flatten => Ok(Dual { x: h.x.flatten_from(1)?, t: h.t.map(|t| t.flatten_from(1)).transpose()? }),
            Module::Residual { ref body, ref shortcut } => {
                let input = Dual { x: h.x.clone(), t: h.t.clone() };
                let b = self.run(body, h)?;
                let s = self.run(shortcut, input)?;
                Ok(Dual { x: (b.x + s.x)?, t: add_opt(b.t, s.t)? })
            }
        }
    }

    fn batch_norm(&self, h: Dual, affine: Affine) -> Result<Dual> {
        // Per-channel values broadcast as (1, c, 1, 1) (or (1, c)).
        let mut bshape = vec![1usize; h.x.rank()];
        bshape[1] = h.x.dim(1)?;
        let ours = self.ours(&h.x);
        let (y, t) = match &self.bn {
            BnSource::Batch(record) => {
                if let Some(rec) = record {
                    let (mu, var) = if ours { crate::fused::channel_stats(&h.x)? } else { candle_stats(&h.x)? };
                    rec.borrow_mut().push((mu.reshape(bshape.as_slice())?, var.reshape(bshape.as_slice())?));
                }
                if ours {
                    // Fused ops: one tensor per layer in the graph, exact
                    // tangent and backward rules (crate::fused).
                    let t = h.t.map(|t| crate::fused::batch_norm_jvp(&h.x, &t, self.eps)).transpose()?;
                    (crate::fused::batch_norm(&h.x, self.eps)?, t)
                } else {
                    candle_batch_norm(&h.x, h.t.as_ref(), self.eps)?
                }
            }
            BnSource::Fixed(stats) => {
                let i = self.next_bn.get();
                self.next_bn.set(i + 1);
                let (mu, var) = &stats[i];
                let s = (var.clone() + self.eps)?.sqrt()?.recip()?;
                let y = h.x.broadcast_sub(mu)?.broadcast_mul(&s)?;
                let t = h.t.map(|t| t.broadcast_mul(&s)).transpose()?;
                (y, t)
            }
        };
        let (y, t) = match affine {
            Affine::None => (y, t),
            Affine::Fixed { gamma, beta } => (y.affine(gamma, beta)?, t.map(|t| t * gamma).transpose()?),
            Affine::Trainable => {
                let (g, dg) = self.take();
                let (b, db) = self.take();
                if ours {
                    let dgb = dg.zip(db);
                    crate::fused::affine_dual(&y, t.as_ref(), g, b, dgb)?
                } else {
                    let g2 = g.reshape(bshape.as_slice())?;
                    let out = y.broadcast_mul(&g2)?.broadcast_add(&b.reshape(bshape.as_slice())?)?;
                    let t = match (t, dg, db) {
                        (t, Some(dg), Some(db)) => {
                            let from_w = y
                                .broadcast_mul(&dg.reshape(bshape.as_slice())?)?
                                .broadcast_add(&db.reshape(bshape.as_slice())?)?;
                            Some(match t {
                                Some(t) => (t.broadcast_mul(&g2)? + from_w)?,
                                None => from_w,
                            })
                        }
                        (Some(t), _, _) => Some(t.broadcast_mul(&g2)?),
                        (None, _, _) => None,
                    };
                    (out, t)
                }
            }
        };
        Ok(Dual { x: y, t })
    }
}

/// Per-channel (μ, σ²) of x (n, c, …) in candle ops (non-CPU devices).
fn candle_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let xc = to_channel_major(x)?;
    let mu = xc.mean_keepdim(1)?;
    let var = xc.broadcast_sub(&mu)?.sqr()?.mean_keepdim(1)?;
    Ok((mu.flatten_all()?, var.flatten_all()?))
}

/// BN without affine and its tangent in candle ops (non-CPU devices), on
/// channel-major views so that the reductions are contiguous.
/// x̂ = (x − μ)·s, s = (σ² + ε)^{-1/2}; tangent: ẋc = ẋ − mean(ẋ),
/// (σ²)˙ = 2·mean(xc·ẋc), ṡ = −s³·(σ²)˙/2, x̂˙ = ẋc·s + xc·ṡ.
fn candle_batch_norm(x: &Tensor, t: Option<&Tensor>, eps: f64) -> Result<(Tensor, Option<Tensor>)> {
    let dims = x.dims().to_vec();
    let x = to_channel_major(x)?;
    let mu = x.mean_keepdim(1)?;
    let xc = x.broadcast_sub(&mu)?;
    let var = xc.sqr()?.mean_keepdim(1)?;
    let s = (var + eps)?.sqrt()?.recip()?;
    let y = xc.broadcast_mul(&s)?;
    let t = match t {
        Some(t) => {
            let t = to_channel_major(t)?;
            let tc = t.broadcast_sub(&t.mean_keepdim(1)?)?;
            let dvar = (xc.mul(&tc)?.mean_keepdim(1)? * 2.0)?;
            let ds = (s.powf(3.0)?.mul(&dvar)? * -0.5)?;
            Some(from_channel_major(&(tc.broadcast_mul(&s)? + xc.broadcast_mul(&ds)?)?, &dims)?)
        }
        None => None,
    };
    Ok((from_channel_major(&y, &dims)?, t))
}

/// (n, c, h, w) or (n, c) → contiguous (c, n·h·w).
fn to_channel_major(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let c = dims[1];
    let m = x.elem_count() / c;
    x.transpose(0, 1)?.contiguous()?.reshape((c, m))
}

/// The inverse of [`to_channel_major`] for the original shape `dims`.
fn from_channel_major(y: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let mut cm = dims.to_vec();
    cm.swap(0, 1);
    y.reshape(cm.as_slice())?.transpose(0, 1)?.contiguous()
}

/// a + b where both are present, else whichever is.
fn add_opt(a: Option<Tensor>, b: Option<Tensor>) -> Result<Option<Tensor>> {
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a + b)?)),
        (a, b) => Ok(a.or(b)),
    }
}

/// The tangent of a bilinear y = f(x, W) (linear layer, convolution):
/// ẏ = f(ẋ, W) + f(x, Ẇ), `with_dx` computing the first term from ẋ and
/// `with_dw` the second from Ẇ; absent tangents drop their term.
fn bilinear_tangent(
    dx: Option<&Tensor>,
    dw: Option<&Tensor>,
    with_dx: impl Fn(&Tensor) -> Result<Tensor>,
    with_dw: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    add_opt(dx.map(with_dx).transpose()?, dw.map(with_dw).transpose()?)
}

/// Loss on the logits z (n×C).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Mean cross-entropy, (1/n)·Σᵢ [logsumexp(zᵢ) − z_{i,yᵢ}].
    Ce,
    /// Squared loss against one-hot targets, (1/n)·Σᵢ ½‖zᵢ − e_{yᵢ}‖²
    /// (Cohen et al.'s convention).
    Mse,
}

/// Mean loss over the batch and, with a tangent, its directional derivative.
/// `labels` is (n, 1) u32; `onehot` is (n, C) f64.
pub(crate) fn loss(kind: LossKind, z: &Dual, labels: &Tensor, onehot: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
    match kind {
        LossKind::Ce => {
            let lse = z.x.log_sum_exp(D::Minus1)?;
            let zy = z.x.gather(labels, 1)?.squeeze(1)?;
            let l = (lse.clone() - zy)?.mean_all()?;
            let dl = match &z.t {
                Some(t) => {
                    // d/dz CE = softmax(z) − e_y.
                    let p = z.x.broadcast_sub(&lse.unsqueeze(1)?)?.exp()?;
                    Some((p.mul(t)?.sum(1)? - t.gather(labels, 1)?.squeeze(1)?)?.mean_all()?)
                }
                None => None,
            };
            Ok((l, dl))
        }
        LossKind::Mse => {
            let r = (&z.x - onehot)?;
            let l = (r.sqr()?.sum(1)?.mean_all()? * 0.5)?;
            let dl = match &z.t {
                Some(t) => Some(r.mul(t)?.sum(1)?.mean_all()?),
                None => None,
            };
            Ok((l, dl))
        }
    }
}

/// Number of rows whose argmax equals the label.
pub(crate) fn correct(z: &Tensor, labels: &Tensor) -> Result<usize> {
    let pred = z.argmax(1)?.to_dtype(DType::U32)?;
    let eq = pred.eq(&labels.squeeze(1)?)?.to_dtype(DType::U32)?;
    Ok(eq.sum_all()?.to_scalar::<u32>()? as usize)
}
