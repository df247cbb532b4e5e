"""Triton's own Python clients (tritonclient, HTTP and gRPC) against Kiln: health,
metadata, configuration, inference on LeNet, a language model and a captioner in JSON,
binary and gRPC forms, the classification extension, streaming, statistics, the model
repository, and errors."""

import json
import queue
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

PROTOCOLS = ["http", "grpc"]


def client(kiln, protocol):
    if protocol == "http":
        return httpclient, httpclient.InferenceServerClient(kiln["http"])
    return grpcclient, grpcclient.InferenceServerClient(kiln["grpc"])


def pixel_input(module, images, binary=True):
    tensor = module.InferInput("input", [len(images), 28, 28, 1], "UINT8")
    data = images.reshape(-1, 28, 28, 1)
    if module is httpclient:
        tensor.set_data_from_numpy(data, binary_data=binary)
    else:
        tensor.set_data_from_numpy(data)
    return tensor


def text_input(module, texts, binary=True):
    data = np.array([t.encode() for t in texts], dtype=np.object_)
    tensor = module.InferInput("text", [len(texts)], np_to_triton_dtype(data.dtype))
    if module is httpclient:
        tensor.set_data_from_numpy(data, binary_data=binary)
    else:
        tensor.set_data_from_numpy(data)
    return tensor


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_and_metadata(kiln, protocol):
    _, c = client(kiln, protocol)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("lenet-fashion")
    assert c.is_model_ready("gru-web-en", "1")
    assert not c.is_model_ready("no-such-model")
    server = c.get_server_metadata(as_json=True) if protocol == "grpc" else c.get_server_metadata()
    assert server["name"] == "kiln"
    assert "classification" in server["extensions"]
    meta = c.get_model_metadata("lenet-fashion", as_json=True) if protocol == "grpc" else c.get_model_metadata("lenet-fashion")
    assert meta["inputs"][0]["name"] == "input"
    assert [int(d) for d in meta["inputs"][0]["shape"]] == [-1, 1, 28, 28]
    assert meta["outputs"][0]["datatype"] == "FP32"
    config = c.get_model_config("lenet-fashion", as_json=True) if protocol == "grpc" else c.get_model_config("lenet-fashion")
    config = config.get("config", config)
    assert int(config["max_batch_size"]) == 64


# gRPC always carries raw tensors; HTTP carries binary or JSON ones.
@pytest.mark.parametrize("protocol,binary", [("http", True), ("http", False), ("grpc", True)])
def test_lenet_classifies_fashion_mnist(kiln, fashion_mnist, protocol, binary):
    module, c = client(kiln, protocol)
    images, labels = fashion_mnist
    outputs = [module.InferRequestedOutput("probabilities", binary_data=binary)] if module is httpclient else None
    result = c.infer("lenet-fashion", [pixel_input(module, images, binary)], outputs=outputs, request_id="batch-1")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (64, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    accuracy = (probabilities.argmax(axis=1) == labels).mean()
    assert accuracy > 0.8, accuracy
    response = result.get_response()
    assert (response["id"] if protocol == "http" else response.id) == "batch-1"


def test_every_protocol_gives_the_same_probabilities(kiln, fashion_mnist):
    images, _ = fashion_mnist
    answers = []
    for protocol, binary in [("http", True), ("http", False), ("grpc", True)]:
        module, c = client(kiln, protocol)
        answers.append(c.infer("lenet-fashion", [pixel_input(module, images[:8], binary)]).as_numpy("probabilities"))
    assert np.allclose(answers[0], answers[1], atol=1e-5)
    assert np.allclose(answers[0], answers[2], atol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_classification_extension(kiln, fashion_mnist, protocol):
    module, c = client(kiln, protocol)
    images, labels = fashion_mnist
    if module is httpclient:
        output = module.InferRequestedOutput("probabilities", binary_data=True, class_count=3)
    else:
        output = module.InferRequestedOutput("probabilities", class_count=3)
    classes = c.infer("lenet-fashion", [pixel_input(module, images[:4])], outputs=[output]).as_numpy("probabilities")
    assert classes.shape == (4, 3)
    for row, label in zip(classes, labels[:4]):
        probability, index, name = row[0].decode().split(":")
        assert 0.0 < float(probability) <= 1.0
        # Every one of these four test images is classified correctly by the shipped LeNet.
        assert int(index) == label, row


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_language_model_next_words(kiln, protocol):
    module, c = client(kiln, protocol)
    texts = ["and the children of", "in the beginning god created the"]
    result = c.infer("gru-web-en", [text_input(module, texts)])
    log_probs = result.as_numpy("log_probabilities")
    assert log_probs.shape[0] == 2
    assert np.allclose(np.exp(log_probs).sum(axis=1), 1.0, atol=1e-3)
    if module is httpclient:
        output = module.InferRequestedOutput("log_probabilities", binary_data=False, class_count=5)
    else:
        output = module.InferRequestedOutput("log_probabilities", class_count=5)
    top = c.infer("gru-web-en", [text_input(module, texts[:1])], outputs=[output]).as_numpy("log_probabilities")
    # JSON answers come back as str, binary and gRPC ones as bytes.
    words = [(e.decode() if isinstance(e, bytes) else e).split(":")[2] for e in top[0]]
    assert "israel" in words, words


SCENES = Path(__file__).resolve().parents[2] / "examples" / "scenes"


# Held-out test scenes as their PNG files, one BYTES element each.
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_captioner_answers_like_the_caption_route(kiln, protocol):
    module, c = client(kiln, protocol)
    files = sorted(SCENES.glob("*.png"))
    data = np.array([f.read_bytes() for f in files], dtype=np.object_)
    images = module.InferInput("input", [len(files)], "BYTES")
    images.set_data_from_numpy(data)
    outputs = [module.InferRequestedOutput("caption"), module.InferRequestedOutput("score")]
    result = c.infer("captioner-transformer", [images], outputs=outputs)
    captions = [e.decode() if isinstance(e, bytes) else e for e in result.as_numpy("caption")]
    scores = result.as_numpy("score")
    assert len(captions) == len(files) and scores.shape == (len(files),)
    for file, caption, score in zip(files, captions, scores):
        request = urllib.request.Request(
            f"http://{kiln['http']}/v1/models/captioner-transformer/caption",
            data=file.read_bytes(),
            headers={"content-type": "image/png"},
        )
        with urllib.request.urlopen(request) as response:
            answer = json.load(response)
        assert caption == answer["caption"]
        assert abs(float(score) - answer["score"]) < 1e-4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_errors_are_clear(kiln, fashion_mnist, protocol):
    module, c = client(kiln, protocol)
    images, _ = fashion_mnist
    with pytest.raises(InferenceServerException) as unknown:
        c.infer("no-such-model", [pixel_input(module, images[:1])])
    assert "no-such-model" in unknown.value.message()
    assert unknown.value.status() in ("404", "StatusCode.NOT_FOUND")

    wrong = module.InferInput("input", [1, 28, 28], "UINT8")
    wrong.set_data_from_numpy(images[:1])
    with pytest.raises(InferenceServerException) as shape:
        c.infer("lenet-fashion", [wrong])
    assert "[N, 28, 28, 1]" in shape.value.message()
    assert shape.value.status() in ("422", "StatusCode.INVALID_ARGUMENT")

    fp16 = module.InferInput("input", [1, 1, 28, 28], "FP16")
    fp16.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.float16))
    with pytest.raises(InferenceServerException) as datatype:
        c.infer("lenet-fashion", [fp16])
    assert "FP16" in datatype.value.message()


def test_grpc_deadline(kiln):
    c = grpcclient.InferenceServerClient(kiln["grpc"])
    texts = ["and the children of"] * 64
    with pytest.raises(InferenceServerException) as late:
        c.infer("gru-web-en", [text_input(grpcclient, texts)], client_timeout=0.000001)
    assert late.value.status() == "StatusCode.DEADLINE_EXCEEDED"


def test_grpc_stream_infer_keeps_order(kiln, fashion_mnist):
    c = grpcclient.InferenceServerClient(kiln["grpc"])
    images, _ = fashion_mnist
    answers = queue.Queue()
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i in range(8):
        c.async_stream_infer("lenet-fashion", [pixel_input(grpcclient, images[i : i + 1])], request_id=str(i))
    c.async_stream_infer("no-such-model", [pixel_input(grpcclient, images[:1])], request_id="bad")
    c.stop_stream()
    received = [answers.get(timeout=30) for _ in range(9)]
    ids = [r.get_response().id for r, e in received if e is None]
    assert ids == [str(i) for i in range(8)]
    errors = [e for _, e in received if e is not None]
    assert len(errors) == 1 and "no-such-model" in errors[0].message()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_statistics(kiln, fashion_mnist, protocol):
    module, c = client(kiln, protocol)
    images, _ = fashion_mnist
    c.infer("lenet-fashion", [pixel_input(module, images[:5])])
    stats = c.get_inference_statistics("lenet-fashion", as_json=True) if protocol == "grpc" else c.get_inference_statistics("lenet-fashion")
    model = stats["model_stats"][0]
    assert model["name"] == "lenet-fashion"
    assert int(model["inference_count"]) >= 5
    assert int(model["inference_stats"]["success"]["count"]) >= 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_repository_unload_and_load(kiln, fashion_mnist, protocol):
    module, c = client(kiln, protocol)
    images, _ = fashion_mnist
    index = c.get_model_repository_index(as_json=True) if protocol == "grpc" else c.get_model_repository_index()
    index = index if isinstance(index, list) else index["models"]
    assert {m["name"] for m in index} == {"lenet-fashion", "gru-web-en", "captioner-transformer"}
    c.unload_model("lenet-fashion")
    assert not c.is_model_ready("lenet-fashion")
    with pytest.raises(InferenceServerException):
        c.infer("lenet-fashion", [pixel_input(module, images[:1])])
    c.load_model("lenet-fashion")
    assert c.is_model_ready("lenet-fashion")
    assert c.infer("lenet-fashion", [pixel_input(module, images[:1])]).as_numpy("probabilities").shape == (1, 10)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_http_request_compression(kiln, fashion_mnist, algorithm):
    images, labels = fashion_mnist
    c = httpclient.InferenceServerClient(kiln["http"])
    result = c.infer("lenet-fashion", [pixel_input(httpclient, images[:8])], request_compression_algorithm=algorithm)
    assert result.as_numpy("probabilities").shape == (8, 10)
