"""Golden values for `ResNet::recompute_bn_stats` ("precise BatchNorm", Wu & Johnson 2021).

PyTorch's own recipe, with the network of resnet.py (the ContrastCorr ResNet-18, stage strides
(1,2,1,1), width 1/16, BN parameters and running statistics randomised as there):

    for every BatchNorm2d: reset_running_stats(); momentum = None   (cumulative average)
    model.train(); for x in inputs: model(x)

so each running mean is the plain mean of the batches' means and each running variance the plain
mean of their unbiased (n/(n-1)) variances. Three inputs of different batch sizes and shapes
([2,3,64,48], [3,3,48,48], [1,3,64,64]) check that every batch counts once whatever its size.
The evaluation-mode output after the recomputation is stored too.

Computed in float64 from float32 parameters and inputs, stored as float32. Keys of
precise_bn.safetensors:

  param.<name>              every state_dict entry before (running statistics included)
  input.<k>                 the three inputs, k = 0, 1, 2
  after.<bn>.running_mean   the statistics after the recomputation
  after.<bn>.running_var
  eval.out                  model.eval() forward of input.0 after it

Run from the repository root (PyTorch 2.9.1, see requirements.txt):
    python tests/golden/precise_bn.py
"""

import os

import torch
import torch.nn as nn
from safetensors.torch import save_file

from resnet import MAX_BYTES, bn_names, make, state_f32

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    model32, _ = make("r18_cc", 20261202)
    out = {f"param.{k}": v for k, v in state_f32(model32).items()}
    gen = torch.Generator().manual_seed(7)
    shapes = [(2, 3, 64, 48), (3, 3, 48, 48), (1, 3, 64, 64)]
    xs = [torch.randn(*s, generator=gen) for s in shapes]
    for k, x in enumerate(xs):
        out[f"input.{k}"] = x.clone()

    model = model32.double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for x in xs:
            model(x.double())
    mods = dict(model.named_modules())
    for bn in bn_names(model):
        assert mods[bn].num_batches_tracked.item() == len(xs)
        out[f"after.{bn}.running_mean"] = mods[bn].running_mean
        out[f"after.{bn}.running_var"] = mods[bn].running_var
    model.eval()
    with torch.no_grad():
        out["eval.out"] = model(xs[0].double())

    out = {k: v.detach().float().contiguous() for k, v in out.items()}
    path = os.path.join(HERE, "precise_bn.safetensors")
    save_file(out, path)
    size = os.path.getsize(path)
    assert size <= MAX_BYTES, (path, size)
    print(f"{path}: {size} bytes, {len(out)} tensors")


if __name__ == "__main__":
    main()
