"""Tiny fixtures for the vssl-data dataset tests (crates/vssl-data/tests/datasets.rs).

Run: /root/vssl-venv/bin/python tests/golden/datasets_fixtures.py
(Pillow, numpy, scipy; written with Pillow 11 / scipy 1.16 / numpy 2.)

Writes into crates/vssl-data/tests/fixtures/datasets/:
- palette_pil.png : 6x4 mode-P PNG with the DAVIS (PASCAL VOC) palette, made by PIL the way the
  DAVIS-2017 tools write masks; ids = PATTERN below (0, 1, 2, 3 and 255 = void).
- gray_pil.png    : 6x4 mode-L PNG with values {0, 255} (DAVIS-2016 form); 255 where PATTERN > 0.
- bilevel_pil.png : the same mask saved by PIL as mode "1" (1-bit grayscale PNG).
- pos_img.mat     : uncompressed MATLAB v5 (scipy savemat), pos_img 2x15x3 float64 with
  pos_img[c, j, t] = 1000*c + 10*j + t + 0.25, plus an int16 1x3 matrix `small` = [1, -2, 3],
  a cell array `notes` (the reader skips it) and a float32 scalar `scale` = 0.5 (1x1 single).
- pos_img_z.mat   : the same with do_compression=True (the reader inflates it).
"""
import os

import numpy as np
import scipy.io
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "crates", "vssl-data", "tests", "fixtures", "datasets")
os.makedirs(OUT, exist_ok=True)

PATTERN = np.array(
    [
        [0, 0, 1, 1, 2, 2],
        [0, 1, 1, 2, 2, 3],
        [3, 3, 0, 0, 255, 255],
        [1, 2, 3, 0, 1, 255],
    ],
    dtype=np.uint8,
)


def voc_palette():
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c = i
        r = g = b = 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


im = Image.fromarray(PATTERN, mode="P")
im.putpalette(voc_palette().flatten().tolist())
im.save(os.path.join(OUT, "palette_pil.png"))

gray = np.where(PATTERN > 0, 255, 0).astype(np.uint8)
Image.fromarray(gray, mode="L").save(os.path.join(OUT, "gray_pil.png"))
Image.fromarray(gray, mode="L").convert("1").save(os.path.join(OUT, "bilevel_pil.png"))

pos = np.zeros((2, 15, 3), dtype=np.float64)
for c in range(2):
    for j in range(15):
        for t in range(3):
            pos[c, j, t] = 1000 * c + 10 * j + t + 0.25
vars_ = {
    "pos_img": pos,
    "small": np.array([[1, -2, 3]], dtype=np.int16),
    "notes": np.array([["a"], ["bc"]], dtype=object),
    "scale": np.float32(0.5),
}
scipy.io.savemat(os.path.join(OUT, "pos_img.mat"), vars_, do_compression=False)
scipy.io.savemat(os.path.join(OUT, "pos_img_z.mat"), vars_, do_compression=True)

# self-check what was written
assert Image.open(os.path.join(OUT, "palette_pil.png")).mode == "P"
assert (np.array(Image.open(os.path.join(OUT, "palette_pil.png"))) == PATTERN).all()
back = scipy.io.loadmat(os.path.join(OUT, "pos_img.mat"))
assert (back["pos_img"] == pos).all()
print("wrote", sorted(os.listdir(OUT)))
