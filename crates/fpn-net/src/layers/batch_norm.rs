//! Batch normalisation with frozen statistics (torchvision's `FrozenBatchNorm2d`, and
//! `BatchNorm2d` in eval mode).

use super::{GradOut, for_each_plane_mut, zip_planes_mut};
use crate::error::{NetError, Result};
use crate::param::{Module, Param, join};
use crate::tensor::{Tensor4, check_nchw};

/// `y = x * scale + shift` per channel, with `scale = weight / sqrt(running_var + eps)` and
/// `shift = bias - running_mean * scale`, computed in f32 as torchvision does.
///
/// All four tensors are buffers (not trainable): backward only scales the gradient. Parameter
/// names: `weight`, `bias`, `running_mean`, `running_var`.
#[derive(Clone, Debug)]
pub struct FrozenBatchNorm2d {
    /// `[C]`, gamma.
    pub weight: Param,
    /// `[C]`, beta.
    pub bias: Param,
    /// `[C]`.
    pub running_mean: Param,
    /// `[C]`.
    pub running_var: Param,
    eps: f32,
}

impl FrozenBatchNorm2d {
    /// The identity normalisation over `channels` (weight 1, bias 0, mean 0, var 1), with
    /// torchvision's `eps = 1e-5`.
    pub fn new(channels: usize) -> Self {
        FrozenBatchNorm2d {
            weight: Param::filled(&[channels], 1.0, false),
            bias: Param::zeros(&[channels], false),
            running_mean: Param::zeros(&[channels], false),
            running_var: Param::filled(&[channels], 1.0, false),
            eps: 1e-5,
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.weight.numel()
    }

    /// The per-channel `(scale, shift)`.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = self
            .weight
            .value
            .iter()
            .zip(&self.running_var.value)
            .map(|(&w, &v)| w * (1.0 / (v + self.eps).sqrt()))
            .collect();
        let shift =
            self.bias.value.iter().zip(&self.running_mean.value).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
        (scale, shift)
    }

    /// `y = bn(x)`.
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` has another number of channels.
    pub fn forward(&self, x: &Tensor4, y: &mut Tensor4) -> Result<()> {
        check_nchw("frozen batch norm input", x, Some(self.channels()))?;
        let (scale, shift) = self.scale_shift();
        y.reshape_for(x.dims());
        zip_planes_mut(x, y, |c, src, dst| {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s * scale[c] + shift[c];
            }
        });
        Ok(())
    }

    /// `x = bn(x)`, optionally followed by ReLU (the conv-bn-relu pattern of ResNet).
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` has another number of channels.
    pub fn forward_inplace(&self, x: &mut Tensor4, relu: bool) -> Result<()> {
        check_nchw("frozen batch norm input", x, Some(self.channels()))?;
        let (scale, shift) = self.scale_shift();
        for_each_plane_mut(x, |c, p| {
            for v in p.iter_mut() {
                let z = *v * scale[c] + shift[c];
                *v = if relu { super::relu::relu(z) } else { z };
            }
        });
        Ok(())
    }

    /// `dx = dy * scale` (per channel).
    ///
    /// # Errors
    /// [`NetError::Shape`] when `dy` has another number of channels or an `Accumulate` target
    /// has another shape.
    pub fn backward(&self, dy: &Tensor4, mut dx: GradOut<'_>) -> Result<()> {
        check_nchw("frozen batch norm output gradient", dy, Some(self.channels()))?;
        let (scale, _) = self.scale_shift();
        if let Some((dx, acc)) = dx.prepare("frozen batch norm input gradient", dy.dims(), false)? {
            zip_planes_mut(dy, dx, |c, g, d| {
                for (d, &g) in d.iter_mut().zip(g) {
                    *d = if acc { *d + g * scale[c] } else { g * scale[c] };
                }
            });
        }
        Ok(())
    }

    /// `dy = dy * scale` in place, optionally after masking by a ReLU output `relu_out`
    /// (`dy = 0` where `relu_out <= 0`): the backward of [`Self::forward_inplace`].
    ///
    /// # Errors
    /// [`NetError::Shape`] when the shapes disagree.
    pub fn backward_inplace(&self, dy: &mut Tensor4, relu_out: Option<&Tensor4>) -> Result<()> {
        check_nchw("frozen batch norm output gradient", dy, Some(self.channels()))?;
        let (scale, _) = self.scale_shift();
        match relu_out {
            Some(out) => {
                if out.dims() != dy.dims() {
                    return Err(NetError::Shape {
                        what: "frozen batch norm relu output",
                        expected: format!("{:?}", dy.dims()),
                        got: out.dims().to_vec(),
                    });
                }
                zip_planes_mut(out, dy, |c, o, g| {
                    for (g, &o) in g.iter_mut().zip(o) {
                        *g = if o > 0.0 { *g * scale[c] } else { 0.0 };
                    }
                });
            }
            None => for_each_plane_mut(dy, |c, g| g.iter_mut().for_each(|g| *g *= scale[c])),
        }
        Ok(())
    }
}

impl Module for FrozenBatchNorm2d {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        out.push((join(prefix, "weight"), &self.weight));
        out.push((join(prefix, "bias"), &self.bias));
        out.push((join(prefix, "running_mean"), &self.running_mean));
        out.push((join(prefix, "running_var"), &self.running_var));
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        out.push((join(prefix, "weight"), &mut self.weight));
        out.push((join(prefix, "bias"), &mut self.bias));
        out.push((join(prefix, "running_mean"), &mut self.running_mean));
        out.push((join(prefix, "running_var"), &mut self.running_var));
    }
}
