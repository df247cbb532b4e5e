"""EfficientNet-Lite0 written directly in PyTorch over an `efficientnet_pytorch`-style state
dict: the reference Kiln's logits are checked against (tests/parity) and the PyTorch and
onnxruntime side of the CNN benchmarks (cnn_torch.py, bench/gpu)."""

import torch
import torch.nn.functional as F

# Repeats, kernel, first stride, expansion, output channels: EfficientNet-B0's stages.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def same_conv(x, w, stride=1, groups=1):
    """TensorFlow's "same" padding: the extra pixel of an odd total goes after."""
    def pads(size):
        out = -(-size // stride)
        total = max((out - 1) * stride + w.shape[-1] - size, 0)
        return total // 2, total - total // 2
    (top, bottom), (left, right) = pads(x.shape[2]), pads(x.shape[3])
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, stride=stride, groups=groups)


class EfficientNetLite0(torch.nn.Module):
    def __init__(self, state_dict):
        super().__init__()
        self.w = {k: v.float() for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}

    def bn(self, x, name):
        w = self.w
        return F.batch_norm(x, w[f"{name}.running_mean"], w[f"{name}.running_var"],
                            w[f"{name}.weight"], w[f"{name}.bias"], False, 0.0, 1e-3)

    def forward(self, x):
        w = self.w
        x = F.relu6(self.bn(same_conv(x, w["_conv_stem.weight"], 2), "_bn0"))
        block, channels = 0, 32
        for repeats, _kernel, first_stride, expand, out in STAGES:
            for r in range(repeats):
                p, stride = f"_blocks.{block}.", first_stride if r == 0 else 1
                y = x
                if expand != 1:
                    y = F.relu6(self.bn(same_conv(y, w[p + "_expand_conv.weight"]), p + "_bn0"))
                y = same_conv(y, w[p + "_depthwise_conv.weight"], stride, groups=y.shape[1])
                y = F.relu6(self.bn(y, p + "_bn1"))
                y = self.bn(same_conv(y, w[p + "_project_conv.weight"]), p + "_bn2")
                x = y + x if stride == 1 and channels == out else y
                block, channels = block + 1, out
        x = F.relu6(self.bn(same_conv(x, w["_conv_head.weight"]), "_bn1")).mean((2, 3))
        return F.linear(x, w["_fc.weight"], w["_fc.bias"])


def random_lite0_weights():
    """A state dict of EfficientNet-Lite0's shapes (throughput does not depend on values)."""
    g = torch.Generator().manual_seed(0)
    w = {}

    def conv(name, out, inp, k):
        w[name] = torch.randn(out, inp, k, k, generator=g) * (2.0 / (inp * k * k)) ** 0.5

    def bn(name, c):
        w.update({f"{name}.weight": torch.ones(c), f"{name}.bias": torch.zeros(c),
                  f"{name}.running_mean": torch.zeros(c), f"{name}.running_var": torch.ones(c)})

    conv("_conv_stem.weight", 32, 3, 3)
    bn("_bn0", 32)
    block, channels = 0, 32
    for repeats, kernel, _stride, expand, out in STAGES:
        for _ in range(repeats):
            p, hidden = f"_blocks.{block}.", channels * expand
            if expand != 1:
                conv(p + "_expand_conv.weight", hidden, channels, 1)
                bn(p + "_bn0", hidden)
            conv(p + "_depthwise_conv.weight", hidden, 1, kernel)
            bn(p + "_bn1", hidden)
            conv(p + "_project_conv.weight", out, hidden, 1)
            bn(p + "_bn2", out)
            block, channels = block + 1, out
    conv("_conv_head.weight", 1280, channels, 1)
    bn("_bn1", 1280)
    w["_fc.weight"] = torch.randn(1000, 1280, generator=g) * 0.01
    w["_fc.bias"] = torch.zeros(1000)
    return w
