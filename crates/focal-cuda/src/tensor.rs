//! focal-core's tensor trait over cudarc device buffers: a view and a row-major shape.

use crate::error::{CudaError, Result};
use crate::plan::Dims;
use cudarc::driver::{CudaView, CudaViewMut};
use focal_core::{FocalError, Shape, Tensor, TensorMut};

fn check_len(shape: &Shape, len: usize) -> Result<()> {
    if shape.numel() != len {
        return Err(FocalError::StorageSize {
            what: "device tensor",
            shape: shape.dims().to_vec(),
            expected: shape.numel(),
            got: len,
        }
        .into());
    }
    Ok(())
}

/// A read-only device tensor: a cudarc view (for example of a candle `CudaStorage`'s slice)
/// and its shape.
#[derive(Debug)]
pub struct DeviceTensor<'a, T> {
    view: CudaView<'a, T>,
    shape: Shape,
}

impl<'a, T> DeviceTensor<'a, T> {
    /// `view` with shape `dims`.
    ///
    /// # Errors
    /// When the view does not hold `product(dims)` elements, or the rank exceeds focal-core's.
    pub fn new(view: CudaView<'a, T>, dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims)?;
        check_len(&shape, view.len())?;
        Ok(DeviceTensor { view, shape })
    }
}

impl<'a, T: Copy> Tensor for DeviceTensor<'a, T> {
    type Elem = T;
    type Storage = CudaView<'a, T>;
    fn shape(&self) -> Shape {
        self.shape
    }
    fn storage(&self) -> &CudaView<'a, T> {
        &self.view
    }
}

/// A writable device tensor (a gradient output).
#[derive(Debug)]
pub struct DeviceTensorMut<'a, T> {
    view: CudaViewMut<'a, T>,
    shape: Shape,
}

impl<'a, T> DeviceTensorMut<'a, T> {
    /// `view` with shape `dims`.
    ///
    /// # Errors
    /// When the view does not hold `product(dims)` elements, or the rank exceeds focal-core's.
    pub fn new(view: CudaViewMut<'a, T>, dims: &[usize]) -> Result<Self> {
        let shape = Shape::new(dims)?;
        check_len(&shape, view.len())?;
        Ok(DeviceTensorMut { view, shape })
    }
}

impl<'a, T: Copy> Tensor for DeviceTensorMut<'a, T> {
    type Elem = T;
    type Storage = CudaViewMut<'a, T>;
    fn shape(&self) -> Shape {
        self.shape
    }
    fn storage(&self) -> &CudaViewMut<'a, T> {
        &self.view
    }
}

impl<T: Copy> TensorMut for DeviceTensorMut<'_, T> {
    fn storage_mut(&mut self) -> &mut Self::Storage {
        &mut self.view
    }
}

impl Dims {
    /// The problem shape of logits `[A, C]` (one image) or `[B, A, C]`.
    ///
    /// # Errors
    /// Another rank.
    pub fn from_shape(shape: Shape) -> Result<Dims> {
        match *shape.dims() {
            [a, c] => Ok(Dims::new(1, a, c)),
            [b, a, c] => Ok(Dims::new(b, a, c)),
            _ => Err(CudaError::Core(FocalError::Rank {
                what: "logits",
                expected: "2 or 3",
                shape: shape.dims().to_vec(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_come_from_rank_2_or_3_shapes() {
        assert_eq!(Dims::from_shape(Shape::new(&[7, 3]).unwrap()).unwrap(), Dims::new(1, 7, 3));
        assert_eq!(Dims::from_shape(Shape::new(&[2, 7, 3]).unwrap()).unwrap(), Dims::new(2, 7, 3));
        assert!(matches!(Dims::from_shape(Shape::new(&[21]).unwrap()), Err(CudaError::Core(FocalError::Rank { .. }))));
    }
}
