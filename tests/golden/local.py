"""Golden values for vssl-core's `local_affinity` and `local_aggregate`
(crates/vssl-core/tests/local.rs).

local_affinity: for a, b [B, C, H, W] and radius r, K = (2r+1)^2 window offsets numbered
k = (dy+r)(2r+1) + (dx+r),
    out[n, k, y, x] = sum_c a[n, c, y, x] * b[n, c, y+dy, x+dx]
computed with torch.nn.functional.unfold (kernel 2r+1, padding r); entries whose source position
is outside the image, or (Euclidean window, CRW's `dist < r` rule) whose offset has
dx^2 + dy^2 >= r^2, are -inf. Gradients to a and b of (out * w).sum() over the valid entries, for
a random upstream gradient w (stored with zeros on the -inf entries).

local_aggregate: for weights [B, K, H, W] and values [B, D, H, W],
    out[n, d, y, x] = sum_k weights[n, k, y, x] * values[n, d, y+dy, x+dx]
over the in-image offsets only: out-of-image weights are ignored whatever they hold (the stored
inputs put NaN / +-inf there to prove it). Weights are mostly a softmax over dim 1 of a local
affinity (realistic), one case uses raw random weights. Gradients to weights (0 off-image) and
values of (out * w).sum().

Inputs are float32 (stored as float32); the reference runs in float64 on the f32 inputs.
Written with torch 2.9.1 (CPU). Run from the repository root:

    python tests/golden/local.py

It writes tests/golden/local.safetensors. Keys per affinity case `<c>`: `<c>.a`, `<c>.b`,
`<c>.r`, `<c>.euclidean`, `<c>.out`, `<c>.w`, `<c>.grad_a`, `<c>.grad_b`; per aggregate case:
`<c>.weights`, `<c>.values`, `<c>.r`, `<c>.out`, `<c>.w`, `<c>.grad_weights`, `<c>.grad_values`.
"""

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(7)


def valid_mask(h, w, r, euclidean):
    """[K, H, W] bool: offset kept and source position inside the image."""
    s = 2 * r + 1
    m = torch.zeros(s * s, h, w, dtype=torch.bool)
    for dyi in range(s):
        for dxi in range(s):
            dy, dx = dyi - r, dxi - r
            if euclidean and dy * dy + dx * dx >= r * r:
                continue
            for y in range(h):
                for x in range(w):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        m[dyi * s + dxi, y, x] = True
    return m


def windows(t, r):
    """[B, C, H, W] -> [B, C, K, H, W]: the (2r+1)^2 window around every position, zero-padded."""
    n, c, h, w = t.shape
    s = 2 * r + 1
    return F.unfold(t, kernel_size=s, padding=r).view(n, c, s * s, h, w)


def local_affinity_ref(a, b, r, euclidean):
    dense = (a[:, :, None] * windows(b, r)).sum(1)
    mask = valid_mask(a.shape[2], a.shape[3], r, euclidean)[None].expand_as(dense)
    return dense, mask


def local_aggregate_ref(weights, values, r):
    mask = valid_mask(values.shape[2], values.shape[3], r, False)[None].expand_as(weights)
    wz = torch.where(mask, weights, torch.zeros_like(weights))
    return (wz[:, None] * windows(values, r)).sum(2)


out = {}

AFF = [
    # name, (B, C, H, W), r, euclidean
    ("aff_r2", (2, 5, 7, 9), 2, False),
    ("aff_r2_euc", (2, 5, 7, 9), 2, True),
    ("aff_r0", (2, 5, 7, 9), 0, False),
    ("aff_r4_small", (2, 5, 3, 5), 4, False),
    ("aff_r4_small_euc", (1, 3, 3, 5), 4, True),
    ("aff_r3_c17_euc", (1, 17, 6, 5), 3, True),
    ("aff_r1_c19", (3, 19, 4, 6), 1, False),
]
for name, shape, r, euc in AFF:
    a = torch.randn(shape, dtype=torch.float32)
    b = torch.randn(shape, dtype=torch.float32)
    a64 = a.to(torch.float64).requires_grad_(True)
    b64 = b.to(torch.float64).requires_grad_(True)
    dense, mask = local_affinity_ref(a64, b64, r, euc)
    w = torch.randn(dense.shape, dtype=torch.float32) * mask
    (torch.where(mask, dense, torch.zeros_like(dense)) * w.to(torch.float64)).sum().backward()
    res = torch.where(mask, dense.detach(), torch.full_like(dense, float("-inf")))
    out[f"{name}.a"] = a
    out[f"{name}.b"] = b
    out[f"{name}.r"] = torch.tensor([r], dtype=torch.int64)
    out[f"{name}.euclidean"] = torch.tensor([1 if euc else 0], dtype=torch.int64)
    out[f"{name}.out"] = res.contiguous()
    out[f"{name}.w"] = w.contiguous()
    out[f"{name}.grad_a"] = a64.grad
    out[f"{name}.grad_b"] = b64.grad

AGG = [
    # name, (B, C, H, W) of the features, D, r, euclidean affinity, softmax weights
    ("agg_r2", (2, 5, 7, 9), 3, 2, False, True),
    ("agg_r2_euc", (2, 5, 7, 9), 4, 2, True, True),
    ("agg_r0", (2, 5, 7, 9), 2, 0, False, True),
    ("agg_r4_small", (2, 4, 3, 5), 3, 4, False, True),
    ("agg_r1_d9_raw", (2, 3, 5, 4), 9, 1, False, False),
]
for name, shape, d, r, euc, soft in AGG:
    n, c, h, wd = shape
    a = torch.randn(shape, dtype=torch.float64)
    b = torch.randn(shape, dtype=torch.float64)
    dense, mask = local_affinity_ref(a, b, r, euc)
    if soft:
        logits = torch.where(mask, dense, torch.full_like(dense, float("-inf")))
        weights = torch.softmax(logits, dim=1).to(torch.float32)
    else:
        weights = torch.randn(dense.shape, dtype=torch.float32)
    # Off-image entries hold garbage the op must skip (Euclidean-masked but in-image entries
    # keep their softmax weight 0: they are ordinary weights for local_aggregate).
    inimage = valid_mask(h, wd, r, False)[None].expand_as(weights)
    garbage = torch.tensor([float("nan"), float("inf"), float("-inf"), 1e30], dtype=torch.float32)
    junk = garbage[torch.randint(0, 4, weights.shape)]
    weights = torch.where(inimage, weights, junk).contiguous()
    values = torch.randn((n, d, h, wd), dtype=torch.float32)
    w64 = weights.to(torch.float64).requires_grad_(True)
    v64 = values.to(torch.float64).requires_grad_(True)
    res = local_aggregate_ref(w64, v64, r)
    up = torch.randn(res.shape, dtype=torch.float32)
    (res * up.to(torch.float64)).sum().backward()
    out[f"{name}.weights"] = weights
    out[f"{name}.values"] = values
    out[f"{name}.r"] = torch.tensor([r], dtype=torch.int64)
    out[f"{name}.out"] = res.detach().contiguous()
    out[f"{name}.w"] = up
    out[f"{name}.grad_weights"] = w64.grad.contiguous()
    out[f"{name}.grad_values"] = v64.grad.contiguous()

for k, v in out.items():
    assert not torch.isnan(v).any() or k.endswith(".weights"), k

save_file(out, "tests/golden/local.safetensors")
print(f"wrote {len(out)} tensors to tests/golden/local.safetensors")
