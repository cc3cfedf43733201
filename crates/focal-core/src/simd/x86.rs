//! x86-64 levels: AVX-512 (16 lanes) and AVX2 + FMA (8 lanes).

use super::{ChunkKernel, F32v};
use crate::kernel::Chunk;
use std::arch::x86_64::*;

/// Runs a kernel with AVX-512 vectors.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/DQ/VL, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(crate) unsafe fn run_avx512<K: ChunkKernel>(kernel: &K, chunk: Chunk<'_>) -> f64 {
    kernel.run::<F32x16>(chunk)
}

/// Runs a kernel with AVX2 vectors.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn run_avx2<K: ChunkKernel>(kernel: &K, chunk: Chunk<'_>) -> f64 {
    kernel.run::<F32x8Avx>(chunk)
}

/// Sixteen lanes in a `__m512`.
#[derive(Clone, Copy)]
pub(crate) struct F32x16(__m512);

// SAFETY: only constructed inside `run_avx512`, which requires the features it uses. Every
// intrinsic below is an AVX-512 F/DQ instruction; loads and stores check their bounds first.
unsafe impl F32v for F32x16 {
    type Mask = __mmask16;
    const LANES: usize = 16;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_set1_ps(v) })
    }
    #[inline(always)]
    fn iota() -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe {
            _mm512_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0)
        })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        assert!(s.len() >= 16);
        // SAFETY: 16 elements are in bounds (checked above).
        F32x16(unsafe { _mm512_loadu_ps(s.as_ptr()) })
    }
    #[inline(always)]
    fn load_partial(s: &[f32]) -> Self {
        let n = s.len().min(16);
        let mask: __mmask16 = ((1u32 << n) - 1) as u16;
        // SAFETY: masked-off lanes are not read, the first n are in bounds.
        F32x16(unsafe { _mm512_maskz_loadu_ps(mask, s.as_ptr()) })
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        assert!(s.len() >= 16);
        // SAFETY: 16 elements are in bounds (checked above).
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32]) {
        let n = s.len().min(16);
        let mask: __mmask16 = ((1u32 << n) - 1) as u16;
        // SAFETY: masked-off lanes are not written, the first n are in bounds.
        unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), mask, self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_sqrt_ps(self.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_min_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_abs_ps(self.0) })
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe {
            _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(self.0), _mm512_set1_epi32(i32::MIN)))
        })
    }
    #[inline(always)]
    fn neg_abs_min(self, limit: Self) -> Self {
        // vrangeps: imm bits 1:0 = 10 (the smaller magnitude), bits 3:2 = 11 (sign bit set).
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_range_ps::<0b1110>(self.0, limit.0) })
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
    }
    #[inline(always)]
    fn pow2i(n: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe {
            let i = _mm512_cvtps_epi32(n.0);
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(i, _mm512_set1_epi32(127))))
        })
    }
    #[inline(always)]
    fn scale_pow2(self, n: Self) -> Self {
        // SAFETY: see the impl. vscalefps rounds into the subnormals and to 0 itself.
        F32x16(unsafe { _mm512_scalef_ps(self.0, n.0) })
    }
    #[inline(always)]
    fn frexp1(self) -> (Self, Self) {
        // SAFETY: see the impl.
        unsafe {
            let bits = _mm512_castps_si512(self.0);
            let mant =
                _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007f_ffff)), _mm512_set1_epi32(0x3f80_0000));
            let expo = _mm512_sub_epi32(_mm512_srli_epi32::<23>(bits), _mm512_set1_epi32(127));
            (F32x16(_mm512_castsi512_ps(mant)), F32x16(_mm512_cvtepi32_ps(expo)))
        }
    }
    #[inline(always)]
    fn lane_mask(index: usize) -> __mmask16 {
        1u16 << index
    }
    #[inline(always)]
    fn lt(self, o: Self) -> __mmask16 {
        // SAFETY: see the impl.
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn le(self, o: Self) -> __mmask16 {
        // SAFETY: see the impl.
        unsafe { _mm512_cmp_ps_mask::<_CMP_LE_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn eq(self, o: Self) -> __mmask16 {
        // SAFETY: see the impl.
        unsafe { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn ne(self, o: Self) -> __mmask16 {
        // SAFETY: see the impl.
        unsafe { _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn and(a: __mmask16, b: __mmask16) -> __mmask16 {
        a & b
    }
    #[inline(always)]
    fn select(m: __mmask16, a: Self, b: Self) -> Self {
        // SAFETY: see the impl.
        F32x16(unsafe { _mm512_mask_blend_ps(m, b.0, a.0) })
    }
    #[inline(always)]
    fn all_finite(self) -> bool {
        // SAFETY: see the impl. Class bits: QNaN 0x01, +inf 0x08, -inf 0x10, SNaN 0x80.
        unsafe { _mm512_fpclass_ps_mask::<0x99>(self.0) == 0 }
    }
    #[inline(always)]
    fn all_zero(self) -> bool {
        // SAFETY: see the impl.
        unsafe { _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(self.0, _mm512_setzero_ps()) == 0 }
    }
    #[inline(always)]
    fn prefetch(s: &[f32]) {
        // SAFETY: a prefetch reads nothing the program sees and cannot fault; `s` is a live slice.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().cast()) }
    }
    #[inline(always)]
    fn all_finite_nonpositive(self) -> bool {
        // Classes +0 (0x02), -0 (0x04) and negative finite (0x40).
        // SAFETY: see the impl.
        unsafe { _mm512_fpclass_ps_mask::<0x46>(self.0) == 0xffff }
    }
    type Acc = (__m512d, __m512d);
    #[inline(always)]
    fn acc_zero() -> Self::Acc {
        // SAFETY: see the impl.
        unsafe { (_mm512_setzero_pd(), _mm512_setzero_pd()) }
    }
    #[inline(always)]
    fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc {
        // SAFETY: see the impl.
        unsafe {
            let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v.0));
            let hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(v.0));
            (_mm512_add_pd(acc.0, lo), _mm512_add_pd(acc.1, hi))
        }
    }
    #[inline(always)]
    fn acc_sum(acc: Self::Acc) -> f64 {
        let mut lanes = [0.0f64; 16];
        // SAFETY: see the impl; 16 f64 fit in `lanes`.
        unsafe {
            _mm512_storeu_pd(lanes.as_mut_ptr(), acc.0);
            _mm512_storeu_pd(lanes.as_mut_ptr().add(8), acc.1);
        }
        pairwise16(&lanes)
    }
    #[inline(always)]
    fn max_lane(self) -> f32 {
        // SAFETY: see the impl.
        unsafe { _mm512_reduce_max_ps(self.0) }
    }
}

/// Eight lanes in a `__m256`.
#[derive(Clone, Copy)]
pub(crate) struct F32x8Avx(__m256);

#[inline(always)]
fn avx_tail_mask(n: usize) -> __m256i {
    // SAFETY: AVX2 is enabled wherever this type is used.
    unsafe {
        let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), iota)
    }
}

// SAFETY: only constructed inside `run_avx2`, which requires AVX2 and FMA. Loads and stores
// check their bounds first.
unsafe impl F32v for F32x8Avx {
    type Mask = __m256;
    const LANES: usize = 8;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_set1_ps(v) })
    }
    #[inline(always)]
    fn iota() -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0) })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        assert!(s.len() >= 8);
        // SAFETY: 8 elements are in bounds (checked above).
        F32x8Avx(unsafe { _mm256_loadu_ps(s.as_ptr()) })
    }
    #[inline(always)]
    fn load_partial(s: &[f32]) -> Self {
        // SAFETY: masked-off lanes are not read, the first s.len() are in bounds.
        F32x8Avx(unsafe { _mm256_maskload_ps(s.as_ptr(), avx_tail_mask(s.len().min(8))) })
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        assert!(s.len() >= 8);
        // SAFETY: 8 elements are in bounds (checked above).
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32]) {
        // SAFETY: masked-off lanes are not written, the first s.len() are in bounds.
        unsafe { _mm256_maskstore_ps(s.as_mut_ptr(), avx_tail_mask(s.len().min(8)), self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_div_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_sqrt_ps(self.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_min_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_xor_ps(_mm256_set1_ps(-0.0), self.0) })
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.0) })
    }
    #[inline(always)]
    fn pow2i(n: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe {
            let i = _mm256_cvtps_epi32(n.0);
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(i, _mm256_set1_epi32(127))))
        })
    }
    #[inline(always)]
    fn frexp1(self) -> (Self, Self) {
        // SAFETY: see the impl.
        unsafe {
            let bits = _mm256_castps_si256(self.0);
            let mant =
                _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)), _mm256_set1_epi32(0x3f80_0000));
            let expo = _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(127));
            (F32x8Avx(_mm256_castsi256_ps(mant)), F32x8Avx(_mm256_cvtepi32_ps(expo)))
        }
    }
    #[inline(always)]
    fn lt(self, o: Self) -> __m256 {
        // SAFETY: see the impl.
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn le(self, o: Self) -> __m256 {
        // SAFETY: see the impl.
        unsafe { _mm256_cmp_ps::<_CMP_LE_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn eq(self, o: Self) -> __m256 {
        // SAFETY: see the impl.
        unsafe { _mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn ne(self, o: Self) -> __m256 {
        // SAFETY: see the impl.
        unsafe { _mm256_cmp_ps::<_CMP_NEQ_UQ>(self.0, o.0) }
    }
    #[inline(always)]
    fn and(a: __m256, b: __m256) -> __m256 {
        // SAFETY: see the impl.
        unsafe { _mm256_and_ps(a, b) }
    }
    #[inline(always)]
    fn select(m: __m256, a: Self, b: Self) -> Self {
        // SAFETY: see the impl.
        F32x8Avx(unsafe { _mm256_blendv_ps(b.0, a.0, m) })
    }
    #[inline(always)]
    fn all_finite(self) -> bool {
        // SAFETY: see the impl. x - x is NaN exactly for NaN and infinite lanes.
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(_mm256_sub_ps(self.0, self.0), self.0)) == 0 }
    }
    #[inline(always)]
    fn all_zero(self) -> bool {
        // SAFETY: see the impl.
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(self.0, _mm256_setzero_ps())) == 0 }
    }
    #[inline(always)]
    fn prefetch(s: &[f32]) {
        // SAFETY: a prefetch reads nothing the program sees and cannot fault; `s` is a live slice.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().cast()) }
    }
    #[inline(always)]
    fn all_finite_nonpositive(self) -> bool {
        // SAFETY: see the impl.
        unsafe {
            let le0 = _mm256_cmp_ps::<_CMP_LE_OQ>(self.0, _mm256_setzero_ps());
            let ge_min = _mm256_cmp_ps::<_CMP_GE_OQ>(self.0, _mm256_set1_ps(f32::MIN));
            _mm256_movemask_ps(_mm256_and_ps(le0, ge_min)) == 0xff
        }
    }
    type Acc = (__m256d, __m256d);
    #[inline(always)]
    fn acc_zero() -> Self::Acc {
        // SAFETY: see the impl.
        unsafe { (_mm256_setzero_pd(), _mm256_setzero_pd()) }
    }
    #[inline(always)]
    fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc {
        // SAFETY: see the impl.
        unsafe {
            let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v.0));
            let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v.0));
            (_mm256_add_pd(acc.0, lo), _mm256_add_pd(acc.1, hi))
        }
    }
    #[inline(always)]
    fn acc_sum(acc: Self::Acc) -> f64 {
        let mut lanes = [0.0f64; 8];
        // SAFETY: see the impl; 8 f64 fit in `lanes`.
        unsafe {
            _mm256_storeu_pd(lanes.as_mut_ptr(), acc.0);
            _mm256_storeu_pd(lanes.as_mut_ptr().add(4), acc.1);
        }
        ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
    }
    #[inline(always)]
    fn max_lane(self) -> f32 {
        let mut lanes = [0.0f32; 8];
        self.store(&mut lanes);
        lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

/// Pairwise sum of 16 lanes in a fixed order.
#[inline(always)]
fn pairwise16(v: &[f64; 16]) -> f64 {
    let mut s = [0.0f64; 8];
    for i in 0..8 {
        s[i] = v[i] + v[i + 8];
    }
    ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
}
