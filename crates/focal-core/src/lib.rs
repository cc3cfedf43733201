//! Focal loss on the CPU: exact, deterministic and close to the memory-bandwidth floor.
//!
//! `focal-core` computes the sigmoid focal loss of RetinaNet (Lin et al. 2017) with sparse
//! labels or dense soft targets, the softmax focal loss, the varifocal loss (Zhang et al. 2021)
//! and the quality focal loss (Li et al. 2020): forward, backward, and one fused pass that reads
//! the logits once and writes the gradient once.
//!
//! * [`reference`] is the float64 oracle, written for clarity.
//! * The fast path computes in `f32` with explicit SIMD chosen at run time (AVX-512, AVX2+FMA,
//!   NEON, or a portable fallback), split across threads with rayon in fixed chunks, so results
//!   are bit-identical whatever the thread count.
//! * Inputs may be `f32`, `f64`, `f16` or `bf16` ([`Element`]); half inputs are widened to
//!   `f32`, `f64` inputs are computed in `f64`.
//!
//! Label codes follow torchvision's `Matcher`: `0..C` a class, [`labels::BACKGROUND`] (-1),
//! [`labels::IGNORE`] (-2). Logits are `[A, C]` or `[B, A, C]`, row-major.
//!
//! # Example
//! RetinaNet's classification loss and its gradient in one pass:
//! ```
//! use focal_core::labels::retinanet_normalizer;
//! use focal_core::{FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, Target, TensorView, TensorViewMut};
//!
//! let (anchors, classes) = (4, 3);
//! let logits = vec![-4.6f32; anchors * classes];
//! let labels = [2, -1, -2, -1]; // class 2, background, ignored, background
//! let loss = SigmoidFocalLoss::new(FocalParams::retinanet(), Reduction::Normalizer(retinanet_normalizer(&labels)));
//! let mut grad = vec![0.0f32; logits.len()];
//! let value = loss.forward_backward(
//!     TensorView::new(&logits, &[anchors, classes])?,
//!     Target::labels(TensorView::new(&labels, &[anchors])?),
//!     1.0,
//!     TensorViewMut::new(&mut grad, &[anchors, classes])?,
//! )?;
//! assert!(value > 0.0);
//! assert!(grad[2] < 0.0); // the positive's logit is pushed up
//! assert!(grad[6..9].iter().all(|&g| g == 0.0)); // the ignored anchor gets nothing
//! # Ok::<(), focal_core::FocalError>(())
//! ```
//!
//! # Feature flags
//! * `ndarray` (default): [`TensorView::from_ndarray`] and [`TensorViewMut::from_ndarray`].
//!
//! # Invariants
//! * Every parameter and shape is validated before any work; bad input is an `Err`, never a
//!   panic and never a half-written output.
//! * NaN in gives NaN out; every finite logit gives a finite loss and gradient.
#![warn(missing_docs)]

pub mod element;
pub mod error;
pub mod labels;
pub mod params;
pub mod reference;
pub mod tensor;

pub use element::Element;
pub use error::{FocalError, Result};
pub use params::{Alpha, FocalParams, Reduction, VarifocalParams};
pub use tensor::{Shape, Tensor, TensorMut, TensorView, TensorViewMut};

mod engine;
mod kernel;
pub mod loss;
pub mod sigmoid;
pub mod simd;
pub mod softmax;
mod validate;
pub mod varifocal;

pub use loss::{FocalLoss, Outputs};
pub use sigmoid::{DenseTarget, SigmoidFocalLoss, Target};
pub use simd::SimdLevel;
pub use softmax::SoftmaxFocalLoss;
pub use varifocal::{QualityFocalLoss, VarifocalLoss};
