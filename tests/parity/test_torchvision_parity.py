"""Each CNN of the zoo computes what torchvision computes: the same checkpoint loaded into
PyTorch and into Kiln gives the same logits for the same inputs."""

import json
import urllib.request

import pytest

from conftest import CASES, infer_logits


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_logits_match_pytorch(kiln, torchvision_cases, case):
    _, expected = torchvision_cases
    inputs, torch_logits = expected[case.name]
    kiln_logits = infer_logits(kiln["http"], case.name, inputs)
    assert kiln_logits.shape == torch_logits.shape
    scale = abs(torch_logits).max()
    diff = abs(kiln_logits - torch_logits).max()
    assert diff <= 1e-4 * scale, f"max abs diff {diff:.3g} at logit scale {scale:.3g}"


def test_a_checkpoint_that_does_not_fit_names_the_tensor(kiln):
    request = urllib.request.Request(f"http://{kiln['http']}/v2/repository/index", data=b"{}")
    with urllib.request.urlopen(request, timeout=30) as response:
        index = {m["name"]: m for m in json.load(response)}
    entry = index["resnet18-ten-classes"]
    assert entry["state"] == "UNAVAILABLE"
    assert "fc.weight" in entry["reason"], entry
    assert index["resnet18"]["state"] == "READY"
