//! Fused focal loss forward+backward on NVIDIA GPUs: one pass reads the logits and the labels
//! once and writes the gradient once, already scaled by the normaliser and the upstream
//! gradient, and leaves a deterministic loss sum on the device.
//!
//! Losses ([`Objective`]): sigmoid focal loss (RetinaNet) with sparse labels (class, -1
//! background, -2 ignore) or dense soft targets with optional per-anchor or per-element
//! weights; softmax focal loss; varifocal loss; quality focal loss. Logits `[B, A, C]` in
//! `f32`, `f16` or `bf16`, math in `f32`, gradient in the input type or `f32`, optionally
//! written over the logits. Normalisation ([`Normalization`]) by a constant, by the mean, or by
//! foreground counts computed on the GPU from the labels, per image (torchvision) or per batch
//! (mmdetection, detectron2), so a training step needs no host synchronisation.
//!
//! The kernels are CUDA C++ in the repository's `kernels/`, compiled by the pinned nvcc 13.0 to
//! PTX for `compute_80` (Ampere, Hopper and newer; drivers R580+) and embedded in this crate
//! ([`ptx`]), so building it needs no CUDA toolkit. libcuda is loaded at run time; without it
//! every entry point returns [`CudaError::NoDriver`] (see [`is_available`]).
//!
//! # Example: from a cudarc-based trainer
//! Any framework whose tensors are cudarc buffers (candle's `CudaStorage` holds a
//! `CudaSlice<T>`, and its `CudaDevice` a cudarc stream) passes views of its buffers and its
//! stream; nothing is copied and nothing synchronises:
//! ```no_run
//! use std::sync::Arc;
//! use cudarc::driver::{CudaSlice, CudaStream};
//! use focal_core::FocalParams;
//! use focal_cuda::{Call, DeviceTarget, Dims, FocalCuda, Normalization, Objective, Workspace};
//!
//! fn classification_loss(
//!     stream: Arc<CudaStream>,          // candle: the CudaDevice's stream
//!     logits: &CudaSlice<half::bf16>,   // [B, A, C] head outputs, permuted as torchvision
//!     labels: &CudaSlice<i32>,          // [B, A] from the anchor matcher
//!     grad: &mut CudaSlice<half::bf16>, // d loss / d logits, same shape
//!     dims: Dims,
//! ) -> focal_cuda::Result<()> {
//!     let focal = FocalCuda::new(stream.clone())?; // keep it: modules load once
//!     let mut workspace = Workspace::new(&stream, dims)?; // reuse it every step
//!     let call = Call {
//!         objective: Objective::SigmoidFocal(FocalParams::retinanet()),
//!         dims,
//!         normalization: Normalization::ForegroundPerImage,
//!         upstream: 1.0,
//!     };
//!     focal.forward_backward(
//!         &call,
//!         &logits.as_view(),
//!         DeviceTarget::Sparse(labels.as_view()),
//!         Some(&mut grad.as_view_mut()),
//!         None,
//!         &mut workspace,
//!     )?;
//!     // The loss stays on the device (workspace.loss_device()) until the trainer logs it:
//!     println!("loss {}", workspace.read_loss()?); // this line synchronises
//!     Ok(())
//! }
//! ```
//! For quick use without device buffers, [`FocalCuda::compute_host`] uploads, runs and
//! downloads.
//!
//! # Invariants
//! * Shapes, parameters and combinations are validated before anything is queued; labels are
//!   validated on the host by the host API, and flagged by the kernels on the device path (the
//!   row becomes NaN and [`Workspace::check_labels`] reports it).
//! * Every run on the same shape sums in the same order: the grid depends on the shape alone,
//!   per-block partials are reduced in a fixed tree, no float atomics. Loss and gradient are
//!   bit-identical from run to run, and the aligned (16-byte vector) and unaligned (scalar)
//!   paths give identical bits.
//! * NaN in gives NaN out; any finite logit gives a finite loss and gradient.
//! * Each kernel is checked element by element against `focal_core::reference` (float64) on
//!   the CPU emulation of the same source ([`verify`] holds the tolerances), and on a GPU by the
//!   tests in `tests/gpu.rs` and `cargo xtask check-kernels`.
//!
//! # Feature flags
//! None. cudarc is used with `dynamic-loading` and the fixed `cuda-13000` API version.
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
