//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong in `focal-cuda`.
///
/// Shapes, parameters and label ranges are checked before any work is queued; driver errors are
/// reported with what was being done.
#[derive(Debug, Error)]
pub enum CudaError {
    /// The CUDA driver library (libcuda.so / nvcuda.dll) could not be loaded.
    #[error("no CUDA driver: the libcuda library was not found (install an NVIDIA driver, R580 or newer)")]
    NoDriver,
    /// The driver loaded but there is no device with this ordinal.
    #[error("no CUDA device {ordinal}: the driver reports {count} device(s)")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// Devices the driver reports.
        count: usize,
    },
    /// A driver call failed.
    #[error("CUDA driver error while {context}: {source}")]
    Driver {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: cudarc::driver::DriverError,
    },
    /// The driver could not load one of the embedded PTX modules (a driver older than R580
    /// cannot load PTX 9.0, the ISA of CUDA 13.0).
    #[error("the driver cannot load PTX module `{module}` (needs a driver for CUDA 13.0, R580 or newer): {source}")]
    ModuleLoad {
        /// Module name (source file stem in `kernels/`).
        module: &'static str,
        /// The driver's error.
        #[source]
        source: cudarc::driver::DriverError,
    },
    /// A kernel the launch plan needs is not in the embedded PTX.
    #[error("kernel `{kernel}` is not in the embedded PTX modules (run `cargo xtask build-kernels`)")]
    MissingKernel {
        /// The kernel's name.
        kernel: String,
    },
    /// A buffer does not have the length its shape needs.
    #[error("{what}: expected {expected} elements for shape {shape:?}, got {got}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// `product(shape)`.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
    /// A problem larger than the kernels index (they use 32-bit element indices).
    #[error("{numel} elements exceed the kernels' limit of {limit} per call: split the batch")]
    TooLarge {
        /// Elements asked for.
        numel: usize,
        /// The limit.
        limit: usize,
    },
    /// A combination the kernels do not offer (for example softmax focal loss with dense targets).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A sparse label outside `0..C`, `-1`, `-2`, found on the device after the kernels ran.
    #[error("label out of range at row {row}: expected 0..{classes} (a class), -1 (background) or -2 (ignore)")]
    BadLabel {
        /// Lowest row whose label was out of range.
        row: usize,
        /// The number of classes.
        classes: usize,
    },
    /// A parameter or input rejected by `focal-core`'s validation.
    #[error(transparent)]
    Core(#[from] focal_core::FocalError),
}

/// `Result` with [`CudaError`].
pub type Result<T> = std::result::Result<T, CudaError>;

impl CudaError {
    pub(crate) fn driver(context: impl Into<String>) -> impl FnOnce(cudarc::driver::DriverError) -> Self {
        let context = context.into();
        move |source| CudaError::Driver { context, source }
    }
}
