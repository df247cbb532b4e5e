"""The common Python deployment: FastAPI + uvicorn + onnxruntime, one request at a time per
worker, no batching. Serves Kiln's classify route shape so the same load generator form
(`http-binary`) drives it.

    python fastapi_lenet.py LENET.onnx PORT [WORKERS]
"""

import os
import sys

import numpy as np
import uvicorn
from fastapi import FastAPI, Request

import common

LABELS = [l.strip() for l in open(os.path.join(os.path.dirname(__file__), "../../models/lenet-fashion/labels.txt"))]
app = FastAPI()
sess = None


@app.on_event("startup")
def load():
    global sess
    sess = common.session(os.environ["LENET_ONNX"], threads=1)


@app.post("/v1/models/lenet-fashion/classify")
async def classify(request: Request):
    body = await request.body()
    p = common.probabilities(sess, [body])[0]
    top = np.argsort(-p)[:5]
    return {"predictions": [{"label": LABELS[i], "index": int(i), "probability": float(p[i])} for i in top]}


if __name__ == "__main__":
    os.environ["LENET_ONNX"] = os.path.abspath(sys.argv[1])
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("fastapi_lenet:app", host="127.0.0.1", port=int(sys.argv[2]), workers=workers, log_level="warning")
