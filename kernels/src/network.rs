//! A whole network as a list of prepared layers over NHWC values, built once at load and
//! run for any batch size.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Shape;
use crate::conv::Conv2d;
use crate::error::{KernelError, ensure};
use crate::linear::Linear;
use crate::pool::{Pool2d, global_average_pool};

/// Each layer's kernel name and time, in network order ([`Network::run_profiled`]).
pub type LayerTimes = Vec<(String, Duration)>;

/// An intermediate activation of the network (per image: height × width × channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value(usize);

#[derive(Debug, Clone)]
enum Op {
    Conv {
        conv: Conv2d,
        input: Value,
        residual: Option<Value>,
    },
    Pool {
        pool: Pool2d,
        input: Value,
    },
    GlobalAveragePool {
        input: Value,
    },
    Linear {
        linear: Linear,
        input: Value,
    },
}

impl Op {
    fn kernel_name(&self) -> String {
        match self {
            Op::Conv { conv, .. } => conv.kernel_name(),
            Op::Pool { pool, .. } => {
                let kind = match pool.kind {
                    crate::pool::PoolKind::Max => "max pool",
                    crate::pool::PoolKind::Average { .. } => "average pool",
                };
                format!("{kind} {}×{}", pool.kernel[0], pool.kernel[1])
            }
            Op::GlobalAveragePool { .. } => "global average pool".to_owned(),
            Op::Linear { .. } => "linear".to_owned(),
        }
    }

    fn inputs(&self) -> impl Iterator<Item = Value> {
        let (first, second) = match self {
            Op::Conv {
                input, residual, ..
            } => (*input, *residual),
            Op::Pool { input, .. } | Op::GlobalAveragePool { input } | Op::Linear { input, .. } => {
                (*input, None)
            }
        };
        std::iter::once(first).chain(second)
    }
}

#[derive(Debug, Clone)]
struct Step {
    op: Op,
    output: Value,
    /// First channel of `output` this step writes (branches of a concatenation).
    offset: usize,
}

/// Per image `[height, width, channels]`, and which channel ranges are written so far.
#[derive(Debug, Clone)]
struct ValueInfo {
    size: [usize; 3],
    written: Vec<(usize, usize)>,
}

impl ValueInfo {
    fn complete(&self) -> bool {
        self.written.iter().map(|(_, len)| len).sum::<usize>() == self.size[2]
    }
}

/// Builds a [`Network`] layer by layer, checking shapes as it goes.
#[derive(Debug)]
pub struct NetworkBuilder {
    input_chw: [usize; 3],
    input_affine: Option<(Vec<f32>, Vec<f32>)>,
    steps: Vec<Step>,
    values: Vec<ValueInfo>,
}

impl NetworkBuilder {
    /// A network taking `[channels, height, width]` images; returns the input's value.
    pub fn new(channels: usize, height: usize, width: usize) -> (Self, Value) {
        let builder = Self {
            input_chw: [channels, height, width],
            input_affine: None,
            steps: Vec::new(),
            values: vec![ValueInfo {
                size: [height, width, channels],
                written: vec![(0, channels)],
            }],
        };
        (builder, Value(0))
    }

    /// Maps each input channel `c` to `x · scale[c] + shift[c]` as images come in.
    pub fn input_affine(&mut self, scale: Vec<f32>, shift: Vec<f32>) -> Result<(), KernelError> {
        let c = self.input_chw[0];
        ensure(scale.len() == c && shift.len() == c, || {
            format!(
                "input affine needs {c} scales and shifts, got {} and {}",
                scale.len(),
                shift.len()
            )
        })?;
        self.input_affine = Some((scale, shift));
        Ok(())
    }

    /// `[height, width, channels]` of a value.
    pub fn size(&self, value: Value) -> [usize; 3] {
        self.values[value.0].size
    }

    fn one_image(&self, value: Value) -> Shape {
        let [h, w, c] = self.size(value);
        Shape::new(1, h, w, c)
    }

    fn new_value(&mut self, size: [usize; 3]) -> Value {
        self.values.push(ValueInfo {
            size,
            written: Vec::new(),
        });
        Value(self.values.len() - 1)
    }

    fn check_readable(&self, value: Value) -> Result<(), KernelError> {
        ensure(
            value.0 < self.values.len() && self.values[value.0].complete(),
            || {
                format!(
                    "value {} is read before all its channels are written",
                    value.0
                )
            },
        )
    }

    fn push(
        &mut self,
        op: Op,
        output: Value,
        offset: usize,
        channels: usize,
    ) -> Result<(), KernelError> {
        for input in op.inputs() {
            self.check_readable(input)?;
            ensure(input != output, || {
                "a layer cannot write the value it reads".to_owned()
            })?;
        }
        let info = &mut self.values[output.0];
        ensure(offset + channels <= info.size[2], || {
            format!(
                "channels [{offset}, {}) do not fit in {}",
                offset + channels,
                info.size[2]
            )
        })?;
        ensure(
            info.written
                .iter()
                .all(|&(o, len)| offset + channels <= o || o + len <= offset),
            || {
                format!(
                    "channels [{offset}, {}) are written twice",
                    offset + channels
                )
            },
        )?;
        info.written.push((offset, channels));
        self.steps.push(Step { op, output, offset });
        Ok(())
    }

    /// A convolution of `input`, with `residual` (same shape as the output) added before
    /// its activation.
    pub fn conv(
        &mut self,
        input: Value,
        conv: Conv2d,
        residual: Option<Value>,
    ) -> Result<Value, KernelError> {
        let out = conv.output_shape(self.one_image(input))?;
        if let Some(r) = residual {
            ensure(
                self.size(r) == [out.height, out.width, out.channels],
                || {
                    format!(
                        "residual {:?} does not match the output {out:?}",
                        self.size(r)
                    )
                },
            )?;
        }
        let output = self.new_value([out.height, out.width, out.channels]);
        let channels = out.channels;
        self.push(
            Op::Conv {
                conv,
                input,
                residual,
            },
            output,
            0,
            channels,
        )?;
        Ok(output)
    }

    /// A value of `channels` channels assembled from branches written with
    /// [`NetworkBuilder::conv_into`] (a channel concatenation without the copy).
    pub fn concatenation(&mut self, height: usize, width: usize, channels: usize) -> Value {
        self.new_value([height, width, channels])
    }

    /// A convolution of `input` written into channels `[offset, offset + out_channels)` of
    /// `output`.
    pub fn conv_into(
        &mut self,
        input: Value,
        conv: Conv2d,
        output: Value,
        offset: usize,
    ) -> Result<(), KernelError> {
        let out = conv.output_shape(self.one_image(input))?;
        let [h, w, _] = self.size(output);
        ensure([out.height, out.width] == [h, w], || {
            format!(
                "a {}×{} branch cannot join a {h}×{w} concatenation",
                out.height, out.width
            )
        })?;
        self.push(
            Op::Conv {
                conv,
                input,
                residual: None,
            },
            output,
            offset,
            out.channels,
        )
    }

    pub fn pool(&mut self, input: Value, pool: Pool2d) -> Result<Value, KernelError> {
        let out = pool.output_shape(self.one_image(input))?;
        let output = self.new_value([out.height, out.width, out.channels]);
        self.push(Op::Pool { pool, input }, output, 0, out.channels)?;
        Ok(output)
    }

    pub fn global_average_pool(&mut self, input: Value) -> Result<Value, KernelError> {
        let [_, _, c] = self.size(input);
        let output = self.new_value([1, 1, c]);
        self.push(Op::GlobalAveragePool { input }, output, 0, c)?;
        Ok(output)
    }

    /// A dense layer over the flattened (NHWC order) value.
    pub fn linear(&mut self, input: Value, linear: Linear) -> Result<Value, KernelError> {
        let [h, w, c] = self.size(input);
        ensure(h * w * c == linear.inputs(), || {
            format!(
                "a linear layer of {} inputs after a {h}×{w}×{c} value",
                linear.inputs()
            )
        })?;
        let outputs = linear.outputs();
        let output = self.new_value([1, 1, outputs]);
        self.push(Op::Linear { linear, input }, output, 0, outputs)?;
        Ok(output)
    }

    /// The finished network, whose result is `output`.
    pub fn build(self, output: Value) -> Result<Network, KernelError> {
        self.check_readable(output)?;
        // After which step each value can be given back to the buffer pool.
        let mut last_use = vec![None; self.values.len()];
        for (i, step) in self.steps.iter().enumerate() {
            for input in step.op.inputs() {
                last_use[input.0] = Some(i);
            }
        }
        last_use[output.0] = None;
        Ok(Network {
            input_chw: self.input_chw,
            input_affine: self.input_affine,
            steps: self.steps,
            sizes: self.values.iter().map(|v| v.size).collect(),
            last_use,
            output,
            buffers: Mutex::new(Vec::new()),
        })
    }
}

/// A prepared network: run it on a batch of NCHW images.
#[derive(Debug)]
pub struct Network {
    input_chw: [usize; 3],
    input_affine: Option<(Vec<f32>, Vec<f32>)>,
    steps: Vec<Step>,
    sizes: Vec<[usize; 3]>,
    last_use: Vec<Option<usize>>,
    output: Value,
    /// Buffers kept between calls, so a steady stream of batches allocates nothing.
    buffers: Mutex<Vec<Vec<f32>>>,
}

impl Network {
    /// Values per image in the result.
    pub fn output_len(&self) -> usize {
        self.sizes[self.output.0].iter().product()
    }

    pub fn input_len(&self) -> usize {
        self.input_chw.iter().product()
    }

    /// Runs `batch` images, `[batch, channels, height, width]` values, and returns the
    /// output value of each image in NHWC order, one after the other.
    pub fn run(&self, images: &[f32], batch: usize) -> Result<Vec<f32>, KernelError> {
        self.run_timed(images, batch, None)
    }

    /// [`Network::run`], also timing each layer: `(kernel name, time)` in network order.
    /// The conversion of the input to NHWC is the first entry.
    pub fn run_profiled(
        &self,
        images: &[f32],
        batch: usize,
    ) -> Result<(Vec<f32>, LayerTimes), KernelError> {
        let mut times = Vec::with_capacity(self.steps.len() + 1);
        let output = self.run_timed(images, batch, Some(&mut times))?;
        let names = std::iter::once("input to NHWC".to_owned())
            .chain(self.steps.iter().map(|step| step.op.kernel_name()));
        Ok((output, names.zip(times).collect()))
    }

    fn run_timed(
        &self,
        images: &[f32],
        batch: usize,
        mut times: Option<&mut Vec<Duration>>,
    ) -> Result<Vec<f32>, KernelError> {
        ensure(images.len() == batch * self.input_len(), || {
            format!(
                "{} input values for {batch} images of {:?}",
                images.len(),
                self.input_chw
            )
        })?;
        let mut buffers =
            std::mem::take(&mut *self.buffers.lock().unwrap_or_else(|e| e.into_inner()));
        let mut values: Vec<Option<Vec<f32>>> = vec![None; self.sizes.len()];
        let started = Instant::now();
        values[0] = Some(self.load_input(images, batch, &mut buffers));
        if let Some(times) = times.as_deref_mut() {
            times.push(started.elapsed());
        }
        let result = self.run_steps(batch, &mut values, &mut buffers, times);
        // Copied out, so the (possibly large, recycled) buffer stays in the pool.
        let output_len = self.shape(self.output, batch).len();
        let output = values[self.output.0]
            .as_ref()
            .map(|output| output[..output_len].to_vec());
        buffers.extend(values.into_iter().flatten());
        // Runs on other threads at the same time took none of these; keep theirs too.
        self.buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(buffers);
        result?;
        output.ok_or_else(|| KernelError::new("the network produced no output"))
    }

    fn shape(&self, value: Value, batch: usize) -> Shape {
        let [h, w, c] = self.sizes[value.0];
        Shape::new(batch, h, w, c)
    }

    fn load_input(&self, images: &[f32], batch: usize, buffers: &mut Vec<Vec<f32>>) -> Vec<f32> {
        let [c, h, w] = self.input_chw;
        let mut out = take_buffer(buffers, images.len());
        let affine = self
            .input_affine
            .as_ref()
            .map(|(scale, shift)| (scale.as_slice(), shift.as_slice()));
        crate::nchw_to_nhwc_into(images, Shape::new(batch, h, w, c), &mut out, affine);
        out
    }

    fn run_steps(
        &self,
        batch: usize,
        values: &mut [Option<Vec<f32>>],
        buffers: &mut Vec<Vec<f32>>,
        mut times: Option<&mut Vec<Duration>>,
    ) -> Result<(), KernelError> {
        for (i, step) in self.steps.iter().enumerate() {
            let started = Instant::now();
            let out_shape = self.shape(step.output, batch);
            let mut out = values[step.output.0]
                .take()
                .unwrap_or_else(|| take_buffer(buffers, out_shape.len()));
            let read = |v: Value| {
                let len = self.shape(v, batch).len();
                values[v.0]
                    .as_deref()
                    .map(|buffer| &buffer[..len])
                    .ok_or_else(|| KernelError::new("a value was read after it was freed"))
            };
            let out_slice = &mut out[..out_shape.len()];
            let ran = match &step.op {
                Op::Conv {
                    conv,
                    input,
                    residual,
                } => {
                    let residual = residual.map(read).transpose()?;
                    let input_shape = self.shape(*input, batch);
                    let (stride, offset) = (out_shape.channels, step.offset);
                    conv.run(
                        read(*input)?,
                        input_shape,
                        out_slice,
                        stride,
                        offset,
                        residual,
                    )
                    .map(drop)
                }
                Op::Pool { pool, input } => pool
                    .run(read(*input)?, self.shape(*input, batch), out_slice)
                    .map(drop),
                Op::GlobalAveragePool { input } => {
                    global_average_pool(read(*input)?, self.shape(*input, batch), out_slice)
                        .map(drop)
                }
                Op::Linear { linear, input } => linear.run(read(*input)?, batch, out_slice),
            };
            values[step.output.0] = Some(out);
            ran?;
            if let Some(times) = times.as_deref_mut() {
                times.push(started.elapsed());
            }
            for input in step.op.inputs() {
                if self.last_use[input.0] == Some(i)
                    && let Some(buffer) = values[input.0].take()
                {
                    buffers.push(buffer);
                }
            }
        }
        Ok(())
    }
}

/// A buffer of at least `len` values from the pool (the smallest that is long enough, else
/// a new one); callers use its first `len`. Buffers keep their full length, so handing one
/// out writes nothing: its contents are stale, and every layer writes all of its output.
fn take_buffer(buffers: &mut Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let best = buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| b.len() >= len)
        .min_by_key(|(_, b)| b.len())
        .map(|(i, _)| i);
    match best {
        Some(i) => buffers.swap_remove(i),
        None => vec![0.0; len],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{ConvGeometry, Padding};

    fn pointwise(inputs: usize, outputs: usize) -> Conv2d {
        let geometry = ConvGeometry {
            in_channels: inputs,
            out_channels: outputs,
            kernel: [1, 1],
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::symmetric(0, 0),
            groups: 1,
        };
        let weight: Vec<f32> = (0..inputs * outputs).map(|i| i as f32).collect();
        Conv2d::new(geometry, &weight, None, None, crate::Activation::Identity).unwrap()
    }

    #[test]
    fn a_concatenation_is_readable_only_once_every_branch_wrote_it() {
        let (mut b, x) = NetworkBuilder::new(2, 3, 3);
        let joined = b.concatenation(3, 3, 5);
        b.conv_into(x, pointwise(2, 3), joined, 0).unwrap();
        assert!(
            b.global_average_pool(joined).is_err(),
            "two channels still unwritten"
        );
        assert!(
            b.conv_into(x, pointwise(2, 3), joined, 1).is_err(),
            "overlapping branch"
        );
        assert!(
            b.conv_into(x, pointwise(2, 3), joined, 3).is_err(),
            "past the end"
        );
        b.conv_into(x, pointwise(2, 2), joined, 3).unwrap();
        let pooled = b.global_average_pool(joined).unwrap();
        let network = b.build(pooled).unwrap();
        // Inputs all 1: each output channel is the sum of its weights ([out, in] = 0, 1, 2, …).
        let out = network.run(&[1.0; 18], 1).unwrap();
        assert_eq!(out, vec![1.0, 5.0, 9.0, 1.0, 5.0]);
    }

    #[test]
    fn wrong_input_sizes_are_errors_and_buffers_are_reused() {
        let (mut b, x) = NetworkBuilder::new(2, 4, 4);
        let y = b.conv(x, pointwise(2, 3), None).unwrap();
        let network = b.build(y).unwrap();
        assert!(network.run(&[0.0; 31], 1).is_err());
        assert!(network.run(&[0.0; 32], 2).is_err());
        let first = network.run(&[1.0; 64], 2).unwrap();
        let again = network.run(&[1.0; 64], 2).unwrap();
        assert_eq!(first, again);
        assert_eq!(network.run(&[1.0; 32], 1).unwrap(), first[..48].to_vec());
        assert!(network.run(&[], 0).unwrap().is_empty());
    }
}
