//! Vectorised `exp`, `log` and `log1p`, accurate to about one ulp in `f32`.
//!
//! `exp` reduces to `r` in `[-ln2/2, ln2/2]` and evaluates `1 + r + r^2 Q(r)`; `log1p` uses
//! `log(1 + e) = 2 atanh(z)`, `z = e / (2 + e)` at most 1/3 here, so no cancellation occurs.
//! Both polynomials are near-minimax fits of the relative error made by
//! `tools/fit_polynomials.py`, of degree 3: at most 4.4e-7 (exp) and 2.0e-7 (log1p) relative
//! error in exact arithmetic. Degree 4 would give 1e-8 at 6% more time in the fused kernels;
//! the kernels' stated accuracy (1e-5 relative per element) leaves room for degree 3.

use super::F32v;

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that `n * LN2_HI` is exact for |n| < 2^9 (Cody and Waite), for `log`.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `exp(x)` rounds to 0 in `f32` (subnormal results above it are kept).
const EXP_MIN: f32 = -104.0;

/// `e^x` for finite `x <= 88`, subnormal results included, 0 below -104. Kernels only call it
/// on finite, non-positive arguments (non-finite inputs take the scalar path).
#[inline(always)]
pub(crate) fn exp<V: F32v>(x: V) -> V {
    exp_clamped(x.max(V::splat(EXP_MIN)))
}

/// `e^-|x|` for finite `x`: the first pass of every sigmoid kernel. That pass is bound by the
/// length of its chain of dependent operations (load of `x`, exp, the division of [`log1p_z`])
/// more than by its operation count: the out-of-order core cannot hold enough vectors in flight
/// to hide it. So the clamp and the sign are one operation where the level has one
/// ([`F32v::neg_abs_min`]), and the polynomial is evaluated with a shorter chain (below).
#[inline(always)]
pub(crate) fn exp_neg_abs<V: F32v>(x: V) -> V {
    exp_clamped(x.neg_abs_min(V::splat(-EXP_MIN)))
}

/// `e^x` for `x` in `[-104, 88]`.
#[inline(always)]
fn exp_clamped<V: F32v>(xc: V) -> V {
    let n = xc.mul(V::splat(LOG2E)).round();
    // One fused step: the f32 ln 2 is 1.9e-9 off, so for |n| <= 150 the reduced argument is
    // within 3e-7 absolute, a relative error of at most 3e-7 in the result (only where the
    // result is below 2^-100; 1e-8 for |x| < 5).
    let r = n.mul_add(V::splat(-std::f32::consts::LN_2), xc);
    // `1 + r + r^2 Q(r)`, `Q` of degree 3 in Estrin's form, with `1 + r` added beside it rather
    // than after it: the same operations as Horner's form, with a dependent chain two FMAs and an
    // addition shorter (see [`exp_neg_abs`] for why that is time).
    let r2 = r.mul(r);
    let hi = V::splat(8.188_861e-3).mul_add(r, V::splat(4.182_407e-2));
    let lo = V::splat(1.666_811_3e-1).mul_add(r, V::splat(4.999_980_6e-1));
    let q = hi.mul_add(r2, lo);
    q.mul_add(r2, r.add(V::splat(1.0))).scale_pow2(n)
}

/// `2 atanh(z) / z` as a polynomial in `w = z^2`, for `w <= 1/9` (the fitted coefficients of
/// `atanh(z) / z`, doubled exactly).
#[inline(always)]
fn atanh_series_x2<V: F32v>(w: V) -> V {
    let mut p = V::splat(2.0 * 1.708_619_3e-1);
    p = p.mul_add(w, V::splat(2.0 * 1.979_916_8e-1));
    p = p.mul_add(w, V::splat(2.0 * 3.333_782e-1));
    p.mul_add(w, V::splat(2.0 * 9.999_998e-1))
}

/// `log(1 + e)` for `e` in `[0, 1]`, given `z = e / (2 + e)`.
#[inline(always)]
pub(crate) fn log1p_from_z<V: F32v>(z: V) -> V {
    z.mul(atanh_series_x2(z.mul(z)))
}

/// For `e` in `[0, 1]`: `z = e / (2 + e)`, the argument of [`log1p_from_z`] (at most 1/3).
#[inline(always)]
pub(crate) fn log1p_z<V: F32v>(e: V) -> V {
    e.div(V::splat(2.0).add(e))
}

/// For `e` in `[0, 1]`: `(1 / (1 + e), e / (1 + e))` from one division. The second is divided
/// directly and the first is `1` minus it: the second is at most 1/2, so the first (at least
/// 1/2) loses nothing to the subtraction, and no multiplication is needed on the FMA pipes,
/// which are the bottleneck of these kernels (a division costs about two FMA issue slots on
/// the AVX-512 machine of `benches/RESULTS.md`).
#[inline(always)]
pub(crate) fn sigmoid_quotients<V: F32v>(e: V) -> (V, V) {
    let er = e.div(V::splat(1.0).add(e));
    (V::splat(1.0).sub(er), er)
}

/// For `e` in `[0, 1]`: `1 / (1 + e)`. The soft-target losses take it divided directly and
/// `e / (1 + e)` as `e` times it, since they subtract the target from these (`p - t`), where
/// [`sigmoid_quotients`]' `1 - e / (1 + e)` is a little less accurate.
#[inline(always)]
pub(crate) fn sigmoid_reciprocal<V: F32v>(e: V) -> V {
    V::splat(1.0).div(V::splat(1.0).add(e))
}

/// Natural log of `v >= 0` (`-inf` at 0, including subnormal inputs).
#[inline(always)]
pub(crate) fn log<V: F32v>(v: V) -> V {
    const TWO_POW_24: f32 = 16_777_216.0;
    let tiny = v.lt(V::splat(f32::MIN_POSITIVE));
    let scaled = V::select(tiny, v.mul(V::splat(TWO_POW_24)), v);
    let (m, k) = scaled.frexp1();
    let k = V::select(tiny, k.sub(V::splat(24.0)), k);
    // Move m into [sqrt(1/2), sqrt(2)) so that f = m - 1 is small and exact.
    let big = V::splat(std::f32::consts::SQRT_2).lt(m);
    let m = V::select(big, m.mul(V::splat(0.5)), m);
    let k = V::select(big, k.add(V::splat(1.0)), k);
    let f = m.sub(V::splat(1.0));
    let z = f.div(V::splat(2.0).add(f));
    let series = z.mul(atanh_series_x2(z.mul(z)));
    let lo = k.mul_add(V::splat(LN2_LO), series);
    let out = k.mul_add(V::splat(LN2_HI), lo);
    V::select(v.eq(V::splat(0.0)), V::splat(f32::NEG_INFINITY), out)
}

/// `w^gamma` for `w` in `[0, 1]` and `gamma > 0` given `log(w)` (which may be `-inf`).
#[inline(always)]
pub(crate) fn pow_from_log<V: F32v>(log_w: V, gamma: V) -> V {
    exp(gamma.mul(log_w))
}
