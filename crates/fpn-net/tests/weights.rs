//! Loading safetensors state_dicts: exact matches load, every mismatch is listed.

use std::collections::HashMap;

use fpn_net::weights::{self, Extra};
use fpn_net::{Conv2d, Conv2dConfig, Depth, FpnExtra, Module, NetError, ResNet, ResNetFpn, init};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// A safetensors file of `(name, dtype, shape, raw little-endian bytes)`.
fn file(entries: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: HashMap<String, TensorView<'_>> =
        entries.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, None).unwrap()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn conv() -> Conv2d {
    Conv2d::new(Conv2dConfig::new(2, 3, 1).bias(true)).unwrap()
}

#[test]
fn missing_extra_and_misshaped_tensors_are_all_listed() {
    let bytes = file(&[
        ("head.weight", Dtype::F32, vec![3, 2, 1, 2], f32_bytes(&[0.0; 12])),
        ("head.typo", Dtype::F32, vec![3], f32_bytes(&[0.0; 3])),
        ("other.weight", Dtype::F32, vec![1], f32_bytes(&[0.0])),
    ]);
    let mut c = conv();
    let err = weights::load(&mut c, &bytes, "head.", Extra::Reject).unwrap_err();
    let NetError::WeightsMismatch { missing, unexpected, mis_shaped } = &err else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(missing, &["head.bias".to_string()]);
    assert_eq!(unexpected, &["head.typo".to_string()], "names outside the prefix are not ours");
    assert_eq!(mis_shaped.len(), 1);
    assert_eq!(mis_shaped[0].name, "head.weight");
    assert_eq!(mis_shaped[0].expected, vec![3, 2, 1, 1]);
    assert_eq!(mis_shaped[0].found, vec![3, 2, 1, 2]);
    let msg = err.to_string();
    for part in ["head.bias", "head.typo", "head.weight", "[3, 2, 1, 2]"] {
        assert!(msg.contains(part), "message lacks {part}: {msg}");
    }
    assert!(c.weight.value.iter().all(|&v| v == 0.0), "nothing written on error");
}

#[test]
fn extra_tensors_can_be_ignored_and_counters_always_are() {
    let w: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let bytes = file(&[
        ("weight", Dtype::F32, vec![3, 2, 1, 1], f32_bytes(&w)),
        ("bias", Dtype::F32, vec![3], f32_bytes(&[1.0, 2.0, 3.0])),
        ("fc.weight", Dtype::F32, vec![1], f32_bytes(&[0.0])),
        ("bn.num_batches_tracked", Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()),
    ]);
    let mut c = conv();
    assert!(weights::load(&mut c, &bytes, "", Extra::Reject).is_err());
    let report = weights::load(&mut c, &bytes, "", Extra::Ignore).unwrap();
    assert_eq!(report.loaded, 2);
    assert_eq!(report.ignored, vec!["bn.num_batches_tracked", "fc.weight"]);
    assert_eq!(c.weight.value, w);
    assert_eq!(c.bias.as_ref().unwrap().value, vec![1.0, 2.0, 3.0]);
}

#[test]
fn half_and_double_tensors_are_converted() {
    let w: Vec<f32> = vec![0.5, -1.25, 2.0, 3.0, -0.125, 1.0];
    let f16: Vec<u8> = w.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let f64b: Vec<u8> = [1.5f64, -2.0, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = file(&[("weight", Dtype::F16, vec![3, 2, 1, 1], f16), ("bias", Dtype::F64, vec![3], f64b)]);
    let mut c = conv();
    weights::load(&mut c, &bytes, "", Extra::Reject).unwrap();
    assert_eq!(c.weight.value, w);
    assert_eq!(c.bias.as_ref().unwrap().value, vec![1.5, -2.0, 0.25]);
}

#[test]
fn integer_tensors_and_garbage_bytes_are_errors() {
    let bytes = file(&[
        ("weight", Dtype::I32, vec![3, 2, 1, 1], vec![0; 24]),
        ("bias", Dtype::F32, vec![3], f32_bytes(&[0.0; 3])),
    ]);
    let mut c = conv();
    assert!(matches!(weights::load(&mut c, &bytes, "", Extra::Reject), Err(NetError::Dtype { .. })));
    assert!(matches!(
        weights::load(&mut c, b"not a safetensors file", "", Extra::Reject),
        Err(NetError::SafeTensors(_))
    ));
}

#[test]
fn a_classification_resnet_checkpoint_loads_into_the_backbone_body() {
    // A torchvision classification state_dict: the body's names plus fc.* and counters.
    let mut source = ResNet::new(Depth::R18).unwrap();
    init::synthetic(&mut source, 5);
    let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = source
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, Dtype::F32, p.shape().to_vec(), f32_bytes(&p.value)))
        .collect();
    entries.push(("fc.weight".into(), Dtype::F32, vec![1000, 512], f32_bytes(&vec![0.0; 512_000])));
    entries.push(("fc.bias".into(), Dtype::F32, vec![1000], f32_bytes(&vec![0.0; 1000])));
    let borrowed: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> =
        entries.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    let bytes = file(&borrowed);
    let mut net = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromP5).unwrap();
    let err = weights::load(&mut net.body, &bytes, "", Extra::Reject).unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
    let report = weights::load(&mut net.body, &bytes, "", Extra::Ignore).unwrap();
    assert_eq!(report.ignored, vec!["fc.bias", "fc.weight"]);
    for ((n, p), (_, q)) in source.named_params().into_iter().zip(net.body.named_params()) {
        assert_eq!(p.value, q.value, "{n}");
    }
}
