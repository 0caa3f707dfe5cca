# Golden values for vssl-data's geometric augmentation (crates/vssl-data/src/augment/).
#
# opencv-python-headless 5.0, numpy 2.x (torch 2.9.1 only to write the file). Everything is uint8.
# The operations are those of ContrastCorr's `libs/transforms_multi.py` (read at commit 9b11794),
# re-written here from their behaviour:
#   - `reflect_pad`: the reference's hand-written numpy reflection pad (`pad_reflection`). Its top
#     and left sides mirror WITHOUT repeating the edge row/column (like cv2.BORDER_REFLECT_101),
#     its bottom and right sides mirror WITH the edge (like cv2.BORDER_REFLECT), and a pad larger
#     than size-1 is done in several rounds (pad by size-1, then pad the result again). Checked
#     against the original function during development: identical on every case stored below.
#   - rotation (`RandomRotate` + `rotatenumpy`): reflect_pad by (h, h, w, w), then
#     cv2.warpAffine(padded, cv2.getRotationMatrix2D((W/2, H/2), angle, 1.0), (W, H),
#     flags=cv2.INTER_NEAREST) (default BORDER_CONSTANT 0), then the central h x w crop.
#   - cv2.resize with INTER_LANCZOS4 (RandomScale shrinking), INTER_CUBIC (enlarging) and
#     INTER_LINEAR (ResizeandPad: the reference passes its flag where cv2.resize takes `dst`).
#   - ResizeandPad(size): longer side to `size` (int() of the scaled shorter side), bilinear, then
#     reflect_pad of the shorter side with int((L-S)/2) before and the rest after.
#
# Run from the repository root:  /root/vssl-venv/bin/python tests/golden/augment.py
# Writes tests/golden/augment.safetensors (a few tens of KiB).
import os

import cv2
import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20260424)
out = {}


def reflect_pad(img, top, bottom, left, right):
    """The reference's pad: reflect-101 at top/left, symmetric at bottom/right, in rounds."""
    h, w = img.shape[:2]
    if top == bottom == left == right == 0:
        return img
    t, b, l, r = (min(top, h - 1), min(bottom, h - 1), min(left, w - 1), min(right, w - 1))
    rows = np.concatenate([np.arange(t, 0, -1), np.arange(h), np.arange(h - 1, h - 1 - b, -1)])
    cols = np.concatenate([np.arange(l, 0, -1), np.arange(w), np.arange(w - 1, w - 1 - r, -1)])
    padded = img[rows][:, cols]
    return reflect_pad(padded, top - t, bottom - b, left - l, right - r)


def rotate(img, angle):
    h, w = img.shape[:2]
    p = reflect_pad(img, h, h, w, w)
    m = cv2.getRotationMatrix2D((p.shape[1] / 2, p.shape[0] / 2), angle, 1.0)
    r = cv2.warpAffine(p, m, (p.shape[1], p.shape[0]), flags=cv2.INTER_NEAREST)
    return r[h : 2 * h, w : 2 * w]


def resize_and_pad(img, size):
    h, w = img.shape[:2]
    if not ((w >= h and w == size) or (h >= w and h == size)):
        if w > h:
            ow, oh = size, int(size * h / w)
        else:
            oh, ow = size, int(size * w / h)
        img = cv2.resize(img, (ow, oh))  # INTER_LINEAR
    h, w = img.shape[:2]
    if w > h:
        bd = int((w - h) / 2)
        img = reflect_pad(img, bd, (w - h) - bd, 0, 0)
    elif h > w:
        bd = int((h - w) / 2)
        img = reflect_pad(img, 0, 0, bd, (h - w) - bd)
    return img


def smooth_noise(h, w):
    """Random texture with both smooth and sharp parts (so resizes see real edges)."""
    coarse = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 25, (h, w, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


img = smooth_noise(36, 52)  # h=36, w=52
out["img"] = img
small = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
out["small"] = small

# padding: ordinary, zero sides, and larger than the image (several rounds)
PADS = {"a": (3, 4, 5, 6), "b": (0, 2, 1, 0), "c": (9, 11, 13, 6), "d": (5, 5, 7, 7)}
for name, (t, b, l, r) in PADS.items():
    out[f"pad_{name}_tblr"] = torch.tensor([t, b, l, r], dtype=torch.int64)
    out[f"pad_{name}"] = reflect_pad(small, t, b, l, r)

# rotations about the centre, nearest, with the reference's padding
ANGLES = [-10, -7, -3, -1, 0, 1, 4, 9, 10]
out["rot_angles"] = torch.tensor(ANGLES, dtype=torch.int64)
for a in ANGLES:
    out[f"rot_{a}"] = rotate(img, a)
out["rot_small_10"] = rotate(small, 10)
out["rot_small_-6"] = rotate(small, -6)

# resizes (dst sizes as (w, h)); the ratios are those RandomScale can draw
RESIZES = {
    "lanczos_down": (cv2.INTER_LANCZOS4, (44, 30)),  # ratio ~0.84
    "lanczos_down2": (cv2.INTER_LANCZOS4, (43, 31)),
    "cubic_up": (cv2.INTER_CUBIC, (62, 43)),  # ratio ~1.19
    "cubic_up2": (cv2.INTER_CUBIC, (57, 39)),
    "linear_down": (cv2.INTER_LINEAR, (40, 27)),
    "linear_up": (cv2.INTER_LINEAR, (61, 45)),
    "lanczos_up": (cv2.INTER_LANCZOS4, (60, 41)),
    "cubic_down": (cv2.INTER_CUBIC, (45, 31)),
}
for name, (flag, (w, h)) in RESIZES.items():
    out[f"rs_{name}_wh"] = torch.tensor([w, h], dtype=torch.int64)
    out[f"rs_{name}"] = cv2.resize(img, (w, h), interpolation=flag)

# ResizeandPad: wide (odd difference) and tall inputs
out["rap_wide_40"] = resize_and_pad(img, 40)  # 52x36 -> 40x27 -> pad 6 / 7
tall = np.ascontiguousarray(img.transpose(1, 0, 2))  # 36 wide, 52 tall
out["tall"] = tall
out["rap_tall_45"] = resize_and_pad(tall, 45)  # -> 31x45 -> pad 7 / 7
out["rap_wide_80"] = resize_and_pad(img, 80)  # enlarging, pad 12 / 13 (> h-1? no) ...
out["rap_small_20"] = resize_and_pad(small, 20)  # 7x5 -> 20x14, pad 3/3 (rounds: h-1=13 fine)

tensors = {}
for k, v in out.items():
    tensors[k] = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
path = os.path.join(HERE, "augment.safetensors")
save_file(tensors, path)
print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")
