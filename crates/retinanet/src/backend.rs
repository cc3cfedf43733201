//! Where the classification focal loss runs: `focal-core` on the CPU, or `focal-cuda` on a
//! GPU when the crate is built with the `cuda` feature and a CUDA driver and device are found.
//!
//! The choice is made once per process ([`FocalBackend::auto`]) and can be reported
//! ([`FocalBackend::describe`]). Once the GPU is chosen, an error on it is returned as an error:
//! nothing falls back to the CPU silently.

#[cfg(feature = "cuda")]
use std::sync::{Arc, Mutex};

use crate::error::Result;

/// The engine of the classification focal loss in [`crate::RetinaLoss`].
///
/// Both compute the same quantity (torchvision's sigmoid focal loss on sparse labels, each
/// image's sum divided by max(1, its foreground anchors), then the mean over images, or the
/// EMA normaliser), in f32 with sums in f64; they differ in the order of those sums and in the
/// device's `exp`/`log1p`, so they agree to rounding, not bitwise.
#[derive(Clone, Debug)]
pub enum FocalBackend {
    /// `focal_core::SigmoidFocalLoss`, one image at a time.
    Cpu,
    /// `focal_cuda::FocalCuda` through its host API: logits and labels uploaded, loss and
    /// gradient downloaded, the whole batch in one fused call.
    #[cfg(feature = "cuda")]
    Cuda(Arc<focal_cuda::FocalCuda>),
}

#[cfg(feature = "cuda")]
static CHOSEN: Mutex<Option<FocalBackend>> = Mutex::new(None);

impl FocalBackend {
    /// The process-wide choice, made on the first call and reused: the GPU (device 0) when
    /// built with `cuda` and `focal_cuda::is_available()`, the CPU otherwise.
    ///
    /// # Errors
    /// With `cuda`, when a driver and device are present but the context or the kernels fail
    /// to load ([`crate::RetinaError::Cuda`]): a GPU that was found and does not work is an
    /// error, not a reason to fall back.
    pub fn auto() -> Result<Self> {
        #[cfg(feature = "cuda")]
        {
            let mut chosen = CHOSEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(b) = chosen.as_ref() {
                return Ok(b.clone());
            }
            let backend = if focal_cuda::is_available() { Self::cuda(0)? } else { FocalBackend::Cpu };
            *chosen = Some(backend.clone());
            Ok(backend)
        }
        #[cfg(not(feature = "cuda"))]
        Ok(FocalBackend::Cpu)
    }

    /// The GPU `ordinal` with every kernel module loaded now (so a driver too old for the PTX
    /// fails here, not in the first training step).
    ///
    /// # Errors
    /// No driver, no such device, a module that does not load.
    #[cfg(feature = "cuda")]
    pub fn cuda(ordinal: usize) -> Result<Self> {
        let gpu = focal_cuda::FocalCuda::on_device(ordinal)?;
        gpu.load_all()?;
        Ok(FocalBackend::Cuda(Arc::new(gpu)))
    }

    /// Whether the loss runs on a GPU.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, FocalBackend::Cpu)
    }

    /// One line saying which engine runs the focal loss and why.
    pub fn describe(&self) -> String {
        match self {
            #[cfg(feature = "cuda")]
            FocalBackend::Cuda(_) => "focal-cuda on CUDA device 0 (built with `cuda`, GPU found)".into(),
            #[cfg(feature = "cuda")]
            FocalBackend::Cpu if !focal_cuda::is_available() => {
                "focal-core on the CPU (built with `cuda`, but no CUDA driver or device was found)".into()
            }
            #[cfg(feature = "cuda")]
            FocalBackend::Cpu => "focal-core on the CPU (chosen explicitly; a GPU is present)".into(),
            #[cfg(not(feature = "cuda"))]
            FocalBackend::Cpu => "focal-core on the CPU (built without the `cuda` feature)".into(),
        }
    }
}
