//! Sigmoid focal loss (Lin et al. 2017), torchvision's `sigmoid_focal_loss`, with sparse labels
//! or dense soft targets.

use crate::element::Element;
use crate::engine;
use crate::error::Result;
use crate::kernel::{DenseElement, DenseKernel, HardTargets, SigmoidSoft, SigmoidSparse, WeightsRef};
use crate::labels::validate_labels;
use crate::loss::{FocalLoss, Outputs, check_level, common_checks, is_f64, split_outputs, to_f64, write_f64_outputs};
use crate::params::{FocalParams, Reduction};
use crate::reference::{self, ReferenceTarget};
use crate::simd::SimdLevel;
use crate::tensor::{Tensor, TensorView};
use crate::validate;

/// Dense targets in [0, 1], the shape of the logits, with optional weights per anchor
/// (`[A]`, `[B, A]`) or per element.
#[derive(Clone, Copy, Debug)]
pub struct DenseTarget<'a> {
    /// Targets, the shape of the logits.
    pub targets: TensorView<'a, f32>,
    /// Optional weights.
    pub weights: Option<TensorView<'a, f32>>,
}

/// What the sigmoid focal loss compares the logits with.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// One label per anchor (`[A]` or `[B, A]`): class, -1 background, -2 ignore. No one-hot
    /// array is built.
    Labels(TensorView<'a, i32>),
    /// Soft targets (and weights).
    Dense(DenseTarget<'a>),
}

impl<'a> Target<'a> {
    /// Sparse labels.
    pub fn labels(labels: TensorView<'a, i32>) -> Self {
        Target::Labels(labels)
    }
    /// Dense targets without weights.
    pub fn dense(targets: TensorView<'a, f32>) -> Self {
        Target::Dense(DenseTarget { targets, weights: None })
    }
    /// Dense targets with weights per anchor or per element.
    pub fn weighted(targets: TensorView<'a, f32>, weights: TensorView<'a, f32>) -> Self {
        Target::Dense(DenseTarget { targets, weights: Some(weights) })
    }
}

/// Checks dense targets and weights against the logits.
pub(crate) fn check_dense(logits: crate::Shape, dense: &DenseTarget<'_>) -> Result<()> {
    validate::same_shape("targets", logits, dense.targets.shape())?;
    validate::unit_targets(&dense.targets)?;
    if let Some(w) = &dense.weights {
        validate::weights(logits, w)?;
    }
    Ok(())
}

/// Weights as the kernels take them.
pub(crate) fn weights_ref<'a>(logits: crate::Shape, dense: &DenseTarget<'a>) -> WeightsRef<'a> {
    match dense.weights {
        None => WeightsRef::None,
        Some(w) if w.shape() == logits => WeightsRef::PerElement(w.as_slice()),
        Some(w) => WeightsRef::PerRow(w.as_slice()),
    }
}

/// The sigmoid focal loss: `alpha_t (1 - p_t)^gamma BCE(x, t)` per element.
///
/// RetinaNet uses alpha 0.25, gamma 2, sparse labels and [`Reduction::Normalizer`] with
/// max(1, number of foreground anchors) ([`crate::labels::retinanet_normalizer`]).
#[derive(Clone, Debug)]
pub struct SigmoidFocalLoss {
    params: FocalParams,
    reduction: Reduction,
    simd: SimdLevel,
}

impl SigmoidFocalLoss {
    /// A loss with the best SIMD level of this CPU.
    pub fn new(params: FocalParams, reduction: Reduction) -> Self {
        SigmoidFocalLoss { params, reduction, simd: SimdLevel::detect() }
    }

    /// The same loss computed with another SIMD level (for comparisons and tests).
    ///
    /// # Errors
    /// [`crate::FocalError::Unsupported`] when this CPU lacks the level.
    pub fn with_simd(mut self, level: SimdLevel) -> Result<Self> {
        self.simd = check_level(level)?;
        Ok(self)
    }

    /// The parameters.
    pub fn params(&self) -> &FocalParams {
        &self.params
    }
}

impl FocalLoss for SigmoidFocalLoss {
    type Target<'t> = Target<'t>;

    fn compute<T: Element, O: Element, G: Element>(
        &self,
        logits: TensorView<'_, T>,
        target: Target<'_>,
        mut outputs: Outputs<'_, O, G>,
    ) -> Result<f64> {
        let (_, classes, scale) = common_checks(&logits, &outputs, self.reduction, logits.numel())?;
        self.params.check_classes(classes)?;
        match &target {
            Target::Labels(labels) => {
                validate::labels_shape(logits.shape(), labels.shape())?;
                validate_labels(labels.as_slice(), classes)?;
            }
            Target::Dense(dense) => check_dense(logits.shape(), dense)?,
        }
        let grad_scale = scale * outputs.upstream;
        let upstream = outputs.upstream;
        let (loss_out, grad_out) = split_outputs(&mut outputs);
        if is_f64::<T>() {
            let x = to_f64(logits.as_slice());
            let dense_f64;
            let weights_f64;
            let reference_target = match &target {
                Target::Labels(l) => ReferenceTarget::Sparse(l.as_slice()),
                Target::Dense(d) => {
                    dense_f64 = to_f64(d.targets.as_slice());
                    weights_f64 = d.weights.map(|w| to_f64(w.as_slice()));
                    ReferenceTarget::Dense { targets: &dense_f64, weights: weights_f64.as_deref() }
                }
            };
            let out = reference::sigmoid_focal(&x, classes, reference_target, &self.params, self.reduction, upstream)?;
            return Ok(write_f64_outputs(out, loss_out, grad_out));
        }
        let gamma = self.params.gamma();
        let sum = match target {
            Target::Labels(labels) => {
                let kernel = SigmoidSparse {
                    labels: labels.as_slice(),
                    classes,
                    hard: HardTargets::new(self.params.alpha(), classes, gamma, grad_scale),
                    grad_scale: grad_scale as f32,
                };
                engine::run(self.simd, &kernel, logits.as_slice(), classes, loss_out, grad_out)
            }
            Target::Dense(dense) => {
                let element = SigmoidSoft::new(self.params.alpha(), classes, gamma, grad_scale);
                run_dense(self.simd, element, logits, dense, (loss_out, grad_out), grad_scale)
            }
        };
        Ok(sum * scale)
    }
}

/// The f32/half path of a dense-target loss, after validation: runs `element` over the logits.
pub(crate) fn run_dense<T: Element, O: Element, G: Element, E: DenseElement>(
    simd: SimdLevel,
    element: E,
    logits: TensorView<'_, T>,
    target: DenseTarget<'_>,
    outputs: (Option<&mut [O]>, Option<&mut [G]>),
    grad_scale: f64,
) -> f64 {
    let classes = logits.shape().last();
    let kernel = DenseKernel {
        element,
        classes,
        targets: target.targets.as_slice(),
        weights: weights_ref(logits.shape(), &target),
        grad_scale: grad_scale as f32,
    };
    engine::run(simd, &kernel, logits.as_slice(), classes, outputs.0, outputs.1)
}
