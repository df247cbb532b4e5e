//! Every kernel against Burn's own ops (flex backend, NCHW) on random shapes, strides,
//! paddings, dilations and group counts, plus each geometry the model zoo uses.

use burn::prelude::*;
use burn::tensor::activation::{gelu, log_softmax, sigmoid, softmax};
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use kiln_kernels::conv::{BatchNorm, Conv2d, ConvGeometry, Padding};
use kiln_kernels::gelu::gelu_in_place;
use kiln_kernels::gru::{self, GruCell};
use kiln_kernels::linear::Linear;
use kiln_kernels::lstm::{GATES, LstmCell};
use kiln_kernels::pool::{Pool2d, PoolKind, global_average_pool};
use kiln_kernels::softmax::{log_softmax_in_place, softmax_in_place, softmax_into};
use kiln_kernels::{Activation, Shape, nchw_to_nhwc, nhwc_to_nchw};
use proptest::prelude::*;

fn device() -> Device {
    Device::flex()
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor4(data: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data, shape), &device())
}

fn tensor1(data: Vec<f32>) -> Tensor<1> {
    let n = data.len();
    Tensor::from_data(TensorData::new(data, [n]), &device())
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn assert_close(ours: &[f32], reference: &[f32], what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths");
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * scale,
            "{what}: value {i} is {a}, Burn gives {b} (scale {scale})"
        );
    }
}

#[derive(Debug, Clone)]
struct ConvCase {
    batch: usize,
    height: usize,
    width: usize,
    in_channels: usize,
    out_channels: usize,
    groups: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: Padding,
    bias: bool,
    batch_norm: bool,
    residual: bool,
    /// The residual is added after the activation instead of before it.
    residual_after_activation: bool,
    activation: Activation,
    seed: u64,
}

fn run_conv_case(case: &ConvCase) {
    let geometry = ConvGeometry {
        in_channels: case.in_channels,
        out_channels: case.out_channels,
        kernel: case.kernel,
        stride: case.stride,
        dilation: case.dilation,
        padding: case.padding,
        groups: case.groups,
    };
    let [oh, ow] = match geometry.output_size(case.height, case.width) {
        Ok(size) => size,
        Err(_) => return, // input smaller than the kernel: nothing to compare
    };
    let cin_g = case.in_channels / case.groups;
    let [kh, kw] = case.kernel;
    let input_shape = [case.batch, case.in_channels, case.height, case.width];
    let input = values(input_shape.iter().product(), case.seed);
    let weight = values(case.out_channels * cin_g * kh * kw, case.seed + 1);
    let bias = case.bias.then(|| values(case.out_channels, case.seed + 2));
    let bn = case.batch_norm.then(|| BatchNorm {
        gamma: values(case.out_channels, case.seed + 3)
            .iter()
            .map(|v| v + 1.5)
            .collect(),
        beta: values(case.out_channels, case.seed + 4),
        mean: values(case.out_channels, case.seed + 5),
        var: values(case.out_channels, case.seed + 6)
            .iter()
            .map(|v| v + 1.2)
            .collect(),
        epsilon: 1e-3,
    });
    let out_shape = Shape::new(case.batch, oh, ow, case.out_channels);
    let residual = case
        .residual
        .then(|| values(out_shape.len(), case.seed + 7));

    // Burn: conv2d, then batch norm as its formula, residual, activation.
    let [top, bottom, left, right] = case.padding.resolve(
        case.height,
        case.width,
        case.kernel,
        case.stride,
        case.dilation,
    );
    let options = ConvOptions::new_with_padding(
        case.stride,
        [(top, bottom), (left, right)],
        case.dilation,
        case.groups,
    );
    let mut expected = conv2d(
        tensor4(input.clone(), input_shape),
        tensor4(weight.clone(), [case.out_channels, cin_g, kh, kw]),
        bias.clone().map(tensor1),
        options,
    );
    if let Some(bn) = &bn {
        let per_channel = |v: &[f32]| tensor1(v.to_vec()).reshape([1, case.out_channels, 1, 1]);
        let std = per_channel(&bn.var).add_scalar(bn.epsilon).sqrt();
        expected = expected
            .sub(per_channel(&bn.mean))
            .div(std)
            .mul(per_channel(&bn.gamma))
            .add(per_channel(&bn.beta));
    }
    let residual_tensor = residual.as_ref().map(|r| {
        tensor4(
            nhwc_to_nchw(r, out_shape),
            [case.batch, case.out_channels, oh, ow],
        )
    });
    let activate = |x: Tensor<4>| match case.activation {
        Activation::Identity => x,
        Activation::Relu => x.clamp_min(0.0),
        Activation::Relu6 => x.clamp(0.0, 6.0),
    };
    expected = match residual_tensor {
        Some(r) if case.residual_after_activation => activate(expected).add(r),
        Some(r) => activate(expected.add(r)),
        None => activate(expected),
    };
    let expected = to_vec(expected);

    let mut conv = Conv2d::new(
        geometry,
        &weight,
        bias.as_deref(),
        bn.as_ref(),
        case.activation,
    )
    .unwrap();
    if case.residual_after_activation {
        conv = conv.with_residual_after_activation();
    }
    let in_shape = Shape::new(case.batch, case.height, case.width, case.in_channels);
    let nhwc = nchw_to_nhwc(&input, in_shape);
    // Written into the middle of wider rows, as a branch of a concatenation is.
    let (offset, stride) = if case.residual {
        (0, case.out_channels)
    } else {
        (3, case.out_channels + 5)
    };
    let mut out = vec![f32::NAN; out_shape.pixels() * stride];
    let got = conv
        .run(
            &nhwc,
            in_shape,
            &mut out,
            stride,
            offset,
            residual.as_deref(),
        )
        .unwrap();
    assert_eq!(got, out_shape);
    let mut dense = Vec::with_capacity(out_shape.len());
    for row in out.chunks_exact(stride) {
        dense.extend_from_slice(&row[offset..offset + case.out_channels]);
        assert!(
            row[..offset]
                .iter()
                .chain(&row[offset + case.out_channels..])
                .all(|v| v.is_nan()),
            "wrote outside its channels"
        );
    }
    assert_close(
        &nhwc_to_nchw(&dense, out_shape),
        &expected,
        &format!("{case:?}"),
    );
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Identity),
        Just(Activation::Relu),
        Just(Activation::Relu6)
    ]
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Same),
        (0..3usize, 0..3usize, 0..3usize, 0..3usize).prop_map(|(top, bottom, left, right)| {
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            }
        }),
    ]
}

prop_compose! {
    fn conv_case()(
        batch in 1..3usize,
        height in 1..12usize,
        width in 1..12usize,
        groups_kind in 0..3usize,
        group_width in 1..5usize,
        groups_n in 1..4usize,
        out_per_group in 1..6usize,
        kernel in (1..6usize, 1..6usize),
        stride in (1..3usize, 1..3usize),
        dilation in (1..3usize, 1..3usize),
        padding in padding(),
        bias in any::<bool>(),
        batch_norm in any::<bool>(),
        residual in any::<bool>(),
        residual_after_activation in any::<bool>(),
        activation in activation(),
        seed in any::<u64>(),
    ) -> ConvCase {
        // Ordinary, grouped, or depthwise (one group per channel, as many outputs).
        let (in_channels, out_channels, groups) = match groups_kind {
            0 => (group_width, out_per_group, 1),
            1 => (group_width * groups_n, out_per_group * groups_n, groups_n),
            _ => (group_width * groups_n, group_width * groups_n, group_width * groups_n),
        };
        ConvCase {
            batch, height, width, in_channels, out_channels, groups,
            kernel: [kernel.0, kernel.1], stride: [stride.0, stride.1], dilation: [dilation.0, dilation.1],
            padding, bias, batch_norm, residual, residual_after_activation, activation, seed,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn convolution_matches_burn(case in conv_case()) {
        run_conv_case(&case);
    }

    #[test]
    fn pooling_matches_burn(
        batch in 1..3usize, height in 1..10usize, width in 1..10usize,
        // Fewer channels than a register holds, and more: whole blocks and a remainder.
        channels in prop_oneof![1..5usize, 15..37usize],
        kernel in (1..4usize, 1..4usize), stride in (1..3usize, 1..3usize), pad in 0..2usize,
        ceil_mode in any::<bool>(), max in any::<bool>(), include_padding in any::<bool>(), seed in any::<u64>(),
    ) {
        // PyTorch (and Burn) require padding at most half the kernel.
        let pad = pad.min(kernel.0 / 2).min(kernel.1 / 2);
        run_pool_case(batch, [height, width], channels, [kernel.0, kernel.1], [stride.0, stride.1], pad, ceil_mode, max, include_padding, seed);
    }

    #[test]
    fn softmax_matches_burn(
        rows in 1..4usize, len in prop_oneof![1..40usize, 4990..5010usize],
        spread in prop_oneof![Just(1.0f32), Just(30.0f32), Just(300.0f32)], seed in any::<u64>(),
    ) {
        let logits: Vec<f32> = values(rows * len, seed).iter().map(|v| v * spread).collect();
        let expected = to_vec(softmax(
            Tensor::<2>::from_data(TensorData::new(logits.clone(), [rows, len]), &device()),
            1,
        ));
        let mut ours = vec![0.0; logits.len()];
        for (row, out) in logits.chunks(len).zip(ours.chunks_mut(len)) {
            softmax_into(row, out);
        }
        // Relative to each probability: the smallest ones are what sampling at a high
        // temperature reads.
        for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
            prop_assert!((a - b).abs() <= 1e-5 * b.abs() + 1e-30, "value {} is {}, Burn gives {}", i, a, b);
        }
        let mut in_place = logits;
        in_place.chunks_mut(len).for_each(softmax_in_place);
        prop_assert_eq!(in_place, ours);
    }

    #[test]
    fn log_softmax_matches_burn(
        rows in 1..4usize, len in prop_oneof![1..70usize, 4990..5010usize],
        spread in prop_oneof![Just(1.0f32), Just(30.0f32), Just(300.0f32)], seed in any::<u64>(),
    ) {
        let logits: Vec<f32> = values(rows * len, seed).iter().map(|v| v * spread).collect();
        let expected = to_vec(log_softmax(
            Tensor::<2>::from_data(TensorData::new(logits.clone(), [rows, len]), &device()),
            1,
        ));
        let mut ours = logits;
        ours.chunks_mut(len).for_each(log_softmax_in_place);
        for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
            prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "value {} is {}, Burn gives {}", i, a, b);
        }
    }

    /// A few steps of the cell against the LSTM equations in Burn's ops.
    #[test]
    fn an_lstm_step_matches_burn(
        rows in 1..40usize, inputs in 1..70usize, hidden in 1..70usize,
        spread in prop_oneof![Just(0.3f32), Just(1.0f32), Just(4.0f32)], seed in any::<u64>(),
    ) {
        let width = GATES * hidden;
        let scaled = |len, seed| -> Vec<f32> { values(len, seed).iter().map(|v| v * spread).collect() };
        let recurrent = scaled(hidden * width, seed);
        let cell = LstmCell::new(hidden, recurrent.clone()).unwrap();
        let matrix = |v: &[f32], rows: usize, cols: usize| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, cols]), &device())
        };
        let w_input = matrix(&scaled(inputs * width, seed ^ 1), inputs, width);
        let w_hidden = matrix(&recurrent, hidden, width);
        let b = tensor1(values(width, seed ^ 2)).reshape([1, width]);
        let (mut h, mut c) = (values(rows * hidden, seed ^ 3), values(rows * hidden, seed ^ 4));
        let (mut burn_h, mut burn_c) = (matrix(&h, rows, hidden), matrix(&c, rows, hidden));
        for step in 0..3u64 {
            let x = matrix(&values(rows * inputs, seed ^ (10 + step)), rows, inputs);
            let input_gates = x.matmul(w_input.clone()) + b.clone();
            let mut gates = to_vec(input_gates.clone());
            cell.step(&mut gates, rows, &mut h, &mut c).unwrap();
            let gates = input_gates + burn_h.matmul(w_hidden.clone());
            let gate = |g: usize| gates.clone().slice(s![.., g * hidden..(g + 1) * hidden]);
            burn_c = sigmoid(gate(1)) * burn_c + sigmoid(gate(0)) * gate(2).tanh();
            burn_h = sigmoid(gate(3)) * burn_c.clone().tanh();
            assert_close(&c, &to_vec(burn_c.clone()), "LSTM cell state");
            assert_close(&h, &to_vec(burn_h.clone()), "LSTM hidden state");
        }
    }

    /// A few steps of the GRU cell against its equations (reset after the hidden product)
    /// in Burn's ops.
    #[test]
    fn a_gru_step_matches_burn(
        rows in 1..40usize, inputs in 1..70usize, hidden in 1..70usize,
        spread in prop_oneof![Just(0.3f32), Just(1.0f32), Just(4.0f32)], seed in any::<u64>(),
    ) {
        let width = gru::GATES * hidden;
        let scaled = |len, seed| -> Vec<f32> { values(len, seed).iter().map(|v| v * spread).collect() };
        let (recurrent, recurrent_bias) = (scaled(hidden * width, seed), values(width, seed ^ 5));
        let cell = GruCell::new(hidden, recurrent.clone(), recurrent_bias.clone()).unwrap();
        let matrix = |v: &[f32], rows: usize, cols: usize| {
            Tensor::<2>::from_data(TensorData::new(v.to_vec(), [rows, cols]), &device())
        };
        let w_input = matrix(&scaled(inputs * width, seed ^ 1), inputs, width);
        let w_hidden = matrix(&recurrent, hidden, width);
        let b_input = tensor1(values(width, seed ^ 2)).reshape([1, width]);
        let b_hidden = tensor1(recurrent_bias).reshape([1, width]);
        let mut h = values(rows * hidden, seed ^ 3);
        let mut burn_h = matrix(&h, rows, hidden);
        let gate = |t: &Tensor<2>, g: usize| t.clone().slice(s![.., g * hidden..(g + 1) * hidden]);
        for step in 0..3u64 {
            let x = matrix(&values(rows * inputs, seed ^ (10 + step)), rows, inputs);
            let input_gates = x.matmul(w_input.clone()) + b_input.clone();
            cell.step(&to_vec(input_gates.clone()), rows, &mut h).unwrap();
            let hidden_gates = burn_h.clone().matmul(w_hidden.clone()) + b_hidden.clone();
            let z = sigmoid(gate(&input_gates, 0) + gate(&hidden_gates, 0));
            let r = sigmoid(gate(&input_gates, 1) + gate(&hidden_gates, 1));
            let n = (gate(&input_gates, 2) + r * gate(&hidden_gates, 2)).tanh();
            burn_h = z.clone().neg().add_scalar(1.0) * n + z * burn_h;
            assert_close(&h, &to_vec(burn_h.clone()), "GRU hidden state");
        }
    }

    #[test]
    fn gelu_matches_burn(
        len in prop_oneof![1..40usize, 1000..1100usize],
        spread in prop_oneof![Just(1.0f32), Just(4.0f32), Just(30.0f32)], seed in any::<u64>(),
    ) {
        let inputs: Vec<f32> = values(len, seed).iter().map(|v| v * spread).collect();
        let expected = to_vec(gelu(Tensor::<1>::from_data(
            TensorData::new(inputs.clone(), [len]),
            &device(),
        )));
        let mut ours = inputs.clone();
        gelu_in_place(&mut ours);
        for ((x, a), b) in inputs.iter().zip(&ours).zip(&expected) {
            prop_assert!((a - b).abs() <= 1e-6 * (1.0 + x.abs()), "gelu({}) is {}, Burn gives {}", x, a, b);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_pool_case(
    batch: usize,
    [height, width]: [usize; 2],
    channels: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: usize,
    ceil_mode: bool,
    max: bool,
    include_padding: bool,
    seed: u64,
) {
    let kind = if max {
        PoolKind::Max
    } else {
        PoolKind::Average { include_padding }
    };
    let pool = Pool2d {
        kind,
        kernel,
        stride,
        padding: [pad; 4],
        ceil_mode,
    };
    let in_shape = Shape::new(batch, height, width, channels);
    let Ok(out_shape) = pool.output_shape(in_shape) else {
        return;
    };
    let input = values(in_shape.len(), seed);
    let x = tensor4(input.clone(), [batch, channels, height, width]);
    let expected = if max {
        max_pool2d(
            x,
            MaxPoolOptions::new(kernel)
                .with_stride(stride)
                .with_padding([pad, pad])
                .with_ceil_mode(ceil_mode),
        )
    } else {
        avg_pool2d(
            x,
            AvgPoolOptions::new(kernel)
                .with_stride(stride)
                .with_padding([pad, pad])
                .with_count_include_pad(include_padding)
                .with_ceil_mode(ceil_mode),
        )
    };
    assert_eq!(
        expected.dims(),
        [batch, channels, out_shape.height, out_shape.width],
        "output size, {pool:?}"
    );
    let mut out = vec![0.0; out_shape.len()];
    pool.run(&nchw_to_nhwc(&input, in_shape), in_shape, &mut out)
        .unwrap();
    assert_close(
        &nhwc_to_nchw(&out, out_shape),
        &to_vec(expected),
        &format!("{pool:?} on {in_shape:?}"),
    );
}

/// Each convolution geometry of the zoo's networks (kernel, stride, padding, groups,
/// dilation), at small sizes.
#[test]
fn every_zoo_convolution_matches_burn() {
    let explicit = |p: usize| Padding::symmetric(p, p);
    #[rustfmt::skip]
    let geometries: &[([usize; 2], usize, Padding, bool)] = &[
        ([7, 7], 2, explicit(3), false),  // ResNet and GoogLeNet stems
        ([3, 3], 1, explicit(1), false),  // ResNet, GoogLeNet, VGG
        ([3, 3], 2, explicit(1), false),  // ResNet's strided 3×3 (v1.5)
        ([1, 1], 1, explicit(0), false),  // pointwise
        ([1, 1], 2, explicit(0), false),  // ResNet's downsampling shortcut
        ([5, 5], 1, explicit(2), false),  // LeNet's first convolution
        ([5, 5], 1, explicit(0), false),  // LeNet's second
        ([11, 11], 4, explicit(2), false), // AlexNet
        ([3, 3], 2, explicit(0), false),  // Inception v3
        ([1, 7], 1, Padding::symmetric(0, 3), false), // Inception v3
        ([7, 1], 1, Padding::symmetric(3, 0), false),
        ([3, 3], 2, Padding::Same, false), // EfficientNet-Lite0 stem
        ([3, 3], 1, Padding::Same, true),  // its depthwise convolutions
        ([3, 3], 2, Padding::Same, true),
        ([5, 5], 1, Padding::Same, true),
        ([5, 5], 2, Padding::Same, true),
        ([1, 1], 1, Padding::Same, false),
    ];
    for (i, &(kernel, stride, padding, depthwise)) in geometries.iter().enumerate() {
        for (height, width) in [(23, 23), (14, 9)] {
            let channels = if depthwise { 24 } else { 5 };
            run_conv_case(&ConvCase {
                batch: 2,
                height,
                width,
                in_channels: channels,
                out_channels: if depthwise { channels } else { 19 },
                groups: if depthwise { channels } else { 1 },
                kernel,
                stride: [stride, stride],
                dilation: [1, 1],
                padding,
                bias: i % 2 == 0,
                batch_norm: true,
                residual: i % 3 == 0,
                residual_after_activation: i % 2 == 1,
                activation: [Activation::Relu, Activation::Relu6, Activation::Identity][i % 3],
                seed: i as u64,
            });
        }
    }
}

/// Large enough that the work is split into many tiles over the threads.
#[test]
fn a_convolution_split_over_many_tiles_matches_burn() {
    run_conv_case(&ConvCase {
        batch: 3,
        height: 40,
        width: 33,
        in_channels: 48,
        out_channels: 40,
        groups: 1,
        kernel: [3, 3],
        stride: [1, 1],
        dilation: [1, 1],
        padding: Padding::symmetric(1, 1),
        bias: true,
        batch_norm: true,
        residual: true,
        residual_after_activation: true,
        activation: Activation::Relu,
        seed: 99,
    });
}

#[test]
fn zoo_pools_match_burn() {
    // ResNet's 3×3/2 pad 1, GoogLeNet's ceil-mode 3×3/2, 3×3/1 pad 1 and 2×2/2, LeNet's 2×2.
    for (kernel, stride, pad, ceil) in [
        (3, 2, 1, false),
        (3, 2, 0, true),
        (3, 1, 1, true),
        (2, 2, 0, true),
        (2, 2, 0, false),
    ] {
        for size in [28, 15, 7] {
            run_pool_case(
                2,
                [size, size],
                6,
                [kernel; 2],
                [stride; 2],
                pad,
                ceil,
                true,
                true,
                size as u64,
            );
        }
    }
}

#[test]
fn global_average_pool_and_linear_after_a_flatten_match_burn() {
    let (batch, c, h, w, outputs) = (3, 4, 5, 6, 7);
    let shape = Shape::new(batch, h, w, c);
    let input = values(shape.len(), 1);
    let x = tensor4(input.clone(), [batch, c, h, w]);
    let mut pooled = vec![0.0; batch * c];
    global_average_pool(&nchw_to_nhwc(&input, shape), shape, &mut pooled).unwrap();
    let expected: Tensor<2> = x.clone().mean_dim(3).mean_dim(2).flatten(1, 3);
    assert_close(&pooled, &to_vec(expected), "global average pool");

    let weight = values(c * h * w * outputs, 2);
    let bias = values(outputs, 3);
    let linear =
        Linear::after_nchw_flatten([c, h, w], outputs, &weight, Some(&bias), Activation::Relu)
            .unwrap();
    let mut out = vec![0.0; batch * outputs];
    linear
        .run(&nchw_to_nhwc(&input, shape), batch, &mut out)
        .unwrap();
    let flat: Tensor<2> = x.flatten(1, 3);
    let w = Tensor::<2>::from_data(TensorData::new(weight, [c * h * w, outputs]), &device());
    let expected = flat
        .matmul(w)
        .add(tensor1(bias).reshape([1, outputs]))
        .clamp_min(0.0);
    assert_close(&out, &to_vec(expected), "linear after a flatten");
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let geometry = ConvGeometry {
        in_channels: 3,
        out_channels: 4,
        kernel: [5, 5],
        stride: [1, 1],
        dilation: [1, 1],
        padding: Padding::symmetric(0, 0),
        groups: 1,
    };
    assert!(Conv2d::new(geometry, &[0.0; 7], None, None, Activation::Relu).is_err());
    assert!(
        Conv2d::new(
            ConvGeometry {
                groups: 2,
                ..geometry
            },
            &[0.0; 300],
            None,
            None,
            Activation::Relu
        )
        .is_err()
    );
    let conv = Conv2d::new(geometry, &[0.0; 300], None, None, Activation::Relu).unwrap();
    let small = Shape::new(1, 3, 3, 3);
    let mut out = vec![0.0; 16];
    assert!(
        conv.run(&[0.0; 27], small, &mut out, 4, 0, None).is_err(),
        "input smaller than the kernel"
    );
    let fine = Shape::new(1, 6, 6, 3);
    assert!(
        conv.run(&[0.0; 10], fine, &mut out, 4, 0, None).is_err(),
        "short input"
    );
    assert!(
        conv.run(&[0.0; 108], fine, &mut out[..3], 4, 0, None)
            .is_err(),
        "short output"
    );
    assert!(
        conv.run(&[0.0; 108], fine, &mut out, 4, 1, None).is_err(),
        "channels past the row"
    );
}
