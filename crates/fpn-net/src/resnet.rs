//! ResNet-18/34/50/101 in torchvision's layout (v1.5: the stride of a bottleneck sits on its
//! 3x3 convolution), with frozen batch norm.

use crate::error::{NetError, Result, config_error};
use crate::layers::{Conv2d, Conv2dConfig, Epilogue, FrozenBatchNorm2d, GradOut, MaxPool2d, add_assign};
use crate::param::{Module, Param, join};
use crate::tensor::{Tensor4, check_nchw};

/// Which ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Depth {
    /// ResNet-18: basic blocks `[2, 2, 2, 2]`.
    R18,
    /// ResNet-34: basic blocks `[3, 4, 6, 3]`.
    R34,
    /// ResNet-50: bottlenecks `[3, 4, 6, 3]`.
    R50,
    /// ResNet-101: bottlenecks `[3, 4, 23, 3]`.
    R101,
}

impl Depth {
    /// The depth with this many layers (18, 34, 50 or 101).
    ///
    /// # Errors
    /// [`NetError::Config`] for any other number.
    pub fn from_layers(layers: usize) -> Result<Self> {
        match layers {
            18 => Ok(Depth::R18),
            34 => Ok(Depth::R34),
            50 => Ok(Depth::R50),
            101 => Ok(Depth::R101),
            other => Err(config_error("ResNet", format!("depth {other}: expected 18, 34, 50 or 101"))),
        }
    }

    /// Blocks per stage.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 | Depth::R50 => [3, 4, 6, 3],
            Depth::R101 => [3, 4, 23, 3],
        }
    }

    /// Whether blocks are bottlenecks (expansion 4) rather than basic blocks.
    pub fn is_bottleneck(self) -> bool {
        matches!(self, Depth::R50 | Depth::R101)
    }

    /// Output channels of the four stages (C2..C5).
    pub fn stage_channels(self) -> [usize; 4] {
        let e = if self.is_bottleneck() { 4 } else { 1 };
        [64 * e, 128 * e, 256 * e, 512 * e]
    }
}

/// A convolution followed by frozen batch norm (and ReLU when `relu`), keeping its output.
#[derive(Clone, Debug)]
struct ConvBn {
    conv: Conv2d,
    bn: FrozenBatchNorm2d,
    relu: bool,
    out: Tensor4,
}

impl ConvBn {
    fn new(config: Conv2dConfig, relu: bool) -> Result<Self> {
        Ok(ConvBn {
            bn: FrozenBatchNorm2d::new(config.out_channels),
            conv: Conv2d::new(config)?,
            relu,
            out: Tensor4::default(),
        })
    }

    /// Convolution, batch norm and ReLU in one pass over each output tile.
    fn forward(&mut self, x: &Tensor4) -> Result<()> {
        self.forward_residual(x, None, self.relu)
    }

    /// `out = relu?(bn(conv(x)) + residual)`, all in the convolution's epilogue.
    fn forward_residual(&mut self, x: &Tensor4, residual: Option<&Tensor4>, relu: bool) -> Result<()> {
        let (scale, shift) = self.bn.scale_shift();
        let epilogue = Epilogue::Affine { scale: Some(&scale), shift: &shift, residual, relu };
        self.conv.forward_with(x, &mut self.out, epilogue)
    }

    /// `dout` is the gradient of `self.out` and is consumed (scaled in place).
    fn backward(&mut self, x: &Tensor4, dout: &mut Tensor4, dx: GradOut<'_>) -> Result<()> {
        self.bn.backward_inplace(dout, self.relu.then_some(&self.out))?;
        self.conv.backward(x, dout, dx)
    }

    fn trainable(&self) -> bool {
        self.conv.weight.trainable()
    }
}

/// A basic block (two 3x3) or a bottleneck (1x1, 3x3, 1x1), with an optional projection
/// shortcut. The block output is kept in the last convolution's buffer.
#[derive(Clone, Debug)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
    grad_a: Tensor4,
    grad_b: Tensor4,
}

impl Block {
    fn new(bottleneck: bool, in_ch: usize, planes: usize, stride: usize) -> Result<Self> {
        let out_ch = if bottleneck { planes * 4 } else { planes };
        let convs = if bottleneck {
            vec![
                ConvBn::new(Conv2dConfig::new(in_ch, planes, 1), true)?,
                ConvBn::new(Conv2dConfig::new(planes, planes, 3).stride(stride).padding(1), true)?,
                ConvBn::new(Conv2dConfig::new(planes, out_ch, 1), false)?,
            ]
        } else {
            vec![
                ConvBn::new(Conv2dConfig::new(in_ch, planes, 3).stride(stride).padding(1), true)?,
                ConvBn::new(Conv2dConfig::new(planes, planes, 3).padding(1), false)?,
            ]
        };
        let downsample = if stride != 1 || in_ch != out_ch {
            Some(ConvBn::new(Conv2dConfig::new(in_ch, out_ch, 1).stride(stride), false)?)
        } else {
            None
        };
        Ok(Block { convs, downsample, grad_a: Tensor4::default(), grad_b: Tensor4::default() })
    }

    fn output(&self) -> &Tensor4 {
        // A block always has at least two convolutions (see `new`).
        &self.convs[self.convs.len() - 1].out
    }

    fn trainable(&self) -> bool {
        self.convs.iter().chain(&self.downsample).any(ConvBn::trainable)
    }

    /// The last convolution adds the shortcut and applies the block's ReLU in its epilogue.
    fn forward(&mut self, x: &Tensor4) -> Result<()> {
        let last = self.convs.len() - 1;
        let identity = match &mut self.downsample {
            Some(ds) => {
                ds.forward(x)?;
                &ds.out
            }
            None => x,
        };
        self.convs[0].forward(x)?;
        for i in 1..last {
            let (before, rest) = self.convs.split_at_mut(i);
            rest[0].forward(&before[i - 1].out)?;
        }
        let (before, rest) = self.convs.split_at_mut(last);
        rest[0].forward_residual(&before[last - 1].out, Some(identity), true)
    }

    /// `dout`, the gradient of the block output, is consumed.
    fn backward(&mut self, x: &Tensor4, dout: &mut Tensor4, mut dx: GradOut<'_>) -> Result<()> {
        let last = self.convs.len() - 1;
        // The final ReLU: mask by the block output.
        crate::layers::zip_planes_mut(self.output(), dout, |_, o, g| {
            for (g, &o) in g.iter_mut().zip(o) {
                if o <= 0.0 {
                    *g = 0.0;
                }
            }
        });
        // Shortcut first: it needs `dout` before the main branch scales it in place.
        match &mut self.downsample {
            Some(ds) => {
                self.grad_a.copy_from(dout);
                ds.backward(x, &mut self.grad_a, dx.reborrow())?;
            }
            None => match dx.reborrow() {
                GradOut::Skip => {}
                GradOut::Write(t) => t.copy_from(dout),
                GradOut::Accumulate(t) => add_assign(t.as_mut_slice(), dout.as_slice()),
            },
        }
        // Main branch, last convolution down to the first.
        let mut g = std::mem::take(dout);
        let mut spare = std::mem::take(&mut self.grad_b);
        for i in (1..=last).rev() {
            let (before, rest) = self.convs.split_at_mut(i);
            rest[0].backward(&before[i - 1].out, &mut g, GradOut::Write(&mut spare))?;
            std::mem::swap(&mut g, &mut spare);
        }
        let result = self.convs[0].backward(x, &mut g, dx.accumulating());
        *dout = g;
        self.grad_b = spare;
        result
    }

    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        for (i, cb) in self.convs.iter().enumerate() {
            cb.conv.params(&format!("{prefix}conv{}.", i + 1), out);
            cb.bn.params(&format!("{prefix}bn{}.", i + 1), out);
        }
        if let Some(ds) = &self.downsample {
            ds.conv.params(&join(prefix, "downsample.0."), out);
            ds.bn.params(&join(prefix, "downsample.1."), out);
        }
    }

    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        for (i, cb) in self.convs.iter_mut().enumerate() {
            cb.conv.params_mut(&format!("{prefix}conv{}.", i + 1), out);
            cb.bn.params_mut(&format!("{prefix}bn{}.", i + 1), out);
        }
        if let Some(ds) = &mut self.downsample {
            ds.conv.params_mut(&join(prefix, "downsample.0."), out);
            ds.bn.params_mut(&join(prefix, "downsample.1."), out);
        }
    }
}

/// A ResNet without its classifier: stem (`conv1`, `bn1`, ReLU, 3x3/2 max pool) and four
/// stages `layer1..layer4` whose outputs C2..C5 have strides 4, 8, 16, 32.
///
/// Parameter names are torchvision's (`conv1.weight`, `layer3.0.downsample.1.running_var`);
/// batch norms are frozen (`FrozenBatchNorm2d`, or `BatchNorm2d` in eval mode).
#[derive(Clone, Debug)]
pub struct ResNet {
    depth: Depth,
    stem: ConvBn,
    maxpool: MaxPool2d,
    pooled: Tensor4,
    stages: Vec<Vec<Block>>,
    grad_a: Tensor4,
    grad_b: Tensor4,
    input_dims: [usize; 4],
}

impl ResNet {
    /// A ResNet of `depth` with identity batch norms and zero convolutions (load or initialise
    /// weights afterwards). Every convolution is trainable.
    ///
    /// # Errors
    /// Never for the four depths; kept fallible because layer constructors are.
    pub fn new(depth: Depth) -> Result<Self> {
        let bottleneck = depth.is_bottleneck();
        let mut in_ch = 64;
        let mut stages = Vec::with_capacity(4);
        for (s, &count) in depth.blocks().iter().enumerate() {
            let planes = 64 << s;
            let stride = if s == 0 { 1 } else { 2 };
            let mut blocks = Vec::with_capacity(count);
            for b in 0..count {
                blocks.push(Block::new(bottleneck, in_ch, planes, if b == 0 { stride } else { 1 })?);
                in_ch = if bottleneck { planes * 4 } else { planes };
            }
            stages.push(blocks);
        }
        Ok(ResNet {
            depth,
            stem: ConvBn::new(Conv2dConfig::new(3, 64, 7).stride(2).padding(3), true)?,
            maxpool: MaxPool2d::new(3, 2, 1)?,
            pooled: Tensor4::default(),
            stages,
            grad_a: Tensor4::default(),
            grad_b: Tensor4::default(),
            input_dims: [0; 4],
        })
    }

    /// The depth.
    pub fn depth(&self) -> Depth {
        self.depth
    }

    /// Freezes all but the top `trainable` of `layer4, layer3, layer2, layer1, conv1`, as
    /// torchvision's `trainable_layers` (RetinaNet's default is 3). Frozen parts keep no
    /// gradient and backward stops below the lowest trainable one.
    ///
    /// # Errors
    /// [`NetError::Config`] when `trainable > 5`.
    pub fn set_trainable_layers(&mut self, trainable: usize) -> Result<()> {
        if trainable > 5 {
            return Err(config_error("ResNet::set_trainable_layers", format!("{trainable}: expected 0..=5")));
        }
        self.stem.conv.weight.set_trainable(trainable >= 5);
        for (s, stage) in self.stages.iter_mut().enumerate() {
            let on = trainable > 3 - s;
            for block in stage {
                let mut list = Vec::new();
                block.params_mut("", &mut list);
                for (name, p) in list {
                    if name.contains("conv") || name.starts_with("downsample.0") {
                        p.set_trainable(on);
                    }
                }
            }
        }
        Ok(())
    }

    /// Output of stage `s` (0 = `layer1` = C2, ..., 3 = `layer4` = C5) from the last forward,
    /// `None` when `s > 3`.
    pub fn stage_output(&self, s: usize) -> Option<&Tensor4> {
        self.stages.get(s).and_then(|blocks| blocks.last()).map(Block::output)
    }

    /// Stage `s < 4`'s output.
    pub(crate) fn stage_at(&self, s: usize) -> &Tensor4 {
        // Every stage has at least two blocks.
        self.stages[s][self.stages[s].len() - 1].output()
    }

    /// Runs the network on `x` (`[N, 3, H, W]`) and returns C2..C5.
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` does not have 3 channels or is too small for the stem.
    pub fn forward(&mut self, x: &Tensor4) -> Result<[&Tensor4; 4]> {
        check_nchw("ResNet input", x, Some(3))?;
        self.stem.forward(x)?;
        self.maxpool.forward(&self.stem.out, &mut self.pooled)?;
        for s in 0..4 {
            for b in 0..self.stages[s].len() {
                let (block, input) = block_and_input(&mut self.stages, &self.pooled, s, b);
                block.forward(input)?;
            }
        }
        self.input_dims = x.dims();
        Ok([0, 1, 2, 3].map(|s| self.stage_at(s)))
    }

    /// Backward from the gradients of C2..C5 (`None` where a stage output is unused):
    /// accumulates the gradients of every trainable convolution. `x` is the input of the last
    /// forward.
    ///
    /// # Errors
    /// [`NetError::NoForward`] when `x` is not the last forward's input shape,
    /// [`NetError::Shape`] when a gradient is not shaped like its stage output.
    pub fn backward(&mut self, x: &Tensor4, d_stages: [Option<&Tensor4>; 4]) -> Result<()> {
        if x.dims() != self.input_dims {
            return Err(NetError::NoForward { what: "ResNet" });
        }
        for (s, d) in d_stages.iter().enumerate() {
            if let Some(d) = d {
                crate::tensor::check_same("ResNet stage gradient", self.stage_at(s), d)?;
            }
        }
        // Units in forward order: the stem, then every block. Backward runs down to the
        // lowest trainable unit and computes input gradients only above it.
        let stem_trainable = self.stem.trainable();
        let lowest_block = self.stages.iter().flatten().position(Block::trainable);
        let Some(lowest) = (if stem_trainable { Some(0) } else { lowest_block.map(|b| b + 1) }) else {
            return Ok(());
        };
        let mut g = std::mem::take(&mut self.grad_a);
        let mut spare = std::mem::take(&mut self.grad_b);
        let mut have = false;
        let mut unit = self.stages.iter().map(Vec::len).sum::<usize>();
        let result = (|| -> Result<()> {
            for s in (0..4).rev() {
                if let Some(d) = d_stages[s] {
                    if have {
                        add_assign(g.as_mut_slice(), d.as_slice());
                    } else {
                        g.copy_from(d);
                        have = true;
                    }
                }
                for b in (0..self.stages[s].len()).rev() {
                    if !have || unit < lowest {
                        unit -= 1;
                        continue;
                    }
                    let (block, input) = block_and_input(&mut self.stages, &self.pooled, s, b);
                    let dx = if unit > lowest { GradOut::Write(&mut spare) } else { GradOut::Skip };
                    block.backward(input, &mut g, dx)?;
                    std::mem::swap(&mut g, &mut spare);
                    unit -= 1;
                }
            }
            if have && stem_trainable {
                self.maxpool.backward(&self.stem.out, &self.pooled, &g, GradOut::Write(&mut spare))?;
                self.stem.backward(x, &mut spare, GradOut::Skip)?;
            }
            Ok(())
        })();
        self.grad_a = g;
        self.grad_b = spare;
        result
    }
}

/// Block `b` of stage `s`, writable, and its input: the previous block's output, the previous
/// stage's output, or the pooled stem.
fn block_and_input<'a>(
    stages: &'a mut [Vec<Block>],
    pooled: &'a Tensor4,
    s: usize,
    b: usize,
) -> (&'a mut Block, &'a Tensor4) {
    let (lower, upper) = stages.split_at_mut(s);
    let (before, rest) = upper[0].split_at_mut(b);
    let input = match (b, lower.last()) {
        (1.., _) => before[b - 1].output(),
        (0, Some(prev)) => prev[prev.len() - 1].output(),
        (0, None) => pooled,
    };
    (&mut rest[0], input)
}

impl Module for ResNet {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        self.stem.conv.params(&join(prefix, "conv1."), out);
        self.stem.bn.params(&join(prefix, "bn1."), out);
        for (s, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                block.params(&format!("{prefix}layer{}.{b}.", s + 1), out);
            }
        }
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        self.stem.conv.params_mut(&join(prefix, "conv1."), out);
        self.stem.bn.params_mut(&join(prefix, "bn1."), out);
        for (s, stage) in self.stages.iter_mut().enumerate() {
            for (b, block) in stage.iter_mut().enumerate() {
                block.params_mut(&format!("{prefix}layer{}.{b}.", s + 1), out);
            }
        }
    }
}
