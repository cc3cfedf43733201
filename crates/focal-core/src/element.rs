//! Element types accepted as inputs and outputs: `f32`, `f64`, `f16` and `bf16`.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A floating-point element type. Half types are widened to `f32` for the math; `f64` inputs
/// are computed in `f64` (the reference path), since narrowing them would lose what the caller
/// asked for.
pub trait Element:
    Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + bytemuck::Pod + sealed::Sealed + 'static
{
    /// Name used in benches and messages (`"f32"`, `"bf16"`...).
    const NAME: &'static str;
    /// Bytes per element.
    const BYTES: usize;
    /// Widen (or round, for `f64`) to `f32`.
    fn to_f32(self) -> f32;
    /// Round an `f32` to this type (round to nearest even for the half types).
    fn from_f32(v: f32) -> Self;
    /// Widen to `f64` exactly.
    fn to_f64(self) -> f64;
    /// Round an `f64` to this type.
    fn from_f64(v: f64) -> Self;
    /// Widens `src` into `dst` (same length).
    fn slice_to_f32(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
    /// Rounds `src` into `dst` (same length).
    fn slice_from_f32(src: &[f32], dst: &mut [Self]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = Self::from_f32(*s);
        }
    }
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    const BYTES: usize = 4;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    const BYTES: usize = 8;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl Element for f16 {
    const NAME: &'static str = "f16";
    const BYTES: usize = 2;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn slice_to_f32(src: &[Self], dst: &mut [f32]) {
        // half's slice conversion uses F16C / NEON where the CPU has them.
        src.convert_to_f32_slice(dst)
    }
    fn slice_from_f32(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src)
    }
}

impl Element for bf16 {
    const NAME: &'static str = "bf16";
    const BYTES: usize = 2;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
    fn slice_to_f32(src: &[Self], dst: &mut [f32]) {
        // half's slice conversion uses F16C / NEON where the CPU has them.
        src.convert_to_f32_slice(dst)
    }
    fn slice_from_f32(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src)
    }
}
