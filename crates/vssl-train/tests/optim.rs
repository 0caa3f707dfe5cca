//! The optimizers of `vssl_train::optim` against `torch.optim` (`tests/golden/optim.py`), state
//! save → load → continue bit-identical to an uninterrupted run, variables without a gradient
//! left untouched, and `load_state` errors.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use vssl_core::testing::{Golden, Tolerance, assert_close};
use vssl_core::{Error, Result};
use vssl_model::weights::TensorMap;
use vssl_train::optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, Lars, LarsConfig, Optimizer, Sgd, SgdConfig,
};

const PARAMS: &[&str] = &["a.weight", "a.bias", "s", "c.weight", "one"];
const STEPS: usize = 4;

fn excluded(name: &str) -> bool {
    matches!(name, "a.bias" | "s" | "one")
}

fn never(_: &str) -> bool {
    false
}

fn vars(g: &Golden) -> Result<Vec<(String, Var)>> {
    PARAMS
        .iter()
        .map(|n| {
            Ok((
                n.to_string(),
                Var::from_tensor(&g.f32(&format!("init.{n}"))?)?,
            ))
        })
        .collect()
}

/// The golden case `name` as an optimizer over `vars`.
fn build(name: &str, vars: Vec<(String, Var)>) -> Result<Box<dyn Optimizer>> {
    let sgd = |momentum, dampening, weight_decay, nesterov| SgdConfig {
        lr: 0.1,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    };
    Ok(match name {
        "adam" => Box::new(Adam::new(
            vars,
            AdamConfig {
                lr: 1e-2,
                ..Default::default()
            },
            never,
        )?),
        "adam_l2" => Box::new(Adam::new(
            vars,
            AdamConfig {
                lr: 1e-2,
                beta1: 0.8,
                beta2: 0.99,
                eps: 1e-6,
                weight_decay: 0.1,
            },
            excluded,
        )?),
        "adamw" => Box::new(AdamW::new(
            vars,
            AdamWConfig {
                lr: 1e-2,
                weight_decay: 0.05,
                ..Default::default()
            },
            excluded,
        )?),
        "adamw_default" => Box::new(AdamW::new(vars, AdamWConfig::default(), never)?),
        "sgd" => Box::new(Sgd::new(vars, sgd(0.0, 0.0, 0.0, false), never)?),
        "sgd_wd" => Box::new(Sgd::new(vars, sgd(0.0, 0.0, 1e-2, false), never)?),
        "sgd_momentum" => Box::new(Sgd::new(vars, sgd(0.9, 0.0, 0.0, false), never)?),
        "sgd_dampening" => Box::new(Sgd::new(vars, sgd(0.9, 0.3, 0.0, false), never)?),
        "sgd_nesterov" => Box::new(Sgd::new(vars, sgd(0.9, 0.0, 1e-2, true), excluded)?),
        "lars" => Box::new(Lars::new(
            vars,
            LarsConfig {
                lr: 0.5,
                momentum: 0.9,
                weight_decay: 1e-3,
                trust_coefficient: 0.02,
            },
            excluded,
        )?),
        other => return Err(Error::op("build", format!("unknown case {other}"))),
    })
}

const CASES: &[&str] = &[
    "adam",
    "adam_l2",
    "adamw",
    "adamw_default",
    "sgd",
    "sgd_wd",
    "sgd_momentum",
    "sgd_dampening",
    "sgd_nesterov",
    "lars",
];

fn grads(g: &Golden, vars: &[(String, Var)], k: usize) -> Result<GradStore> {
    let mut store = GradStore::default();
    for (n, v) in vars {
        store.insert(v.as_tensor(), g.f32(&format!("grad.{k}.{n}"))?);
    }
    Ok(store)
}

#[test]
fn optimizers_match_torch_step_by_step() -> Result<()> {
    let g = Golden::workspace("optim")?;
    for case in CASES {
        let vs = vars(&g)?;
        let mut opt = build(case, vs.clone())?;
        let lrs = g.get(&format!("{case}.lr"))?.to_vec1::<f64>()?;
        let mut worst = 0f64;
        for (k, &lr) in lrs.iter().enumerate().take(STEPS) {
            opt.set_lr(lr);
            assert_eq!(opt.lr(), lr);
            opt.step(&grads(&g, &vs, k)?)?;
            for (n, v) in &vs {
                let want = g.get(&format!("{case}.{k}.{n}"))?;
                let r = assert_close(
                    &format!("{case} step {k} {n}"),
                    v.as_tensor(),
                    &want,
                    Tolerance::COMPOSITE,
                )?;
                worst = worst.max(r.worst_ratio);
            }
        }
        println!("{case}: worst error {worst:.3} of the tolerance");
    }
    Ok(())
}

fn snapshot(vs: &[(String, Var)]) -> Result<Vec<Vec<f32>>> {
    vs.iter()
        .map(|(_, v)| Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?))
        .collect()
}

/// Two steps, save, load into a fresh optimizer over copies of the variables, two more steps:
/// the same bits as four uninterrupted steps. Also: the saved state is a copy (later steps do
/// not change it).
#[test]
fn state_round_trip_resumes_bit_identically() -> Result<()> {
    let g = Golden::workspace("optim")?;
    for case in CASES {
        let lrs = g.get(&format!("{case}.lr"))?.to_vec1::<f64>()?;
        let full = vars(&g)?;
        let mut opt = build(case, full.clone())?;
        let mut saved: Option<(TensorMap, Vec<Tensor>)> = None;
        for (k, &lr) in lrs.iter().enumerate() {
            if k == 2 {
                let params = full
                    .iter()
                    .map(|(_, v)| v.as_tensor().copy())
                    .collect::<candle_core::Result<Vec<_>>>()?;
                saved = Some((opt.state()?, params));
            }
            opt.set_lr(lr);
            opt.step(&grads(&g, &full, k)?)?;
        }
        let Some((state, params)) = saved else {
            return Err(Error::op("test", "no snapshot"));
        };
        // The saved state did not follow the optimizer's later in-place updates.
        let later = opt.state()?;
        let step_key = if case.starts_with("adam") {
            "adam.step.a.weight"
        } else if case.starts_with("sgd") {
            "sgd.step.a.weight"
        } else {
            "lars.step.a.weight"
        };
        let step_at = |m: &TensorMap| -> Result<i64> {
            match m.get(step_key) {
                Some(t) => Ok(t.to_scalar::<i64>()?),
                None => Err(Error::op("test", format!("no {step_key}"))),
            }
        };
        assert_eq!((step_at(&state)?, step_at(&later)?), (2, 4), "{case}");
        let resumed: Vec<(String, Var)> = PARAMS
            .iter()
            .zip(&params)
            .map(|(n, t)| Ok((n.to_string(), Var::from_tensor(t)?)))
            .collect::<Result<_>>()?;
        let mut opt2 = build(case, resumed.clone())?;
        opt2.load_state(&state)?;
        for (k, &lr) in lrs.iter().enumerate().skip(2) {
            opt2.set_lr(lr);
            opt2.step(&grads(&g, &resumed, k)?)?;
        }
        assert_eq!(
            snapshot(&full)?,
            snapshot(&resumed)?,
            "{case}: resume differs"
        );
    }
    Ok(())
}

/// BatchNorm running statistics (variables with no gradient) are never touched, nor is their
/// state; the variables with a gradient move.
#[test]
fn variables_without_gradient_are_untouched() -> Result<()> {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 3), &dev)?)?;
    let mean = Var::from_tensor(&Tensor::randn(0f32, 1.0, 4, &dev)?)?;
    let var = Var::from_tensor(&Tensor::ones(4, DType::F32, &dev)?)?;
    let named = vec![
        ("conv.weight".to_string(), w.clone()),
        ("bn.running_mean".to_string(), mean.clone()),
        ("bn.running_var".to_string(), var.clone()),
    ];
    // Gradients by backprop: the BN statistics do not enter the loss.
    let x = Tensor::randn(0f32, 1.0, (2, 3), &dev)?;
    let loss = x.matmul(&w.as_tensor().t()?)?.sqr()?.sum_all()?;
    let grads = loss.backward()?;
    assert!(grads.get(mean.as_tensor()).is_none());
    let opts: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Adam::new(
            named.clone(),
            AdamConfig {
                weight_decay: 0.1,
                ..Default::default()
            },
            never,
        )?),
        Box::new(AdamW::new(named.clone(), AdamWConfig::default(), never)?),
        Box::new(Sgd::new(
            named.clone(),
            SgdConfig {
                momentum: 0.9,
                weight_decay: 0.1,
                ..Default::default()
            },
            never,
        )?),
        Box::new(Lars::new(named.clone(), LarsConfig::default(), never)?),
    ];
    for mut opt in opts {
        let before = snapshot(&named)?;
        opt.step(&grads)?;
        opt.step(&grads)?;
        let after = snapshot(&named)?;
        assert_ne!(before[0], after[0], "conv.weight did not move");
        assert_eq!(before[1..], after[1..], "BN statistics changed");
        let state = opt.state()?;
        for (k, t) in &state {
            if k.contains("bn.running") {
                let s = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                assert!(s.iter().all(|&v| v == 0.0), "{k} advanced: {s:?}");
            } else if k.contains(".step.") {
                assert_eq!(t.to_scalar::<i64>()?, 2, "{k}");
            }
        }
    }
    Ok(())
}

#[test]
fn load_state_reports_missing_and_mismatched_keys() -> Result<()> {
    let g = Golden::workspace("optim")?;
    let vs = vars(&g)?;
    let mut opt = Adam::new(vs.clone(), AdamConfig::default(), never)?;
    opt.step(&grads(&g, &vs, 0)?)?;
    let good = opt.state()?;
    let msg = |r: Result<()>| match r {
        Err(e) => e.to_string(),
        Ok(()) => "ok".to_string(),
    };
    let mut missing = good.clone();
    missing.remove("adam.v.c.weight");
    let m = msg(opt.load_state(&missing));
    assert!(m.contains("adam.v.c.weight"), "{m}");
    let mut shape = good.clone();
    shape.insert(
        "adam.m.a.weight".into(),
        Tensor::zeros((7, 5), DType::F32, &Device::Cpu)?,
    );
    let m = msg(opt.load_state(&shape));
    assert!(m.contains("adam.m.a.weight") && m.contains("[7, 5]"), "{m}");
    let mut extra = good.clone();
    extra.insert(
        "adam.m.gone".into(),
        Tensor::zeros(1, DType::F32, &Device::Cpu)?,
    );
    let m = msg(opt.load_state(&extra));
    assert!(m.contains("adam.m.gone"), "{m}");
    // Failed loads changed nothing; keys of other prefixes (model weights) are ignored.
    let mut with_model = good.clone();
    with_model.insert(
        "model.conv.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu)?,
    );
    opt.load_state(&with_model)?;
    let now = opt.state()?;
    for (k, t) in &good {
        let same = (t.to_dtype(DType::F64)? - now[k].to_dtype(DType::F64)?)?
            .abs()?
            .sum_all()?
            .to_scalar::<f64>()?;
        assert_eq!(same, 0.0, "{k}");
    }
    // An SGD state does not load into Adam; duplicate variables are refused.
    let sgd = Sgd::new(
        vs.clone(),
        SgdConfig {
            momentum: 0.9,
            ..Default::default()
        },
        never,
    )?;
    let m = msg(opt.load_state(&sgd.state()?));
    assert!(m.contains("adam.step"), "{m}");
    let mut dup = vs.clone();
    dup.push(("again".into(), vs[0].1.clone()));
    let m = match Adam::new(dup, AdamConfig::default(), never) {
        Err(e) => e.to_string(),
        Ok(_) => "ok".into(),
    };
    assert!(m.contains("listed twice"), "{m}");
    Ok(())
}

/// Timing (not a check): one fused Adam step over ResNet-18's variables against candle-nn's
/// AdamW. Run with `cargo test -p vssl-train --test optim -- --ignored --nocapture`
/// (`RAYON_NUM_THREADS=2` for the 2-thread figure of the report).
#[test]
#[ignore]
fn bench_adam_step_resnet18() -> Result<()> {
    use candle_nn::{Optimizer as _, VarBuilder, VarMap};
    use vssl_model::{ResNet, ResNetConfig};
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let _net = ResNet::new(&ResNetConfig::default(), vb)?;
    let named: Vec<(String, Var)> = vssl_core::testing::named_vars(&varmap)
        .into_iter()
        .filter(|(n, _)| vssl_model::is_trainable(n))
        .collect();
    let n: usize = named.iter().map(|(_, v)| v.elem_count()).sum();
    let mut grads = GradStore::default();
    for (_, v) in &named {
        grads.insert(v.as_tensor(), Tensor::randn(0f32, 1e-3, v.shape(), &dev)?);
    }
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        f()?;
        let t = std::time::Instant::now();
        for _ in 0..10 {
            f()?;
        }
        Ok(t.elapsed().as_secs_f64() / 10.0)
    };
    let mut ours = Adam::new(named.clone(), AdamConfig::default(), never)?;
    let t_ours = time(&mut || ours.step(&grads))?;
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
    let mut theirs = candle_nn::AdamW::new(vars, candle_nn::ParamsAdamW::default())?;
    let t_theirs = time(&mut || Ok(theirs.step(&grads)?))?;
    println!(
        "{} tensors, {n} params, RAYON_NUM_THREADS={}: fused Adam {:.4} s/step, candle-nn AdamW {:.4} s/step",
        named.len(),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
        t_ours,
        t_theirs
    );
    Ok(())
}
