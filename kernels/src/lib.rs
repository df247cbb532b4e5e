//! CPU kernels for Kiln's convolutional networks.
//!
//! A network is prepared once at load ([`network::NetworkBuilder`]): batch norm is folded
//! into the convolution before it, weights are packed in the layout the kernels read, and
//! activations stay NHWC (channels innermost) from the first layer to the last, so no layer
//! re-lays out its weights or its input on a call. Bias, ReLU/ReLU6 and residual additions
//! are applied to each output tile right after it is computed, while it is still in cache.
//!
//! - [`conv::Conv2d`]: any convolution. 1×1 stride-1 convolutions are one GEMM straight
//!   on the activations; others gather each output tile's receptive fields (a copy of whole
//!   channel runs, thanks to NHWC) and multiply them by the packed weights; depthwise ones
//!   run a direct kernel vectorised across channels.
//! - [`pool`]: max and average pooling, global average pooling.
//! - [`linear::Linear`]: dense layers.
//! - [`softmax`]: probabilities, or their logarithms, from rows of logits.
//! - [`gelu`]: GELU for the Transformers' feed-forward layers.
//! - [`lstm::LstmCell`] and [`gru::GruCell`]: a recurrent layer's step for many sequences
//!   at once.
//!
//! Work is split over output tiles on rayon's pool; the GEMM itself is then told to stay on
//! its thread, so the two never nest.

pub mod activation;
pub mod conv;
mod depthwise;
mod error;
pub mod gelu;
pub mod gru;
pub mod linear;
pub mod lstm;
mod matmul;
pub mod network;
pub mod pool;
mod simd;
pub mod softmax;

pub use activation::Activation;
pub use error::KernelError;

/// Builds rayon's global pool, which Kiln's kernels, the GEMM and Burn's CPU ops share,
/// with threads named `kiln-cpu-N`. Unnamed, they take the name of the thread that first
/// used the pool (a model's loader), which misleads a thread listing (`top -H`, `ps -L`).
/// False when the pool was built already: it keeps its threads and their names.
pub fn name_compute_threads() -> bool {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("kiln-cpu-{i}"))
        .build_global()
        .is_ok()
}

/// The size of an NHWC activation: `batch` images of `height`×`width` pixels with
/// `channels` values each, channels innermost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl Shape {
    pub const fn new(batch: usize, height: usize, width: usize, channels: usize) -> Self {
        Self {
            batch,
            height,
            width,
            channels,
        }
    }

    /// Pixels over the whole batch: the rows of the activation seen as a matrix.
    pub const fn pixels(&self) -> usize {
        self.batch * self.height * self.width
    }

    /// Values over the whole batch.
    pub const fn len(&self) -> usize {
        self.pixels() * self.channels
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rearrange `[batch, channels, height, width]` values (Burn's and PyTorch's layout) into
/// NHWC.
pub fn nchw_to_nhwc(input: &[f32], shape: Shape) -> Vec<f32> {
    let mut out = vec![0.0; shape.len()];
    nchw_to_nhwc_into(input, shape, &mut out, None);
    out
}

/// [`nchw_to_nhwc`] into the first `shape.len()` values of `out`, mapping each channel `c`
/// to `x · scale[c] + shift[c]` on the way when `affine` is `(scale, shift)`.
pub(crate) fn nchw_to_nhwc_into(
    input: &[f32],
    shape: Shape,
    out: &mut [f32],
    affine: Option<(&[f32], &[f32])>,
) {
    let channels = shape.channels;
    let image_len = shape.height * shape.width * channels;
    let plane = shape.height * shape.width;
    for (image, dst) in input
        .chunks_exact(image_len)
        .zip(out[..shape.len()].chunks_exact_mut(image_len))
    {
        for c in 0..channels {
            let (scale, shift) = affine.map_or((1.0, 0.0), |(scale, shift)| (scale[c], shift[c]));
            for (p, &v) in image[c * plane..(c + 1) * plane].iter().enumerate() {
                dst[p * channels + c] = v * scale + shift;
            }
        }
    }
}

/// The inverse of [`nchw_to_nhwc`].
pub fn nhwc_to_nchw(input: &[f32], shape: Shape) -> Vec<f32> {
    let Shape {
        batch,
        height,
        width,
        channels,
    } = shape;
    let plane = height * width;
    let mut out = vec![0.0; shape.len()];
    for n in 0..batch {
        let src = &input[n * plane * channels..(n + 1) * plane * channels];
        let image = &mut out[n * channels * plane..(n + 1) * channels * plane];
        for (p, pixel) in src.chunks_exact(channels).enumerate() {
            for (c, &v) in pixel.iter().enumerate() {
                image[c * plane + p] = v;
            }
        }
    }
    out
}
