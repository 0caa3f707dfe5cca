"""Golden values for vssl's label-propagation engine: ContrastCorr, UVC and CRW on DAVIS-style video.

An independent float32 PyTorch transcription (written here, nothing imported from the official code)
of the label propagation of three official test scripts, from decoded frames + first-frame mask to
the per-frame output masks. Credits, and the files read for each detail:
  * ContrastCorr, github.com/594422814/ContrastCorr: test.py (forward, test), libs/test_utils.py
    (read_frame, read_seg, to_one_hot, transform_topk), libs/model.py
    (Model_switchGTfixdot_swCC_Res.forward, normalize), libs/net_utils.py (NLM_NC_woSoft,
    MutualMatching), libs/utils.py (norm_mask), libs/resnet.py; README: `python test.py -s 560`.
  * UVC, github.com/Liusifei/UVC: test.py (forward: L channel x3), libs/model.py (NLM_woSoft, no
    mutual matching), libs/test_utils.py (identical to ContrastCorr's); README: `-s 480`.
  * CRW, github.com/ajabri/videowalk: code/test.py (test), code/utils/test_utils.py
    (context_index_bank, mem_efficient_batched_affinity, dump_predictions), code/utils/__init__.py
    (make_encoder, MaskedAttention, From3D), code/resnet.py (ResNet.modify), code/data/vos.py
    (load_image, color_normalize, make_paths, make_lbl_set, the label resize),
    code/eval/convert_davis.py; README: `--topk 10 --videoLen 20 --radius 12 --temperature 0.05
    --cropSize -1 --model-type scratch`.
Written with torch 2.9.1 (CPU), opencv-python-headless 5.0.0, Pillow 13.0.0, numpy 2.4.6.
Everything is float32 on purpose (vssl's engine is f32; top-k and argmax are discrete, an f64
reference would only move the near-ties); the encoders run in eval mode.

PROTOCOLS (function names in brackets; every knob is a parameter)

ContrastCorr  [cc_work_size, cc_read_frame, cc_encoder_input, cc_label0, cc_affinity,
               transform_topk, propagate_cc, norm_mask, cc_output, run_cc]
  size      scale S (one number): landscape/equal sides (H0 <= W0): h = S,
            w = int((S * W0 / H0) // 64 * 64) (Python float arithmetic); portrait: w = S,
            h = int((S * H0 / W0) // 64 * 64). DAVIS 854x480 at S=560 -> 560x960.
  frame     cv2 BGR u8 -> cv2.resize(bgr, (w, h)) (INTER_LINEAR, u8 fixed-point) -> cv2 COLOR_BGR2LAB
            (8-bit) -> x = (lab - 128) / 128 (channels L, a, b).
  encoder   input ((x + 1) / 2 - mean) / std, ImageNet mean (0.485, 0.456, 0.406), std (0.229,
            0.224, 0.225) per channel (so effectively (lab/256 - mean)/std). ResNet-18, strides
            (1, 2, 1, 1), eval. Official: the model re-encodes both frames in every pair (and runs the
            colour autoencoder for nothing); features are computed once per frame here (same values).
  label0    GT ids (H0 x W0) -> PIL NEAREST resize of the float ('F') image to (w//8, h//8)
            (scipy.misc.imresize(.., 'nearest', mode='F')), C = int(max of THAT small map) + 1
            channels, one-hot.
  affinity  A = F_ref^T F_tar [N_ref, N_tar]; mutual matching
            A' = A * ((A / (max_over_tar(A) + 1e-5)) * (A / (max_over_ref(A) + 1e-5)));
            P = softmax over the REFERENCE axis (dim 0 here) of temp * A'.
  top-k     per target column keep P >= (k-th largest of the column), others 0, no renormalisation;
            pred = labels [C, N_ref] @ P.
  context   first frame (label0) + FIFO queue of the `context` previous frames (their soft average
            predictions, as is); acc = pred(first); acc += pred(q) for q oldest -> newest;
            avg = acc / (1 + len(queue)). The queue is popped (if full) and then pushed with avg.
  output    F.interpolate(avg, scale_factor=8, bilinear, align_corners=False) -> norm_mask
            (per channel: if max > 0: m -= min; m /= max; a constant positive channel gives NaN
            there) -> torch.max(dim=0) indices (first max) -> u8 -> PIL NEAREST to (W0, H0).
            Frame 0's output is the GT itself.
UVC           = ContrastCorr with: default S = 480 (854x480 -> 480x832), encoder input
            x[0] (the normalised L channel) repeated 3 times and then ((.+1)/2 - mean_c)/std_c per
            channel (three different channels), A' = A (plain dot product, no mutual matching).
CRW           [crw_input, crw_label0, crw_radius_mask, propagate_crw, crw_output, run_crw]
  frame     native size (--cropSize -1): cv2 BGR u8 -> float32 / 255 -> RGB -> (x - mean) / std
            (ImageNet, per channel).
  encoder   ResNet-18 with layer4 removed, layer3 stride 1 (strides (1, 2, 1)), and with
            --model-type scratch (the README command) REFLECT padding in every conv with padding > 0
            (ResNet.modify(padding='reflect'); the max-pool keeps its implicit -inf padding); eval.
            Features F.normalize(dim=channels) (L2, eps 1e-12).
  label0    one channel per id present in frame 0, in ascending id order (official: per distinct
            colour of the annotation read by cv2, sorted as BGR triplets; equal to id order for
            DAVIS palette ids 0..7 and for DAVIS-2016's {0, 255}); one-hot float32 ->
            cv2.resize(onehot, (ceil(W0/8), ceil(H0/8))) INTER_LINEAR (float path).
  padding   the video is front-padded with `context` copies of frame 0 (make_paths); target frame t
            (t >= 1, original numbering) has keys [frame 0 (long-term), frames t-context .. t-1]
            (negative -> frame 0) with labels: label0 for frame 0 and its copies, the soft
            prediction (as is) for frames >= 1.
  affinity  A = K^T Q over all (1 + context) * N keys jointly; on the short-term slots
            A += mask (0 where Euclidean cell distance sqrt(dy^2 + dx^2) < radius, else -1e10; the
            long-term frame-0 slot is unrestricted); A /= temperature; top-k over the key axis;
            weights = softmax over the k kept values; pred = sum_k labels[key] * weight.
  output    pred [h, w, C] -> cv2.resize(pred, (W0, H0)) INTER_LINEAR (float) -> np.argmax over
            channels (first max) -> id of that channel; no norm_mask (default). Frame 0's output is
            this same pipeline applied to label0 (NOT the GT copy).

FIXTURES (byte-identical on re-runs; both files together < 2 MiB; they need the DAVIS-2016 val
frames: $VSSL_SHARED_DATA or ../shared/data next to the workspace, davis2016-val in it)
tests/golden/propagate.safetensors (`python tests/golden/propagate.py`, < 1.25 MiB)
  Frames 0, 2, .., 10 of the DAVIS-2016 val sequences blackswan, car-shadow and dog (cv2 decode),
  each cv2.INTER_AREA-downscaled from 854x480 to 114x64, and the first mask (mode L, ids {0, 255})
  INTER_NEAREST-downscaled. The ids {0, 255} are kept on purpose: ContrastCorr's and UVC's one-hot
  then has 256 channels (C = max id + 1), 254 of them zero all along (asserted); the debug label
  tensors below keep channels 0 and 255 only.
  <seq>.frames   u8 [6, 64, 114, 3] RGB          <seq>.mask0  u8 [64, 114] ids {0, 255}
  Per case c (integers int64, reals float32, 1-element tensors unless noted):
    cc  : S = 72 -> work 72 x 128 (64->72 up, 114->128 up), features 9 x 16, queue 3, top-5
    uvc : S = 64 -> work 64 x 64, features 8 x 8, queue 3, top-5, L x3, no mutual matching
    crw : native 64 x 114, features 8 x 15, context 4 (+ frame 0), top-10, T = 0.05, radius 3
  c.param.*      cc/uvc: scale (S), context (queue length), topk, temp, mutual (0/1), eps,
                 l_only (1 = UVC's L x3 input); crw: context, topk, temperature, radius;
                 all: reflect (1 = CRW's reflect padding), width_stem (stem channels: 4 = width
                 1/16), strides (int64 [n_stages])
  c.encoder.<n>  the ResNet state_dict under torchvision names (no num_batches_tracked); random:
                 torchvision init, then resnet.py's randomise_bn with BN weight U(BN_GAMMA[c]) (cc
                 (0.35, 1.0), uvc (0.45, 1.25), crw (0.5, 1.5): see BN_GAMMA), bias U(-0.2, 0.2),
                 running_mean U(-0.2, 0.2), running_var U(0.5, 1.5). cc/uvc: stem 4 + 4 stages
                 (4, 8, 16, 32 channels, 32 out), crw: stem 4 + 3 stages (4, 8, 16; 16 out).
  Per case and sequence, prefix c.<seq>:
    work_size    int64 [2] (h, w) the encoder's input size (crw: the native H0, W0)
    feat_size    int64 [2] the feature / label map size
    masks.runs / masks.counts  the output masks (ids {0, 255}) of every frame, frame 0 included,
                 run-length encoded (rle_encode: int32 runs, int64 runs per frame)
    fragile      int64: output pixels (all frames) whose top-2 channel margin before the argmax is
                 < 1e-4 (a port may legitimately differ there)
    debug.*      (leading axis 0 / 1 = frame 0 / frame 1; the sequences after the first keep
                 frame 0's features only and no work_lab / aff / topk, for size)
    cc/uvc: work_lab  u8 [1, h, w, 3] the 8-bit Lab (L, a, b) of frame 0 after cv2.resize; the
                      encoder input is the exact f32 formula above applied to it
            feat      f32 [2, C, h/8, w/8] encoder output of frames 0 and 1
            label0    f32 [2, h/8, w/8] one-hot first-frame labels (channels of ids 0 and 255)
            f1.aff    f32 [N, N] frame 0 -> frame 1 affinity after mutual matching (uvc: the plain
                      dot product), before temp and the softmax; rows = reference (frame 0) nodes,
                      columns = target nodes, nodes row-major (y * w + x)
            f1.soft   f32 [2, h/8, w/8] the soft labels of frame 1 (context = frame 0 only)
            last.preds f32 [1 + context, 2, h/8, w/8] the last frame's per-context predictions:
                      first frame, then the queue oldest -> newest
            last.soft f32 [2, h/8, w/8] their average (what is queued and upsampled)
    crw:    feat      f32 [2, C, h, w] raw encoder output (before the L2 normalisation); the
                      encoder input is the formula above applied to <seq>.frames
            label0    f32 [2, h, w] bilinear-downsampled one-hot labels of frame 0
            f1.topk_val / last.topk_val f32 [k, N] the kept values of (A + mask) / temperature,
                      descending; f1.topk_w / last.topk_w f32 [k, N] their softmax;
            f1.topk_idx / last.topk_idx int32 [k, N] key index slot * N + node (slot 0 = frame 0
                      long-term, slots 1.. = frames t-context .. t-1). In frame 1 every slot holds
                      frame 0 (padding), so equal values sit in several slots and the slot torch
                      picks is arbitrary: compare node = idx mod N there, or values / weights
            f1.soft / last.soft f32 [2, h, w] soft predictions (what later frames use as labels)
  Robustness (printed by the script, per case and sequence): the smallest top-k boundary gap,
  and re-runs with the encoder outputs multiplied by (1 + 1e-6 / 1e-5 N(0, 1)): how far the last
  soft labels and the masks move (at most 24 mask pixels, uvc car-shadow).
tests/golden/propagate_davis.safetensors (`python tests/golden/propagate.py full [cc,uvc,crw]`)
  The official protocols at the official sizes (CC_DEFAULTS, UVC_DEFAULTS, CRW_DEFAULTS: 960x560,
  832x480, native 854x480) with the fixture's encoders on the first FULL_FRAMES frames (cc 6,
  uvc 6, crw 8) of the full-resolution sequences (cv2-decoded JPEGs); first masks as ids {0, 1}
  (2 channels instead of 256, the same output); masks stored as ids {0, 255}.
    c.frames               int64: frames stored
    c.<seq>.masks.runs / masks.counts / fragile   as above

DEVELOPMENT CLI (outputs are never committed)
  python tests/golden/propagate.py                      writes propagate.safetensors
  python tests/golden/propagate.py full [cc,uvc,crw]    writes propagate_davis.safetensors (slow:
      minutes per sequence and protocol)
  python tests/golden/propagate.py davis --root /work/shared/data/davis2016-val \
      --sequences blackswan,car-shadow,dog --protocol cc --weights FILE.safetensors \
      [--prefix encoder.] --out DIR      full protocol, official sizes; palette PNGs DIR/<seq>/%05d.png
  python tests/golden/propagate.py compare DIR_A DIR_B  fraction of equal pixels per sequence / all
  python tests/golden/propagate.py export-weights CASE FILE   the fixture's CASE encoder with the
      prefix `encoder.` (for the davis mode)
"""

import argparse
import math
import os
import resource
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from resnet import Basic, ResNet, randomise_bn, state_f32  # noqa: E402  (same folder)

MAX_BYTES = 5 << 18  # per file; both files together stay under 2 MiB
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FRAGILE = 1e-4

CC_DEFAULTS = dict(scale=560, context=7, topk=5, temp=1.0, mutual=True, eps=1e-5, l_only=False)
UVC_DEFAULTS = dict(scale=480, context=7, topk=5, temp=1.0, mutual=False, eps=1e-5, l_only=True)
CRW_DEFAULTS = dict(context=20, topk=10, temperature=0.05, radius=12.0)


# ------------------------------------------------------------------------------------- encoders
def make_encoder(strides, width, reflect=False):
    """resnet.py's ResNet (torchvision names), BasicBlock x2 per stage, eval mode. `reflect` sets
    padding_mode='reflect' on every conv with padding > 0, as CRW's ResNet.modify does."""
    net = ResNet(Basic, [2] * len(strides), strides, width)
    if reflect:
        for m in net.modules():
            if isinstance(m, nn.Conv2d) and sum(m.padding) > 0:
                m.padding_mode = "reflect"
    return net.eval()


def encoder_from_state(state, strides, reflect):
    """Build the encoder whose stem width matches `state` and load it (extra stages ignored)."""
    stem = state["conv1.weight"].shape[0]
    net = make_encoder(strides, stem / 64, reflect)
    want = net.state_dict()
    load = {}
    for k, v in want.items():
        if k.endswith("num_batches_tracked"):
            load[k] = v
            continue
        assert k in state, f"weights lack {k}"
        assert state[k].shape == v.shape, (k, tuple(state[k].shape), tuple(v.shape))
        load[k] = state[k].float()
    net.load_state_dict(load)
    return net.eval()


@torch.no_grad()
def encode(net, x):
    """x [3, h, w] or [B, 3, h, w] -> features."""
    return net(x[None] if x.dim() == 3 else x)


# ------------------------------------------------------------------------------ ContrastCorr / UVC
def cc_work_size(h0, w0, scale):
    """libs/test_utils.py: read_frame's size rule (scale = [S] or [h, w])."""
    if len(scale) == 2:
        return int(scale[0]), int(scale[1])
    s = scale[0]
    if h0 > w0:
        tw = s
        th = int(((s * h0) / w0 // 64) * 64)
    else:
        th = s
        tw = int(((s * w0) / h0 // 64) * 64)
    return th, tw


def cc_read_frame(rgb, work_hw):
    """RGB u8 [H0, W0, 3] -> (lab u8 [h, w, 3], x f32 [3, h, w] = (lab - 128) / 128)."""
    h, w = work_hw
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    bgr = cv2.resize(bgr, (w, h))  # default INTER_LINEAR, as in the official code
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    x = torch.from_numpy(lab.transpose(2, 0, 1).copy()).float()
    for t in x:  # transforms_pair.Normalize: sub_ then div_
        t.sub_(128.0).div_(128.0)
    return lab, x


def cc_encoder_input(x, l_only):
    """Model forward's input transform; UVC's test.py first takes x[0] (L) repeated 3 times."""
    if l_only:
        x = x[0:1].repeat(3, 1, 1)
    x = (x + 1) / 2
    mean = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std


def cc_label0(mask0, work_hw):
    """read_seg + to_one_hot: PIL nearest of the float image to (w//8, h//8), max+1 channels."""
    h, w = work_hw
    h0, w0 = mask0.shape
    if h0 == w0 and (h, w) != (h // 8 * 8, w):
        raise NotImplementedError("square frames: the official label size differs from the frame's")
    small = Image.fromarray(mask0.astype(np.float32)).resize((w // 8, h // 8), Image.NEAREST)
    small = torch.from_numpy(np.asarray(small).copy())
    n = int(small.max()) + 1
    onehot = torch.zeros(n, h // 8, w // 8)
    onehot.scatter_(0, small.long()[None], 1.0)
    return onehot


def cc_affinity(f_ref, f_tar, mutual, eps=1e-5):
    """NLM_NC_woSoft (mutual) or NLM_woSoft: [C, h, w] x2 -> [N_ref, N_tar] (before softmax)."""
    a = f_ref.flatten(1).t() @ f_tar.flatten(1)
    if mutual:
        max_ref = a.max(dim=0, keepdim=True).values  # official dim 1: over reference nodes
        max_tar = a.max(dim=1, keepdim=True).values  # official dim 2: over target nodes
        a = a * ((a / (max_tar + eps)) * (a / (max_ref + eps)))
    return a


def topk_gap(stats, p, k):
    """Record the smallest relative gap between the k-th and (k+1)-th value of each column (the
    columns whose k-th value is > 0) and the number of exact ties there."""
    if stats is None or p.shape[0] <= k:
        return
    s = torch.topk(p, k + 1, dim=0).values
    vk, vk1 = s[k - 1], s[k]
    pos = vk > 0
    rel = (vk - vk1)[pos] / vk[pos]
    stats["ties"] = stats.get("ties", 0) + int((rel == 0).sum())
    rel = rel[rel > 0]
    if rel.numel():
        stats["gap"] = min(stats.get("gap", math.inf), float(rel.min()))


def transform_topk(p, labels, k):
    """libs/test_utils.py: transform_topk, p [N_ref, N_tar] (softmaxed over dim 0), labels [C, h, w]."""
    kth = torch.topk(p, k, dim=0).values.min(dim=0, keepdim=True).values
    p = p.clone()
    p[kth > p] = 0
    return (labels.flatten(1) @ p).view(labels.shape)


def cc_pair(f_ref, f_tar, seg, *, topk, temp, mutual, eps=1e-5, block=1024, stats=None):
    """test.py: forward() = Model forward's aff_norm + transform_topk, for one (reference, target)
    pair, computed in blocks of `block` target columns (every column is independent once the
    per-reference-row maximum over ALL targets is known). Returns (pred [K, h, w], the affinity
    after mutual matching [N_ref, N_tar] when it fits in one block, else None)."""
    r = f_ref.flatten(1).t().contiguous()  # [N_ref, C]
    q = f_tar.flatten(1)  # [C, N_tar]
    n = q.shape[1]
    if n <= block:
        a = cc_affinity(f_ref, f_tar, mutual, eps)
        p = torch.softmax(a * temp, dim=0)
        topk_gap(stats, p, topk)
        return transform_topk(p, seg, topk), a
    if mutual:  # max over targets of every reference row, over all blocks
        max_tar = torch.full((r.shape[0], 1), -math.inf)
        for b0 in range(0, n, block):
            torch.maximum(max_tar, (r @ q[:, b0:b0 + block]).max(dim=1, keepdim=True).values,
                          out=max_tar)
    lab = seg.flatten(1)
    pred = torch.empty(lab.shape[0], n)
    for b0 in range(0, n, block):
        a = r @ q[:, b0:b0 + block]
        if mutual:  # a * ((a / (max_tar + eps)) * (a / (max_ref + eps))), products commute
            max_ref = a.max(dim=0, keepdim=True).values
            t = a / (max_tar + eps)
            t.mul_(a / (max_ref + eps))
            a = t.mul_(a)
        if temp != 1:
            a = a * temp
        p = torch.softmax(a, dim=0)
        topk_gap(stats, p, topk)
        kth = torch.topk(p, topk, dim=0).values.min(dim=0, keepdim=True).values
        p[kth > p] = 0
        pred[:, b0:b0 + block] = lab @ p
    return pred.view(seg.shape), None


def propagate_cc(feats, label0, *, context, topk, temp, mutual, eps=1e-5, block=1024, record=None,
                 stats=None):
    """test.py: test(), features given. feats: list of [C, h, w] (frame 0 first) or an iterator;
    returns the list of averaged soft labels [K, h, w] for frames 1.. (index 0 = None)."""
    it = iter(feats)
    f_first = next(it)
    queue = []  # (features, soft labels), oldest first
    out = [None]

    def forward(f_ref, f_tar, seg):
        return cc_pair(f_ref, f_tar, seg, topk=topk, temp=temp, mutual=mutual, eps=eps,
                       block=block, stats=stats)

    for t, f_tar in enumerate(it, start=1):
        acc, a_first = forward(f_first, f_tar, label0)
        preds = [acc.clone()]
        for f_i, seg_i in queue:
            est, _ = forward(f_i, f_tar, seg_i)
            preds.append(est)
            acc += est
        avg = acc / (1 + len(queue))
        if len(queue) == context:
            queue.pop(0)
        if context > 0:
            queue.append((f_tar, avg.clone()))
        out.append(avg)
        if record is not None:
            record(t, a_first, preds, avg)
    return out


def norm_mask(mask):
    """libs/utils.py: norm_mask, in place on [C, H, W]; returns (mask, channels that became NaN)."""
    bad = []
    for c in range(mask.shape[0]):
        m = mask[c]
        if m.max() > 0:
            m = m - m.min()
            if not m.max() > 0:
                bad.append(c)
            m = m / m.max()
            mask[c] = m
    return mask, bad


def cc_output(soft, out_hw):
    """Upsample x8 (bilinear, align_corners False), norm_mask, argmax, PIL nearest to H0 x W0.
    Returns (ids u8 [H0, W0], top-2 margin f32 [H0, W0], NaN channels)."""
    up = F.interpolate(soft[None], scale_factor=8, mode="bilinear", align_corners=False)[0]
    up, bad = norm_mask(up)
    _, seg = torch.max(up, dim=0)
    seg = seg.numpy().astype(np.uint8)
    h0, w0 = out_hw
    ids = np.asarray(Image.fromarray(seg).resize((w0, h0), Image.NEAREST))
    if up.shape[0] > 1:
        top2 = torch.topk(up, 2, dim=0).values
        margin = (top2[0] - top2[1]).numpy().astype(np.float32)
    else:
        margin = np.full(seg.shape, np.inf, np.float32)
    margin = np.asarray(Image.fromarray(margin).resize((w0, h0), Image.NEAREST))
    return ids, margin, bad


def run_cc(frames, mask0, net, *, scale, context, topk, temp, mutual, eps=1e-5, l_only=False,
           debug=None, stats=None, log=print):
    """ContrastCorr (l_only=False, mutual=True) or UVC (l_only=True, mutual=False) end to end.
    frames: sequence of RGB u8 [H0, W0, 3] (len T); mask0: u8 ids [H0, W0].
    Returns (masks u8 [T, H0, W0], fragile pixel count)."""
    h0, w0 = mask0.shape
    work = cc_work_size(h0, w0, [scale] if np.isscalar(scale) else scale)
    assert work[0] % 8 == 0 and work[1] % 8 == 0, work
    label0 = cc_label0(mask0, work)
    T = len(frames)
    if debug is not None:
        debug["work_size"] = torch.tensor(work, dtype=torch.int64)
        debug["feat_size"] = torch.tensor([work[0] // 8, work[1] // 8], dtype=torch.int64)
        debug["debug.label0"] = label0.clone()
        debug["debug.work_lab"] = []
        debug["debug.feat"] = []

    def features():
        for t in range(T):
            lab, x = cc_read_frame(frames[t], work)
            xin = cc_encoder_input(x, l_only)
            f = encode(net, xin)[0]
            assert f.shape[1:] == (work[0] // 8, work[1] // 8), (f.shape, work)
            if debug is not None and t < 2:
                debug["debug.work_lab"].append(torch.from_numpy(lab.copy()))
                debug["debug.feat"].append(f.clone())
            yield f

    def record(t, a_first, preds, avg):
        if debug is None:
            return
        if t == 1:
            debug["debug.f1.aff"] = a_first.clone()
            debug["debug.f1.soft"] = avg.clone()
        if t == T - 1:
            debug["debug.last.preds"] = torch.stack(preds)
            debug["debug.last.soft"] = avg.clone()

    masks = [mask0.astype(np.uint8)]
    fragile = 0
    soft_iter = propagate_cc(features(), label0, context=context, topk=topk, temp=temp,
                             mutual=mutual, eps=eps, record=record, stats=stats)
    for t, soft in enumerate(soft_iter):
        if t == 0:
            continue
        assert soft.shape == label0.shape, (soft.shape, label0.shape)
        ids, margin, bad = cc_output(soft, (h0, w0))
        if bad:
            log(f"  frame {t}: norm_mask divides by zero on channels {bad} (NaN, as the official code)")
        fragile += int((margin < FRAGILE).sum())
        masks.append(ids)
    if debug is not None:
        debug["debug.work_lab"] = torch.stack(debug["debug.work_lab"])
        debug["debug.feat"] = torch.stack(debug["debug.feat"])
    return np.stack(masks), fragile


# --------------------------------------------------------------------------------------------- CRW
def crw_input(rgb):
    """vos.py: load_image (cv2 BGR -> float32 / 255 -> RGB) + color_normalize; -> [3, H0, W0]."""
    x = torch.from_numpy(rgb.astype(np.float32).transpose(2, 0, 1).copy()) / 255.0
    for t, m, s in zip(x, MEAN, STD):
        t.sub_(m)
        t.div_(s)
    return x


def crw_label0(mask0, scale=8):
    """vos.py: one-hot per id present in frame 0 (ascending), cv2 bilinear to ceil(H0/8) x ceil(W0/8).
    Returns (labels f32 [K, h, w], ids [K])."""
    h0, w0 = mask0.shape
    ids = np.unique(mask0)
    onehot = np.stack([mask0 == i for i in ids], axis=-1).astype(np.float32)
    rh, rw = math.ceil(h0 / scale), math.ceil(w0 / scale)
    small = cv2.resize(onehot, (rw, rh), interpolation=cv2.INTER_LINEAR)
    if small.ndim == 2:
        small = small[..., None]
    return torch.from_numpy(small.transpose(2, 0, 1).copy()), ids


def crw_radius_mask(h, w, radius):
    """utils.MaskedAttention.make + test.py: [N, N], 0 where the cell distance < radius, else -1e10."""
    gx, gy = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    d = ((gx[None, None] - gx[:, :, None, None]) ** 2
         + (gy[None, None] - gy[:, :, None, None]) ** 2).float() ** 0.5
    d = (d < radius).float().flatten(0, 1).flatten(1)
    d[d == 0] = -1e10
    d[d == 1] = 0
    return d


def propagate_crw(feats, label0, *, context, topk, temperature, radius, chunk=1024, record=None,
                  stats=None):
    """test.py: test() with test_utils.context_index_bank / mem_efficient_batched_affinity.
    feats [T, C, h, w] L2-normalised; label0 [K, h, w]. Returns soft labels [T, K, h, w]
    (index 0 = label0, as the official loop sets)."""
    T, C, h, w = feats.shape
    N = h * w
    mask = crw_radius_mask(h, w, radius)
    flat = feats.flatten(2)  # [T, C, N]
    soft = [label0]
    for t in range(1, T):
        slots = [0] + [max(0, t - context + j) for j in range(context)]
        keys = flat[slots].permute(0, 2, 1).reshape(-1, C)  # [(1+L) N, C]
        lbl = torch.stack([soft[s] for s in slots]).flatten(2)  # [(1+L), K, N]
        lbl = lbl.permute(1, 0, 2).reshape(label0.shape[0], -1)  # [K, (1+L) N]
        pred = torch.empty(label0.shape[0], N)
        vals, ws, idxs = [], [], []
        for q0 in range(0, N, chunk):
            q1 = min(N, q0 + chunk)
            a = keys @ flat[t][:, q0:q1]  # [(1+L) N, n]
            a = a.view(1 + context, N, q1 - q0)
            a[1:] += mask[:, q0:q1]
            a = a.view(-1, q1 - q0)
            a /= temperature
            if stats is not None and a.shape[0] > topk:
                v1 = torch.topk(a, topk + 1, dim=0).values
                g = v1[topk - 1] - v1[topk]
                stats["ties"] = stats.get("ties", 0) + int((g == 0).sum())
                g = g[(g > 0) & (v1[topk] > -1e9)]
                if g.numel():
                    stats["gap"] = min(stats.get("gap", math.inf), float(g.min()))
            v, i = torch.topk(a, topk, dim=0)
            wgt = torch.softmax(v, dim=0)
            pred[:, q0:q1] = (lbl[:, i] * wgt[None]).sum(1)
            vals.append(v)
            ws.append(wgt)
            idxs.append(i)
        pred = pred.view(label0.shape)
        soft.append(pred)
        if record is not None:
            record(t, torch.cat(vals, 1), torch.cat(ws, 1), torch.cat(idxs, 1), pred)
    return torch.stack(soft)


def crw_output(pred, ids, out_hw):
    """test_utils.dump_predictions + convert_davis: cv2 bilinear to H0 x W0, argmax, channel -> id.
    Returns (ids u8 [H0, W0], top-2 margin)."""
    h0, w0 = out_hw
    p = np.ascontiguousarray(pred.permute(1, 2, 0).numpy())
    up = cv2.resize(p, (w0, h0))
    if up.ndim == 2:
        up = up[..., None]
    out = np.asarray(ids, dtype=np.uint8)[np.argmax(up, axis=-1)]
    if up.shape[-1] > 1:
        s = np.sort(up, axis=-1)
        margin = s[..., -1] - s[..., -2]
    else:
        margin = np.full((h0, w0), np.inf, np.float32)
    return out, margin


def run_crw(frames, mask0, net, *, context, topk, temperature, radius, chunk=1024, debug=None,
            stats=None, log=print):
    """CRW end to end at native size. Returns (masks u8 [T, H0, W0], fragile pixel count)."""
    h0, w0 = mask0.shape
    T = len(frames)
    feats = []
    for t in range(T):  # the official encodes 5 frames per batch; eval mode: same values
        x = crw_input(frames[t])
        f = encode(net, x)[0]
        if debug is not None and t < 2:
            debug.setdefault("debug.feat", []).append(f.clone())
        feats.append(f)
    feats = F.normalize(torch.stack(feats), dim=1)
    h, w = feats.shape[-2:]
    label0, ids = crw_label0(mask0)
    assert label0.shape[1:] == (h, w), (label0.shape, feats.shape)
    if debug is not None:
        debug["work_size"] = torch.tensor([h0, w0], dtype=torch.int64)
        debug["feat_size"] = torch.tensor([h, w], dtype=torch.int64)
        debug["debug.feat"] = torch.stack(debug["debug.feat"])
        debug["debug.label0"] = label0.clone()

    def record(t, v, wgt, i, pred):
        if debug is None:
            return
        for tag, tt in (("f1", 1), ("last", T - 1)):
            if t == tt:
                debug[f"debug.{tag}.topk_val"] = v.clone()
                debug[f"debug.{tag}.topk_w"] = wgt.clone()
                debug[f"debug.{tag}.topk_idx"] = i.to(torch.int32)
                debug[f"debug.{tag}.soft"] = pred.clone()

    soft = propagate_crw(feats, label0, context=context, topk=topk, temperature=temperature,
                         radius=radius, chunk=chunk, record=record, stats=stats)
    masks, fragile = [], 0
    for t in range(T):
        m, margin = crw_output(soft[t], ids, (h0, w0))
        fragile += int((margin < FRAGILE).sum())
        masks.append(m)
    return np.stack(masks), fragile


# ------------------------------------------------------------------------------------- utilities
def change_fractions(masks):
    return [float((masks[t] != masks[t - 1]).mean()) for t in range(1, len(masks))]


def davis_palette():
    """The DAVIS / PASCAL VOC palette (index -> bit-interleaved RGB)."""
    pal = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def write_indexed(path, ids):
    ids = np.ascontiguousarray(ids, dtype=np.uint8)
    im = Image.frombytes("P", (ids.shape[1], ids.shape[0]), ids.tobytes())
    im.putpalette(davis_palette().ravel().tolist())
    im.save(path, format="PNG")


def read_ids(path):
    im = Image.open(path)
    a = np.asarray(im)
    if im.mode == "L":  # DAVIS-2016: {0, 255}
        a = (a > 127).astype(np.uint8)
    elif im.mode != "P":
        raise ValueError(f"{path}: mode {im.mode}")
    return a.astype(np.uint8)


# ------------------------------------------------------------------------------------ RLE masks
def rle_encode(masks):
    """Binary masks u8 [T, H, W] with values {0, 255} -> (runs u16 [R], counts int64 [T]): per frame,
    the lengths of alternating runs of 0 and 255 over the row-major pixels, starting with 0 (a first
    run of length 0 when the frame starts with 255); a run over 65535 is split by a 0-length run of
    the other value."""
    runs, counts = [], []
    for m in masks:
        v = np.asarray(m).reshape(-1)
        assert set(np.unique(v).tolist()) <= {0, 255}, np.unique(v)
        b = (v == 255).astype(np.int8)
        edges = np.flatnonzero(np.diff(b)) + 1
        bounds = np.concatenate([[0], edges, [v.size]])
        lens = np.diff(bounds).tolist()
        if b[0] == 1:
            lens = [0] + lens
        out = []
        for i, n in enumerate(lens):
            while n > 65535:
                out += [65535, 0]
                n -= 65535
            out.append(n)
        runs += out
        counts.append(len(out))
    return np.asarray(runs, np.uint16), np.asarray(counts, np.int64)


def rle_decode(runs, counts, h, w):
    out, i = [], 0
    for c in counts:
        r = runs[i:i + c].astype(np.int64)
        i += c
        vals = np.where(np.arange(c) % 2 == 1, 255, 0).astype(np.uint8)
        out.append(np.repeat(vals, r).reshape(h, w))
    return np.stack(out)


# ------------------------------------------------------------------------------------------ fixture
DAVIS = os.environ.get("VSSL_SHARED_DATA", os.path.join(HERE, "..", "..", "..", "shared", "data"))
DAVIS = os.path.join(DAVIS, "davis2016-val")
SEQS = ("blackswan", "car-shadow", "dog")
# The small fixture: frames 0, 2, .., 10 of each sequence, area-downscaled from 854x480 to 114x64.
SMALL = dict(T=6, step=2, H=64, W=114)
FIX = dict(
    cc=dict(scale=72, context=3, topk=5, temp=1.0, mutual=True, eps=1e-5, l_only=False),
    uvc=dict(scale=64, context=3, topk=5, temp=1.0, mutual=False, eps=1e-5, l_only=True),
    crw=dict(context=4, topk=10, temperature=0.05, radius=3.0),
)
# The full-sequence reference: the official protocols (sizes, context, top-k, radius) on the first
# FULL_FRAMES[case] frames of each sequence (all frames would take the Rust test minutes).
FULL_FRAMES = {"cc": 6, "uvc": 6, "crw": 8}
STRIDES = {"cc": (1, 2, 1, 1), "uvc": (1, 2, 1, 1), "crw": (1, 2, 1)}
SEEDS = {"cc": 20260308, "uvc": 20260324, "crw": 20260314}
# BN weight (gamma) ranges: eval-mode BN with random running statistics does not renormalise, so the
# feature scale is multiplicative over the 17 (13 for crw) BNs. U(0.5, 1.5) makes ContrastCorr's raw
# dot products ~1e5 (every softmax one-hot, top-k untested), U(0.2, 0.6) makes the features nearly
# constant (uniform softmax); these ranges give peaked but soft weights.
BN_GAMMA = {"cc": (0.35, 1.0), "uvc": (0.45, 1.25), "crw": (0.5, 1.5)}


def random_encoder(case):
    torch.manual_seed(SEEDS[case])
    net = make_encoder(STRIDES[case], 1 / 16, reflect=(case == "crw"))
    randomise_bn(net, w=BN_GAMMA[case])
    return net.eval()


def read_davis(seq, frames=None, root=None):
    """RGB u8 frames (cv2 decode) and the first mask, ids {0, 255} as stored (mode L)."""
    root = root or DAVIS
    jdir = os.path.join(root, "JPEGImages", "480p", seq)
    names = sorted(n for n in os.listdir(jdir) if n.endswith(".jpg"))
    if frames is not None:
        names = [names[i] for i in frames]
    rgb = [cv2.imread(os.path.join(jdir, n))[..., ::-1].copy() for n in names]
    im = Image.open(os.path.join(root, "Annotations", "480p", seq, "00000.png"))
    assert im.mode == "L", im.mode
    m = np.asarray(im).copy()
    assert set(np.unique(m).tolist()) <= {0, 255}
    return rgb, m, names


def small_video(seq):
    T, step, H, W = SMALL["T"], SMALL["step"], SMALL["H"], SMALL["W"]
    rgb, m, _ = read_davis(seq, [i * step for i in range(T)])
    frames = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in rgb])
    mask0 = cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST)
    return frames, mask0


class Perturbed(nn.Module):
    """The encoder with its output multiplied by (1 + rel * N(0, 1)): a stand-in for a port whose
    f32 arithmetic rounds differently, to measure how far the outputs move."""

    def __init__(self, net, rel, seed):
        super().__init__()
        self.net, self.rel = net, rel
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x):
        y = self.net(x)
        return y * (1 + self.rel * torch.randn(y.shape, generator=self.gen))


def scalar(v):
    if isinstance(v, bool):
        v = int(v)
    dt = torch.int64 if isinstance(v, int) else torch.float32
    return torch.tensor([v], dtype=dt)


def compact(dbg, ids):
    """cc/uvc with ids {0, 255}: the label tensors have 256 channels (C = max id + 1), all but the
    ids' channels exactly zero (asserted); keep the ids' channels."""
    idx = torch.tensor(ids)
    for k in ("debug.label0", "debug.f1.soft", "debug.last.soft", "debug.last.preds"):
        v = dbg[k]
        ax = v.dim() - 3
        rest = torch.ones(v.shape[ax], dtype=torch.bool)
        rest[idx] = False
        assert float(v.index_select(ax, torch.nonzero(rest)[:, 0]).abs().max()) == 0.0, k
        dbg[k] = v.index_select(ax, idx).contiguous()


def build_fixture():
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    out = {}
    nets = {case: random_encoder(case) for case in FIX}
    for case, net in nets.items():
        p = FIX[case]
        for kk, v in p.items():
            out[f"{case}.param.{kk}"] = scalar(v)
        out[f"{case}.param.width_stem"] = scalar(net.conv1.weight.shape[0])
        out[f"{case}.param.strides"] = torch.tensor(STRIDES[case], dtype=torch.int64)
        out[f"{case}.param.reflect"] = scalar(int(case == "crw"))
        for kk, v in state_f32(net).items():
            out[f"{case}.encoder.{kk}"] = v
    for si, seq in enumerate(SEQS):
        frames, mask0 = small_video(seq)
        out[f"{seq}.frames"] = torch.from_numpy(frames)
        out[f"{seq}.mask0"] = torch.from_numpy(mask0)
        for case, net in nets.items():
            p = FIX[case]
            dbg, stats = {}, {}
            if case == "crw":
                masks, fragile = run_crw(frames, mask0, net, debug=dbg, stats=stats, **p)
            else:
                masks, fragile = run_cc(frames, mask0, net, debug=dbg, stats=stats, **p)
                compact(dbg, [0, 255])
                dbg["debug.work_lab"] = dbg["debug.work_lab"][:1].contiguous()
            assert masks.shape == frames.shape[:3] and masks.dtype == np.uint8
            assert dbg["debug.label0"].shape[0] == 2, dbg["debug.label0"].shape
            pre = f"{case}.{seq}"
            for kk, v in dbg.items():
                out[f"{pre}.{kk}"] = v
            runs, counts = rle_encode(masks)
            assert (rle_decode(runs, counts, *masks.shape[1:]) == masks).all()
            out[f"{pre}.masks.runs"] = torch.from_numpy(runs.astype(np.int32))
            out[f"{pre}.masks.counts"] = torch.from_numpy(counts)
            out[f"{pre}.fragile"] = scalar(fragile)
            ch = change_fractions(masks)
            print(f"{pre}: work {tuple(dbg['work_size'].tolist())} feat "
                  f"{tuple(dbg['feat_size'].tolist())} fragile px {fragile}; object px per frame "
                  + " ".join(str(int((m > 0).sum())) for m in masks)
                  + "; changed between frames " + " ".join(f"{c:.3f}" for c in ch))
            diag(case, dbg, p, stats)
            if si > 0:  # the big intermediates of the first sequence only (size budget)
                for kk in ("work_lab", "f1.aff", "f1.topk_val", "f1.topk_w", "f1.topk_idx",
                           "last.topk_val", "last.topk_w", "last.topk_idx"):
                    out.pop(f"{pre}.debug.{kk}", None)
                out[f"{pre}.debug.feat"] = out[f"{pre}.debug.feat"][:1].contiguous()
            for rel in (1e-6, 1e-5):
                d2 = {}
                pert = Perturbed(net, rel, 1)
                if case == "crw":
                    m2, _ = run_crw(frames, mask0, pert, debug=d2, **p)
                else:
                    m2, _ = run_cc(frames, mask0, pert, debug=d2, **p)
                    compact(d2, [0, 255])
                dsoft = float((d2["debug.last.soft"] - dbg["debug.last.soft"]).abs().max())
                print(f"  features x (1 + {rel:g} N(0,1)): last soft labels max |diff| {dsoft:.2e}, "
                      f"mask pixels changed {int((m2 != masks).sum())}")
    save(out, os.path.join(HERE, "propagate.safetensors"))


def save(out, path):
    out = {k: (v.contiguous() if v.dtype != torch.float64 else v.float().contiguous())
           for k, v in out.items()}
    save_file(out, path, metadata={"torch": torch.__version__, "script": "tests/golden/propagate.py"})
    size = os.path.getsize(path)
    big = sorted(((v.numel() * v.element_size(), k) for k, v in out.items()), reverse=True)[:6]
    print("largest:", ", ".join(f"{k} {b // 1024} KiB" for b, k in big))
    assert size <= MAX_BYTES, (path, size)
    print(f"{path}: {size} bytes, {len(out)} tensors")


def build_full(cases):
    """The official protocols at the official sizes on the first FULL_FRAMES frames of the three
    sequences, the fixture's encoders; masks run-length encoded (propagate_davis.safetensors)."""
    torch.set_num_threads(os.cpu_count() or 1)
    path = os.path.join(HERE, "propagate_davis.safetensors")
    out = dict(load_file(path)) if os.path.exists(path) else {}
    defaults = {"cc": CC_DEFAULTS, "uvc": UVC_DEFAULTS, "crw": CRW_DEFAULTS}
    for case in cases:
        net = random_encoder(case)
        n = FULL_FRAMES[case]
        out[f"{case}.frames"] = scalar(n)
        for seq in SEQS:
            t0 = time.time()
            rgb, mask0, _ = read_davis(seq, list(range(n)))
            # ids {0, 1} instead of the stored {0, 255}: ContrastCorr's one-hot then has 2 channels
            # instead of 256, 254 of them zero, which never win the argmax (the output is the same).
            m01 = (mask0 > 0).astype(np.uint8)
            if case == "crw":
                masks, fragile = run_crw(rgb, m01, net, **defaults[case])
            else:
                masks, fragile = run_cc(rgb, m01, net, **defaults[case])
            masks = (masks > 0).astype(np.uint8) * 255
            runs, counts = rle_encode(masks)
            out[f"{case}.{seq}.masks.runs"] = torch.from_numpy(runs.astype(np.int32))
            out[f"{case}.{seq}.masks.counts"] = torch.from_numpy(counts)
            out[f"{case}.{seq}.fragile"] = scalar(fragile)
            print(f"{case} {seq}: {n} frames, {time.time() - t0:.1f} s, fragile px {fragile}, "
                  f"object px " + " ".join(str(int((m > 0).sum())) for m in masks), flush=True)
    save(out, path)


def diag(case, dbg, p, stats):
    """Near-ties that a faithful f32 port could resolve differently."""
    unit = "logits" if case == "crw" else "relative"
    print(f"  top-k boundary over all frames: min gap {stats.get('gap', math.inf):.2e} ({unit}), "
          f"exact ties {stats.get('ties', 0)}")
    if case == "crw":
        for tag in ("f1", "last"):
            v = dbg[f"debug.{tag}.topk_val"]
            print(f"  {tag}: top-{p['topk']} values in [{v.min():.3f}, {v.max():.3f}], "
                  f"weights max {dbg[f'debug.{tag}.topk_w'].max():.3f}")
        return
    a = dbg["debug.f1.aff"]
    pr = torch.softmax(a * p["temp"], dim=0)
    s = torch.sort(pr, dim=0, descending=True).values
    k = p["topk"]
    vk, vk1 = s[k - 1], s[k]
    rel = ((vk - vk1) / vk.clamp_min(1e-38))[vk > 0]
    print(f"  f1: aff in [{a.min():.2f}, {a.max():.2f}], max softmax weight per column: "
          f"median {s[0].median():.3f}; k-th vs (k+1)-th relative gap min {rel.min():.2e}")


# -------------------------------------------------------------------------------------------- davis
def load_weights(path, prefix):
    st = load_file(path)
    sub = {k[len(prefix):]: v for k, v in st.items() if k.startswith(prefix)}
    if not sub:
        raise SystemExit(f"{path}: no key starts with {prefix!r}")
    return sub


def run_davis(a):
    torch.set_num_threads(os.cpu_count() or 1)
    state = load_weights(a.weights, a.prefix)
    proto = a.protocol
    net = encoder_from_state(state, STRIDES[proto], reflect=(proto == "crw" and not a.zero_pad))
    params = dict({"cc": CC_DEFAULTS, "uvc": UVC_DEFAULTS, "crw": CRW_DEFAULTS}[proto])
    for k in ("scale", "context", "topk", "temperature", "radius"):
        v = getattr(a, k, None)
        if v is not None and k in params:
            params[k] = v
    print(f"protocol {proto}: {params}, encoder stem {net.conv1.weight.shape[0]}")
    t_all = time.time()
    for seq in a.sequences.split(","):
        t0 = time.time()
        jdir = os.path.join(a.root, "JPEGImages", "480p", seq)
        names = sorted(n for n in os.listdir(jdir) if n.endswith(".jpg"))
        frames = [cv2.imread(os.path.join(jdir, n))[..., ::-1].copy() for n in names]
        mask0 = read_ids(os.path.join(a.root, "Annotations", "480p", seq, "00000.png"))
        if proto == "crw":
            masks, fragile = run_crw(frames, mask0, net, **params)
        else:
            masks, fragile = run_cc(frames, mask0, net, **params)
        od = os.path.join(a.out, seq)
        os.makedirs(od, exist_ok=True)
        for n, m in zip(names, masks):
            write_indexed(os.path.join(od, n.replace(".jpg", ".png")), m)
        ch = change_fractions(masks)
        print(f"{seq}: {len(names)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, "
              f"{time.time() - t0:.1f} s, fragile px {fragile}, changed/frame mean {np.mean(ch):.4f} "
              f"max {np.max(ch):.4f}, object px frame 1 {int((masks[1] > 0).sum())} last "
              f"{int((masks[-1] > 0).sum())}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"total {time.time() - t_all:.1f} s, peak RSS {peak:.0f} MiB")


def compare(a, b):
    tot_eq = tot = 0
    for seq in sorted(set(os.listdir(a)) & set(os.listdir(b))):
        pa, pb = os.path.join(a, seq), os.path.join(b, seq)
        if not (os.path.isdir(pa) and os.path.isdir(pb)):
            continue
        names = sorted(set(n for n in os.listdir(pa) if n.endswith(".png"))
                       & set(n for n in os.listdir(pb) if n.endswith(".png")))
        eq = n = 0
        for nm in names:
            x, y = read_ids(os.path.join(pa, nm)), read_ids(os.path.join(pb, nm))
            assert x.shape == y.shape, (seq, nm, x.shape, y.shape)
            eq += int((x == y).sum())
            n += x.size
        tot_eq, tot = tot_eq + eq, tot + n
        print(f"{seq}: {len(names)} frames, equal {eq / max(n, 1):.6f}")
    print(f"overall: equal {tot_eq / max(tot, 1):.6f}")


def export_weights(case, path):
    net = random_encoder(case)
    save_file({f"encoder.{k}": v for k, v in state_f32(net).items()}, path)
    print(f"{path}: {case} encoder, prefix 'encoder.'")


def main():
    if len(sys.argv) == 1:
        build_fixture()
        return
    if sys.argv[1] == "full":
        build_full(sys.argv[2].split(",") if len(sys.argv) > 2 else ("cc", "uvc", "crw"))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("davis")
    d.add_argument("--root", required=True)
    d.add_argument("--sequences", required=True)
    d.add_argument("--protocol", choices=("cc", "uvc", "crw"), required=True)
    d.add_argument("--weights", required=True)
    d.add_argument("--prefix", default="encoder.")
    d.add_argument("--out", required=True)
    d.add_argument("--scale", type=int, help="cc/uvc short side (default 560 / 480)")
    d.add_argument("--context", type=int)
    d.add_argument("--topk", type=int)
    d.add_argument("--temperature", type=float, help="crw only")
    d.add_argument("--radius", type=float, help="crw only")
    d.add_argument("--zero-pad", action="store_true", help="crw: zero instead of reflect padding")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    e = sub.add_parser("export-weights")
    e.add_argument("case", choices=("cc", "uvc", "crw"))
    e.add_argument("path")
    a = ap.parse_args()
    if a.cmd == "davis":
        run_davis(a)
    elif a.cmd == "compare":
        compare(a.a, a.b)
    else:
        export_weights(a.case, a.path)


if __name__ == "__main__":
    main()
