//! What to compute, and the launch plan that computes it.
//!
//! Planning is plain Rust over addresses: it validates the request, picks the kernel, sizes the
//! grid from the shape alone (so every run sums in the same order) and lists the steps. The GPU
//! path executes the steps with cudarc; the emulation tests execute the very same steps on the
//! host, so this logic is tested without a GPU.

use crate::args::{
    FLAG_IOU_WEIGHTED, LossArgs, MODE_PER_BATCH, MODE_PER_IMAGE, ReduceArgs, WEIGHT_NONE, WEIGHT_PER_ELEMENT,
    WEIGHT_PER_ROW, div_magic,
};
use crate::error::{CudaError, Result};
use focal_core::{Alpha, FocalParams, VarifocalParams};

/// Threads per block of every kernel (`focal::kBlock`).
pub const BLOCK: u32 = 256;
/// 16-byte packs per thread per tile of the elementwise kernels (`focal::kPacksPerThread`).
const PACKS_PER_THREAD: u64 = 4;
/// Rows per warp per tile of the softmax kernel (`focal::kRowsPerWarp`), 8 warps a block.
const SOFTMAX_TILE_ROWS: u64 = 8 * 4;
/// Labels per thread of the foreground count (`focal::kCountRowsPerThread`).
const COUNT_ROWS_PER_THREAD: u64 = 16;
/// The most blocks a loss kernel is launched with; the workspace holds one partial per block.
pub const MAX_GRID: u32 = 1 << 16;
/// The most blocks of the staged walk of variants v6 and v7 (each block walks many stages).
/// Measured on an H200 at 8 x 120,087 x 80 (kernels/README.md): of 512, 1024, 2048, 4096 and
/// 8192 blocks, 1024 was 1.3% (f32), 0.3% (bf16) and 1.1% (f16) slower than the best of each
/// type, and 8192 was 3 to 5% slower than 1024.
pub const V6_GRID: u32 = 1024;
/// The kernels index elements with 32-bit integers.
pub const MAX_NUMEL: usize = u32::MAX as usize;

/// The loss to compute, with its validated parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// Sigmoid focal loss (RetinaNet), sparse labels or dense targets.
    SigmoidFocal(FocalParams),
    /// Softmax focal loss, sparse labels only (class, or -1 / -2: no contribution).
    SoftmaxFocal(FocalParams),
    /// Varifocal loss, dense IoU targets.
    Varifocal(VarifocalParams),
    /// Quality focal loss with exponent beta (validated with
    /// [`focal_core::params::check_beta`]), dense soft targets.
    QualityFocal {
        /// The exponent (Li et al. use 2).
        beta: f64,
    },
}

/// How the summed loss is normalised; the gradient is scaled the same way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Normalization {
    /// The plain sum.
    Sum,
    /// The mean over all elements (softmax: over the rows with a class label, as PyTorch's
    /// `cross_entropy(ignore_index=...)`).
    Mean,
    /// Divided by a given positive normaliser.
    Normalizer(f64),
    /// torchvision's RetinaNet: each image's sum divided by max(1, its foreground anchors), then
    /// the mean over images. Counted on the GPU from the sparse labels: no host sync.
    ForegroundPerImage,
    /// mmdetection / detectron2: the batch sum divided by max(1, foreground anchors of the
    /// batch), counted on the GPU.
    ForegroundPerBatch,
}

/// Which variant of a kernel runs, where several compete (kernels/README.md). Only the sparse
/// sigmoid focal loss has several; the others ignore this. v2, v3 and v5 were measured and deleted
/// (the table in kernels/README.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    /// The reference variant: accurate `expf`, IEEE division, `log1pf`, element by element.
    V1,
    /// Hardware reciprocal and log2 (flush to zero), element math without branches over whole
    /// packs (`finish_pack_two_rows` in kernels/elementwise.cuh), and entry points specialised
    /// for gamma = 2 with a scalar alpha, under tighter register bounds; its general entry points
    /// (any gamma, per-class alpha) serve v6 too. On an H200 at 8 x 120,087 x 80 (RetinaNet's
    /// loss, 2026-11-28): 269.0 us against v1's 413.5 us in f32, 259.3 us against 534.3 us in
    /// bf16.
    V4,
    /// The default. For gamma = 2 with a scalar alpha or none (other parameters run v4's general
    /// entry points): an all-background fast path for whole packs (rows all background, in one
    /// image: no label, ignore, bad-label or NaN selects; any other pack, or one whose loss sum is
    /// NaN, takes v4's pack path), `exp` as one hardware `ex2`, and `log1p(e)` as v4's where the
    /// gradient is f32, one hardware `lg2` where it is bf16 or f16 (`finish_pack_labelled` in
    /// kernels/elementwise.cuh); on a staged walk (`elementwise_loss_staged`): a grid of at most
    /// [`V6_GRID`] blocks walks stages of one 16-byte pack per thread, and each thread keeps its
    /// next 7 packs in flight (`cp.async` into a shared-memory ring) while it computes the
    /// current one. On an H200 at 8 x 120,087 x 80 (same run as v4's figures): 200.9 us in f32,
    /// 142.4 us in bf16, 77% and 58% of a device-to-device copy's bandwidth (the bench's GB/s,
    /// which counts the labels too).
    #[default]
    V6,
    /// A candidate, not timed on a GPU yet: v6 with two packs (8 elements) per thread per step
    /// for f32 logits, so the walk's per-step instructions are shared by twice the elements; half
    /// inputs run v6's entry points, other parameters v4's general ones. The same results as v6
    /// but for the loss's last bits (its f32 partial sums cover 8 elements, not 4).
    V7,
}

/// The problem shape: logits `[images, anchors, classes]`, row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// B.
    pub images: usize,
    /// A, anchors per image.
    pub anchors: usize,
    /// C, classes (no background column for the sigmoid losses).
    pub classes: usize,
}

impl Dims {
    /// `[images, anchors, classes]`.
    pub fn new(images: usize, anchors: usize, classes: usize) -> Self {
        Dims { images, anchors, classes }
    }
    /// Number of logits.
    pub fn numel(&self) -> usize {
        self.images * self.anchors * self.classes
    }
    /// Number of rows (anchors of all images).
    pub fn rows(&self) -> usize {
        self.images * self.anchors
    }
    /// The shape as a slice-friendly array.
    pub fn shape(&self) -> Vec<usize> {
        vec![self.images, self.anchors, self.classes]
    }
}

/// Element types of logits and gradients on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `f32`.
    F32,
    /// `half::f16`.
    F16,
    /// `half::bf16`.
    Bf16,
}

impl Dtype {
    /// The suffix used in kernel names.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

/// Which per-anchor or per-element weights accompany dense targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// No weights.
    None,
    /// One weight per anchor (row).
    PerAnchor,
    /// One weight per element.
    PerElement,
}

/// The kind of target a call passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// One i32 label per anchor.
    Sparse,
    /// f32 targets of the logits' shape, with optional weights.
    Dense(Weights),
}

/// Addresses of the caller's buffers (0 = absent).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Buffers {
    pub logits: u64,
    pub labels: u64,
    pub targets: u64,
    pub weights: u64,
    pub grad: u64,
    pub elementwise: u64,
}

/// Addresses of the workspace's buffers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WorkspacePtrs {
    /// `MAX_GRID` f64.
    pub partials: u64,
    /// `images` u32.
    pub counts: u64,
    /// `images` f32.
    pub scale: u64,
    /// 1 f64.
    pub loss: u64,
    /// 1 f32.
    pub loss_f32: u64,
    /// 1 u32.
    pub first_bad_row: u64,
    /// `classes` f32.
    pub alpha: u64,
}

/// A kernel's argument block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum KernelArgs {
    Loss(LossArgs),
    Reduce(ReduceArgs),
}

/// One step of a plan, in stream order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    /// Set `len` 32-bit words at `ptr` to `value`.
    Fill { ptr: u64, len: usize, value: u32 },
    /// Copy per-class alphas to `ptr`.
    Upload { ptr: u64, values: Vec<f32> },
    /// Launch `kernel` on a `grid` of `BLOCK`-thread blocks.
    Launch { kernel: String, grid: (u32, u32), args: KernelArgs },
}

/// A validated request.
#[derive(Clone, Debug)]
pub(crate) struct Request<'a> {
    pub objective: &'a Objective,
    pub dims: Dims,
    pub input: Dtype,
    pub grad: Dtype,
    pub target: TargetKind,
    pub normalization: Normalization,
    pub upstream: f64,
    pub variant: Variant,
    pub max_blocks: Option<u32>,
}

/// Whether the sparse sigmoid kernels' gamma = 2, scalar-alpha entry points apply (the kernel
/// sees gamma in f32).
fn retina_g2(p: &FocalParams) -> bool {
    p.gamma() as f32 == 2.0 && !matches!(p.alpha(), Alpha::PerClass(_))
}

fn unsupported(what: impl Into<String>) -> CudaError {
    CudaError::Unsupported(what.into())
}

#[cfg(test)]
thread_local! {
    /// Tests lower the grid cap to run the grid-stride loops on small shapes.
    pub(crate) static GRID_CAP: std::cell::Cell<u32> = const { std::cell::Cell::new(MAX_GRID) };
}

fn grid_cap() -> u64 {
    #[cfg(test)]
    return u64::from(GRID_CAP.with(|c| c.get()));
    #[cfg(not(test))]
    u64::from(MAX_GRID)
}

/// Blocks of an elementwise loss kernel: one per tile of `BLOCK * 4` packs, at least one (block
/// 0 also takes the tail), at most `MAX_GRID`.
pub(crate) fn elementwise_grid(numel: usize, input: Dtype) -> u32 {
    let pack = (16 / input.bytes()) as u64;
    let tile = u64::from(BLOCK) * PACKS_PER_THREAD;
    let tiles = (numel as u64 / pack).div_ceil(tile);
    tiles.clamp(1, grid_cap()) as u32
}

/// Blocks of the staged walk of v6 (`packs_per_step` 1) and v7 (2): one per stage of `BLOCK`
/// steps, at least one, at most [`V6_GRID`].
pub(crate) fn staged_grid(numel: usize, input: Dtype, packs_per_step: u64) -> u32 {
    let step = (16 / input.bytes()) as u64 * packs_per_step;
    let stages = (numel as u64 / step).div_ceil(u64::from(BLOCK));
    stages.clamp(1, grid_cap().min(u64::from(V6_GRID))) as u32
}

/// Blocks of the softmax kernel: one per tile of 32 rows, at least one, at most `MAX_GRID`.
pub(crate) fn softmax_grid(rows: usize) -> u32 {
    (rows as u64).div_ceil(SOFTMAX_TILE_ROWS).clamp(1, grid_cap()) as u32
}

/// The factor on the loss sum when it does not depend on the labels.
fn uniform_scale(normalization: Normalization, numel: usize) -> Result<Option<f64>> {
    Ok(match normalization {
        Normalization::Sum => Some(1.0),
        Normalization::Mean => Some(if numel == 0 { 0.0 } else { 1.0 / numel as f64 }),
        Normalization::Normalizer(n) => Some(focal_core::Reduction::Normalizer(n).scale(numel)?),
        Normalization::ForegroundPerImage | Normalization::ForegroundPerBatch => None,
    })
}

/// Validates `req` and lists the steps that compute it into `bufs` and `ws`.
pub(crate) fn plan(req: &Request<'_>, bufs: &Buffers, ws: &WorkspacePtrs) -> Result<Vec<Step>> {
    let Dims { images, anchors, classes } = req.dims;
    let numel = req.dims.numel();
    if numel > MAX_NUMEL {
        return Err(CudaError::TooLarge { numel, limit: MAX_NUMEL });
    }
    if req.grad != req.input && req.grad != Dtype::F32 {
        return Err(unsupported(format!(
            "a {} gradient for {} logits: the gradient is written in the input type or f32",
            req.grad.name(),
            req.input.name()
        )));
    }
    if !req.upstream.is_finite() {
        return Err(focal_core::FocalError::InvalidParameter {
            name: "upstream gradient",
            value: req.upstream,
            expected: "a finite value",
        }
        .into());
    }
    let sparse = req.target == TargetKind::Sparse;
    let mut args = LossArgs {
        logits: bufs.logits,
        labels: bufs.labels,
        targets: bufs.targets,
        weights: bufs.weights,
        grad: bufs.grad,
        elementwise: bufs.elementwise,
        partials: ws.partials,
        first_bad_row: ws.first_bad_row,
        numel: numel as u64,
        rows_per_image: anchors.max(1) as u64,
        classes_magic: div_magic(classes as u64),
        rows_per_image_magic: div_magic(anchors as u64),
        classes: classes as u32,
        weight_mode: match req.target {
            TargetKind::Sparse | TargetKind::Dense(Weights::None) => WEIGHT_NONE,
            TargetKind::Dense(Weights::PerAnchor) => WEIGHT_PER_ROW,
            TargetKind::Dense(Weights::PerElement) => WEIGHT_PER_ELEMENT,
        },
        upstream: req.upstream as f32,
        alpha_pos: 1.0,
        alpha_neg: 1.0,
        ..LossArgs::default()
    };
    let mut steps = Vec::new();
    let mut set_alpha = |params: &FocalParams, args: &mut LossArgs| -> Result<()> {
        args.gamma = params.gamma() as f32;
        match params.alpha() {
            Alpha::None => {}
            Alpha::Scalar(a) => {
                args.alpha_pos = *a as f32;
                args.alpha_neg = (1.0 - a) as f32;
            }
            Alpha::PerClass(v) => {
                if v.len() != classes {
                    return Err(focal_core::FocalError::ShapeMismatch {
                        what: "per-class alpha",
                        expected: vec![classes],
                        got: vec![v.len()],
                    }
                    .into());
                }
                args.alpha_per_class = ws.alpha;
                steps.push(Step::Upload { ptr: ws.alpha, values: v.iter().map(|&a| a as f32).collect() });
            }
        }
        Ok(())
    };
    // Packs per thread per step of the staged walk (v6: 1, v7: 2), for the kernels that walk it.
    let mut staged_packs: Option<u64> = None;
    let loss_name = match (req.objective, req.target) {
        (Objective::SigmoidFocal(p), TargetKind::Sparse) => {
            set_alpha(p, &mut args)?;
            let (name, packs) = match req.variant {
                Variant::V1 => ("sigmoid_sparse", None),
                // Entry points specialised for RetinaNet's gamma = 2 with a scalar alpha (or none).
                Variant::V4 if retina_g2(p) => ("sigmoid_sparse_v4_g2", None),
                Variant::V6 if retina_g2(p) => ("sigmoid_sparse_v6_g2", Some(1)),
                Variant::V7 if retina_g2(p) && req.input == Dtype::F32 => ("sigmoid_sparse_v7_g2", Some(2)),
                Variant::V7 if retina_g2(p) => ("sigmoid_sparse_v6_g2", Some(1)),
                // v6 and v7 have gamma-2 entry points only.
                Variant::V4 | Variant::V6 | Variant::V7 => ("sigmoid_sparse_v4", None),
            };
            staged_packs = packs;
            name
        }
        (Objective::SigmoidFocal(p), TargetKind::Dense(_)) => {
            set_alpha(p, &mut args)?;
            "sigmoid_dense"
        }
        (Objective::SoftmaxFocal(p), TargetKind::Sparse) => {
            set_alpha(p, &mut args)?;
            args.alpha_neg = 1.0;
            "softmax"
        }
        (Objective::Varifocal(p), TargetKind::Dense(_)) => {
            args.gamma = p.gamma() as f32;
            args.alpha_neg = p.alpha() as f32;
            args.flags = if p.iou_weighted() { FLAG_IOU_WEIGHTED } else { 0 };
            "varifocal"
        }
        (Objective::QualityFocal { beta }, TargetKind::Dense(_)) => {
            focal_core::params::check_beta(*beta)?;
            args.gamma = *beta as f32;
            "quality_focal"
        }
        (Objective::SoftmaxFocal(_), TargetKind::Dense(_)) => {
            return Err(unsupported("softmax focal loss takes sparse labels, not dense targets"));
        }
        (_, TargetKind::Sparse) => {
            return Err(unsupported("varifocal and quality focal losses take dense soft targets, not sparse labels"));
        }
    };
    let softmax = loss_name == "softmax";

    // The normaliser: a constant, or counted from the labels on the device.
    let normalization = match (req.normalization, softmax) {
        (Normalization::Mean, true) => Normalization::ForegroundPerBatch,
        (n, _) => n,
    };
    match uniform_scale(normalization, numel)? {
        Some(s) => args.uniform_scale = s as f32,
        None => {
            if images > 65_535 {
                return Err(unsupported(format!(
                    "{images} images: foreground counts run one grid row per image (at most 65535)"
                )));
            }
            if !sparse {
                return Err(unsupported(
                    "foreground normalisers are counted from sparse labels; with dense targets pass Normalization::Normalizer",
                ));
            }
            args.scale = ws.scale;
            let reduce = ReduceArgs {
                labels: bufs.labels,
                counts: ws.counts,
                scale: ws.scale,
                rows_per_image: anchors as u64,
                images: images as u32,
                classes: classes as u32,
                mode: if normalization == Normalization::ForegroundPerImage { MODE_PER_IMAGE } else { MODE_PER_BATCH },
                ..ReduceArgs::default()
            };
            steps.push(Step::Fill { ptr: ws.counts, len: images, value: 0 });
            if anchors > 0 && images > 0 {
                let per_block = u64::from(BLOCK) * COUNT_ROWS_PER_THREAD;
                steps.push(Step::Launch {
                    kernel: "focal_count_foreground".into(),
                    grid: ((anchors as u64).div_ceil(per_block) as u32, images as u32),
                    args: KernelArgs::Reduce(reduce),
                });
            }
            steps.push(Step::Launch {
                kernel: "focal_normalizers".into(),
                grid: (1, 1),
                args: KernelArgs::Reduce(reduce),
            });
        }
    }

    steps.push(Step::Fill { ptr: ws.first_bad_row, len: 1, value: u32::MAX });
    let grid = if numel == 0 {
        0
    } else if softmax {
        softmax_grid(req.dims.rows())
    } else if let Some(packs) = staged_packs {
        staged_grid(numel, req.input, packs)
    } else {
        elementwise_grid(numel, req.input)
    };
    // Every loss kernel walks its tiles with a grid stride, so any grid computes the same
    // elements; the loss sum's order (and so its last bits) follows the grid.
    let grid = match req.max_blocks {
        Some(limit) => grid.min(limit.max(1)),
        None => grid,
    };
    if grid > 0 {
        steps.push(Step::Launch {
            kernel: format!("focal_{loss_name}_{}_{}", req.input.name(), req.grad.name()),
            grid: (grid, 1),
            args: KernelArgs::Loss(args),
        });
    }
    steps.push(Step::Launch {
        kernel: "focal_reduce_partials".into(),
        grid: (1, 1),
        args: KernelArgs::Reduce(ReduceArgs {
            partials: ws.partials,
            loss: ws.loss,
            loss_f32: ws.loss_f32,
            num_partials: grid,
            ..ReduceArgs::default()
        }),
    });
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(objective: &Objective, target: TargetKind) -> Request<'_> {
        Request {
            objective,
            dims: Dims::new(2, 10, 3),
            input: Dtype::F32,
            grad: Dtype::F32,
            target,
            normalization: Normalization::Sum,
            upstream: 1.0,
            variant: Variant::V1,
            max_blocks: None,
        }
    }

    #[test]
    fn softmax_with_dense_targets_is_an_error() {
        let o = Objective::SoftmaxFocal(FocalParams::retinanet());
        let r = plan(&request(&o, TargetKind::Dense(Weights::None)), &Buffers::default(), &WorkspacePtrs::default());
        assert!(matches!(r, Err(CudaError::Unsupported(_))), "{r:?}");
    }

    #[test]
    fn varifocal_with_sparse_labels_is_an_error() {
        let o = Objective::Varifocal(VarifocalParams::mmdet());
        let r = plan(&request(&o, TargetKind::Sparse), &Buffers::default(), &WorkspacePtrs::default());
        assert!(matches!(r, Err(CudaError::Unsupported(_))), "{r:?}");
    }

    #[test]
    fn bf16_gradient_for_f16_logits_is_an_error() {
        let o = Objective::SigmoidFocal(FocalParams::retinanet());
        let mut req = request(&o, TargetKind::Sparse);
        req.input = Dtype::F16;
        req.grad = Dtype::Bf16;
        let r = plan(&req, &Buffers::default(), &WorkspacePtrs::default());
        assert!(matches!(r, Err(CudaError::Unsupported(_))), "{r:?}");
    }

    #[test]
    fn bad_normalizer_and_upstream_are_errors() {
        let o = Objective::SigmoidFocal(FocalParams::retinanet());
        let mut req = request(&o, TargetKind::Sparse);
        req.normalization = Normalization::Normalizer(0.0);
        let r = plan(&req, &Buffers::default(), &WorkspacePtrs::default());
        assert!(matches!(r, Err(CudaError::Core(_))), "{r:?}");
        req.normalization = Normalization::Sum;
        req.upstream = f64::NAN;
        let r = plan(&req, &Buffers::default(), &WorkspacePtrs::default());
        assert!(matches!(r, Err(CudaError::Core(_))), "{r:?}");
    }

    /// The loss kernel and its grid, and the grid the final sum reads its partials from.
    fn loss_launch(req: &Request<'_>) -> (String, u32, u32) {
        let steps = plan(req, &Buffers::default(), &WorkspacePtrs::default()).expect("valid request");
        let mut loss = None;
        let mut partials = None;
        for step in steps {
            if let Step::Launch { kernel, grid, args } = step {
                match args {
                    KernelArgs::Loss(_) => loss = Some((kernel, grid.0)),
                    KernelArgs::Reduce(r) if kernel == "focal_reduce_partials" => partials = Some(r.num_partials),
                    KernelArgs::Reduce(_) => {}
                }
            }
        }
        let (kernel, grid) = loss.expect("a loss launch");
        (kernel, grid, partials.expect("a final sum"))
    }

    #[test]
    fn v6_is_the_default_for_retinanet_and_caps_its_grid() {
        let retina = Objective::SigmoidFocal(FocalParams::retinanet());
        let mut req = request(&retina, TargetKind::Sparse);
        req.variant = Variant::default();
        req.dims = Dims::new(8, 120_087, 80);
        assert_eq!(loss_launch(&req), ("focal_sigmoid_sparse_v6_g2_f32_f32".into(), V6_GRID, V6_GRID));
        // v7 has its own f32 entry point and runs v6's for half inputs.
        let v7 = Request { variant: Variant::V7, ..req.clone() };
        assert_eq!(loss_launch(&v7).0, "focal_sigmoid_sparse_v7_g2_f32_f32");
        let v7 = Request { input: Dtype::Bf16, grad: Dtype::Bf16, ..v7 };
        assert_eq!(loss_launch(&v7).0, "focal_sigmoid_sparse_v6_g2_bf16_bf16");
        // Another gamma runs v4's general entry point on its own grid.
        let general = Objective::SigmoidFocal(FocalParams::new(Some(0.25), 1.5).unwrap());
        let req = Request { objective: &general, ..req.clone() };
        assert_eq!(loss_launch(&req), ("focal_sigmoid_sparse_v4_f32_f32".into(), 18_764, 18_764));
    }

    #[test]
    fn max_blocks_caps_every_loss_grid_and_the_final_sum_follows() {
        let retina = Objective::SigmoidFocal(FocalParams::retinanet());
        let softmax = Objective::SoftmaxFocal(FocalParams::retinanet());
        for (objective, variant) in
            [(&retina, Variant::V6), (&retina, Variant::V7), (&retina, Variant::V1), (&softmax, Variant::V1)]
        {
            let mut req = request(objective, TargetKind::Sparse);
            req.variant = variant;
            req.dims = Dims::new(2, 100_000, 80);
            let (_, own, _) = loss_launch(&req);
            assert!(own > 37, "{own}");
            req.max_blocks = Some(37);
            let (_, grid, partials) = loss_launch(&req);
            assert_eq!((grid, partials), (37, 37));
            // A limit above the variant's own grid changes nothing; 0 means one block.
            req.max_blocks = Some(own + 1);
            assert_eq!(loss_launch(&req).1, own);
            req.max_blocks = Some(0);
            assert_eq!(loss_launch(&req).1, 1);
        }
    }

    #[test]
    fn per_class_alpha_of_wrong_length_is_an_error() {
        let o = Objective::SigmoidFocal(FocalParams::per_class(vec![0.25; 2], 2.0).unwrap());
        let r = plan(&request(&o, TargetKind::Sparse), &Buffers::default(), &WorkspacePtrs::default());
        assert!(matches!(r, Err(CudaError::Core(_))), "{r:?}");
    }

    #[test]
    fn grid_depends_on_shape_only_and_is_capped() {
        assert_eq!(elementwise_grid(1, Dtype::F32), 1);
        assert_eq!(elementwise_grid(4096, Dtype::F32), 1);
        assert_eq!(elementwise_grid(4097 * 4, Dtype::F32), 5);
        assert_eq!(elementwise_grid(8 * 120_087 * 80, Dtype::F32), 18_764);
        assert_eq!(elementwise_grid(MAX_NUMEL, Dtype::F16), MAX_GRID);
        assert_eq!(softmax_grid(33), 2);
        assert_eq!(staged_grid(1, Dtype::F32, 1), 1);
        assert_eq!(staged_grid(1024 * 4 + 4, Dtype::F32, 1), 5);
        // 512 steps of 8 and a tail of 4.
        assert_eq!(staged_grid(1024 * 4 + 4, Dtype::F32, 2), 2);
        assert_eq!(staged_grid(1024 * 4 + 8, Dtype::F32, 2), 3);
        assert_eq!(staged_grid(8 * 120_087 * 80, Dtype::Bf16, 1), V6_GRID);
        assert_eq!(staged_grid(257 * 256 * 8, Dtype::Bf16, 1), 257);
    }
}
