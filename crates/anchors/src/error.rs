//! The one error type of this crate.

use thiserror::Error;

/// Everything that can be wrong with a call into `anchors`.
///
/// Every variant is detected before any numeric work starts, so an `Err` never leaves a
/// half-written output behind.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AnchorError {
    /// Two inputs that must agree in length do not.
    #[error("length mismatch for {what}: expected {expected}, got {got}")]
    Length {
        /// Which argument had the wrong length.
        what: &'static str,
        /// The length that was required.
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// A box that must be valid is not.
    #[error("{what}: box {index} is {coords:?}; expected finite coordinates with {requirement}")]
    InvalidBox {
        /// Which set of boxes.
        what: &'static str,
        /// Index of the first bad box.
        index: usize,
        /// Its coordinates `[x1, y1, x2, y2]`.
        coords: [f32; 4],
        /// What a valid box looks like here, in words.
        requirement: &'static str,
    },
    /// A parameter is outside its valid range.
    #[error("invalid {name} = {value}: expected {expected}")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// The value passed.
        value: f64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// A ground-truth class label is negative or not below the number of classes.
    #[error("{what}: label {label} at index {index}; expected 0..{num_classes}")]
    Label {
        /// Which label array.
        what: &'static str,
        /// Index of the first bad label.
        index: usize,
        /// The bad label.
        label: i64,
        /// The number of classes (labels must be below it); `i32::MAX` when unbounded.
        num_classes: usize,
    },
    /// An anchor configuration that cannot produce anchors.
    #[error("anchor configuration: {0}")]
    Config(String),
    /// A tensor view could not be read as boxes.
    #[error(transparent)]
    Tensor(#[from] focal_core::FocalError),
}

/// `Result` with [`AnchorError`].
pub type Result<T> = std::result::Result<T, AnchorError>;

/// [`AnchorError::Length`] unless `expected == got`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(AnchorError::Length { what, expected, got });
    }
    Ok(())
}
