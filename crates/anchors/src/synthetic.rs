//! Seeded synthetic scenes for benchmarks and tests: ground-truth boxes, detector-like
//! overlapping detections and regression codes. The same seed gives the same values on every
//! platform (a SplitMix64 stream, no floating-point library calls).

use crate::boxes::BoxXyxy;

/// A SplitMix64 stream.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `n` boxes with top-left corners uniform in `[0, extent)^2` and sides uniform in
/// `[min_side, max_side)`, like ground truth in an `extent` x `extent` image.
pub fn random_boxes(seed: u64, n: usize, extent: f32, min_side: f32, max_side: f32) -> Vec<BoxXyxy> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let (x, y) = (rng.uniform(0.0, extent), rng.uniform(0.0, extent));
            let (w, h) = (rng.uniform(min_side, max_side), rng.uniform(min_side, max_side));
            [x, y, x + w, y + h]
        })
        .collect()
}

/// Detector-like output: `n` boxes in clusters of about 10 around `n / 10` objects (jittered by
/// up to 15% of the object size), scores uniform in `[0, 1)`, classes in `0..num_classes`.
pub fn clustered_detections(seed: u64, n: usize, extent: f32, num_classes: u32) -> (Vec<BoxXyxy>, Vec<f32>, Vec<i32>) {
    let objects = random_boxes(seed ^ 0x5eed, n.div_ceil(10).max(1), extent, 16.0, 256.0);
    let mut rng = SplitMix64::new(seed);
    let mut boxes = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut classes = Vec::with_capacity(n);
    for i in 0..n {
        let o = objects[i % objects.len()];
        let (w, h) = (o[2] - o[0], o[3] - o[1]);
        let j = |rng: &mut SplitMix64, s: f32| rng.uniform(-0.15, 0.15) * s;
        let x1 = o[0] + j(&mut rng, w);
        let y1 = o[1] + j(&mut rng, h);
        let x2 = (o[2] + j(&mut rng, w)).max(x1 + 1.0);
        let y2 = (o[3] + j(&mut rng, h)).max(y1 + 1.0);
        boxes.push([x1, y1, x2, y2]);
        scores.push(rng.unit());
        classes.push(rng.below(num_classes as u64) as i32);
    }
    (boxes, scores, classes)
}

/// `n` regression codes with components uniform in `[-spread, spread)`.
pub fn random_codes(seed: u64, n: usize, spread: f32) -> Vec<[f32; 4]> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| std::array::from_fn(|_| rng.uniform(-spread, spread))).collect()
}
