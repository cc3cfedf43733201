//! Our parameter names and shapes are torchvision's, so its RetinaNet state_dicts load 1:1.

use fpn_net::Module;
use retinanet::{ModelConfig, RetinaNet};

fn torchvision_names(tag: &str) -> Vec<(String, Vec<usize>)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state_dict_names.txt")).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            (parts.next()? == tag).then(|| {
                let name = parts.next().unwrap().to_string();
                let shape = parts
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|d| d.parse().unwrap())
                    .collect();
                (name, shape)
            })
        })
        .collect()
}

fn check(tag: &str, config: ModelConfig) {
    let model = RetinaNet::new(config, 0).unwrap();
    let ours: Vec<(String, Vec<usize>)> =
        model.named_params().into_iter().map(|(n, p)| (n, p.shape().to_vec())).collect();
    let theirs = torchvision_names(tag);
    assert!(!theirs.is_empty());
    let missing: Vec<_> = theirs.iter().filter(|t| !ours.contains(t)).collect();
    let extra: Vec<_> = ours.iter().filter(|o| !theirs.contains(o)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{tag}: missing {missing:?}, extra {extra:?}");
    assert_eq!(ours, theirs, "{tag}: same tensors, other order");
}

#[test]
fn resnet50_fpn_v1_names_and_shapes_equal_torchvision() {
    check("v1", ModelConfig::retinanet_resnet50_fpn(91));
}

#[test]
fn resnet50_fpn_v2_names_and_shapes_equal_torchvision() {
    check("v2", ModelConfig::retinanet_resnet50_fpn_v2(91));
}

#[test]
fn torchvision_style_safetensors_load_and_mismatches_are_listed() {
    let dir = std::env::temp_dir().join(format!("retina-tv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = ModelConfig {
        backbone: retinanet::BackboneConfig::ResNet { layers: 18, p6p7_from_c5: false, trainable_layers: 3 },
        ..ModelConfig::retinanet_resnet50_fpn(4)
    };
    let mut source = RetinaNet::new(config.clone(), 1).unwrap();
    fpn_net::init::synthetic(&mut source, 3);
    let path = dir.join("tv.safetensors");
    std::fs::write(&path, fpn_net::weights::save(&source, "").unwrap()).unwrap();
    let loaded = retinanet::checkpoint::load_torchvision(&path, config).unwrap();
    let same =
        source.named_params().iter().zip(loaded.named_params()).all(|((a, p), (b, q))| *a == b && p.value == q.value);
    assert!(same, "loaded weights differ");
    // The same file for 5 classes: the classifier is mis-shaped, and the error says so.
    let other = ModelConfig {
        backbone: retinanet::BackboneConfig::ResNet { layers: 18, p6p7_from_c5: false, trainable_layers: 3 },
        ..ModelConfig::retinanet_resnet50_fpn(5)
    };
    let err = retinanet::checkpoint::load_torchvision(&path, other).unwrap_err().to_string();
    assert!(err.contains("head.classification_head.cls_logits.weight"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
