//! 2-D convolution without bias as one candle op per direction, computed
//! by im2col + matrix product over small tiles of examples.
//!
//! Three linear maps form a closed family under differentiation
//! (x: input, W: kernel, g: output-shaped):
//!
//! - `Conv`:          y  = conv(x, W)
//! - `ConvBwdData`:   x' = conv_Wᵀ(g), the adjoint of x ↦ conv(x, W)
//! - `ConvBwdFilter`: W' = Σ_examples g · im2col(x)ᵀ, the adjoint of W ↦ conv(x, W)
//!
//! Each is bilinear and its backward pass is made of the other two, so the
//! forward, tangent and backward passes of the HVP graph are exact and
//! differentiable to any order. A fourth op, `ConvTangent`, computes the
//! tangent conv(ẋ, W) + conv(x, Ẇ) for a constant Ẇ (the HVP's direction)
//! in one pass, its backward again made of the first two. candle's own f64
//! conv backward goes through a slow transposed convolution; these are a
//! product or two per tile.
//!
//! Memory and speed: each work item is a tile of consecutive examples (at
//! least 1024 output pixels, so the products are large enough to run near
//! peak) whose patch matrix lives in a per-thread buffer; nothing of the
//! size of the whole batch's patches is ever allocated. Tiles run on rayon.
//! The tiling and the order in which the kernel gradient's partial sums are
//! added depend on the shapes only, so results are the same bits for any
//! number of threads.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::kernels::{Float, binary, if_tracked, slice};

/// Shapes of one convolution: input (n, c, h, w), kernel (cout, c, k, k),
/// stride, zero padding, output (n, cout, oh, ow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

/// Output pixels per tile (at least): below this the products are too thin
/// to run at the machine's speed.
const TILE_COLUMNS: usize = 1024;
/// The kernel gradient is summed in this many fixed groups of tiles (then
/// the groups in order): parallel, deterministic, bounded memory.
const FILTER_GROUPS: usize = 16;

impl Geometry {
    fn new(x: (usize, usize, usize, usize), cout: usize, k: usize, stride: usize, pad: usize) -> Result<Self> {
        let (n, c, h, w) = x;
        if h + 2 * pad < k || w + 2 * pad < k || stride == 0 {
            candle_core::bail!("conv: a {k}×{k} kernel with padding {pad} does not fit a {h}×{w} input");
        }
        let (oh, ow) = (out_size(h, k, stride, pad), out_size(w, k, stride, pad));
        Ok(Geometry { n, c, h, w, cout, k, stride, pad, oh, ow })
    }
    fn pixels(&self) -> usize {
        self.oh * self.ow
    }
    fn patch_len(&self) -> usize {
        self.c * self.k * self.k
    }
    fn x_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn y_len(&self) -> usize {
        self.cout * self.pixels()
    }
    fn x_shape(&self) -> Shape {
        Shape::from((self.n, self.c, self.h, self.w))
    }
    fn y_shape(&self) -> Shape {
        Shape::from((self.n, self.cout, self.oh, self.ow))
    }
    fn kernel_shape(&self) -> Shape {
        Shape::from((self.cout, self.c, self.k, self.k))
    }
    /// Examples per tile.
    fn tile(&self) -> usize {
        TILE_COLUMNS.div_ceil(self.pixels()).clamp(1, self.n.max(1))
    }

    /// The patch matrix of the examples `xs` (e of them): (c·k·k, e·oh·ow),
    /// row-major, column e·oh·ow + (oy·ow + ox) the receptive field of
    /// output pixel (oy, ox) of example e; zero where it meets the padding.
    fn im2col<T: Float>(&self, xs: &[T], cols: &mut [T]) {
        let (l, width) = (self.pixels(), xs.len() / self.x_len() * self.pixels());
        let hw = self.h * self.w;
        for (e, xe) in xs.chunks_exact(self.x_len()).enumerate() {
            for ci in 0..self.c {
                let xc = &xe[ci * hw..][..hw];
                for ky in 0..self.k {
                    for kx in 0..self.k {
                        let row = (ci * self.k + ky) * self.k + kx;
                        let dst = &mut cols[row * width + e * l..][..l];
                        for (oy, d) in dst.chunks_exact_mut(self.ow).enumerate() {
                            let Some((iy, lo, hi)) = self.span(oy, ky, kx) else {
                                d.fill(T::ZERO);
                                continue;
                            };
                            d[..lo].fill(T::ZERO);
                            d[hi..].fill(T::ZERO);
                            let ix0 = lo * self.stride + kx - self.pad;
                            let src = &xc[iy * self.w..][..self.w];
                            if self.stride == 1 {
                                d[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                            } else {
                                for (j, v) in d[lo..hi].iter_mut().enumerate() {
                                    *v = src[ix0 + j * self.stride];
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Self::im2col`]: adds each patch entry to the input
    /// pixel it was read from.
    fn col2im_add<T: Float>(&self, cols: &[T], xs: &mut [T]) {
        let (l, width) = (self.pixels(), xs.len() / self.x_len() * self.pixels());
        let hw = self.h * self.w;
        for (e, xe) in xs.chunks_exact_mut(self.x_len()).enumerate() {
            for ci in 0..self.c {
                let xc = &mut xe[ci * hw..][..hw];
                for ky in 0..self.k {
                    for kx in 0..self.k {
                        let row = (ci * self.k + ky) * self.k + kx;
                        let src = &cols[row * width + e * l..][..l];
                        for (oy, s) in src.chunks_exact(self.ow).enumerate() {
                            let Some((iy, lo, hi)) = self.span(oy, ky, kx) else { continue };
                            let ix0 = lo * self.stride + kx - self.pad;
                            let dst = &mut xc[iy * self.w..][..self.w];
                            for (j, v) in s[lo..hi].iter().enumerate() {
                                dst[ix0 + j * self.stride] += *v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// For output row oy and kernel offset (ky, kx): the input row iy and
    /// the output columns lo..hi whose input column ox·stride + kx − pad
    /// lies inside the image (None when row iy is in the padding).
    #[inline]
    fn span(&self, oy: usize, ky: usize, kx: usize) -> Option<(usize, usize, usize)> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad).filter(|&iy| iy < self.h)?;
        // ox·stride + kx ≥ pad  and  ox·stride + kx < w + pad.
        let lo = self.pad.saturating_sub(kx).div_ceil(self.stride).min(self.ow);
        let hi = (self.w + self.pad).saturating_sub(kx).div_ceil(self.stride).clamp(lo, self.ow);
        Some((iy, lo, hi))
    }

    /// (e, cout, L) example-major ↔ (cout, e·L) channel-major for a tile.
    fn gather_channel_major<T: Float>(&self, ys: &[T], out: &mut [T]) {
        let (l, e) = (self.pixels(), ys.len() / self.y_len());
        for (ex, ye) in ys.chunks_exact(self.y_len()).enumerate() {
            for co in 0..self.cout {
                out[co * e * l + ex * l..][..l].copy_from_slice(&ye[co * l..][..l]);
            }
        }
    }
    fn scatter_example_major<T: Float>(&self, cm: &[T], ys: &mut [T]) {
        let (l, e) = (self.pixels(), ys.len() / self.y_len());
        for (ex, ye) in ys.chunks_exact_mut(self.y_len()).enumerate() {
            for co in 0..self.cout {
                ye[co * l..][..l].copy_from_slice(&cm[co * e * l + ex * l..][..l]);
            }
        }
    }

    /// conv(x, W): per tile, Y = W (cout × ckk) · cols (ckk × e·L).
    fn forward<T: Float>(&self, x: &[T], kernel: &[T]) -> Vec<T> {
        self.forward_sum(&[(x, kernel)])
    }

    /// Σ_i conv(x_i, W_i) in one pass: per tile, each term's im2col and
    /// product accumulate into the same output (the tangent conv(ẋ, W) +
    /// conv(x, Ẇ) without the two intermediate tensors and the add).
    fn forward_sum<T: Float>(&self, terms: &[(&[T], &[T])]) -> Vec<T> {
        let (tile, pl, yl, xl) = (self.tile(), self.patch_len(), self.y_len(), self.x_len());
        let mut y = vec![T::default(); self.n * yl];
        y.par_chunks_mut(tile * yl).enumerate().for_each_init(
            || (Vec::new(), Vec::new()),
            |(cols, buf), (ti, ys)| {
                let e = ys.len() / yl;
                let width = e * self.pixels();
                let direct = e == 1;
                if !direct {
                    buf.resize(self.cout * width, T::default());
                }
                for (i, (x, kernel)) in terms.iter().enumerate() {
                    let xs = &x[ti * tile * xl..][..e * xl];
                    cols.resize(pl * width, T::default());
                    self.im2col(xs, cols);
                    let dst: &mut [T] = if direct { ys } else { buf };
                    matmul(dst, kernel, false, cols, false, self.cout, pl, width, i > 0);
                }
                if !direct {
                    self.scatter_example_major(buf, ys);
                }
            },
        );
        y
    }

    /// The adjoint in x: per tile, cols = Wᵀ (ckk × cout) · G (cout × e·L),
    /// then col2im.
    fn backward_data<T: Float>(&self, g: &[T], kernel: &[T]) -> Vec<T> {
        let (tile, pl, yl) = (self.tile(), self.patch_len(), self.y_len());
        let mut dx = vec![T::default(); self.n * self.x_len()];
        dx.par_chunks_mut(tile * self.x_len()).zip(g.par_chunks(tile * yl)).for_each_init(
            || (Vec::new(), Vec::new()),
            |(cols, buf), (dxs, gs)| {
                let width = gs.len() / yl * self.pixels();
                cols.resize(pl * width, T::default());
                let gm: &[T] = if gs.len() == yl {
                    gs
                } else {
                    buf.resize(self.cout * width, T::default());
                    self.gather_channel_major(gs, buf);
                    buf
                };
                matmul(cols, kernel, true, gm, false, pl, self.cout, width, false);
                self.col2im_add(cols, dxs);
            },
        );
        dx
    }

    /// The adjoint in W: Σ over tiles of G (cout × e·L) · colsᵀ (e·L × ckk),
    /// summed within [`FILTER_GROUPS`] fixed groups of tiles, then the
    /// groups in order.
    fn backward_filter<T: Float>(&self, x: &[T], g: &[T]) -> Vec<T> {
        let (tile, pl, yl, xl) = (self.tile(), self.patch_len(), self.y_len(), self.x_len());
        let tiles = self.n.div_ceil(tile);
        let per_group = tiles.div_ceil(FILTER_GROUPS).max(1);
        let groups = tiles.div_ceil(per_group);
        let partials: Vec<Vec<T>> = (0..groups)
            .into_par_iter()
            .map(|gi| {
                let (mut cols, mut buf) = (Vec::new(), Vec::new());
                let mut dw = vec![T::default(); self.cout * pl];
                for ti in gi * per_group..((gi + 1) * per_group).min(tiles) {
                    let (a, b) = (ti * tile, ((ti + 1) * tile).min(self.n));
                    let (xs, gs) = (&x[a * xl..b * xl], &g[a * yl..b * yl]);
                    let width = (b - a) * self.pixels();
                    cols.resize(pl * width, T::default());
                    self.im2col(xs, &mut cols);
                    let gm: &[T] = if b - a == 1 {
                        gs
                    } else {
                        buf.resize(self.cout * width, T::default());
                        self.gather_channel_major(gs, &mut buf);
                        &buf
                    };
                    matmul(&mut dw, gm, false, &cols, true, self.cout, width, pl, ti > gi * per_group);
                }
                dw
            })
            .collect();
        let mut it = partials.into_iter();
        let mut dw = it.next().unwrap_or_else(|| vec![T::default(); self.cout * pl]);
        for p in it {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        dw
    }
}

/// dst (m × n) = op(a) · op(b) (+ dst if `accumulate`), all row-major;
/// op(a) is m × k (stored k × m when `ta`), op(b) is k × n (stored n × k
/// when `tb`). Single-threaded: the callers parallelise over tiles.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Float>(
    dst: &mut [T],
    a: &[T],
    ta: bool,
    b: &[T],
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    assert!(dst.len() >= m * n && a.len() >= m * k && b.len() >= k * n, "matmul: buffers too small");
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above bound every index gemm reads or writes
    // (row-major strides of matrices of the stated sizes).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// y = conv(x, W): inputs (x, W), output (n, cout, oh, ow).
struct Conv(Geometry);
/// x' = conv_Wᵀ(g): inputs (g, W), output shaped like x.
struct ConvBwdData(Geometry);
/// W' = adjoint of W ↦ conv(x, W) applied to g: inputs (x, g), output
/// shaped like W.
struct ConvBwdFilter(Geometry);

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "eosflow-conv"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        Ok((binary!(s1, l1, s2, l2, "conv", |x, w| g.forward(x, w)), g.y_shape()))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, gy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gy = gy.contiguous()?;
        let dx = if_tracked(x, || gy.apply_op2(w, ConvBwdData(self.0)))?;
        let dw = if_tracked(w, || x.apply_op2(&gy, ConvBwdFilter(self.0)))?;
        Ok((dx, dw))
    }
}

impl CustomOp2 for ConvBwdData {
    fn name(&self) -> &'static str {
        "eosflow-conv-bwd-data"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        Ok((binary!(s1, l1, s2, l2, "conv backward (data)", |gy, w| g.backward_data(gy, w)), g.x_shape()))
    }
    // ⟨R, conv_Wᵀ(g)⟩ = ⟨conv(R, W), g⟩ = ⟨W, filter(R, g)⟩.
    fn bwd(&self, gy: &Tensor, w: &Tensor, _res: &Tensor, r: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let r = r.contiguous()?;
        let dg = if_tracked(gy, || r.apply_op2(w, Conv(self.0)))?;
        let dw = if_tracked(w, || r.apply_op2(gy, ConvBwdFilter(self.0)))?;
        Ok((dg, dw))
    }
}

impl CustomOp2 for ConvBwdFilter {
    fn name(&self) -> &'static str {
        "eosflow-conv-bwd-filter"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        Ok((binary!(s1, l1, s2, l2, "conv backward (filter)", |x, gy| g.backward_filter(x, gy)), g.kernel_shape()))
    }
    // ⟨R, filter(x, g)⟩ = ⟨conv(x, R), g⟩ = ⟨x, conv_Rᵀ(g)⟩.
    fn bwd(&self, x: &Tensor, gy: &Tensor, _res: &Tensor, r: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let r = r.contiguous()?;
        let dx = if_tracked(x, || gy.apply_op2(&r, ConvBwdData(self.0)))?;
        let dg = if_tracked(gy, || x.apply_op2(&r, Conv(self.0)))?;
        Ok((dx, dg))
    }
}

/// The tangent of a convolution in both arguments, ẏ = conv(ẋ, W) +
/// conv(x, Ẇ), as one op on (x, ẋ, W) with a constant Ẇ held by the op
/// (candle's custom ops take at most three inputs; Ẇ's storage is read in
/// place).
struct ConvTangent {
    g: Geometry,
    dw: Tensor,
}

impl CustomOp3 for ConvTangent {
    fn name(&self) -> &'static str {
        "eosflow-conv-tangent"
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
        let (g, op) = (self.g, "conv tangent");
        let (dw_storage, l4) = self.dw.storage_and_layout();
        let Storage::Cpu(s4) = &*dw_storage else { candle_core::bail!("{op}: Ẇ is not on the CPU") };
        let out = match (s1, s2, s3, s4) {
            (CpuStorage::F64(x), CpuStorage::F64(xd), CpuStorage::F64(w), CpuStorage::F64(dw)) => {
                let (x, xd, w, dw) = (slice(x, l1, op)?, slice(xd, l2, op)?, slice(w, l3, op)?, slice(dw, l4, op)?);
                CpuStorage::F64(g.forward_sum(&[(xd, w), (x, dw)]))
            }
            (CpuStorage::F32(x), CpuStorage::F32(xd), CpuStorage::F32(w), CpuStorage::F32(dw)) => {
                let (x, xd, w, dw) = (slice(x, l1, op)?, slice(xd, l2, op)?, slice(w, l3, op)?, slice(dw, l4, op)?);
                CpuStorage::F32(g.forward_sum(&[(xd, w), (x, dw)]))
            }
            _ => candle_core::bail!("{op}: all inputs f32 or all f64"),
        };
        Ok((out, g.y_shape()))
    }
    // ⟨R, conv(ẋ, W) + conv(x, Ẇ)⟩: ∂x = conv_Ẇᵀ(R), ∂ẋ = conv_Wᵀ(R),
    // ∂W = filter(ẋ, R); Ẇ is a constant.
    fn bwd(
        &self,
        x: &Tensor,
        xd: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        r: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let r = r.contiguous()?;
        let dx = if_tracked(x, || r.apply_op2(&self.dw, ConvBwdData(self.g)))?;
        let dxd = if_tracked(xd, || r.apply_op2(w, ConvBwdData(self.g)))?;
        let dw = if_tracked(w, || xd.apply_op2(&r, ConvBwdFilter(self.g)))?;
        Ok((dx, dxd, dw))
    }
}

/// The tangent conv(ẋ, W) + conv(x, Ẇ) of [`conv2d`] at (x, W) along
/// (ẋ, Ẇ). One pass and one tensor when Ẇ is a constant (the HVP's
/// direction); two convolutions and an add when Ẇ is itself differentiated.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use eosflow_nn::conv::{conv2d, conv2d_tangent};
/// let x = Tensor::arange(0.0, 18.0, &Device::Cpu)?.reshape((1, 2, 3, 3))?;
/// let xd = x.sqr()?;
/// let w = Tensor::ones((1, 2, 3, 3), DType::F64, &Device::Cpu)?;
/// let wd = (w.clone() * 0.5)?;
/// let t = conv2d_tangent(&x, &xd, &w, &wd, 1, 1)?;
/// let two = (conv2d(&xd, &w, 1, 1)? + conv2d(&x, &wd, 1, 1)?)?;
/// assert_eq!(t.flatten_all()?.to_vec1::<f64>()?, two.flatten_all()?.to_vec1::<f64>()?);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d_tangent(x: &Tensor, xd: &Tensor, w: &Tensor, dw: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    if x.dims() != xd.dims() || w.dims() != dw.dims() {
        candle_core::bail!(
            "conv tangent: ẋ {:?} and Ẇ {:?} must have the shapes of x {:?} and W {:?}",
            xd.dims(),
            dw.dims(),
            x.dims(),
            w.dims()
        );
    }
    if dw.track_op() {
        return conv2d(xd, w, stride, pad)? + conv2d(x, dw, stride, pad)?;
    }
    let g = geometry(x, w, stride, pad)?;
    x.contiguous()?.apply_op3(&xd.contiguous()?, &w.contiguous()?, ConvTangent { g, dw: dw.contiguous()? })
}

/// The geometry of conv(x, kernel), or an error if they do not fit.
fn geometry(x: &Tensor, kernel: &Tensor, stride: usize, pad: usize) -> Result<Geometry> {
    let (cout, c, k, k2) = kernel.dims4()?;
    let dims = x.dims4()?;
    if dims.1 != c || k != k2 {
        candle_core::bail!("conv: input {:?} and kernel {:?} do not match", x.dims(), kernel.dims());
    }
    Geometry::new(dims, cout, k, stride, pad)
}

/// Output size of a convolution along one axis of size s.
fn out_size(s: usize, k: usize, stride: usize, pad: usize) -> usize {
    (s + 2 * pad - k) / stride + 1
}

/// conv2d(x, kernel) without bias, stride `stride`, zero padding `pad`:
/// x (n, c, h, w), kernel (cout, c, k, k) → (n, cout, oh, ow), with
/// oh = ⌊(h + 2·pad − k)/stride⌋ + 1. Equal to candle's
/// `conv2d(kernel, pad, stride, 1, 1)` up to summation order; its
/// derivatives of every order are exact (see the module docs).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::ones((1, 1, 3, 3), candle_core::DType::F64, &Device::Cpu)?;
/// let k = Tensor::ones((1, 1, 3, 3), candle_core::DType::F64, &Device::Cpu)?;
/// // Zero padding 1: the centre sees all 9 pixels, a corner 4.
/// let y = eosflow_nn::conv::conv2d(&x, &k, 1, 1)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f64>()?, [4., 6., 4., 6., 9., 6., 4., 6., 4.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d(x: &Tensor, kernel: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let g = geometry(x, kernel, stride, pad)?;
    x.contiguous()?.apply_op2(&kernel.contiguous()?, Conv(g))
}
