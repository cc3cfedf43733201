//! The one place that calls the `gemm` crate: a bounds-checked, safe matrix product.
//!
//! `gemm` picks AVX-512, AVX2+FMA or a portable kernel at run time and splits large products
//! across rayon's threads. Its entry point takes raw pointers and strides; this wrapper checks
//! that every element the strides reach lies inside the slices before handing them over.

/// A read-only strided matrix inside a slice: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major `cols x rows` matrix stored in `data`.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef { data, rows, cols, rs: 1, cs: rows }
    }

    fn reach(&self) -> usize {
        if self.rows == 0 || self.cols == 0 { 0 } else { (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1 }
    }
}

/// Products below this many multiply-adds run on one thread: splitting them costs more than
/// it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// `dst = lhs * rhs` (or `dst += lhs * rhs` with `accumulate`), `dst` row-major `m x n` with
/// row stride `dst_rs`, split across rayon's threads when `parallel` and large enough.
///
/// Panics when the shapes disagree or a matrix reaches past its slice: callers validate
/// user-facing shapes first, so a panic here is a bug in this crate, never bad input.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    parallel: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul: inner dimensions differ");
    assert!(lhs.reach() <= lhs.data.len(), "matmul: lhs out of bounds");
    assert!(rhs.reach() <= rhs.data.len(), "matmul: rhs out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst_rs >= n && (m - 1) * dst_rs + n <= dst.len(), "matmul: dst out of bounds");
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 && m * n * k >= PARALLEL_MIN_FLOPS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above show that every index the strides reach, for all i < m,
    // j < n and l < k, lies inside `dst`, `lhs.data` and `rhs.data`; `dst` is borrowed
    // mutably, so it aliases neither input. Strides fit in isize because they index slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive_product_with_transposes() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut c = vec![1.0f32; m * n];
        matmul(&mut c, n, true, MatRef::row_major(&a, m, k), MatRef::transposed(&bt, k, n), true);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|l| a[i * k + l] * bt[j * k + l]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() <= 1e-5, "({i},{j})");
            }
        }
    }
}
