//! Box geometry: areas, pairwise IoU and GIoU, clipping and small-box removal.
//!
//! Boxes are `[x1, y1, x2, y2]` in absolute pixels (`f32`). Every formula is evaluated in the
//! same order and precision as `torchvision.ops.boxes`, so results are bit-identical to
//! torchvision's on the CPU.
//!
//! Degenerate boxes (`x2 < x1` or `y2 < y1`) are accepted here and follow torchvision's formulas:
//! their area is negative, their intersection with anything is 0. NaN coordinates give NaN
//! areas and IoUs (never a silent 0). Entry points that need valid boxes (target assignment)
//! check them with [`validate_boxes`].

use focal_core::TensorView;
use rayon::prelude::*;

use crate::error::{AnchorError, Result, check_len};

/// One box, `[x1, y1, x2, y2]`.
pub type BoxXyxy = [f32; 4];

/// Reads a `[N, 4]` host tensor as boxes.
///
/// # Examples
/// ```
/// use focal_core::TensorView;
/// let flat = [0.0f32, 0.0, 2.0, 2.0, 1.0, 1.0, 3.0, 4.0];
/// let view = TensorView::new(&flat, &[2, 4]).unwrap();
/// let boxes = anchors::boxes::boxes_from_tensor(&view).unwrap();
/// assert_eq!(boxes[1], [1.0, 1.0, 3.0, 4.0]);
/// assert!(anchors::boxes::boxes_from_tensor(&TensorView::new(&flat, &[4, 2]).unwrap()).is_err());
/// ```
///
/// # Errors
/// [`AnchorError::Tensor`] when the view is not of rank 2 with a last dimension of 4.
pub fn boxes_from_tensor<'a>(view: &TensorView<'a, f32>) -> Result<&'a [BoxXyxy]> {
    let dims = view.shape().dims().to_vec();
    if dims.len() != 2 || dims[1] != 4 {
        return Err(focal_core::FocalError::Rank { what: "boxes", expected: "2 with shape [N, 4]", shape: dims }.into());
    }
    // `[f32; 4]` has the alignment of `f32` and the length is `N * 4`, so this cannot fail;
    // map the error anyway rather than panic.
    bytemuck::try_cast_slice(view.as_slice())
        .map_err(|_| focal_core::FocalError::NotContiguous { what: "boxes as [f32; 4]" }.into())
}

/// Area `(x2 - x1) * (y2 - y1)` (negative for a degenerate box), as `torchvision.ops.box_area`.
#[inline]
pub fn box_area(b: &BoxXyxy) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// IoU of two boxes, `inter / (area_a + area_b - inter)`, in torchvision's operation order.
#[inline]
pub fn iou(a: &BoxXyxy, b: &BoxXyxy) -> f32 {
    iou_with_areas(a, box_area(a), b, box_area(b))
}

/// IoU with precomputed areas (`area_a` is added first, as `area1[:, None] + area2`).
#[inline]
pub fn iou_with_areas(a: &BoxXyxy, area_a: f32, b: &BoxXyxy, area_b: f32) -> f32 {
    let inter = intersection(a, b);
    inter / (area_a + area_b - inter)
}

/// Intersection area of two boxes, as torchvision's `_box_inter_union`. NaN coordinates give
/// NaN, as torch's `max`/`min`/`clamp` do (Rust's `f32::max` would drop the NaN).
#[inline]
pub fn intersection(a: &BoxXyxy, b: &BoxXyxy) -> f32 {
    let w = clamp_min0(nan_min(a[2], b[2]) - nan_max(a[0], b[0]));
    let h = clamp_min0(nan_min(a[3], b[3]) - nan_max(a[1], b[1]));
    w * h
}

#[inline]
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
}

#[inline]
fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.min(b) }
}

#[inline]
fn clamp_min0(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// Pairwise IoU `[N, M]` (row-major, `out[i * M + j] = iou(a[i], b[j])`), as
/// `torchvision.ops.box_iou(a, b)`. Rows are computed in parallel.
///
/// # Errors
/// [`AnchorError::Length`] when `out.len() != N * M`.
///
/// # Examples
/// ```
/// let a = [[0.0f32, 0.0, 2.0, 2.0]];
/// let b = [[1.0f32, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]];
/// let mut out = [0.0f32; 2];
/// anchors::boxes::box_iou(&a, &b, &mut out).unwrap();
/// assert_eq!(out, [2.0 / 6.0, 0.0]);
/// ```
pub fn box_iou(a: &[BoxXyxy], b: &[BoxXyxy], out: &mut [f32]) -> Result<()> {
    check_len("box_iou output", a.len() * b.len(), out.len())?;
    if b.is_empty() {
        return Ok(());
    }
    let areas_b: Vec<f32> = b.iter().map(box_area).collect();
    out.par_chunks_mut(b.len()).zip(a.par_iter()).for_each(|(row, ba)| {
        let area_a = box_area(ba);
        for ((o, bb), &area_b) in row.iter_mut().zip(b).zip(&areas_b) {
            *o = iou_with_areas(ba, area_a, bb, area_b);
        }
    });
    Ok(())
}

/// Generalized IoU of two boxes, as `torchvision.ops.generalized_box_iou`:
/// `iou - (enclosing - union) / enclosing`.
#[inline]
pub fn giou(a: &BoxXyxy, b: &BoxXyxy) -> f32 {
    let inter = intersection(a, b);
    let union = box_area(a) + box_area(b) - inter;
    let iou = inter / union;
    let w = clamp_min0(nan_max(a[2], b[2]) - nan_min(a[0], b[0]));
    let h = clamp_min0(nan_max(a[3], b[3]) - nan_min(a[1], b[1]));
    let enclosing = w * h;
    iou - (enclosing - union) / enclosing
}

/// Pairwise generalized IoU `[N, M]`, as `torchvision.ops.generalized_box_iou(a, b)`.
///
/// Values lie in `[-1, 1]` for valid boxes; two coincident zero-area boxes give NaN, as in
/// torchvision.
///
/// # Errors
/// [`AnchorError::Length`] when `out.len() != N * M`.
pub fn generalized_box_iou(a: &[BoxXyxy], b: &[BoxXyxy], out: &mut [f32]) -> Result<()> {
    check_len("generalized_box_iou output", a.len() * b.len(), out.len())?;
    if b.is_empty() {
        return Ok(());
    }
    out.par_chunks_mut(b.len()).zip(a.par_iter()).for_each(|(row, ba)| {
        for (o, bb) in row.iter_mut().zip(b) {
            *o = giou(ba, bb);
        }
    });
    Ok(())
}

/// Clips boxes in place to an image of `[height, width]`, as
/// `torchvision.ops.clip_boxes_to_image` (x to `[0, width]`, y to `[0, height]`; NaN stays NaN).
pub fn clip_boxes_to_image(boxes: &mut [BoxXyxy], image_size: [u32; 2]) {
    let [height, width] = image_size.map(|v| v as f32);
    for b in boxes {
        *b = clip_box(*b, height, width);
    }
}

#[inline]
pub(crate) fn clip_box(b: BoxXyxy, height: f32, width: f32) -> BoxXyxy {
    [b[0].clamp(0.0, width), b[1].clamp(0.0, height), b[2].clamp(0.0, width), b[3].clamp(0.0, height)]
}

/// Indices of the boxes whose width and height are both `>= min_size`, as
/// `torchvision.ops.remove_small_boxes` (boxes with NaN sides are removed).
pub fn remove_small_boxes(boxes: &[BoxXyxy], min_size: f32) -> Vec<usize> {
    boxes
        .iter()
        .enumerate()
        .filter(|(_, b)| b[2] - b[0] >= min_size && b[3] - b[1] >= min_size)
        .map(|(i, _)| i)
        .collect()
}

/// What [`validate_boxes`] requires of every box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoxRequirement {
    /// Finite, `x2 >= x1` and `y2 >= y1` (zero-area boxes allowed).
    NonNegativeSize,
    /// Finite, `x2 > x1` and `y2 > y1` (torchvision's check on training targets).
    PositiveSize,
}

/// Checks that every box is finite and not degenerate.
///
/// # Errors
/// [`AnchorError::InvalidBox`] naming the first bad box.
pub fn validate_boxes(what: &'static str, boxes: &[BoxXyxy], rule: BoxRequirement) -> Result<()> {
    let (ok, requirement): (fn(&BoxXyxy) -> bool, &'static str) = match rule {
        BoxRequirement::NonNegativeSize => {
            (|b| b.iter().all(|v| v.is_finite()) && b[2] >= b[0] && b[3] >= b[1], "x2 >= x1 and y2 >= y1")
        }
        BoxRequirement::PositiveSize => {
            (|b| b.iter().all(|v| v.is_finite()) && b[2] > b[0] && b[3] > b[1], "x2 > x1 and y2 > y1")
        }
    };
    match boxes.iter().position(|b| !ok(b)) {
        Some(index) => Err(AnchorError::InvalidBox { what, index, coords: boxes[index], requirement }),
        None => Ok(()),
    }
}
