//! The loss against a direct float64 computation from the assigned targets.

use anchors::GroundTruth;
use focal_core::reference::sigmoid_focal_element;
use retinanet::init::NormalRng;
use retinanet::{LossConfig, Normalizer, RetinaLoss};

mod common;
use common::grid_anchors;

#[test]
fn loss_equals_float64_sum_over_images_normalised_per_image() {
    let anchors = grid_anchors();
    let (a, c) = (anchors.len(), 3);
    let mut rng = NormalRng::new(9);
    let mut logits = vec![0.0f32; 2 * a * c];
    rng.fill_normal(&mut logits, 2.0);
    let mut reg = vec![[0.0f32; 4]; 2 * a];
    for r in &mut reg {
        rng.fill_normal(r, 0.5);
    }
    let gt = [
        GroundTruth { boxes: &[[4.0, 4.0, 30.0, 28.0], [36.0, 30.0, 60.0, 62.0]], labels: &[0, 2] },
        GroundTruth { boxes: &[[10.0, 40.0, 26.0, 56.0]], labels: &[1] },
    ];
    let mut loss = RetinaLoss::new(LossConfig::default()).unwrap();
    let (mut gl, mut gr) = (vec![0.0; logits.len()], vec![[0.0; 4]; reg.len()]);
    let v = loss.compute(&logits, &reg, &anchors, &gt, c, &mut gl, &mut gr).unwrap();
    let t = loss.targets();
    let (mut cls, mut bx) = (0.0f64, 0.0f64);
    let (mut raw_cls, mut raw_box) = (0.0f64, 0.0f64);
    for i in 0..2 {
        let norm = t.num_foreground()[i].max(1) as f64;
        let (mut s_cls, mut s_box) = (0.0, 0.0);
        for j in 0..a {
            let label = t.labels()[i * a + j];
            if label == -2 {
                continue;
            }
            for k in 0..c {
                let target = if label == k as i32 { 1.0 } else { 0.0 };
                s_cls += sigmoid_focal_element(logits[(i * a + j) * c + k] as f64, target, 0.25, 0.75, 2.0).0;
            }
            if label >= 0 {
                let enc = t.regression()[i * a + j];
                s_box += (0..4).map(|q| (reg[i * a + j][q] as f64 - enc[q] as f64).abs()).sum::<f64>();
            }
        }
        raw_cls += s_cls;
        raw_box += s_box;
        cls += s_cls / norm / 2.0;
        bx += s_box / norm / 2.0;
    }
    assert!((v.classification - cls).abs() <= 1e-5 * cls, "{} vs {cls}", v.classification);
    assert!((v.box_regression - bx).abs() <= 1e-5 * bx, "{} vs {bx}", v.box_regression);
    assert_eq!(v.num_foreground, t.num_foreground().iter().sum::<usize>());

    // detectron2's EMA normaliser: one batch-wide divisor 0.9 * 100 + 0.1 * max(1, fg).
    let mut ema =
        RetinaLoss::new(LossConfig { normalizer: Normalizer::Ema { momentum: 0.9 }, ..LossConfig::default() }).unwrap();
    let e = ema.compute(&logits, &reg, &anchors, &gt, c, &mut gl, &mut gr).unwrap();
    let divisor = 0.9 * 100.0 + 0.1 * v.num_foreground.max(1) as f64;
    assert!(
        (e.classification * divisor - raw_cls).abs() <= 1e-5 * raw_cls,
        "{} vs {raw_cls}",
        e.classification * divisor
    );
    assert!(
        (e.box_regression * divisor - raw_box).abs() <= 1e-5 * raw_box,
        "{} vs {raw_box}",
        e.box_regression * divisor
    );
}

#[test]
fn bad_shapes_and_parameters_are_errors() {
    let anchors = grid_anchors();
    let mut loss = RetinaLoss::new(LossConfig::default()).unwrap();
    let gt = [GroundTruth { boxes: &[], labels: &[] }];
    let (mut gl, mut gr) = (vec![0.0; 5], vec![[0.0; 4]; 5]);
    assert!(loss.compute(&[0.0; 5], &[[0.0; 4]; 5], &anchors, &gt, 3, &mut gl, &mut gr).is_err());
    let a = anchors.len();
    let (mut gl, mut gr) = (vec![0.0; a * 3], vec![[0.0; 4]; a]);
    let bad_label = [GroundTruth { boxes: &[[0.0, 0.0, 10.0, 10.0]], labels: &[7] }];
    assert!(loss.compute(&vec![0.0; a * 3], &vec![[0.0; 4]; a], &anchors, &bad_label, 3, &mut gl, &mut gr).is_err());
    let degenerate = [GroundTruth { boxes: &[[5.0, 5.0, 1.0, 10.0]], labels: &[0] }];
    assert!(loss.compute(&vec![0.0; a * 3], &vec![[0.0; 4]; a], &anchors, &degenerate, 3, &mut gl, &mut gr).is_err());
    let smooth = LossConfig { box_loss: retinanet::BoxLoss::SmoothL1 { beta: -1.0 }, ..LossConfig::default() };
    assert!(RetinaLoss::new(smooth).is_err());
    assert!(
        RetinaLoss::new(LossConfig { normalizer: Normalizer::Ema { momentum: 1.5 }, ..LossConfig::default() }).is_err()
    );
}
