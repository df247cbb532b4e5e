//! Depthwise convolution (one filter per channel) on NHWC activations: for each output
//! pixel, every kernel tap multiplies a whole run of channels, so the loop vectorises
//! across channels whatever the stride.

use rayon::prelude::*;

use crate::activation::Epilogue;
use crate::conv::Window;
use crate::simd::{madd, simd_dispatch};

/// Output rows (of one image) per parallel task.
const ROWS_PER_TASK: usize = 2;

/// `weights` is `[kh·kw, channels]` (batch norm folded in). Writes channels
/// `[offset, offset + channels)` of each `stride`-wide output row.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise(
    input: &[f32],
    window: &Window,
    weights: &[f32],
    out: &mut [f32],
    stride: usize,
    offset: usize,
    residual: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) {
    let row_len = window.out_width * stride;
    let channels = epilogue.bias.len();
    out.par_chunks_mut(row_len * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, rows)| {
            for (i, row) in rows.chunks_exact_mut(row_len).enumerate() {
                let out_row = task * ROWS_PER_TASK + i;
                let skip = residual.map(|r| {
                    let start = out_row * window.out_width * channels;
                    &r[start..start + window.out_width * channels]
                });
                depthwise_row(
                    input, window, weights, out_row, row, stride, offset, skip, epilogue,
                );
            }
        });
}

simd_dispatch! {
    /// One output row (`out_row` counts rows over the whole batch).
    #[allow(clippy::too_many_arguments)]
    fn depthwise_row(
        input: &[f32],
        window: &Window,
        weights: &[f32],
        out_row: usize,
        row: &mut [f32],
        stride: usize,
        offset: usize,
        residual: Option<&[f32]>,
        epilogue: Epilogue<'_>,
    ) => depthwise_row_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn depthwise_row_body<const FUSED: bool>(
    input: &[f32],
    window: &Window,
    weights: &[f32],
    out_row: usize,
    row: &mut [f32],
    stride: usize,
    offset: usize,
    residual: Option<&[f32]>,
    epilogue: Epilogue<'_>,
) {
    let channels = epilogue.bias.len();
    let [kh, kw] = window.kernel;
    let (height, width) = (window.input.height, window.input.width);
    let n = out_row / window.out_height;
    let oy = out_row % window.out_height;
    let image_len = height * width * channels;
    let image = &input[n * image_len..(n + 1) * image_len];
    for ox in 0..window.out_width {
        let acc = &mut row[ox * stride + offset..ox * stride + offset + channels];
        acc.copy_from_slice(epilogue.bias);
        for ky in 0..kh {
            let Some(iy) = window.source_row(oy, ky) else {
                continue;
            };
            for kx in 0..kw {
                let Some(ix) = window.source_col(ox, kx) else {
                    continue;
                };
                let src = &image[(iy * width + ix) * channels..(iy * width + ix + 1) * channels];
                let w = &weights[(ky * kw + kx) * channels..(ky * kw + kx + 1) * channels];
                for ((a, &x), &w) in acc.iter_mut().zip(src).zip(w) {
                    *a = madd::<FUSED>(x, w, *a);
                }
            }
        }
        let activation = epilogue.activation;
        match residual {
            Some(skip) => {
                let skip = &skip[ox * channels..(ox + 1) * channels];
                for (a, &s) in acc.iter_mut().zip(skip) {
                    *a = epilogue.with_residual(*a, s);
                }
            }
            None => acc.iter_mut().for_each(|a| *a = activation.apply(*a)),
        }
    }
}
