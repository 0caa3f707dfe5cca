"""Fixtures for vssl_model::weights (weight import from safetensors and PyTorch .pth files).

The fixtures are PyTorch-format files (what `torch.save` writes, the format of `.pth` files) named
`*.torch`: the loader detects the format by content, and the project commits no `.pth` file.

Writes the same small random tensors in every format the Rust reader accepts, so the Rust test
can check that each format loads to exactly the same values:

- `small.safetensors`      reference values (contiguous copies), f32/f64/f16/i64, a 0-d i64 tensor
- `small_zip.torch`          torch.save(sd, f)                          (zip format, pickle protocol 2)
- `small_zip_p4.torch`       torch.save(sd, f, pickle_protocol=4)       (zip, protocol-4 opcodes)
- `small_legacy.torch`       torch.save(sd, f, _use_new_zipfile_serialization=False)
- `small_legacy_p4.torch`    legacy format with pickle protocol 4
  In the .pth files `view.t` is a transposed (non-contiguous) view and `view.slice` /
  `view.row` are a strided slice with a storage offset and a row of the same storage.
- `ckpt_zip.torch`, `ckpt_legacy.torch`  {'epoch': 3, 'arch': 'resnet18', 'best': 0.5,
  'state_dict': {'module.gray_encoder.<k>': ..., 'module.head.w': ...}} (a ContrastCorr-like
  training checkpoint; the tensors under module.gray_encoder. equal small's `a.*`)
- `net_zip.torch`            {'net': {...}, 'epoch': 1}
- `not_tensors_legacy.torch`  {'epoch': 3, 'lr': 0.1, 'names': [...]}: a file without tensors
- `many_legacy.torch`        300 one-element tensors `t.<i>` = i (memo indices past 255:
  LONG_BINPUT / LONG_BINGET)
- `resnet18_keys.json`, `resnet18_crw_keys.json` (layer4 removed), `resnet50_keys.json`:
  torchvision's state_dict keys minus `fc.*`, as [[key, [shape...], dtype], ...].

Generated with torch 2.9.1 (CPU) and torchvision 0.24.1; fixed seed.
Run from the repository root:  python tests/golden/weights.py
"""
import collections
import json
import os

import torch
import torchvision
from safetensors.torch import save_file

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
os.makedirs(OUT, exist_ok=True)


def path(name):
    return os.path.join(OUT, name)


base_t = torch.randn(3, 5)
base_s = torch.randn(4, 6)
sd = collections.OrderedDict()
sd["a.conv1.weight"] = torch.randn(4, 3, 3, 3)
sd["a.bn1.weight"] = torch.rand(4) + 0.5
sd["a.bn1.bias"] = torch.randn(4)
sd["a.bn1.running_mean"] = torch.randn(4)
sd["a.bn1.running_var"] = torch.rand(4) + 0.1
sd["a.bn1.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
sd["view.t"] = base_t.t()  # [5, 3], strides (1, 5)
sd["view.slice"] = base_s[1:, ::2]  # [3, 3], offset 6, strides (6, 2)
sd["view.row"] = base_s[0]  # [6], same storage as view.slice
sd["d.f64"] = torch.randn(2, 3, dtype=torch.float64)
sd["h.f16"] = torch.randn(3).half()
sd["l.i64"] = torch.tensor([-3, 0, 5, 2**40], dtype=torch.int64)
sd["e.empty"] = torch.zeros(0, 3)
assert not sd["view.t"].is_contiguous() and not sd["view.slice"].is_contiguous()

save_file({k: v.contiguous() for k, v in sd.items()}, path("small.safetensors"))
torch.save(sd, path("small_zip.torch"))
torch.save(sd, path("small_zip_p4.torch"), pickle_protocol=4)
torch.save(sd, path("small_legacy.torch"), _use_new_zipfile_serialization=False)
torch.save(sd, path("small_legacy_p4.torch"), _use_new_zipfile_serialization=False, pickle_protocol=4)

enc = collections.OrderedDict(
    ("module.gray_encoder." + k[2:], v) for k, v in sd.items() if k.startswith("a.")
)
enc["module.head.w"] = torch.randn(2, 2)
# Module.state_dict() attaches `_metadata` (pickled as BUILD state on the OrderedDict).
enc._metadata = collections.OrderedDict([("", {"version": 1}), ("module.gray_encoder.bn1", {"version": 2})])
ckpt = {"epoch": 3, "arch": "resnet18", "best": 0.5, "state_dict": enc}
torch.save(ckpt, path("ckpt_zip.torch"))
torch.save(ckpt, path("ckpt_legacy.torch"), _use_new_zipfile_serialization=False)
torch.save({"net": collections.OrderedDict((k, sd[k]) for k in ["a.conv1.weight", "d.f64"]), "epoch": 1},
           path("net_zip.torch"))

torch.save({"epoch": 3, "lr": 0.1, "names": ["a", "b"]}, path("not_tensors_legacy.torch"),
           _use_new_zipfile_serialization=False)

many = collections.OrderedDict((f"t.{i}", torch.tensor([float(i)])) for i in range(300))
torch.save(many, path("many_legacy.torch"), _use_new_zipfile_serialization=False)


def keys(model, drop=("fc.",)):
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")]
            for k, v in model.state_dict().items() if not k.startswith(drop)]


for name, model, drop in [
    ("resnet18", torchvision.models.resnet18(), ("fc.",)),
    ("resnet18_crw", torchvision.models.resnet18(), ("fc.", "layer4.")),
    ("resnet50", torchvision.models.resnet50(), ("fc.",)),
]:
    with open(path(f"{name}_keys.json"), "w") as f:
        json.dump(keys(model, drop), f, separators=(",", ":"))

for name in sorted(os.listdir(OUT)):
    size = os.path.getsize(path(name))
    assert size <= 1 << 20, name
    print(f"{name}: {size} bytes")
