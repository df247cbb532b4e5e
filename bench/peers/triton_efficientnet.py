"""NVIDIA Triton Inference Server (the tritonserver binary of PyPI's nvidia-pytriton)
serving EfficientNet-Lite0 on CPU: a Python model that decodes and preprocesses each image
like Kiln does and runs the batch in onnxruntime (both cores), with dynamic batching up to
16 after at most 2 ms, Kiln's settings for this model. Input: encoded image bytes (BYTES);
output `probabilities`, as Kiln's, so the load generator's `v2-binary` and `grpc` forms
drive both.

    python triton_efficientnet.py MODEL.onnx HTTP_PORT GRPC_PORT
"""

import sys

import numpy as np
import onnxruntime
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

import photo_input

options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 2
session = onnxruntime.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])


@batch
def infer(input):
    logits = session.run(None, {"input": photo_input.batch([row[0] for row in input])})[0]
    return {"probabilities": photo_input.softmax(logits).astype(np.float32)}


config = TritonConfig(http_address="127.0.0.1", http_port=int(sys.argv[2]), grpc_address="127.0.0.1",
                      grpc_port=int(sys.argv[3]), allow_metrics=False, log_verbose=0)
with Triton(config=config) as triton:
    triton.bind(
        model_name="efficientnet-lite0",
        infer_func=infer,
        inputs=[Tensor(name="input", dtype=bytes, shape=(1,))],
        outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(1000,))],
        config=ModelConfig(max_batch_size=16, batcher=DynamicBatcher(max_queue_delay_microseconds=2000)),
        strict=True,
    )
    triton.serve()
