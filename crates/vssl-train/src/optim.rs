//! Optimizers with savable state: [`Adam`], [`AdamW`], [`Sgd`] (momentum, dampening, Nesterov,
//! weight decay) and [`Lars`], behind one [`Optimizer`] trait.
//!
//! Each is built from named variables (`Vec<(String, Var)>`, e.g.
//! [`vssl_core::testing::named_vars`] of a `VarMap`) and a `no_decay` predicate on the names: the
//! variables it selects get no weight decay (and, for LARS, no trust-ratio adaptation), the
//! usual second parameter group for biases and BatchNorm. Each variable's update is one fused
//! in-place pass of a [`vssl_core::ops::optim`] kernel on the CPU (a portable path elsewhere);
//! the formulas, those of `torch.optim` with `foreach=False`, are written on the kernels'
//! parameter structs.
//!
//! A variable with no gradient in the [`GradStore`] (BatchNorm running statistics, frozen
//! weights) is never touched: neither it nor its state nor its step count changes.
//!
//! State ([`Optimizer::state`]) is a [`TensorMap`] with one entry per variable and kind, named
//! `<prefix>.<kind>.<variable name>`: `adam.m.*`, `adam.v.*`, `adam.step.*` for [`Adam`] and
//! [`AdamW`] (the same keys: a run may switch between them); `sgd.momentum.*` (when momentum is
//! on) and `sgd.step.*`; `lars.momentum.*` and `lars.step.*`. Moments have the variable's shape
//! and dtype; steps are 0-d `i64` tensors counting the updates the variable received, as
//! PyTorch's per-parameter `step`. The learning rate is not part of it (the schedule owns it).

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use vssl_core::ops::optim::{
    AdamUpdate, LarsUpdate, SgdUpdate, adam_update, lars_update, sgd_update,
};
use vssl_core::{Error, Result};
use vssl_model::weights::TensorMap;

/// An optimizer whose state can be saved with a checkpoint and loaded back.
pub trait Optimizer {
    /// Updates every variable that has a gradient in `grads`; the others are left untouched.
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// Sets the learning rate used by the next steps.
    fn set_lr(&mut self, lr: f64);
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// A copy of the state (moments, buffers, step counts), detached from the optimizer.
    fn state(&self) -> Result<TensorMap>;
    /// Replaces the state by `state` (as written by [`Optimizer::state`]), copying it.
    ///
    /// Keys outside this optimizer's prefix (`adam.`, `sgd.`, `lars.`) are ignored, so a whole
    /// checkpoint can be passed. Fails, changing nothing, when a key is missing, names no
    /// variable, or holds a tensor of another shape.
    fn load_state(&mut self, state: &TensorMap) -> Result<()>;
}

/// Adam's settings; `Default` is `torch.optim.Adam`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate (usually driven by a schedule through [`Optimizer::set_lr`]).
    pub lr: f64,
    /// Decay of the first moment; lower it (0.5–0.8) for GAN-like or very noisy objectives.
    pub beta1: f64,
    /// Decay of the second moment; 0.99 or 0.98 makes Adam react faster to gradient scale.
    pub beta2: f64,
    /// Added to `√v` for numerical stability; raise it (1e-6) if updates blow up in f16.
    pub eps: f64,
    /// L2 penalty added to the gradient (Adam) or decoupled decay (AdamW); 0 turns it off.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW's settings: [`AdamConfig`] with `torch.optim.AdamW`'s defaults (weight decay 1e-2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate (usually driven by a schedule through [`Optimizer::set_lr`]).
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to `√v` for numerical stability.
    pub eps: f64,
    /// Decoupled weight decay: each step multiplies the weights by `1 − lr·weight_decay`.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// SGD's settings; `Default` is `torch.optim.SGD`'s (lr 1e-3, no momentum).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate (usually driven by a schedule through [`Optimizer::set_lr`]).
    pub lr: f64,
    /// Momentum; 0.9 is the usual choice for training from scratch.
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer; must be 0 with Nesterov.
    pub dampening: f64,
    /// L2 penalty added to the gradient (1e-4 or 5e-4 for ImageNet-style training).
    pub weight_decay: f64,
    /// Nesterov momentum (needs momentum > 0 and no dampening).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// LARS's settings (PyTorch has none); `Default` follows SimCLR's (momentum 0.9, trust
/// coefficient 1e-3, weight decay 1e-6) with lr 0.1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LarsConfig {
    /// Learning rate; large-batch recipes scale it with the batch size (0.3 × batch / 256).
    pub lr: f64,
    /// Momentum.
    pub momentum: f64,
    /// Weight decay of adapted variables (BYOL uses 1.5e-6).
    pub weight_decay: f64,
    /// Trust coefficient `η` of the layer-wise ratio `η·‖p‖ / (‖g‖ + wd·‖p‖)`.
    pub trust_coefficient: f64,
}

impl Default for LarsConfig {
    fn default() -> Self {
        LarsConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-6,
            trust_coefficient: 1e-3,
        }
    }
}

/// One variable with its state.
struct Slot {
    name: String,
    var: Var,
    /// Weight decay (and LARS adaptation) applies.
    decay: bool,
    /// Updates received so far.
    step: u64,
    /// Named state tensors (`m`, `v` or `momentum`), each a `Var` of the variable's shape that
    /// the kernels update in place.
    state: Vec<(&'static str, Var)>,
}

/// The variables of an optimizer and their state: construction, saving and loading.
struct Slots {
    prefix: &'static str,
    slots: Vec<Slot>,
}

impl Slots {
    fn new(
        op: &'static str,
        prefix: &'static str,
        vars: Vec<(String, Var)>,
        kinds: &[&'static str],
        no_decay: &dyn Fn(&str) -> bool,
    ) -> Result<Self> {
        let mut slots: Vec<Slot> = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            if let Some(other) = slots
                .iter()
                .find(|s| s.name == name || s.var.as_tensor().id() == var.as_tensor().id())
            {
                return Err(Error::op(
                    op,
                    format!(
                        "variable {name:?} is listed twice (also as {:?})",
                        other.name
                    ),
                ));
            }
            let state = kinds
                .iter()
                .map(|&k| Ok((k, Var::zeros(var.shape(), var.dtype(), var.device())?)))
                .collect::<Result<Vec<_>>>()?;
            slots.push(Slot {
                decay: !no_decay(&name),
                name,
                var,
                step: 0,
                state,
            });
        }
        Ok(Slots { prefix, slots })
    }

    fn step_key(&self, name: &str) -> String {
        format!("{}.step.{name}", self.prefix)
    }

    fn state(&self) -> Result<TensorMap> {
        let mut out = TensorMap::new();
        for s in &self.slots {
            for (kind, v) in &s.state {
                let key = format!("{}.{kind}.{}", self.prefix, s.name);
                out.insert(key, v.as_tensor().copy()?);
            }
            let step = i64::try_from(s.step).unwrap_or(i64::MAX);
            out.insert(self.step_key(&s.name), Tensor::new(step, &Device::Cpu)?);
        }
        Ok(out)
    }

    fn load_state(&mut self, op: &'static str, map: &TensorMap) -> Result<()> {
        let mut known = std::collections::BTreeSet::new();
        let mut steps = Vec::with_capacity(self.slots.len());
        let mut values = Vec::new();
        for s in &self.slots {
            let key = self.step_key(&s.name);
            let t = map
                .get(&key)
                .ok_or_else(|| Error::op(op, format!("state has no {key:?}")))?;
            let step = match t.dims() {
                [] | [1] => t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?,
                d => return Err(Error::op(op, format!("{key:?} has shape {d:?}, want []"))),
            };
            let step = step
                .first()
                .copied()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| Error::op(op, format!("{key:?} is not a step count ≥ 0")))?;
            steps.push(step);
            known.insert(key);
            for (kind, v) in &s.state {
                let key = format!("{}.{kind}.{}", self.prefix, s.name);
                let t = map
                    .get(&key)
                    .ok_or_else(|| Error::op(op, format!("state has no {key:?}")))?;
                if t.dims() != v.dims() {
                    return Err(Error::op(
                        op,
                        format!(
                            "{key:?} has shape {:?}, the variable {:?}",
                            t.dims(),
                            v.dims()
                        ),
                    ));
                }
                values.push((v.clone(), t.to_device(v.device())?.to_dtype(v.dtype())?));
                known.insert(key);
            }
        }
        let dotted = format!("{}.", self.prefix);
        if let Some(extra) = map
            .keys()
            .find(|k| k.starts_with(&dotted) && !known.contains(*k))
        {
            return Err(Error::op(
                op,
                format!("state key {extra:?} matches no variable or state of this optimizer"),
            ));
        }
        for (v, t) in values {
            v.set(&t)?;
        }
        for (s, step) in self.slots.iter_mut().zip(steps) {
            s.step = step;
        }
        Ok(())
    }
}

fn check_lr(op: &'static str, lr: f64) -> Result<()> {
    vssl_core::ensure!(lr.is_finite() && lr >= 0.0, op, "lr must be ≥ 0, got {lr}");
    Ok(())
}

fn check_adam(op: &'static str, lr: f64, b1: f64, b2: f64, eps: f64, wd: f64) -> Result<()> {
    check_lr(op, lr)?;
    vssl_core::ensure!(
        (0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2),
        op,
        "betas must be in [0, 1), got ({b1}, {b2})"
    );
    vssl_core::ensure!(eps >= 0.0, op, "eps must be ≥ 0, got {eps}");
    vssl_core::ensure!(wd >= 0.0, op, "weight_decay must be ≥ 0, got {wd}");
    Ok(())
}

/// Adam (`torch.optim.Adam`): weight decay as an L2 penalty added to the gradient.
pub struct Adam {
    cfg: AdamConfig,
    slots: Slots,
}

impl Adam {
    /// Adam over `vars`; the variables whose name `no_decay` selects get no weight decay.
    pub fn new(
        vars: Vec<(String, Var)>,
        cfg: AdamConfig,
        no_decay: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let op = "Adam::new";
        check_adam(op, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay)?;
        let slots = Slots::new(op, "adam", vars, &["m", "v"], &no_decay)?;
        Ok(Adam { cfg, slots })
    }
}

/// AdamW (`torch.optim.AdamW`): decoupled weight decay.
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Slots,
}

impl AdamW {
    /// AdamW over `vars`; the variables whose name `no_decay` selects get no weight decay.
    pub fn new(
        vars: Vec<(String, Var)>,
        cfg: AdamWConfig,
        no_decay: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let op = "AdamW::new";
        check_adam(op, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay)?;
        let slots = Slots::new(op, "adam", vars, &["m", "v"], &no_decay)?;
        Ok(AdamW { cfg, slots })
    }
}

fn adam_step(slots: &mut Slots, grads: &GradStore, h: AdamUpdate) -> Result<()> {
    for s in &mut slots.slots {
        let Some(g) = grads.get(s.var.as_tensor()) else {
            continue;
        };
        let [(_, m), (_, v)] = s.state.as_slice() else {
            return Err(Error::op("Adam::step", "internal: Adam keeps two moments"));
        };
        let h = AdamUpdate {
            step: s.step + 1,
            weight_decay: if s.decay { h.weight_decay } else { 0.0 },
            ..h
        };
        adam_update(&s.var, g, m, v, &h)?;
        s.step += 1;
    }
    Ok(())
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = &self.cfg;
        let h = AdamUpdate {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            decoupled: false,
            step: 0,
        };
        adam_step(&mut self.slots, grads, h)
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn state(&self) -> Result<TensorMap> {
        self.slots.state()
    }

    fn load_state(&mut self, state: &TensorMap) -> Result<()> {
        self.slots.load_state("Adam::load_state", state)
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = &self.cfg;
        let h = AdamUpdate {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            decoupled: true,
            step: 0,
        };
        adam_step(&mut self.slots, grads, h)
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn state(&self) -> Result<TensorMap> {
        self.slots.state()
    }

    fn load_state(&mut self, state: &TensorMap) -> Result<()> {
        self.slots.load_state("AdamW::load_state", state)
    }
}

/// SGD (`torch.optim.SGD`) with optional momentum, dampening, Nesterov and L2 weight decay.
pub struct Sgd {
    cfg: SgdConfig,
    slots: Slots,
}

impl Sgd {
    /// SGD over `vars`; the variables whose name `no_decay` selects get no weight decay.
    pub fn new(
        vars: Vec<(String, Var)>,
        cfg: SgdConfig,
        no_decay: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let op = "Sgd::new";
        check_lr(op, cfg.lr)?;
        vssl_core::ensure!(
            cfg.momentum >= 0.0 && cfg.weight_decay >= 0.0,
            op,
            "momentum and weight_decay must be ≥ 0, got {} and {}",
            cfg.momentum,
            cfg.weight_decay
        );
        vssl_core::ensure!(
            !cfg.nesterov || (cfg.momentum > 0.0 && cfg.dampening == 0.0),
            op,
            "Nesterov momentum needs momentum > 0 and dampening 0, got {} and {}",
            cfg.momentum,
            cfg.dampening
        );
        let kinds: &[&'static str] = if cfg.momentum != 0.0 {
            &["momentum"]
        } else {
            &[]
        };
        let slots = Slots::new(op, "sgd", vars, kinds, &no_decay)?;
        Ok(Sgd { cfg, slots })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        for s in &mut self.slots.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let h = SgdUpdate {
                lr: c.lr,
                momentum: c.momentum,
                dampening: c.dampening,
                weight_decay: if s.decay { c.weight_decay } else { 0.0 },
                nesterov: c.nesterov,
                first: s.step == 0,
            };
            sgd_update(&s.var, g, s.state.first().map(|(_, b)| b), &h)?;
            s.step += 1;
        }
        Ok(())
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn state(&self) -> Result<TensorMap> {
        self.slots.state()
    }

    fn load_state(&mut self, state: &TensorMap) -> Result<()> {
        self.slots.load_state("Sgd::load_state", state)
    }
}

/// LARS: SGD with momentum on layer-wise trust-ratio-scaled gradients (formula on
/// [`LarsUpdate`]). Variables selected by `no_decay` get neither weight decay nor adaptation.
pub struct Lars {
    cfg: LarsConfig,
    slots: Slots,
}

impl Lars {
    /// LARS over `vars`; the variables whose name `no_decay` selects (biases, BatchNorm) are
    /// updated by plain momentum SGD.
    pub fn new(
        vars: Vec<(String, Var)>,
        cfg: LarsConfig,
        no_decay: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let op = "Lars::new";
        check_lr(op, cfg.lr)?;
        vssl_core::ensure!(
            cfg.momentum >= 0.0 && cfg.weight_decay >= 0.0 && cfg.trust_coefficient > 0.0,
            op,
            "momentum and weight_decay must be ≥ 0 and trust_coefficient > 0, got {}, {}, {}",
            cfg.momentum,
            cfg.weight_decay,
            cfg.trust_coefficient
        );
        let slots = Slots::new(op, "lars", vars, &["momentum"], &no_decay)?;
        Ok(Lars { cfg, slots })
    }
}

impl Optimizer for Lars {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        for s in &mut self.slots.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let [(_, b)] = s.state.as_slice() else {
                return Err(Error::op("Lars::step", "internal: LARS keeps one buffer"));
            };
            let h = LarsUpdate {
                lr: c.lr,
                momentum: c.momentum,
                weight_decay: c.weight_decay,
                trust_coefficient: c.trust_coefficient,
                adapt: s.decay,
            };
            lars_update(&s.var, g, b, &h)?;
            s.step += 1;
        }
        Ok(())
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn state(&self) -> Result<TensorMap> {
        self.slots.state()
    }

    fn load_state(&mut self, state: &TensorMap) -> Result<()> {
        self.slots.load_state("Lars::load_state", state)
    }
}
