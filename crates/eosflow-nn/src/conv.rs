//! 2-D convolution as im2col + matrix product, with im2col and its adjoint
//! col2im as candle custom ops whose backward passes are each other.
//!
//! candle's own conv2d backward goes through a transposed convolution that
//! is slow on the CPU in f64. Here conv(x, W) = reshape(im2col(x) · Wᵀ):
//! the product is candle's (gemm, differentiable to any order) and im2col
//! is linear, so its derivative is its adjoint col2im, whose derivative is
//! im2col again. The forward pass, the tangent pass and the backward pass of
//! the HVP graph therefore all stay differentiable and exact.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// Shapes of one convolution: input (n, c, h, w), square kernel k, stride,
/// zero padding, output (oh, ow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn patches(&self) -> usize {
        self.oh * self.ow
    }
    fn patch_len(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Calls `f(col_index, x_index)` for every entry of one example's
    /// im2col matrix (L × c·k·k, row-major) that reads the input (padding
    /// entries are skipped); x_index is within the example's (c, h, w).
    #[inline]
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let (k, pl) = (self.k, self.patch_len());
        for oy in 0..self.oh {
            for ox in 0..self.ow {
                let row = (oy * self.ow + ox) * pl;
                for ci in 0..self.c {
                    for ky in 0..k {
                        let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox * self.stride + kx) as isize - self.pad as isize;
                            if ix < 0 || ix >= self.w as isize {
                                continue;
                            }
                            f(row + (ci * k + ky) * k + kx, (ci * self.h + iy as usize) * self.w + ix as usize);
                        }
                    }
                }
            }
        }
    }
}

fn contiguous<'a, T>(v: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op} needs a contiguous input"),
    }
}

/// (n, c, h, w) → (n, oh·ow, c·k·k): each row one receptive field, zero
/// where it overlaps the padding.
struct Im2Col(Geometry);
/// The adjoint of [`Im2Col`]: (n, oh·ow, c·k·k) → (n, c, h, w), summing
/// the entries that read the same input pixel.
struct Col2Im(Geometry);

fn im2col<T: Copy + Default>(g: &Geometry, x: &[T]) -> Vec<T> {
    let (per_x, per_col) = (g.c * g.h * g.w, g.patches() * g.patch_len());
    let mut out = vec![T::default(); g.n * per_col];
    for (xe, oe) in x.chunks_exact(per_x).zip(out.chunks_exact_mut(per_col)) {
        g.for_each(|ci, xi| oe[ci] = xe[xi]);
    }
    out
}

fn col2im<T: Copy + Default + std::ops::AddAssign>(g: &Geometry, cols: &[T]) -> Vec<T> {
    let (per_x, per_col) = (g.c * g.h * g.w, g.patches() * g.patch_len());
    let mut out = vec![T::default(); g.n * per_x];
    for (ce, oe) in cols.chunks_exact(per_col).zip(out.chunks_exact_mut(per_x)) {
        g.for_each(|ci, xi| oe[xi] += ce[ci]);
    }
    out
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "eosflow-im2col"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let shape = Shape::from((g.n, g.patches(), g.patch_len()));
        Ok(match s {
            CpuStorage::F64(v) => (CpuStorage::F64(im2col(g, contiguous(v, l, "im2col")?)), shape),
            CpuStorage::F32(v) => (CpuStorage::F32(im2col(g, contiguous(v, l, "im2col")?)), shape),
            _ => candle_core::bail!("im2col: f32 or f64 only"),
        })
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "eosflow-col2im"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let shape = Shape::from((g.n, g.c, g.h, g.w));
        Ok(match s {
            CpuStorage::F64(v) => (CpuStorage::F64(col2im(g, contiguous(v, l, "col2im")?)), shape),
            CpuStorage::F32(v) => (CpuStorage::F32(col2im(g, contiguous(v, l, "col2im")?)), shape),
            _ => candle_core::bail!("col2im: f32 or f64 only"),
        })
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

/// Output size of a convolution along one axis of size s.
pub(crate) fn out_size(s: usize, k: usize, stride: usize, pad: usize) -> usize {
    (s + 2 * pad - k) / stride + 1
}

/// The im2col matrix of x for a k×k kernel: (n, oh·ow, c·k·k).
pub(crate) fn patches(x: &Tensor, k: usize, stride: usize, pad: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (out_size(h, k, stride, pad), out_size(w, k, stride, pad));
    let g = Geometry { n, c, h, w, k, stride, pad, oh, ow };
    x.contiguous()?.apply_op1(Im2Col(g))
}

/// conv2d from patches: cols (n, oh·ow, c·k·k) and a kernel (cout, c, k, k)
/// → (n, cout, oh, ow).
pub(crate) fn conv_from_patches(cols: &Tensor, kernel: &Tensor, oh: usize, ow: usize) -> Result<Tensor> {
    let (n, l, pl) = cols.dims3()?;
    let cout = kernel.dim(0)?;
    let y = cols.reshape((n * l, pl))?.matmul(&kernel.reshape((cout, pl))?.t()?)?;
    y.reshape((n, l, cout))?.transpose(1, 2)?.contiguous()?.reshape((n, cout, oh, ow))
}

/// conv2d(x, kernel) without bias, by im2col + matrix product; equal to
/// candle's `conv2d(kernel, pad, stride, 1, 1)` up to summation order.
pub fn conv2d(x: &Tensor, kernel: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let k = kernel.dim(2)?;
    conv_from_patches(&patches(x, k, stride, pad)?, kernel, out_size(h, k, stride, pad), out_size(w, k, stride, pad))
}
