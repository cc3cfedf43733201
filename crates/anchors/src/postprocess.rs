//! RetinaNet post-processing, as torchvision's `RetinaNet.postprocess_detections`.
//!
//! Per image and per level: scores `sigmoid(logit)` for every (anchor, class), keep those
//! `> score_threshold`, then the `topk_candidates` best, decode their boxes against their anchors
//! and clip them to the image. Then class-aware NMS over all levels and keep the
//! `detections_per_image` best.
//!
//! Scores are `1 / (1 + exp(-x))` in `f32`; torch's vectorised `exp` may differ by an ulp, so a
//! score within an ulp of the threshold, or two candidates within an ulp of each other at the
//! top-k cut, may be decided differently. Equal scores are ordered by index (torch's `topk`
//! leaves their order unspecified).

use rayon::prelude::*;

use crate::boxes::{BoxXyxy, clip_box};
use crate::coder::BoxCoder;
use crate::error::{AnchorError, Result, check_len};
use crate::generator::Anchors;
use crate::nms::{batched_nms, score_key};

/// Thresholds and limits of the post-processing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PostprocessConfig {
    /// Keep (anchor, class) pairs with `sigmoid(logit) > score_threshold`.
    pub score_threshold: f32,
    /// Keep at most this many candidates per level.
    pub topk_candidates: usize,
    /// Class-aware NMS IoU threshold.
    pub nms_threshold: f64,
    /// Keep at most this many detections per image.
    pub detections_per_image: usize,
}

impl Default for PostprocessConfig {
    fn default() -> Self {
        Self::torchvision_retinanet()
    }
}

impl PostprocessConfig {
    /// torchvision's RetinaNet: 0.05, top 1000 per level, NMS 0.5, 300 detections.
    pub fn torchvision_retinanet() -> Self {
        PostprocessConfig {
            score_threshold: 0.05,
            topk_candidates: 1000,
            nms_threshold: 0.5,
            detections_per_image: 300,
        }
    }

    /// detectron2's RetinaNet: as torchvision but 100 detections per image.
    pub fn detectron2_retinanet() -> Self {
        PostprocessConfig { detections_per_image: 100, ..Self::torchvision_retinanet() }
    }
}

/// Head outputs and anchors of one image at one level.
#[derive(Clone, Copy, Debug)]
pub struct LevelOutputs<'a> {
    /// Class logits `[A_l, C]`, row-major.
    pub logits: &'a [f32],
    /// Box regression `[A_l, 4]`.
    pub regression: &'a [[f32; 4]],
    /// The level's anchors `[A_l, 4]`.
    pub anchors: &'a [BoxXyxy],
}

/// Detections of one image, by descending score.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detections {
    /// Boxes `[x1, y1, x2, y2]`, clipped to the image.
    pub boxes: Vec<BoxXyxy>,
    /// Scores (sigmoid of the logit).
    pub scores: Vec<f32>,
    /// Classes `0..C`.
    pub labels: Vec<i32>,
}

/// Post-processes one image.
///
/// # Errors
/// [`AnchorError::Parameter`] when `num_classes` is 0 or the NMS threshold is NaN;
/// [`AnchorError::Length`] when a level's logits, regression and anchors disagree.
pub fn postprocess_image(
    levels: &[LevelOutputs<'_>],
    num_classes: usize,
    image_size: [u32; 2],
    coder: &BoxCoder,
    config: &PostprocessConfig,
) -> Result<Detections> {
    validate(levels, num_classes, config)?;
    let [height, width] = image_size.map(|v| v as f32);
    let mut boxes = Vec::new();
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    let per_level: Vec<Vec<(f32, usize)>> = levels.par_iter().map(|l| top_candidates(l.logits, config)).collect();
    for (level, candidates) in levels.iter().zip(per_level) {
        for (score, flat) in candidates {
            let anchor = flat / num_classes;
            let b = coder.decode(&level.regression[anchor], &level.anchors[anchor]);
            boxes.push(clip_box(b, height, width));
            scores.push(score);
            labels.push((flat % num_classes) as i32);
        }
    }
    let mut keep = batched_nms(&boxes, &scores, &labels, config.nms_threshold)?;
    keep.truncate(config.detections_per_image);
    Ok(Detections {
        boxes: keep.iter().map(|&i| boxes[i]).collect(),
        scores: keep.iter().map(|&i| scores[i]).collect(),
        labels: keep.iter().map(|&i| labels[i]).collect(),
    })
}

/// Post-processes a batch in parallel: `logits` `[B, A, C]`, `regression` `[B, A, 4]`, the
/// shared `anchors` (split into levels by their level ranges) and each image's
/// `[height, width]` (the size boxes are clipped to).
///
/// # Errors
/// As [`postprocess_image`], and [`AnchorError::Length`] when the buffers do not hold
/// `image_sizes.len()` images.
///
/// # Examples
/// ```
/// use anchors::{Anchors, BoxCoder, PostprocessConfig, postprocess_batch};
/// let anchors = Anchors::from_boxes(vec![[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]]).unwrap();
/// let logits = [3.0f32, -9.0, 2.0, -9.0]; // 2 anchors x 2 classes
/// let regression = [[0.0f32; 4]; 2];
/// let dets = postprocess_batch(&logits, &regression, &anchors, 2, &[[32, 32]],
///     &BoxCoder::retinanet(), &PostprocessConfig::torchvision_retinanet()).unwrap();
/// assert_eq!(dets[0].labels, [0]); // the second box overlaps the first too much
/// ```
pub fn postprocess_batch(
    logits: &[f32],
    regression: &[[f32; 4]],
    anchors: &Anchors,
    num_classes: usize,
    image_sizes: &[[u32; 2]],
    coder: &BoxCoder,
    config: &PostprocessConfig,
) -> Result<Vec<Detections>> {
    let b = image_sizes.len();
    let a = anchors.len();
    check_len("batched logits", b * a * num_classes, logits.len())?;
    check_len("batched regression", b * a, regression.len())?;
    (0..b)
        .into_par_iter()
        .map(|i| {
            let levels: Vec<LevelOutputs<'_>> = (0..anchors.num_levels())
                .map(|l| {
                    let r = anchors.level_range(l);
                    LevelOutputs {
                        logits: &logits[(i * a + r.start) * num_classes..(i * a + r.end) * num_classes],
                        regression: &regression[i * a + r.start..i * a + r.end],
                        anchors: &anchors.boxes()[r],
                    }
                })
                .collect();
            postprocess_image(&levels, num_classes, image_sizes[i], coder, config)
        })
        .collect()
}

fn validate(levels: &[LevelOutputs<'_>], num_classes: usize, config: &PostprocessConfig) -> Result<()> {
    if num_classes == 0 {
        return Err(AnchorError::Parameter { name: "num_classes", value: 0.0, expected: "at least 1" });
    }
    if config.nms_threshold.is_nan() || config.score_threshold.is_nan() {
        return Err(AnchorError::Parameter {
            name: "post-processing threshold",
            value: f64::NAN,
            expected: "a number",
        });
    }
    for level in levels {
        check_len("level regression", level.anchors.len(), level.regression.len())?;
        check_len("level logits", level.anchors.len() * num_classes, level.logits.len())?;
    }
    Ok(())
}

/// Logits per parallel task when scanning a level for candidates.
const SCAN_CHUNK: usize = 1 << 16;

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `(score, flat index)` of the best candidates of one level above the score threshold, by
/// descending score (ties by index).
fn top_candidates(logits: &[f32], config: &PostprocessConfig) -> Vec<(f32, usize)> {
    let t = config.score_threshold;
    // Skip the exp for logits far below the threshold's logit; the exact test follows.
    let prefilter = if t > 0.0 && t < 1.0 { (t / (1.0 - t)).ln() - 1e-2 } else { f32::NEG_INFINITY };
    // Chunks scanned in parallel, collected in index order.
    let mut cands: Vec<(f32, usize)> = logits
        .par_chunks(SCAN_CHUNK)
        .enumerate()
        .flat_map_iter(|(c, chunk)| {
            chunk.iter().enumerate().filter(|&(_, &x)| x > prefilter).filter_map(move |(i, &x)| {
                let s = sigmoid(x);
                (s > t).then_some((s, c * SCAN_CHUNK + i))
            })
        })
        .collect();
    let k = config.topk_candidates;
    let key = |c: &(f32, usize)| (score_key(c.0), c.1);
    if cands.len() > k && k > 0 {
        cands.select_nth_unstable_by_key(k - 1, key);
    }
    cands.truncate(k);
    cands.sort_unstable_by_key(key);
    cands
}
