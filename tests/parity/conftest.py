"""A Kiln model repository of torchvision networks with seeded random weights, saved in
every checkpoint format Kiln reads, and the kiln binary serving it."""

import json
import re
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from kiln_process import running_kiln  # noqa: E402


class Case:
    """One architecture: how torchvision builds it, how Kiln's model.toml names it, the
    input size, and the checkpoint format it is saved in (so every reader is exercised)."""

    def __init__(self, name, build, architecture, size, weights, key_prefix=""):
        self.name = name
        self.build = build
        self.architecture = architecture
        self.size = size
        self.weights = weights
        self.key_prefix = key_prefix


CASES = [
    Case("alexnet", lambda: torchvision.models.alexnet(), 'kind = "alexnet"', 224, "weights.pth"),
    Case("vgg11", lambda: torchvision.models.vgg11(), 'kind = "vgg11"', 224, "weights.safetensors"),
    # Trained with auxiliary heads (their keys are in the checkpoint) and torchvision's
    # input re-normalisation.
    Case(
        "googlenet",
        lambda: torchvision.models.googlenet(aux_logits=True, transform_input=True, init_weights=True),
        'kind = "googlenet"\ntransform_input = true',
        224,
        "legacy.pth",
    ),
    # Saved from a DataParallel wrapper: every key starts with "module.".
    Case("resnet18", lambda: torchvision.models.resnet18(), 'kind = "resnet"\ndepth = 18', 224, "weights.pt", "module."),
    Case("resnet50", lambda: torchvision.models.resnet50(), 'kind = "resnet"\ndepth = 50', 224, "weights.safetensors"),
    Case(
        "inception-v3",
        lambda: torchvision.models.inception_v3(aux_logits=True, init_weights=True),
        'kind = "inception-v3"',
        299,
        "legacy.pth",
    ),
]
BATCH = 2


def randomise_batch_norm(model, generator):
    """Fresh BatchNorms are almost the identity; give them statistics that matter."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.2, 0.2, generator=generator)
                m.running_mean.uniform_(-0.2, 0.2, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)


def save_checkpoint(case, state_dict, path):
    state_dict = {case.key_prefix + k: v for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, path)
    elif path.name.startswith("legacy"):
        torch.save(state_dict, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(state_dict, path)


def model_toml(case):
    # A TOML literal string, so the regex needs no further escaping.
    key_remap = f"key_remap = [['^{re.escape(case.key_prefix)}', '']]\n" if case.key_prefix else ""
    return f"""task = "classify"
weights = "{case.weights}"
labels = "labels.txt"
{key_remap}
[architecture]
{case.architecture}

[input]
channels = 3
height = {case.size}
width = {case.size}

[batching]
max_batch_size = {BATCH}
max_queue_delay_us = 0
max_queue_size = 16
"""


@pytest.fixture(scope="session")
def torchvision_cases(tmp_path_factory):
    """Build each network in PyTorch, save it into a model repository, and keep PyTorch's
    logits for a batch of random inputs."""
    torch.set_num_threads(2)
    repository = tmp_path_factory.mktemp("parity-repository")
    expected = {}
    for i, case in enumerate(CASES):
        torch.manual_seed(i)
        generator = torch.Generator().manual_seed(100 + i)
        model = case.build()
        randomise_batch_norm(model, generator)
        model.eval()
        inputs = torch.randn(BATCH, 3, case.size, case.size, generator=generator)
        with torch.no_grad():
            logits = model(inputs)
        folder = repository / case.name
        folder.mkdir()
        save_checkpoint(case, model.state_dict(), folder / case.weights)
        (folder / "labels.txt").write_text("".join(f"class {c}\n" for c in range(1000)))
        (folder / "model.toml").write_text(model_toml(case))
        expected[case.name] = (inputs.numpy(), logits.numpy())
        del model
    # A checkpoint that does not fit its config: ten classes where the config says 1000.
    mismatched = Case("resnet18-ten-classes", None, 'kind = "resnet"\ndepth = 18', 224, "weights.pth")
    folder = repository / mismatched.name
    folder.mkdir()
    save_checkpoint(mismatched, torchvision.models.resnet18(num_classes=10).state_dict(), folder / mismatched.weights)
    (folder / "labels.txt").write_text("".join(f"class {c}\n" for c in range(1000)))
    (folder / "model.toml").write_text(model_toml(mismatched))
    return repository, expected


@pytest.fixture(scope="session")
def kiln(torchvision_cases):
    repository, _ = torchvision_cases
    with running_kiln(repository, repository.parent / "kiln.log", ready_timeout=600) as addresses:
        yield addresses


def infer_logits(http, model, inputs):
    """V2 inference with the input as a binary tensor and the logits output as JSON."""
    raw = np.ascontiguousarray(inputs, dtype="<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(inputs.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "logits"}],
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{http}/v2/models/{model}/infer",
        data=header + raw,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        output = json.load(response)["outputs"][0]
    return np.array(output["data"], dtype=np.float32).reshape(output["shape"])
