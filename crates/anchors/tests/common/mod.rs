//! Shared helpers of the integration tests: fixture loading and the tolerances, in one place.
#![allow(dead_code)]

use serde_json::Value;

/// Results that torch computes with a vectorised `exp` or `log` may differ from ours by a few
/// ulps of the operands' magnitude: `|a - r| <= ULPS_TRANSCENDENTAL * eps * scale`.
pub const ULPS_TRANSCENDENTAL: f32 = 4.0;

/// Parses `crates/anchors/tests/fixtures/<name>`.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().map_or(f32::NAN, |v| v as f32)) // null stands for NaN
        .collect()
}

pub fn i64s(v: &Value) -> Vec<i64> {
    v.as_array().expect("array").iter().map(|x| x.as_i64().expect("integer")).collect()
}

pub fn i32s(v: &Value) -> Vec<i32> {
    i64s(v).into_iter().map(|x| x as i32).collect()
}

pub fn usizes(v: &Value) -> Vec<usize> {
    i64s(v).into_iter().map(|x| x as usize).collect()
}

pub fn boxes(v: &Value) -> Vec<[f32; 4]> {
    f32s(v).chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect()
}

/// Bitwise equality (NaN equals NaN), naming the first mismatch.
pub fn assert_bitwise(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()) || (*g == 0.0 && *w == 0.0),
            "{what}[{i}]: reference {w:e}, got {g:e}, tolerance: bitwise"
        );
    }
}

/// `|g - w| <= ULPS_TRANSCENDENTAL * eps * scale` per element, `scale` given per element.
pub fn assert_close_scaled(what: &str, got: &[f32], want: &[f32], scale: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let tol = ULPS_TRANSCENDENTAL * f32::EPSILON * s.abs().max(w.abs()).max(f32::MIN_POSITIVE);
        assert!(
            (g - w).abs() <= tol || (g.is_nan() && w.is_nan()) || g == w,
            "{what}[{i}]: reference {w:e}, got {g:e}, tolerance |a - r| <= {tol:e}"
        );
    }
}

/// Fixed-seed proptest configuration with `cases` cases and no failure files.
pub fn prop_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x00f0_ca1a),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// A strategy for valid boxes inside `[0, extent]^2` with sides in `[min_side, max_side]`,
/// coordinates quantised to 1/8 px (so exact ties happen).
pub fn box_strategy(extent: f32, min_side: f32, max_side: f32) -> impl proptest::strategy::Strategy<Value = [f32; 4]> {
    use proptest::prelude::*;
    let q = |v: f32| (v * 8.0).round() / 8.0;
    (0.0..extent, 0.0..extent, min_side..max_side, min_side..max_side).prop_map(move |(x, y, w, h)| {
        let (x, y) = (q(x), q(y));
        [x, y, x + q(w).max(min_side), y + q(h).max(min_side)]
    })
}
