"""Golden values for vssl-eval's DAVIS metrics (crates/vssl-eval/src/metrics/davis.rs).

An independent transcription, written for this project, of the semantics of the official DAVIS-2017
evaluator (github.com/davisvideochallenge/davis2017-evaluation: `db_eval_iou`, `f_measure` with
`_seg2bmap`, `db_statistics`, the semi-supervised sequence handling of `DAVISEvaluation` and the
object-weighted means of `evaluation_method.py`). It uses the same library calls the official code
relies on for the parts where their exact behaviour matters: `skimage.morphology.disk` for the
structuring element and `cv2.dilate` for the dilation. Everything is float64.

Versions used to write the committed file: numpy 2.4.6, opencv-python-headless 5.0.0,
scikit-image 0.26.0, scipy 1.17.1, safetensors 0.8.0 (PyTorch is not needed). Fixed seed.

Keys:
- `frame<k>.gt`, `frame<k>.pred`: u8 [H, W] binary masks (0/1); `frame<k>.bound_th`: f64 [1];
  `frame<k>.expected`: f64 [J, precision, recall, F, radius]; `frame<k>.gt_bmap`: u8 boundary map
  of gt; `frame<k>.gt_dil`: u8 `cv2.dilate(gt_bmap, disk(radius))`.
- `stats<n>.values`: f64 [n] (some NaN); `stats<n>.expected`: f64 [mean, recall, decay];
  `stats<n>.bins`: i64 [4, 2] the decay bins as [start, end) (n = 1..12; n = 0 has no bins).
- `seq<k>.gt`, `seq<k>.pred`: u8 [T, H, W] label maps (ids, 255 = void in gt); `seq<k>.j`,
  `seq<k>.f`: f64 [n_obj, T-2]; `seq<k>.stats`: f64 [n_obj, 6] = J mean, recall, decay,
  F mean, recall, decay.
- `summary`: f64 [7] over all `seq<k>` (in k order), in the columns of the official global CSV:
  J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay.

Run from the repository root:
    /work/main/.venv/bin/python tests/golden/davis_metrics.py
It writes tests/golden/davis_metrics.safetensors.
"""

import math
import os

import cv2
import numpy as np
from safetensors.numpy import save_file
from skimage.morphology import disk

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20260517)


# ----------------------------------------------------------------------------- frame metrics


def jaccard(gt, pred):
    gt, pred = gt.astype(bool), pred.astype(bool)
    inter = np.count_nonzero(gt & pred)
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else inter / union


def boundary(mask):
    """1-px boundary: a pixel differs from its east, south or south-east neighbour."""
    m = mask.astype(bool)
    h, w = m.shape
    east = np.zeros_like(m)
    south = np.zeros_like(m)
    diag = np.zeros_like(m)
    east[:, : w - 1] = m[:, 1:]
    south[: h - 1, :] = m[1:, :]
    diag[: h - 1, : w - 1] = m[1:, 1:]
    b = (m != east) | (m != south) | (m != diag)
    b[h - 1, :] = m[h - 1, :] != east[h - 1, :]
    b[:, w - 1] = m[:, w - 1] != south[:, w - 1]
    b[h - 1, w - 1] = False
    return b


def radius_of(bound_th, shape):
    if bound_th >= 1:
        return bound_th
    return math.ceil(bound_th * math.sqrt(shape[0] ** 2 + shape[1] ** 2))


def dilate(b, radius):
    return cv2.dilate(b.astype(np.uint8), disk(radius).astype(np.uint8)) > 0


def boundary_prf(gt, pred, bound_th=0.008):
    r = radius_of(bound_th, gt.shape)
    bg, bp = boundary(gt), boundary(pred)
    n_gt, n_pred = int(bg.sum()), int(bp.sum())
    if n_pred == 0 and n_gt > 0:
        p, rc = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        p, rc = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        p, rc = 1.0, 1.0
    else:
        p = np.count_nonzero(bp & dilate(bg, r)) / n_pred
        rc = np.count_nonzero(bg & dilate(bp, r)) / n_gt
    f = 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)
    return p, rc, f, r


# ----------------------------------------------------------------------------- statistics


def decay_bins(n):
    if n == 0:
        return []
    ids = [int(v) for v in np.round(np.linspace(1, n, 5) + 1e-10) - 1]
    return [(ids[i], min(ids[i + 1] + 1, n)) for i in range(4)]


def nanmean(v):
    v = np.asarray(v, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float("nan") if v.size == 0 else float(v.mean())


def statistics(values):
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = nanmean(values)
    recall = float(np.count_nonzero(values > 0.5)) / n
    bins = decay_bins(n)
    decay = nanmean(values[bins[0][0] : bins[0][1]]) - nanmean(values[bins[3][0] : bins[3][1]])
    return mean, recall, decay


# ----------------------------------------------------------------------------- sequences


def evaluate_sequence(gt, pred):
    """gt, pred: [T, H, W] ids. Returns j, f: [n_obj, T-2]."""
    gt = gt.copy()
    gt[gt == 255] = 0
    n_obj = int(gt[0].max())
    scored = range(1, gt.shape[0] - 1)
    assert int(pred[1:-1].max()) <= n_obj
    j = np.zeros((n_obj, len(scored)))
    f = np.zeros((n_obj, len(scored)))
    for o in range(n_obj):
        for k, t in enumerate(scored):
            g, p = gt[t] == o + 1, pred[t] == o + 1
            j[o, k] = jaccard(g, p)
            f[o, k] = boundary_prf(g, p)[2]
    return j, f


# ----------------------------------------------------------------------------- inputs


def blob(h, w, sigma, thresh=0.0):
    noise = rng.standard_normal((h, w)).astype(np.float32)
    k = int(4 * sigma) | 1
    smooth = cv2.GaussianBlur(noise, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    return (smooth > thresh * smooth.std()).astype(np.uint8)


def perturb(mask, shift=(1, 2), flip=0.02):
    m = np.roll(mask, shift, axis=(0, 1)).copy()
    noise = rng.random(m.shape) < flip
    m[noise] = 1 - m[noise]
    return m


def pixel(h, w, y, x):
    m = np.zeros((h, w), np.uint8)
    m[y, x] = 1
    return m


def labels_seq(t, h, w, n_obj, sigma=4.0):
    """Objects as moving blobs: each later object overwrites the earlier ones."""
    seq = np.zeros((t, h, w), np.uint8)
    for ob in range(1, n_obj + 1):
        base = blob(h, w, sigma, 0.6)
        dy, dx = int(rng.integers(-2, 3)), int(rng.integers(-2, 3))
        for i in range(t):
            seq[i][np.roll(base, (i * dy, i * dx), axis=(0, 1)) > 0] = ob
    return seq


def noisy_pred(gt, n_ids):
    pred = gt.copy()
    pred[pred == 255] = 0
    for i in range(pred.shape[0]):
        pred[i] = np.roll(pred[i], (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
        flip = rng.random(pred[i].shape) < 0.01
        pred[i][flip] = rng.integers(0, n_ids + 1, size=int(flip.sum()))
    pred[pred > n_ids] = 0
    return pred


def main():
    """Writes tests/golden/davis_metrics.safetensors."""
    frames = []  # (gt, pred, bound_th)
    z = np.zeros((20, 30), np.uint8)
    o = np.ones((20, 30), np.uint8)
    frames += [(z, z, 0.008), (z, o, 0.008), (o, z, 0.008), (o, o, 0.008)]
    frames += [
        (pixel(20, 30, 5, 7), pixel(20, 30, 5, 7), 0.008),
        (pixel(20, 30, 5, 7), pixel(20, 30, 15, 25), 0.008),
        (pixel(20, 30, 5, 7), pixel(20, 30, 6, 8), 0.008),
        (pixel(20, 30, 19, 29), pixel(20, 30, 19, 29), 0.008),  # bottom-right corner
        (pixel(20, 30, 0, 0), pixel(20, 30, 19, 29), 3.0),
        (pixel(20, 30, 0, 29), pixel(20, 30, 19, 0), 0.008),
    ]
    b = blob(24, 32, 3.0)
    frames += [(b, np.zeros_like(b), 0.008), (np.zeros_like(b), b, 0.008)]
    # masks touching each edge and the corners
    e = np.zeros((30, 40), np.uint8)
    top_left = e.copy()
    top_left[:9, :13] = 1
    bottom_right = e.copy()
    bottom_right[20:, 25:] = 1
    left_strip = e.copy()
    left_strip[:, :5] = 1
    bottom_strip = e.copy()
    bottom_strip[26:, :] = 1
    frames += [
        (top_left, bottom_right, 0.008),
        (bottom_right, perturb(bottom_right, (-1, -1), 0.0), 2.0),
        (left_strip, bottom_strip, 0.008),
        (bottom_strip, perturb(bottom_strip, (1, 0), 0.0), 0.05),
        (left_strip, perturb(left_strip, (0, 2), 0.01), 2.5),
    ]
    # thin masks
    frames += [
        (np.array([[0, 1, 1, 0, 1, 0, 0]], np.uint8), np.array([[0, 0, 1, 1, 1, 1, 0]], np.uint8), 0.008),
        (np.array([[1], [1], [0], [1], [0]], np.uint8), np.array([[0], [1], [1], [1], [1]], np.uint8), 1.0),
        (np.ones((1, 1), np.uint8), np.zeros((1, 1), np.uint8), 0.008),
    ]
    # random blobs at several sizes and tolerances (radius 1..5, fractional pixel radii)
    for (h, w, sigma, th, bt) in [
        (48, 64, 4.0, 0.3, 0.008),
        (61, 97, 5.0, -0.2, 0.008),
        (120, 200, 8.0, 0.5, 0.008),
        (96, 160, 6.0, 0.0, 0.05),
        (64, 64, 3.0, 0.8, 4.0),
        (50, 70, 2.0, 0.0, 1.5),
        (40, 90, 3.0, 0.2, 3.7),
    ]:
        g = blob(h, w, sigma, th)
        frames.append((g, perturb(g, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), 0.03), bt))

    out = {}
    for k, (g, p, bt) in enumerate(frames):
        pre, rec, f, r = boundary_prf(g, p, bt)
        bg = boundary(g)
        out[f"frame{k:02}.gt"] = g.astype(np.uint8)
        out[f"frame{k:02}.pred"] = p.astype(np.uint8)
        out[f"frame{k:02}.bound_th"] = np.array([bt], np.float64)
        out[f"frame{k:02}.expected"] = np.array([jaccard(g, p), pre, rec, f, float(r)], np.float64)
        out[f"frame{k:02}.gt_bmap"] = bg.astype(np.uint8)
        out[f"frame{k:02}.gt_dil"] = dilate(bg, r).astype(np.uint8)

    for n in range(0, 13):
        v = rng.random(n)
        if n in (3, 7, 11):
            v[n // 2] = np.nan
        if n == 5:
            v[:2] = np.nan  # a NaN-only first bin
        out[f"stats{n:02}.values"] = v
        out[f"stats{n:02}.expected"] = np.array(statistics(v), np.float64)
        if n > 0:
            out[f"stats{n:02}.bins"] = np.array(decay_bins(n), np.int64)

    seqs = []
    g = labels_seq(9, 40, 56, 3)
    g[:, 10:12, :] = 255  # a void band
    seqs.append((g, noisy_pred(g, 3)))
    g = labels_seq(7, 36, 48, 3)
    seqs.append((g, noisy_pred(g, 2)))  # object 3 never predicted: padded empty masks
    g = labels_seq(5, 32, 40, 1)
    seqs.append((g, noisy_pred(g, 1)))
    g = labels_seq(3, 30, 30, 2)  # one scored frame
    seqs.append((g, noisy_pred(g, 2)))
    g = labels_seq(6, 34, 44, 2)
    g[1:, :5, :5] = 4  # an id absent from the first frame: not an object
    seqs.append((g, noisy_pred(g, 2)))
    g = labels_seq(12, 28, 36, 2)
    p = noisy_pred(g, 2)
    p[0] = 0
    p[0, 0, 0] = 7  # the first and last predictions are not read
    p[-1, 0, 0] = 9
    seqs.append((g, p))
    g = labels_seq(5, 20, 20, 1)
    g[0] = 0  # empty first frame: no object
    seqs.append((g, np.zeros_like(g)))

    all_stats = []
    for k, (g, p) in enumerate(seqs):
        j, f = evaluate_sequence(g, p)
        st = np.array([statistics(j[i]) + statistics(f[i]) for i in range(j.shape[0])], np.float64).reshape(-1, 6)
        all_stats.extend(st)
        out[f"seq{k}.gt"] = g
        out[f"seq{k}.pred"] = p
        out[f"seq{k}.j"] = j
        out[f"seq{k}.f"] = f
        out[f"seq{k}.stats"] = st
    s = np.array(all_stats)
    jm, fm = s[:, 0].mean(), s[:, 3].mean()
    out["summary"] = np.array([(jm + fm) / 2, jm, s[:, 1].mean(), s[:, 2].mean(), fm, s[:, 4].mean(), s[:, 5].mean()])

    path = os.path.join(HERE, "davis_metrics.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, path)
    size = os.path.getsize(path)
    assert size <= 1 << 20, size
    print(f"{path}: {size} bytes, {len(frames)} frames, {len(seqs)} sequences, {len(s)} objects")


if __name__ == "__main__":
    main()
