//! The one error type of this crate.

use thiserror::Error;

/// A tensor whose stored shape differs from the one the model expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisShaped {
    /// The state_dict name.
    pub name: String,
    /// The shape the model needs.
    pub expected: Vec<usize>,
    /// The shape found in the file.
    pub found: Vec<usize>,
}

/// Everything that can be wrong with a call into `fpn-net`.
///
/// Shapes and configurations are checked before any work, so an `Err` leaves parameters and
/// outputs as they were (outputs may have been resized, never half-written with results).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NetError {
    /// An input tensor has the wrong shape for this layer.
    #[error("shape mismatch for {what}: expected {expected}, got {got:?}")]
    Shape {
        /// Which tensor.
        what: &'static str,
        /// What was required, in words (for example "[N, 64, H, W]").
        expected: String,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// A layer or model configuration is invalid (zero sizes, a kernel larger than the padded
    /// input, an unknown depth...).
    #[error("invalid configuration of {what}: {detail}")]
    Config {
        /// Which layer or model.
        what: &'static str,
        /// What was wrong and what is accepted.
        detail: String,
    },
    /// `backward` was called without the matching `forward` (or after a forward on another
    /// shape).
    #[error("{what}: backward needs a preceding forward on the same input shape")]
    NoForward {
        /// Which layer or model.
        what: &'static str,
    },
    /// A state_dict does not match the model: every missing, unexpected and mis-shaped tensor
    /// is listed.
    #[error("{}", describe_mismatch(.missing, .unexpected, .mis_shaped))]
    WeightsMismatch {
        /// Tensors the model needs that the file lacks.
        missing: Vec<String>,
        /// Tensors in the file (under the prefix) that the model has no place for.
        unexpected: Vec<String>,
        /// Tensors present with another shape.
        mis_shaped: Vec<MisShaped>,
    },
    /// A stored tensor has an element type we do not convert.
    #[error("tensor {name} has dtype {dtype}: expected F32, F16, BF16 or F64")]
    Dtype {
        /// The state_dict name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// The bytes are not a valid safetensors file, or serialisation failed.
    #[error("safetensors: {0}")]
    SafeTensors(String),
    /// An optimiser met parameters that differ from those of its previous steps.
    #[error("optimiser state does not match the model: {0}")]
    OptimizerState(String),
    /// An error from `focal-core` (tensor views).
    #[error(transparent)]
    Core(#[from] focal_core::FocalError),
}

fn describe_mismatch(missing: &[String], unexpected: &[String], mis_shaped: &[MisShaped]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {} tensor(s): {}", missing.len(), missing.join(", ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected {} tensor(s): {}", unexpected.len(), unexpected.join(", ")));
    }
    if !mis_shaped.is_empty() {
        let list: Vec<String> =
            mis_shaped.iter().map(|m| format!("{} (expected {:?}, found {:?})", m.name, m.expected, m.found)).collect();
        parts.push(format!("{} mis-shaped tensor(s): {}", list.len(), list.join(", ")));
    }
    format!("state_dict does not match the model: {}", parts.join("; "))
}

/// `Result` with [`NetError`].
pub type Result<T> = std::result::Result<T, NetError>;

/// Shorthand for a [`NetError::Config`].
pub(crate) fn config_error(what: &'static str, detail: impl Into<String>) -> NetError {
    NetError::Config { what, detail: detail.into() }
}
