//! `Tensor4`: an owned `[N, C, H, W]` f32 tensor, the activation type of every layer.

use focal_core::{Shape, Tensor, TensorMut, TensorView};

use crate::error::{NetError, Result};

/// An owned, contiguous, row-major `[N, C, H, W]` f32 tensor.
///
/// Layers write into `Tensor4`s they are handed and [`Tensor4::reshape_for`] them in place, so a
/// buffer reused across calls keeps its allocation.
///
/// # Examples
/// ```
/// use fpn_net::Tensor4;
/// let x = Tensor4::from_vec(vec![1.0; 2 * 3 * 4 * 5], [2, 3, 4, 5]).unwrap();
/// assert_eq!(x.dims(), [2, 3, 4, 5]);
/// assert_eq!(x.plane(1, 2).map(<[f32]>::len), Some(20));
/// assert!(x.image(2).is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor4 {
    data: Vec<f32>,
    dims: [usize; 4],
}

impl Tensor4 {
    /// A zero tensor.
    pub fn zeros(dims: [usize; 4]) -> Self {
        Tensor4 { data: vec![0.0; dims.iter().product()], dims }
    }

    /// A tensor over `data`, which must hold `product(dims)` elements.
    ///
    /// # Errors
    /// [`NetError::Shape`] when the length does not match.
    pub fn from_vec(data: Vec<f32>, dims: [usize; 4]) -> Result<Self> {
        let numel: usize = dims.iter().product();
        if data.len() != numel {
            return Err(NetError::Shape {
                what: "Tensor4::from_vec",
                expected: format!("{numel} elements for {dims:?}"),
                got: vec![data.len()],
            });
        }
        Ok(Tensor4 { data, dims })
    }

    /// Copies any rank-4 f32 host tensor (a [`TensorView`], an ndarray `Array4`...).
    ///
    /// # Errors
    /// [`NetError::Shape`] when the rank is not 4.
    pub fn from_tensor<T: Tensor<Elem = f32, Storage = [f32]> + ?Sized>(t: &T) -> Result<Self> {
        let shape = t.shape();
        let d = shape.dims();
        if d.len() != 4 {
            return Err(NetError::Shape {
                what: "Tensor4::from_tensor",
                expected: "rank 4 [N, C, H, W]".into(),
                got: d.to_vec(),
            });
        }
        Tensor4::from_vec(t.storage().to_vec(), [d[0], d[1], d[2], d[3]])
    }

    /// The dimensions `[N, C, H, W]`.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// Batch size.
    pub fn n(&self) -> usize {
        self.dims[0]
    }
    /// Channels.
    pub fn c(&self) -> usize {
        self.dims[1]
    }
    /// Height.
    pub fn h(&self) -> usize {
        self.dims[2]
    }
    /// Width.
    pub fn w(&self) -> usize {
        self.dims[3]
    }

    /// Elements of one image, `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.dims[1] * self.dims[2] * self.dims[3]
    }

    /// Elements of one channel plane, `H * W`.
    pub fn plane_len(&self) -> usize {
        self.dims[2] * self.dims[3]
    }

    /// The elements, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The elements, writable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its storage.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// One image `n`, `C * H * W` elements, or `None` when `n >= N`.
    pub fn image(&self, n: usize) -> Option<&[f32]> {
        (n < self.dims[0]).then(|| self.image_at(n))
    }

    /// One channel plane `(n, c)`, `H * W` elements, or `None` when out of range.
    pub fn plane(&self, n: usize, c: usize) -> Option<&[f32]> {
        (n < self.dims[0] && c < self.dims[1]).then(|| self.plane_at(n, c))
    }

    /// Image `n`; callers inside the crate have checked the shape.
    pub(crate) fn image_at(&self, n: usize) -> &[f32] {
        let len = self.image_len();
        &self.data[n * len..(n + 1) * len]
    }

    /// Plane `(n, c)`; callers inside the crate have checked the shape.
    pub(crate) fn plane_at(&self, n: usize, c: usize) -> &[f32] {
        let len = self.plane_len();
        let start = (n * self.dims[1] + c) * len;
        &self.data[start..start + len]
    }

    /// A borrowed view through focal-core's tensor trait.
    pub fn view(&self) -> TensorView<'_, f32> {
        // `dims` always describes `data` exactly, so this cannot fail.
        TensorView::new(&self.data, &self.dims).unwrap_or_else(|_| unreachable!())
    }

    /// Gives the tensor the shape `dims`, keeping the allocation when it is large enough. The
    /// contents are unspecified afterwards; layers overwrite every element.
    pub fn reshape_for(&mut self, dims: [usize; 4]) {
        self.data.resize(dims.iter().product(), 0.0);
        self.dims = dims;
    }

    /// Sets every element to zero.
    pub fn fill_zero(&mut self) {
        self.data.fill(0.0);
    }

    /// Makes `self` an exact copy of `other`, reusing the allocation.
    pub fn copy_from(&mut self, other: &Tensor4) {
        self.data.clear();
        self.data.extend_from_slice(&other.data);
        self.dims = other.dims;
    }
}

impl Tensor for Tensor4 {
    type Elem = f32;
    type Storage = [f32];
    fn shape(&self) -> Shape {
        // Rank 4 is always within focal-core's MAX_RANK.
        Shape::new(&self.dims).unwrap_or_default()
    }
    fn storage(&self) -> &[f32] {
        &self.data
    }
}

impl TensorMut for Tensor4 {
    fn storage_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

/// Checks that `t` has `expected_c` channels (when given) and is not empty.
pub(crate) fn check_nchw(what: &'static str, t: &Tensor4, expected_c: Option<usize>) -> Result<()> {
    let [n, c, h, w] = t.dims();
    let bad_c = expected_c.is_some_and(|e| e != c);
    if n == 0 || c == 0 || h == 0 || w == 0 || bad_c {
        return Err(NetError::Shape {
            what,
            expected: match expected_c {
                Some(e) => format!("[N, {e}, H, W] with N, H, W > 0"),
                None => "[N, C, H, W] with every dimension > 0".into(),
            },
            got: t.dims().to_vec(),
        });
    }
    Ok(())
}

/// Checks that two tensors have the same dimensions.
pub(crate) fn check_same(what: &'static str, expected: &Tensor4, got: &Tensor4) -> Result<()> {
    if expected.dims() != got.dims() {
        return Err(NetError::Shape { what, expected: format!("{:?}", expected.dims()), got: got.dims().to_vec() });
    }
    Ok(())
}
