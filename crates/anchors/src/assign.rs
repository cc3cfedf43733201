//! Target assignment for a batch: per-anchor class labels, matched ground truth and regression
//! targets, exactly as torchvision's RetinaNet computes them (`box_iou` + `Matcher` +
//! `BoxCoder.encode_single`), without materialising the `[M, A]` IoU matrix.
//!
//! The fused path makes two passes over the anchors in blocks of [`ASSIGN_CHUNK`]:
//! 1. for every ground truth, the IoU with each anchor of the block (vectorised; AVX2 when present),
//!    keeping each anchor's best IoU and first best ground truth, and each ground truth's best
//!    IoU in the block. Ground truths that cannot touch the block's bounding box are skipped
//!    (their IoU is exactly 0 there).
//! 2. thresholds, then the low-quality rule: a ground truth's best IoU can only be tied inside
//!    the blocks where its block maximum reaches it, so only those (ground truth, block) pairs
//!    are recomputed; then labels and encoding.
//!
//! The IoU is computed with the same `f32` operations in both passes and in
//! [`crate::boxes::box_iou`], so the result is bit-identical to [`assign_image_reference`]
//! (the readable twin on a materialised matrix) and to torchvision.

use rayon::prelude::*;

use crate::boxes::{BoxRequirement, BoxXyxy, box_area, box_iou, validate_boxes};
use crate::coder::BoxCoder;
use crate::error::{AnchorError, Result};
use crate::generator::Anchors;
use crate::matcher::{BACKGROUND, Matcher};

/// Anchors per block in target assignment.
pub(crate) const ASSIGN_CHUNK: usize = 2048;

/// The ground truth of one image.
#[derive(Clone, Copy, Debug)]
pub struct GroundTruth<'a> {
    /// Boxes `[x1, y1, x2, y2]`; each must be finite with `x2 > x1` and `y2 > y1`
    /// (torchvision refuses degenerate training boxes too).
    pub boxes: &'a [BoxXyxy],
    /// Class of each box, `0..C`.
    pub labels: &'a [i32],
}

/// Matcher, box coder and class count for [`TargetAssigner::assign`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetAssigner {
    /// How anchors are matched to ground truth.
    pub matcher: Matcher,
    /// How regression targets are encoded.
    pub coder: BoxCoder,
    /// When set, ground-truth labels must be below it.
    pub num_classes: Option<usize>,
}

impl Default for TargetAssigner {
    fn default() -> Self {
        Self::retinanet()
    }
}

/// Targets for `B` images of `A` anchors each, row-major `[B, A]` (`[B, A, 4]` for regression).
#[derive(Clone, Debug, Default)]
pub struct AssignedTargets {
    num_images: usize,
    num_anchors: usize,
    labels: Vec<i32>,
    matched_gt: Vec<i32>,
    regression: Vec<[f32; 4]>,
    num_foreground: Vec<usize>,
    best_iou: Vec<f32>,
}

impl AssignedTargets {
    /// Number of images `B`.
    pub fn num_images(&self) -> usize {
        self.num_images
    }

    /// Anchors per image `A`.
    pub fn num_anchors(&self) -> usize {
        self.num_anchors
    }

    /// Labels `[B, A]` in focal-core's codes: the matched box's class, `BACKGROUND` (-1) or
    /// `IGNORE` (-2).
    pub fn labels(&self) -> &[i32] {
        &self.labels
    }

    /// Matcher output `[B, A]`: the matched ground-truth index, `BACKGROUND` or `IGNORE`
    /// (torchvision's `matched_idxs`).
    pub fn matched_gt(&self) -> &[i32] {
        &self.matched_gt
    }

    /// Regression targets `[B, A, 4]`: the encoded matched box for foreground anchors, zeros
    /// elsewhere.
    pub fn regression(&self) -> &[[f32; 4]] {
        &self.regression
    }

    /// Foreground anchors per image (RetinaNet divides each image's loss by `max(1, n)`).
    pub fn num_foreground(&self) -> &[usize] {
        &self.num_foreground
    }

    /// Best IoU of each anchor over the image's ground truth `[B, A]` (0 with no ground truth).
    pub fn best_iou(&self) -> &[f32] {
        &self.best_iou
    }
}

impl TargetAssigner {
    /// torchvision's RetinaNet: [`Matcher::retinanet`], [`BoxCoder::retinanet`], labels unchecked
    /// beyond being non-negative.
    pub fn retinanet() -> Self {
        TargetAssigner { matcher: Matcher::retinanet(), coder: BoxCoder::retinanet(), num_classes: None }
    }

    /// detectron2's RetinaNet (`Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)`,
    /// `Box2BoxTransform(weights=(1, 1, 1, 1))`): the same thresholds, tie rule and coder as
    /// torchvision's, so the same as [`TargetAssigner::retinanet`]. detectron2 differs in its
    /// anchors ([`crate::AnchorConfig::detectron2_retinanet`]) and its post-processing
    /// ([`crate::PostprocessConfig::detectron2_retinanet`]).
    pub fn detectron2_retinanet() -> Self {
        Self::retinanet()
    }

    /// Assigns targets for every image (in parallel across images and anchor blocks).
    ///
    /// Images with no boxes get all-background labels and zero regression targets.
    ///
    /// # Errors
    /// [`AnchorError::InvalidBox`] for a non-finite or degenerate ground-truth box,
    /// [`AnchorError::Length`] when an image's boxes and labels differ in length,
    /// [`AnchorError::Label`] for a negative label or one not below `num_classes`.
    ///
    /// # Examples
    /// ```
    /// use anchors::{Anchors, GroundTruth, TargetAssigner};
    /// let anchors = Anchors::from_boxes(vec![[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]).unwrap();
    /// let gt = GroundTruth { boxes: &[[0.0, 0.0, 10.0, 12.0]], labels: &[3] };
    /// let t = TargetAssigner::retinanet().assign(&anchors, &[gt]).unwrap();
    /// assert_eq!(t.labels(), &[3, -1]);
    /// assert_eq!(t.num_foreground(), &[1]);
    /// ```
    pub fn assign(&self, anchors: &Anchors, images: &[GroundTruth<'_>]) -> Result<AssignedTargets> {
        let mut out = AssignedTargets::default();
        self.assign_into(anchors, images, &mut out)?;
        Ok(out)
    }

    /// As [`TargetAssigner::assign`], reusing the buffers of `out`.
    ///
    /// # Errors
    /// As [`TargetAssigner::assign`]; `out` is untouched on error.
    pub fn assign_into(&self, anchors: &Anchors, images: &[GroundTruth<'_>], out: &mut AssignedTargets) -> Result<()> {
        for gt in images {
            self.validate(gt)?;
        }
        let a = anchors.len();
        let total = images.len() * a;
        out.num_images = images.len();
        out.num_anchors = a;
        out.labels.resize(total, BACKGROUND);
        out.matched_gt.resize(total, BACKGROUND);
        out.regression.resize(total, [0.0; 4]);
        out.best_iou.resize(total, 0.0);
        out.num_foreground.clear();
        out.num_foreground.resize(images.len(), 0);
        if a == 0 {
            return Ok(());
        }
        out.labels
            .par_chunks_mut(a)
            .zip(out.matched_gt.par_chunks_mut(a))
            .zip(out.regression.par_chunks_mut(a))
            .zip(out.best_iou.par_chunks_mut(a))
            .zip(out.num_foreground.par_iter_mut())
            .zip(images.par_iter())
            .for_each(|(((((labels, matched), regression), best), n_fg), gt)| {
                let image = ImageOut { labels, matched, regression, best };
                *n_fg = self.assign_image(anchors, gt, image);
            });
        Ok(())
    }

    fn validate(&self, gt: &GroundTruth<'_>) -> Result<()> {
        validate_boxes("ground-truth boxes", gt.boxes, BoxRequirement::PositiveSize)?;
        if gt.labels.len() != gt.boxes.len() {
            return Err(AnchorError::Length {
                what: "ground-truth labels",
                expected: gt.boxes.len(),
                got: gt.labels.len(),
            });
        }
        let limit = self.num_classes.unwrap_or(i32::MAX as usize);
        if let Some(index) = gt.labels.iter().position(|&l| l < 0 || l as usize >= limit) {
            return Err(AnchorError::Label {
                what: "ground-truth labels",
                index,
                label: gt.labels[index] as i64,
                num_classes: limit,
            });
        }
        Ok(())
    }

    /// Targets of one image; returns the number of foreground anchors.
    fn assign_image(&self, anchors: &Anchors, gt: &GroundTruth<'_>, out: ImageOut<'_>) -> usize {
        let m = gt.boxes.len();
        if m == 0 {
            out.labels.fill(BACKGROUND);
            out.matched.fill(BACKGROUND);
            out.regression.fill([0.0; 4]);
            out.best.fill(0.0);
            return 0;
        }
        let mut block_max = vec![0.0f32; anchors.chunk_bounds.len() * m];
        out.matched
            .par_chunks_mut(ASSIGN_CHUNK)
            .zip(out.best.par_chunks_mut(ASSIGN_CHUNK))
            .zip(block_max.par_chunks_mut(m))
            .enumerate()
            .for_each(|(block, ((arg, best), gt_max))| {
                best_matches_in_block(anchors, block, gt.boxes, arg, best, gt_max);
            });
        // Each ground truth's best IoU over all anchors (all values are finite and >= 0).
        let highest: Vec<f32> =
            (0..m).map(|g| block_max.iter().skip(g).step_by(m).fold(0.0f32, |acc, &v| select_max(acc, v))).collect();
        let low_quality =
            LowQuality { enabled: self.matcher.allow_low_quality_matches(), highest: &highest, block_max: &block_max };
        out.labels
            .par_chunks_mut(ASSIGN_CHUNK)
            .zip(out.matched.par_chunks_mut(ASSIGN_CHUNK))
            .zip(out.regression.par_chunks_mut(ASSIGN_CHUNK))
            .zip(out.best.par_chunks(ASSIGN_CHUNK))
            .enumerate()
            .map(|(block, (((labels, matched), regression), best))| {
                let block_out = BlockOut { labels, matched, regression, best };
                self.finish_block(anchors, block, gt, &low_quality, block_out)
            })
            .sum()
    }

    /// Thresholds, low-quality restoration, labels and encoding for one block.
    fn finish_block(
        &self,
        anchors: &Anchors,
        block: usize,
        gt: &GroundTruth<'_>,
        low_quality: &LowQuality<'_>,
        out: BlockOut<'_>,
    ) -> usize {
        let start = block * ASSIGN_CHUNK;
        let mut restore = [false; ASSIGN_CHUNK];
        let restore = &mut restore[..out.labels.len()];
        low_quality.mark_ties(anchors, block, gt.boxes, restore);
        let mut n_fg = 0;
        for (i, (((label, matched), regression), &best)) in
            out.labels.iter_mut().zip(out.matched.iter_mut()).zip(out.regression.iter_mut()).zip(out.best).enumerate()
        {
            let arg = *matched;
            let code = match self.matcher.code(best, arg) {
                c if c < 0 && restore[i] => arg,
                c => c,
            };
            *matched = code;
            if code >= 0 {
                let g = code as usize;
                *label = gt.labels[g];
                *regression = self.coder.encode(&gt.boxes[g], &anchors.boxes()[start + i]);
                n_fg += 1;
            } else {
                *label = code;
                *regression = [0.0; 4];
            }
        }
        n_fg
    }
}

struct ImageOut<'a> {
    labels: &'a mut [i32],
    matched: &'a mut [i32],
    regression: &'a mut [[f32; 4]],
    best: &'a mut [f32],
}

struct BlockOut<'a> {
    labels: &'a mut [i32],
    matched: &'a mut [i32],
    regression: &'a mut [[f32; 4]],
    best: &'a [f32],
}

/// What the low-quality rule needs after pass 1.
struct LowQuality<'a> {
    enabled: bool,
    /// Each ground truth's best IoU over all anchors.
    highest: &'a [f32],
    /// Each ground truth's best IoU within each block, `[blocks, M]`.
    block_max: &'a [f32],
}

impl LowQuality<'_> {
    /// Marks the anchors of `block` whose IoU with some ground truth equals that ground truth's
    /// best IoU. Only ground truths whose best is reached inside this block can tie here, so
    /// this touches a handful of (ground truth, block) pairs per image.
    fn mark_ties(&self, anchors: &Anchors, block: usize, gts: &[BoxXyxy], restore: &mut [bool]) {
        if !self.enabled {
            return;
        }
        let m = gts.len();
        let start = block * ASSIGN_CHUNK;
        let n = restore.len();
        let col = |k: usize| &anchors.columns[k][start..start + n];
        let (x1, y1, x2, y2) = (col(0), col(1), col(2), col(3));
        let areas = &anchors.areas[start..start + n];
        let block_max = &self.block_max[block * m..(block + 1) * m];
        for ((gb, &h), &bm) in gts.iter().zip(self.highest).zip(block_max) {
            if bm != h {
                continue;
            }
            if h == 0.0 {
                // A ground truth that overlaps no anchor ties with every anchor.
                restore.fill(true);
                return;
            }
            let g_area = box_area(gb);
            for (((((r, &x1), &y1), &x2), &y2), &area) in restore.iter_mut().zip(x1).zip(y1).zip(x2).zip(y2).zip(areas)
            {
                *r |= iou_gt_anchor(gb, g_area, x1, y1, x2, y2, area) == h;
            }
        }
    }
}

/// Pass 1 for one block: each anchor's best IoU and first best ground truth, and each ground
/// truth's best IoU within the block. Runs the AVX2 build of the same code when the CPU has it.
fn best_matches_in_block(
    anchors: &Anchors,
    block: usize,
    gts: &[BoxXyxy],
    arg: &mut [i32],
    best: &mut [f32],
    gt_max: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { best_matches_in_block_avx2(anchors, block, gts, arg, best, gt_max) };
        return;
    }
    best_matches_in_block_body(anchors, block, gts, arg, best, gt_max);
}

/// [`best_matches_in_block_body`] compiled with AVX2 (eight lanes). No FMA: every operation is
/// the same IEEE `f32` operation as in the portable build, so results are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
fn best_matches_in_block_avx2(
    anchors: &Anchors,
    block: usize,
    gts: &[BoxXyxy],
    arg: &mut [i32],
    best: &mut [f32],
    gt_max: &mut [f32],
) {
    best_matches_in_block_body(anchors, block, gts, arg, best, gt_max);
}

#[inline(always)]
fn best_matches_in_block_body(
    anchors: &Anchors,
    block: usize,
    gts: &[BoxXyxy],
    arg: &mut [i32],
    best: &mut [f32],
    gt_max: &mut [f32],
) {
    let start = block * ASSIGN_CHUNK;
    let n = arg.len();
    let col = |k: usize| &anchors.columns[k][start..start + n];
    let (x1, y1, x2, y2) = (col(0), col(1), col(2), col(3));
    let areas = &anchors.areas[start..start + n];
    let bound = anchors.chunk_bounds[block];
    best.fill(0.0);
    arg.fill(0);
    for ((g, gb), gmax_out) in gts.iter().enumerate().zip(gt_max.iter_mut()) {
        if disjoint(gb, &bound) {
            *gmax_out = 0.0;
            continue;
        }
        let g_area = box_area(gb);
        let g = g as i32;
        // IoUs here are finite and >= 0, so their bit patterns order like their values and an
        // integer max (which vectorises, unlike a float max without fast-math) finds the largest.
        let mut gmax_bits = 0u32;
        for ((((((b, ix), &x1), &y1), &x2), &y2), &area) in
            best.iter_mut().zip(arg.iter_mut()).zip(x1).zip(y1).zip(x2).zip(y2).zip(areas)
        {
            let iou = iou_gt_anchor(gb, g_area, x1, y1, x2, y2, area);
            let better = iou > *b;
            *b = if better { iou } else { *b };
            *ix = if better { g } else { *ix };
            gmax_bits = gmax_bits.max(iou.to_bits());
        }
        *gmax_out = f32::from_bits(gmax_bits);
    }
}

/// Whether `gt` cannot intersect any box inside `bound` with a positive area.
#[inline]
fn disjoint(gt: &BoxXyxy, bound: &BoxXyxy) -> bool {
    gt[2] <= bound[0] || gt[0] >= bound[2] || gt[3] <= bound[1] || gt[1] >= bound[3]
}

#[inline]
fn select_max(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

#[inline]
fn select_min(a: f32, b: f32) -> f32 {
    if b < a { b } else { a }
}

/// torchvision's `box_iou(gt, anchor)` for finite boxes: `inter / (area_gt + area_anchor - inter)`.
#[inline(always)]
fn iou_gt_anchor(gt: &BoxXyxy, g_area: f32, x1: f32, y1: f32, x2: f32, y2: f32, area: f32) -> f32 {
    let w = select_max(select_min(gt[2], x2) - select_max(gt[0], x1), 0.0);
    let h = select_max(select_min(gt[3], y2) - select_max(gt[1], y1), 0.0);
    let inter = w * h;
    inter / (g_area + area - inter)
}

/// Targets of one image from [`assign_image_reference`].
#[derive(Clone, Debug, PartialEq)]
pub struct ImageTargets {
    /// Labels `[A]` (class, `BACKGROUND` or `IGNORE`).
    pub labels: Vec<i32>,
    /// Matcher output `[A]`.
    pub matched_gt: Vec<i32>,
    /// Regression targets `[A, 4]` (zeros for anchors that are not foreground).
    pub regression: Vec<[f32; 4]>,
}

/// Targets of one image computed the plain way: the full `[M, A]` IoU matrix from
/// [`box_iou`], [`Matcher::match_quality_matrix`], then labels and [`BoxCoder::encode`].
/// The readable twin of [`TargetAssigner::assign`].
///
/// # Errors
/// As [`TargetAssigner::assign`].
pub fn assign_image_reference(
    assigner: &TargetAssigner,
    anchors: &[BoxXyxy],
    gt: &GroundTruth<'_>,
) -> Result<ImageTargets> {
    assigner.validate(gt)?;
    let (m, a) = (gt.boxes.len(), anchors.len());
    let mut quality = vec![0.0f32; m * a];
    box_iou(gt.boxes, anchors, &mut quality)?;
    let mut matched = vec![0i32; a];
    assigner.matcher.match_quality_matrix(&quality, m, a, &mut matched)?;
    let labels = matched.iter().map(|&c| if c >= 0 { gt.labels[c as usize] } else { c }).collect();
    let regression = matched
        .iter()
        .zip(anchors)
        .map(|(&c, anchor)| if c >= 0 { assigner.coder.encode(&gt.boxes[c as usize], anchor) } else { [0.0; 4] })
        .collect();
    Ok(ImageTargets { labels, matched_gt: matched, regression })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn boxes(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<BoxXyxy>> {
        proptest::collection::vec(
            (0.0f32..300.0, 0.0f32..300.0, 4.0f32..120.0, 4.0f32..120.0).prop_map(|(x, y, w, h)| [x, y, x + w, y + h]),
            n,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 16,
            rng_seed: proptest::test_runner::RngSeed::Fixed(7),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn avx2_block_equals_portable_block(anchor_boxes in boxes(2000..5000), gts in boxes(1..20)) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let anchors = Anchors::from_boxes(anchor_boxes).unwrap();
                for block in 0..anchors.chunk_bounds.len() {
                    let n = (anchors.len() - block * ASSIGN_CHUNK).min(ASSIGN_CHUNK);
                    let mut a = (vec![0; n], vec![0.0; n], vec![0.0; gts.len()]);
                    let mut b = a.clone();
                    best_matches_in_block_body(&anchors, block, &gts, &mut a.0, &mut a.1, &mut a.2);
                    // SAFETY: AVX2 support checked above.
                    unsafe { best_matches_in_block_avx2(&anchors, block, &gts, &mut b.0, &mut b.1, &mut b.2) };
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
