//! Shared test helpers: a seeded generator, input makers, the tolerances (one place, per
//! precision) and a comparison that explains its failures.
#![allow(dead_code)]

use focal_core::reference::{bce_with_logits, sigmoid_pair};

/// Tolerances: `|a - r| <= ABS + REL * scale`, where `scale` is `|r|` or, for formulas whose
/// terms cancel, the sum of the terms' magnitudes (the condition of the exact result).
pub const F32_REL: f64 = 1e-5;
/// Absolute floor near zero for f32 elements.
pub const F32_ABS: f64 = 1e-30;
/// Reduced sums of the f32 path.
pub const F32_SUM_REL: f64 = 1e-6;
/// Half inputs: the f32 path on the widened inputs, compared with the half path's output
/// rounded to the half type: one rounding of the output.
pub const F16_REL: f64 = 1.0 / 1024.0;
/// bf16 output rounding.
pub const BF16_REL: f64 = 1.0 / 128.0;

/// SplitMix64: a tiny seeded generator (tests need no statistical quality, only repeatability).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Logits mixing ordinary values, saturated ones and extremes up to 1e4.
    pub fn logit(&mut self) -> f32 {
        match self.below(10) {
            0 => ((self.uniform() * 2.0 - 1.0) * 1e4) as f32,
            1 => ((self.uniform() * 2.0 - 1.0) * 100.0) as f32,
            2 => ((self.uniform() * 2.0 - 1.0) * 30.0) as f32,
            3 => [0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 103.0, -103.0][self.below(8)],
            _ => ((self.uniform() * 2.0 - 1.0) * 8.0) as f32,
        }
    }
    pub fn logits(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.logit()).collect()
    }
    /// Labels: mostly background, some ignored, some of each class.
    pub fn labels(&mut self, rows: usize, classes: usize) -> Vec<i32> {
        (0..rows)
            .map(|_| match self.below(10) {
                0..=5 => -1,
                6 => -2,
                _ => self.below(classes.max(1)) as i32,
            })
            .collect()
    }
    /// Soft targets: exact 0 and 1 often, values in between otherwise.
    pub fn targets(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| match self.below(6) {
                0 | 1 => 0.0,
                2 => 1.0,
                _ => self.uniform() as f32,
            })
            .collect()
    }
}

/// Checks `actual` against `reference` elementwise with `|a - r| <= abs + rel * scale[i]`
/// (`scale[i]` defaults to `|r|`); NaN must meet NaN. Panics with the first mismatch named.
pub fn assert_close(what: &str, actual: &[f64], reference: &[f64], scale: Option<&[f64]>, rel: f64, abs: f64) {
    assert_eq!(actual.len(), reference.len(), "{what}: lengths differ");
    for (i, (&a, &r)) in actual.iter().zip(reference).enumerate() {
        if r.is_nan() || a.is_nan() {
            assert!(r.is_nan() && a.is_nan(), "{what}[{i}]: reference {r:e}, got {a:e} (NaN must match NaN)");
            continue;
        }
        if r.is_infinite() || a.is_infinite() {
            assert_eq!(a, r, "{what}[{i}]: reference {r:e}, got {a:e}");
            continue;
        }
        let s = scale.map_or(r.abs(), |s| s[i].max(r.abs()));
        let tol = abs + rel * s;
        assert!(
            (a - r).abs() <= tol,
            "{what}[{i}]: reference {r:e}, got {a:e}, |a - r| = {:e} > tol {tol:e} (= {abs:e} + {rel:e} * {s:e})",
            (a - r).abs()
        );
    }
}

/// Relative check of one reduced value.
pub fn assert_sum_close(what: &str, actual: f64, reference: f64, rel: f64) {
    let tol = rel * reference.abs() + F32_ABS;
    assert!(
        (actual - reference).abs() <= tol || (actual.is_nan() && reference.is_nan()),
        "{what}: reference {reference:e}, got {actual:e}, tol {tol:e}"
    );
}

pub fn widen<T: focal_core::Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// Magnitude of the terms of the soft-target sigmoid focal gradient (its condition): the f32
/// result cannot be closer than `eps` times this, whatever the implementation.
pub fn sigmoid_soft_grad_scale(x: f64, t: f64, alpha_pos: f64, alpha_neg: f64, gamma: f64) -> f64 {
    let (p, pm) = sigmoid_pair(x);
    let ce = bce_with_logits(x, t);
    let w = t * pm + (1.0 - t) * p;
    let wg = w.powf(gamma);
    let ratio = if w > 0.0 { p * pm / w } else { 0.0 };
    let at = alpha_pos * t + alpha_neg * (1.0 - t);
    let d_ce = if ratio == 0.0 { 0.0 } else { (gamma * wg * ratio * (1.0 - 2.0 * t)).abs() * ce };
    at * (d_ce + wg * ((1.0 - t) * p + t * pm))
}

/// Condition of the varifocal gradient (positives: `t (p - t)`).
pub fn varifocal_grad_scale(x: f64, t: f64) -> f64 {
    let (p, pm) = sigmoid_pair(x);
    if t > 0.0 { t * ((1.0 - t) * p + t * pm) } else { 0.0 }
}

/// Condition of the quality focal loss and its gradient: `d = p - y` cancels when `p ~ y`, and
/// `|d|^beta` amplifies its relative error `beta` times.
pub fn quality_focal_scales(x: f64, y: f64, beta: f64) -> (f64, f64) {
    let (p, pm) = sigmoid_pair(x);
    let ce = bce_with_logits(x, y);
    let d_mag = (1.0 - y) * p + y * pm;
    let d = (1.0 - y) * p - y * pm;
    let ad = d.abs();
    if ad == 0.0 {
        return (0.0, 0.0);
    }
    let amplification = (beta.max(1.0)) * d_mag / ad;
    let db = ad.powf(beta);
    let loss = db * ce;
    let grad = beta * db / ad * p * pm * ce + db * ad;
    (loss * amplification, grad * (amplification + 1.0))
}
