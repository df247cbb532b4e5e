"""FastAPI + uvicorn + onnxruntime serving EfficientNet-Lite0 one request at a time (both
cores in onnxruntime), on Kiln's classify route shape so the load generator's
`http-binary` form drives it.

    python fastapi_efficientnet.py MODEL.onnx LABELS.txt PORT
"""

import os
import sys

import numpy as np
import onnxruntime
import uvicorn
from fastapi import FastAPI, Request

import photo_input

app = FastAPI()
state = {}


@app.on_event("startup")
def load():
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    state["session"] = onnxruntime.InferenceSession(os.environ["MODEL_ONNX"], options,
                                                    providers=["CPUExecutionProvider"])
    state["labels"] = [line.strip() for line in open(os.environ["MODEL_LABELS"])]


@app.post("/v1/models/efficientnet-lite0/classify")
async def classify(request: Request):
    x = photo_input.batch([await request.body()])
    p = photo_input.softmax(state["session"].run(None, {"input": x})[0])[0]
    top = np.argsort(-p)[:5]
    return {"predictions": [{"label": state["labels"][i], "index": int(i), "probability": float(p[i])}
                            for i in top]}


if __name__ == "__main__":
    os.environ["MODEL_ONNX"] = os.path.abspath(sys.argv[1])
    os.environ["MODEL_LABELS"] = os.path.abspath(sys.argv[2])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("fastapi_efficientnet:app", host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
