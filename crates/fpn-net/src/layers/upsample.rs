//! Nearest-neighbour upsampling to a given size (`F.interpolate(x, size, mode="nearest")`).

use rayon::prelude::*;

use super::GradOut;
use crate::error::{NetError, Result};
use crate::tensor::{Tensor4, check_nchw};

/// Nearest-neighbour resize of every plane to `[out_h, out_w]`, with PyTorch's source index:
/// the identity for equal sizes, `o / 2` for an exact doubling, otherwise
/// `min(floor(o * (in / out)), in - 1)` computed in f32. The FPN's top-down path uses it with
/// the lateral's size, which need not be twice the coarser level's.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpsampleNearest;

/// The source index of output index `o` (PyTorch's `nearest_idx`).
fn nearest_source(o: usize, in_len: usize, out_len: usize) -> usize {
    if in_len == out_len {
        o
    } else if out_len == 2 * in_len {
        o >> 1
    } else {
        let scale = in_len as f32 / out_len as f32;
        ((o as f32 * scale).floor() as usize).min(in_len - 1)
    }
}

fn source_indices(in_len: usize, out_len: usize) -> Vec<usize> {
    (0..out_len).map(|o| nearest_source(o, in_len, out_len)).collect()
}

impl UpsampleNearest {
    /// `y = resize(x, size)` (`y` takes `[N, C, size[0], size[1]]`), or `y += resize(x)` with
    /// `accumulate` (the FPN merge `lateral + upsample(top)`, `y` already shaped).
    ///
    /// # Errors
    /// [`NetError::Shape`] when a size is zero, or with `accumulate` when `y` has another
    /// batch, channel count or size.
    pub fn forward(&self, x: &Tensor4, size: [usize; 2], y: &mut Tensor4, accumulate: bool) -> Result<()> {
        check_nchw("upsample input", x, None)?;
        let dims = [x.n(), x.c(), size[0], size[1]];
        if size.contains(&0) || (accumulate && y.dims() != dims) {
            return Err(NetError::Shape {
                what: "upsample output",
                expected: format!("{dims:?} with sizes > 0"),
                got: y.dims().to_vec(),
            });
        }
        if !accumulate {
            y.reshape_for(dims);
        }
        let [_, _, h, w] = x.dims();
        let rows = source_indices(h, size[0]);
        let cols = source_indices(w, size[1]);
        y.as_mut_slice().par_chunks_mut(size[0] * size[1]).zip(x.as_slice().par_chunks(h * w)).for_each(|(yp, xp)| {
            for (yrow, &sy) in yp.chunks_mut(size[1]).zip(&rows) {
                let src = &xp[sy * w..(sy + 1) * w];
                for (d, &sx) in yrow.iter_mut().zip(&cols) {
                    *d = if accumulate { *d + src[sx] } else { src[sx] };
                }
            }
        });
        Ok(())
    }

    /// Backward: every input position receives the sum of the gradients of the outputs that
    /// copied it. `in_dims` is the shape of the forward input.
    ///
    /// # Errors
    /// [`NetError::Shape`] when `dy` does not have `in_dims`' batch and channels, or an
    /// `Accumulate` target is not shaped `in_dims`.
    pub fn backward(&self, dy: &Tensor4, in_dims: [usize; 4], mut dx: GradOut<'_>) -> Result<()> {
        let [n, c, h, w] = in_dims;
        if dy.n() != n || dy.c() != c || h * w == 0 {
            return Err(NetError::Shape {
                what: "upsample output gradient",
                expected: format!("[{n}, {c}, H, W] for an input {in_dims:?}"),
                got: dy.dims().to_vec(),
            });
        }
        let (ho, wo) = (dy.h(), dy.w());
        let rows = source_indices(h, ho);
        let cols = source_indices(w, wo);
        if let Some((dx, _)) = dx.prepare("upsample input gradient", in_dims, true)? {
            dx.as_mut_slice().par_chunks_mut(h * w).zip(dy.as_slice().par_chunks(ho * wo)).for_each(|(dp, gp)| {
                for (grow, &sy) in gp.chunks(wo).zip(&rows) {
                    let dst = &mut dp[sy * w..(sy + 1) * w];
                    for (&g, &sx) in grow.iter().zip(&cols) {
                        dst[sx] += g;
                    }
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_source_matches_pytorch_rules() {
        assert_eq!(source_indices(3, 6), vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(source_indices(4, 4), vec![0, 1, 2, 3]);
        // 3 -> 5: scale 0.6, floor(o * 0.6).
        assert_eq!(source_indices(3, 5), vec![0, 0, 1, 1, 2]);
    }
}
