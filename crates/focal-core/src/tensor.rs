//! The one small trait through which the crates of this workspace exchange tensors.
//!
//! A tensor is a shape plus contiguous, row-major storage of one element type. On the host the
//! storage is a slice (`[T]`); `focal-cuda` implements the same trait with a device buffer as
//! storage. There is deliberately nothing else here: no operators, no autograd, no laziness.

use crate::error::{FocalError, Result};

/// The largest rank a [`Shape`] holds (`[N, C, H, W]` plus room to spare).
pub const MAX_RANK: usize = 6;

/// A small, copyable shape of at most [`MAX_RANK`] dimensions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    dims: [usize; MAX_RANK],
    rank: u8,
}

impl Shape {
    /// A shape from its dimensions.
    ///
    /// # Errors
    /// [`FocalError::Rank`] when there are more than [`MAX_RANK`] dimensions.
    pub fn new(dims: &[usize]) -> Result<Self> {
        if dims.len() > MAX_RANK {
            return Err(FocalError::Rank { what: "shape", expected: "at most 6", shape: dims.to_vec() });
        }
        let mut out = Shape { dims: [0; MAX_RANK], rank: dims.len() as u8 };
        out.dims[..dims.len()].copy_from_slice(dims);
        Ok(out)
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank as usize]
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.rank as usize
    }

    /// Number of elements, `product(dims)` (1 for rank 0).
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    /// The last dimension (the class dimension of logits), or 1 for rank 0.
    pub fn last(&self) -> usize {
        self.dims().last().copied().unwrap_or(1)
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.dims().fmt(f)
    }
}

impl TryFrom<&[usize]> for Shape {
    type Error = FocalError;
    fn try_from(dims: &[usize]) -> Result<Self> {
        Shape::new(dims)
    }
}

/// A tensor: a shape and contiguous row-major storage of `Elem`.
///
/// `Storage` is `[Elem]` on the host and a device buffer in `focal-cuda`.
pub trait Tensor {
    /// Element type.
    type Elem: Copy;
    /// Where the elements live.
    type Storage: ?Sized;
    /// The shape.
    fn shape(&self) -> Shape;
    /// The storage, exactly `shape().numel()` elements.
    fn storage(&self) -> &Self::Storage;
    /// Number of elements.
    fn numel(&self) -> usize {
        self.shape().numel()
    }
}

/// A tensor whose storage can be written (outputs such as gradients).
pub trait TensorMut: Tensor {
    /// Writable storage.
    fn storage_mut(&mut self) -> &mut Self::Storage;
}

/// A borrowed host tensor: a slice and a shape.
///
/// # Examples
/// ```
/// use focal_core::TensorView;
/// let logits = [0.5f32, -1.0, 2.0, 0.0, 1.0, -3.0];
/// let view = TensorView::new(&logits, &[2, 3]).unwrap();
/// assert_eq!(view.shape().dims(), &[2, 3]);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a, T> {
    data: &'a [T],
    shape: Shape,
}

/// A mutably borrowed host tensor.
#[derive(Debug)]
pub struct TensorViewMut<'a, T> {
    data: &'a mut [T],
    shape: Shape,
}

fn check_storage(what: &'static str, shape: &Shape, len: usize) -> Result<()> {
    if shape.numel() != len {
        return Err(FocalError::StorageSize { what, shape: shape.dims().to_vec(), expected: shape.numel(), got: len });
    }
    Ok(())
}

impl<'a, T: Copy> TensorView<'a, T> {
    /// A view of `data` with `shape`.
    ///
    /// # Errors
    /// When `data.len() != product(shape)` or the rank exceeds [`MAX_RANK`].
    pub fn new(data: &'a [T], shape: &[usize]) -> Result<Self> {
        let shape = Shape::new(shape)?;
        check_storage("tensor", &shape, data.len())?;
        Ok(TensorView { data, shape })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The elements, row-major.
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }

    /// A view of a standard-layout ndarray.
    ///
    /// # Errors
    /// [`FocalError::NotContiguous`] when the array is not contiguous in row-major order.
    #[cfg(feature = "ndarray")]
    pub fn from_ndarray<D: ndarray::Dimension>(array: ndarray::ArrayView<'a, T, D>) -> Result<Self> {
        let shape = Shape::new(array.shape())?;
        let data = array.to_slice().ok_or(FocalError::NotContiguous { what: "ndarray view" })?;
        Ok(TensorView { data, shape })
    }
}

impl<'a, T: Copy> TensorViewMut<'a, T> {
    /// A mutable view of `data` with `shape`.
    ///
    /// # Errors
    /// When `data.len() != product(shape)` or the rank exceeds [`MAX_RANK`].
    pub fn new(data: &'a mut [T], shape: &[usize]) -> Result<Self> {
        let shape = Shape::new(shape)?;
        check_storage("tensor", &shape, data.len())?;
        Ok(TensorViewMut { data, shape })
    }

    /// The shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The elements, row-major.
    pub fn as_slice(&self) -> &[T] {
        self.data
    }

    /// The elements, writable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.data
    }

    /// A read-only view of the same elements.
    pub fn view(&self) -> TensorView<'_, T> {
        TensorView { data: self.data, shape: self.shape }
    }

    /// A mutable view of a standard-layout ndarray.
    ///
    /// # Errors
    /// [`FocalError::NotContiguous`] when the array is not contiguous in row-major order.
    #[cfg(feature = "ndarray")]
    pub fn from_ndarray<D: ndarray::Dimension>(array: ndarray::ArrayViewMut<'a, T, D>) -> Result<Self> {
        let shape = Shape::new(array.shape())?;
        let data = array.into_slice().ok_or(FocalError::NotContiguous { what: "ndarray view" })?;
        Ok(TensorViewMut { data, shape })
    }
}

impl<T: Copy> Tensor for TensorView<'_, T> {
    type Elem = T;
    type Storage = [T];
    fn shape(&self) -> Shape {
        self.shape
    }
    fn storage(&self) -> &[T] {
        self.data
    }
}

impl<T: Copy> Tensor for TensorViewMut<'_, T> {
    type Elem = T;
    type Storage = [T];
    fn shape(&self) -> Shape {
        self.shape
    }
    fn storage(&self) -> &[T] {
        self.data
    }
}

impl<T: Copy> TensorMut for TensorViewMut<'_, T> {
    fn storage_mut(&mut self) -> &mut [T] {
        self.data
    }
}

#[cfg(feature = "ndarray")]
impl<T: Copy, D: ndarray::Dimension> Tensor for ndarray::Array<T, D> {
    type Elem = T;
    type Storage = [T];
    fn shape(&self) -> Shape {
        // An owned array of rank > MAX_RANK cannot be described; report it as empty so every
        // entry point rejects it with a shape error instead of reading it wrongly.
        Shape::new(ndarray::ArrayBase::shape(self)).unwrap_or_default()
    }
    /// The elements in memory order. Owned arrays made by `Array::zeros`, `from_shape_vec` and
    /// friends are row-major; call `as_standard_layout` on a transposed one first.
    fn storage(&self) -> &[T] {
        self.as_slice().unwrap_or(&[])
    }
}
