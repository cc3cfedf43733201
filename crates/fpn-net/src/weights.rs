//! Weights in safetensors, keyed by torchvision's state_dict names.
//!
//! `scripts/export_torchvision.py` (beside this crate) writes any torchvision ResNet, FPN
//! backbone or RetinaNet state_dict as safetensors; [`load`] puts it into a model 1:1. The
//! functions take and return bytes: reading the file is the caller's business.
//!
//! # Examples
//! ```
//! use fpn_net::{Depth, FpnExtra, ResNetFpn, weights};
//! let mut net = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromP5).unwrap();
//! let bytes = weights::save(&net, "backbone.").unwrap(); // as inside a RetinaNet checkpoint
//! let mut copy = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromP5).unwrap();
//! let report = weights::load(&mut copy, &bytes, "backbone.", weights::Extra::Reject).unwrap();
//! assert_eq!(report.loaded, 116);
//! ```

use std::collections::{BTreeSet, HashMap};

use safetensors::{Dtype, SafeTensors};

use crate::error::{MisShaped, NetError, Result};
use crate::param::Module;

/// What to do with tensors under the prefix that the model has no place for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    /// Report them as an error (a state_dict for another architecture, a typo).
    Reject,
    /// Skip them and list them in the report (a classifier's `fc.*` when loading a
    /// classification checkpoint into a backbone).
    Ignore,
}

/// What [`load`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Number of tensors copied into the model.
    pub loaded: usize,
    /// Tensors under the prefix that were skipped (`Extra::Ignore`), and the
    /// `num_batches_tracked` counters of `BatchNorm2d`, which carry no weights.
    pub ignored: Vec<String>,
}

/// Converts one stored tensor to f32, little-endian as safetensors stores it.
fn to_f32(name: &str, dtype: Dtype, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    match dtype {
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(chunks(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F64 => {
            for (o, b) in out.iter_mut().zip(chunks(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *o = f64::from_le_bytes(a) as f32;
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(chunks(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Dtype::BF16 => {
            for (o, b) in out.iter_mut().zip(chunks(2)) {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        other => {
            return Err(NetError::Dtype { name: name.to_string(), dtype: format!("{other:?}") });
        }
    }
    Ok(())
}

/// Loads the tensors named `prefix + name` from safetensors `bytes` into `model`.
///
/// Every name the model needs must be present with its exact shape; all missing,
/// mis-shaped and (with [`Extra::Reject`]) unexpected tensors are listed together in one
/// [`NetError::WeightsMismatch`], and nothing is written unless all match. F16, BF16 and F64
/// tensors are converted to f32. `num_batches_tracked` buffers are always skipped.
///
/// # Errors
/// [`NetError::SafeTensors`] for bytes that are not safetensors, [`NetError::WeightsMismatch`]
/// as above, [`NetError::Dtype`] for a non-float tensor the model needs.
pub fn load<M: Module + ?Sized>(model: &mut M, bytes: &[u8], prefix: &str, extra: Extra) -> Result<LoadReport> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| NetError::SafeTensors(e.to_string()))?;
    let stored: HashMap<&str, safetensors::tensor::TensorView<'_>> = file.iter().collect();
    let mut params = Vec::new();
    model.params_mut(prefix, &mut params);
    let wanted: BTreeSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    let mut missing = Vec::new();
    let mut mis_shaped = Vec::new();
    for (name, p) in &params {
        match stored.get(name.as_str()) {
            None => missing.push(name.clone()),
            Some(t) if t.shape() != p.shape() => mis_shaped.push(MisShaped {
                name: name.clone(),
                expected: p.shape().to_vec(),
                found: t.shape().to_vec(),
            }),
            Some(_) => {}
        }
    }
    let mut unexpected = Vec::new();
    let mut ignored = Vec::new();
    let mut names: Vec<&str> = stored.keys().copied().filter(|n| n.starts_with(prefix)).collect();
    names.sort_unstable();
    for name in names {
        if wanted.contains(name) {
            continue;
        }
        if name.ends_with("num_batches_tracked") || extra == Extra::Ignore {
            ignored.push(name.to_string());
        } else {
            unexpected.push(name.to_string());
        }
    }
    if !missing.is_empty() || !unexpected.is_empty() || !mis_shaped.is_empty() {
        return Err(NetError::WeightsMismatch { missing, unexpected, mis_shaped });
    }
    // Convert everything before writing anything, so a dtype error leaves the model intact.
    let mut converted = Vec::with_capacity(params.len());
    for (name, p) in &params {
        let t = &stored[name.as_str()];
        let mut values = vec![0.0f32; p.numel()];
        to_f32(name, t.dtype(), t.data(), &mut values)?;
        converted.push(values);
    }
    let loaded = params.len();
    for ((_, p), values) in params.into_iter().zip(converted) {
        p.value = values;
    }
    Ok(LoadReport { loaded, ignored })
}

/// Serialises every parameter and buffer of `model` as f32 safetensors, named
/// `prefix + name` (torchvision's names, so `torch.load`-side code can
/// `load_state_dict(safetensors.torch.load_file(...), strict=False)`).
///
/// # Errors
/// [`NetError::SafeTensors`] when serialisation fails.
pub fn save<M: Module + ?Sized>(model: &M, prefix: &str) -> Result<Vec<u8>> {
    let mut params = Vec::new();
    model.params(prefix, &mut params);
    let bytes: Vec<Vec<u8>> =
        params.iter().map(|(_, p)| p.value.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views = params
        .iter()
        .zip(&bytes)
        .map(|((name, p), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, p.shape().to_vec(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| NetError::SafeTensors(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| NetError::SafeTensors(e.to_string()))
}
