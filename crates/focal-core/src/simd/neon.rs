//! aarch64 NEON level: 4 lanes.

use super::{ChunkKernel, F32v};
use crate::kernel::Chunk;
use std::arch::aarch64::*;

/// Runs a kernel with NEON vectors.
///
/// # Safety
/// The CPU must support NEON (every aarch64 Linux CPU does).
#[target_feature(enable = "neon")]
pub(crate) unsafe fn run_neon<K: ChunkKernel>(kernel: &K, chunk: Chunk<'_>) -> f64 {
    kernel.run::<F32x4>(chunk)
}

/// Four lanes in a `float32x4_t`.
#[derive(Clone, Copy)]
pub(crate) struct F32x4(float32x4_t);

// SAFETY: only constructed inside `run_neon`. Loads and stores check their bounds first.
unsafe impl F32v for F32x4 {
    type Mask = uint32x4_t;
    const LANES: usize = 4;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vdupq_n_f32(v) })
    }
    #[inline(always)]
    fn iota() -> Self {
        let v = [0.0f32, 1.0, 2.0, 3.0];
        Self::load(&v)
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        assert!(s.len() >= 4);
        // SAFETY: 4 elements are in bounds (checked above).
        F32x4(unsafe { vld1q_f32(s.as_ptr()) })
    }
    #[inline(always)]
    fn load_partial(s: &[f32]) -> Self {
        let mut tmp = [0.0f32; 4];
        let n = s.len().min(4);
        tmp[..n].copy_from_slice(&s[..n]);
        Self::load(&tmp)
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        assert!(s.len() >= 4);
        // SAFETY: 4 elements are in bounds (checked above).
        unsafe { vst1q_f32(s.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32]) {
        let mut tmp = [0.0f32; 4];
        self.store(&mut tmp);
        let n = s.len().min(4);
        s[..n].copy_from_slice(&tmp[..n]);
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vaddq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vsubq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vmulq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vdivq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vsqrtq_f32(self.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vfmaq_f32(c.0, self.0, b.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vmaxnmq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vminnmq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vabsq_f32(self.0) })
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vnegq_f32(self.0) })
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vrndnq_f32(self.0) })
    }
    #[inline(always)]
    fn pow2i(n: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe {
            let i = vcvtnq_s32_f32(n.0);
            vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(i, vdupq_n_s32(127))))
        })
    }
    #[inline(always)]
    fn frexp1(self) -> (Self, Self) {
        // SAFETY: see the impl.
        unsafe {
            let bits = vreinterpretq_u32_f32(self.0);
            let mant = vorrq_u32(vandq_u32(bits, vdupq_n_u32(0x007f_ffff)), vdupq_n_u32(0x3f80_0000));
            let expo = vsubq_s32(vreinterpretq_s32_u32(vshrq_n_u32::<23>(bits)), vdupq_n_s32(127));
            (F32x4(vreinterpretq_f32_u32(mant)), F32x4(vcvtq_f32_s32(expo)))
        }
    }
    #[inline(always)]
    fn lt(self, o: Self) -> uint32x4_t {
        // SAFETY: see the impl.
        unsafe { vcltq_f32(self.0, o.0) }
    }
    #[inline(always)]
    fn le(self, o: Self) -> uint32x4_t {
        // SAFETY: see the impl.
        unsafe { vcleq_f32(self.0, o.0) }
    }
    #[inline(always)]
    fn eq(self, o: Self) -> uint32x4_t {
        // SAFETY: see the impl.
        unsafe { vceqq_f32(self.0, o.0) }
    }
    #[inline(always)]
    fn ne(self, o: Self) -> uint32x4_t {
        // SAFETY: see the impl.
        unsafe { vmvnq_u32(vceqq_f32(self.0, o.0)) }
    }
    #[inline(always)]
    fn and(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
        // SAFETY: see the impl.
        unsafe { vandq_u32(a, b) }
    }
    #[inline(always)]
    fn select(m: uint32x4_t, a: Self, b: Self) -> Self {
        // SAFETY: see the impl.
        F32x4(unsafe { vbslq_f32(m, a.0, b.0) })
    }
    #[inline(always)]
    fn all_finite(self) -> bool {
        // SAFETY: see the impl. x - x is NaN exactly for NaN and infinite lanes; NaN != NaN.
        unsafe {
            let d = vsubq_f32(self.0, self.0);
            vminvq_u32(vceqq_f32(d, d)) != 0
        }
    }
    #[inline(always)]
    fn all_zero(self) -> bool {
        // SAFETY: see the impl.
        unsafe { vminvq_u32(vceqq_f32(self.0, vdupq_n_f32(0.0))) != 0 }
    }
    #[inline(always)]
    fn all_finite_nonpositive(self) -> bool {
        // SAFETY: see the impl.
        unsafe {
            let le0 = vcleq_f32(self.0, vdupq_n_f32(0.0));
            let ge_min = vcgeq_f32(self.0, vdupq_n_f32(f32::MIN));
            vminvq_u32(vandq_u32(le0, ge_min)) != 0
        }
    }
    type Acc = [f64; 4];
    #[inline(always)]
    fn acc_zero() -> [f64; 4] {
        [0.0; 4]
    }
    #[inline(always)]
    fn acc_add(acc: [f64; 4], v: Self) -> [f64; 4] {
        let mut lanes = [0.0f32; 4];
        v.store(&mut lanes);
        // A plain loop: `array::from_fn` is not always inlined into the kernels.
        let mut out = acc;
        for (o, l) in out.iter_mut().zip(lanes) {
            *o += l as f64;
        }
        out
    }
    #[inline(always)]
    fn acc_sum(v: [f64; 4]) -> f64 {
        (v[0] + v[2]) + (v[1] + v[3])
    }
    #[inline(always)]
    fn max_lane(self) -> f32 {
        // SAFETY: see the impl.
        unsafe { vmaxvq_f32(self.0) }
    }
}
