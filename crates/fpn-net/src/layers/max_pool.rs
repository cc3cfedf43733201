//! 2-D max pooling.

use rayon::prelude::*;

use super::GradOut;
use crate::error::{NetError, Result, config_error};
use crate::tensor::{Tensor4, check_nchw};

/// Max pooling as `torch.nn.MaxPool2d(kernel, stride, padding)` (dilation 1, floor mode):
/// padding counts as `-inf`, the first maximum in scan order wins, and NaN propagates.
///
/// Forward remembers where each maximum was; backward routes each output gradient there.
#[derive(Clone, Debug)]
pub struct MaxPool2d {
    kernel: usize,
    stride: usize,
    padding: usize,
    /// Flat index within its plane of every output's maximum, from the last forward.
    argmax: Vec<u32>,
    in_dims: [usize; 4],
    out_dims: [usize; 4],
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
        Ok(MaxPool2d { kernel, stride, padding, argmax: Vec::new(), in_dims: [0; 4], out_dims: [0; 4] })
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

    /// `y = maxpool(x)`.
    ///
    /// # Errors
    /// [`NetError::Shape`] when `x` is smaller than the kernel.
    pub fn forward(&mut self, x: &Tensor4, y: &mut Tensor4) -> Result<()> {
        check_nchw("max pool input", x, None)?;
        let out_dims = self.output_dims(x.dims())?;
        let [_, _, h, w] = x.dims();
        let [_, _, ho, wo] = out_dims;
        y.reshape_for(out_dims);
        self.argmax.resize(y.as_slice().len(), 0);
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        y.as_mut_slice()
            .par_chunks_mut(ho * wo)
            .zip(self.argmax.par_chunks_mut(ho * wo))
            .zip(x.as_slice().par_chunks(h * w))
            .for_each(|((yp, ap), xp)| {
                for oy in 0..ho {
                    let y0 = (oy * s).saturating_sub(p);
                    let y1 = (oy * s + k - p).min(h);
                    for ox in 0..wo {
                        let x0 = (ox * s).saturating_sub(p);
                        let x1 = (ox * s + k - p).min(w);
                        let mut best = f32::NEG_INFINITY;
                        let mut best_at = y0 * w + x0;
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let v = xp[iy * w + ix];
                                if v > best || v.is_nan() {
                                    best = v;
                                    best_at = iy * w + ix;
                                    if v.is_nan() {
                                        break;
                                    }
                                }
                            }
                            if best.is_nan() {
                                break;
                            }
                        }
                        yp[oy * wo + ox] = best;
                        ap[oy * wo + ox] = best_at as u32;
                    }
                }
            });
        self.in_dims = x.dims();
        self.out_dims = out_dims;
        Ok(())
    }

    /// `dx[argmax] += dy`, using the maxima of the last forward.
    ///
    /// # Errors
    /// [`NetError::NoForward`] when `dy` is not shaped like the last forward's output.
    pub fn backward(&self, dy: &Tensor4, mut dx: GradOut<'_>) -> Result<()> {
        if dy.dims() != self.out_dims || self.argmax.len() != dy.as_slice().len() {
            return Err(NetError::NoForward { what: "MaxPool2d" });
        }
        let in_plane = self.in_dims[2] * self.in_dims[3];
        let out_plane = self.out_dims[2] * self.out_dims[3];
        if let Some((dx, _)) = dx.prepare("max pool input gradient", self.in_dims, true)? {
            dx.as_mut_slice()
                .par_chunks_mut(in_plane)
                .zip(dy.as_slice().par_chunks(out_plane))
                .zip(self.argmax.par_chunks(out_plane))
                .for_each(|((dp, gp), ap)| {
                    for (&g, &a) in gp.iter().zip(ap) {
                        dp[a as usize] += g;
                    }
                });
        }
        Ok(())
    }
}
