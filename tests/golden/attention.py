"""Golden values for vssl-core's grouped attention (crates/vssl-core/src/ops/attention.rs).

With PyTorch 2.9.1 on the CPU, in float64 from float32 inputs:
    P   = softmax(temp * q @ k.T, dim=1)          q [Mq, C], k [Mk, C], v [Mk, Cv],
    out = P @ v                                   Mq = groups * nq, Mk = groups * nk
    own[i] = sum of P[i, j] over the key columns j of row i's group (groups of nq consecutive
             query rows and nk consecutive key rows)
and the gradients of (out * w_out).sum() + (own * w_own).sum() with respect to q, k and v
(w_out, w_own random upstream gradients). ContrastCorr's Batch_Contrastive is this with
q = target-crop features, k = reference features, v = reference colour features, groups = B.

Keys per case `<name>`: `.q`, `.k`, `.v`, `.w_out`, `.w_own`, `.out`, `.own`, `.grad_q`, `.grad_k`,
`.grad_v`, `.params` = [temp, groups].

Run from the repository root:
    .venv/bin/python tests/golden/attention.py
It writes tests/golden/attention.safetensors.
"""

import os

import torch
from safetensors.torch import save_file

torch.manual_seed(20261202)
HERE = os.path.dirname(os.path.abspath(__file__))

CASES = {
    # name: (groups, nq, nk, C, Cv, temp, feature scale)
    "three_groups": (3, 7, 7, 5, 4, 1.7, 0.8),
    "one_group": (1, 13, 13, 6, 3, 1.0, 1.0),
    "peaked": (2, 9, 9, 8, 2, 2.0, 0.9),
    "rect": (2, 5, 11, 4, 2, 1.3, 0.9),
}

out = {}
for name, (groups, nq, nk, c, cv, temp, scale) in CASES.items():
    mq, mk = groups * nq, groups * nk
    q32, k32 = torch.randn(mq, c) * scale, torch.randn(mk, c) * scale
    v32 = torch.randn(mk, cv)
    wo32, wm32 = torch.randn(mq, cv), torch.randn(mq)
    q, k, v = (t.double().requires_grad_(True) for t in (q32, k32, v32))
    p = torch.softmax(temp * q @ k.T, dim=1)
    o = p @ v
    own = torch.stack([p[i, (i // nq) * nk:(i // nq + 1) * nk].sum() for i in range(mq)])
    ((o * wo32.double()).sum() + (own * wm32.double()).sum()).backward()
    assert p.max() < 0.999, name
    for key, t in {
        "q": q32, "k": k32, "v": v32, "w_out": wo32, "w_own": wm32,
        "out": o.detach().float(), "own": own.detach().float(),
        "grad_q": q.grad.float(), "grad_k": k.grad.float(), "grad_v": v.grad.float(),
        "params": torch.tensor([temp, float(groups)], dtype=torch.float32),
    }.items():
        out[f"{name}.{key}"] = t

path = os.path.join(HERE, "attention.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path)
size = os.path.getsize(path)
assert size <= 1 << 20, size
print(f"{path}: {size} bytes, {len(CASES)} cases")
