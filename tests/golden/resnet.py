"""Golden values for vssl-model's ResNet (torchvision layout, configurable stage strides).

Computes, with PyTorch 2.9.1 on the CPU, for four configurations:

  cfg      block       blocks     stage strides  width  input
  r18_cc   BasicBlock  [2,2,2,2]  (1,2,1,1)      1/16   [2,3,64,48]   ContrastCorr / UVC encoder
  r18_tv   BasicBlock  [2,2,2,2]  (1,2,2,2)      1/16   [2,3,64,64]   torchvision ResNet-18
  r18_crw  BasicBlock  [2,2,2]    (1,2,1)        1/16   [2,3,48,64]   CRW encoder (layer4 removed)
  r50      Bottleneck  [3,4,6,3]  (1,2,2,2)      1/32   [2,3,96,96]   torchvision ResNet-50 (v1.5)

(r50 is at width 1/32 with a 96x96 batch of two so that its 3x3 stride-32 map gives train-mode
BatchNorm 18 values per channel: with one 64x64 image (4 values) batch statistics are so
ill-conditioned that float32 and float64 disagree in the third digit, in PyTorch as in vssl.)

The network is written here from the torchvision definition (not imported): stem conv 7x7/2 pad 3
(no bias), BN, ReLU, maxpool 3x3/2 pad 1; BasicBlock (two 3x3 convs) or Bottleneck v1.5 (1x1, 3x3
carrying the stride, 1x1 with expansion 4); a block's downsample is a 1x1 conv (stride s, no bias) +
BN, present when the stride is not 1 or the channel count changes. No avgpool, no fc: the output is
the feature map of the last stage. Width multiplier (vssl's rule): a stage of base width c gets
max(1, round(c * width)) channels, so at width 1/16 the stem has 4 channels and the stages
4, 8, 16, 32 (BasicBlock) or planes 4, 8, 16, 32 with outputs 16, 32, 64, 128 (Bottleneck).

Initialisation: torchvision's (kaiming_normal_, fan_out, relu, for the convs; BN weight 1, bias 0),
then the BN parameters and running statistics are RANDOMISED so that eval mode is a real test:
weight ~ U(0.5, 1.5), bias ~ U(-0.2, 0.2), running_mean ~ U(-0.2, 0.2), running_var ~ U(0.5, 1.5).

Parameters and inputs are created in float32 and stored as float32; every reference value is
computed in float64 from those float32 values (the model is cast to float64), then stored as
float32. Keys of resnet_<cfg>.safetensors:

  input                                   the input, f32
  param.<name>                            every state_dict entry except num_batches_tracked
  eval.out                                model.eval() forward (running statistics)
  train.out                               model.train() forward (batch statistics)
  train.w                                 random upstream gradient, shaped like train.out
  train.grad.<name>                       d/d<param> of (train.out * train.w).sum() for every
                                          trainable parameter (conv weights, BN weight / bias)
  train.grad.input                        the same w.r.t. the input
  train.after.<bn>.running_mean / _var    the BN running statistics after that one train-mode
                                          forward (momentum 0.1, unbiased variance n/(n-1))

The train-mode forward starts from the stored running statistics (eval.out is computed first with
the module in eval mode, which does not touch them).

Run from the repository root:
    /root/vssl-venv/bin/python tests/golden/resnet.py
It writes tests/golden/resnet_{r18_cc,r18_tv,r18_crw,r50}.safetensors (each asserted <= 1 MiB).
"""

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BYTES = 1 << 20


def scaled(c, width):
    """vssl's width rule: max(1, round(c * width))."""
    return max(1, int(round(c * width)))


class Basic(nn.Module):
    """Two 3x3 convs, the first carrying the stride; expansion 1."""

    expansion = 1

    def __init__(self, cin, planes, stride, down):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = down

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class Bottle(nn.Module):
    """1x1 reduce, 3x3 with the stride (v1.5), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, cin, planes, stride, down):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = down

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class ResNet(nn.Module):
    """torchvision ResNet trunk without avgpool / fc; len(blocks) stages are used."""

    def __init__(self, block, blocks, strides, width):
        super().__init__()
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = stem
        self.n_stages = len(blocks)
        for i, (n, s) in enumerate(zip(blocks, strides)):
            planes = scaled(64 * 2**i, width)
            cout = planes * block.expansion
            layers = []
            for j in range(n):
                stride = s if j == 0 else 1
                down = None
                if stride != 1 or cin != cout:
                    down = nn.Sequential(
                        nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout)
                    )
                layers.append(block(cin, planes, stride, down))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def randomise_bn(model, w=(0.5, 1.5), b=(-0.2, 0.2), rm=(-0.2, 0.2), rv=(0.5, 1.5)):
    """Draw every BN's weight, bias and running statistics uniformly from the given ranges."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(*w)
                m.bias.uniform_(*b)
                m.running_mean.uniform_(*rm)
                m.running_var.uniform_(*rv)


def bn_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def state_f32(model):
    """state_dict without num_batches_tracked, as float32 tensors."""
    return {
        k: v.detach().float().clone()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }


CONFIGS = {
    "r18_cc": (Basic, [2, 2, 2, 2], (1, 2, 1, 1), [2, 3, 64, 48], 1 / 16),
    "r18_tv": (Basic, [2, 2, 2, 2], (1, 2, 2, 2), [2, 3, 64, 64], 1 / 16),
    "r18_crw": (Basic, [2, 2, 2], (1, 2, 1), [2, 3, 48, 64], 1 / 16),
    "r50": (Bottle, [3, 4, 6, 3], (1, 2, 2, 2), [2, 3, 96, 96], 1 / 32),
}


def make(cfg, seed):
    block, blocks, strides, shape, width = CONFIGS[cfg]
    torch.manual_seed(seed)
    model = ResNet(block, blocks, strides, width)
    randomise_bn(model)
    x = torch.randn(*shape)
    return model, x


def golden(cfg, seed):
    model32, x32 = make(cfg, seed)
    out = {"input": x32.clone()}
    for k, v in state_f32(model32).items():
        out[f"param.{k}"] = v

    model = model32.double()
    x = x32.double()
    model.eval()
    with torch.no_grad():
        out["eval.out"] = model(x)

    model.train()
    xg = x.clone().requires_grad_(True)
    y = model(xg)
    w = torch.randn(y.shape, dtype=torch.float64).float().double()
    (y * w).sum().backward()
    out["train.out"] = y.detach()
    out["train.w"] = w
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        out[f"train.grad.{name}"] = p.grad
    out["train.grad.input"] = xg.grad
    mods = dict(model.named_modules())
    for bn in bn_names(model):
        out[f"train.after.{bn}.running_mean"] = mods[bn].running_mean
        out[f"train.after.{bn}.running_var"] = mods[bn].running_var

    out = {k: v.detach().float().contiguous() for k, v in out.items()}
    path = os.path.join(HERE, f"resnet_{cfg}.safetensors")
    save_file(out, path)
    size = os.path.getsize(path)
    assert size <= MAX_BYTES, (path, size)
    print(f"{path}: {size} bytes, out {tuple(out['eval.out'].shape)}, {len(out)} tensors")


if __name__ == "__main__":
    for i, cfg in enumerate(CONFIGS):
        golden(cfg, 20261201 + i)
