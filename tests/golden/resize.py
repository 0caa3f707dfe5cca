# Golden values for vssl-core's resize ops (crates/vssl-core/src/ops/resize.rs).
#
# Computes, with torch 2.9.1 on the CPU in float64 from float32 inputs:
#   - F.interpolate(x, size, mode='bilinear', align_corners=False/True, antialias=False), its
#     output and the gradient to x for a random upstream gradient w ((out * w).sum().backward()),
#     on up-, down-, mixed-, to-1x1 and from-1x1 resizes with N > 1 and odd sizes;
#   - F.interpolate(x, size, mode='nearest') and its gradient on several size pairs, including
#     non-integer ratios, exact 2x and identity;
#   - the 1-D source index vectors of torch's 'nearest' rule on many (in, out) pairs, for f32
#     (and u8) inputs: torch computes that index in the input's precision and f64 inputs differ
#     in rare cases (see below), vssl follows the f32 rule;
#   - the source index vectors of PIL's Image.resize(..., Image.NEAREST) (Pillow 13) on many
#     (in, out) pairs, found by resizing images whose pixel value is its own index
#     (row * W + col, mode "I"); the script checks that PIL's rule is separable (every output
#     row takes one input row, every output column one input column) and that it equals the
#     closed form vssl implements (an accumulated double: x0 = in/out * 0.5, x += in/out, and
#     the index is trunc(x)), then stores the per-axis vectors plus two full 2-D maps.
#
# Run from the repository root:  /root/vssl-venv/bin/python tests/golden/resize.py
# Writes tests/golden/resize.safetensors (keep it under 1 MiB).
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

torch.manual_seed(20260123)
HERE = os.path.dirname(os.path.abspath(__file__))
out = {}


def f32(*shape):
    return torch.randn(*shape, dtype=torch.float32)


# ---------------------------------------------------------------- bilinear
BILINEAR = {
    "up": ((2, 3, 5, 7), (11, 13)),
    "down": ((2, 2, 13, 11), (4, 6)),
    "mixed": ((1, 3, 9, 4), (3, 10)),
    "to1": ((2, 2, 5, 6), (1, 1)),
    "from1": ((2, 3, 1, 1), (4, 5)),
    "same": ((1, 2, 6, 5), (6, 5)),
    "rowcol": ((3, 1, 1, 8), (5, 3)),
}
for name, (shape, size) in BILINEAR.items():
    x = f32(*shape)
    out[f"bl_{name}_x"] = x
    for ac in (False, True):
        x64 = x.double().requires_grad_(True)
        y = F.interpolate(x64, size=size, mode="bilinear", align_corners=ac, antialias=False)
        w = f32(*y.shape)
        (y * w.double()).sum().backward()
        tag = f"bl_{name}_ac{int(ac)}"
        out[f"{tag}_w"] = w
        out[f"{tag}_out"] = y.detach()
        out[f"{tag}_grad"] = x64.grad.detach()

# ---------------------------------------------------------------- nearest (torch)
NEAREST = {
    "up5to13": ((2, 3, 5, 7), (13, 3)),
    "down7to3": ((1, 2, 7, 9), (3, 4)),
    "x2": ((2, 1, 6, 4), (12, 8)),
    "same": ((1, 2, 5, 5), (5, 5)),
    "odd": ((2, 2, 11, 6), (4, 17)),
    "to1": ((1, 3, 4, 5), (1, 1)),
}
for name, (shape, size) in NEAREST.items():
    x = f32(*shape)
    x64 = x.double().requires_grad_(True)
    y = F.interpolate(x64, size=size, mode="nearest")
    w = f32(*y.shape)
    (y * w.double()).sum().backward()
    out[f"nn_{name}_x"] = x
    out[f"nn_{name}_w"] = w
    out[f"nn_{name}_out"] = y.detach()
    out[f"nn_{name}_grad"] = x64.grad.detach()

PAIRS = [
    (480, 560), (560, 480), (7, 3), (3, 7), (5, 13), (13, 5), (854, 960), (960, 854),
    (120, 854), (70, 480), (480, 70), (854, 120), (1, 5), (5, 1), (100, 300), (300, 100),
    (37, 1000), (1000, 37), (6, 12), (12, 6), (9, 9), (640, 427), (427, 640), (1080, 1920),
    (33, 100), (100, 33), (49, 7), (7, 49), (255, 256), (256, 255),
]


def torch_idx(n_in, n_out, dtype=torch.float32):
    """Source indices of torch's 'nearest' rule, read off a resized arange (exact in f32)."""
    src = torch.arange(n_in, dtype=dtype).reshape(1, 1, 1, n_in)
    got = F.interpolate(src, size=(1, n_out), mode="nearest").reshape(-1)
    return got.to(torch.int64)


# torch's nearest index depends on the input dtype: f32 (and u8, f16) inputs compute
# floor(float(dst * float(in/out))) in float, f64 inputs use a double scale, which picks another
# source pixel in rare cases (560 -> 480, dst 54: 62 for f32, 63 for f64). vssl follows the f32
# rule (its ops run on f32 and u8), so the index vectors come from f32 inputs; the gradient cases
# above were computed in f64, so check that they use the same indices there.
assert torch_idx(560, 480)[54] == 62 and torch_idx(560, 480, torch.float64)[54] == 63
for name, (shape, size) in NEAREST.items():
    for n_in, n_out in zip(shape[2:], size):
        assert torch.equal(torch_idx(n_in, n_out), torch_idx(n_in, n_out, torch.float64)), name


for i, o in PAIRS:
    out[f"torchidx_{i}_{o}"] = torch_idx(i, o)
    # uint8 label maps follow the same rule as f32.
    src8 = (torch.arange(i) % 256).to(torch.uint8).reshape(1, 1, 1, i)
    got8 = F.interpolate(src8, size=(1, o), mode="nearest").reshape(-1).to(torch.int64)
    assert torch.equal(got8, torch_idx(i, o) % 256), (i, o)
# torch's rule per axis is the same on H and W: check one 2-D case.
src = torch.arange(7 * 13, dtype=torch.float32).reshape(1, 1, 7, 13)
got = F.interpolate(src, size=(5, 31), mode="nearest")[0, 0].to(torch.int64)
assert torch.equal(got // 13, torch_idx(7, 5)[:, None].expand(5, 31))
assert torch.equal(got % 13, torch_idx(13, 31)[None, :].expand(5, 31))


# ---------------------------------------------------------------- nearest (PIL)
def pil_rule(n_in, n_out):
    """Pillow's ImagingScaleAffine index rule, as vssl implements it."""
    a = n_in / n_out
    x = 0.5 * a
    res = []
    for _ in range(n_out):
        res.append(min(int(x), n_in - 1))
        x += a
    return np.array(res, dtype=np.int64)


def pil_map(w_in, h_in, w_out, h_out):
    img = np.arange(h_in * w_in, dtype=np.int32).reshape(h_in, w_in)
    im = Image.fromarray(img)
    assert im.mode == "I", im.mode
    return np.array(im.resize((w_out, h_out), Image.NEAREST)).astype(np.int64)


def pil_axes(w_in, h_in, w_out, h_out):
    m = pil_map(w_in, h_in, w_out, h_out)
    rows, cols = m // w_in, m % w_in
    assert (rows == rows[:, :1]).all() and (cols == cols[:1, :]).all(), "PIL not separable"
    return rows[:, 0], cols[0, :]


# (W_in, H_in, W_out, H_out) as PIL writes sizes.
PIL_SIZES = [
    (854, 480, 960, 560), (960, 560, 854, 480), (120, 70, 854, 480), (854, 480, 120, 70),
    (13, 7, 30, 11), (30, 11, 13, 7), (1, 1, 5, 3), (5, 3, 1, 1), (640, 427, 1280, 720),
    (1920, 1080, 854, 480), (100, 33, 33, 100), (256, 255, 255, 256), (7, 49, 49, 7),
]
pil_pairs = set()
for w_in, h_in, w_out, h_out in PIL_SIZES:
    r, c = pil_axes(w_in, h_in, w_out, h_out)
    assert np.array_equal(r, pil_rule(h_in, h_out)) and np.array_equal(c, pil_rule(w_in, w_out))
    pil_pairs.add((h_in, h_out))
    pil_pairs.add((w_in, w_out))
for i, o in PAIRS:
    img = Image.fromarray(np.arange(i, dtype=np.int32).reshape(1, i))
    c = np.array(img.resize((o, 1), Image.NEAREST))[0].astype(np.int64)
    assert np.array_equal(c, pil_rule(i, o)), (i, o)
    pil_pairs.add((i, o))
for i, o in sorted(pil_pairs):
    img = Image.fromarray(np.arange(i, dtype=np.int32).reshape(1, i))
    c = np.array(img.resize((o, 1), Image.NEAREST))[0].astype(np.int64)
    out[f"pilidx_{i}_{o}"] = torch.from_numpy(c)
# Exhaustive check of the closed form on small sizes (not stored).
for i in range(1, 120):
    img = Image.fromarray(np.arange(i, dtype=np.int32).reshape(1, i))
    for o in range(1, 300):
        c = np.array(img.resize((o, 1), Image.NEAREST))[0]
        assert np.array_equal(c, pil_rule(i, o)), (i, o)
# Two full 2-D maps (value = source row * W_in + source col), for the tensor function.
out["pilmap_13x7_to_30x11"] = torch.from_numpy(pil_map(13, 7, 30, 11))
out["pilmap_30x11_to_13x7"] = torch.from_numpy(pil_map(30, 11, 13, 7))

out = {k: v.contiguous() for k, v in out.items()}
path = os.path.join(HERE, "resize.safetensors")
save_file(out, path)
size = os.path.getsize(path)
assert size <= 1 << 20, size
print(f"wrote {path}: {len(out)} tensors, {size} bytes (torch {torch.__version__})")
