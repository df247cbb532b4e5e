"""The four networks of the GPU benchmark, in plain PyTorch (no torchvision needed), and the
Kiln model folders that serve the same networks with the same weights.

LeNet-5 is Kiln's bundled lenet-fashion (its trained weights, read from `kiln export`'s
safetensors); ResNet-50 and GoogLeNet (torchvision's layouts, so their state dicts load into
Kiln's `resnet` and `googlenet`) and EfficientNet-Lite0 get seeded random weights unless the
real Lite0 weights were fetched: throughput does not depend on values.

    python models.py KILN_BIN OUT_REPOSITORY
"""

import shutil
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
from torch_efficientnet_lite0 import EfficientNetLite0, random_lite0_weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAX_BATCH = 256


class LeNet5(torch.nn.Module):
    """model-zoo/src/models/lenet.rs; Burn's linear weights are [inputs, outputs]."""

    def __init__(self, w):
        super().__init__()
        self.w = {k.split(".", 1)[1] if k[:1].isupper() else k: v for k, v in w.items()}

    def forward(self, x):
        w = self.w
        x = F.max_pool2d(F.relu(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], padding=2)), 2)
        x = F.max_pool2d(F.relu(F.conv2d(x, w["conv2.weight"], w["conv2.bias"])), 2)
        x = x.flatten(1)
        x = F.relu(x @ w["fc1.weight"] + w["fc1.bias"])
        x = F.relu(x @ w["fc2.weight"] + w["fc2.bias"])
        return x @ w["fc3.weight"] + w["fc3.bias"]



def read_safetensors(path):
    """A safetensors file of f32 tensors, without the safetensors package."""
    import json
    import struct
    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    data = bytearray(raw[8 + length:])
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", (name, meta["dtype"])
        start, end = meta["data_offsets"]
        tensors[name] = torch.frombuffer(data[start:end], dtype=torch.float32).reshape(meta["shape"])
    return tensors


def placed(module, device, dtype):
    """`module` on `device` in `dtype`, weight dicts (LeNet5, EfficientNetLite0) included."""
    if hasattr(module, "w"):
        module.w = {k: v.to(device, dtype) for k, v in module.w.items()}
    return module.to(device, dtype)


class Bottleneck(torch.nn.Module):
    def __init__(self, inp, width, stride):
        super().__init__()
        out = width * 4
        self.conv1 = torch.nn.Conv2d(inp, width, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.conv2 = torch.nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(width)
        self.conv3 = torch.nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = torch.nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inp != out:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(inp, out, 1, stride, bias=False), torch.nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(torch.nn.Module):
    """torchvision's resnet50(), so its state dict loads into Kiln's `resnet` (depth 50)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        layers, inp = [], 64
        for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            stage = []
            for i in range(blocks):
                stage.append(Bottleneck(inp, width, stride if i == 0 else 1))
                inp = width * 4
            layers.append(torch.nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = torch.nn.Linear(2048, 1000)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


class BasicConv2d(torch.nn.Module):
    """torchvision's GoogLeNet convolution: no bias, batch norm (eps 0.001), ReLU."""

    def __init__(self, inp, out, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = torch.nn.Conv2d(inp, out, kernel, stride, padding, bias=False)
        self.bn = torch.nn.BatchNorm2d(out, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Inception(torch.nn.Module):
    """Four branches concatenated; the third is 3x3, as in torchvision's weights."""

    def __init__(self, inp, ch1, ch3_reduce, ch3, ch5_reduce, ch5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(inp, ch1, 1)
        self.branch2 = torch.nn.Sequential(BasicConv2d(inp, ch3_reduce, 1),
                                           BasicConv2d(ch3_reduce, ch3, 3, padding=1))
        self.branch3 = torch.nn.Sequential(BasicConv2d(inp, ch5_reduce, 1),
                                           BasicConv2d(ch5_reduce, ch5, 3, padding=1))
        self.branch4 = torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                           BasicConv2d(inp, pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(torch.nn.Module):
    """torchvision's googlenet(aux_logits=False, transform_input=False): Kiln's `googlenet`."""

    def __init__(self):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, 2, 3)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.fc = torch.nn.Linear(1024, 1000)

    def forward(self, x):
        pool = lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True)  # noqa: E731
        x = pool(self.conv1(x))
        x = pool(self.conv3(self.conv2(x)))
        x = pool(self.inception3b(self.inception3a(x)))
        for block in (self.inception4a, self.inception4b, self.inception4c, self.inception4d,
                      self.inception4e):
            x = block(x)
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = self.inception5b(self.inception5a(x))
        return self.fc(x.mean((2, 3)))


def batching(max_batch=MAX_BATCH):
    return f"""
[batching]
max_batch_size = {max_batch}
max_queue_delay_us = 1000
max_queue_size = 4096
"""


def imagenet_folder(folder, architecture, weights_name, state_dict, input_block):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, folder / weights_name)
    (folder / "labels.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
    (folder / "model.toml").write_text(f"""task = "classify"
weights = "{weights_name}"
labels = "labels.txt"

[architecture]
{architecture}

{input_block}
{batching()}""")


NAMES = ["lenet-fashion", "resnet-50", "googlenet", "efficientnet-lite0"]


def write_repository(kiln, out, names=NAMES):
    """The Kiln side: a folder under `out` for each of `names` (lenet-fashion, resnet-50,
    googlenet, efficientnet-lite0). Returns the PyTorch side: name -> (module, input shape)."""
    out = Path(out)
    torch.manual_seed(0)
    networks = {}

    if "lenet-fashion" in names:
        lenet_dir = out / "lenet-fashion"
        shutil.copytree(ROOT / "models" / "lenet-fashion", lenet_dir)
        text = (lenet_dir / "model.toml").read_text()
        (lenet_dir / "model.toml").write_text(text[: text.index("[batching]")] + batching())
        exported = out / "lenet.safetensors"
        subprocess.run([kiln, "export", "lenet-fashion", "--model-repository",
                        str(ROOT / "models"), "--safetensors", str(exported)],
                       check=True, capture_output=True)
        networks["lenet-fashion"] = (LeNet5(read_safetensors(exported)), (1, 28, 28))

    imagenet_input = "[input]\nchannels = 3\nheight = 224\nwidth = 224\nresize_shorter = 256"
    if "resnet-50" in names:
        resnet = ResNet50().eval()
        imagenet_folder(out / "resnet-50", 'kind = "resnet"\ndepth = 50', "weights.pth",
                        resnet.state_dict(), imagenet_input)
        networks["resnet-50"] = (resnet, (3, 224, 224))

    if "googlenet" in names:
        googlenet = GoogLeNet().eval()
        imagenet_folder(out / "googlenet", 'kind = "googlenet"', "weights.pth",
                        googlenet.state_dict(), imagenet_input)
        networks["googlenet"] = (googlenet, (3, 224, 224))

    if "efficientnet-lite0" in names:
        real = ROOT / "models" / "efficientnet-lite0"
        lite0_dir = out / "efficientnet-lite0"
        if (real / "imported.pth").exists():
            shutil.copytree(real, lite0_dir)
            text = (lite0_dir / "model.toml").read_text()
            (lite0_dir / "model.toml").write_text(text[: text.index("[batching]")] + batching())
            lite0_weights = torch.load(real / "imported.pth", map_location="cpu")
        else:
            lite0_weights = random_lite0_weights()
            imagenet_folder(lite0_dir, 'kind = "efficientnet-lite0"', "weights.pth",
                            lite0_weights, imagenet_input + "\nmean = [0.49803922]\nstd = [0.50196078]")
        networks["efficientnet-lite0"] = (EfficientNetLite0(lite0_weights).eval(), (3, 224, 224))
    return networks


if __name__ == "__main__":
    write_repository(sys.argv[1], sys.argv[2])
