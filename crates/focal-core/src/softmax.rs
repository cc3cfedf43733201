//! Softmax focal loss: `-alpha_y (1 - p_y)^gamma log p_y` per anchor, the background being one
//! of the `C` classes.

use crate::element::Element;
use crate::engine;
use crate::error::{FocalError, Result};
use crate::kernel::SoftmaxFocal;
use crate::labels::IGNORE;
use crate::loss::{FocalLoss, Outputs, check_level, common_checks, is_f64, split_outputs, to_f64, write_f64_outputs};
use crate::params::{Alpha, FocalParams, Reduction};
use crate::reference;
use crate::simd::SimdLevel;
use crate::tensor::{Tensor, TensorView};
use crate::validate;

/// The softmax focal loss. Labels are `0..C` or -2 (ignore); -1 is an error since the
/// background is a class here. [`Reduction::Mean`] averages over the anchors that are not
/// ignored (PyTorch's `cross_entropy` with `ignore_index`). With [`Alpha::Scalar`] every class
/// is weighted by the same alpha; [`Alpha::PerClass`] weighs each row by its label's alpha.
#[derive(Clone, Debug)]
pub struct SoftmaxFocalLoss {
    params: FocalParams,
    reduction: Reduction,
    simd: SimdLevel,
}

impl SoftmaxFocalLoss {
    /// A loss with the best SIMD level of this CPU.
    pub fn new(params: FocalParams, reduction: Reduction) -> Self {
        SoftmaxFocalLoss { params, reduction, simd: SimdLevel::detect() }
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

impl FocalLoss for SoftmaxFocalLoss {
    type Target<'t> = TensorView<'t, i32>;

    fn compute<T: Element, O: Element, G: Element>(
        &self,
        logits: TensorView<'_, T>,
        labels: TensorView<'_, i32>,
        mut outputs: Outputs<'_, O, G>,
    ) -> Result<f64> {
        let labels_s = labels.as_slice();
        let counted = labels_s.iter().filter(|&&l| l >= 0).count();
        let reduction = match self.reduction {
            Reduction::Mean => Reduction::Normalizer(counted.max(1) as f64),
            other => other,
        };
        let (_, classes, scale) = common_checks(&logits, &outputs, reduction, logits.numel())?;
        self.params.check_classes(classes)?;
        validate::labels_shape(logits.shape(), labels.shape())?;
        if let Some(index) = labels_s.iter().position(|&l| l != IGNORE && (l < 0 || l as usize >= classes)) {
            return Err(FocalError::LabelOutOfRange { index, label: labels_s[index], num_classes: classes });
        }
        let grad_scale = scale * outputs.upstream;
        let upstream = outputs.upstream;
        let (loss_out, grad_out) = split_outputs(&mut outputs);
        if is_f64::<T>() {
            let x = to_f64(logits.as_slice());
            let out = reference::softmax_focal(&x, classes, labels_s, &self.params, self.reduction, upstream)?;
            return Ok(write_f64_outputs(out, loss_out, grad_out));
        }
        let alpha = match self.params.alpha() {
            Alpha::None => vec![1.0; classes],
            Alpha::Scalar(a) => vec![*a; classes],
            Alpha::PerClass(v) => v.clone(),
        };
        let kernel = SoftmaxFocal {
            labels: labels_s,
            classes,
            alpha,
            gamma: self.params.gamma(),
            grad_scale: grad_scale as f32,
        };
        Ok(engine::run(self.simd, &kernel, logits.as_slice(), classes, loss_out, grad_out) * scale)
    }
}
