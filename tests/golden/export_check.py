"""Checks that a ResNet exported by vssl_model::weights::export_torchvision loads into torchvision.

Builds torchvision's resnet18 or resnet50 (random init, no download), sets per-stage strides
(the stride of each stage's first block: conv1 for BasicBlock, conv2 for Bottleneck, and of its
downsample conv), replaces `fc` (and `layer4` with --no-layer4, the CRW variant) by
nn.Identity(), loads FILE with `load_state_dict(..., strict=True)`, runs a forward pass on a
1x3xSIZExSIZE input and prints the feature-map and output shapes. Exits non-zero on any
missing/unexpected key or shape mismatch (strict loading raises).

Tested with torch 2.9.1 and torchvision 0.24.1 (CPU).
Run from the repository root, e.g.:
  python tests/golden/export_check.py target/tmp/weights-export/resnet18.safetensors
  python tests/golden/export_check.py FILE --arch resnet50 --strides 1,2,1,1
  python tests/golden/export_check.py target/tmp/weights-export/resnet18_crw.safetensors --no-layer4
FILE may be a .safetensors file or anything torch.load reads (weights_only).
"""
import argparse
import sys

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import load_file


def set_strides(model, strides):
    for i, s in enumerate(strides, start=1):
        layer = getattr(model, f"layer{i}")
        if isinstance(layer, nn.Identity):
            continue
        block = layer[0]
        conv = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
        conv.stride = (s, s)
        if block.downsample is not None:
            block.downsample[0].stride = (s, s)
        elif s != 1:
            sys.exit(f"layer{i} has no downsample branch: its stride must stay 1, got {s}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--arch", choices=["resnet18", "resnet50"], default="resnet18")
    ap.add_argument("--strides", default="1,2,2,2", help="stride of layer1..layer4, e.g. 1,2,1,1")
    ap.add_argument("--no-layer4", action="store_true", help="replace layer4 by nn.Identity()")
    ap.add_argument("--size", type=int, default=64, help="input height and width")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)(weights=None)
    model.fc = nn.Identity()
    if args.no_layer4:
        model.layer4 = nn.Identity()
    strides = [int(s) for s in args.strides.split(",")]
    if len(strides) != 4:
        sys.exit("--strides needs 4 comma-separated values")
    set_strides(model, strides)

    with open(args.file, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        state = torch.load(args.file, map_location="cpu", weights_only=True)
    else:
        state = load_file(args.file)
    result = model.load_state_dict(state, strict=True)
    print(f"load_state_dict(strict=True): {result}; {len(state)} tensors")

    model.eval()
    x = torch.randn(1, 3, args.size, args.size)
    with torch.no_grad():
        feats = x
        for name in ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]:
            feats = getattr(model, name)(feats)
        out = model(x)
    print(f"{args.arch} strides={strides} no_layer4={args.no_layer4}: input {list(x.shape)} "
          f"-> features {list(feats.shape)} -> output {list(out.shape)}, finite={bool(torch.isfinite(out).all())}")


if __name__ == "__main__":
    main()
