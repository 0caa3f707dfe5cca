"""Golden values for vssl-core's Lab <-> RGB colour conversion (crates/vssl-core/src/ops/color.rs).

What it computes:
  * 8-bit: OpenCV's `cv2.cvtColor(.., COLOR_BGR2LAB)` and `COLOR_LAB2BGR` on uint8 colours (fed as
    BGR by reversing the channels of our RGB data, results reversed back to RGB):
      rgb_u8 [N, 3]  N = 40000: the RGB grid of step 15 (0, 15, .., 255: 18^3 = 5832 colours), all 256
                     greys, then seeded random colours;
      lab_u8 [N, 3]  cv2's 8-bit Lab of rgb_u8 (L*255/100, a+128, b+128);
      lab_in_u8 [M, 3]  M = 60000: lab_u8 followed by 20000 random Lab u8 triplets (many out of gamut);
      rgb_of_lab_u8 [M, 3]  cv2's COLOR_LAB2BGR of lab_in_u8, reversed to RGB.
  * float: skimage.color.rgb2lab / lab2rgb (D65, 2 degree observer) in float64 on float32 inputs, and the
    same formulas written in torch float64 for autograd gradients with a random upstream gradient w:
      rgb_f [4, 3, 9, 11] in [0, 1] (with exact 0, 1, greys, values around the sRGB threshold 0.04045),
      lab_of_rgb_f (skimage), w_lab [same], grad_rgb_f = d sum(rgb_to_lab(rgb_f) * w_lab) / d rgb_f;
      lab_f [3, 3, 7, 13] = skimage rgb2lab of random in-gamut colours (stored as float32),
      rgb_of_lab_f (skimage lab2rgb; in gamut so its final clip is a no-op), w_rgb,
      grad_lab_f = d sum(lab_to_rgb(lab_f) * w_rgb) / d lab_f.

Versions: torch 2.9.1, opencv-python-headless 5.0.0, scikit-image 0.26.0, numpy, safetensors.
Run from the repository root:  python tests/golden/color.py   (writes tests/golden/color.safetensors)
"""

import cv2
import numpy as np
import torch
from safetensors.torch import save_file
from skimage import color

rng = np.random.default_rng(20240607)
torch.manual_seed(20240607)

# ---------------------------------------------------------------- 8-bit, OpenCV
grid = np.arange(0, 256, 15, dtype=np.uint8)
r, g, b = np.meshgrid(grid, grid, grid, indexing="ij")
grid_rgb = np.stack([r, g, b], -1).reshape(-1, 3)
greys = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)
n_total = 40000
rand_rgb = rng.integers(0, 256, size=(n_total - len(grid_rgb) - len(greys), 3), dtype=np.uint8)
rgb_u8 = np.concatenate([grid_rgb, greys, rand_rgb], 0)
assert rgb_u8.shape == (n_total, 3)


def bgr2lab(rgb):
    img = np.ascontiguousarray(rgb[None, :, ::-1])
    return cv2.cvtColor(img, cv2.COLOR_BGR2LAB)[0]


def lab2rgb8(lab):
    img = np.ascontiguousarray(lab[None])
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_LAB2BGR)[0, :, ::-1])


lab_u8 = bgr2lab(rgb_u8)
rand_lab = rng.integers(0, 256, size=(20000, 3), dtype=np.uint8)
lab_in_u8 = np.concatenate([lab_u8, rand_lab], 0)
rgb_of_lab_u8 = lab2rgb8(lab_in_u8)

# ---------------------------------------------------------------- float, skimage + torch formula
XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
RGB_FROM_XYZ = torch.linalg.inv(XYZ_FROM_RGB)
WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def mix(m, t):  # t [..., 3, H, W], m [3, 3]: out[.., i] = sum_j m[i, j] t[.., j]
    return torch.einsum("ij,...jhw->...ihw", m, t)


def rgb_to_lab_torch(rgb):
    lin = torch.where(rgb > 0.04045, ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = mix(XYZ_FROM_RGB, lin) / WHITE[:, None, None]
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], -3)


def lab_to_rgb_torch(lab):
    L, a, b = lab.unbind(-3)
    fy = (L + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, fy - b / 200.0], -3)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * WHITE[:, None, None]
    lin = mix(RGB_FROM_XYZ, xyz)
    return torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, 12.92 * lin)


rgb_f = rng.random((4, 3, 9, 11)).astype(np.float32)
special = np.array([0.0, 1.0, 0.04045, 0.04, 0.041, 1e-4, 0.5, 0.999], dtype=np.float32)
rgb_f[0, :, 0, : len(special)] = special[None, :]  # per-channel border values
rgb_f[1, :, 0, : len(special)] = special[::-1][None, :]
rgb_f[2, :, 1, :] = rgb_f[2, 0:1, 1, :]  # greys
rgb_f[3, :, 2, :3] = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float32)  # primaries
lab_of_rgb_f = color.rgb2lab(rgb_f.astype(np.float64), channel_axis=1)
x = torch.tensor(rgb_f, dtype=torch.float64, requires_grad=True)
lab_t = rgb_to_lab_torch(x)
assert np.abs(lab_t.detach().numpy() - lab_of_rgb_f).max() < 1e-9, "torch formula != skimage"
w_lab = torch.randn(lab_t.shape, dtype=torch.float64)
(lab_t * w_lab).sum().backward()
grad_rgb_f = x.grad

src = rng.random((3, 3, 7, 13)) * 0.98 + 0.01
lab_f = color.rgb2lab(src, channel_axis=1).astype(np.float32)
rgb_of_lab_f = color.lab2rgb(lab_f.astype(np.float64), channel_axis=1)
y = torch.tensor(lab_f, dtype=torch.float64, requires_grad=True)
rgb_t = lab_to_rgb_torch(y)
assert np.abs(rgb_t.detach().numpy() - rgb_of_lab_f).max() < 1e-9, "torch formula != skimage"
w_rgb = torch.randn(rgb_t.shape, dtype=torch.float64)
(rgb_t * w_rgb).sum().backward()
grad_lab_f = y.grad

out = {
    "rgb_u8": torch.from_numpy(rgb_u8.copy()),
    "lab_u8": torch.from_numpy(lab_u8.copy()),
    "lab_in_u8": torch.from_numpy(lab_in_u8.copy()),
    "rgb_of_lab_u8": torch.from_numpy(rgb_of_lab_u8.copy()),
    "rgb_f": torch.from_numpy(rgb_f),
    "lab_of_rgb_f": torch.from_numpy(lab_of_rgb_f),
    "w_lab": w_lab,
    "grad_rgb_f": grad_rgb_f,
    "lab_f": torch.from_numpy(lab_f),
    "rgb_of_lab_f": torch.from_numpy(rgb_of_lab_f),
    "w_rgb": w_rgb,
    "grad_lab_f": grad_lab_f,
}
save_file({k: v.contiguous() for k, v in out.items()}, "tests/golden/color.safetensors")
print({k: tuple(v.shape) for k, v in out.items()})
