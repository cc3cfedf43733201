//! A branch-free `exp` for `f32`, so that box decoding vectorises (a call to the C library's
//! `expf` does not). Within 2 ulps of the exact value for normal results (1.19 measured over
//! the whole range); torch's own vectorised
//! `exp` (SLEEF, 1 ulp) is not bit-reproducible either, so decoded boxes agree with
//! torchvision's to a few ulps whichever is used.

use std::f32::consts::LOG2_E;

/// `ln 2` split so that `n * LN2_HI` is exact for `|n| < 2^10` (Cody and Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `e^x` is 0 in `f32` (results down to the smallest subnormal are kept).
const EXP_LO: f32 = -104.0;
/// Above this `e^x` overflows to infinity.
const EXP_HI: f32 = 89.0;
/// `1.5 * 2^23`.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x`: NaN for NaN, `+inf` for large or infinite `x`, 0 for very negative `x`.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    // Clamp keeping NaN (a comparison with NaN is false, so NaN falls through both).
    let xc = if x < EXP_LO { EXP_LO } else { x };
    let xc = if xc > EXP_HI { EXP_HI } else { xc };
    // Round x / ln 2 to the nearest integer by adding 1.5 * 2^23: the integer lands in the low
    // mantissa bits, read back without a float-to-int conversion (which would not vectorise).
    let shifted = xc * LOG2_E + ROUNDER;
    let n_int = shifted.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let n = shifted - ROUNDER;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // e^r for |r| <= ln2 / 2: Taylor to degree 7 (truncation below 1e-8 relative).
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^n in two factors so that n down to -150 (subnormal results) and up to 129 (overflow)
    // stay representable. For NaN input `n_int` is meaningless but `p` is NaN, so is the result.
    let half = n_int >> 1;
    p * pow2(half) * pow2(n_int - half)
}

/// `2^k` for `-126 <= k <= 127`.
#[inline(always)]
fn pow2(k: i32) -> f32 {
    f32::from_bits((k.wrapping_add(127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, exact: f64) -> f64 {
        let e = exact as f32;
        let ulp = (e.next_up() - e).abs().max(f32::from_bits(1)) as f64;
        (a as f64 - exact).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulps() {
        let mut x = -87.0f32;
        let mut worst = (0.0f64, 0.0f32);
        while x < 88.7 {
            let u = ulps(exp_f32(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
            x += 0.000_37;
        }
        assert!(worst.0 <= 2.0, "worst error {} ulps at x = {}", worst.0, worst.1);
    }

    #[test]
    fn exp_special_values() {
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        // Subnormal results are kept.
        let tiny = exp_f32(-100.0);
        assert!(tiny > 0.0 && tiny < f32::MIN_POSITIVE);
        assert!(ulps(tiny, (-100.0f64).exp()) <= 2.0);
    }
}
