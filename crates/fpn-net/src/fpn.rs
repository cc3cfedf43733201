//! The feature pyramid (Lin et al. 2017) as torchvision's `FeaturePyramidNetwork` with
//! `LastLevelP6P7`, and the ResNet + FPN backbone of RetinaNet.

use crate::error::{NetError, Result, config_error};
use crate::layers::{Conv2d, Conv2dConfig, GradOut, Relu, UpsampleNearest, add_assign};
use crate::param::{Module, Param, join};
use crate::resnet::{Depth, ResNet};
use crate::tensor::{Tensor4, check_same};

/// Where P6 comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FpnExtra {
    /// P6 = conv(P5), as torchvision's RetinaNet v1 (`LastLevelP6P7(256, 256)`).
    P6P7FromP5,
    /// P6 = conv(C5), as the RetinaNet paper and torchvision's v2
    /// (`LastLevelP6P7(2048, 256)`).
    P6P7FromC5,
}

/// Feature pyramid over `L` backbone levels: a 1x1 lateral (`inner_blocks.i.0`) per level,
/// the top-down path `inner_i = lateral_i + nearest_upsample(inner_{i+1})`, a 3x3 output
/// (`layer_blocks.i.0`) per level, then P6 = 3x3/2 conv (`extra_blocks.p6`) and
/// P7 = 3x3/2 conv of ReLU(P6) (`extra_blocks.p7`). Every convolution has a bias.
#[derive(Clone, Debug)]
pub struct Fpn {
    extra: FpnExtra,
    inner_blocks: Vec<Conv2d>,
    layer_blocks: Vec<Conv2d>,
    p6: Conv2d,
    p7: Conv2d,
    inner: Vec<Tensor4>,
    outputs: Vec<Tensor4>,
    p6_relu: Tensor4,
    grad_inner: Vec<Tensor4>,
    grad_top: Tensor4,
    grad_relu: Tensor4,
    grad_p6: Tensor4,
}

impl Fpn {
    /// A pyramid over levels with `in_channels` (finest first) producing `out_channels`.
    ///
    /// # Errors
    /// [`NetError::Config`] when there are no levels or a channel count is zero.
    pub fn new(in_channels: &[usize], out_channels: usize, extra: FpnExtra) -> Result<Self> {
        if in_channels.is_empty() || in_channels.contains(&0) || out_channels == 0 {
            return Err(config_error(
                "Fpn",
                format!("in_channels {in_channels:?} and out_channels {out_channels} must be non-empty and > 0"),
            ));
        }
        let levels = in_channels.len();
        let p6_in = match extra {
            FpnExtra::P6P7FromP5 => out_channels,
            FpnExtra::P6P7FromC5 => in_channels[levels - 1],
        };
        let down = |i| Conv2dConfig::new(i, out_channels, 3).stride(2).padding(1).bias(true);
        Ok(Fpn {
            extra,
            inner_blocks: in_channels
                .iter()
                .map(|&c| Conv2d::new(Conv2dConfig::new(c, out_channels, 1).bias(true)))
                .collect::<Result<_>>()?,
            layer_blocks: (0..levels)
                .map(|_| Conv2d::new(Conv2dConfig::new(out_channels, out_channels, 3).padding(1).bias(true)))
                .collect::<Result<_>>()?,
            p6: Conv2d::new(down(p6_in))?,
            p7: Conv2d::new(down(out_channels))?,
            inner: vec![Tensor4::default(); levels],
            outputs: vec![Tensor4::default(); levels + 2],
            p6_relu: Tensor4::default(),
            grad_inner: vec![Tensor4::default(); levels],
            grad_top: Tensor4::default(),
            grad_relu: Tensor4::default(),
            grad_p6: Tensor4::default(),
        })
    }

    /// Number of backbone levels it takes.
    pub fn levels(&self) -> usize {
        self.inner_blocks.len()
    }

    fn check_features(&self, features: &[&Tensor4]) -> Result<()> {
        if features.len() != self.levels() {
            return Err(NetError::Shape {
                what: "FPN features",
                expected: format!("{} levels", self.levels()),
                got: vec![features.len()],
            });
        }
        Ok(())
    }

    /// Runs the pyramid on backbone features (finest first) and returns the `L + 2` outputs
    /// (P3..P7 for C3..C5).
    ///
    /// # Errors
    /// [`NetError::Shape`] when the number of levels or a level's channels differ.
    pub fn forward(&mut self, features: &[&Tensor4]) -> Result<&[Tensor4]> {
        self.check_features(features)?;
        let levels = self.levels();
        let top = levels - 1;
        self.inner_blocks[top].forward(features[top], &mut self.inner[top])?;
        for i in (0..top).rev() {
            let (lower, upper) = self.inner.split_at_mut(i + 1);
            self.inner_blocks[i].forward(features[i], &mut lower[i])?;
            let size = [lower[i].h(), lower[i].w()];
            UpsampleNearest.forward(&upper[0], size, &mut lower[i], true)?;
        }
        for i in 0..levels {
            self.layer_blocks[i].forward(&self.inner[i], &mut self.outputs[i])?;
        }
        let (pyramid, extra) = self.outputs.split_at_mut(levels);
        let p6_src = match self.extra {
            FpnExtra::P6P7FromP5 => &pyramid[top],
            FpnExtra::P6P7FromC5 => features[top],
        };
        self.p6.forward(p6_src, &mut extra[0])?;
        Relu.forward(&extra[0], &mut self.p6_relu);
        self.p7.forward(&self.p6_relu, &mut extra[1])?;
        Ok(&self.outputs)
    }

    /// The outputs of the last forward.
    pub fn outputs(&self) -> &[Tensor4] {
        &self.outputs
    }

    /// Backward from the gradients of the `L + 2` outputs: accumulates every convolution's
    /// gradients and writes the gradients of the features into `d_features` (resized to
    /// `L` tensors). `features` are the inputs of the last forward.
    ///
    /// # Errors
    /// [`NetError::Shape`] when the counts or shapes differ from the last forward's.
    pub fn backward(
        &mut self,
        features: &[&Tensor4],
        d_outputs: &[Tensor4],
        d_features: &mut Vec<Tensor4>,
    ) -> Result<()> {
        self.check_features(features)?;
        let levels = self.levels();
        let top = levels - 1;
        if d_outputs.len() != levels + 2 {
            return Err(NetError::Shape {
                what: "FPN output gradients",
                expected: format!("{} tensors", levels + 2),
                got: vec![d_outputs.len()],
            });
        }
        for (o, d) in self.outputs.iter().zip(d_outputs) {
            check_same("FPN output gradient", o, d)?;
        }
        d_features.resize(levels, Tensor4::default());
        // P7 = conv(relu(P6)), P6 = conv(P5 or C5).
        self.p7.backward(&self.p6_relu, &d_outputs[levels + 1], GradOut::Write(&mut self.grad_relu))?;
        Relu.backward(&self.p6_relu, &self.grad_relu, GradOut::Write(&mut self.grad_p6))?;
        add_assign(self.grad_p6.as_mut_slice(), d_outputs[levels].as_slice());
        let grad_top_out = match self.extra {
            FpnExtra::P6P7FromP5 => {
                self.grad_top.copy_from(&d_outputs[top]);
                self.p6.backward(&self.outputs[top], &self.grad_p6, GradOut::Accumulate(&mut self.grad_top))?;
                &self.grad_top
            }
            FpnExtra::P6P7FromC5 => {
                self.p6.backward(features[top], &self.grad_p6, GradOut::Write(&mut d_features[top]))?;
                &d_outputs[top]
            }
        };
        // Finest level first: each inner map also feeds the next finer one through the
        // upsampling, whose gradient must be in before its own lateral's backward.
        for i in 0..levels {
            let d_out = if i == top { grad_top_out } else { &d_outputs[i] };
            let (finer, here) = self.grad_inner.split_at_mut(i);
            self.layer_blocks[i].backward(&self.inner[i], d_out, GradOut::Write(&mut here[0]))?;
            if i > 0 {
                UpsampleNearest.backward(&finer[i - 1], self.inner[i].dims(), GradOut::Accumulate(&mut here[0]))?;
            }
            let dx = if i == top && self.extra == FpnExtra::P6P7FromC5 {
                GradOut::Accumulate(&mut d_features[i])
            } else {
                GradOut::Write(&mut d_features[i])
            };
            self.inner_blocks[i].backward(features[i], &here[0], dx)?;
        }
        Ok(())
    }
}

impl Module for Fpn {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        for (i, c) in self.inner_blocks.iter().enumerate() {
            c.params(&format!("{prefix}inner_blocks.{i}.0."), out);
        }
        for (i, c) in self.layer_blocks.iter().enumerate() {
            c.params(&format!("{prefix}layer_blocks.{i}.0."), out);
        }
        self.p6.params(&join(prefix, "extra_blocks.p6."), out);
        self.p7.params(&join(prefix, "extra_blocks.p7."), out);
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        for (i, c) in self.inner_blocks.iter_mut().enumerate() {
            c.params_mut(&format!("{prefix}inner_blocks.{i}.0."), out);
        }
        for (i, c) in self.layer_blocks.iter_mut().enumerate() {
            c.params_mut(&format!("{prefix}layer_blocks.{i}.0."), out);
        }
        self.p6.params_mut(&join(prefix, "extra_blocks.p6."), out);
        self.p7.params_mut(&join(prefix, "extra_blocks.p7."), out);
    }
}

/// RetinaNet's backbone: a [`ResNet`] (`body.`) whose C3, C4, C5 feed an [`Fpn`] (`fpn.`)
/// with 256 channels, returning P3-P7 (strides 8 to 128). The names are those of
/// torchvision's `BackboneWithFPN`; inside a RetinaNet checkpoint they sit under `backbone.`.
#[derive(Clone, Debug)]
pub struct ResNetFpn {
    /// The ResNet (`body.`).
    pub body: ResNet,
    /// The pyramid (`fpn.`).
    pub fpn: Fpn,
    d_features: Vec<Tensor4>,
}

impl ResNetFpn {
    /// Output channels of every pyramid level.
    pub const OUT_CHANNELS: usize = 256;

    /// A backbone of `depth` with P6/P7 from `extra`, weights zero (load them with
    /// [`crate::weights::load`]).
    ///
    /// # Errors
    /// Never for the four depths; kept fallible because layer constructors are.
    pub fn new(depth: Depth, extra: FpnExtra) -> Result<Self> {
        let ch = depth.stage_channels();
        Ok(ResNetFpn {
            body: ResNet::new(depth)?,
            fpn: Fpn::new(&ch[1..], Self::OUT_CHANNELS, extra)?,
            d_features: Vec::new(),
        })
    }

    /// P3..P7 of `x` (`[N, 3, H, W]`).
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` does not have 3 channels or is too small.
    pub fn forward(&mut self, x: &Tensor4) -> Result<&[Tensor4]> {
        let [_, c3, c4, c5] = self.body.forward(x)?;
        self.fpn.forward(&[c3, c4, c5])
    }

    /// Backward from the gradients of P3..P7: accumulates the gradients of every trainable
    /// parameter. `x` is the input of the last forward.
    ///
    /// # Errors
    /// [`NetError::Shape`] / [`NetError::NoForward`] when shapes differ from the last
    /// forward's.
    pub fn backward(&mut self, x: &Tensor4, d_levels: &[Tensor4]) -> Result<()> {
        let body = &self.body;
        let features = [1, 2, 3].map(|s| body.stage_at(s));
        self.fpn.backward(&features, d_levels, &mut self.d_features)?;
        let d = &self.d_features;
        self.body.backward(x, [None, Some(&d[0]), Some(&d[1]), Some(&d[2])])
    }
}

impl Module for ResNetFpn {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        self.body.params(&join(prefix, "body."), out);
        self.fpn.params(&join(prefix, "fpn."), out);
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        self.body.params_mut(&join(prefix, "body."), out);
        self.fpn.params_mut(&join(prefix, "fpn."), out);
    }
}
