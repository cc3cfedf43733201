//! RetinaNet's box machinery on the CPU: anchors, IoU, matching, target assignment, box coding
//! and NMS, matching torchvision by default and many times faster.
//!
//! Anchors, IoU/GIoU, matches, labels and NMS keep lists are bit-identical to torchvision's;
//! values that go through `exp` or `ln` (encoded `dw, dh`, decoded boxes, sigmoid scores) agree
//! to a few ulps, since torch uses its own vectorised `exp`/`log`.
//!
//! * [`generator`]: torchvision's `AnchorGenerator` (integer-truncated sizes, `f32` cell anchors
//!   rounded half to even, strides from image and feature-map sizes, no half-stride offset),
//!   cached per layout; detectron2's conventions as [`AnchorConfig::detectron2_retinanet`].
//! * [`boxes`]: areas, pairwise IoU and GIoU, clipping, small-box removal.
//! * [`matcher`]: torchvision's `Matcher` (0.5 / 0.4, low-quality matches with its tie rule) on
//!   a materialised quality matrix, the readable reference.
//! * [`assign`]: batched target assignment `[B, A]` labels in focal-core's codes
//!   ([`focal_core::labels::BACKGROUND`], [`focal_core::labels::IGNORE`]) and `[B, A, 4]`
//!   regression targets, fused so the IoU matrix is never stored.
//! * [`coder`]: `BoxCoder` encode/decode with weights and the `ln(1000/16)` clamp.
//! * [`nms`]: greedy and class-aware NMS with torchvision's keep order.
//! * [`postprocess`]: RetinaNet's detection post-processing.
//!
//! # Example
//! ```
//! use anchors::{AnchorConfig, AnchorGenerator, GroundTruth, TargetAssigner};
//! let generator = AnchorGenerator::new(AnchorConfig::torchvision_retinanet()).unwrap();
//! let anchors = generator.generate([256, 256], &[[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]]).unwrap();
//! let image = GroundTruth { boxes: &[[30.0, 40.0, 90.0, 120.0]], labels: &[7] };
//! let targets = TargetAssigner::retinanet().assign(&anchors, &[image]).unwrap();
//! assert!(targets.num_foreground()[0] >= 1);
//! assert!(targets.labels().iter().all(|&l| l == 7 || l < 0));
//! ```
//!
//! # Feature flags
//! None.
//!
//! # Invariants
//! * Inputs are validated before any work; bad input is an `Err` ([`AnchorError`]), never a
//!   panic and never a half-written output.
//! * Results do not depend on the number of threads: every parallel split is fixed and every
//!   value is computed by the same `f32` operations as the sequential reference.
//! * NaN coordinates or scores follow torch's semantics where torchvision accepts them (IoU,
//!   decode, NMS) and are an error where torchvision refuses them (training targets).
#![warn(missing_docs)]

pub mod assign;
pub mod boxes;
pub mod coder;
pub mod error;
pub mod generator;
pub mod matcher;
mod math;
pub mod nms;
pub mod postprocess;

pub use assign::{AssignedTargets, GroundTruth, ImageTargets, TargetAssigner, assign_image_reference};
pub use boxes::{BoxXyxy, box_iou, generalized_box_iou};
pub use coder::BoxCoder;
pub use error::{AnchorError, Result};
pub use generator::{AnchorConfig, AnchorGenerator, Anchors, CellArithmetic, CellOrder, Strides};
pub use matcher::Matcher;
pub use nms::{NmsOptions, batched_nms, nms, nms_with_options};
pub use postprocess::{Detections, LevelOutputs, PostprocessConfig, postprocess_batch, postprocess_image};
