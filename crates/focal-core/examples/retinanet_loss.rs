//! RetinaNet's classification loss for one image, as a trainer would call it.
//!
//! Run: `cargo run -p focal-core --release --example retinanet_loss`

use focal_core::labels::{BACKGROUND, IGNORE, retinanet_normalizer};
use focal_core::{FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, Target, TensorView, TensorViewMut};

fn main() -> Result<(), focal_core::FocalError> {
    let (anchors, classes) = (120_087, 80);
    // Head outputs around the prior -log(99), and labels from the matcher: a few foreground
    // anchors, some ignored ones, the rest background.
    let logits: Vec<f32> = (0..anchors * classes).map(|i| -4.6 + ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
    let labels: Vec<i32> = (0..anchors)
        .map(|a| match a % 997 {
            0 => (a % classes) as i32,
            1..=9 => IGNORE,
            _ => BACKGROUND,
        })
        .collect();

    let loss = SigmoidFocalLoss::new(FocalParams::retinanet(), Reduction::Normalizer(retinanet_normalizer(&labels)));
    let mut grad = vec![0.0f32; logits.len()];
    let start = std::time::Instant::now();
    let value = loss.forward_backward(
        TensorView::new(&logits, &[anchors, classes])?,
        Target::labels(TensorView::new(&labels, &[anchors])?),
        1.0,
        TensorViewMut::new(&mut grad, &[anchors, classes])?,
    )?;
    println!(
        "loss {value:.6} over {anchors} anchors x {classes} classes, {} foreground; fused forward+backward in {:?} ({})",
        focal_core::labels::count_foreground(&labels),
        start.elapsed(),
        focal_core::SimdLevel::detect().name(),
    );
    Ok(())
}
