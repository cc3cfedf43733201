//! Greedy non-maximum suppression and class-aware (batched) NMS, with torchvision's results and
//! keep order.
//!
//! * Boxes are visited by descending score; equal scores keep their input order (torchvision
//!   sorts stably), NaN scores come first (torch sorts NaN above every number).
//! * A box is suppressed by a kept box when their IoU is strictly greater than the threshold.
//!   The IoU uses torchvision's CPU kernel formulas (`std::max`/`std::min` semantics, `f32`
//!   arithmetic, comparison with the `f64` threshold), so kept sets are identical.
//! * [`batched_nms`] follows `torchvision.ops.batched_nms` on the CPU: up to 1000 boxes it runs
//!   one NMS on boxes shifted by `class * (max_coordinate + 1)` (torchvision's coordinate
//!   trick, reproduced because the shift changes rounding); above that it runs NMS per class
//!   (in parallel here) and orders the kept boxes by descending score. Equal scores there are
//!   ordered by index; torchvision's unstable sort may order them differently, the kept set is
//!   the same.
//!
//! The fast path keeps the remaining candidates as contiguous columns in score order, so the
//! suppression loop is branch-free and vectorised; suppressed candidates are compacted away
//! once they are the majority.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::boxes::BoxXyxy;
use crate::error::{AnchorError, Result, check_len};

/// torchvision's batched NMS switches from the coordinate trick to per-class NMS above this
/// many boxes on the CPU (`boxes.numel() > 4000`).
pub const COORDINATE_TRICK_MAX_BOXES: usize = 1000;

/// Options of [`nms_with_options`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NmsOptions {
    /// Suppress boxes whose IoU with a kept box is greater than this.
    pub iou_threshold: f64,
    /// Consider only boxes with `score > score_threshold`.
    pub score_threshold: Option<f32>,
    /// Consider only the `k` best-scoring boxes (after the score threshold).
    pub pre_topk: Option<usize>,
    /// Return at most this many kept boxes.
    pub max_keep: Option<usize>,
}

impl NmsOptions {
    /// Only an IoU threshold.
    pub fn new(iou_threshold: f64) -> Self {
        NmsOptions { iou_threshold, score_threshold: None, pre_topk: None, max_keep: None }
    }
}

/// Greedy NMS, as `torchvision.ops.nms`: indices of the kept boxes by descending score.
///
/// # Errors
/// [`AnchorError::Length`] when `scores.len() != boxes.len()`; [`AnchorError::Parameter`]
/// when the threshold is NaN.
///
/// # Examples
/// ```
/// let boxes = [[0.0f32, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]];
/// let keep = anchors::nms(&boxes, &[0.9, 0.8, 0.7], 0.5).unwrap();
/// assert_eq!(keep, [0, 2]);
/// ```
pub fn nms(boxes: &[BoxXyxy], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>> {
    nms_with_options(boxes, scores, None, &NmsOptions::new(iou_threshold))
}

/// Class-aware NMS, as `torchvision.ops.batched_nms`: boxes of different classes never
/// suppress each other. Indices of the kept boxes by descending score.
///
/// # Errors
/// As [`nms`], and [`AnchorError::Length`] when `classes.len() != boxes.len()`.
pub fn batched_nms(boxes: &[BoxXyxy], scores: &[f32], classes: &[i32], iou_threshold: f64) -> Result<Vec<usize>> {
    nms_with_options(boxes, scores, Some(classes), &NmsOptions::new(iou_threshold))
}

/// NMS (class-aware when `classes` is given) with a score threshold, a top-k pre-selection and
/// a cap on the number kept.
///
/// # Errors
/// As [`batched_nms`].
pub fn nms_with_options(
    boxes: &[BoxXyxy],
    scores: &[f32],
    classes: Option<&[i32]>,
    options: &NmsOptions,
) -> Result<Vec<usize>> {
    check_len("scores", boxes.len(), scores.len())?;
    if let Some(c) = classes {
        check_len("classes", boxes.len(), c.len())?;
    }
    if options.iou_threshold.is_nan() {
        return Err(AnchorError::Parameter {
            name: "NMS IoU threshold",
            value: options.iou_threshold,
            expected: "a number",
        });
    }
    let threshold = f32_threshold(options.iou_threshold);
    let mut candidates: Vec<usize> = match options.score_threshold {
        Some(t) => (0..boxes.len()).filter(|&i| scores[i] > t).collect(),
        None => (0..boxes.len()).collect(),
    };
    sort_by_score(&mut candidates, scores);
    if let Some(k) = options.pre_topk {
        candidates.truncate(k);
    }
    let mut keep = match classes {
        None => greedy(Columns::gather(boxes, &candidates, |_| 0.0), threshold),
        Some(classes) if candidates.len() <= COORDINATE_TRICK_MAX_BOXES => {
            // torch.max over every coordinate of the boxes passed (NaN propagates).
            let max_coordinate = candidates
                .iter()
                .flat_map(|&i| boxes[i])
                .fold(f32::NEG_INFINITY, |m, v| if v.is_nan() || m.is_nan() { f32::NAN } else { m.max(v) });
            let shift = |i: usize| classes[i] as f32 * (max_coordinate + 1.0);
            greedy(Columns::gather(boxes, &candidates, shift), threshold)
        }
        Some(classes) => per_class(boxes, scores, classes, &candidates, threshold),
    };
    if let Some(k) = options.max_keep {
        keep.truncate(k);
    }
    Ok(keep)
}

/// Per-class NMS in parallel, merged by descending score (ties by index).
fn per_class(boxes: &[BoxXyxy], scores: &[f32], classes: &[i32], sorted: &[usize], threshold: f32) -> Vec<usize> {
    let mut by_class: Vec<(i32, usize)> = sorted.iter().map(|&i| (classes[i], i)).collect();
    // Stable: within a class the score order (and index order among ties) is kept.
    by_class.sort_by_key(|&(c, _)| c);
    let groups: Vec<&[(i32, usize)]> = by_class.chunk_by(|a, b| a.0 == b.0).collect();
    let mut keep: Vec<usize> = groups
        .par_iter()
        .flat_map_iter(|group| {
            let members: Vec<usize> = group.iter().map(|&(_, i)| i).collect();
            greedy(Columns::gather(boxes, &members, |_| 0.0), threshold)
        })
        .collect();
    keep.sort_unstable_by_key(|&i| (score_key(scores[i]), i));
    keep
}

/// The largest `f32` `t` with `x > t  <=>  x as f64 > threshold` for every `f32` `x`.
fn f32_threshold(threshold: f64) -> f32 {
    let t = threshold as f32;
    if t as f64 > threshold { t.next_down() } else { t }
}

/// Sorts indices by descending score, NaN first, ties by index.
fn sort_by_score(indices: &mut [usize], scores: &[f32]) {
    indices.sort_unstable_by_key(|&i| (score_key(scores[i]), i));
}

/// A key that sorts ascending in torch's descending score order: NaN first, then from +inf
/// down; `-0.0` ties with `0.0`.
#[inline]
pub(crate) fn score_key(s: f32) -> u32 {
    if s.is_nan() {
        return 0;
    }
    let s = if s == 0.0 { 0.0 } else { s };
    let bits = s.to_bits();
    // An unsigned key rising with the value (+inf maps to 0xff80_0000), then reversed; every
    // number's reversed key is at least 0x007f_ffff, above NaN's 0.
    let rising = if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 };
    !rising
}

/// Candidate boxes as columns, in score order.
struct Columns {
    x1: Vec<f32>,
    y1: Vec<f32>,
    x2: Vec<f32>,
    y2: Vec<f32>,
    area: Vec<f32>,
    index: Vec<usize>,
}

impl Columns {
    fn gather(boxes: &[BoxXyxy], order: &[usize], shift: impl Fn(usize) -> f32) -> Self {
        let n = order.len();
        let mut c = Columns {
            x1: Vec::with_capacity(n),
            y1: Vec::with_capacity(n),
            x2: Vec::with_capacity(n),
            y2: Vec::with_capacity(n),
            area: Vec::with_capacity(n),
            index: order.to_vec(),
        };
        for &i in order {
            let s = shift(i);
            let b = if s == 0.0 { boxes[i] } else { boxes[i].map(|v| v + s) };
            c.x1.push(b[0]);
            c.y1.push(b[1]);
            c.x2.push(b[2]);
            c.y2.push(b[3]);
            c.area.push((b[2] - b[0]) * (b[3] - b[1]));
        }
        c
    }
}

/// `std::max(a, b)`: `a < b ? b : a`.
#[inline(always)]
fn std_max(a: f32, b: f32) -> f32 {
    if a < b { b } else { a }
}

/// `std::min(a, b)`: `b < a ? b : a`.
#[inline(always)]
fn std_min(a: f32, b: f32) -> f32 {
    if b < a { b } else { a }
}

/// Greedy NMS over candidates already in score order; returns kept input indices in order.
fn greedy(columns: Columns, threshold: f32) -> Vec<usize> {
    let Columns { mut x1, mut y1, mut x2, mut y2, mut area, mut index } = columns;
    let mut removed = vec![0u8; index.len()];
    let mut keep = Vec::new();
    let mut pos = 0;
    let mut removed_after_pos = 0usize;
    while pos < index.len() {
        if removed[pos] != 0 {
            pos += 1;
            removed_after_pos -= 1;
            continue;
        }
        keep.push(index[pos]);
        let kept = [x1[pos], y1[pos], x2[pos], y2[pos], area[pos]];
        let rest = pos + 1..index.len();
        let candidates =
            [&x1[rest.clone()], &y1[rest.clone()], &x2[rest.clone()], &y2[rest.clone()], &area[rest.clone()]];
        let newly = suppress(kept, candidates, &mut removed[rest], threshold);
        removed_after_pos += newly;
        pos += 1;
        let remaining = index.len() - pos;
        if remaining >= 64 && removed_after_pos * 2 > remaining {
            // Drop the suppressed candidates after `pos`, keeping the score order.
            let mut w = pos;
            for r in pos..index.len() {
                if removed[r] == 0 {
                    x1[w] = x1[r];
                    y1[w] = y1[r];
                    x2[w] = x2[r];
                    y2[w] = y2[r];
                    area[w] = area[r];
                    index[w] = index[r];
                    w += 1;
                }
            }
            for v in [&mut x1, &mut y1, &mut x2, &mut y2, &mut area] {
                v.truncate(w);
            }
            index.truncate(w);
            removed.truncate(w);
            removed[pos..].fill(0);
            removed_after_pos = 0;
        }
    }
    keep
}

/// Marks the candidates whose IoU with the kept box `[x1, y1, x2, y2, area]` exceeds
/// `threshold`; returns how many were newly marked. Runs the AVX2 build when the CPU has it.
fn suppress(kept: [f32; 5], candidates: [&[f32]; 5], removed: &mut [u8], threshold: f32) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { suppress_avx2(kept, candidates, removed, threshold) };
    }
    suppress_body(kept, candidates, removed, threshold)
}

/// [`suppress_body`] compiled with AVX2 (no FMA, so the same `f32` results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn suppress_avx2(kept: [f32; 5], candidates: [&[f32]; 5], removed: &mut [u8], threshold: f32) -> usize {
    suppress_body(kept, candidates, removed, threshold)
}

/// The overlap test of torchvision's CPU kernel, branch-free over contiguous columns.
#[inline(always)]
fn suppress_body(kept: [f32; 5], candidates: [&[f32]; 5], removed: &mut [u8], threshold: f32) -> usize {
    let [ix1, iy1, ix2, iy2, iarea] = kept;
    let [x1, y1, x2, y2, area] = candidates;
    let mut newly = 0usize;
    for (((((r, &jx1), &jy1), &jx2), &jy2), &ja) in removed.iter_mut().zip(x1).zip(y1).zip(x2).zip(y2).zip(area) {
        let w = std_max(0.0, std_min(ix2, jx2) - std_max(ix1, jx1));
        let h = std_max(0.0, std_min(iy2, jy2) - std_max(iy1, jy1));
        let inter = w * h;
        let ovr = inter / (iarea + ja - inter);
        let now = *r | u8::from(ovr > threshold);
        newly += usize::from(now - *r);
        *r = now;
    }
    newly
}

/// Greedy NMS written as torchvision's CPU kernel, for testing the fast path: `suppressed`
/// flags in input order, visited through the sorted order.
pub fn nms_reference(boxes: &[BoxXyxy], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>> {
    check_len("scores", boxes.len(), scores.len())?;
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Stable sort, descending, NaN first.
    order.sort_by(|&a, &b| {
        let (sa, sb) = (scores[a], scores[b]);
        match (sa.is_nan(), sb.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => sb.partial_cmp(&sa).unwrap_or(Ordering::Equal),
        }
    });
    let areas: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = boxes[i];
        for &j in &order[oi + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = boxes[j];
            let w = std_max(0.0, std_min(bi[2], bj[2]) - std_max(bi[0], bj[0]));
            let h = std_max(0.0, std_min(bi[3], bj[3]) - std_max(bi[1], bj[1]));
            let inter = w * h;
            let ovr = inter / (areas[i] + areas[j] - inter);
            if (ovr as f64) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_threshold_agrees_with_f64_comparison() {
        for t in [0.5f64, 0.7, 0.4, 0.3, 1.0 / 3.0, 0.0, 1.0] {
            let t32 = f32_threshold(t);
            let mut x = t as f32;
            for _ in 0..3 {
                x = x.next_down();
            }
            for _ in 0..7 {
                assert_eq!(x > t32, (x as f64) > t, "t = {t}, x = {x}");
                x = x.next_up();
            }
        }
    }

    #[test]
    fn score_key_orders_like_torch_descending() {
        let s = [1.0f32, f32::NAN, -0.0, 0.0, f32::INFINITY, -3.0, f32::NEG_INFINITY];
        let mut idx: Vec<usize> = (0..s.len()).collect();
        sort_by_score(&mut idx, &s);
        assert_eq!(idx, [1, 4, 0, 2, 3, 5, 6]);
    }

    #[test]
    fn equal_scores_keep_input_order() {
        let boxes = [[0.0f32, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 1.0, 1.0]];
        assert_eq!(nms(&boxes, &[0.5, 0.5, 0.5], 0.5).unwrap(), [0, 1]);
    }

    #[test]
    fn classes_do_not_suppress_each_other() {
        let boxes = [[0.0f32, 0.0, 1.0, 1.0]; 3];
        let keep = batched_nms(&boxes, &[0.9, 0.8, 0.7], &[0, 1, 0], 0.5).unwrap();
        assert_eq!(keep, [0, 1]);
    }

    #[test]
    fn options_filter_and_cap() {
        let boxes: Vec<BoxXyxy> = (0..10).map(|i| [i as f32 * 10.0, 0.0, i as f32 * 10.0 + 5.0, 5.0]).collect();
        let scores: Vec<f32> = (0..10).map(|i| i as f32 / 10.0).collect();
        let opts = NmsOptions { iou_threshold: 0.5, score_threshold: Some(0.25), pre_topk: Some(5), max_keep: Some(3) };
        assert_eq!(nms_with_options(&boxes, &scores, None, &opts).unwrap(), [9, 8, 7]);
    }

    #[test]
    fn nan_threshold_and_bad_lengths_are_errors() {
        let boxes = [[0.0f32, 0.0, 1.0, 1.0]];
        assert!(nms(&boxes, &[0.5], f64::NAN).is_err());
        assert!(nms(&boxes, &[0.5, 0.1], 0.5).is_err());
        assert!(batched_nms(&boxes, &[0.5], &[], 0.5).is_err());
    }

    #[test]
    fn empty_input_keeps_nothing() {
        assert!(nms(&[], &[], 0.5).unwrap().is_empty());
        assert!(batched_nms(&[], &[], &[], 0.5).unwrap().is_empty());
    }
}

#[cfg(test)]
mod simd_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            rng_seed: proptest::test_runner::RngSeed::Fixed(11),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn avx2_suppress_equals_portable_suppress(
            boxes in proptest::collection::vec(
                (0.0f32..60.0, 0.0f32..60.0, 1.0f32..40.0, 1.0f32..40.0).prop_map(|(x, y, w, h)| [x, y, x + w, y + h]),
                2..300,
            ),
            t in 0.0f32..1.0,
        ) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let n = boxes.len();
                let c = Columns::gather(&boxes, &(0..n).collect::<Vec<_>>(), |_| 0.0);
                let cols = [&c.x1[1..], &c.y1[1..], &c.x2[1..], &c.y2[1..], &c.area[1..]];
                let kept = [c.x1[0], c.y1[0], c.x2[0], c.y2[0], c.area[0]];
                let (mut a, mut b) = (vec![0u8; n - 1], vec![0u8; n - 1]);
                let na = suppress_body(kept, cols, &mut a, t);
                // SAFETY: AVX2 support checked above.
                let nb = unsafe { suppress_avx2(kept, cols, &mut b, t) };
                prop_assert_eq!((na, a), (nb, b));
            }
        }
    }
}
