//! Splits a tensor into fixed chunks of rows, runs a kernel on each in parallel and sums the
//! partial losses in chunk order.
//!
//! The chunking depends only on the shape, never on the thread count, and the partial sums
//! are added in chunk order, so results are bit-identical with 1 thread or 64. Inputs and
//! outputs that are not `f32` go through per-thread scratch buffers one chunk at a time.

use crate::element::Element;
use crate::kernel::Chunk;
use crate::simd::{ChunkKernel, SimdLevel, dispatch};
use rayon::prelude::*;
use std::any::TypeId;
use std::cell::RefCell;

/// Elements per chunk (about 64 KiB of `f32`: fits L2 with its outputs, and enough chunks to
/// balance threads at 100K anchors).
pub(crate) const CHUNK_ELEMS: usize = 16 * 1024;

/// `f32` logits of at least this many bytes are prefetched by the kernels (see
/// `kernel::prefetch_ahead`): 8 MiB, two million elements. On the machine it was measured on
/// (32 MiB of L3), prefetching cost 1.5 to 4% up to 6.4 MB of logits (20,000 anchors x 80,
/// which stay in cache with their gradient between calls) and paid from 16 MB (50,000).
const PREFETCH_FROM_BYTES: usize = 8 << 20;

/// Rows per chunk for `classes` columns.
pub(crate) fn rows_per_chunk(classes: usize) -> usize {
    (CHUNK_ELEMS / classes.max(1)).max(1)
}

fn as_f32<T: Element>(s: &[T]) -> Option<&[f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| bytemuck::cast_slice(s))
}

fn as_f32_mut<T: Element>(s: &mut [T]) -> Option<&mut [f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() { Some(bytemuck::cast_slice_mut(s)) } else { None }
}

thread_local! {
    static SCRATCH: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `kernel` over `logits` (`rows * classes`), writing the optional outputs, and returns the
/// sum of the elementwise losses.
pub(crate) fn run<T: Element, O: Element, G: Element, K: ChunkKernel>(
    level: SimdLevel,
    kernel: &K,
    logits: &[T],
    classes: usize,
    loss: Option<&mut [O]>,
    grad: Option<&mut [G]>,
) -> f64 {
    if logits.is_empty() || classes == 0 {
        return 0.0;
    }
    // Only the caller's own `f32` memory streams; converted inputs are read from scratch.
    let prefetch = as_f32(logits).is_some() && std::mem::size_of_val(logits) >= PREFETCH_FROM_BYTES;
    let rows_per_chunk = rows_per_chunk(classes);
    let chunk_len = rows_per_chunk * classes;
    let n_chunks = logits.len().div_ceil(chunk_len);
    let loss_chunks: Vec<Option<&mut [O]>> = match loss {
        Some(l) => l.chunks_mut(chunk_len).map(Some).collect(),
        None => (0..n_chunks).map(|_| None).collect(),
    };
    let grad_chunks: Vec<Option<&mut [G]>> = match grad {
        Some(g) => g.chunks_mut(chunk_len).map(Some).collect(),
        None => (0..n_chunks).map(|_| None).collect(),
    };
    let partials: Vec<f64> = logits
        .par_chunks(chunk_len)
        .zip(loss_chunks.into_par_iter())
        .zip(grad_chunks.into_par_iter())
        .enumerate()
        .map(|(k, ((x, l), g))| process_chunk(level, kernel, k * rows_per_chunk, prefetch, x, l, g))
        .collect();
    partials.iter().sum()
}

fn process_chunk<T: Element, O: Element, G: Element, K: ChunkKernel>(
    level: SimdLevel,
    kernel: &K,
    row0: usize,
    prefetch: bool,
    x: &[T],
    mut loss: Option<&mut [O]>,
    mut grad: Option<&mut [G]>,
) -> f64 {
    let direct_out = loss.as_deref().is_none_or(|_| TypeId::of::<O>() == TypeId::of::<f32>())
        && grad.as_deref().is_none_or(|_| TypeId::of::<G>() == TypeId::of::<f32>());
    if let (Some(x32), true) = (as_f32(x), direct_out) {
        let chunk = Chunk {
            row0,
            x: x32,
            loss: loss.as_deref_mut().and_then(as_f32_mut),
            grad: grad.as_deref_mut().and_then(as_f32_mut),
            prefetch,
        };
        return dispatch(level, kernel, chunk);
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let [xs, ls, gs] = &mut *scratch;
        let n = x.len();
        for buf in [&mut *xs, &mut *ls, &mut *gs] {
            if buf.len() < n {
                buf.resize(n, 0.0);
            }
        }
        let x32: &[f32] = match as_f32(x) {
            Some(x32) => x32,
            None => {
                T::slice_to_f32(x, &mut xs[..n]);
                &xs[..n]
            }
        };
        let chunk = Chunk {
            row0,
            x: x32,
            loss: loss.as_ref().map(|_| &mut ls[..n]),
            grad: grad.as_ref().map(|_| &mut gs[..n]),
            prefetch,
        };
        let sum = dispatch(level, kernel, chunk);
        if let Some(l) = loss {
            O::slice_from_f32(&ls[..n], l);
        }
        if let Some(g) = grad {
            G::slice_from_f32(&gs[..n], g);
        }
        sum
    })
}
