//! Deterministic synthetic weights that Python can reproduce bit for bit.
//!
//! Tests compare this crate with torchvision on random weights without committing the
//! weights: both sides draw them from the same counter-based generator keyed by the
//! state_dict name (`tests/fixtures/synthetic.py` is the Python twin). The ranges keep
//! activations of a deep ResNet within a few orders of magnitude.

use crate::param::Module;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64-bit FNV-1a of the name.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// `n` uniform values in `[lo, hi)` for tensor `name`: element `i` is
/// `lo + (hi - lo) * u_i` in f64, rounded to f32, with
/// `u_i = (mix(fnv1a(name) + seed * GOLDEN + (i + 1) * GOLDEN) >> 40) / 2^24`.
pub fn uniform(name: &str, seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    let base = fnv1a(name).wrapping_add(seed.wrapping_mul(GOLDEN));
    (0..n as u64)
        .map(|i| {
            let z = mix(base.wrapping_add((i + 1).wrapping_mul(GOLDEN)));
            let u = (z >> 40) as f64 / (1u64 << 24) as f64;
            (lo + (hi - lo) * u) as f32
        })
        .collect()
}

/// The range [`synthetic`] draws tensor `name` of `shape` from.
pub fn synthetic_range(name: &str, shape: &[usize]) -> (f64, f64) {
    if name.ends_with("running_var") {
        (0.5, 1.5)
    } else if name.ends_with("running_mean") {
        (-0.2, 0.2)
    } else if shape.len() == 1 && name.ends_with("weight") {
        // Norm scales.
        (0.3, 0.8)
    } else if shape.len() == 1 {
        (-0.1, 0.1)
    } else {
        // He-uniform on the fan-in keeps activations of a deep ResNet in range.
        let fan_in: usize = shape[1..].iter().product();
        let bound = (6.0 / fan_in.max(1) as f64).sqrt();
        (-bound, bound)
    }
}

/// Fills every parameter and buffer of `model` with [`uniform`] values in
/// [`synthetic_range`], keyed by its full name.
pub fn synthetic<M: Module + ?Sized>(model: &mut M, seed: u64) {
    for (name, p) in model.named_params_mut() {
        let (lo, hi) = synthetic_range(&name, p.shape());
        p.value = uniform(&name, seed, p.numel(), lo, hi);
    }
}
