"""NVIDIA Triton Inference Server (the real tritonserver binary shipped by PyPI's
nvidia-pytriton) serving LeNet on CPU through a Python model running onnxruntime, with
dynamic batching up to 64: the same input (PNG bytes as BYTES) and output
(`probabilities`) as Kiln's, so the load generator's `v2-binary` and `grpc` forms drive both.

    python triton_lenet.py LENET.onnx HTTP_PORT GRPC_PORT
"""

import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

import common

sess = common.session(sys.argv[1], threads=1)


@batch
def infer(input):
    # input: [N, 1] of PNG bytes
    return {"probabilities": common.probabilities(sess, [row[0] for row in input]).astype(np.float32)}


config = TritonConfig(http_address="127.0.0.1", http_port=int(sys.argv[2]), grpc_address="127.0.0.1",
                      grpc_port=int(sys.argv[3]), allow_metrics=False, log_verbose=0)
with Triton(config=config) as triton:
    triton.bind(
        model_name="lenet-fashion",
        infer_func=infer,
        inputs=[Tensor(name="input", dtype=bytes, shape=(1,))],
        outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(10,))],
        config=ModelConfig(max_batch_size=64, batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
        strict=True,
    )
    triton.serve()
