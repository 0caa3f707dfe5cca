"""Golden values for vssl_core::ops::pad::reflection_pad2d.

Computes torch.nn.functional.pad(x, pad, mode='reflect') in float64 on float32 inputs, with
pad = (left, right, top, bottom), and the input gradient by autograd for a random upstream
gradient `w` (loss = (out * w).sum()); mirrored positions accumulate their gradients.
Generated with torch 2.9.1 (CPU).

Run from the repository root:  python tests/golden/pad.py
Writes tests/golden/pad.safetensors. Keys per case `<case>`: `<case>.x` (f32), `<case>.w` (f32),
`<case>.out`, `<case>.dx` (f64), `<case>.pad` (int64: left, right, top, bottom).
"""
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)

cases = {
    "sym1_r4": ((2, 3, 5, 7), (1, 1, 1, 1)),
    "asym_r4": ((2, 2, 6, 5), (2, 0, 1, 3)),
    "max_r4": ((1, 2, 4, 5), (4, 4, 3, 3)),  # size - 1 on every side
    "zero_r4": ((1, 1, 3, 3), (0, 0, 0, 0)),
    "w_only_r4": ((1, 2, 3, 6), (3, 5, 0, 0)),
    "sym2_r3": ((3, 7, 6), (2, 2, 2, 2)),
    "asym_r3": ((2, 4, 9), (0, 8, 3, 1)),
    "h2w2_r3": ((1, 2, 2), (1, 1, 1, 1)),
}

out = {}
for name, (shape, pad) in cases.items():
    x = torch.randn(shape, dtype=torch.float32)
    x64 = x.to(torch.float64).requires_grad_(True)
    y = F.pad(x64, pad, mode="reflect")
    w = torch.randn(y.shape, dtype=torch.float32)
    (y * w.to(torch.float64)).sum().backward()
    out[f"{name}.x"] = x
    out[f"{name}.w"] = w
    out[f"{name}.out"] = y.detach()
    out[f"{name}.dx"] = x64.grad.detach()
    out[f"{name}.pad"] = torch.tensor(pad, dtype=torch.int64)

save_file({k: v.contiguous() for k, v in out.items()}, "tests/golden/pad.safetensors")
print("wrote", len(out), "tensors")
