//! Inputs and baselines shared by the criterion benches and `cargo xtask bench`, so both
//! measure the same thing.
#![warn(missing_docs)]

pub mod anchors;

use rayon::prelude::*;

/// RetinaNet at 800x1216: the sum over P3-P7 of H*W*9 anchors.
pub const RETINANET_ANCHORS: usize = 120_087;
/// COCO classes.
pub const COCO_CLASSES: usize = 80;

/// SplitMix64, a tiny seeded generator.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
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
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Seeded RetinaNet-like classification inputs: logits around the prior (the classifier bias
/// -log(99) = -4.6, +-3), about 0.1% foreground anchors and 1% ignored ones.
pub fn retinanet_inputs(anchors: usize, classes: usize, seed: u64) -> (Vec<f32>, Vec<i32>) {
    let mut rng = SplitMix64::new(seed);
    let logits = (0..anchors * classes).map(|_| -4.6 + 3.0 * (rng.unit() * 2.0 - 1.0)).collect();
    let labels = (0..anchors)
        .map(|_| match rng.next_u64() % 1000 {
            0 => (rng.next_u64() % classes as u64) as i32,
            1..=10 => -2,
            _ => -1,
        })
        .collect();
    (logits, labels)
}

/// The memory floor of an elementwise pass: read `x`, write an array of the same size, in the
/// same 16K-element chunks and on the same threads as focal-core.
pub fn floor_copy(x: &[f32], out: &mut [f32]) {
    const CHUNK: usize = 16 * 1024;
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, i)| o.copy_from_slice(i));
}
