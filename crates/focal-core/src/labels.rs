//! Sparse label codes, shared with torchvision's `Matcher`.
//!
//! One `i32` per anchor: `0..C` is a foreground anchor of that class, [`BACKGROUND`] a
//! background anchor, [`IGNORE`] an anchor between the IoU thresholds that contributes neither
//! loss nor gradient.

use crate::error::{FocalError, Result};

/// Background anchor (torchvision `Matcher.BELOW_LOW_THRESHOLD`).
pub const BACKGROUND: i32 = -1;
/// Ignored anchor (torchvision `Matcher.BETWEEN_THRESHOLDS`).
pub const IGNORE: i32 = -2;

/// Checks every label against `num_classes`.
///
/// # Errors
/// [`FocalError::LabelOutOfRange`] naming the first bad label.
pub fn validate_labels(labels: &[i32], num_classes: usize) -> Result<()> {
    match labels.iter().position(|&l| l < IGNORE || (l >= 0 && l as usize >= num_classes)) {
        Some(index) => Err(FocalError::LabelOutOfRange { index, label: labels[index], num_classes }),
        None => Ok(()),
    }
}

/// Number of foreground anchors (labels `>= 0`).
pub fn count_foreground(labels: &[i32]) -> usize {
    labels.iter().filter(|&&l| l >= 0).count()
}

/// RetinaNet's normaliser: `max(1, number of foreground anchors)`.
///
/// # Examples
/// ```
/// use focal_core::labels::{retinanet_normalizer, BACKGROUND, IGNORE};
/// assert_eq!(retinanet_normalizer(&[BACKGROUND, IGNORE]), 1.0);
/// assert_eq!(retinanet_normalizer(&[3, 0, BACKGROUND]), 2.0);
/// ```
pub fn retinanet_normalizer(labels: &[i32]) -> f64 {
    count_foreground(labels).max(1) as f64
}
