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
