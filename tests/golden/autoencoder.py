"""Golden values for vssl-model's frozen Lab autoencoder (UVC / ContrastCorr encoder3 / decoder3,
reduce=True).

The modules are written here from the description of libs/autoencoder.py (not imported):

  encoder (widths a, b, c; full size 64, 128, 256):
    conv1 1x1 3->3 (no ReLU), pad, conv2 3x3 3->a, ReLU, pad, conv3 a->a, ReLU, maxpool 2,
    pad, conv4 a->b, ReLU, pad, conv5 b->b, ReLU, maxpool 2, pad, conv6 b->c, ReLU,
    downsample = [maxpool 2, 1x1 conv c->c ("downsample.1"), ReLU]          -> stride 8, c channels
  decoder:
    upsample = [nearest x2, 1x1 conv c->c ("upsample.1"), ReLU],
    pad, conv7 c->b, ReLU, nearest x2, pad, conv8 b->b, ReLU, pad, conv9 b->a, ReLU, nearest x2,
    pad, conv10 a->a, ReLU, pad, conv11 a->3, tanh                          -> stride 1, 3 channels
  "pad" is ReflectionPad2d(1) before every 3x3 conv; all convs have a bias.

With PyTorch 2.9.1 on the CPU it writes:

  autoencoder.safetensors (reduced widths (a, b, c) = (8, 16, 32), PyTorch's default Conv2d init,
  fixed seed; params created in float32 and stored; references computed in float64 from them):
    enc.<name>, dec.<name>   the parameters (state_dict names of encoder3 / decoder3)
    input                    [2,3,40,48] in [-1, 1]
    enc.out                  encoder(input), [2,32,5,6]
    dec.in                   a random [2,32,5,6] tensor (non-negative, like the encoder's ReLU output)
    dec.out                  decoder(dec.in), [2,3,40,48]
    dec.w                    a random upstream gradient shaped like dec.out
    dec.grad.in              d/d(dec.in) of (dec.out * dec.w).sum(): the frozen decoder passes
                             gradients to the copied features

  autoencoder_shared.safetensors (only when
  /work/shared/weights/uvc-lab-autoencoder/encoder.safetensors exists; FULL widths with the real
  UVC weights read from there, which are NOT stored in the fixture):
    input                    [1,3,32,40], smooth Lab-like values in [-1, 1]
    enc.out                  encoder(input), [1,256,4,5]
    dec.out                  decoder(enc.out), [1,3,32,40]

Run from the repository root:
    /root/vssl-venv/bin/python tests/golden/autoencoder.py
Each fixture is asserted <= 1 MiB.
"""

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BYTES = 1 << 20
SHARED = "/work/shared/weights/uvc-lab-autoencoder"


def pconv(conv, x):
    """Reflection pad 1, then the 3x3 conv."""
    return conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class Encoder(nn.Module):
    """encoder3(reduce=True) with widths (a, b, c)."""

    def __init__(self, a=64, b=128, c=256):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 1)
        self.conv2 = nn.Conv2d(3, a, 3)
        self.conv3 = nn.Conv2d(a, a, 3)
        self.conv4 = nn.Conv2d(a, b, 3)
        self.conv5 = nn.Conv2d(b, b, 3)
        self.conv6 = nn.Conv2d(b, c, 3)
        self.downsample = nn.Sequential(nn.MaxPool2d(2, 2), nn.Conv2d(c, c, 1), nn.ReLU())

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(pconv(self.conv2, x))
        x = F.relu(pconv(self.conv3, x))
        x = F.max_pool2d(x, 2, 2)
        x = F.relu(pconv(self.conv4, x))
        x = F.relu(pconv(self.conv5, x))
        x = F.max_pool2d(x, 2, 2)
        x = F.relu(pconv(self.conv6, x))
        return self.downsample(x)


class Decoder(nn.Module):
    """decoder3(reduce=True) with widths (a, b, c)."""

    def __init__(self, a=64, b=128, c=256):
        super().__init__()
        self.upsample = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 1), nn.ReLU())
        self.conv7 = nn.Conv2d(c, b, 3)
        self.conv8 = nn.Conv2d(b, b, 3)
        self.conv9 = nn.Conv2d(b, a, 3)
        self.conv10 = nn.Conv2d(a, a, 3)
        self.conv11 = nn.Conv2d(a, 3, 3)

    def forward(self, x):
        x = self.upsample(x)
        x = F.relu(pconv(self.conv7, x))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.relu(pconv(self.conv8, x))
        x = F.relu(pconv(self.conv9, x))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.relu(pconv(self.conv10, x))
        return torch.tanh(pconv(self.conv11, x))


def smooth_field(shape, low, gen=None):
    """Bilinearly upsampled low-resolution noise in [-1, 1], shape [B, C, H, W]."""
    b, c, h, w = shape
    z = torch.rand(b, c, low[0], low[1], generator=gen) * 2 - 1
    return F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)


def save_checked(out, name):
    out = {k: v.detach().float().contiguous() for k, v in out.items()}
    path = os.path.join(HERE, name)
    save_file(out, path)
    size = os.path.getsize(path)
    assert size <= MAX_BYTES, (path, size)
    print(f"{path}: {size} bytes, {len(out)} tensors")


def reduced():
    torch.manual_seed(20261211)
    enc32, dec32 = Encoder(8, 16, 32), Decoder(8, 16, 32)
    x32 = (smooth_field([2, 3, 40, 48], (5, 6)) * 0.9 + 0.1 * (torch.rand(2, 3, 40, 48) * 2 - 1)).clamp(-1, 1)
    din32 = torch.rand(2, 32, 5, 6) * 0.5
    out = {"input": x32}
    out.update({f"enc.{k}": v.clone() for k, v in enc32.state_dict().items()})
    out.update({f"dec.{k}": v.clone() for k, v in dec32.state_dict().items()})
    enc, dec = enc32.double(), dec32.double()
    with torch.no_grad():
        out["enc.out"] = enc(x32.double())
    assert out["enc.out"].shape == (2, 32, 5, 6)
    din = din32.double().requires_grad_(True)
    y = dec(din)
    assert y.shape == (2, 3, 40, 48)
    w = torch.randn(y.shape).double()
    (y * w).sum().backward()
    out.update({"dec.in": din32, "dec.out": y, "dec.w": w, "dec.grad.in": din.grad})
    save_checked(out, "autoencoder.safetensors")


def shared():
    enc_path = os.path.join(SHARED, "encoder.safetensors")
    dec_path = os.path.join(SHARED, "decoder.safetensors")
    if not (os.path.exists(enc_path) and os.path.exists(dec_path)):
        print(f"{SHARED} absent: autoencoder_shared.safetensors not written")
        return
    enc, dec = Encoder(), Decoder()
    enc.load_state_dict(load_file(enc_path))
    dec.load_state_dict(load_file(dec_path))
    enc, dec = enc.double(), dec.double()
    torch.manual_seed(20261212)
    x32 = (smooth_field([1, 3, 32, 40], (4, 5)) * 0.9 + 0.05 * (torch.rand(1, 3, 32, 40) * 2 - 1)).clamp(-1, 1)
    # Lab-like: L spread over most of the range, a and b near 0 (8-bit a, b are offset by 128)
    x32 = x32 * torch.tensor([0.9, 0.3, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        e = enc(x32.double())
        d = dec(e)
    assert e.shape == (1, 256, 4, 5) and d.shape == (1, 3, 32, 40)
    save_checked({"input": x32, "enc.out": e, "dec.out": d}, "autoencoder_shared.safetensors")


if __name__ == "__main__":
    reduced()
    shared()
