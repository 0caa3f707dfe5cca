"""Golden values for vssl-core's `affine_grid` and `grid_sample` (crates/vssl-core/src/ops/grid.rs).

Computes, with PyTorch 2.9.1 on the CPU:
  * torch.nn.functional.grid_sample(input, grid, mode="bilinear", padding_mode="zeros",
    align_corners=ac) for ac in (True, False), with gradients to the input and to the grid;
  * torch.nn.functional.affine_grid(theta, (N, C, H, W), align_corners=ac), its gradient to theta,
    and affine_grid feeding grid_sample, with gradients to theta and to the input.

Inputs are created in float32 and stored as float32; every reference is computed in float64 from
those float32 values (cast to float64), gradients by autograd of (out * w).sum() with a random
upstream gradient w (stored too). Fixed seed.

Grids mix: random points in [-1.25, 1.25] (off pixel centres), the four corners (±1, ±1), points far
outside [-1, 1] (every tap is zero padding), points just outside the border (some taps padded), and
points exactly on pixel centres. The pixel-centre points are chosen so that the unnormalised
coordinate is an exact integer both in float64 and in float32 arithmetic (dyadic values), because
the gradient to the grid jumps there: PyTorch takes floor(x) = x as the top-left tap, i.e. the
one-sided difference towards +x / +y, and both vssl paths follow that convention.

Run from the repository root:
    /root/vssl-venv/bin/python tests/golden/grid.py
It writes tests/golden/grid.safetensors.
"""

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(20261123)
out = {}


def unnorm(g, size, ac):
    return (g + 1) / 2 * (size - 1) if ac else ((g + 1) * size - 1) / 2


def norm(i, size, ac):
    """Normalised coordinate of pixel position i (exactly representable only when dyadic)."""
    if ac and size == 1:
        return 0.0
    return 2 * i / (size - 1) - 1 if ac else (2 * i + 1) / size - 1


def make_grid(n, ho, wo, h, w, ac):
    g = (torch.rand(n, ho, wo, 2) * 2.5 - 1.25).float()
    pts = []
    # the four corners of the normalised square
    pts += [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)]
    # far outside: every tap is padding
    pts += [(-2.5, 0.3), (0.2, -3.0), (3.0, 3.0)]
    # just outside the border, half a pixel out: some taps valid
    pts += [(1.0 + 0.5 / w, 0.1), (-0.3, -1.0 - 0.7 / h)]
    # exact pixel centres: keep only those whose unnormalised value is an exact integer in f32 too
    centres = []
    for iy in range(h):
        for ix in range(w):
            gx, gy = norm(ix, w, ac), norm(iy, h, ac)
            gx32, gy32 = torch.tensor(gx).float(), torch.tensor(gy).float()
            ux = unnorm(gx32, w, ac)
            uy = unnorm(gy32, h, ac)
            if float(gx32) == gx and float(gy32) == gy and ux == round(float(ux)) and uy == round(float(uy)):
                centres.append((gx, gy))
    # at most a third of the grid on pixel centres, the rest stays random
    total = n * ho * wo
    keep = torch.randperm(len(centres))[: max(1, total // 3)].tolist()
    pts += [centres[i] for i in keep]
    pts = pts[:total]
    flat = g.view(-1, 2)
    where = torch.randperm(total)[: len(pts)]
    for idx, p in zip(where.tolist(), pts):
        flat[idx] = torch.tensor(p)
    return g


def sample_case(name, n, c, h, w, ho, wo, ac):
    x = torch.randn(n, c, h, w).float()
    g = make_grid(n, ho, wo, h, w, ac)
    wgt = torch.randn(n, c, ho, wo).float()
    x64 = x.double().requires_grad_()
    g64 = g.double().requires_grad_()
    y = F.grid_sample(x64, g64, mode="bilinear", padding_mode="zeros", align_corners=ac)
    (y * wgt.double()).sum().backward()
    out[f"{name}.input"] = x
    out[f"{name}.grid"] = g
    out[f"{name}.w"] = wgt
    out[f"{name}.out"] = y.detach()
    out[f"{name}.grad_input"] = x64.grad
    out[f"{name}.grad_grid"] = g64.grad


def affine_case(name, n, c, h, w, ho, wo, ac):
    theta = (torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) * 0.8 + 0.3 * torch.randn(n, 2, 3)).float()
    x = torch.randn(n, c, h, w).float()
    wg = torch.randn(n, ho, wo, 2).float()
    wo_ = torch.randn(n, c, ho, wo).float()
    # affine_grid alone
    t64 = theta.double().requires_grad_()
    grid = F.affine_grid(t64, (n, c, ho, wo), align_corners=ac)
    (grid * wg.double()).sum().backward()
    out[f"{name}.theta"] = theta
    out[f"{name}.w_grid"] = wg
    out[f"{name}.grid"] = grid.detach()
    out[f"{name}.grad_theta_grid"] = t64.grad
    # affine_grid feeding grid_sample
    t64 = theta.double().requires_grad_()
    x64 = x.double().requires_grad_()
    grid = F.affine_grid(t64, (n, c, ho, wo), align_corners=ac)
    y = F.grid_sample(x64, grid, mode="bilinear", padding_mode="zeros", align_corners=ac)
    (y * wo_.double()).sum().backward()
    out[f"{name}.input"] = x
    out[f"{name}.w"] = wo_
    out[f"{name}.out"] = y.detach()
    out[f"{name}.grad_theta"] = t64.grad
    out[f"{name}.grad_input"] = x64.grad


for ac in (True, False):
    t = "ac1" if ac else "ac0"
    # odd input 5x7, odd output 4x6 (Ho x Wo), batch 2, 3 channels
    sample_case(f"odd_{t}", 2, 3, 5, 7, 4, 6, ac)
    # even input 6x8: pixel centres are dyadic for align_corners=False too
    sample_case(f"even_{t}", 1, 2, 6, 8, 5, 7, ac)
    # single-pixel input: with align_corners=True every grid point maps onto the pixel
    sample_case(f"one_{t}", 2, 2, 1, 1, 3, 3, ac)
    # affine_grid (output 5x3) feeding grid_sample on a 5x7 input
    affine_case(f"affine_{t}", 2, 3, 5, 7, 5, 3, ac)

out = {k: v.contiguous() for k, v in out.items()}
save_file(out, "tests/golden/grid.safetensors")
print(f"wrote {len(out)} tensors, torch {torch.__version__}")
