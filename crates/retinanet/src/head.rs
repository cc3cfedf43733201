//! The classification and box subnets, shared across pyramid levels.

use fpn_net::{Conv2d, Conv2dConfig, GradOut, GroupNorm, Module, Param, Relu, Tensor4};

use crate::error::Result;
use crate::init::NormalRng;

/// One subnet as torchvision's `RetinaNetClassificationHead` / `RetinaNetRegressionHead`:
/// `n` times (3x3 conv + [GroupNorm] + ReLU) at `channels` channels, then a 3x3 output
/// convolution with `anchors * outputs` channels (`cls_logits` or `bbox_reg`). The same
/// weights run on every level; each level keeps its own activations for backward.
#[derive(Clone, Debug)]
pub struct Subnet {
    convs: Vec<Conv2d>,
    norms: Vec<GroupNorm>,
    output: Conv2d,
    output_name: &'static str,
    /// Per level, per conv: the convolution's output (before GroupNorm), kept only with norms.
    pre: Vec<Vec<Tensor4>>,
    /// Per level, per conv: the activation after ReLU.
    acts: Vec<Vec<Tensor4>>,
    /// Per level: the output convolution's result `[N, A * K, H, W]`.
    raw: Vec<Tensor4>,
    grad_a: Tensor4,
    grad_b: Tensor4,
    norm_scratch: Tensor4,
}

impl Subnet {
    /// A subnet with `convs` hidden convolutions of `channels` and `outputs` output channels,
    /// initialised as torchvision does: weights N(0, 0.01), biases 0, the output bias at
    /// `output_bias`.
    ///
    /// # Errors
    /// [`crate::RetinaError::Net`] for zero sizes or channels GroupNorm(32) cannot split.
    pub fn new(
        channels: usize,
        convs: usize,
        group_norm: bool,
        outputs: usize,
        output_name: &'static str,
        output_bias: f32,
        rng: &mut NormalRng,
    ) -> Result<Self> {
        let hidden = Conv2dConfig::new(channels, channels, 3).padding(1).bias(!group_norm);
        let mut conv_layers = (0..convs).map(|_| Conv2d::new(hidden)).collect::<fpn_net::Result<Vec<_>>>()?;
        let norms = if group_norm {
            (0..convs).map(|_| GroupNorm::new(32, channels)).collect::<fpn_net::Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let mut output = Conv2d::new(Conv2dConfig::new(channels, outputs, 3).padding(1).bias(true))?;
        for c in conv_layers.iter_mut().chain(std::iter::once(&mut output)) {
            rng.fill_normal(&mut c.weight.value, 0.01);
        }
        if let Some(b) = &mut output.bias {
            b.value.fill(output_bias);
        }
        Ok(Subnet {
            convs: conv_layers,
            norms,
            output,
            output_name,
            pre: Vec::new(),
            acts: Vec::new(),
            raw: Vec::new(),
            grad_a: Tensor4::default(),
            grad_b: Tensor4::default(),
            norm_scratch: Tensor4::default(),
        })
    }

    /// Runs the subnet on every level; the results are in [`Subnet::outputs`].
    ///
    /// # Errors
    /// [`crate::RetinaError::Net`] when a level has the wrong number of channels.
    pub fn forward(&mut self, levels: &[Tensor4]) -> Result<()> {
        let n = self.convs.len();
        self.pre.resize_with(levels.len(), Vec::new);
        self.acts.resize_with(levels.len(), Vec::new);
        self.raw.resize_with(levels.len(), Tensor4::default);
        for (l, x) in levels.iter().enumerate() {
            let acts = &mut self.acts[l];
            acts.resize_with(n, Tensor4::default);
            if !self.norms.is_empty() {
                self.pre[l].resize_with(n, Tensor4::default);
            }
            for i in 0..n {
                let (before, rest) = acts.split_at_mut(i);
                let input = if i == 0 { x } else { &before[i - 1] };
                if self.norms.is_empty() {
                    self.convs[i].forward(input, &mut rest[0])?;
                } else {
                    self.convs[i].forward(input, &mut self.pre[l][i])?;
                    self.norms[i].forward(&self.pre[l][i], &mut rest[0])?;
                }
                Relu.forward_inplace(&mut rest[0]);
            }
            let last = if n == 0 { x } else { &acts[n - 1] };
            self.output.forward(last, &mut self.raw[l])?;
        }
        Ok(())
    }

    /// The output convolution's weight (`cls_logits.weight` / `bbox_reg.weight`).
    pub fn output_weight_mut(&mut self) -> &mut fpn_net::Param {
        &mut self.output.weight
    }

    /// The output of each level from the last forward, `[N, A * K, H, W]`.
    pub fn outputs(&self) -> &[Tensor4] {
        &self.raw
    }

    /// Backward from the gradients of [`Subnet::outputs`]: accumulates parameter gradients and
    /// writes (`accumulate == false`) or adds the gradient of each level into `d_levels`.
    ///
    /// # Errors
    /// [`crate::RetinaError::Net`] when shapes differ from the last forward's.
    pub fn backward(
        &mut self,
        levels: &[Tensor4],
        d_raw: &[Tensor4],
        d_levels: &mut [Tensor4],
        accumulate: bool,
    ) -> Result<()> {
        let count = levels.len();
        if self.raw.len() != count || d_raw.len() != count || d_levels.len() != count {
            return Err(crate::RetinaError::Shape {
                what: "subnet backward",
                expected: format!(
                    "{} levels (the last forward's) of inputs, output gradients and input gradients",
                    self.raw.len()
                ),
                got: format!("{count}, {} and {}", d_raw.len(), d_levels.len()),
            });
        }
        let n = self.convs.len();
        for (l, x) in levels.iter().enumerate() {
            let acts = &self.acts[l];
            let level_out =
                if accumulate { GradOut::Accumulate(&mut d_levels[l]) } else { GradOut::Write(&mut d_levels[l]) };
            if n == 0 {
                self.output.backward(x, &d_raw[l], level_out)?;
                continue;
            }
            self.output.backward(&acts[n - 1], &d_raw[l], GradOut::Write(&mut self.grad_a))?;
            let mut level_out = Some(level_out);
            for i in (0..n).rev() {
                Relu.backward(&acts[i], &self.grad_a, GradOut::Write(&mut self.grad_b))?;
                if !self.norms.is_empty() {
                    // The norm is shared by every level and keeps the statistics of its last
                    // forward only: recompute this level's (same values) before its backward.
                    self.norms[i].forward(&self.pre[l][i], &mut self.norm_scratch)?;
                    self.norms[i].backward(&self.pre[l][i], &self.grad_b, GradOut::Write(&mut self.norm_scratch))?;
                    std::mem::swap(&mut self.grad_b, &mut self.norm_scratch);
                }
                let input = if i == 0 { x } else { &acts[i - 1] };
                let dx =
                    if i == 0 { level_out.take().unwrap_or(GradOut::Skip) } else { GradOut::Write(&mut self.grad_a) };
                self.convs[i].backward(input, &self.grad_b, dx)?;
            }
        }
        Ok(())
    }
}

impl Module for Subnet {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        for (i, c) in self.convs.iter().enumerate() {
            c.params(&format!("{prefix}conv.{i}.0."), out);
            if let Some(g) = self.norms.get(i) {
                g.params(&format!("{prefix}conv.{i}.1."), out);
            }
        }
        self.output.params(&format!("{prefix}{}.", self.output_name), out);
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        let mut norms = self.norms.iter_mut();
        for (i, c) in self.convs.iter_mut().enumerate() {
            c.params_mut(&format!("{prefix}conv.{i}.0."), out);
            if let Some(g) = norms.next() {
                g.params_mut(&format!("{prefix}conv.{i}.1."), out);
            }
        }
        self.output.params_mut(&format!("{prefix}{}.", self.output_name), out);
    }
}

/// Copies level outputs `[N, A * K, H, W]` into `flat` `[N, sum(H W A), K]`, torchvision's
/// `view(N, A, K, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, K)` concatenated over levels.
pub fn flatten_levels(raw: &[Tensor4], k: usize, flat: &mut Vec<f32>) {
    let n = raw.first().map_or(0, Tensor4::n);
    let per_image: usize = raw.iter().map(|t| t.image_len()).sum();
    flat.clear();
    flat.resize(n * per_image, 0.0);
    let mut offset = 0;
    for t in raw {
        let [_, ak, h, w] = t.dims();
        let a = ak / k;
        for img in 0..n {
            let Some(src) = t.image(img) else { continue };
            let dst = &mut flat[img * per_image + offset..img * per_image + offset + ak * h * w];
            for ch in 0..ak {
                let (anchor, class) = (ch / k, ch % k);
                for (pos, &v) in src[ch * h * w..(ch + 1) * h * w].iter().enumerate() {
                    dst[(pos * a + anchor) * k + class] = v;
                }
            }
        }
        offset += ak * h * w;
    }
}

/// The inverse of [`flatten_levels`]: scatters `flat` gradients back into level-shaped
/// tensors with the dimensions of `like`.
pub fn unflatten_levels(flat: &[f32], like: &[Tensor4], k: usize, out: &mut Vec<Tensor4>) {
    let n = like.first().map_or(0, Tensor4::n);
    let per_image: usize = like.iter().map(|t| t.image_len()).sum();
    out.resize_with(like.len(), Tensor4::default);
    let mut offset = 0;
    for (t, o) in like.iter().zip(out.iter_mut()) {
        let [_, ak, h, w] = t.dims();
        let a = ak / k;
        o.reshape_for(t.dims());
        let image_len = o.image_len();
        for img in 0..n {
            let src = &flat[img * per_image + offset..img * per_image + offset + ak * h * w];
            let dst = &mut o.as_mut_slice()[img * image_len..(img + 1) * image_len];
            for ch in 0..ak {
                let (anchor, class) = (ch / k, ch % k);
                for (pos, d) in dst[ch * h * w..(ch + 1) * h * w].iter_mut().enumerate() {
                    *d = src[(pos * a + anchor) * k + class];
                }
            }
        }
        offset += ak * h * w;
    }
}
