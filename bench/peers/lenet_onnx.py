"""Rebuild Kiln's LeNet-5 as an ONNX graph from the weights `kiln export` writes, and check
that onnxruntime computes what Kiln computes on real Fashion-MNIST test images.

    python lenet_onnx.py WEIGHTS.safetensors OUT.onnx [--check http://127.0.0.1:8000]
        [--throughput --threads 2]

`--throughput` also times onnxruntime on the raw graph at batch 1, 8, 32 and 64 (images/s),
the counterpart of `cargo bench -p kiln-zoo --bench lenet`.
"""

import argparse
import gzip
import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

MEAN, STD = 0.286, 0.353  # models/lenet-fashion/model.toml
IMAGES = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def read_safetensors(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", (name, meta["dtype"])
        start, end = meta["data_offsets"]
        # Kiln's classifier names each tensor after its architecture: "LeNet5.conv1.weight".
        key = name.split(".", 1)[1] if name[:1].isupper() else name
        tensors[key] = np.frombuffer(data[start:end], np.float32).reshape(meta["shape"])
    return tensors


def build(weights):
    """Conv(pad 2) → ReLU → MaxPool → Conv → ReLU → MaxPool → 3 linear layers → softmax, as in
    model-zoo/src/models/lenet.rs. Burn's linear weights are [inputs, outputs]: Gemm as is."""
    initializers = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], kernel_shape=[5, 5]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc1.weight", "fc1.bias"], ["g1"]),
        helper.make_node("Relu", ["g1"], ["h1"]),
        helper.make_node("Gemm", ["h1", "fc2.weight", "fc2.bias"], ["g2"]),
        helper.make_node("Relu", ["g2"], ["h2"]),
        helper.make_node("Gemm", ["h2", "fc3.weight", "fc3.bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "lenet-fashion",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def preprocess(pixels):
    """uint8 [N, 28, 28] → float32 [N, 1, 28, 28], normalised as Kiln does."""
    return ((pixels.astype(np.float32) / 255.0 - MEAN) / STD)[:, None, :, :]


def check(session, url, n=64):
    import tritonclient.http as httpclient

    with gzip.open(IMAGES) as f:
        pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    tensor = httpclient.InferInput("input", [n, 28, 28, 1], "UINT8")
    tensor.set_data_from_numpy(pixels[..., None].copy())
    kiln = client.infer("lenet-fashion", [tensor]).as_numpy("probabilities")
    ours = session.run(None, {"input": preprocess(pixels)})[0]
    diff = float(np.abs(kiln - ours).max())
    agree = float((kiln.argmax(1) == ours.argmax(1)).mean())
    print(f"onnxruntime vs kiln on {n} test images: max |diff| {diff:.2e}, top-1 agreement {agree:.0%}")
    return diff < 1e-4 and agree == 1.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("out")
    parser.add_argument("--check", help="a running Kiln to compare with")
    parser.add_argument("--throughput", action="store_true", help="time the raw graph")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    model = build(read_safetensors(args.weights))
    onnx.save(model, args.out)
    if args.check:
        session = onnxruntime.InferenceSession(args.out, providers=["CPUExecutionProvider"])
        if not check(session, args.check):
            sys.exit("the ONNX graph does not compute what Kiln computes")
    if args.throughput:
        throughput(args.out, args.threads, args.seconds)


def throughput(path, threads, seconds):
    import time

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    print(f"onnxruntime {onnxruntime.__version__}, {threads} threads")
    print("batch,images_per_second")
    for batch in [1, 8, 32, 64]:
        x = np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(np.float32)
        for _ in range(20):
            session.run(None, {name: x})
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.run(None, {name: x})
            done += batch
        print(f"{batch},{done / (time.perf_counter() - start):.0f}", flush=True)


if __name__ == "__main__":
    main()
