//! 2-D convolution as im2col + GEMM.

use rayon::prelude::*;

use super::GradOut;
use crate::error::{NetError, Result, config_error};
use crate::gemm::{MatRef, matmul};
use crate::param::{Module, Param, join};
use crate::tensor::Tensor4;

/// The hyper-parameters of a [`Conv2d`], as `torch.nn.Conv2d` takes them (one group, zero
/// padding).
///
/// # Examples
/// ```
/// use fpn_net::Conv2dConfig;
/// let c = Conv2dConfig::new(64, 128, 3).stride(2).padding(1);
/// assert_eq!(c.stride, [2, 2]);
/// assert!(!c.bias);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride `[y, x]`.
    pub stride: [usize; 2],
    /// Zero padding `[y, x]` on both sides.
    pub padding: [usize; 2],
    /// Dilation `[y, x]`.
    pub dilation: [usize; 2],
    /// Whether the layer adds a per-channel bias.
    pub bias: bool,
}

impl Conv2dConfig {
    /// A square `kernel x kernel` convolution, stride 1, no padding, no bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Conv2dConfig {
            in_channels,
            out_channels,
            kernel: [kernel, kernel],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            bias: false,
        }
    }
    /// The same stride in both directions.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }
    /// The same padding in both directions.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = [p, p];
        self
    }
    /// The same dilation in both directions.
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }
    /// With or without a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Rows of the im2col matrix: `in_channels * kh * kw`.
    fn patch_len(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// The output `[N, out_channels, Ho, Wo]` for an input of `dims`.
    ///
    /// # Errors
    /// [`NetError::Shape`] when the channels differ or the input is smaller than the dilated
    /// kernel after padding.
    pub fn output_dims(&self, dims: [usize; 4]) -> Result<[usize; 4]> {
        let [n, c, h, w] = dims;
        let mut out = [n, self.out_channels, 0, 0];
        for a in 0..2 {
            let size = [h, w][a] + 2 * self.padding[a];
            let span = self.dilation[a] * (self.kernel[a] - 1) + 1;
            if size < span || c != self.in_channels || n == 0 || [h, w][a] == 0 {
                return Err(NetError::Shape {
                    what: "conv2d input",
                    expected: format!(
                        "[N, {}, H, W] with N > 0 and H, W + 2 * padding {:?} >= dilated kernel {:?}",
                        self.in_channels,
                        self.padding,
                        [self.dilation[0] * (self.kernel[0] - 1) + 1, self.dilation[1] * (self.kernel[1] - 1) + 1]
                    ),
                    got: dims.to_vec(),
                });
            }
            out[2 + a] = (size - span) / self.stride[a] + 1;
        }
        Ok(out)
    }
}

/// A 2-D convolution (`torch.nn.Conv2d` with `groups=1`): weight `[O, I, kh, kw]`, optional
/// bias `[O]`, parameter names `weight` and `bias`.
///
/// Forward unfolds each image into a `[I*kh*kw, Ho*Wo]` matrix (im2col; skipped for 1x1
/// stride-1 convolutions, whose input already is that matrix) and multiplies it by the weight
/// as a `[O, I*kh*kw]` matrix. Backward reuses the same unfolding for the weight gradient and
/// folds `W^T dY` back (col2im) for the input gradient. The unfolding buffer lives in the layer
/// and is reused between calls.
#[derive(Clone, Debug)]
pub struct Conv2d {
    config: Conv2dConfig,
    /// `[O, I, kh, kw]`.
    pub weight: Param,
    /// `[O]`, when the configuration asks for a bias.
    pub bias: Option<Param>,
    scratch: Vec<Scratch>,
    col_tile_bytes: usize,
}

impl Conv2d {
    /// A convolution with zero weights (load or initialise them afterwards).
    ///
    /// # Errors
    /// [`NetError::Config`] when a size, stride or dilation is zero.
    pub fn new(config: Conv2dConfig) -> Result<Self> {
        let c = &config;
        if c.in_channels == 0
            || c.out_channels == 0
            || c.kernel.contains(&0)
            || c.stride.contains(&0)
            || c.dilation.contains(&0)
        {
            return Err(config_error(
                "Conv2d",
                format!("channels, kernel, stride and dilation must be > 0, got {config:?}"),
            ));
        }
        Ok(Conv2d {
            weight: Param::zeros(&[c.out_channels, c.in_channels, c.kernel[0], c.kernel[1]], true),
            bias: c.bias.then(|| Param::zeros(&[c.out_channels], true)),
            config,
            scratch: Vec::new(),
            col_tile_bytes: DEFAULT_COL_TILE_BYTES,
        })
    }

    /// Sets the size of the unfolded-input tile (default [`DEFAULT_COL_TILE_BYTES`]): the
    /// convolution runs tile by tile over output rows, at least one row per tile. Results do
    /// not depend on it beyond f32 rounding of the weight gradient's sum over tiles.
    pub fn set_col_tile_bytes(&mut self, bytes: usize) {
        self.col_tile_bytes = bytes;
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// `y = conv(x)`; `y` is resized to `[N, O, Ho, Wo]`.
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` does not fit the configuration.
    pub fn forward(&mut self, x: &Tensor4, y: &mut Tensor4) -> Result<()> {
        let bias = self.bias.take();
        let epilogue = match &bias {
            Some(b) => Epilogue::Affine { scale: None, shift: &b.value, residual: None, relu: false },
            None => Epilogue::None,
        };
        let result = self.forward_with(x, y, epilogue);
        self.bias = bias;
        result
    }

    /// `y = epilogue(conv(x))`, the epilogue applied per output channel while each tile of
    /// the output is still in cache (a frozen batch norm and ReLU after a bias-free
    /// convolution, in ResNet). The layer's own bias is not added here.
    pub(crate) fn forward_with(&mut self, x: &Tensor4, y: &mut Tensor4, epilogue: Epilogue<'_>) -> Result<()> {
        let out_dims = self.config.output_dims(x.dims())?;
        if let Epilogue::Affine { residual: Some(r), .. } = epilogue
            && r.dims() != out_dims
        {
            return Err(NetError::Shape {
                what: "residual added to the convolution",
                expected: format!("{out_dims:?}"),
                got: r.dims().to_vec(),
            });
        }
        y.reshape_for(out_dims);
        let plan = self.plan(out_dims);
        let out_len = plan.o * plan.hw_out;
        let weight = &self.weight.value;
        if batch_parallel(x.n()) {
            self.scratch.resize_with(x.n(), Scratch::default);
            y.as_mut_slice()
                .par_chunks_mut(out_len)
                .zip(self.scratch.par_iter_mut())
                .enumerate()
                .for_each(|(n, (y_n, s))| plan.forward_image(weight, x, n, y_n, &mut s.col, epilogue, Threads::One));
        } else {
            self.scratch.resize_with(1, Scratch::default);
            for (n, y_n) in y.as_mut_slice().chunks_mut(out_len).enumerate() {
                plan.forward_image(weight, x, n, y_n, &mut self.scratch[0].col, epilogue, Threads::All);
            }
        }
        Ok(())
    }

    fn plan(&self, out_dims: [usize; 4]) -> Plan {
        let cfg = self.config;
        let k = cfg.patch_len();
        let [_, _, ho, wo] = out_dims;
        Plan {
            cfg,
            out_dims,
            o: cfg.out_channels,
            k,
            hw_out: ho * wo,
            rows_per_tile: tile_rows(&cfg, self.col_tile_bytes, k, ho, wo),
        }
    }

    /// Backward: accumulates `dL/dW` (and `dL/db`) when trainable and puts `dL/dx` into `dx`.
    ///
    /// `x` is the input of the forward pass, `dy` the gradient of its output.
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` does not fit the configuration or `dy` is not shaped like
    /// the output.
    pub fn backward(&mut self, x: &Tensor4, dy: &Tensor4, mut dx: GradOut<'_>) -> Result<()> {
        let out_dims = self.config.output_dims(x.dims())?;
        if dy.dims() != out_dims {
            return Err(NetError::Shape {
                what: "conv2d output gradient",
                expected: format!("{out_dims:?}"),
                got: dy.dims().to_vec(),
            });
        }
        let plan = self.plan(out_dims);
        let (o, hw_out) = (plan.o, plan.hw_out);
        let dx = dx.prepare("conv2d input gradient", x.dims(), !plan.cfg.is_pointwise())?;
        let want_dw = self.weight.trainable();
        if let Some(b) = self.bias.as_mut().filter(|b| b.trainable()) {
            for dy_n in dy.as_slice().chunks(o * hw_out) {
                b.grad
                    .par_iter_mut()
                    .zip(dy_n.par_chunks(hw_out.max(1)))
                    .for_each(|(g, row)| *g += row.iter().sum::<f32>());
            }
        }
        let image_len = x.image_len();
        let weight = &self.weight.value;
        let (dx_data, accumulate) = match dx {
            Some((t, acc)) => (Some(t.as_mut_slice()), acc),
            None => (None, false),
        };
        if batch_parallel(x.n()) {
            // One partial weight gradient per image, summed in image order below: the result
            // does not depend on how images are spread over threads.
            self.scratch.resize_with(x.n(), Scratch::default);
            let mut dx_images: Vec<Option<&mut [f32]>> = match dx_data {
                Some(d) => d.chunks_mut(image_len).map(Some).collect(),
                None => (0..x.n()).map(|_| None).collect(),
            };
            self.scratch.par_iter_mut().zip(dx_images.par_iter_mut()).enumerate().for_each(|(n, (s, dx_n))| {
                let dy_n = &dy.as_slice()[n * o * hw_out..(n + 1) * o * hw_out];
                let dw = want_dw.then(|| {
                    // Every element is written by the first tile's product (no zeroing needed).
                    s.dw.resize(weight.len(), 0.0);
                    (&mut s.dw[..], false)
                });
                let dx_n = dx_n.as_deref_mut().map(|d| (d, accumulate));
                plan.backward_image(weight, x, n, dy_n, dw, dx_n, &mut s.col, Threads::One);
            });
            if want_dw {
                for s in &self.scratch[..x.n()] {
                    super::add_assign(&mut self.weight.grad, &s.dw);
                }
            }
        } else {
            self.scratch.resize_with(1, Scratch::default);
            let mut dx_images: Option<std::slice::ChunksMut<'_, f32>> = dx_data.map(|d| d.chunks_mut(image_len));
            for n in 0..x.n() {
                let dy_n = &dy.as_slice()[n * o * hw_out..(n + 1) * o * hw_out];
                let dw = want_dw.then_some((&mut self.weight.grad[..], true));
                let dx_n = dx_images.as_mut().and_then(|it| it.next()).map(|d| (d, accumulate));
                plan.backward_image(weight, x, n, dy_n, dw, dx_n, &mut self.scratch[0].col, Threads::All);
            }
        }
        Ok(())
    }
}

/// Batches of 2 to 8 images run one image per rayon task (each GEMM on one thread, no hand-off
/// inside it); other batch sizes run image after image, each GEMM split across the threads.
/// The choice depends on the batch size only, so results never depend on the thread count.
fn batch_parallel(n: usize) -> bool {
    (2..=8).contains(&n)
}

/// Per-image scratch: the unfolded tile and, in backward, the image's weight gradient.
#[derive(Clone, Debug, Default)]
struct Scratch {
    col: Vec<f32>,
    dw: Vec<f32>,
}

/// Whether one image's work may use every thread or runs on the calling one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Threads {
    All,
    One,
}

impl Threads {
    /// Minimum items per rayon task: 1 lets rayon split, `usize::MAX` keeps the loop on the
    /// calling thread.
    fn min_len(self) -> usize {
        match self {
            Threads::All => 1,
            Threads::One => usize::MAX,
        }
    }
}

/// The geometry of one call, shared by every image.
#[derive(Clone, Copy, Debug)]
struct Plan {
    cfg: Conv2dConfig,
    out_dims: [usize; 4],
    o: usize,
    k: usize,
    hw_out: usize,
    rows_per_tile: usize,
}

impl Plan {
    /// Output-row tiles `(first row, rows, first column, columns)`.
    fn tiles(&self) -> impl Iterator<Item = (std::ops::Range<usize>, usize, usize)> + use<> {
        let [_, _, ho, wo] = self.out_dims;
        let step = self.rows_per_tile;
        (0..ho).step_by(step).map(move |oy0| {
            let oy1 = (oy0 + step).min(ho);
            (oy0..oy1, oy0 * wo, (oy1 - oy0) * wo)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_image(
        &self,
        weight: &[f32],
        x: &Tensor4,
        n: usize,
        y_n: &mut [f32],
        col: &mut Vec<f32>,
        epilogue: Epilogue<'_>,
        threads: Threads,
    ) {
        let (o, k, hw_out) = (self.o, self.k, self.hw_out);
        for (rows, c0, cols) in self.tiles() {
            let rhs = if self.cfg.is_pointwise() {
                MatRef { data: &x.image_at(n)[c0..], rows: k, cols, rs: hw_out, cs: 1 }
            } else {
                col.resize(k * cols, 0.0);
                im2col(&self.cfg, x, n, self.out_dims, rows, col, threads);
                MatRef::row_major(col, k, cols)
            };
            matmul(&mut y_n[c0..], hw_out, false, MatRef::row_major(weight, o, k), rhs, threads == Threads::All);
            epilogue.apply(n, y_n, hw_out, c0..c0 + cols, threads);
        }
    }

    /// One image's backward: `dw (+)= dY x^T` (unfolded; the flag says whether the first tile
    /// adds to `dw` or overwrites it), `dx (+)= fold(W^T dY)`.
    #[allow(clippy::too_many_arguments)]
    fn backward_image(
        &self,
        weight: &[f32],
        x: &Tensor4,
        n: usize,
        dy_n: &[f32],
        mut dw: Option<(&mut [f32], bool)>,
        mut dx_n: Option<(&mut [f32], bool)>,
        col: &mut Vec<f32>,
        threads: Threads,
    ) {
        let (o, k, hw_out) = (self.o, self.k, self.hw_out);
        let pointwise = self.cfg.is_pointwise();
        let parallel = threads == Threads::All;
        // Tiles in a fixed order: the weight gradient sums over them in the same order
        // whatever the thread count.
        for (rows, c0, cols) in self.tiles() {
            let dy_tile = MatRef { data: &dy_n[c0..], rows: o, cols, rs: hw_out, cs: 1 };
            if let Some((dw, accumulate)) = dw.as_mut() {
                let x_t = if pointwise {
                    MatRef { data: &x.image_at(n)[c0..], rows: cols, cols: k, rs: 1, cs: hw_out }
                } else {
                    col.resize(k * cols, 0.0);
                    im2col(&self.cfg, x, n, self.out_dims, rows.clone(), col, threads);
                    MatRef::transposed(col, cols, k)
                };
                matmul(dw, k, *accumulate, dy_tile, x_t, parallel);
                *accumulate = true;
            }
            if let Some((dx_n, accumulate)) = dx_n.as_mut() {
                let w_t = MatRef::transposed(weight, k, o);
                if pointwise {
                    matmul(&mut dx_n[c0..], hw_out, *accumulate, w_t, dy_tile, parallel);
                } else {
                    col.resize(k * cols, 0.0);
                    matmul(col, cols, false, w_t, dy_tile, parallel);
                    col2im(&self.cfg, col, x.dims(), self.out_dims, rows, dx_n, threads);
                }
            }
        }
    }
}

/// A per-output-channel map applied to the product before it leaves the cache.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Epilogue<'a> {
    /// The product as it is.
    None,
    /// `v * scale[c] + shift[c]` (scale 1 when absent), plus the same element of `residual`
    /// when given (shaped like the output), then ReLU when asked.
    Affine { scale: Option<&'a [f32]>, shift: &'a [f32], residual: Option<&'a Tensor4>, relu: bool },
}

impl Epilogue<'_> {
    /// Applies the map to columns `cols` of every row (channel) of `y_n`, rows `row_len` long.
    fn apply(&self, n: usize, y_n: &mut [f32], row_len: usize, cols: std::ops::Range<usize>, threads: Threads) {
        let Epilogue::Affine { scale, shift, residual, relu } = *self else {
            return;
        };
        let residual = residual.map(|r| r.image_at(n));
        y_n.par_chunks_mut(row_len.max(1))
            .with_min_len((4096 / cols.len().max(1)).max(threads.min_len()))
            .enumerate()
            .for_each(|(c, row)| {
                let (a, b) = (scale.map_or(1.0, |s| s[c]), shift[c]);
                match residual {
                    Some(r) => {
                        let r = &r[c * row_len + cols.start..c * row_len + cols.end];
                        for (v, &r) in row[cols.clone()].iter_mut().zip(r) {
                            let z = *v * a + b + r;
                            *v = if relu { super::relu::relu(z) } else { z };
                        }
                    }
                    None => {
                        for v in &mut row[cols.clone()] {
                            let z = *v * a + b;
                            *v = if relu { super::relu::relu(z) } else { z };
                        }
                    }
                }
            });
    }
}

/// Default bytes of the im2col tile: small enough to stay in cache between im2col and the
/// GEMM, large enough that each GEMM amortises its packing and thread hand-off (measured on
/// ResNet-50-FPN at 512 x 512: 0.5 MiB tiles were 1.4x slower, 2 to 8 MiB about 5% faster
/// than unfolding the whole image).
pub const DEFAULT_COL_TILE_BYTES: usize = 4 << 20;

/// Output rows per tile: the whole image for 1x1 stride-1 convolutions (no unfolding), else
/// as many rows as fit the tile budget (at least one).
fn tile_rows(cfg: &Conv2dConfig, budget: usize, k: usize, ho: usize, wo: usize) -> usize {
    if cfg.is_pointwise() {
        return ho.max(1);
    }
    (budget / (4 * k * wo.max(1))).clamp(1, ho.max(1))
}

impl Module for Conv2d {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Param)>) {
        out.push((join(prefix, "weight"), &self.weight));
        if let Some(b) = &self.bias {
            out.push((join(prefix, "bias"), b));
        }
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Param)>) {
        out.push((join(prefix, "weight"), &mut self.weight));
        if let Some(b) = &mut self.bias {
            out.push((join(prefix, "bias"), b));
        }
    }
}

/// The output positions `o < out_len` whose input index `o * stride + offset` lies in
/// `[0, in_len)`: a half-open range.
fn valid_range(offset: isize, stride: usize, in_len: usize, out_len: usize) -> (usize, usize) {
    let lo = if offset >= 0 { 0 } else { offset.unsigned_abs().div_ceil(stride) };
    let limit = in_len as isize - offset;
    let hi = if limit <= 0 { 0 } else { (limit as usize).div_ceil(stride) };
    let lo = lo.min(out_len);
    (lo, hi.clamp(lo, out_len))
}

/// Kernel offset `(ki, kj)` of row `r` of one channel's block and its input offsets.
fn kernel_offsets(cfg: &Conv2dConfig, r: usize) -> (isize, isize) {
    let (ki, kj) = (r / cfg.kernel[1], r % cfg.kernel[1]);
    (
        (ki * cfg.dilation[0]) as isize - cfg.padding[0] as isize,
        (kj * cfg.dilation[1]) as isize - cfg.padding[1] as isize,
    )
}

/// Unfolds output rows `rows` of image `n` of `x` into `col` (`[I*kh*kw, rows * Wo]`,
/// row-major), zero where the window
/// reaches into the padding.
fn im2col(
    cfg: &Conv2dConfig,
    x: &Tensor4,
    n: usize,
    out_dims: [usize; 4],
    rows: std::ops::Range<usize>,
    col: &mut [f32],
    threads: Threads,
) {
    let [_, _, h, w] = x.dims();
    let [_, _, out_h, wo] = out_dims;
    let ho = rows.len();
    let rows_per_channel = cfg.kernel[0] * cfg.kernel[1];
    let [sy, sx] = cfg.stride;
    col.par_chunks_mut(rows_per_channel * ho * wo).with_min_len(threads.min_len()).enumerate().for_each(
        |(c, block)| {
            let plane = x.plane_at(n, c);
            for (r, row) in block.chunks_mut(ho * wo).enumerate() {
                let (off_y, off_x) = kernel_offsets(cfg, r);
                let (y_lo, y_hi) = valid_range(off_y, sy, h, out_h);
                let (y_lo, y_hi) = (y_lo.clamp(rows.start, rows.end), y_hi.clamp(rows.start, rows.end));
                let (x_lo, x_hi) = valid_range(off_x, sx, w, wo);
                row[..(y_lo - rows.start) * wo].fill(0.0);
                row[(y_hi - rows.start) * wo..].fill(0.0);
                for oy in y_lo..y_hi {
                    let iy = (oy * sy) as isize + off_y;
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    let local = oy - rows.start;
                    let dst = &mut row[local * wo..(local + 1) * wo];
                    dst[..x_lo].fill(0.0);
                    dst[x_hi..].fill(0.0);
                    if x_lo == x_hi {
                        continue;
                    }
                    let first = (x_lo * sx) as isize + off_x;
                    let first = first as usize;
                    if sx == 1 {
                        dst[x_lo..x_hi].copy_from_slice(&src[first..first + (x_hi - x_lo)]);
                    } else {
                        for (d, s) in dst[x_lo..x_hi].iter_mut().zip(src[first..].iter().step_by(sx)) {
                            *d = *s;
                        }
                    }
                }
            }
        },
    );
}

/// Folds `col` (`[I*kh*kw, rows * Wo]`, output rows `rows`) back onto one image gradient
/// `dx_n` (`[I, H, W]`),
/// adding every window's contribution.
fn col2im(
    cfg: &Conv2dConfig,
    col: &[f32],
    dims: [usize; 4],
    out_dims: [usize; 4],
    rows: std::ops::Range<usize>,
    dx_n: &mut [f32],
    threads: Threads,
) {
    let [_, _, h, w] = dims;
    let [_, _, out_h, wo] = out_dims;
    let ho = rows.len();
    let rows_per_channel = cfg.kernel[0] * cfg.kernel[1];
    let [sy, sx] = cfg.stride;
    dx_n.par_chunks_mut(h * w)
        .zip(col.par_chunks(rows_per_channel * ho * wo))
        .with_min_len(threads.min_len())
        .for_each(|(plane, block)| {
            for (r, row) in block.chunks(ho * wo).enumerate() {
                let (off_y, off_x) = kernel_offsets(cfg, r);
                let (y_lo, y_hi) = valid_range(off_y, sy, h, out_h);
                let (y_lo, y_hi) = (y_lo.clamp(rows.start, rows.end), y_hi.clamp(rows.start, rows.end));
                let (x_lo, x_hi) = valid_range(off_x, sx, w, wo);
                if x_lo == x_hi {
                    continue;
                }
                for oy in y_lo..y_hi {
                    let iy = ((oy * sy) as isize + off_y) as usize;
                    let dst = &mut plane[iy * w..(iy + 1) * w];
                    let local = oy - rows.start;
                    let src = &row[local * wo + x_lo..local * wo + x_hi];
                    let first = ((x_lo * sx) as isize + off_x) as usize;
                    if sx == 1 {
                        for (d, s) in dst[first..first + src.len()].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (d, s) in dst[first..].iter_mut().step_by(sx).zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_covers_exactly_the_in_bounds_positions() {
        for offset in -5isize..5 {
            for stride in 1..4 {
                for in_len in 1..7 {
                    for out_len in 0..8 {
                        let (lo, hi) = valid_range(offset, stride, in_len, out_len);
                        for o in 0..out_len {
                            let i = (o * stride) as isize + offset;
                            let inside = i >= 0 && i < in_len as isize;
                            assert_eq!(inside, o >= lo && o < hi, "{offset} {stride} {in_len} {o}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn conv_too_small_input_is_an_error() {
        let mut conv = Conv2d::new(Conv2dConfig::new(2, 3, 5)).unwrap();
        let x = Tensor4::zeros([1, 2, 3, 3]);
        let mut y = Tensor4::default();
        assert!(matches!(conv.forward(&x, &mut y), Err(NetError::Shape { .. })));
    }

    #[test]
    fn conv_zero_stride_is_an_error() {
        assert!(Conv2d::new(Conv2dConfig::new(2, 3, 3).stride(0)).is_err());
    }
}
