//! ResNet and feature-pyramid backbones on the CPU, with explicit forward and backward, that
//! load torchvision's weights and compute torchvision's features.
//!
//! * [`Tensor4`]: an owned `[N, C, H, W]` f32 tensor implementing focal-core's
//!   [`Tensor`](focal_core::Tensor) trait.
//! * [`layers`]: [`Conv2d`] (im2col + GEMM on the `gemm` crate, AVX-512 or AVX2 chosen at run
//!   time, multithreaded with rayon), [`FrozenBatchNorm2d`], [`GroupNorm`], [`Relu`],
//!   [`MaxPool2d`], [`UpsampleNearest`] and [`add`](layers::add), each with a forward and a
//!   backward that writes input gradients and accumulates parameter gradients.
//! * [`ResNet`] (18, 34, 50, 101) in torchvision's layout, [`Fpn`] as torchvision builds it
//!   (P6/P7 from P5 as RetinaNet v1, or from C5 as v2 and the paper) and [`ResNetFpn`], the
//!   `BackboneWithFPN` of RetinaNet, returning P3-P7.
//! * [`weights`]: safetensors in and out, keyed by torchvision's state_dict names;
//!   `scripts/export_torchvision.py` converts any torchvision ResNet / FPN / RetinaNet
//!   checkpoint.
//! * [`Sgd`]: SGD with momentum and weight decay, as `torch.optim.SGD`.
//! * [`reference`](mod@reference): float64 twins of every layer, written for clarity, that the tests use as
//!   the oracle.
//!
//! # Example
//! ```
//! use fpn_net::{Depth, FpnExtra, ResNetFpn, Tensor4};
//! let mut net = ResNetFpn::new(Depth::R18, FpnExtra::P6P7FromP5).unwrap();
//! fpn_net::init::synthetic(&mut net, 0);
//! let image = Tensor4::zeros([1, 3, 64, 64]);
//! let levels = net.forward(&image).unwrap();
//! assert_eq!(levels[0].dims(), [1, 256, 8, 8]); // P3, stride 8
//! assert_eq!(levels[4].dims(), [1, 256, 1, 1]); // P7, stride 128
//! ```
//!
//! # Invariants
//! * Shapes and configurations are validated before any arithmetic; bad input is an `Err`,
//!   never a panic.
//! * Layers own their scratch buffers and models own their activations, so repeated calls on
//!   one input size allocate nothing new.
//! * Backward accumulates parameter gradients (`+=`): zero them between steps
//!   ([`Module::zero_grad`]).
#![warn(missing_docs)]

pub mod error;
mod fpn;
mod gemm;
pub mod init;
pub mod layers;
mod param;
pub mod reference;
mod resnet;
mod sgd;
mod tensor;
pub mod weights;

pub use error::{MisShaped, NetError, Result};
pub use fpn::{Fpn, FpnExtra, ResNetFpn};
pub use layers::{Conv2d, Conv2dConfig, FrozenBatchNorm2d, GradOut, GroupNorm, MaxPool2d, Relu, UpsampleNearest};
pub use param::{Module, Param};
pub use resnet::{Depth, ResNet};
pub use sgd::Sgd;
pub use tensor::Tensor4;
