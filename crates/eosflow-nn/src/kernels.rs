//! Plumbing shared by eosflow-nn's candle custom ops (`conv`, `fused`):
//! the element types they run in, contiguous slices of their inputs, the
//! f32/f64 dispatch of one-, two- and three-input ops, and gradients only
//! for inputs that need them.

use candle_core::{Layout, Result, Tensor};

/// f32 and f64, the element types the custom ops run in.
pub(crate) trait Float: Copy + Default + std::ops::AddAssign + Send + Sync + 'static {
    const ONE: Self;
    const ZERO: Self;
    fn f64(self) -> f64;
    fn of(v: f64) -> Self;
}
impl Float for f64 {
    const ONE: f64 = 1.0;
    const ZERO: f64 = 0.0;
    fn f64(self) -> f64 {
        self
    }
    fn of(v: f64) -> f64 {
        v
    }
}
impl Float for f32 {
    const ONE: f32 = 1.0;
    const ZERO: f32 = 0.0;
    fn f64(self) -> f64 {
        self as f64
    }
    fn of(v: f64) -> f32 {
        v as f32
    }
}

/// The contiguous entries of a custom op's input.
pub(crate) fn slice<'a, T>(v: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op} needs contiguous inputs"),
    }
}

/// The gradient of `arg` only when something upstream needs it (the
/// tangent pass's conv(x, Ẇ) has a constant Ẇ: skipping its kernel
/// gradient saves one product per layer).
pub(crate) fn if_tracked(arg: &Tensor, f: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
    if arg.track_op() { f().map(Some) } else { Ok(None) }
}

pub(crate) fn same_shape(l1: &Layout, l2: &Layout, name: &str) -> Result<()> {
    if l1.shape() != l2.shape() {
        candle_core::bail!("{name}: shapes {:?} and {:?} differ", l1.shape().dims(), l2.shape().dims());
    }
    Ok(())
}

/// Runs `$f` on the input's slice in f32 or f64 and wraps the result.
macro_rules! unary {
    ($s:expr, $l:expr, $name:expr, $f:expr) => {
        match $s {
            candle_core::CpuStorage::F64(a) => candle_core::CpuStorage::F64($f($crate::kernels::slice(a, $l, $name)?)),
            candle_core::CpuStorage::F32(a) => candle_core::CpuStorage::F32($f($crate::kernels::slice(a, $l, $name)?)),
            _ => candle_core::bail!("{}: f32 or f64 only", $name),
        }
    };
}

macro_rules! binary {
    ($s1:expr, $l1:expr, $s2:expr, $l2:expr, $name:expr, $f:expr) => {
        match ($s1, $s2) {
            (candle_core::CpuStorage::F64(a), candle_core::CpuStorage::F64(b)) => candle_core::CpuStorage::F64($f(
                $crate::kernels::slice(a, $l1, $name)?,
                $crate::kernels::slice(b, $l2, $name)?,
            )),
            (candle_core::CpuStorage::F32(a), candle_core::CpuStorage::F32(b)) => candle_core::CpuStorage::F32($f(
                $crate::kernels::slice(a, $l1, $name)?,
                $crate::kernels::slice(b, $l2, $name)?,
            )),
            _ => candle_core::bail!("{}: both inputs f32 or both f64", $name),
        }
    };
}

macro_rules! ternary {
    ($s1:expr, $l1:expr, $s2:expr, $l2:expr, $s3:expr, $l3:expr, $name:expr, $f:expr) => {
        match ($s1, $s2, $s3) {
            (candle_core::CpuStorage::F64(a), candle_core::CpuStorage::F64(b), candle_core::CpuStorage::F64(c)) => {
                candle_core::CpuStorage::F64($f(
                    $crate::kernels::slice(a, $l1, $name)?,
                    $crate::kernels::slice(b, $l2, $name)?,
                    $crate::kernels::slice(c, $l3, $name)?,
                ))
            }
            (candle_core::CpuStorage::F32(a), candle_core::CpuStorage::F32(b), candle_core::CpuStorage::F32(c)) => {
                candle_core::CpuStorage::F32($f(
                    $crate::kernels::slice(a, $l1, $name)?,
                    $crate::kernels::slice(b, $l2, $name)?,
                    $crate::kernels::slice(c, $l3, $name)?,
                ))
            }
            _ => candle_core::bail!("{}: all inputs f32 or all f64", $name),
        }
    };
}

pub(crate) use {binary, ternary, unary};
