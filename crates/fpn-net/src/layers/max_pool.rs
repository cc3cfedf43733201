//! 2-D max pooling.

use rayon::prelude::*;

use super::GradOut;
use crate::error::{NetError, Result, config_error};
use crate::tensor::{Tensor4, check_nchw};

/// Max pooling as `torch.nn.MaxPool2d(kernel, stride, padding)` (dilation 1, floor mode):
/// padding counts as `-inf` and NaN propagates.
///
/// Forward keeps no state: it takes the column-wise maximum of the window's rows, then the
/// maximum along each window of that row, both vectorisable. Backward finds each maximum again
/// in the input (the first in row-major order, as PyTorch picks it) and routes the gradient
/// there.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    kernel: usize,
    stride: usize,
    padding: usize,
}

/// `max(a, b)` that returns NaN when either is NaN.
#[inline]
fn nan_max(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() { b } else { a }
}

impl MaxPool2d {
    /// A `kernel x kernel` pool (ResNet's stem: `MaxPool2d::new(3, 2, 1)`).
    ///
    /// # Errors
    /// [`NetError::Config`] when kernel or stride is zero or the padding exceeds half the
    /// kernel (PyTorch's limit).
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Result<Self> {
        if kernel == 0 || stride == 0 || 2 * padding > kernel {
            return Err(config_error(
                "MaxPool2d",
                format!("kernel {kernel}, stride {stride} > 0 and padding {padding} <= kernel / 2"),
            ));
        }
        Ok(MaxPool2d { kernel, stride, padding })
    }

    /// The output shape for an input of `dims`.
    ///
    /// # Errors
    /// [`NetError::Shape`] when the padded input is smaller than the kernel.
    pub fn output_dims(&self, dims: [usize; 4]) -> Result<[usize; 4]> {
        let [n, c, h, w] = dims;
        let out = |len: usize| (len + 2 * self.padding).checked_sub(self.kernel).map(|s| s / self.stride + 1);
        match (out(h), out(w)) {
            (Some(ho), Some(wo)) if n * c * h * w > 0 && ho * wo > 0 => Ok([n, c, ho, wo]),
            _ => Err(NetError::Shape {
                what: "max pool input",
                expected: format!("H, W + 2 * {} >= kernel {}", self.padding, self.kernel),
                got: dims.to_vec(),
            }),
        }
    }

    /// The input window `[start, end)` along one axis of output index `o`.
    fn window(&self, o: usize, len: usize) -> (usize, usize) {
        ((o * self.stride).saturating_sub(self.padding), (o * self.stride + self.kernel - self.padding).min(len))
    }

    /// `y = maxpool(x)`.
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` is smaller than the kernel.
    pub fn forward(&self, x: &Tensor4, y: &mut Tensor4) -> Result<()> {
        check_nchw("max pool input", x, None)?;
        let out_dims = self.output_dims(x.dims())?;
        let [_, _, h, w] = x.dims();
        let [_, _, ho, wo] = out_dims;
        y.reshape_for(out_dims);
        let cols: Vec<(usize, usize)> = (0..wo).map(|ox| self.window(ox, w)).collect();
        y.as_mut_slice().par_chunks_mut(ho * wo).zip(x.as_slice().par_chunks(h * w)).for_each(|(yp, xp)| {
            let mut column_max = vec![f32::NEG_INFINITY; w];
            for (oy, yrow) in yp.chunks_mut(wo).enumerate() {
                let (y0, y1) = self.window(oy, h);
                column_max.fill(f32::NEG_INFINITY);
                for iy in y0..y1 {
                    for (m, &v) in column_max.iter_mut().zip(&xp[iy * w..(iy + 1) * w]) {
                        *m = nan_max(*m, v);
                    }
                }
                for (out, &(x0, x1)) in yrow.iter_mut().zip(&cols) {
                    *out = column_max[x0..x1].iter().fold(f32::NEG_INFINITY, |a, &b| nan_max(a, b));
                }
            }
        });
        Ok(())
    }

    /// `dx[argmax] += dy`, with `x` and `y` the input and output of the forward pass.
    ///
    /// # Errors
    /// [`NetError::Shape`] when `y` or `dy` is not shaped like the output for `x`.
    pub fn backward(&self, x: &Tensor4, y: &Tensor4, dy: &Tensor4, mut dx: GradOut<'_>) -> Result<()> {
        let out_dims = self.output_dims(x.dims())?;
        for (what, t) in [("max pool output", y), ("max pool output gradient", dy)] {
            if t.dims() != out_dims {
                return Err(NetError::Shape { what, expected: format!("{out_dims:?}"), got: t.dims().to_vec() });
            }
        }
        let [_, _, h, w] = x.dims();
        let [_, _, ho, wo] = out_dims;
        let Some((dx, _)) = dx.prepare("max pool input gradient", x.dims(), true)? else {
            return Ok(());
        };
        dx.as_mut_slice()
            .par_chunks_mut(h * w)
            .zip(x.as_slice().par_chunks(h * w))
            .zip(y.as_slice().par_chunks(ho * wo).zip(dy.as_slice().par_chunks(ho * wo)))
            .for_each(|((dp, xp), (yp, gp))| {
                for oy in 0..ho {
                    let (y0, y1) = self.window(oy, h);
                    for ox in 0..wo {
                        let (x0, x1) = self.window(ox, w);
                        let best = yp[oy * wo + ox];
                        let hit = (y0..y1)
                            .flat_map(|iy| (x0..x1).map(move |ix| iy * w + ix))
                            .find(|&i| xp[i] == best || (best.is_nan() && xp[i].is_nan()));
                        if let Some(i) = hit {
                            dp[i] += gp[oy * wo + ox];
                        }
                    }
                }
            });
        Ok(())
    }
}
