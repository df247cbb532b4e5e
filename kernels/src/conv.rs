//! 2-D convolution on NHWC activations with weights packed once, batch norm folded in and
//! the epilogue fused.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::Shape;
use crate::activation::{Activation, Epilogue, apply_epilogue};
use crate::depthwise::depthwise;
use crate::error::{KernelError, ensure};
use crate::matmul::{Matrix, matmul};

/// How the input is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Zeros above, below, left and right.
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
    /// TensorFlow's and ONNX's "same": the output is `ceil(input / stride)`, the extra
    /// padding of an odd total going below and right.
    Same,
}

impl Padding {
    pub const fn symmetric(height: usize, width: usize) -> Self {
        Padding::Explicit {
            top: height,
            bottom: height,
            left: width,
            right: width,
        }
    }

    /// `[top, bottom, left, right]` for an input of `height`×`width`.
    pub fn resolve(
        &self,
        height: usize,
        width: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> [usize; 4] {
        match *self {
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => [top, bottom, left, right],
            Padding::Same => {
                let same = |size: usize, k: usize, s: usize, d: usize| {
                    let out = size.div_ceil(s);
                    let span = (k - 1) * d + 1;
                    let total = ((out.max(1) - 1) * s + span).saturating_sub(size);
                    (total / 2, total - total / 2)
                };
                let (top, bottom) = same(height, kernel[0], stride[0], dilation[0]);
                let (left, right) = same(width, kernel[1], stride[1], dilation[1]);
                [top, bottom, left, right]
            }
        }
    }
}

/// The hyper-parameters of a convolution, as PyTorch's `nn.Conv2d` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub padding: Padding,
    pub groups: usize,
}

/// Where a convolution's input pixels come from, resolved for one input size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub input: Shape,
    pub out_height: usize,
    pub out_width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Window {
    /// The input row under kernel row `ky` of output row `oy`, if inside the input.
    #[inline(always)]
    pub fn source_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let start = oy * self.stride[0] + ky * self.dilation[0];
        start
            .checked_sub(self.pad_top)
            .filter(|&i| i < self.input.height)
    }

    /// The input column under kernel column `kx` of output column `ox`, if inside.
    #[inline(always)]
    pub fn source_col(&self, ox: usize, kx: usize) -> Option<usize> {
        let start = ox * self.stride[1] + kx * self.dilation[1];
        start
            .checked_sub(self.pad_left)
            .filter(|&i| i < self.input.width)
    }
}

impl ConvGeometry {
    fn validate(&self) -> Result<(), KernelError> {
        let g = self.groups;
        ensure(
            g > 0 && self.in_channels.is_multiple_of(g) && self.out_channels.is_multiple_of(g),
            || {
                format!(
                    "{} groups do not divide {} input and {} output channels",
                    g, self.in_channels, self.out_channels
                )
            },
        )?;
        ensure(
            self.kernel
                .iter()
                .chain(&self.stride)
                .chain(&self.dilation)
                .all(|&v| v > 0),
            || {
                format!(
                    "kernel {:?}, stride {:?} and dilation {:?} must be positive",
                    self.kernel, self.stride, self.dilation
                )
            },
        )
    }

    /// The output's height and width for an input of `height`×`width`.
    pub fn output_size(&self, height: usize, width: usize) -> Result<[usize; 2], KernelError> {
        let [top, bottom, left, right] =
            self.padding
                .resolve(height, width, self.kernel, self.stride, self.dilation);
        let out = |size: usize, pad: usize, k: usize, s: usize, d: usize| {
            let span = (k - 1) * d + 1;
            (size + pad).checked_sub(span).map(|room| room / s + 1)
        };
        match (
            out(
                height,
                top + bottom,
                self.kernel[0],
                self.stride[0],
                self.dilation[0],
            ),
            out(
                width,
                left + right,
                self.kernel[1],
                self.stride[1],
                self.dilation[1],
            ),
        ) {
            (Some(h), Some(w)) => Ok([h, w]),
            _ => Err(KernelError::new(format!(
                "a {}×{} input is smaller than the {:?} kernel (dilation {:?})",
                height, width, self.kernel, self.dilation
            ))),
        }
    }

    fn window(&self, input: Shape) -> Result<Window, KernelError> {
        let [out_height, out_width] = self.output_size(input.height, input.width)?;
        let [pad_top, _, pad_left, _] = self.padding.resolve(
            input.height,
            input.width,
            self.kernel,
            self.stride,
            self.dilation,
        );
        Ok(Window {
            input,
            out_height,
            out_width,
            kernel: self.kernel,
            stride: self.stride,
            dilation: self.dilation,
            pad_top,
            pad_left,
        })
    }
}

/// Batch-norm statistics and affine parameters, per channel.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub epsilon: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 1×1, stride 1, no padding, one group: a GEMM straight on the activations.
    Pointwise,
    /// One group per channel: the direct kernel.
    Depthwise,
    /// Everything else: receptive fields gathered per tile, then a GEMM per group.
    Gathered,
}

/// A convolution prepared for inference: weights packed (and batch norm folded in) once.
#[derive(Debug, Clone)]
pub struct Conv2d {
    geometry: ConvGeometry,
    kind: Kind,
    /// `Pointwise`/`Gathered`: per group, a row-major `[kh·kw·cin_g, cout_g]` matrix whose
    /// rows follow the gathered receptive field (tap by tap, channels innermost).
    /// `Depthwise`: `[kh·kw, channels]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
    activation: Activation,
    /// A residual is added after the activation instead of before it.
    residual_after_activation: bool,
}

/// Output pixels per tile whose receptive fields are gathered at once: the gathered tile
/// stays in L2 (about 512 KiB here).
const GATHER_TILE_VALUES: usize = 128 * 1024;
/// Below this many output pixels per thread the work is not split by rows (the GEMM may
/// still split it by columns).
const MIN_ROWS_PER_TASK: usize = 48;

thread_local! {
    static GATHERED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Conv2d {
    /// Prepares a convolution from PyTorch-layout weights `[out, in / groups, kh, kw]`, an
    /// optional bias and an optional batch norm that follows it (folded in here).
    pub fn new(
        geometry: ConvGeometry,
        weight: &[f32],
        bias: Option<&[f32]>,
        batch_norm: Option<&BatchNorm>,
        activation: Activation,
    ) -> Result<Self, KernelError> {
        geometry.validate()?;
        let ConvGeometry {
            in_channels,
            out_channels,
            kernel: [kh, kw],
            groups,
            ..
        } = geometry;
        let cin_g = in_channels / groups;
        let cout_g = out_channels / groups;
        let taps = kh * kw;
        ensure(weight.len() == out_channels * cin_g * taps, || {
            format!(
                "convolution weight has {} values, expected {out_channels}×{cin_g}×{kh}×{kw}",
                weight.len()
            )
        })?;
        let mut bias = match bias {
            Some(b) => {
                ensure(b.len() == out_channels, || {
                    format!("bias has {} values for {out_channels} channels", b.len())
                })?;
                b.to_vec()
            }
            None => vec![0.0; out_channels],
        };
        // y = gamma (conv(x) + b - mean) / sqrt(var + eps) + beta, per output channel.
        let mut scale = vec![1.0f32; out_channels];
        if let Some(bn) = batch_norm {
            for (name, v) in [
                ("gamma", &bn.gamma),
                ("beta", &bn.beta),
                ("mean", &bn.mean),
                ("var", &bn.var),
            ] {
                ensure(v.len() == out_channels, || {
                    format!(
                        "batch norm {name} has {} values for {out_channels} channels",
                        v.len()
                    )
                })?;
            }
            for o in 0..out_channels {
                let s =
                    (f64::from(bn.gamma[o]) / (f64::from(bn.var[o]) + bn.epsilon).sqrt()) as f32;
                scale[o] = s;
                bias[o] = (bias[o] - bn.mean[o]) * s + bn.beta[o];
            }
        }
        let depthwise = groups == in_channels && groups == out_channels && groups > 1;
        let pointwise = taps == 1
            && geometry.stride == [1, 1]
            && groups == 1
            && matches!(
                geometry.padding,
                Padding::Explicit {
                    top: 0,
                    bottom: 0,
                    left: 0,
                    right: 0
                } | Padding::Same
            );
        let kind = if depthwise {
            Kind::Depthwise
        } else if pointwise {
            Kind::Pointwise
        } else {
            Kind::Gathered
        };
        let mut packed = vec![0.0; weight.len()];
        match kind {
            Kind::Depthwise => {
                for c in 0..out_channels {
                    for t in 0..taps {
                        packed[t * out_channels + c] = weight[c * taps + t] * scale[c];
                    }
                }
            }
            Kind::Pointwise | Kind::Gathered => {
                let rows = taps * cin_g;
                for g in 0..groups {
                    let block = &mut packed[g * rows * cout_g..(g + 1) * rows * cout_g];
                    for oc in 0..cout_g {
                        let o = g * cout_g + oc;
                        for ic in 0..cin_g {
                            for t in 0..taps {
                                block[(t * cin_g + ic) * cout_g + oc] =
                                    weight[(o * cin_g + ic) * taps + t] * scale[o];
                            }
                        }
                    }
                }
            }
        }
        Ok(Self {
            geometry,
            kind,
            weights: packed,
            bias,
            activation,
            residual_after_activation: false,
        })
    }

    /// The same convolution adding its residual after the activation, `act(conv(x)) + r`:
    /// a residual branch whose non-linearity sits inside the branch.
    pub fn with_residual_after_activation(mut self) -> Self {
        self.residual_after_activation = true;
        self
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// Which kernel runs it, e.g. "depthwise 5×5/2" or "pointwise 1×1" (for profiles).
    pub fn kernel_name(&self) -> String {
        let [kh, kw] = self.geometry.kernel;
        let stride = match self.geometry.stride {
            [1, 1] => String::new(),
            [s, t] if s == t => format!("/{s}"),
            [s, t] => format!("/{s}×{t}"),
        };
        let kind = match self.kind {
            Kind::Pointwise => "pointwise",
            Kind::Depthwise => "depthwise",
            Kind::Gathered => "gathered",
        };
        format!("{kind} {kh}×{kw}{stride}")
    }

    /// The output's shape for `input`, or why the input does not fit.
    pub fn output_shape(&self, input: Shape) -> Result<Shape, KernelError> {
        ensure(input.channels == self.geometry.in_channels, || {
            format!(
                "input has {} channels, the convolution takes {}",
                input.channels, self.geometry.in_channels
            )
        })?;
        let [h, w] = self.geometry.output_size(input.height, input.width)?;
        Ok(Shape::new(input.batch, h, w, self.geometry.out_channels))
    }

    /// Runs the convolution on `input` (NHWC, `shape`), writing its output channels at
    /// `[offset, offset + out_channels)` of each `stride`-wide row of `out` (so branches can
    /// write straight into their slice of a concatenation). `residual`, when given, is
    /// added before the activation (after it, see
    /// [`with_residual_after_activation`](Self::with_residual_after_activation)) and has the
    /// output's shape with no gaps.
    pub fn run(
        &self,
        input: &[f32],
        shape: Shape,
        out: &mut [f32],
        stride: usize,
        offset: usize,
        residual: Option<&[f32]>,
    ) -> Result<Shape, KernelError> {
        let out_shape = self.output_shape(shape)?;
        let cout = self.geometry.out_channels;
        ensure(input.len() == shape.len(), || {
            format!(
                "input has {} values, its shape {shape:?} needs {}",
                input.len(),
                shape.len()
            )
        })?;
        ensure(
            offset + cout <= stride && out.len() == out_shape.pixels() * stride,
            || {
                format!(
                    "output buffer of {} values cannot hold {out_shape:?} at offset {offset} of rows of {stride}",
                    out.len()
                )
            },
        )?;
        if let Some(r) = residual {
            ensure(r.len() == out_shape.len(), || {
                format!(
                    "residual has {} values, the output {}",
                    r.len(),
                    out_shape.len()
                )
            })?;
        }
        if out_shape.is_empty() {
            return Ok(out_shape);
        }
        let window = self.geometry.window(shape)?;
        let epilogue = Epilogue {
            bias: &self.bias,
            activation: self.activation,
            residual_after_activation: self.residual_after_activation,
        };
        match self.kind {
            Kind::Depthwise => depthwise(
                input,
                &window,
                &self.weights,
                out,
                stride,
                offset,
                residual,
                epilogue,
            ),
            Kind::Pointwise | Kind::Gathered => self.run_gemm(
                input, &window, out_shape, out, stride, offset, residual, epilogue,
            ),
        }
        Ok(out_shape)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_gemm(
        &self,
        input: &[f32],
        window: &Window,
        out_shape: Shape,
        out: &mut [f32],
        stride: usize,
        offset: usize,
        residual: Option<&[f32]>,
        epilogue: Epilogue<'_>,
    ) {
        let pixels = out_shape.pixels();
        let cin_g = self.geometry.in_channels / self.geometry.groups;
        let depth = self.geometry.kernel[0] * self.geometry.kernel[1] * cin_g;
        let threads = rayon::current_num_threads().max(1);
        // Rows per task: a gathered tile that stays in L2, and at least one task per thread.
        let tile = match self.kind {
            // One GEMM per thread straight on the activations (smaller tiles measured no faster).
            Kind::Pointwise => pixels.div_ceil(threads),
            _ => (GATHER_TILE_VALUES / depth.max(1))
                .clamp(16, 1024)
                .min(pixels.div_ceil(threads)),
        }
        .max(1);
        let cout = self.geometry.out_channels;
        let split = pixels >= MIN_ROWS_PER_TASK * threads;
        let run_tile = |first: usize, chunk: &mut [f32], gemm_threads: usize| {
            let rows = chunk.len() / stride;
            self.tile_product(
                input,
                window,
                first,
                rows,
                depth,
                chunk,
                stride,
                offset,
                gemm_threads,
            );
            let skip = residual.map(|r| &r[first * cout..(first + rows) * cout]);
            apply_epilogue(&mut chunk[offset..], rows, stride, skip, epilogue);
        };
        if split {
            out.par_chunks_mut(tile * stride)
                .enumerate()
                .for_each(|(i, chunk)| run_tile(i * tile, chunk, 1));
        } else {
            // Too few rows to share: one tile of every row, the GEMM splitting the columns.
            run_tile(0, out, threads);
        }
    }

    /// The matrix product for output rows `[first, first + rows)`, written into `chunk`.
    #[allow(clippy::too_many_arguments)]
    fn tile_product(
        &self,
        input: &[f32],
        window: &Window,
        first: usize,
        rows: usize,
        depth: usize,
        chunk: &mut [f32],
        stride: usize,
        offset: usize,
        gemm_threads: usize,
    ) {
        let groups = self.geometry.groups;
        let cin = self.geometry.in_channels;
        let cin_g = cin / groups;
        let cout_g = self.geometry.out_channels / groups;
        for g in 0..groups {
            let rhs = Matrix {
                data: &self.weights[g * depth * cout_g..(g + 1) * depth * cout_g],
                rows: depth,
                cols: cout_g,
                stride: cout_g,
            };
            let dst = &mut chunk[offset + g * cout_g..];
            if self.kind == Kind::Pointwise {
                let lhs = Matrix {
                    data: &input[first * cin..(first + rows) * cin],
                    rows,
                    cols: cin,
                    stride: cin,
                };
                matmul(dst, stride, lhs, rhs, gemm_threads);
            } else {
                GATHERED.with_borrow_mut(|gathered| {
                    gather(input, window, first, rows, g * cin_g, cin_g, gathered);
                    let lhs = Matrix {
                        data: &gathered[..rows * depth],
                        rows,
                        cols: depth,
                        stride: depth,
                    };
                    matmul(dst, stride, lhs, rhs, gemm_threads);
                });
            }
        }
    }
}

/// Copies the receptive fields of output rows `[first, first + rows)` into `gathered`, one
/// row of `kh·kw·channels` values per output pixel (taps outer, channels inner), zeros
/// where the kernel hangs over the padding. Channels `[channel0, channel0 + channels)`.
fn gather(
    input: &[f32],
    window: &Window,
    first: usize,
    rows: usize,
    channel0: usize,
    channels: usize,
    gathered: &mut Vec<f32>,
) {
    let [kh, kw] = window.kernel;
    let depth = kh * kw * channels;
    let Shape {
        height,
        width,
        channels: in_channels,
        ..
    } = window.input;
    // Every value is written below (zeros over the padding), so stale contents can stay.
    gathered.resize(rows * depth, 0.0);
    let plane = window.out_height * window.out_width;
    let tap_row = kw * channels;
    let contiguous_taps = window.dilation[1] == 1 && channels == in_channels;
    for (r, row) in gathered[..rows * depth].chunks_exact_mut(depth).enumerate() {
        let pixel = first + r;
        let n = pixel / plane;
        let oy = (pixel % plane) / window.out_width;
        let ox = pixel % window.out_width;
        let image =
            &input[n * height * width * in_channels..(n + 1) * height * width * in_channels];
        for (ky, taps) in row.chunks_exact_mut(tap_row).enumerate() {
            let Some(iy) = window.source_row(oy, ky) else {
                taps.fill(0.0);
                continue;
            };
            let line = &image[iy * width * in_channels..(iy + 1) * width * in_channels];
            // With every channel and no dilation, a kernel row's taps are one run of the
            // NHWC input row when the window lies inside it horizontally.
            let first_x = (ox * window.stride[1]).checked_sub(window.pad_left);
            if let Some(x0) = first_x
                && contiguous_taps
                && x0 + kw <= width
            {
                copy(taps, &line[x0 * in_channels..(x0 + kw) * in_channels]);
                continue;
            }
            for (kx, tap) in taps.chunks_exact_mut(channels).enumerate() {
                match window.source_col(ox, kx) {
                    Some(ix) => {
                        let src = ix * in_channels + channel0;
                        copy(tap, &line[src..src + channels]);
                    }
                    None => tap.fill(0.0),
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)`, inlined for the short runs of networks with few channels,
/// where a call to `memmove` per tap costs more than the copy.
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32]) {
    if dst.len() <= 16 {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}
