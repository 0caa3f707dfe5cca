"""Checks that a PNG written by vssl's `write_palette_mask` is what PIL (and so the DAVIS
tools) read as a palette mask: mode "P", the DAVIS palette, and the expected indices.

Usage: python tests/golden/datasets_check_palette.py MASK.png ID,ID,...  (row-major ids)
Exit status 0 when everything matches; prints what differs otherwise. Used by
crates/vssl-data/tests/datasets.rs when /root/vssl-venv/bin/python exists.
"""
import sys

import numpy as np
from PIL import Image

path, ids = sys.argv[1], [int(v) for v in sys.argv[2].split(",")]
im = Image.open(path)
ok = True
if im.mode != "P":
    print("mode", im.mode, "expected P")
    ok = False
pal = im.getpalette()
want = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]
if pal is None or pal[: len(want)] != want or pal[255 * 3 : 256 * 3] != [224, 224, 192]:
    print("palette", None if pal is None else pal[:15], "expected", want)
    ok = False
got = np.array(im).flatten().tolist()
if got != ids:
    print("indices", got, "expected", ids)
    ok = False
print("ok" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
