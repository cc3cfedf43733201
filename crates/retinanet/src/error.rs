//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong in `retinanet`.
///
/// Errors from the layers below are wrapped, so a caller matches one enum; messages say what
/// was wrong and what was expected.
#[derive(Debug, Error)]
pub enum RetinaError {
    /// A model, loss, data or training configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An input (image batch, targets, head outputs) has the wrong shape.
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// What was required.
        expected: String,
        /// What was passed.
        got: String,
    },
    /// A checkpoint was written for another configuration, or is not a checkpoint of ours.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A dataset file (annotations JSON, image) is missing, unreadable or malformed.
    #[error("dataset: {0}")]
    Data(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The loss became NaN or infinite during training.
    #[error("training diverged at iteration {iteration}: loss {loss}")]
    Diverged {
        /// The iteration (0-based).
        iteration: usize,
        /// The non-finite loss.
        loss: f64,
    },
    /// COCO evaluation failed.
    #[error("COCO evaluation: {0}")]
    Eval(String),
    /// An error from `fpn-net` (layers, weights).
    #[error(transparent)]
    Net(#[from] fpn_net::NetError),
    /// An error from `anchors` (anchors, matching, NMS).
    #[error(transparent)]
    Anchors(#[from] anchors::AnchorError),
    /// An error from `focal-core` (the focal loss).
    #[error(transparent)]
    Focal(#[from] focal_core::FocalError),
    /// An error from `focal-cuda` (only with the `cuda` feature, once the GPU was chosen).
    #[cfg(feature = "cuda")]
    #[error("focal loss on the GPU: {0}")]
    Cuda(#[from] focal_cuda::CudaError),
}

/// `Result` with [`RetinaError`].
pub type Result<T> = std::result::Result<T, RetinaError>;

/// Shorthand for a [`RetinaError::Config`].
pub(crate) fn config_error(detail: impl Into<String>) -> RetinaError {
    RetinaError::Config(detail.into())
}

/// Wraps an I/O error with its path.
pub(crate) fn io_error(path: &std::path::Path, source: std::io::Error) -> RetinaError {
    RetinaError::Io { path: path.display().to_string(), source }
}
