//! Varifocal loss (Zhang et al. 2021) and quality focal loss (Li et al. 2020), both on dense
//! IoU-aware soft targets.

use crate::element::Element;
use crate::error::Result;
use crate::kernel::{DenseElement, Power, QualityFocal, Varifocal};
use crate::loss::{FocalLoss, Outputs, check_level, common_checks, is_f64, split_outputs, to_f64, write_f64_outputs};
use crate::params::{Reduction, VarifocalParams, check_beta};
use crate::reference::{self, ReferenceOutput};
use crate::sigmoid::{DenseTarget, check_dense, run_dense};
use crate::simd::SimdLevel;
use crate::tensor::{Tensor, TensorView};

/// Varifocal loss as mmdetection defines it: positives (target > 0) weighted by their target
/// IoU, negatives by `alpha p^gamma`; the focal weight is differentiated through.
#[derive(Clone, Debug)]
pub struct VarifocalLoss {
    params: VarifocalParams,
    reduction: Reduction,
    simd: SimdLevel,
}

impl VarifocalLoss {
    /// A loss with the best SIMD level of this CPU.
    pub fn new(params: VarifocalParams, reduction: Reduction) -> Self {
        VarifocalLoss { params, reduction, simd: SimdLevel::detect() }
    }

    /// The same loss computed with another SIMD level.
    ///
    /// # Errors
    /// [`crate::FocalError::Unsupported`] when this CPU lacks the level.
    pub fn with_simd(mut self, level: SimdLevel) -> Result<Self> {
        self.simd = check_level(level)?;
        Ok(self)
    }
}

impl FocalLoss for VarifocalLoss {
    type Target<'t> = DenseTarget<'t>;

    fn compute<T: Element, O: Element, G: Element>(
        &self,
        logits: TensorView<'_, T>,
        target: DenseTarget<'_>,
        outputs: Outputs<'_, O, G>,
    ) -> Result<f64> {
        let p = self.params;
        let element = Varifocal {
            alpha: p.alpha() as f32,
            gamma: p.gamma() as f32,
            power: Power::of(p.gamma()),
            iou_weighted: p.iou_weighted(),
        };
        compute_dense(self.simd, self.reduction, element, logits, target, outputs, |x, classes, t, w, upstream| {
            reference::varifocal(x, classes, t, w, &p, self.reduction, upstream)
        })
    }
}

/// Quality focal loss: `|y - p|^beta BCE(x, y)` with soft targets y (the IoU of the box for
/// the positive class, 0 elsewhere).
#[derive(Clone, Debug)]
pub struct QualityFocalLoss {
    beta: f64,
    reduction: Reduction,
    simd: SimdLevel,
}

impl QualityFocalLoss {
    /// A loss with exponent `beta` (the paper uses 2).
    ///
    /// # Errors
    /// [`crate::FocalError::InvalidParameter`] for beta < 0 or non-finite.
    pub fn new(beta: f64, reduction: Reduction) -> Result<Self> {
        check_beta(beta)?;
        Ok(QualityFocalLoss { beta, reduction, simd: SimdLevel::detect() })
    }

    /// The same loss computed with another SIMD level.
    ///
    /// # Errors
    /// [`crate::FocalError::Unsupported`] when this CPU lacks the level.
    pub fn with_simd(mut self, level: SimdLevel) -> Result<Self> {
        self.simd = check_level(level)?;
        Ok(self)
    }
}

impl FocalLoss for QualityFocalLoss {
    type Target<'t> = DenseTarget<'t>;

    fn compute<T: Element, O: Element, G: Element>(
        &self,
        logits: TensorView<'_, T>,
        target: DenseTarget<'_>,
        outputs: Outputs<'_, O, G>,
    ) -> Result<f64> {
        let element = QualityFocal { beta: self.beta as f32, power: Power::of(self.beta) };
        compute_dense(self.simd, self.reduction, element, logits, target, outputs, |x, classes, t, w, upstream| {
            reference::quality_focal(x, classes, t, w, self.beta, self.reduction, upstream)
        })
    }
}

/// Shared body of the dense-target losses: validation, then the float64 reference for `f64`
/// inputs or `element` on the fast path.
fn compute_dense<T: Element, O: Element, G: Element, E: DenseElement>(
    simd: SimdLevel,
    reduction: Reduction,
    element: E,
    logits: TensorView<'_, T>,
    target: DenseTarget<'_>,
    mut outputs: Outputs<'_, O, G>,
    f64_reference: impl FnOnce(&[f64], usize, &[f64], Option<&[f64]>, f64) -> Result<ReferenceOutput>,
) -> Result<f64> {
    let (_, classes, scale) = common_checks(&logits, &outputs, reduction, logits.numel())?;
    check_dense(logits.shape(), &target)?;
    let upstream = outputs.upstream;
    let (loss_out, grad_out) = split_outputs(&mut outputs);
    if is_f64::<T>() {
        let (x, t) = (to_f64(logits.as_slice()), to_f64(target.targets.as_slice()));
        let w = target.weights.map(|w| to_f64(w.as_slice()));
        let out = f64_reference(&x, classes, &t, w.as_deref(), upstream)?;
        return Ok(write_f64_outputs(out, loss_out, grad_out));
    }
    Ok(run_dense(simd, element, logits, target, (loss_out, grad_out), scale * upstream) * scale)
}
