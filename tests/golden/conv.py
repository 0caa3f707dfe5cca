"""Golden values for vssl-core's `conv2d` (crates/vssl-core/src/ops/conv.rs).

Computes, with PyTorch 2.9.1 on the CPU, torch.nn.functional.conv2d(x, w, stride, padding,
dilation) (one group, no bias) and the gradients of (out * g).sum() with respect to x and w, for
cases covering odd sizes, stride 2 on odd inputs, 1x1 kernels at stride 1 (the pointwise path) and
stride 2, dilation 2, and the 7x7/2 stem of a ResNet. Inputs and weights are created in float32 and
stored as float32; references are computed in float64 from them. Fixed seed.

Keys per case `<name>`: `<name>.x`, `<name>.w`, `<name>.g` (upstream gradient), `<name>.out`,
`<name>.grad_x`, `<name>.grad_w`, and `<name>.params` = [stride, padding, dilation].

Run from the repository root:
    /root/vssl-venv/bin/python tests/golden/conv.py
It writes tests/golden/conv.safetensors.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(20261123)
HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    # name: (x shape, w shape, stride, padding, dilation)
    "s1p1": ((2, 3, 9, 11), (4, 3, 3, 3), 1, 1, 1),
    "s2_odd": ((2, 5, 9, 7), (6, 5, 3, 3), 2, 1, 1),
    "pointwise": ((2, 8, 5, 6), (7, 8, 1, 1), 1, 0, 1),
    "pointwise_s2": ((2, 8, 7, 7), (4, 8, 1, 1), 2, 0, 1),
    "dilated": ((1, 4, 10, 9), (3, 4, 3, 3), 1, 2, 2),
    "stem": ((2, 3, 17, 15), (4, 3, 7, 7), 2, 3, 1),
    "nopad_s3": ((1, 2, 11, 10), (3, 2, 3, 2), 3, 0, 1),
}

out = {}
for name, (xs, ws, s, p, d) in CASES.items():
    x32 = torch.randn(xs)
    w32 = torch.randn(ws) * 0.3
    x = x32.double().requires_grad_(True)
    w = w32.double().requires_grad_(True)
    y = F.conv2d(x, w, stride=s, padding=p, dilation=d)
    g32 = torch.randn(y.shape)
    (y * g32.double()).sum().backward()
    out[f"{name}.x"] = x32
    out[f"{name}.w"] = w32
    out[f"{name}.g"] = g32
    out[f"{name}.out"] = y.detach().float()
    out[f"{name}.grad_x"] = x.grad.float()
    out[f"{name}.grad_w"] = w.grad.float()
    out[f"{name}.params"] = torch.tensor([s, p, d], dtype=torch.float32)

path = os.path.join(HERE, "conv.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path)
size = os.path.getsize(path)
assert size <= 1 << 20, size
print(f"{path}: {size} bytes, {len(CASES)} cases")
