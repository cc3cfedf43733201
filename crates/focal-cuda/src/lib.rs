//! Fused focal loss kernels for NVIDIA GPUs.
#![warn(missing_docs)]

mod args;
pub mod device;
pub mod error;
pub mod plan;
pub mod ptx;
pub mod verify;

#[cfg(test)]
mod emulation;
#[cfg(test)]
mod kernel_tests;

pub use device::{
    Call, DeviceElement, DeviceTarget, FocalCuda, HostOutput, HostTarget, Workspace, is_available,
};
pub use error::{CudaError, Result};
pub use plan::{Dims, Dtype, Normalization, Objective, TargetKind, Weights};
