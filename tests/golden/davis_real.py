"""Expected DAVIS numbers on real DAVIS-2016 val masks (crates/vssl-eval/tests/davis_real.rs).

The predictions are made from the ground truth alone by a fixed rule that the Rust test reproduces:
for frame t of a sequence, the prediction is the GT mask of frame max(t - LAG, 0) moved SHIFT_DOWN
pixels down and SHIFT_LEFT pixels left, pixels moved in from outside the image being background:

    pred_t[y, x] = gt_{max(t - 3, 0)}[y - 2, x + 3]   (0 where y - 2 < 0 or x + 3 >= W)

The scores are computed at full resolution (854x480) with the transcription of the official DAVIS
evaluator's metrics in davis_metrics.py (J, F with seg2bmap and the disk dilation, db_statistics,
first and last frame not scored, object-weighted means). DAVIS-2016 masks are mode-L {0, 255}: one
object, pixel >= 128.

Run from the repository root (the data is not in the repository):
    /work/main/.venv/bin/python tests/golden/davis_real.py --data ../shared/data/davis2016-val
It writes tests/golden/davis_real_expected.json.

It can also score a prediction folder (<pred>/<sequence>/<frame>.png, palette ids) against a DAVIS
tree, for one-off checks; --binarize counts every nonzero id as object 1:
    /work/main/.venv/bin/python tests/golden/davis_real.py --data ROOT --score PRED [--binarize]
        [--sequences a,b]
"""

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from davis_metrics import evaluate_sequence, statistics  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SEQUENCES = ["blackswan", "bmx-trees", "car-shadow", "dog", "soapbox"]
LAG, SHIFT_DOWN, SHIFT_LEFT = 3, 2, 3
COLUMNS = ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]


def read_gt(root, seq):
    d = os.path.join(root, "Annotations", "480p", seq)
    names = sorted(f for f in os.listdir(d) if f.endswith(".png"))
    masks = []
    for n in names:
        a = np.array(Image.open(os.path.join(d, n)))
        if Image.open(os.path.join(d, n)).mode == "L":
            a = (a >= 128).astype(np.uint8)
        masks.append(a)
    return [os.path.splitext(n)[0] for n in names], np.stack(masks)


def rule(gt):
    t, h, w = gt.shape
    pred = np.zeros_like(gt)
    for i in range(t):
        src = gt[max(i - LAG, 0)]
        pred[i, SHIFT_DOWN:, : w - SHIFT_LEFT] = src[: h - SHIFT_DOWN, SHIFT_LEFT:]
    return pred


def score(seqs):
    """seqs: [(name, gt [T,H,W], pred [T,H,W])] -> the JSON structure."""
    out_seqs, all_objs = [], []
    for name, gt, pred in seqs:
        j, f = evaluate_sequence(gt, pred)
        objs = []
        for o in range(j.shape[0]):
            jm, jr, jd = statistics(j[o])
            fm, fr, fd = statistics(f[o])
            objs.append(
                {"id": o + 1, "J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}
            )
        all_objs += objs
        out_seqs.append({"name": name, "frames": int(gt.shape[0]), "objects": objs})
    mean = lambda k: float(np.mean([o[k] for o in all_objs]))  # noqa: E731
    g = {k: mean(k) for k in COLUMNS[1:]}
    g = {"J&F-Mean": (g["J-Mean"] + g["F-Mean"]) / 2, **g}
    return {"global": g, "objects": len(all_objs), "sequences": out_seqs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="DAVIS-2016 root (Annotations/480p/<seq>/)")
    ap.add_argument("--score", help="score this prediction folder instead of writing the JSON")
    ap.add_argument("--binarize", action="store_true", help="with --score: every nonzero id is object 1")
    ap.add_argument("--sequences", help="comma-separated (default: the rule's sequences, or with --score all)")
    args = ap.parse_args()

    if args.score:
        names = args.sequences.split(",") if args.sequences else sorted(os.listdir(os.path.join(args.data, "Annotations", "480p")))
        seqs = []
        for s in names:
            stems, gt = read_gt(args.data, s)
            pred = np.zeros_like(gt)
            for i, st in enumerate(stems[1:-1], start=1):
                p = np.array(Image.open(os.path.join(args.score, s, st + ".png")))
                pred[i] = (p > 0) if args.binarize else p
            seqs.append((s, gt, pred))
        r = score(seqs)
        print(" ".join(f"{k}={v:.4f}" for k, v in r["global"].items()), f"({r['objects']} objects)")
        for s in r["sequences"]:
            for o in s["objects"]:
                print(f"{s['name']}_{o['id']}: J={o['J-Mean']:.4f} F={o['F-Mean']:.4f}")
        return

    names = args.sequences.split(",") if args.sequences else SEQUENCES
    seqs = []
    for s in names:
        _, gt = read_gt(args.data, s)
        seqs.append((s, gt, rule(gt)))
    r = score(seqs)
    doc = {
        "command": "/work/main/.venv/bin/python tests/golden/davis_real.py --data ../shared/data/davis2016-val",
        "data": "DAVIS-2016 val, Annotations/480p (854x480, mode-L {0, 255} masks)",
        "rule": f"pred_t[y, x] = gt_max(t-{LAG},0)[y-{SHIFT_DOWN}, x+{SHIFT_LEFT}], 0 outside the image",
        "bound_th": 0.008,
        **r,
    }
    path = os.path.join(HERE, "davis_real_expected.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    print(path, " ".join(f"{k}={v:.4f}" for k, v in r["global"].items()))


if __name__ == "__main__":
    main()
