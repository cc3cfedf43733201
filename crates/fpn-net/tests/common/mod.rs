//! Shared test helpers: fixtures, random inputs, tolerances, finite differences.
#![allow(dead_code)]

use fpn_net::Tensor4;
use safetensors::{Dtype, SafeTensors};

/// `|got - want| <= rel * (|want| + mean|want|)`: relative per element, with a floor at the
/// tensor's mean magnitude so elements that cancel to near zero are held to the precision of
/// the tensor rather than to their own.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub rel: f64,
}

/// Forward outputs against torchvision or the float64 reference (the 1e-4 relative).
pub const FORWARD: Tol = Tol { rel: 1e-4 };
/// Gradients against autograd or float64 finite differences.
pub const GRADIENT: Tol = Tol { rel: 1e-4 };

pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mean = want.iter().map(|v| v.abs()).sum::<f64>() / want.len().max(1) as f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let bound = tol.rel * (w.abs() + mean);
        assert!(
            err <= bound || (g.is_nan() && w.is_nan()),
            "{what}: index {i}: got {g}, reference {w}, |a - r| = {err:.3e} > rel {} * (|r| + mean|r| {mean:.3e}) = {bound:.3e}",
            tol.rel
        );
    }
}

pub fn assert_close_f32(what: &str, got: &[f32], want: &[f32], tol: Tol) {
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    assert_close(what, got, &want, tol);
}

/// Uniform values in [lo, hi) from a fixed seed.
pub fn random(name: &str, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    fpn_net::init::uniform(name, 12345, n, lo, hi)
}

pub fn random_tensor(name: &str, dims: [usize; 4], lo: f64, hi: f64) -> Tensor4 {
    Tensor4::from_vec(random(name, dims.iter().product(), lo, hi), dims).unwrap()
}

pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Central differences of `f` at `at`, one coordinate at a time.
pub fn finite_difference(at: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = at.to_vec();
    (0..at.len())
        .map(|i| {
            x[i] = at[i] + h;
            let plus = f(&x);
            x[i] = at[i] - h;
            let minus = f(&x);
            x[i] = at[i];
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// A committed fixture file.
pub struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(name: &str) -> Fixture {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Fixture { bytes }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn tensor(&self, key: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap_or_else(|_| panic!("fixture has no tensor {key}"));
        (t.dtype(), t.shape().to_vec(), t.data().to_vec())
    }

    pub fn has(&self, key: &str) -> bool {
        SafeTensors::deserialize(&self.bytes).unwrap().tensor(key).is_ok()
    }

    pub fn names(&self) -> Vec<String> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        st.names().into_iter().map(String::from).collect()
    }

    pub fn f32(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let (dtype, shape, data) = self.tensor(key);
        assert_eq!(dtype, Dtype::F32, "{key}");
        let v = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        (v, shape)
    }

    pub fn values(&self, key: &str) -> Vec<f32> {
        self.f32(key).0
    }

    pub fn f64(&self, key: &str) -> Vec<f64> {
        let (dtype, _, data) = self.tensor(key);
        assert_eq!(dtype, Dtype::F64, "{key}");
        data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
    }

    pub fn i64(&self, key: &str) -> Vec<i64> {
        let (dtype, _, data) = self.tensor(key);
        assert_eq!(dtype, Dtype::I64, "{key}");
        data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
    }

    pub fn t4(&self, key: &str) -> Tensor4 {
        let (v, s) = self.f32(key);
        assert_eq!(s.len(), 4, "{key} is not rank 4: {s:?}");
        Tensor4::from_vec(v, [s[0], s[1], s[2], s[3]]).unwrap()
    }
}
