"""Golden values for vssl-core's fused batch normalisation (crates/vssl-core/src/ops/norm.rs).

Computes, with PyTorch 2.9.1 on the CPU in float64 from float32 inputs,
    y = act(F.batch_norm(x, rm, rv, weight, bias, training, momentum=0.1, eps) + residual)
(act = ReLU or the identity; residual optional) and the gradients of (y * g).sum() with respect to
x, weight, bias and the residual, for train mode (batch statistics) and eval mode (the given
running statistics), rank 4 with odd sizes, rank 2 (BatchNorm1d), and an input whose mean is far
from zero (50) next to a standard deviation of 0.5. Train cases also store the batch's mean and
biased variance and the running statistics after PyTorch's update (momentum 0.1, unbiased
variance).

Keys per case `<name>`: `<name>.x`, `.weight`, `.bias`, `.running_mean`, `.running_var`, `.g`,
`.residual` (when used), `.out`, `.grad_x`, `.grad_weight`, `.grad_bias`, `.grad_residual`,
`.batch_mean`, `.batch_var` (train), `.new_running_mean`, `.new_running_var` (train), and
`.flags` = [train, relu, residual, eps].

Run from the repository root:
    .venv/bin/python tests/golden/norm.py
It writes tests/golden/norm.safetensors.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(20261201)
HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    # name: (x shape, train, relu, residual, eps, x offset, x scale)
    "train_relu_res": ((2, 5, 7, 9), True, True, True, 1e-5, 0.3, 1.0),
    "train_plain": ((3, 4, 5, 6), True, False, False, 1e-5, -0.2, 2.0),
    "train_relu": ((2, 6, 9, 8), True, True, False, 1e-3, 0.0, 1.0),
    "train_res": ((2, 3, 5, 5), True, False, True, 1e-5, 0.0, 1.0),
    "far_mean": ((2, 3, 11, 13), True, True, False, 1e-5, 50.0, 0.5),
    "eval_relu_res": ((2, 5, 7, 9), False, True, True, 1e-5, 0.1, 1.0),
    "eval_plain": ((3, 4, 6, 5), False, False, False, 1e-5, 0.0, 1.5),
    "bn1d_relu": ((7, 5), True, True, False, 1e-5, 0.5, 1.0),
}

out = {}
for name, (shape, train, relu, res, eps, off, scale) in CASES.items():
    c = shape[1]
    x32 = torch.randn(shape) * scale + off
    w32 = torch.rand(c) * 1.5 + 0.25
    b32 = torch.randn(c) * 0.3
    rm32 = torch.randn(c) * 0.2
    rv32 = torch.rand(c) + 0.5
    r32 = torch.randn(shape) if res else None
    x = x32.double().requires_grad_(True)
    w = w32.double().requires_grad_(True)
    b = b32.double().requires_grad_(True)
    r = r32.double().requires_grad_(True) if res else None
    rm, rv = rm32.double().clone(), rv32.double().clone()
    y = F.batch_norm(x, rm, rv, w, b, training=train, momentum=0.1, eps=eps)
    if res:
        y = y + r
    if relu:
        y = torch.relu(y)
    g32 = torch.randn(y.shape)
    (y * g32.double()).sum().backward()
    out[f"{name}.x"] = x32
    out[f"{name}.weight"] = w32
    out[f"{name}.bias"] = b32
    out[f"{name}.running_mean"] = rm32
    out[f"{name}.running_var"] = rv32
    out[f"{name}.g"] = g32
    out[f"{name}.out"] = y.detach().float()
    out[f"{name}.grad_x"] = x.grad.float()
    out[f"{name}.grad_weight"] = w.grad.float()
    out[f"{name}.grad_bias"] = b.grad.float()
    if res:
        out[f"{name}.residual"] = r32
        out[f"{name}.grad_residual"] = r.grad.float()
    if train:
        dims = [0] + list(range(2, len(shape)))
        xd = x32.double()
        out[f"{name}.batch_mean"] = xd.mean(dims).float()
        out[f"{name}.batch_var"] = xd.var(dims, unbiased=False).float()
        out[f"{name}.new_running_mean"] = rm.float()
        out[f"{name}.new_running_var"] = rv.float()
    out[f"{name}.flags"] = torch.tensor([float(train), float(relu), float(res), eps], dtype=torch.float32)

path = os.path.join(HERE, "norm.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path)
size = os.path.getsize(path)
assert size <= 1 << 20, size
print(f"{path}: {size} bytes, {len(CASES)} cases")
