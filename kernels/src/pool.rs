//! Pooling on NHWC activations.

use rayon::prelude::*;

use crate::Shape;
use crate::error::{KernelError, ensure};
use crate::simd::simd_dispatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    /// Average over the window; padding counts towards the divisor as in PyTorch's default
    /// `count_include_pad=True` when `include_padding`.
    Average {
        include_padding: bool,
    },
}

/// A max or average pool with PyTorch's output-size rules (including `ceil_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `[top, bottom, left, right]`
    pub padding: [usize; 4],
    pub ceil_mode: bool,
}

impl Pool2d {
    pub fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        ensure(
            self.kernel.iter().chain(&self.stride).all(|&v| v > 0),
            || {
                format!(
                    "pool kernel {:?} and stride {:?} must be positive",
                    self.kernel, self.stride
                )
            },
        )?;
        let [top, bottom, left, right] = self.padding;
        let out = |size: usize, before: usize, after: usize, k: usize, s: usize| -> Option<usize> {
            let room = (size + before + after).checked_sub(k)?;
            let mut n = if self.ceil_mode {
                room.div_ceil(s)
            } else {
                room / s
            } + 1;
            // A window must start inside the input or its leading padding.
            if self.ceil_mode && (n - 1) * s >= size + before {
                n -= 1;
            }
            Some(n)
        };
        match (
            out(input.height, top, bottom, self.kernel[0], self.stride[0]),
            out(input.width, left, right, self.kernel[1], self.stride[1]),
        ) {
            (Some(h), Some(w)) => Ok(Shape::new(input.batch, h, w, input.channels)),
            _ => Err(KernelError::new(format!(
                "a {}×{} input is smaller than the {:?} pooling window",
                input.height, input.width, self.kernel
            ))),
        }
    }

    /// Pools `input` (NHWC, `shape`) into `out`, which must have the output's size.
    pub fn run(&self, input: &[f32], shape: Shape, out: &mut [f32]) -> Result<Shape, KernelError> {
        let out_shape = self.output_shape(shape)?;
        ensure(
            input.len() == shape.len() && out.len() == out_shape.len(),
            || {
                format!(
                    "pooling buffers of {} and {} values do not fit {shape:?} → {out_shape:?}",
                    input.len(),
                    out.len()
                )
            },
        )?;
        if out_shape.is_empty() {
            return Ok(out_shape);
        }
        // A few tasks per thread: rows of small images are too little work to share one by one.
        let row_len = out_shape.width * shape.channels;
        let rows_total = out_shape.batch * out_shape.height;
        let rows_per_task = rows_total.div_ceil(4 * rayon::current_num_threads()).max(1);
        out.par_chunks_mut(row_len * rows_per_task)
            .enumerate()
            .for_each(|(task, rows)| {
                pool_rows(self, input, shape, out_shape, task * rows_per_task, rows);
            });
        Ok(out_shape)
    }
}

simd_dispatch! {
    /// Output rows `first_row…` (counted over the whole batch) into `rows`.
    fn pool_rows(
        pool: &Pool2d,
        input: &[f32],
        shape: Shape,
        out_shape: Shape,
        first_row: usize,
        rows: &mut [f32],
    ) => pool_rows_body
}

/// Channels pooled together in registers: one AVX-512 vector, two AVX2 ones.
const LANES: usize = 16;

// `FUSED` is unused: no multiply here, but the dispatch compiles the loops per instruction set.
#[inline(always)]
fn pool_rows_body<const FUSED: bool>(
    pool: &Pool2d,
    input: &[f32],
    shape: Shape,
    out_shape: Shape,
    first_row: usize,
    rows: &mut [f32],
) {
    let channels = shape.channels;
    let row_len = out_shape.width * channels;
    let [kh, kw] = pool.kernel;
    let [top, bottom, left, right] = pool.padding;
    let image_len = shape.height * shape.width * channels;
    for (i, row) in rows.chunks_exact_mut(row_len).enumerate() {
        let row_index = first_row + i;
        let n = row_index / out_shape.height;
        let oy = row_index % out_shape.height;
        let image = &input[n * image_len..(n + 1) * image_len];
        let y0 = (oy * pool.stride[0]) as isize - top as isize;
        let ys = (y0.max(0) as usize)..((y0 + kh as isize).min(shape.height as isize) as usize);
        for (ox, acc) in row.chunks_exact_mut(channels).enumerate() {
            let x0 = (ox * pool.stride[1]) as isize - left as isize;
            let xs = (x0.max(0) as usize)..((x0 + kw as isize).min(shape.width as isize) as usize);
            let window = Window {
                image,
                width: shape.width,
                channels,
                ys: ys.clone(),
                xs: xs.clone(),
            };
            match pool.kind {
                PoolKind::Max => window.reduce(acc, f32::NEG_INFINITY, max_keeping_nan),
                PoolKind::Average { include_padding } => {
                    window.reduce(acc, 0.0, |a, v| a + v);
                    let count = if include_padding {
                        // The window clipped to the padded input, as PyTorch counts it.
                        let y1 = (y0 + kh as isize).min((shape.height + bottom) as isize);
                        let x1 = (x0 + kw as isize).min((shape.width + right) as isize);
                        ((y1 - y0) * (x1 - x0)) as f32
                    } else {
                        (ys.len() * xs.len()) as f32
                    };
                    let scale = 1.0 / count;
                    acc.iter_mut().for_each(|a| *a *= scale);
                }
            }
        }
    }
}

/// The larger of two values, and NaN wins as in PyTorch: a NaN `a` stays, a NaN `v` fails
/// `a >= v` and is taken. Branch-free, so it vectorises.
#[inline(always)]
fn max_keeping_nan(a: f32, v: f32) -> f32 {
    if a >= v || a.is_nan() { a } else { v }
}

/// One output pixel's window: input pixels `ys × xs` of an NHWC image.
struct Window<'a> {
    image: &'a [f32],
    width: usize,
    channels: usize,
    ys: std::ops::Range<usize>,
    xs: std::ops::Range<usize>,
}

impl Window<'_> {
    /// `acc[c]` = `start` folded with `combine` over channel `c` of every pixel in the
    /// window. [`LANES`] channels at a time are held in registers across the whole window,
    /// so each output value is stored once rather than once per tap.
    #[inline(always)]
    fn reduce(&self, acc: &mut [f32], start: f32, combine: impl Fn(f32, f32) -> f32) {
        let channels = self.channels;
        let pixel = |iy: usize, ix: usize| &self.image[(iy * self.width + ix) * channels..];
        let blocks = channels / LANES;
        for (block, out) in acc.chunks_exact_mut(LANES).enumerate() {
            let mut lanes = [start; LANES];
            for iy in self.ys.clone() {
                for ix in self.xs.clone() {
                    let src = &pixel(iy, ix)[block * LANES..][..LANES];
                    for (l, &v) in lanes.iter_mut().zip(src) {
                        *l = combine(*l, v);
                    }
                }
            }
            out.copy_from_slice(&lanes);
        }
        let rest = &mut acc[blocks * LANES..];
        rest.fill(start);
        for iy in self.ys.clone() {
            for ix in self.xs.clone() {
                let src = &pixel(iy, ix)[blocks * LANES..channels];
                for (a, &v) in rest.iter_mut().zip(src) {
                    *a = combine(*a, v);
                }
            }
        }
    }
}

/// The mean of each channel over each image's pixels: `[batch, 1, 1, channels]`.
pub fn global_average_pool(
    input: &[f32],
    shape: Shape,
    out: &mut [f32],
) -> Result<Shape, KernelError> {
    let out_shape = Shape::new(shape.batch, 1, 1, shape.channels);
    ensure(
        input.len() == shape.len() && out.len() == out_shape.len(),
        || {
            format!(
                "global pooling buffers of {} and {} values do not fit {shape:?}",
                input.len(),
                out.len()
            )
        },
    )?;
    let plane = shape.height * shape.width;
    if plane == 0 || shape.channels == 0 {
        out.fill(f32::NAN);
        return Ok(out_shape);
    }
    for (image, acc) in input
        .chunks_exact(plane * shape.channels)
        .zip(out.chunks_exact_mut(shape.channels))
    {
        acc.fill(0.0);
        for pixel in image.chunks_exact(shape.channels) {
            for (a, &v) in acc.iter_mut().zip(pixel) {
                *a += v;
            }
        }
        let scale = 1.0 / plane as f32;
        acc.iter_mut().for_each(|a| *a *= scale);
    }
    Ok(out_shape)
}
