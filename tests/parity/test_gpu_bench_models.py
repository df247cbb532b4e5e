"""The GPU benchmark's plain-PyTorch networks (bench/gpu/models.py) are torchvision's: the
same state-dict keys and shapes, and the same outputs on the same weights. Kiln loads those
state dicts as it loads torchvision's (test_torchvision_parity.py), so the benchmark's
PyTorch rows and Kiln rows run one network."""

import sys

import pytest
import torch
import torchvision

from conftest import ROOT, randomise_batch_norm

sys.path.insert(0, str(ROOT / "bench" / "gpu"))
from models import GoogLeNet, ResNet50  # noqa: E402


@pytest.mark.parametrize("ours, theirs", [
    (GoogLeNet, lambda: torchvision.models.googlenet(aux_logits=False, transform_input=False,
                                                     init_weights=False)),
    (ResNet50, torchvision.models.resnet50),
], ids=["googlenet", "resnet50"])
def test_benchmark_network_is_torchvisions(ours, theirs):
    torch.manual_seed(0)
    reference = theirs().eval()
    randomise_batch_norm(reference, torch.Generator().manual_seed(1))
    state = reference.state_dict()
    network = ours().eval()
    assert {k: v.shape for k, v in network.state_dict().items()} == \
        {k: v.shape for k, v in state.items()}
    network.load_state_dict(state)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = reference(x)
        # Outputs well away from zero, so a wrong epsilon, padding or pool shows.
        assert expected.std() > 0.05, expected.std()
        torch.testing.assert_close(network(x), expected, rtol=1e-4, atol=1e-5)
