//! RetinaNet's training loss: targets from `anchors`, the sigmoid focal loss from
//! `focal-core`, and a box loss, with their gradients with respect to the head outputs.

use anchors::{Anchors, AssignedTargets, BoxCoder, BoxXyxy, GroundTruth, TargetAssigner};
use focal_core::{FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, Target, TensorView, TensorViewMut};

use crate::backend::FocalBackend;
use crate::error::{Result, RetinaError, config_error};

/// The box regression loss on foreground anchors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BoxLoss {
    /// `|pred - target|` on the encoded offsets (torchvision's default).
    L1,
    /// Smooth L1 with transition `beta` on the encoded offsets (torchvision: beta 1;
    /// detectron2's RetinaNet: 0.1).
    SmoothL1 {
        /// Where the loss turns from quadratic to linear.
        beta: f64,
    },
    /// `1 - GIoU` of the decoded box with its ground truth (torchvision's `giou`, eps 1e-7).
    Giou,
}

/// What the summed losses are divided by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Normalizer {
    /// torchvision: each image's losses divided by max(1, its foreground anchors), then the
    /// mean over images.
    PerImage,
    /// detectron2: the batch's summed losses divided by an exponential moving average of
    /// max(1, the batch's foreground anchors) (`momentum` 0.9, starting at 100).
    Ema {
        /// Weight of the old value.
        momentum: f64,
    },
}

/// The loss configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LossConfig {
    /// Focal loss alpha and gamma (RetinaNet: 0.25, 2).
    pub focal: FocalParams,
    /// The box loss.
    pub box_loss: BoxLoss,
    /// The normaliser.
    pub normalizer: Normalizer,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { focal: FocalParams::retinanet(), box_loss: BoxLoss::L1, normalizer: Normalizer::PerImage }
    }
}

/// The two parts of the loss for one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossValues {
    /// Focal loss.
    pub classification: f64,
    /// Box loss.
    pub box_regression: f64,
    /// Foreground anchors in the batch.
    pub num_foreground: usize,
}

impl LossValues {
    /// The objective, `classification + box_regression`.
    pub fn total(&self) -> f64 {
        self.classification + self.box_regression
    }
}

/// The loss with its target assigner and (for [`Normalizer::Ema`]) its running normaliser.
#[derive(Clone, Debug)]
pub struct RetinaLoss {
    config: LossConfig,
    assigner: TargetAssigner,
    ema: f64,
    targets: AssignedTargets,
    backend: FocalBackend,
}

impl RetinaLoss {
    /// torchvision's matching (0.5 / 0.4, low-quality matches) and box coder (1, 1, 1, 1), with
    /// the focal loss on [`FocalBackend::auto`] (the GPU when built with `cuda` and one is
    /// present, the CPU otherwise).
    ///
    /// # Errors
    /// [`RetinaError::Config`] for a smooth-L1 beta or EMA momentum out of range; with `cuda`,
    /// a GPU that is present but fails to start.
    pub fn new(config: LossConfig) -> Result<Self> {
        Self::with_backend(config, FocalBackend::auto()?)
    }

    /// As [`RetinaLoss::new`], with the focal loss on `backend`.
    ///
    /// # Errors
    /// [`RetinaError::Config`] for a smooth-L1 beta or EMA momentum out of range.
    pub fn with_backend(config: LossConfig, backend: FocalBackend) -> Result<Self> {
        if let BoxLoss::SmoothL1 { beta } = config.box_loss
            && !(beta.is_finite() && beta >= 0.0)
        {
            return Err(config_error(format!("smooth L1 beta {beta}: expected a finite value >= 0")));
        }
        if let Normalizer::Ema { momentum } = config.normalizer
            && !(0.0..1.0).contains(&momentum)
        {
            return Err(config_error(format!("EMA momentum {momentum}: expected [0, 1)")));
        }
        Ok(RetinaLoss {
            config,
            assigner: TargetAssigner::retinanet(),
            ema: 100.0,
            targets: AssignedTargets::default(),
            backend,
        })
    }

    /// Where the focal loss runs.
    pub fn backend(&self) -> &FocalBackend {
        &self.backend
    }

    /// The configuration.
    pub fn config(&self) -> &LossConfig {
        &self.config
    }

    /// The targets of the last [`RetinaLoss::compute`].
    pub fn targets(&self) -> &AssignedTargets {
        &self.targets
    }

    /// The loss of a batch and its gradients: `logits` `[B, A, C]`, `regression` `[B, A]`,
    /// the shared `anchors`, one [`GroundTruth`] per image. Writes `d(loss)/d(logits)` and
    /// `d(loss)/d(regression)` (every element).
    ///
    /// # Errors
    /// [`RetinaError::Shape`] when the buffers disagree; target errors (degenerate boxes,
    /// labels out of range) from `anchors`; loss errors from `focal-core`.
    #[allow(clippy::too_many_arguments)]
    pub fn compute(
        &mut self,
        logits: &[f32],
        regression: &[[f32; 4]],
        anchors: &Anchors,
        ground_truth: &[GroundTruth<'_>],
        num_classes: usize,
        grad_logits: &mut [f32],
        grad_regression: &mut [[f32; 4]],
    ) -> Result<LossValues> {
        let (b, a, c) = (ground_truth.len(), anchors.len(), num_classes);
        if b == 0 || c == 0 || logits.len() != b * a * c || regression.len() != b * a {
            return Err(RetinaError::Shape {
                what: "head outputs",
                expected: format!("{b} images x {a} anchors x {c} classes (and x 4 boxes), B, C > 0"),
                got: format!("{} logits, {} boxes", logits.len(), regression.len()),
            });
        }
        if grad_logits.len() != logits.len() || grad_regression.len() != regression.len() {
            return Err(RetinaError::Shape {
                what: "gradient buffers",
                expected: format!("{} and {}", logits.len(), regression.len()),
                got: format!("{} and {}", grad_logits.len(), grad_regression.len()),
            });
        }
        let assigner = TargetAssigner { num_classes: Some(c), ..self.assigner };
        assigner.assign_into(anchors, ground_truth, &mut self.targets)?;
        let fg = self.targets.num_foreground();
        let total_fg: usize = fg.iter().sum();
        let norms: Vec<f64> = match self.config.normalizer {
            Normalizer::PerImage => fg.iter().map(|&n| n.max(1) as f64 * b as f64).collect(),
            Normalizer::Ema { momentum } => {
                self.ema = momentum * self.ema + (1.0 - momentum) * total_fg.max(1) as f64;
                vec![self.ema; b]
            }
        };
        let classification = self.classification(logits, &norms, a, c, grad_logits)?;
        let mut values = LossValues { classification, num_foreground: total_fg, ..LossValues::default() };
        let coder = assigner.coder;
        for (i, gt) in ground_truth.iter().enumerate() {
            let rows = i * a..(i + 1) * a;
            let labels = &self.targets.labels()[rows.clone()];
            let scale = 1.0 / norms[i];
            let matched = &self.targets.matched_gt()[rows.clone()];
            let encoded = &self.targets.regression()[rows.clone()];
            let mut sum = 0.0f64;
            for (j, grad) in grad_regression[rows.clone()].iter_mut().enumerate() {
                *grad = [0.0; 4];
                if labels[j] < 0 {
                    continue;
                }
                let pred = &regression[i * a + j];
                let (loss, g) = match self.config.box_loss {
                    BoxLoss::L1 => smooth_l1(pred, &encoded[j], 0.0),
                    BoxLoss::SmoothL1 { beta } => smooth_l1(pred, &encoded[j], beta),
                    BoxLoss::Giou => {
                        let gt_box = usize::try_from(matched[j])
                            .ok()
                            .and_then(|k| gt.boxes.get(k))
                            .ok_or_else(|| RetinaError::Config(format!("foreground anchor {j} has no matched box")))?;
                        giou_loss_of_code(&coder, pred, &anchors.boxes()[j], gt_box)
                    }
                };
                sum += loss;
                *grad = g.map(|v| (v * scale) as f32);
            }
            values.box_regression += sum * scale;
        }
        Ok(values)
    }

    /// The focal loss of the batch on the assigned labels, each image's sum divided by
    /// `norms[i]`, summed; writes its gradient into `grad_logits`.
    fn classification(
        &self,
        logits: &[f32],
        norms: &[f64],
        a: usize,
        c: usize,
        grad_logits: &mut [f32],
    ) -> Result<f64> {
        let labels = self.targets.labels();
        match &self.backend {
            FocalBackend::Cpu => {
                let mut sum = 0.0;
                for (i, &norm) in norms.iter().enumerate() {
                    let focal = SigmoidFocalLoss::new(self.config.focal.clone(), Reduction::Normalizer(norm));
                    sum += focal.forward_backward(
                        TensorView::new(&logits[i * a * c..(i + 1) * a * c], &[a, c])?,
                        Target::labels(TensorView::new(&labels[i * a..(i + 1) * a], &[a])?),
                        1.0,
                        TensorViewMut::new(&mut grad_logits[i * a * c..(i + 1) * a * c], &[a, c])?,
                    )?;
                }
                Ok(sum)
            }
            #[cfg(feature = "cuda")]
            FocalBackend::Cuda(gpu) => {
                use focal_cuda::{Call, Dims, HostTarget, Normalization, Objective};
                // The same normalisers as the CPU branch: per image, max(1, foreground anchors
                // of that image) (counted on the GPU from the same labels: labels >= 0), then
                // the mean over images, which is `norms[i] = max(1, fg_i) * B`; or one EMA
                // value for every image, where the sum of per-image quotients is the quotient
                // of the batch sum.
                let normalization = match self.config.normalizer {
                    Normalizer::PerImage => Normalization::ForegroundPerImage,
                    Normalizer::Ema { .. } => Normalization::Normalizer(self.ema),
                };
                let call = Call::new(
                    Objective::SigmoidFocal(self.config.focal.clone()),
                    Dims::new(norms.len(), a, c),
                    normalization,
                );
                let out = gpu.compute_host::<f32, f32>(&call, logits, HostTarget::Sparse(labels))?;
                grad_logits.copy_from_slice(&out.grad);
                Ok(out.loss)
            }
        }
    }
}

/// Smooth L1 (L1 when `beta == 0`) summed over the four offsets, and its gradient
/// (`sign(0) = 0`, as torch's).
pub fn smooth_l1(pred: &[f32; 4], target: &[f32; 4], beta: f64) -> (f64, [f64; 4]) {
    let mut loss = 0.0;
    let mut grad = [0.0; 4];
    for k in 0..4 {
        let d = pred[k] as f64 - target[k] as f64;
        if d.abs() < beta {
            loss += 0.5 * d * d / beta;
            grad[k] = d / beta;
        } else {
            loss += d.abs() - 0.5 * beta;
            grad[k] = if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            };
        }
    }
    (loss, grad)
}

/// `1 - GIoU(a, b)` as torchvision's `generalized_box_iou_loss` (eps 1e-7), and its gradient
/// with respect to `a`'s corners (one-sided at ties: `max(a, b)` takes `a`'s branch).
pub fn giou_loss(a: &[f64; 4], b: &BoxXyxy) -> (f64, [f64; 4]) {
    const EPS: f64 = 1e-7;
    let bf = b.map(f64::from);
    let [x1, y1, x2, y2] = *a;
    let [gx1, gy1, gx2, gy2] = bf;
    let (ix1, iy1, ix2, iy2) = (x1.max(gx1), y1.max(gy1), x2.min(gx2), y2.min(gy2));
    let overlap = ix2 > ix1 && iy2 > iy1;
    let (iw, ih) = (ix2 - ix1, iy2 - iy1);
    let inter = if overlap { iw * ih } else { 0.0 };
    let d_inter = if overlap {
        [
            if x1 >= gx1 { -ih } else { 0.0 },
            if y1 >= gy1 { -iw } else { 0.0 },
            if x2 <= gx2 { ih } else { 0.0 },
            if y2 <= gy2 { iw } else { 0.0 },
        ]
    } else {
        [0.0; 4]
    };
    let (w, h) = (x2 - x1, y2 - y1);
    let d_area = [-h, -w, h, w];
    let union = w * h + (gx2 - gx1) * (gy2 - gy1) - inter;
    let (cx1, cy1, cx2, cy2) = (x1.min(gx1), y1.min(gy1), x2.max(gx2), y2.max(gy2));
    let (cw, ch) = (cx2 - cx1, cy2 - cy1);
    let enclosing = cw * ch;
    let d_enclosing = [
        if x1 <= gx1 { -ch } else { 0.0 },
        if y1 <= gy1 { -cw } else { 0.0 },
        if x2 >= gx2 { ch } else { 0.0 },
        if y2 >= gy2 { cw } else { 0.0 },
    ];
    let iou = inter / (union + EPS);
    let penalty = (enclosing - union) / (enclosing + EPS);
    let loss = 1.0 - iou + penalty;
    let mut grad = [0.0; 4];
    for k in 0..4 {
        let d_union = d_area[k] - d_inter[k];
        let d_iou = d_inter[k] / (union + EPS) - inter * d_union / ((union + EPS) * (union + EPS));
        let d_penalty = (d_enclosing[k] - d_union) / (enclosing + EPS)
            - (enclosing - union) * d_enclosing[k] / ((enclosing + EPS) * (enclosing + EPS));
        grad[k] = -d_iou + d_penalty;
    }
    (loss, grad)
}

/// GIoU loss of the box decoded from `code` against `anchor`, and its gradient with respect
/// to the code (through the decoding, zero for dw/dh past the clamp).
pub fn giou_loss_of_code(coder: &BoxCoder, code: &[f32; 4], anchor: &BoxXyxy, gt: &BoxXyxy) -> (f64, [f64; 4]) {
    let [wx, wy, ww, wh] = coder.weights().map(f64::from);
    let clip = coder.clip() as f64;
    let [ax1, ay1, ax2, ay2] = anchor.map(f64::from);
    let (aw, ah) = (ax2 - ax1, ay2 - ay1);
    let (acx, acy) = (ax1 + 0.5 * aw, ay1 + 0.5 * ah);
    let [dx, dy, dw, dh] = code.map(f64::from);
    let (dw_c, dh_c) = ((dw / ww).min(clip), (dh / wh).min(clip));
    let (cx, cy) = (dx / wx * aw + acx, dy / wy * ah + acy);
    let (w, h) = (dw_c.exp() * aw, dh_c.exp() * ah);
    let decoded = [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h];
    let (loss, g) = giou_loss(&decoded, gt);
    let dw_live = if dw / ww < clip { 1.0 / ww } else { 0.0 };
    let dh_live = if dh / wh < clip { 1.0 / wh } else { 0.0 };
    let grad = [
        (g[0] + g[2]) * aw / wx,
        (g[1] + g[3]) * ah / wy,
        (g[2] - g[0]) * 0.5 * w * dw_live,
        (g[3] - g[1]) * 0.5 * h * dh_live,
    ];
    (loss, grad)
}
