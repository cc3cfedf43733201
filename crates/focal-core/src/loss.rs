//! The API every loss shares: forward, forward with elementwise output, backward, and the
//! fused forward+backward pass.

use crate::element::Element;
use crate::error::{FocalError, Result};
use crate::params::{Reduction, check_upstream};
use crate::simd::SimdLevel;
use crate::tensor::{TensorView, TensorViewMut};
use crate::validate;

/// Where a loss writes its results. Shapes are checked against the logits.
pub struct Outputs<'a, O, G> {
    /// Elementwise losses (weights applied, before reduction).
    pub elementwise: Option<TensorViewMut<'a, O>>,
    /// The gradient of the returned loss, times `upstream`.
    pub grad: Option<TensorViewMut<'a, G>>,
    /// The upstream gradient `d(objective)/d(loss)`, usually 1.
    pub upstream: f64,
}

/// A focal-type loss over `[A, C]` or `[B, A, C]` logits.
///
/// Implementors provide [`FocalLoss::compute`]; the other methods are conveniences over it.
/// Every method validates all its arguments before computing anything.
///
/// # Examples
/// ```
/// use focal_core::{FocalLoss, FocalParams, Reduction, SigmoidFocalLoss, Target, TensorView, TensorViewMut};
/// // Two anchors, three classes: anchor 0 is class 2, anchor 1 is background.
/// let logits = [-1.0f32, 0.5, 2.0, -3.0, -2.5, 0.1];
/// let labels = [2, -1];
/// let loss = SigmoidFocalLoss::new(FocalParams::retinanet(), Reduction::Normalizer(1.0));
/// let logits = TensorView::new(&logits, &[2, 3])?;
/// let target = Target::labels(TensorView::new(&labels, &[2])?);
/// let mut grad = vec![0.0f32; 6];
/// let value = loss.forward_backward(logits, target, 1.0, TensorViewMut::new(&mut grad, &[2, 3])?)?;
/// assert!(value > 0.0 && grad[2] < 0.0 && grad[1] > 0.0);
/// # Ok::<(), focal_core::FocalError>(())
/// ```
pub trait FocalLoss {
    /// What the loss compares the logits with.
    type Target<'t>: Copy;

    /// Computes the reduced loss and, as requested, the elementwise losses and the gradient.
    ///
    /// # Errors
    /// Any shape, label, target or parameter error, before any output is written.
    fn compute<T: Element, O: Element, G: Element>(
        &self,
        logits: TensorView<'_, T>,
        target: Self::Target<'_>,
        outputs: Outputs<'_, O, G>,
    ) -> Result<f64>;

    /// The reduced loss.
    ///
    /// # Errors
    /// As [`FocalLoss::compute`].
    fn forward<T: Element>(&self, logits: TensorView<'_, T>, target: Self::Target<'_>) -> Result<f64> {
        self.compute::<T, f32, f32>(logits, target, Outputs { elementwise: None, grad: None, upstream: 1.0 })
    }

    /// The reduced loss, and the elementwise losses written to `out`.
    ///
    /// # Errors
    /// As [`FocalLoss::compute`].
    fn forward_elementwise<T: Element, O: Element>(
        &self,
        logits: TensorView<'_, T>,
        target: Self::Target<'_>,
        out: TensorViewMut<'_, O>,
    ) -> Result<f64> {
        self.compute::<T, O, f32>(logits, target, Outputs { elementwise: Some(out), grad: None, upstream: 1.0 })
    }

    /// Writes `upstream * d(loss)/d(logits)` to `grad`.
    ///
    /// # Errors
    /// As [`FocalLoss::compute`].
    fn backward<T: Element, G: Element>(
        &self,
        logits: TensorView<'_, T>,
        target: Self::Target<'_>,
        upstream: f64,
        grad: TensorViewMut<'_, G>,
    ) -> Result<()> {
        self.compute::<T, f32, G>(logits, target, Outputs { elementwise: None, grad: Some(grad), upstream })?;
        Ok(())
    }

    /// One pass: returns the loss and writes `upstream * d(loss)/d(logits)` to `grad`.
    ///
    /// # Errors
    /// As [`FocalLoss::compute`].
    fn forward_backward<T: Element, G: Element>(
        &self,
        logits: TensorView<'_, T>,
        target: Self::Target<'_>,
        upstream: f64,
        grad: TensorViewMut<'_, G>,
    ) -> Result<f64> {
        self.compute::<T, f32, G>(logits, target, Outputs { elementwise: None, grad: Some(grad), upstream })
    }
}

/// Checks what every loss checks: the logits' rank, the output shapes, the reduction and the
/// upstream gradient. Returns `(rows, classes, gradient scale, loss scale)`.
pub(crate) fn common_checks<T: Element, O: Element, G: Element>(
    logits: &TensorView<'_, T>,
    outputs: &Outputs<'_, O, G>,
    reduction: Reduction,
    mean_count: usize,
) -> Result<(usize, usize, f64)> {
    let (rows, classes) = validate::rows_classes(logits.shape())?;
    if let Some(out) = &outputs.elementwise {
        validate::same_shape("elementwise loss output", logits.shape(), out.view().shape())?;
    }
    if let Some(grad) = &outputs.grad {
        validate::same_shape("gradient output", logits.shape(), grad.view().shape())?;
    }
    check_upstream(outputs.upstream)?;
    let scale = reduction.scale(mean_count)?;
    Ok((rows, classes, scale))
}

/// Checks that a SIMD level runs on this CPU.
pub(crate) fn check_level(level: SimdLevel) -> Result<SimdLevel> {
    if level.is_supported() {
        Ok(level)
    } else {
        Err(FocalError::Unsupported("this SIMD level is not supported by the CPU"))
    }
}

/// The raw output slices.
pub(crate) fn split_outputs<'o, O: Element, G: Element>(
    outputs: &'o mut Outputs<'_, O, G>,
) -> (Option<&'o mut [O]>, Option<&'o mut [G]>) {
    (outputs.elementwise.as_mut().map(|o| o.as_mut_slice()), outputs.grad.as_mut().map(|g| g.as_mut_slice()))
}

/// Whether `T` is `f64` (computed by the float64 path rather than narrowed to `f32`).
pub(crate) fn is_f64<T: Element>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f64>()
}

/// Copies a float64 reference result into the outputs, scaled.
pub(crate) fn write_f64_outputs<O: Element, G: Element>(
    out: crate::reference::ReferenceOutput,
    loss: Option<&mut [O]>,
    grad: Option<&mut [G]>,
) -> f64 {
    if let Some(l) = loss {
        for (d, s) in l.iter_mut().zip(&out.elementwise) {
            *d = O::from_f64(*s);
        }
    }
    if let Some(g) = grad {
        for (d, s) in g.iter_mut().zip(&out.grad) {
            *d = G::from_f64(*s);
        }
    }
    out.loss
}

/// Widens any element slice to `f64`.
pub(crate) fn to_f64<T: Element>(s: &[T]) -> Vec<f64> {
    s.iter().map(|v| v.to_f64()).collect()
}
