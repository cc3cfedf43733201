//! RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection") end to end on the
//! CPU: model, targets, loss, training, inference, COCO evaluation, and the `retinanet` CLI.
//!
//! * [`RetinaNet`]: an `fpn-net` backbone (torchvision's ResNet + FPN, or a small plain CNN
//!   that trains from scratch in minutes) and the classification and box subnets shared
//!   across P3-P7, with explicit forward and backward. Parameter names are torchvision's.
//! * [`RetinaLoss`]: targets from `anchors` (torchvision's Matcher and box coder), the
//!   sigmoid focal loss from `focal-core` with sparse labels, normalised per image by
//!   max(1, foreground) as torchvision does, and an L1 / smooth L1 / GIoU box loss.
//!
//! # Example
//! ```
//! use retinanet::{LossConfig, ModelConfig, RetinaLoss, RetinaNet};
//! use anchors::GroundTruth;
//! let mut model = RetinaNet::new(ModelConfig::tiny(2), 7).unwrap();
//! let images = fpn_net::Tensor4::zeros([1, 3, 128, 128]);
//! model.forward(&images).unwrap();
//! let anchors = model.anchors().unwrap();
//! let gt = [GroundTruth { boxes: &[[10.0, 20.0, 60.0, 50.0]], labels: &[1] }];
//! let mut d_logits = vec![0.0; model.logits().len()];
//! let mut d_boxes = vec![[0.0; 4]; model.regression().len()];
//! let mut loss = RetinaLoss::new(LossConfig::default()).unwrap();
//! let values = loss
//!     .compute(model.logits(), model.regression(), &anchors, &gt, 2, &mut d_logits, &mut d_boxes)
//!     .unwrap();
//! assert!(values.classification > 0.0 && values.num_foreground > 0);
//! model.backward(&images, &d_logits, &d_boxes).unwrap();
//! ```
//!
//! # Feature flags
//! * `cuda`: the classification focal loss runs on `focal-cuda` when a CUDA driver and a GPU
//!   are present ([`FocalBackend::auto`], chosen once per process and reported by
//!   [`FocalBackend::describe`]); otherwise, and without the feature, on `focal-core`. The
//!   crate builds without a CUDA toolkit either way (the kernels are embedded PTX).
//!
//! # Invariants
//! * Bad input (configurations, shapes, files) is an `Err` ([`RetinaError`]), never a panic.
//! * Given a seed, initialisation, data and training are deterministic.
#![warn(missing_docs)]

pub mod backbone;
pub mod backend;
pub mod checkpoint;
pub mod coco;
pub mod config;
pub mod data;
pub mod draw;
pub mod error;
pub mod eval;
pub mod head;
pub mod infer;
pub mod init;
pub mod loss;
mod model;
pub mod train;
pub mod transform;

pub use backend::FocalBackend;
pub use config::{BackboneConfig, ModelConfig};
pub use data::{Dataset, RgbImage, Sample, SyntheticConfig};
pub use error::{Result, RetinaError};
pub use loss::{BoxLoss, LossConfig, LossValues, Normalizer, RetinaLoss};
pub use model::RetinaNet;
pub use train::{TrainConfig, Trainer};
