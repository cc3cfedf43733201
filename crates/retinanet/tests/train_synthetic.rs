//! The tiny model learns the synthetic shapes: the loss goes down and the COCO AP on held-out
//! images passes a stated bar.

use anchors::PostprocessConfig;
use retinanet::{LossConfig, ModelConfig, RetinaLoss, RetinaNet, SyntheticConfig, TrainConfig, Trainer};

/// Measured on the development machine: AP50 0.58 and AP 0.29 after 400 iterations on 64
/// images (seeded, so the same numbers on any machine up to float reassociation); the bars
/// leave room for that.
const MIN_AP50: f64 = 0.35;
const MIN_AP: f64 = 0.15;

#[test]
fn tiny_model_trained_on_synthetic_shapes_reaches_stated_ap() {
    let train = SyntheticConfig::small(64, 1).generate().unwrap();
    let val = SyntheticConfig::small(32, 99).generate().unwrap();
    let model = RetinaNet::new(ModelConfig::tiny(3), 0).unwrap();
    let loss = RetinaLoss::new(LossConfig::default()).unwrap();
    let mut trainer = Trainer::new(model, loss, TrainConfig::quick(400)).unwrap();
    trainer.train(&train, |_| {}).unwrap();
    let mean =
        |r: std::ops::Range<usize>| trainer.log[r.clone()].iter().map(|e| e.loss.total()).sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(0..20), mean(380..400));
    assert!(last < 0.6 * first, "loss went from {first} to {last} only");
    let images: Vec<_> = val.iter().map(|s| &s.image).collect();
    let dets =
        retinanet::infer::detect(&mut trainer.model, &images, 8, &PostprocessConfig::torchvision_retinanet()).unwrap();
    let stats = retinanet::eval::evaluate(
        &val,
        &dets,
        &retinanet::Dataset::synthetic(&SyntheticConfig::small(1, 0)).unwrap().categories,
    )
    .unwrap();
    println!("held-out COCO stats: {}", stats.to_json());
    assert!(stats.ap50() >= MIN_AP50 && stats.ap() >= MIN_AP, "AP {} AP50 {}", stats.ap(), stats.ap50());
}
