"""The PyTorch side of `vssl bench train-step` (run by the vssl binary as `python3 -c <this>`).

One ResNet-18 training step exactly as the Rust side runs it, in float32 on the CPU:
  * `tv`: torchvision's resnet18(num_classes=128): strides 1, 2, 2, 2, average pool, a 512->128
    linear head (the "128-d head");
  * `cc`: ContrastCorr's encoder: layer3 and layer4 at stride 1 (their first block's 3x3 conv and
    1x1 shortcut), no pool, no head: 512 channels at stride 8;
BatchNorm in train mode, input N(0, 1) of shape [batch, 3, side, side], loss = mean(y^2),
AdamW (torch defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2, foreach as
torch picks it). One warm-up step, then `repeats` timed steps; forward = model + loss up to the
scalar, backward = zero_grad + backward, optimizer = step.

Arguments: variant (tv|cc) batch side repeats threads. Prints one JSON line: medians of each phase,
every timed run, the torch version and the peak RSS of this process (ru_maxrss).
"""

import json
import resource
import sys
import time

import torch
import torchvision

variant, batch, side, repeats, threads = (
    sys.argv[1],
    int(sys.argv[2]),
    int(sys.argv[3]),
    int(sys.argv[4]),
    int(sys.argv[5]),
)
torch.set_num_threads(threads)
torch.manual_seed(0)


class Encoder(torch.nn.Module):
    """torchvision's resnet18 up to layer4, without pool and head."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        m = self.m
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))


def build(variant):
    m = torchvision.models.resnet18(num_classes=128)
    if variant == "tv":
        return m
    if variant != "cc":
        raise SystemExit(f"unknown variant {variant!r}")
    for layer in (m.layer3, m.layer4):
        layer[0].conv1.stride = (1, 1)
        layer[0].downsample[0].stride = (1, 1)
    return Encoder(m)


model = build(variant).train()
opt = torch.optim.AdamW(model.parameters())
x = torch.randn(batch, 3, side, side)
fwd, bwd, upd = [], [], []
for i in range(repeats + 1):
    t0 = time.perf_counter()
    y = model(x)
    loss = (y * y).mean()
    loss.item()
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    if i > 0:
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        upd.append(t3 - t2)


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


total = [a + b + c for a, b, c in zip(fwd, bwd, upd)]
print(
    json.dumps(
        {
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "forward_seconds_median": median(fwd),
            "backward_seconds_median": median(bwd),
            "optimizer_seconds_median": median(upd),
            "seconds_median": median(total),
            "seconds_runs": total,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
    )
)
