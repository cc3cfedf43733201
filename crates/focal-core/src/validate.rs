//! Shape and value checks shared by every loss, run before any numeric work.

use crate::error::{FocalError, Result};
use crate::tensor::{Shape, TensorView};
use rayon::prelude::*;

/// `(rows, classes)` of `[A, C]` or `[B, A, C]` logits.
pub(crate) fn rows_classes(shape: Shape) -> Result<(usize, usize)> {
    match shape.rank() {
        2 | 3 => {
            let classes = shape.last();
            Ok((shape.numel().checked_div(classes).unwrap_or(0), classes))
        }
        _ => Err(FocalError::Rank {
            what: "logits",
            expected: "2 ([A, C]) or 3 ([B, A, C])",
            shape: shape.dims().to_vec(),
        }),
    }
}

/// The logits shape without its class dimension.
pub(crate) fn row_shape(shape: Shape) -> Vec<usize> {
    shape.dims()[..shape.rank() - 1].to_vec()
}

pub(crate) fn same_shape(what: &'static str, expected: Shape, got: Shape) -> Result<()> {
    if expected != got {
        return Err(FocalError::ShapeMismatch { what, expected: expected.dims().to_vec(), got: got.dims().to_vec() });
    }
    Ok(())
}

pub(crate) fn labels_shape(logits: Shape, labels: Shape) -> Result<()> {
    let expected = row_shape(logits);
    if labels.dims() != expected.as_slice() {
        return Err(FocalError::ShapeMismatch { what: "labels", expected, got: labels.dims().to_vec() });
    }
    Ok(())
}

/// Dense targets must lie in [0, 1] (NaN is rejected).
pub(crate) fn unit_targets(targets: &TensorView<'_, f32>) -> Result<()> {
    let bad = targets.as_slice().par_iter().position_first(|t| !(0.0..=1.0).contains(t));
    match bad {
        Some(i) => Err(FocalError::InvalidParameter {
            name: "target",
            value: targets.as_slice()[i] as f64,
            expected: "a value in [0, 1] (first bad element reported)",
        }),
        None => Ok(()),
    }
}

/// Weights are per row (`[A]` / `[B, A]`) or per element, and finite.
pub(crate) fn weights(logits: Shape, weights: &TensorView<'_, f32>) -> Result<()> {
    let shape = weights.shape();
    if shape != logits && shape.dims() != row_shape(logits).as_slice() {
        return Err(FocalError::ShapeMismatch {
            what: "weights (per anchor or per element)",
            expected: logits.dims().to_vec(),
            got: shape.dims().to_vec(),
        });
    }
    match weights.as_slice().par_iter().position_first(|w| !w.is_finite()) {
        Some(i) => Err(FocalError::InvalidParameter {
            name: "weight",
            value: weights.as_slice()[i] as f64,
            expected: "a finite value (first bad element reported)",
        }),
        None => Ok(()),
    }
}
