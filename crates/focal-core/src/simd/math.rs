//! Vectorised `exp`, `log` and `log1p`, accurate to about one ulp in `f32`.
//!
//! The polynomials are the classic Cephes `expf` coefficients (public-domain numerical
//! constants) and the `atanh` series `log(1 + e) = 2 atanh(e / (2 + e))`, whose argument is at
//! most 1/3 on the ranges used here, so a short series suffices and no cancellation occurs.

use super::F32v;

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split so that `n * LN2_HI` is exact for |n| < 2^9 (Cody and Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `exp(x)` is no longer a normal `f32`; results there are flushed to 0 (at most
/// 1.2e-38 away from the exact value).
const EXP_MIN: f32 = -87.336_55;
const EXP_MAX: f32 = 88.0;

/// `e^x` for `x <= 88`; 0 below -87.34. NaN lanes give unspecified values: kernels restore NaN
/// from their inputs at the end.
#[inline(always)]
pub(crate) fn exp<V: F32v>(x: V) -> V {
    let xc = x.min(V::splat(EXP_MAX)).max(V::splat(EXP_MIN));
    let n = xc.mul(V::splat(LOG2E)).round();
    let r = n.mul_add(V::splat(-LN2_HI), xc);
    let r = n.mul_add(V::splat(-LN2_LO), r);
    let mut p = V::splat(1.987_569_1e-4);
    p = p.mul_add(r, V::splat(1.398_199_9e-3));
    p = p.mul_add(r, V::splat(8.333_452e-3));
    p = p.mul_add(r, V::splat(4.166_579_6e-2));
    p = p.mul_add(r, V::splat(1.666_666_5e-1));
    p = p.mul_add(r, V::splat(0.5));
    let r2 = r.mul(r);
    let er = p.mul_add(r2, r).add(V::splat(1.0));
    let y = er.mul(V::pow2i(n));
    V::select(x.lt(V::splat(EXP_MIN)), V::splat(0.0), y)
}

/// `2 atanh(z) / (2 z)` as a polynomial in `w = z^2`, for `w <= 1/9`.
#[inline(always)]
fn atanh_series<V: F32v>(w: V) -> V {
    let mut p = V::splat(1.0 / 13.0);
    p = p.mul_add(w, V::splat(1.0 / 11.0));
    p = p.mul_add(w, V::splat(1.0 / 9.0));
    p = p.mul_add(w, V::splat(1.0 / 7.0));
    p = p.mul_add(w, V::splat(1.0 / 5.0));
    p = p.mul_add(w, V::splat(1.0 / 3.0));
    p.mul_add(w, V::splat(1.0))
}

/// `log(1 + e)` for `e` in `[0, 1]`.
#[inline(always)]
pub(crate) fn log1p_unit<V: F32v>(e: V) -> V {
    let z = e.div(V::splat(2.0).add(e));
    let two_z = z.add(z);
    two_z.mul(atanh_series(z.mul(z)))
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
    let series = z.add(z).mul(atanh_series(z.mul(z)));
    let lo = k.mul_add(V::splat(LN2_LO), series);
    let out = k.mul_add(V::splat(LN2_HI), lo);
    V::select(v.eq(V::splat(0.0)), V::splat(f32::NEG_INFINITY), out)
}

/// `w^gamma` for `w` in `[0, 1]` and `gamma > 0` given `log(w)` (which may be `-inf`).
#[inline(always)]
pub(crate) fn pow_from_log<V: F32v>(log_w: V, gamma: V) -> V {
    exp(gamma.mul(log_w))
}

/// `a * b`, but 0 where `a` is 0 (so `0 * inf` is 0: the limits of the gradients at infinite
/// logits).
#[inline(always)]
pub(crate) fn mul0<V: F32v>(a: V, b: V) -> V {
    V::select(a.eq(V::splat(0.0)), V::splat(0.0), a.mul(b))
}
