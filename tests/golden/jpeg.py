"""Golden values for vssl-data's JPEG decoding: what PIL (libjpeg-turbo) decodes.

Writes tests/golden/jpeg/{420,444,gray}.jpg, small JPEGs (a seeded smooth-plus-noise 61x37
image: odd sizes exercise partial MCUs and the chroma upsampler's edges) in 4:2:0, 4:4:4 and
grayscale, and tests/golden/jpeg/decoded.safetensors with PIL's RGB decoding of each
(`Image.open(f).convert("RGB")`, u8 [H, W, 3]) and OpenCV's (`cv2.imread`, BGR flipped to
RGB), which agree with each other. `python tests/golden/jpeg.py`; byte-identical on re-runs.
"""

import os

import cv2
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jpeg")


def image():
    rng = np.random.default_rng(20261201)
    h, w = 37, 61
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([128 + 90 * np.sin(x / 7.0 + c) * np.cos(y / 5.0 - c) for c in range(3)], -1)
    img = base + rng.normal(0, 18, size=(h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def main():
    os.makedirs(HERE, exist_ok=True)
    img = Image.fromarray(image())
    out = {}
    for name, kwargs, im in [
        ("420", {"quality": 85, "subsampling": 2}, img),
        ("444", {"quality": 92, "subsampling": 0}, img),
        ("gray", {"quality": 80}, img.convert("L")),
    ]:
        path = os.path.join(HERE, f"{name}.jpg")
        im.save(path, "JPEG", **kwargs)
        pil = np.asarray(Image.open(path).convert("RGB"))
        cv = cv2.imread(path, cv2.IMREAD_COLOR)[:, :, ::-1]
        assert (pil == cv).all(), f"{name}: PIL and OpenCV disagree"
        out[name] = torch.from_numpy(np.array(pil, copy=True))
    save_file(out, os.path.join(HERE, "decoded.safetensors"), metadata={"script": "tests/golden/jpeg.py"})
    print("wrote", HERE)


if __name__ == "__main__":
    main()
