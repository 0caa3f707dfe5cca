"""Golden values for vssl_core::ops::pool::max_pool2d.

Computes torch.nn.functional.max_pool2d (ceil_mode=False, dilation 1) in float64 on float32
inputs, and the input gradient by autograd for a random upstream gradient `w`
(loss = (out * w).sum()). Generated with torch 2.9.1 (CPU).

Run from the repository root:  python tests/golden/pool.py
Writes tests/golden/pool.safetensors. Keys per case `<case>`: `<case>.x` (input, f32),
`<case>.w` (upstream gradient, f32), `<case>.out` and `<case>.dx` (f64 reference),
`<case>.cfg` (int64: kh, kw, sh, sw, ph, pw).
"""
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)

cases = {
    # ResNet stem: 3x3 / stride 2 / padding 1 on odd sizes.
    "k3s2p1": ((2, 3, 9, 7), (3, 3), (2, 2), (1, 1), "randn"),
    "k2s2p0": ((2, 2, 8, 6), (2, 2), (2, 2), (0, 0), "randn"),
    "k3s1p1": ((1, 3, 5, 6), (3, 3), (1, 1), (1, 1), "randn"),
    "k32s21p10": ((2, 2, 7, 5), (3, 2), (2, 1), (1, 0), "randn"),
    "k2s1p1": ((1, 2, 4, 5), (2, 2), (1, 1), (1, 1), "randn"),
    "k1s1p0": ((1, 1, 3, 4), (1, 1), (1, 1), (0, 0), "randn"),
    "k3s3p0_odd": ((2, 1, 10, 11), (3, 3), (3, 3), (0, 0), "randn"),
    # Ties: integer values in {0, 1, 2} and a constant region; first maximum gets the gradient.
    "ties_k3s2p1": ((2, 3, 9, 7), (3, 3), (2, 2), (1, 1), "ints"),
    "ties_k3s1p1": ((1, 2, 6, 5), (3, 3), (1, 1), (1, 1), "const"),
    # All values negative: padding must never be chosen.
    "neg_k3s2p1": ((1, 2, 5, 5), (3, 3), (2, 2), (1, 1), "neg"),
}

out = {}
for name, (shape, k, s, p, kind) in cases.items():
    if kind == "randn":
        x = torch.randn(shape, dtype=torch.float32)
    elif kind == "ints":
        x = torch.randint(0, 3, shape).to(torch.float32)
    elif kind == "const":
        x = torch.randint(0, 2, shape).to(torch.float32)
        x[..., 1:4, 1:4] = 5.0
    else:
        x = -10.0 - torch.rand(shape, dtype=torch.float32)
    x64 = x.to(torch.float64).requires_grad_(True)
    y = F.max_pool2d(x64, kernel_size=k, stride=s, padding=p)
    w = torch.randn(y.shape, dtype=torch.float32)
    (y * w.to(torch.float64)).sum().backward()
    out[f"{name}.x"] = x
    out[f"{name}.w"] = w
    out[f"{name}.out"] = y.detach()
    out[f"{name}.dx"] = x64.grad.detach()
    out[f"{name}.cfg"] = torch.tensor([k[0], k[1], s[0], s[1], p[0], p[1]], dtype=torch.int64)

save_file({k: v.contiguous() for k, v in out.items()}, "tests/golden/pool.safetensors")
print("wrote", len(out), "tensors")
