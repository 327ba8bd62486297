//! Batch normalisation (without affine) and its trainable affine, Swish
//! and ReLU as fused candle ops, with their tangent (JVP) maps and the derivatives the HVP's backward
//! pass needs, so a layer keeps one tensor in the graph instead of ten.
//!
//! BN, per channel over the m = n·h·w entries x of that channel:
//! μ = mean(x), σ² = mean((x − μ)²), s = (σ² + ε)^{-1/2}, x̂ = s·(x − μ).
//! Its Jacobian is symmetric, J = s·(P − x̂x̂ᵀ/m) with P = I − 11ᵀ/m, so the
//! tangent map and the backward map are the same op [`BnJac`]:
//! J·t = s·(Pt − x̂·⟨x̂, Pt⟩/m). Differentiating f(x) = ⟨g, J(x)·t⟩ in x
//! (the backward pass of the tangent) gives, with a = ⟨Pg, Pt⟩,
//! b = ⟨g, x̂⟩, c = ⟨x̂, t⟩ (sums over the channel):
//! ∇ₓf = −(s²/m)·[x̂·(a − 3bc/m) + c·Pg + b·Pt]   ([`BnJacGradX`]).
//!
//! Swish: y = x·σ(x), y' = σ·(1 + x·(1 − σ)), y'' = σ(1 − σ)·(2 + x·(1 − 2σ)),
//! σ(x) = 1/(1 + e^{−x}) (e^{−x} = ∞ for x ≪ 0 gives σ = 0, no NaN).
//!
//! ReLU: y = max(x, 0), tangent 1[x > 0]·t, whose derivative in x is 0
//! away from the kinks (as candle's own relu backward has it).
//!
//! Every sum over a channel runs in a fixed order in f64 (for f32 tensors
//! too), so results do not depend on the number of threads.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::{Float, binary, if_tracked, same_shape, ternary, unary};
use crate::net::Activation;

/// A tensor (n, c, …) seen as n blocks of c channels of `inner` entries.
#[derive(Clone, Copy, Debug)]
struct Channels {
    n: usize,
    c: usize,
    inner: usize,
}

impl Channels {
    fn of(shape: &Shape) -> Result<Self> {
        let d = shape.dims();
        if d.len() < 2 {
            candle_core::bail!("batch norm needs (n, c, …) inputs, got {d:?}");
        }
        Ok(Channels { n: d[0], c: d[1], inner: d[2..].iter().product() })
    }
    fn m(&self) -> f64 {
        (self.n * self.inner) as f64
    }
    /// Σ over channel `ch` of f(index) in a fixed order.
    fn sum(&self, ch: usize, f: impl Fn(usize) -> f64) -> f64 {
        let mut acc = 0.0;
        for i in 0..self.n {
            let start = (i * self.c + ch) * self.inner;
            for k in start..start + self.inner {
                acc += f(k);
            }
        }
        acc
    }
    /// Per-channel values computed in parallel (each a fixed-order sum).
    fn per_channel<R: Send>(&self, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
        (0..self.c).into_par_iter().map(f).collect()
    }
    /// out[k] = f(channel, k) for every entry, in parallel over examples.
    fn map<T: Float>(&self, f: impl Fn(usize, usize) -> f64 + Sync) -> Vec<T> {
        let per = (self.c * self.inner).max(1);
        let mut out = vec![T::ZERO; self.n * self.c * self.inner];
        out.par_chunks_mut(per).with_min_len(4096usize.div_ceil(per)).enumerate().for_each(|(i, o)| {
            for c in 0..self.c {
                let base = c * self.inner;
                for (j, v) in o[base..base + self.inner].iter_mut().enumerate() {
                    *v = T::of(f(c, i * per + base + j));
                }
            }
        });
        out
    }
}

/// Per channel (μ, s) with s = (σ² + ε)^{-1/2}, and σ².
fn stats<T: Float>(x: &[T], ch: Channels, eps: f64) -> Vec<(f64, f64, f64)> {
    ch.per_channel(|c| {
        let mu = ch.sum(c, |k| x[k].f64()) / ch.m();
        let var = ch.sum(c, |k| (x[k].f64() - mu).powi(2)) / ch.m();
        (mu, 1.0 / (var + eps).sqrt(), var)
    })
}

/// x̂ = s·(x − μ).
struct BnNorm {
    eps: f64,
}
/// (x, t) ↦ J(x)·t.
struct BnJac {
    eps: f64,
}
/// (x, g, t) ↦ ∇ₓ⟨g, J(x)·t⟩.
struct BnJacGradX {
    eps: f64,
}

fn bn_norm<T: Float>(x: &[T], ch: Channels, eps: f64) -> Vec<T> {
    let st = stats(x, ch, eps);
    ch.map(|c, k| (x[k].f64() - st[c].0) * st[c].1)
}

fn bn_jac<T: Float>(x: &[T], t: &[T], ch: Channels, eps: f64) -> Vec<T> {
    let st = stats(x, ch, eps);
    // Per channel: mean(t) and ⟨x̂, Pt⟩/m.
    let mt: Vec<(f64, f64)> = ch.per_channel(|c| {
        let (mu, s, _) = st[c];
        let mean_t = ch.sum(c, |k| t[k].f64()) / ch.m();
        (mean_t, ch.sum(c, |k| (x[k].f64() - mu) * s * (t[k].f64() - mean_t)) / ch.m())
    });
    ch.map(|c, k| {
        let ((mu, s, _), (mean_t, xt)) = (st[c], mt[c]);
        s * ((t[k].f64() - mean_t) - (x[k].f64() - mu) * s * xt)
    })
}

fn bn_jac_grad_x<T: Float>(x: &[T], g: &[T], t: &[T], ch: Channels, eps: f64) -> Vec<T> {
    let st = stats(x, ch, eps);
    let m = ch.m();
    // Per channel: mean(g), mean(t), a = ⟨Pg, Pt⟩, b = ⟨g, x̂⟩, c = ⟨x̂, t⟩.
    let sums: Vec<[f64; 5]> = ch.per_channel(|c| {
        let (mu, s, _) = st[c];
        let (mg, mt) = (ch.sum(c, |k| g[k].f64()) / m, ch.sum(c, |k| t[k].f64()) / m);
        let a = ch.sum(c, |k| (g[k].f64() - mg) * (t[k].f64() - mt));
        let b = ch.sum(c, |k| g[k].f64() * (x[k].f64() - mu) * s);
        let cc = ch.sum(c, |k| (x[k].f64() - mu) * s * t[k].f64());
        [mg, mt, a, b, cc]
    });
    ch.map(|c, k| {
        let ((mu, s, _), [mg, mt, a, b, cc]) = (st[c], sums[c]);
        let xh = (x[k].f64() - mu) * s;
        -(s * s / m) * (xh * (a - 3.0 * b * cc / m) + cc * (g[k].f64() - mg) + b * (t[k].f64() - mt))
    })
}

/// σ(x) = 1/(1 + e^{−x}): e^{−x} = ∞ for x ≪ 0 gives 0, not NaN, and one
/// exp is half the cost of tanh (libm's tanh goes through expm1).
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn elementwise<T: Float>(n: usize, f: impl Fn(usize) -> f64 + Sync) -> Vec<T> {
    let mut out = vec![T::ZERO; n];
    out.par_chunks_mut(1 << 14).enumerate().for_each(|(i, o)| {
        for (j, v) in o.iter_mut().enumerate() {
            *v = T::of(f((i << 14) + j));
        }
    });
    out
}

fn swish_d1(x: f64) -> f64 {
    let s = sigmoid(x);
    s * (1.0 + x * (1.0 - s))
}

fn swish_d2(x: f64) -> f64 {
    let s = sigmoid(x);
    s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s))
}

impl CustomOp1 for BnNorm {
    fn name(&self) -> &'static str {
        "eosflow-bn"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let ch = Channels::of(l.shape())?;
        Ok((unary!(s, l, "bn", |x| bn_norm(x, ch, self.eps)), l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        // J is symmetric: the backward map is the tangent map.
        Ok(Some(x.apply_op2(&g.contiguous()?, BnJac { eps: self.eps })?))
    }
}

impl CustomOp2 for BnJac {
    fn name(&self) -> &'static str {
        "eosflow-bn-jvp"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, "bn jvp")?;
        let ch = Channels::of(l1.shape())?;
        Ok((binary!(s1, l1, s2, l2, "bn jvp", |x, t| bn_jac(x, t, ch, self.eps)), l1.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, t: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = if_tracked(x, || x.apply_op3(&g, t, BnJacGradX { eps: self.eps }))?;
        let dt = if_tracked(t, || x.apply_op2(&g, BnJac { eps: self.eps }))?;
        Ok((dx, dt))
    }
}

impl CustomOp3 for BnJacGradX {
    fn name(&self) -> &'static str {
        "eosflow-bn-jvp-grad-x"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, "bn jvp grad")?;
        same_shape(l1, l3, "bn jvp grad")?;
        let ch = Channels::of(l1.shape())?;
        let out = ternary!(s1, l1, s2, l2, s3, l3, "bn jvp grad", |x, g, t| bn_jac_grad_x(x, g, t, ch, self.eps));
        Ok((out, l1.shape().clone()))
    }
}

/// The activations as three ops per activation a ∈ {Swish, ReLU}:
/// y = a(x), (x, t) ↦ a'(x)·t, and (x, t, g) ↦ a''(x)·t·g (the backward of
/// the second in x; ReLU's is 0 away from the kinks, so it is never built).
struct Act(Activation);
struct ActJac(Activation);
struct ActHess(Activation);

fn act_value(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Swish => x * sigmoid(x),
        Activation::Relu => x.max(0.0),
    }
}

/// a'(x)·t (ReLU: t where x > 0, else 0, with no product).
fn act_jvp(a: Activation, x: f64, t: f64) -> f64 {
    match a {
        Activation::Swish => swish_d1(x) * t,
        Activation::Relu => {
            if x > 0.0 {
                t
            } else {
                0.0
            }
        }
    }
}

fn act_hess(a: Activation, x: f64, t: f64, g: f64) -> f64 {
    match a {
        Activation::Swish => swish_d2(x) * t * g,
        Activation::Relu => 0.0,
    }
}

fn values<T: Float>(a: Activation, x: &[T]) -> Vec<T> {
    elementwise(x.len(), |k| act_value(a, x[k].f64()))
}

fn jvps<T: Float>(a: Activation, x: &[T], t: &[T]) -> Vec<T> {
    elementwise(x.len(), |k| act_jvp(a, x[k].f64(), t[k].f64()))
}

fn hessians<T: Float>(a: Activation, x: &[T], t: &[T], g: &[T]) -> Vec<T> {
    elementwise(x.len(), |k| act_hess(a, x[k].f64(), t[k].f64(), g[k].f64()))
}

impl CustomOp1 for Act {
    fn name(&self) -> &'static str {
        "eosflow-activation"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = self.0;
        let out = unary!(s, l, "activation", |x| values(a, x));
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(&g.contiguous()?, ActJac(self.0))?))
    }
}

impl CustomOp2 for ActJac {
    fn name(&self) -> &'static str {
        "eosflow-activation-jvp"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, "activation jvp")?;
        let a = self.0;
        let out = binary!(s1, l1, s2, l2, "activation jvp", |x, t| jvps(a, x, t));
        Ok((out, l1.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, t: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = match self.0 {
            Activation::Relu => None,
            a => if_tracked(x, || x.apply_op3(t, &g, ActHess(a)))?,
        };
        let dt = if_tracked(t, || x.apply_op2(&g, ActJac(self.0)))?;
        Ok((dx, dt))
    }
}

impl CustomOp3 for ActHess {
    fn name(&self) -> &'static str {
        "eosflow-activation-hess"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, "activation hess")?;
        same_shape(l1, l3, "activation hess")?;
        let a = self.0;
        let out = ternary!(s1, l1, s2, l2, s3, l3, "activation hess", |x, t, g| hessians(a, x, t, g));
        Ok((out, l1.shape().clone()))
    }
}

/// The activation a, elementwise.
pub(crate) fn activation(x: &Tensor, a: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Act(a))
}

/// The tangent of [`activation`] at x along t: a'(x)·t.
pub(crate) fn activation_jvp(x: &Tensor, t: &Tensor, a: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&t.contiguous()?, ActJac(a))
}

/// Per-channel affine maps on (n, c, …) tensors, with the per-channel
/// coefficients as the rows of one small (r, c) tensor P:
/// [`Affine2`]: y = x·P₀ + P₁ (the BN affine, P = [γ; β]);
/// [`Affine3`]: y = t·P₀ + x·P₁ + P₂ (its tangent, P = [γ; γ̇; β̇]).
/// One tensor in the graph instead of four to six broadcast ops.
struct Affine2;
struct Affine3;

fn per_channel_rows<T: Float>(p: &[T], c: usize, rows: usize) -> Vec<Vec<f64>> {
    (0..rows).map(|r| p[r * c..(r + 1) * c].iter().map(|v| v.f64()).collect()).collect()
}

fn affine2<T: Float>(x: &[T], p: &[T], ch: Channels) -> Vec<T> {
    let r = per_channel_rows(p, ch.c, 2);
    ch.map(|c, k| x[k].f64() * r[0][c] + r[1][c])
}

fn affine3<T: Float>(x: &[T], t: &[T], p: &[T], ch: Channels) -> Vec<T> {
    let r = per_channel_rows(p, ch.c, 3);
    ch.map(|c, k| t[k].f64() * r[0][c] + x[k].f64() * r[1][c] + r[2][c])
}

fn rows_shape(l: &Layout, ch: Channels, rows: usize, name: &str) -> Result<()> {
    if l.shape().dims() != [rows, ch.c] {
        candle_core::bail!("{name}: coefficients {:?}, expected [{rows}, {}]", l.shape().dims(), ch.c);
    }
    Ok(())
}

/// Σ over all axes but 1 of a (n, c, …) tensor: (c,).
fn channel_sum(x: &Tensor) -> Result<Tensor> {
    let mut s = x.clone();
    for a in (0..x.rank()).rev().filter(|&a| a != 1) {
        s = s.sum(a)?;
    }
    Ok(s)
}

/// Row r of P as a tensor broadcastable against (n, c, …) of rank `rank`.
fn row(p: &Tensor, r: usize, rank: usize) -> Result<Tensor> {
    let mut shape = vec![1usize; rank];
    shape[1] = p.dim(1)?;
    p.get(r)?.reshape(shape)
}

impl CustomOp2 for Affine2 {
    fn name(&self) -> &'static str {
        "eosflow-affine"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ch = Channels::of(l1.shape())?;
        rows_shape(l2, ch, 2, "affine")?;
        Ok((binary!(s1, l1, s2, l2, "affine", |x, p| affine2(x, p, ch)), l1.shape().clone()))
    }
    // ⟨g, x·P₀ + P₁⟩: ∂x = g·P₀, ∂P = [Σ g·x; Σ g] per channel.
    fn bwd(&self, x: &Tensor, p: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if_tracked(x, || g.broadcast_mul(&row(p, 0, x.rank())?))?;
        let dp = if_tracked(p, || Tensor::stack(&[channel_sum(&(g * x)?)?, channel_sum(g)?], 0))?;
        Ok((dx, dp))
    }
}

impl CustomOp3 for Affine3 {
    fn name(&self) -> &'static str {
        "eosflow-affine-tangent"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        same_shape(l1, l2, "affine tangent")?;
        let ch = Channels::of(l1.shape())?;
        rows_shape(l3, ch, 3, "affine tangent")?;
        let out = ternary!(s1, l1, s2, l2, s3, l3, "affine tangent", |x, t, p| affine3(x, t, p, ch));
        Ok((out, l1.shape().clone()))
    }
    // ⟨g, t·P₀ + x·P₁ + P₂⟩: ∂x = g·P₁, ∂t = g·P₀, ∂P = [Σ g·t; Σ g·x; Σ g].
    fn bwd(
        &self,
        x: &Tensor,
        t: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = if_tracked(x, || g.broadcast_mul(&row(p, 1, x.rank())?))?;
        let dt = if_tracked(t, || g.broadcast_mul(&row(p, 0, x.rank())?))?;
        let dp =
            if_tracked(p, || Tensor::stack(&[channel_sum(&(g * t)?)?, channel_sum(&(g * x)?)?, channel_sum(g)?], 0))?;
        Ok((dx, dt, dp))
    }
}

/// The trainable BN affine y = x̂·γ + β per channel and its tangent
/// ṫ·γ + x̂·γ̇ + β̇ (each of ṫ, γ̇/β̇ may be absent), as fused ops.
pub(crate) fn affine_dual(
    xh: &Tensor,
    t: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    dgb: Option<(&Tensor, &Tensor)>,
) -> Result<(Tensor, Option<Tensor>)> {
    let xh = xh.contiguous()?;
    let y = xh.apply_op2(&Tensor::stack(&[gamma, beta], 0)?, Affine2)?;
    let zero = gamma.zeros_like()?;
    let t = match (t, dgb) {
        (Some(t), Some((dg, db))) => {
            Some(xh.apply_op3(&t.contiguous()?, &Tensor::stack(&[gamma, dg, db], 0)?, Affine3)?)
        }
        // x̂·γ̇ + β̇: x̂ stands in for t with a zero coefficient.
        (None, Some((dg, db))) => Some(xh.apply_op3(&xh, &Tensor::stack(&[&zero, dg, db], 0)?, Affine3)?),
        (Some(t), None) => Some(t.contiguous()?.apply_op2(&Tensor::stack(&[gamma, &zero], 0)?, Affine2)?),
        (None, None) => None,
    };
    Ok((y, t))
}

/// BN without affine over all axes but 1: x (n, c, …) ↦ x̂ (see the module
/// docs); exact derivatives of every order the HVP needs.
pub(crate) fn batch_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(BnNorm { eps })
}

/// The tangent of [`batch_norm`] at x along t: J(x)·t.
pub(crate) fn batch_norm_jvp(x: &Tensor, t: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&t.contiguous()?, BnJac { eps })
}

/// (n, c, …) ↦ (2, c): the rows μ and σ² of each channel (no gradient).
struct BnStats;

impl CustomOp1 for BnStats {
    fn name(&self) -> &'static str {
        "eosflow-bn-stats"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let ch = Channels::of(l.shape())?;
        Ok((unary!(s, l, "bn stats", |x| stats_rows(x, ch)), Shape::from((2, ch.c))))
    }
}

fn stats_rows<T: Float>(x: &[T], ch: Channels) -> Vec<T> {
    let st = stats(x, ch, 0.0);
    st.iter().map(|s| T::of(s.0)).chain(st.iter().map(|s| T::of(s.2))).collect()
}

/// Per channel (μ, σ²) of x (n, c, …) as two (c,) tensors: the statistics
/// [`batch_norm`] uses, computed the same way, in place.
pub(crate) fn channel_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let st = x.contiguous()?.apply_op1_no_bwd(&BnStats)?;
    Ok((st.get(0)?, st.get(1)?))
}

#[cfg(test)]
mod tests {
    //! The fused ops against the same formulas written in plain candle ops
    //! and differentiated by candle: values, tangents, and the gradients of
    //! ⟨R₁, y⟩ + ⟨R₂, ẏ⟩ in x and in the tangent (what the HVP's backward
    //! pass uses), for BN on 4-D and 2-D inputs and for Swish.
    use super::*;
    use candle_core::{Device, Var};
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn t(shape: &[usize], seed: u64, scale: f64, shift: f64) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                shift + scale * z
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn flat(x: &Tensor) -> Vec<f64> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn rel(a: &Tensor, b: &Tensor) -> f64 {
        let (a, b) = (flat(a), flat(b));
        let d: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
        d / b.iter().map(|y| y * y).sum::<f64>().sqrt()
    }

    /// BN and its tangent in candle ops over all axes but 1.
    fn bn_reference(x: &Tensor, dx: &Tensor, eps: f64) -> (Tensor, Tensor) {
        let axes: Vec<usize> = (0..x.rank()).filter(|&a| a != 1).collect();
        let mean = |v: &Tensor| {
            let mut m = v.clone();
            for &a in axes.iter().rev() {
                m = m.mean_keepdim(a).unwrap();
            }
            m
        };
        let xc = x.broadcast_sub(&mean(x)).unwrap();
        let s = (mean(&xc.sqr().unwrap()) + eps).unwrap().sqrt().unwrap().recip().unwrap();
        let y = xc.broadcast_mul(&s).unwrap();
        let tc = dx.broadcast_sub(&mean(dx)).unwrap();
        let dvar = (mean(&xc.mul(&tc).unwrap()) * 2.0).unwrap();
        let ds = (s.powf(3.0).unwrap().mul(&dvar).unwrap() * -0.5).unwrap();
        let ty = (tc.broadcast_mul(&s).unwrap() + xc.broadcast_mul(&ds).unwrap()).unwrap();
        (y, ty)
    }

    fn swish_reference(x: &Tensor, dx: &Tensor) -> (Tensor, Tensor) {
        let sig = ((x.affine(0.5, 0.0).unwrap().tanh().unwrap() + 1.0).unwrap() * 0.5).unwrap();
        let y = x.mul(&sig).unwrap();
        let d = sig.mul(&(x.mul(&sig.affine(-1.0, 1.0).unwrap()).unwrap() + 1.0).unwrap()).unwrap();
        (y, dx.mul(&d).unwrap())
    }

    type Pair = (Tensor, Tensor);

    fn check(
        name: &str,
        shape: &[usize],
        fused: impl Fn(&Tensor, &Tensor) -> Pair,
        reference: impl Fn(&Tensor, &Tensor) -> Pair,
    ) {
        // Inputs off-centre and scaled so that μ, σ ≠ 0, 1 matter.
        let x = Var::from_tensor(&t(shape, 1, 1.7, 0.4)).unwrap();
        let dx = Var::from_tensor(&t(shape, 2, 0.8, -0.3)).unwrap();
        let (r1, r2) = (t(shape, 3, 1.0, 0.0), t(shape, 4, 1.0, 0.0));
        let (yf, tf) = fused(&x, &dx);
        let (yr, tr) = reference(&x, &dx);
        // Sums over a channel of ≤ 160 terms in another order: ~1e2·ε.
        let tol = 1e3 * f64::EPSILON;
        assert!(rel(&yf, &yr) < tol, "{name}: value {:e}", rel(&yf, &yr));
        assert!(rel(&tf, &tr) < tol, "{name}: tangent {:e}", rel(&tf, &tr));
        let obj = |y: &Tensor, ty: &Tensor| {
            (y.mul(&r1).unwrap().sum_all().unwrap() + ty.mul(&r2).unwrap().sum_all().unwrap()).unwrap()
        };
        let gf = obj(&yf, &tf).backward().unwrap();
        let gr = obj(&yr, &tr).backward().unwrap();
        for (what, v) in [("x", &x), ("tangent", &dx)] {
            let (a, b) = (gf.get(v).unwrap(), gr.get(v).unwrap());
            assert!(rel(a, b) < tol, "{name}: gradient in {what}: {:e}", rel(a, b));
        }
    }

    #[test]
    fn batch_norm_matches_candle_autodiff_of_the_formula() {
        for eps in [0.0, 1e-5] {
            let fused = |x: &Tensor, dx: &Tensor| (batch_norm(x, eps).unwrap(), batch_norm_jvp(x, dx, eps).unwrap());
            check("bn 4-D", &[5, 3, 4, 2], fused, |x, dx| bn_reference(x, dx, eps));
            check("bn 2-D", &[7, 4], fused, |x, dx| bn_reference(x, dx, eps));
        }
    }

    #[test]
    fn swish_matches_candle_autodiff_of_the_formula() {
        let fused = |x: &Tensor, dx: &Tensor| {
            (activation(x, Activation::Swish).unwrap(), activation_jvp(x, dx, Activation::Swish).unwrap())
        };
        check("swish", &[6, 5, 3], fused, swish_reference);
    }

    #[test]
    fn relu_matches_candle_autodiff() {
        // candle's relu and the mask 1[x > 0] (no entry of the random input
        // is exactly 0, so the kink is never hit).
        let reference = |x: &Tensor, dx: &Tensor| {
            let mask = x.gt(0.0).unwrap().to_dtype(x.dtype()).unwrap();
            (x.relu().unwrap(), dx.mul(&mask).unwrap())
        };
        let fused = |x: &Tensor, dx: &Tensor| {
            (activation(x, Activation::Relu).unwrap(), activation_jvp(x, dx, Activation::Relu).unwrap())
        };
        check("relu", &[6, 5, 3], fused, reference);
    }

    #[test]
    fn affine_and_its_tangent_match_candle_autodiff() {
        // y = x̂·γ + β and ẏ = ṫ·γ + x̂·γ̇ + β̇ against broadcast ops, with
        // gradients in x̂, ṫ, γ, β (γ̇, β̇ are the direction: constants).
        let shape = [5, 3, 4, 2];
        let (x, dx) =
            (Var::from_tensor(&t(&shape, 11, 1.0, 0.2)).unwrap(), Var::from_tensor(&t(&shape, 12, 1.0, 0.0)).unwrap());
        let (g, b) =
            (Var::from_tensor(&t(&[3], 13, 1.0, 1.0)).unwrap(), Var::from_tensor(&t(&[3], 14, 1.0, 0.0)).unwrap());
        let (dg, db) = (t(&[3], 15, 1.0, 0.0), t(&[3], 16, 1.0, 0.0));
        let bc = |v: &Tensor| v.reshape((1, 3, 1, 1)).unwrap();
        let (r1, r2) = (t(&shape, 17, 1.0, 0.0), t(&shape, 18, 1.0, 0.0));
        for case in 0..3 {
            let (tt, dgb) = match case {
                0 => (Some(dx.as_tensor()), Some((&dg, &db))),
                1 => (None, Some((&dg, &db))),
                _ => (Some(dx.as_tensor()), None),
            };
            let (yf, tf) = affine_dual(&x, tt, &g, &b, dgb).unwrap();
            let yr = x.broadcast_mul(&bc(&g)).unwrap().broadcast_add(&bc(&b)).unwrap();
            let mut tr = x.zeros_like().unwrap();
            if let Some(tt) = tt {
                tr = (tr + tt.broadcast_mul(&bc(&g)).unwrap()).unwrap();
            }
            if let Some((dg, db)) = dgb {
                tr = (tr + x.broadcast_mul(&bc(dg)).unwrap().broadcast_add(&bc(db)).unwrap()).unwrap();
            }
            let tf = tf.unwrap();
            let tol = 64.0 * f64::EPSILON;
            assert!(rel(&yf, &yr) < tol && rel(&tf, &tr) < tol, "case {case}: values");
            let obj = |y: &Tensor, ty: &Tensor| {
                (y.mul(&r1).unwrap().sum_all().unwrap() + ty.mul(&r2).unwrap().sum_all().unwrap()).unwrap()
            };
            let (gf, gr) = (obj(&yf, &tf).backward().unwrap(), obj(&yr, &tr).backward().unwrap());
            for (what, v) in [("x̂", &x), ("ṫ", &dx), ("γ", &g), ("β", &b)] {
                match (gf.get(v), gr.get(v)) {
                    (Some(a), Some(b)) => {
                        assert!(rel(a, b) < 1e3 * f64::EPSILON, "case {case}: ∂{what} {:e}", rel(a, b))
                    }
                    (None, None) => {}
                    (a, b) => panic!("case {case}: ∂{what} present in one only ({} vs {})", a.is_some(), b.is_some()),
                }
            }
        }
    }

    #[test]
    fn stats_are_those_batch_norm_uses() {
        let x = t(&[4, 3, 5], 9, 2.0, 1.0);
        let (mu, var) = channel_stats(&x).unwrap();
        let s = (var + 0.0).unwrap().sqrt().unwrap().recip().unwrap().reshape((1, 3, 1)).unwrap();
        let y = x.broadcast_sub(&mu.reshape((1, 3, 1)).unwrap()).unwrap().broadcast_mul(&s).unwrap();
        assert!(rel(&y, &batch_norm(&x, 0.0).unwrap()) < 4.0 * f64::EPSILON);
    }
}
