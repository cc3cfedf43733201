//! The one error type of this crate.

use thiserror::Error;

/// Everything that can be wrong with a call into `focal-core`.
///
/// Every variant is detected before any numeric work starts, so an `Err` never leaves a
/// half-written output behind.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FocalError {
    /// Two tensors that must agree in shape do not.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Which argument had the wrong shape.
        what: &'static str,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// A tensor's storage does not hold exactly `product(shape)` elements.
    #[error("{what}: shape {shape:?} needs {expected} elements but the storage holds {got}")]
    StorageSize {
        /// Which tensor.
        what: &'static str,
        /// Its declared shape.
        shape: Vec<usize>,
        /// `product(shape)`.
        expected: usize,
        /// The storage length.
        got: usize,
    },
    /// A tensor has a rank this entry point does not take.
    #[error("{what}: expected rank {expected}, got shape {shape:?}")]
    Rank {
        /// Which tensor.
        what: &'static str,
        /// Accepted ranks, in words (for example "2 or 3").
        expected: &'static str,
        /// The shape that was passed.
        shape: Vec<usize>,
    },
    /// A sparse label is not a class index, `-1` (background) or `-2` (ignore).
    #[error(
        "label {label} at anchor {index} is out of range: expected 0..{num_classes} (a class), -1 (background) or -2 (ignore)"
    )]
    LabelOutOfRange {
        /// Flat anchor index of the first bad label.
        index: usize,
        /// The label found there.
        label: i32,
        /// The number of classes `C`.
        num_classes: usize,
    },
    /// A parameter is outside its domain (gamma < 0, alpha outside [0, 1], a non-finite value...).
    #[error("invalid parameter {name} = {value}: expected {expected}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value passed.
        value: f64,
        /// The domain, in words.
        expected: &'static str,
    },
    /// An ndarray view that is not contiguous and row-major.
    #[error("{what}: the array is not contiguous in row-major (standard) order")]
    NotContiguous {
        /// Which argument.
        what: &'static str,
    },
    /// The combination of arguments is not supported (for example an elementwise loss into a
    /// scalar reduction).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// `Result` with [`FocalError`].
pub type Result<T> = std::result::Result<T, FocalError>;
