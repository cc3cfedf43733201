//! The feature extractors: torchvision's ResNet + FPN, or a small plain CNN + FPN.

use fpn_net::{Conv2d, Conv2dConfig, Depth, Fpn, FpnExtra, GradOut, Module, Param, Relu, ResNetFpn, Tensor4};

use crate::config::BackboneConfig;
use crate::error::Result;
use crate::init::{NormalRng, kaiming_normal};

/// A small CNN for training from scratch: see [`BackboneConfig::Plain`]. Parameter names
/// are `body.convs.{i}.weight` / `.bias` and torchvision's FPN names under `fpn.`.
#[derive(Clone, Debug)]
pub struct PlainBackbone {
    convs: Vec<Conv2d>,
    /// Index of the convolution whose output is C3, C4, C5.
    stage_ends: [usize; 3],
    fpn: Fpn,
    acts: Vec<Tensor4>,
    grad: Tensor4,
    grad_pre: Tensor4,
    d_features: Vec<Tensor4>,
}

impl PlainBackbone {
    /// The layers for `widths` (stem, C3, C4, C5), He-initialised from `rng`.
    ///
    /// # Errors
    /// [`crate::RetinaError::Net`] for zero widths.
    pub fn new(widths: [usize; 4], convs_per_stage: usize, fpn_channels: usize, rng: &mut NormalRng) -> Result<Self> {
        let conv = |i, o, s| Conv2d::new(Conv2dConfig::new(i, o, 3).stride(s).padding(1).bias(true));
        let mut convs = vec![conv(3, widths[0], 2)?, conv(widths[0], widths[0], 2)?];
        let mut stage_ends = [0; 3];
        for s in 0..3 {
            convs.push(conv(widths[s], widths[s + 1], 2)?);
            for _ in 1..convs_per_stage {
                convs.push(conv(widths[s + 1], widths[s + 1], 1)?);
            }
            stage_ends[s] = convs.len() - 1;
        }
        for c in &mut convs {
            kaiming_normal(c, rng);
        }
        let mut fpn = Fpn::new(&widths[1..], fpn_channels, FpnExtra::P6P7FromP5)?;
        init_fpn(&mut fpn, rng);
        let n = convs.len();
        Ok(PlainBackbone {
            convs,
            stage_ends,
            fpn,
            acts: vec![Tensor4::default(); n],
            grad: Tensor4::default(),
            grad_pre: Tensor4::default(),
            d_features: Vec::new(),
        })
    }

    /// P3..P7 of the last forward.
    pub fn levels(&self) -> &[Tensor4] {
        self.fpn.outputs()
    }

    fn forward(&mut self, x: &Tensor4) -> Result<&[Tensor4]> {
        for i in 0..self.convs.len() {
            let (before, rest) = self.acts.split_at_mut(i);
            let input = if i == 0 { x } else { &before[i - 1] };
            self.convs[i].forward(input, &mut rest[0])?;
            Relu.forward_inplace(&mut rest[0]);
        }
        let features = self.stage_ends.map(|i| &self.acts[i]);
        Ok(self.fpn.forward(&features)?)
    }

    fn backward(&mut self, x: &Tensor4, d_levels: &[Tensor4]) -> Result<()> {
        let features = self.stage_ends.map(|i| &self.acts[i]);
        self.fpn.backward(&features, d_levels, &mut self.d_features)?;
        let top = self.convs.len() - 1;
        self.grad.copy_from(&self.d_features[2]);
        for i in (0..=top).rev() {
            if let Some(s) = self.stage_ends[..2].iter().position(|&e| e == i) {
                fpn_net::layers::add_inplace(&mut self.grad, &self.d_features[s])?;
            }
            Relu.backward(&self.acts[i], &self.grad, GradOut::Write(&mut self.grad_pre))?;
            let input = if i == 0 { x } else { &self.acts[i - 1] };
            let dx = if i == 0 { GradOut::Skip } else { GradOut::Write(&mut self.grad) };
            self.convs[i].backward(input, &self.grad_pre, dx)?;
        }
        Ok(())
    }
}

/// torchvision initialises FPN convolutions with `kaiming_uniform_(a=1)` and zero bias.
fn init_fpn(fpn: &mut Fpn, rng: &mut NormalRng) {
    for (_, p) in fpn.named_params_mut() {
        if p.shape().len() == 4 {
            let fan_in: usize = p.shape()[1..].iter().product();
            let bound = (3.0 / fan_in.max(1) as f64).sqrt();
            for v in &mut p.value {
                *v = ((2.0 * rng.unit() as f64 - 1.0) * bound) as f32;
            }
        } else {
            p.value.fill(0.0);
        }
    }
}

impl Module for PlainBackbone {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        for (i, c) in self.convs.iter().enumerate() {
            c.params(&format!("{prefix}body.convs.{i}."), out);
        }
        self.fpn.params(&format!("{prefix}fpn."), out);
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        for (i, c) in self.convs.iter_mut().enumerate() {
            c.params_mut(&format!("{prefix}body.convs.{i}."), out);
        }
        self.fpn.params_mut(&format!("{prefix}fpn."), out);
    }
}

/// The backbone of a [`crate::RetinaNet`]: P3-P7 from an image batch, and back.
#[derive(Clone, Debug)]
pub enum Backbone {
    /// torchvision's `BackboneWithFPN` over a ResNet.
    ResNet(Box<ResNetFpn>),
    /// The small plain CNN.
    Plain(Box<PlainBackbone>),
}

impl Backbone {
    /// Builds the backbone of `config`. A ResNet starts with torchvision's FPN initialisation
    /// and He-initialised convolutions (load pretrained weights for real use); the plain CNN
    /// is He-initialised from `rng`.
    ///
    /// # Errors
    /// [`crate::RetinaError::Net`] for an invalid configuration.
    pub fn new(config: &BackboneConfig, rng: &mut NormalRng) -> Result<Self> {
        Ok(match config {
            BackboneConfig::ResNet { layers, p6p7_from_c5, trainable_layers } => {
                let extra = if *p6p7_from_c5 { FpnExtra::P6P7FromC5 } else { FpnExtra::P6P7FromP5 };
                let mut net = ResNetFpn::new(Depth::from_layers(*layers)?, extra)?;
                for (name, p) in net.body.named_params_mut() {
                    init_resnet_param(&name, p, rng);
                }
                init_fpn(&mut net.fpn, rng);
                net.body.set_trainable_layers(*trainable_layers)?;
                Backbone::ResNet(Box::new(net))
            }
            BackboneConfig::Plain { widths, convs_per_stage, fpn_channels } => {
                Backbone::Plain(Box::new(PlainBackbone::new(*widths, *convs_per_stage, *fpn_channels, rng)?))
            }
        })
    }

    /// P3..P7 of `x` (`[N, 3, H, W]`, normalised and padded).
    ///
    /// # Errors
    /// [`crate::RetinaError::Net`] for a bad input shape.
    pub fn forward(&mut self, x: &Tensor4) -> Result<&[Tensor4]> {
        match self {
            Backbone::ResNet(net) => Ok(net.forward(x)?),
            Backbone::Plain(net) => net.forward(x),
        }
    }

    /// Accumulates parameter gradients from the gradients of P3..P7.
    ///
    /// # Errors
    /// [`crate::RetinaError::Net`] when shapes differ from the last forward's.
    pub fn backward(&mut self, x: &Tensor4, d_levels: &[Tensor4]) -> Result<()> {
        match self {
            Backbone::ResNet(net) => Ok(net.backward(x, d_levels)?),
            Backbone::Plain(net) => net.backward(x, d_levels),
        }
    }
}

/// He-normal convolutions, identity frozen batch norms (scale 1, shift 0, mean 0, var 1).
fn init_resnet_param(name: &str, p: &mut Param, rng: &mut NormalRng) {
    if p.shape().len() == 4 {
        let fan_out = p.shape()[0] * p.shape()[2] * p.shape()[3];
        rng.fill_normal(&mut p.value, (2.0 / fan_out.max(1) as f64).sqrt());
    } else if name.ends_with("running_var") || name.ends_with("weight") {
        p.value.fill(1.0);
    } else {
        p.value.fill(0.0);
    }
}

impl Module for Backbone {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        match self {
            Backbone::ResNet(net) => net.params(prefix, out),
            Backbone::Plain(net) => net.params(prefix, out),
        }
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        match self {
            Backbone::ResNet(net) => net.params_mut(prefix, out),
            Backbone::Plain(net) => net.params_mut(prefix, out),
        }
    }
}
