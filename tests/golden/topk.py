"""Golden values for vssl-core's `topk` (crates/vssl-core/tests/topk.rs).

Computes, for tensors of rank 2 and 3 along every axis (odd sizes, k = 1, k = size of the axis,
rows with ties, lines long enough to make the kernel compact its candidates), the top-k values and
indices like `torch.topk(x, k, dim, largest=True, sorted=True)`, and the gradient of
`(values * w).sum()` with respect to `x` for a random upstream gradient `w`.

Ties: PyTorch leaves their order unspecified; vssl's topk puts the lower index first. The
reference indices therefore come from a *stable* descending `torch.sort` (which keeps equal values
in index order), and the script asserts that their values equal `torch.topk`'s.

Inputs are float32 (stored as float32); the reference runs in float64 on the f32 inputs.
Written with torch 2.9.1 (CPU). Run from the repository root:

    python tests/golden/topk.py

It writes tests/golden/topk.safetensors. Keys, per case `<c>`: `<c>.x` (f32 input), `<c>.k`,
`<c>.dim`, `<c>.ties` (1 when the input has repeated values), `<c>.values` (f64),
`<c>.indices` (i64), `<c>.w` (f32 upstream gradient), `<c>.grad_x` (f64).
"""

import torch
from safetensors.torch import save_file

torch.manual_seed(20240611)

CASES = [
    # name, shape, dim, k, integer values (ties)
    ("r2_d0", (7, 5), 0, 3, False),
    ("r2_d1", (4, 9), 1, 4, False),
    ("r3_d0", (5, 3, 4), 0, 2, False),
    ("r3_d1", (2, 11, 3), 1, 5, False),
    ("r3_d2", (3, 2, 13), 2, 1, False),
    ("k_full_d1", (3, 6), 1, 6, False),
    ("k_full_d0", (5, 3), 0, 5, False),
    ("k1_d0", (9, 4), 0, 1, False),
    ("wide_inner", (3, 40, 37), 1, 7, False),
    ("wide_d0", (9, 50), 0, 4, False),
    ("long_d1", (3, 301), 1, 10, False),
    ("long_d0", (301, 19), 0, 10, False),
    ("ties_d1", (4, 13), 1, 6, True),
    ("ties_r3_d1", (2, 9, 5), 1, 4, True),
    ("ties_long_d0", (203, 3), 0, 9, True),
    ("blocks_d1", (2, 23, 301), 1, 5, False),
    ("blocks_ties_d0", (41, 517), 0, 3, True),
]

out = {}
for name, shape, dim, k, ties in CASES:
    if ties:
        x = torch.randint(0, 4, shape).to(torch.float32)
    else:
        x = torch.randn(shape, dtype=torch.float32)
    x64 = x.to(torch.float64).requires_grad_(True)
    order = torch.sort(x64.detach(), dim=dim, descending=True, stable=True).indices
    idx = order.narrow(dim, 0, k)
    values = x64.gather(dim, idx)
    ref_vals = torch.topk(x64.detach(), k, dim=dim, largest=True, sorted=True).values
    assert torch.equal(values.detach(), ref_vals), name
    if not ties:
        assert torch.equal(idx, torch.topk(x64.detach(), k, dim=dim).indices), name
    w = torch.randn(values.shape, dtype=torch.float32)
    (values * w.to(torch.float64)).sum().backward()
    out[f"{name}.x"] = x
    out[f"{name}.k"] = torch.tensor([k], dtype=torch.int64)
    out[f"{name}.dim"] = torch.tensor([dim], dtype=torch.int64)
    out[f"{name}.ties"] = torch.tensor([1 if ties else 0], dtype=torch.int64)
    out[f"{name}.values"] = values.detach().contiguous()
    out[f"{name}.indices"] = idx.contiguous()
    out[f"{name}.w"] = w
    out[f"{name}.grad_x"] = x64.grad.detach().contiguous()

save_file(out, "tests/golden/topk.safetensors")
print(f"wrote {len(out)} tensors to tests/golden/topk.safetensors")
