//! Seeded scenes for the `anchors` benches: ground-truth boxes, detector-like overlapping
//! detections, regression codes and RetinaNet head outputs.

use crate::SplitMix64;

/// RetinaNet P3..P7 grids for an 800 x 800 padded image: 120,087 anchors.
pub const GRIDS_800: [[u32; 2]; 5] = [[100, 100], [50, 50], [25, 25], [13, 13], [7, 7]];

fn uniform(rng: &mut SplitMix64, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.unit()
}

/// `n` boxes with top-left corners uniform in `[0, extent)^2` and sides uniform in
/// `[min_side, max_side)`, like ground truth in an `extent` x `extent` image.
pub fn random_boxes(seed: u64, n: usize, extent: f32, min_side: f32, max_side: f32) -> Vec<[f32; 4]> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let (x, y) = (uniform(&mut rng, 0.0, extent), uniform(&mut rng, 0.0, extent));
            let (w, h) = (uniform(&mut rng, min_side, max_side), uniform(&mut rng, min_side, max_side));
            [x, y, x + w, y + h]
        })
        .collect()
}

/// Ground truth of one image: `n` boxes (sides 16 to 400 px in an 800 px image) and classes
/// `0..80`.
pub fn ground_truth(n: usize) -> (Vec<[f32; 4]>, Vec<i32>) {
    (random_boxes(n as u64, n, 700.0, 16.0, 400.0), (0..n as i32).map(|i| i % 80).collect())
}

/// Detector-like output: `n` boxes in clusters of about 10 around `n / 10` objects (jittered by
/// up to 15% of the object size), scores uniform in `[0, 1)`, classes in `0..num_classes`.
pub fn clustered_detections(seed: u64, n: usize, extent: f32, num_classes: u32) -> (Vec<[f32; 4]>, Vec<f32>, Vec<i32>) {
    let objects = random_boxes(seed ^ 0x5eed, n.div_ceil(10).max(1), extent, 16.0, 256.0);
    let mut rng = SplitMix64::new(seed);
    let mut boxes = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut classes = Vec::with_capacity(n);
    for i in 0..n {
        let o = objects[i % objects.len()];
        let (w, h) = (o[2] - o[0], o[3] - o[1]);
        let mut jitter = |s: f32| uniform(&mut rng, -0.15, 0.15) * s;
        let x1 = o[0] + jitter(w);
        let y1 = o[1] + jitter(h);
        let x2 = (o[2] + jitter(w)).max(x1 + 1.0);
        let y2 = (o[3] + jitter(h)).max(y1 + 1.0);
        boxes.push([x1, y1, x2, y2]);
        scores.push(rng.unit());
        classes.push((rng.next_u64() % num_classes.max(1) as u64) as i32);
    }
    (boxes, scores, classes)
}

/// `n` regression codes with components uniform in `[-spread, spread)`.
pub fn random_codes(seed: u64, n: usize, spread: f32) -> Vec<[f32; 4]> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| std::array::from_fn(|_| uniform(&mut rng, -spread, spread))).collect()
}

/// RetinaNet head outputs like a trained model's: `[A, C]` logits, 0.2% of them spread over
/// [-3, 3), the rest in [-9, -3) (below the 0.05 score threshold), and `[A]` regression codes.
pub fn head_outputs(anchors: usize, classes: usize, seed: u64) -> (Vec<f32>, Vec<[f32; 4]>) {
    let mut rng = SplitMix64::new(seed);
    let logits = (0..anchors * classes)
        .map(|_| if rng.next_u64() % 1000 < 2 { uniform(&mut rng, -3.0, 3.0) } else { uniform(&mut rng, -9.0, -3.0) })
        .collect();
    (logits, random_codes(seed + 1, anchors, 0.5))
}
