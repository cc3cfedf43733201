//! Layers with explicit forward and backward.
//!
//! Every layer reads its input from a [`Tensor4`] it is handed and writes its output into
//! another one (resized in place, so buffers kept between calls keep their allocation).
//! Backward takes the same input again (and the output where the layer needs it), writes or
//! accumulates the input gradient as the caller asks through [`GradOut`], and accumulates
//! parameter gradients into [`Param::grad`](crate::Param).

mod add;
mod batch_norm;
mod conv;
mod group_norm;
mod max_pool;
pub(crate) mod relu;
mod upsample;

pub use add::{add, add_backward, add_inplace};
pub use batch_norm::FrozenBatchNorm2d;
pub(crate) use conv::Epilogue;
pub use conv::{Conv2d, Conv2dConfig, DEFAULT_COL_TILE_BYTES};
pub use group_norm::GroupNorm;
pub use max_pool::MaxPool2d;
pub use relu::Relu;
pub use upsample::UpsampleNearest;

use rayon::prelude::*;

use crate::error::{NetError, Result};
use crate::tensor::Tensor4;

/// Where a backward pass puts the gradient of a layer's input.
#[derive(Debug)]
pub enum GradOut<'a> {
    /// Do not compute it (the input is an image or a frozen part of the network).
    Skip,
    /// Overwrite this tensor (resized to the input's shape).
    Write(&'a mut Tensor4),
    /// Add to this tensor, which must already have the input's shape (a fork in the graph,
    /// such as a residual connection).
    Accumulate(&'a mut Tensor4),
}

impl GradOut<'_> {
    /// The same destination, borrowed for one more call.
    pub(crate) fn reborrow(&mut self) -> GradOut<'_> {
        match self {
            GradOut::Skip => GradOut::Skip,
            GradOut::Write(t) => GradOut::Write(t),
            GradOut::Accumulate(t) => GradOut::Accumulate(t),
        }
    }

    /// The same destination in accumulate mode: for the second branch of a fork, after the
    /// first wrote (or accumulated) its share.
    pub(crate) fn accumulating(&mut self) -> GradOut<'_> {
        match self {
            GradOut::Skip => GradOut::Skip,
            GradOut::Write(t) | GradOut::Accumulate(t) => GradOut::Accumulate(t),
        }
    }

    /// The destination, shaped `dims`: zeroed when `Write` and `zero_write`, checked when
    /// `Accumulate`. `Ok(None)` for `Skip`.
    pub(crate) fn prepare(
        &mut self,
        what: &'static str,
        dims: [usize; 4],
        zero_write: bool,
    ) -> Result<Option<(&mut Tensor4, bool)>> {
        match self {
            GradOut::Skip => Ok(None),
            GradOut::Write(t) => {
                t.reshape_for(dims);
                if zero_write {
                    t.fill_zero();
                }
                Ok(Some((&mut **t, false)))
            }
            GradOut::Accumulate(t) => {
                if t.dims() != dims {
                    return Err(NetError::Shape {
                        what,
                        expected: format!("{dims:?} (the layer input) to accumulate into"),
                        got: t.dims().to_vec(),
                    });
                }
                Ok(Some((&mut **t, true)))
            }
        }
    }
}

/// Minimum elements per rayon task in elementwise loops, so tiny planes are batched.
const MIN_TASK_ELEMS: usize = 1 << 14;

/// Applies `f(channel, plane)` to every `H x W` plane of `t` in parallel.
pub(crate) fn for_each_plane_mut(t: &mut Tensor4, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let c = t.c();
    let plane = t.plane_len().max(1);
    t.as_mut_slice()
        .par_chunks_mut(plane)
        .with_min_len(MIN_TASK_ELEMS.div_ceil(plane))
        .enumerate()
        .for_each(|(i, p)| f(i % c, p));
}

/// Applies `f(channel, src_plane, dst_plane)` to every plane pair in parallel.
pub(crate) fn zip_planes_mut(src: &Tensor4, dst: &mut Tensor4, f: impl Fn(usize, &[f32], &mut [f32]) + Sync + Send) {
    let c = src.c();
    let plane = src.plane_len().max(1);
    dst.as_mut_slice()
        .par_chunks_mut(plane)
        .zip(src.as_slice().par_chunks(plane))
        .with_min_len(MIN_TASK_ELEMS.div_ceil(plane))
        .enumerate()
        .for_each(|(i, (d, s))| f(i % c, s, d));
}

/// `dst[i] = f(a[i], b[i])` (or `+=` with `accumulate`) in parallel chunks.
pub(crate) fn zip_elementwise(
    a: &[f32],
    b: &[f32],
    dst: &mut [f32],
    accumulate: bool,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) {
    dst.par_chunks_mut(MIN_TASK_ELEMS).zip(a.par_chunks(MIN_TASK_ELEMS)).zip(b.par_chunks(MIN_TASK_ELEMS)).for_each(
        |((d, a), b)| {
            if accumulate {
                for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
                    *d += f(a, b);
                }
            } else {
                for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
                    *d = f(a, b);
                }
            }
        },
    );
}

/// `dst += src` in parallel chunks (equal lengths).
pub(crate) fn add_assign(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(MIN_TASK_ELEMS).zip(src.par_chunks(MIN_TASK_ELEMS)).for_each(|(d, s)| {
        for (d, &s) in d.iter_mut().zip(s) {
            *d += s;
        }
    });
}
