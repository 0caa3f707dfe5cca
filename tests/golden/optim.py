"""Golden values for the optimizers (vssl_core::ops::optim kernels, vssl_train::optim).

Runs torch.optim.Adam, AdamW and SGD (foreach=False) in float64 on float32 initial parameters
for 4 steps, each step with its own random float32 gradients, changing the learning rate
between steps (factors 1, 1, 0.5, 0.2 of the base lr), and a float64 LARS written out here:

    LARS, per parameter, for parameters with adaptation (not excluded):
        r = eta * |p| / (|g| + wd * |p|)   if |p| > 0 and |g| > 0, else 1
        d = r * (g + wd * p)
    excluded parameters (biases, 0-d and 1-element scalars): d = g
        b = mu * b + d       (b starts at zero)
        p = p - lr * b

Parameters (names as a state_dict): `a.weight` [5, 7], `a.bias` [13], `s` [] (0-d),
`c.weight` [2, 3, 3], `one` [1]. "Excluded" (no weight decay, no LARS adaptation; a second
param group in torch with weight_decay=0) = `a.bias`, `s`, `one`, in the cases marked so.

Generated with torch 2.9.1 (CPU).
Run from the repository root:  python tests/golden/optim.py
Writes tests/golden/optim.safetensors with keys:
  `init.<param>` (f32), `grad.<k>.<param>` (f32, k = 0..3),
  `<case>.lr` (f64 [4], the lr of each step), `<case>.<k>.<param>` (f64, the parameter after step k).
"""
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

SHAPES = {"a.weight": (5, 7), "a.bias": (13,), "s": (), "c.weight": (2, 3, 3), "one": (1,)}
EXCLUDED = {"a.bias", "s", "one"}
STEPS = 4
LR_FACTORS = [1.0, 1.0, 0.5, 0.2]

init = {n: torch.randn(s, dtype=torch.float32) for n, s in SHAPES.items()}
grads = [{n: torch.randn(s, dtype=torch.float32) for n, s in SHAPES.items()} for _ in range(STEPS)]

# name -> (optimizer, base lr, kwargs, exclude the EXCLUDED params from weight decay)
CASES = {
    "adam": ("adam", 1e-2, {}, False),
    "adam_l2": ("adam", 1e-2, {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}, True),
    "adamw": ("adamw", 1e-2, {"weight_decay": 0.05}, True),
    "adamw_default": ("adamw", 1e-3, {}, False),
    "sgd": ("sgd", 0.1, {}, False),
    "sgd_wd": ("sgd", 0.1, {"weight_decay": 1e-2}, False),
    "sgd_momentum": ("sgd", 0.1, {"momentum": 0.9}, False),
    "sgd_dampening": ("sgd", 0.1, {"momentum": 0.9, "dampening": 0.3}, False),
    "sgd_nesterov": ("sgd", 0.1, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}, True),
    "lars": ("lars", 0.5, {"momentum": 0.9, "weight_decay": 1e-3, "eta": 0.02}, True),
}


def lars_step(params, bufs, lr, mu, wd, eta, excluded):
    with torch.no_grad():
        for n, p in params.items():
            g = p.grad
            if n in excluded:
                d = g
            else:
                pn, gn = p.norm(), g.norm()
                r = eta * pn / (gn + wd * pn) if pn > 0 and gn > 0 else 1.0
                d = r * (g + wd * p)
            bufs[n] = mu * bufs[n] + d
            p -= lr * bufs[n]


out = {f"init.{n}": t for n, t in init.items()}
for k in range(STEPS):
    for n, t in grads[k].items():
        out[f"grad.{k}.{n}"] = t

for case, (kind, lr, kw, exclude) in CASES.items():
    params = {n: t.to(torch.float64).clone().requires_grad_(True) for n, t in init.items()}
    excluded = EXCLUDED if exclude else set()
    lrs = [lr * f for f in LR_FACTORS]
    out[f"{case}.lr"] = torch.tensor(lrs)
    if kind == "lars":
        bufs = {n: torch.zeros_like(p) for n, p in params.items()}
    else:
        kw = dict(kw)
        wd = kw.pop("weight_decay", None)
        decay = [p for n, p in params.items() if n not in excluded]
        keep = [p for n, p in params.items() if n in excluded]
        groups = [{"params": decay}]
        if wd is not None:
            groups[0]["weight_decay"] = wd
        if keep:
            groups.append({"params": keep, "weight_decay": 0.0})
        cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[kind]
        opt = cls(groups, lr=lr, foreach=False, **kw)
    for k in range(STEPS):
        for n, p in params.items():
            p.grad = grads[k][n].to(torch.float64)
        if kind == "lars":
            lars_step(params, bufs, lrs[k], kw["momentum"], kw["weight_decay"], kw["eta"], excluded)
        else:
            for g in opt.param_groups:
                g["lr"] = lrs[k]
            opt.step()
        for n, p in params.items():
            out[f"{case}.{k}.{n}"] = p.detach().clone()

out = {k: v.contiguous() for k, v in out.items()}
save_file(out, "tests/golden/optim.safetensors")
print(f"wrote {len(out)} tensors to tests/golden/optim.safetensors")
