//! The rectifier.

use super::{GradOut, zip_elementwise};
use crate::error::Result;
use crate::tensor::{Tensor4, check_same};

/// `max(x, 0)` that keeps NaN (as `torch.relu` does; `f32::max` would turn NaN into 0).
#[inline]
pub(crate) fn relu(x: f32) -> f32 {
    if x > 0.0 || x.is_nan() { x } else { 0.0 }
}

/// ReLU: `y = max(x, 0)`. Backward passes `dy` where the output is positive (PyTorch's
/// `threshold_backward` on the output).
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

impl Relu {
    /// `y = relu(x)`.
    pub fn forward(&self, x: &Tensor4, y: &mut Tensor4) {
        y.reshape_for(x.dims());
        zip_elementwise(x.as_slice(), x.as_slice(), y.as_mut_slice(), false, |a, _| relu(a));
    }

    /// `x = relu(x)`.
    pub fn forward_inplace(&self, x: &mut Tensor4) {
        super::for_each_plane_mut(x, |_, p| p.iter_mut().for_each(|v| *v = relu(*v)));
    }

    /// `dx = dy * (y > 0)`, `y` the forward output.
    ///
    /// # Errors
    /// [`NetError::Shape`](crate::NetError::Shape) when `y` and `dy` differ in shape.
    pub fn backward(&self, y: &Tensor4, dy: &Tensor4, mut dx: GradOut<'_>) -> Result<()> {
        check_same("relu output gradient", y, dy)?;
        if let Some((dx, acc)) = dx.prepare("relu input gradient", y.dims(), false)? {
            zip_elementwise(y.as_slice(), dy.as_slice(), dx.as_mut_slice(), acc, |y, g| if y > 0.0 { g } else { 0.0 });
        }
        Ok(())
    }
}
