//! Checkpoints: round trip, exact resume, refusal of other configurations and other files.

use fpn_net::Module;
use retinanet::{LossConfig, ModelConfig, RetinaError, RetinaLoss, RetinaNet, SyntheticConfig, TrainConfig, Trainer};

/// The same 6-iteration schedule (warm-up, steps), stopped after `iterations`.
fn trainer(iterations: usize) -> Trainer {
    let model = RetinaNet::new(ModelConfig::tiny(3), 4).unwrap();
    let schedule = TrainConfig { iterations, warmup_iters: 2, lr_steps: vec![4], ..TrainConfig::quick(6) };
    Trainer::new(model, RetinaLoss::new(LossConfig::default()).unwrap(), schedule).unwrap()
}

fn weights(model: &RetinaNet) -> Vec<Vec<f32>> {
    model.named_params().iter().map(|(_, p)| p.value.clone()).collect()
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let dir = std::env::temp_dir().join(format!("retina-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("a.safetensors");
    let data = SyntheticConfig::small(8, 3).generate().unwrap();
    let mut straight = trainer(6);
    straight.train(&data, |_| {}).unwrap();
    let mut first = trainer(3);
    first.train(&data, |_| {}).unwrap();
    first.save_checkpoint(&path).unwrap();
    let mut resumed = trainer(6);
    resumed.load_checkpoint(&path).unwrap();
    assert_eq!(resumed.iteration, 3);
    resumed.train(&data, |_| {}).unwrap();
    assert!(weights(&straight.model) == weights(&resumed.model), "resumed training differs");
    let loaded = retinanet::checkpoint::load_model(&path).unwrap();
    assert!(weights(&loaded) == weights(&first.model), "loaded weights differ from the saved ones");
    // No temporary file is left beside the checkpoint.
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_for_another_configuration_is_an_error() {
    let dir = std::env::temp_dir().join(format!("retina-ckpt-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("b.safetensors");
    trainer(1).save_checkpoint(&path).unwrap();
    let mut other = RetinaNet::new(ModelConfig::tiny(5), 0).unwrap();
    let before = weights(&other);
    let err = retinanet::checkpoint::load(&mut other, &path).unwrap_err();
    assert!(matches!(err, RetinaError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("another configuration"), "{err}");
    assert_eq!(weights(&other), before, "the model changed on error");
    std::fs::write(&path, b"not a checkpoint").unwrap();
    assert!(matches!(retinanet::checkpoint::load_model(&path), Err(RetinaError::Checkpoint { .. })));
    assert!(matches!(retinanet::checkpoint::load_model(&dir.join("missing")), Err(RetinaError::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_configurations_are_errors() {
    let bad = [
        ModelConfig { num_classes: 0, ..ModelConfig::tiny(3) },
        ModelConfig { anchor_sizes: vec![16.0; 4], ..ModelConfig::tiny(3) },
        ModelConfig { prior_probability: Some(1.5), ..ModelConfig::tiny(3) },
        ModelConfig { min_size: 8, ..ModelConfig::tiny(3) },
    ];
    for c in bad {
        assert!(matches!(RetinaNet::new(c.clone(), 0), Err(RetinaError::Config(_))), "{c:?}");
    }
    let mut model = RetinaNet::new(ModelConfig::tiny(3), 0).unwrap();
    assert!(matches!(model.forward(&fpn_net::Tensor4::zeros([1, 3, 100, 128])), Err(RetinaError::Shape { .. })));
    assert!(matches!(
        model.backward(&fpn_net::Tensor4::zeros([1, 3, 128, 128]), &[0.0], &[]),
        Err(RetinaError::Shape { .. })
    ));
}

#[test]
fn synthetic_dataset_is_deterministic_and_boxes_lie_inside() {
    let a = SyntheticConfig::small(6, 42).generate().unwrap();
    let b = SyntheticConfig::small(6, 42).generate().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, SyntheticConfig::small(6, 43).generate().unwrap());
    for s in &a {
        assert!(!s.boxes.is_empty() && s.boxes.len() == s.labels.len());
        for b in &s.boxes {
            assert!(b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= 128.0 && b[3] <= 128.0 && b[2] > b[0] && b[3] > b[1]);
        }
    }
    assert!(SyntheticConfig { num_classes: 9, ..SyntheticConfig::small(1, 0) }.generate().is_err());
}
