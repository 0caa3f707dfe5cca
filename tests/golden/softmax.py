"""Golden values for vssl_core::ops::softmax::{softmax, log_softmax}.

Computes torch.softmax(x, dim) and torch.log_softmax(x, dim) in float64 on float32 inputs, and
the input gradients by autograd for a random upstream gradient `w` (loss = (out * w).sum()).
Some inputs have magnitudes up to +-50 to check numerical stability (max subtraction).
Generated with torch 2.9.1 (CPU).

Run from the repository root:  python tests/golden/softmax.py
Writes tests/golden/softmax.safetensors. Keys per case `<case>`: `<case>.x` (f32), `<case>.w`
(f32), `<case>.softmax`, `<case>.dsoftmax`, `<case>.log_softmax`, `<case>.dlog_softmax` (f64),
`<case>.dim` (int64, the non-negative dim).
"""
import torch
from safetensors.torch import save_file

torch.manual_seed(0)

cases = {
    "r3_d0": ((5, 3, 7), 0, 1.0),
    "r3_d1": ((2, 5, 3), 1, 1.0),
    "r3_d2": ((3, 4, 9), 2, 1.0),
    "r4_d0": ((3, 2, 5, 3), 0, 1.0),
    "r4_d1": ((2, 7, 3, 5), 1, 1.0),
    "r4_d2": ((2, 3, 5, 3), 2, 1.0),
    "r4_d3": ((2, 3, 3, 11), 3, 1.0),
    "r4_d3_big": ((2, 3, 3, 11), 3, 50.0),
    "r4_d1_big": ((2, 5, 3, 3), 1, 50.0),
    "r2_d1_len1": ((4, 1), 1, 1.0),
    "r1_d0": ((13,), 0, 3.0),
}

out = {}
for name, (shape, dim, scale) in cases.items():
    if scale == 50.0:
        x = (torch.rand(shape, dtype=torch.float32) * 2 - 1) * 50
    else:
        x = torch.randn(shape, dtype=torch.float32) * scale
    w = torch.randn(shape, dtype=torch.float32)
    out[f"{name}.x"] = x
    out[f"{name}.w"] = w
    out[f"{name}.dim"] = torch.tensor([dim], dtype=torch.int64)
    for fn_name, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
        x64 = x.to(torch.float64).requires_grad_(True)
        y = fn(x64, dim)
        (y * w.to(torch.float64)).sum().backward()
        out[f"{name}.{fn_name}"] = y.detach()
        out[f"{name}.d{fn_name}"] = x64.grad.detach()

save_file({k: v.contiguous() for k, v in out.items()}, "tests/golden/softmax.safetensors")
print("wrote", len(out), "tensors")
