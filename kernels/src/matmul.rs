//! The one entry point into the `gemm` crate, made safe by checking every extent first.

use gemm::Parallelism;

/// A row-major matrix view: `rows × cols` values, row `r` starting at `r * stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Matrix<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl<'a> Matrix<'a> {
    /// `rows × cols` values stored row after row, without gaps.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            stride: cols,
        }
    }

    fn fits(&self) -> bool {
        fits(self.data.len(), self.rows, self.cols, self.stride)
    }
}

fn fits(len: usize, rows: usize, cols: usize, stride: usize) -> bool {
    rows == 0 || cols == 0 || (cols <= stride && (rows - 1) * stride + cols <= len)
}

/// `dst[rows × rhs.cols] = lhs × rhs`, written at row stride `dst_stride` (the rest of each
/// row untouched). `threads > 1` lets the GEMM split the work itself; callers that already
/// split the work over threads pass 1.
///
/// # Panics
/// When a matrix does not fit in its slice or the inner dimensions differ: a bug in the
/// caller, never reachable from input data (layers check shapes when they are built and
/// before they run).
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_stride: usize,
    lhs: Matrix<'_>,
    rhs: Matrix<'_>,
    threads: usize,
) {
    product(dst, dst_stride, lhs, rhs, threads, false);
}

/// [`matmul`], the product added to what `dst` holds: `dst += lhs × rhs`.
pub(crate) fn matmul_add(
    dst: &mut [f32],
    dst_stride: usize,
    lhs: Matrix<'_>,
    rhs: Matrix<'_>,
    threads: usize,
) {
    product(dst, dst_stride, lhs, rhs, threads, true);
}

fn product(
    dst: &mut [f32],
    dst_stride: usize,
    lhs: Matrix<'_>,
    rhs: Matrix<'_>,
    threads: usize,
    accumulate: bool,
) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions of a matrix product");
    assert!(lhs.fits() && rhs.fits(), "matrix operand out of its slice");
    assert!(
        fits(dst.len(), lhs.rows, rhs.cols, dst_stride),
        "matrix product destination out of its slice"
    );
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above guarantee that every element the product reads
    // (`lhs[r * lhs.stride + c]` for r < m, c < k; `rhs[r * rhs.stride + c]` for r < k,
    // c < n) and writes (`dst[r * dst_stride + c]` for r < m, c < n) lies inside its slice;
    // `dst` is borrowed mutably, so it cannot alias the shared `lhs` and `rhs`. With
    // `read_dst` false the destination's previous contents are never read (alpha unused);
    // with it true they are read at the same in-slice positions it writes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            1,
            lhs.stride as isize,
            rhs.data.as_ptr(),
            1,
            rhs.stride as isize,
            if accumulate { 1.0 } else { 0.0 },
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

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn strided_product_matches_the_definition_and_leaves_the_gap_alone() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let stride = n + 2;
        let mut dst = vec![-9.0; m * stride];
        let (lhs, rhs) = (Matrix::dense(&a, m, k), Matrix::dense(&b, k, n));
        matmul(&mut dst, stride, lhs, rhs, 1);
        let expected = naive(&a, &b, m, k, n);
        for i in 0..m {
            assert_eq!(
                &dst[i * stride..i * stride + n],
                &expected[i * n..(i + 1) * n]
            );
            assert_eq!(&dst[i * stride + n..(i + 1) * stride], &[-9.0, -9.0]);
        }
    }

    #[test]
    fn an_added_product_keeps_what_was_there() {
        let (m, k, n) = (5, 4, 6);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32 * 0.25).collect();
        let (lhs, rhs) = (Matrix::dense(&a, m, k), Matrix::dense(&b, k, n));
        let start: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
        let mut dst = start.clone();
        matmul_add(&mut dst, n, lhs, rhs, 1);
        let product = naive(&a, &b, m, k, n);
        for ((d, s), p) in dst.iter().zip(&start).zip(&product) {
            assert_eq!(*d, s + p);
        }
    }

    #[test]
    #[should_panic(expected = "destination out of its slice")]
    fn a_short_destination_is_refused_before_any_write() {
        let a = [1.0; 4];
        let lhs = Matrix {
            data: &a,
            rows: 2,
            cols: 2,
            stride: 2,
        };
        let mut dst = [0.0; 3];
        matmul(&mut dst, 2, lhs, lhs, 1);
    }
}
