//! Fused focal loss kernels for NVIDIA GPUs.
#![warn(missing_docs)]

pub mod ptx;
