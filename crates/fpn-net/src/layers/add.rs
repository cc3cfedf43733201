//! Elementwise addition (residual connections, FPN merges).

use super::{GradOut, add_assign, zip_elementwise};
use crate::error::Result;
use crate::tensor::{Tensor4, check_same};

/// `y = a + b`.
///
/// # Errors
/// [`NetError::Shape`](crate::NetError::Shape) when `a` and `b` differ in shape.
pub fn add(a: &Tensor4, b: &Tensor4, y: &mut Tensor4) -> Result<()> {
    check_same("add: b", a, b)?;
    y.reshape_for(a.dims());
    zip_elementwise(a.as_slice(), b.as_slice(), y.as_mut_slice(), false, |a, b| a + b);
    Ok(())
}

/// `y += b`.
///
/// # Errors
/// [`NetError::Shape`](crate::NetError::Shape) when `y` and `b` differ in shape.
pub fn add_inplace(y: &mut Tensor4, b: &Tensor4) -> Result<()> {
    check_same("add_inplace: b", y, b)?;
    add_assign(y.as_mut_slice(), b.as_slice());
    Ok(())
}

/// Backward of `y = a + b`: the gradient `dy` flows unchanged to both inputs.
///
/// # Errors
/// [`NetError::Shape`](crate::NetError::Shape) when an `Accumulate` target has another shape.
pub fn add_backward(dy: &Tensor4, mut da: GradOut<'_>, mut db: GradOut<'_>) -> Result<()> {
    for g in [da.reborrow(), db.reborrow()] {
        let mut g = g;
        if let Some((t, acc)) = g.prepare("add_backward: input gradient", dy.dims(), false)? {
            if acc {
                add_assign(t.as_mut_slice(), dy.as_slice());
            } else {
                t.as_mut_slice().copy_from_slice(dy.as_slice());
            }
        }
    }
    Ok(())
}
