//! The ContrastCorr step against a float64 PyTorch transcription of the official forward
//! (`tests/golden/step.py`): both phases, through the reduced random autoencoder and in
//! down-sampled Lab space; every loss term, the tracked centre and box, the gradient of every
//! trainable encoder parameter and the BatchNorm running statistics after the step.
//!
//! The main-phase gradients include the path through the tracked box (the differentiable crops of
//! the target features, colour features and Lab ground truth, back to the localisation softmax):
//! with the box detached, the encoder gradients miss the fixture by about 300 times the tolerance
//! (checked once by hand), so these tests prove that the tracking is learned.
//!
//! Tolerance: `|got − want| ≤ atol + 1e-4·|want|` (f32 against float64):
//! - loss terms, centre, box and running statistics: `atol = 1e-6` (the forward agrees to about
//!   1e-6 relative: losses within 7e-7, encoder features within 6e-6 of their maximum);
//! - gradients: `atol = 2e-4 · max|want|` of each tensor. The backward pass through two
//!   train-mode BatchNorm passes sums thousands of terms that largely cancel (a BN bias gradient
//!   is the sum of its channel's upstream gradients), so f32 loses digits there: PyTorch's own
//!   float32 run of the same step lands up to 1.6e-4·max from the float64 reference
//!   (`check.f32_rel_err.grad` in the fixtures), and ours within 2e-4·max (1e-4·max fails on a
//!   few elements). A wrong term, axis or detached path changes gradients by O(1).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use vssl_core::Result;
use vssl_core::testing::{Golden, Tolerance, assert_all_vars_have_grads, assert_close, named_vars};
use vssl_model::autoencoder::TensorMap;
use vssl_model::{Autoencoder, AutoencoderWidths, Depth, ResNet, ResNetConfig, is_trainable};
use vssl_train::{ColourSpace, ContrastCorrStep, PairBatch, Phase, StepConfig, StepOptions};

/// Values of the forward pass.
fn tol() -> Tolerance {
    Tolerance::COMPOSITE.with_atol(1e-6)
}

/// Gradients (see the module docs).
fn grad_tol() -> Tolerance {
    Tolerance::COMPOSITE.with_atol_of_max(2e-4)
}

fn prefixed(g: &Golden, prefix: &str, dev: &Device) -> Result<TensorMap> {
    let mut map = TensorMap::new();
    for name in g.names() {
        if let Some(rest) = name.strip_prefix(prefix) {
            map.insert(rest.to_string(), g.f32(&name)?.to_device(dev)?);
        }
    }
    Ok(map)
}

/// `(lab − 128)/128` of a stored u8 Lab batch.
fn lab(g: &Golden, key: &str, dev: &Device) -> Result<Tensor> {
    Ok(g.f32(key)?.to_device(dev)?.affine(1.0 / 128.0, -1.0)?)
}

struct Setup {
    varmap: VarMap,
    step: ContrastCorrStep,
    batch: PairBatch,
    opts: StepOptions,
    /// The autoencoder's weights as variables (to prove none gets a gradient).
    ae_vars: Vec<(String, Var)>,
}

fn setup(g: &Golden, autoencoder: bool, dev: &Device) -> Result<Setup> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
    let cfg = ResNetConfig::contrastcorr(Depth::R18).with_width(1.0 / 16.0);
    let encoder = ResNet::new(&cfg, vb)?;
    for (name, var) in named_vars(&varmap) {
        var.set(&g.f32(&format!("encoder.{name}"))?.to_device(dev)?)?;
    }
    let mut ae_vars = Vec::new();
    let colour = if autoencoder {
        let mut as_vars = |prefix: &str| -> Result<TensorMap> {
            let mut out = TensorMap::new();
            for (k, t) in prefixed(g, prefix, dev)? {
                let v = Var::from_tensor(&t)?;
                out.insert(k.clone(), v.as_tensor().clone());
                ae_vars.push((format!("{prefix}{k}"), v));
            }
            Ok(out)
        };
        let (enc, dec) = (as_vars("ae_enc.")?, as_vars("ae_dec.")?);
        let widths = AutoencoderWidths { a: 8, b: 16, c: 32 };
        ColourSpace::Autoencoder(Box::new(Autoencoder::from_tensors(widths, enc, dec, dev)?))
    } else {
        ColourSpace::Lab
    };
    let step_cfg = StepConfig {
        temp: g.scalar("cfg.temp")?,
        switch_weight: g.scalar("cfg.switch_weight")?,
        concentration_weight: g.scalar("cfg.concentration_weight")?,
        self_rec_weight: g.scalar("cfg.self_rec")?,
        ..StepConfig::default()
    };
    let step = ContrastCorrStep::new(encoder, colour, step_cfg)?;
    let batch = PairBatch {
        reference: lab(g, "input.ref", dev)?,
        target: lab(g, "input.tar", dev)?,
        dropped_channels: vec![],
    };
    let opts = StepOptions {
        thr: Some(g.scalar("cfg.thr")?),
        concentration: true,
        train: true,
    };
    Ok(Setup {
        varmap,
        step,
        batch,
        opts,
        ae_vars,
    })
}

fn check(fixture: &str, phase: Phase, autoencoder: bool) -> Result<()> {
    check_on(fixture, phase, autoencoder, &Device::Cpu, tol(), grad_tol())
}

fn check_on(
    fixture: &str,
    phase: Phase,
    autoencoder: bool,
    dev: &Device,
    tol: Tolerance,
    grad_tol: Tolerance,
) -> Result<()> {
    let tol = || tol;
    let grad_tol = || grad_tol;
    let g = Golden::workspace(fixture)?;
    let s = setup(&g, autoencoder, dev)?;
    let out = s.step.forward(&s.batch, phase, &s.opts)?;
    let mut names: Vec<&str> = out.terms.iter().map(|t| t.name).collect();
    names.sort();
    let mut want: Vec<String> = g
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("loss.").map(str::to_string))
        .filter(|n| n != "total")
        .collect();
    want.sort();
    assert_eq!(names, want, "{fixture}: terms");
    for t in out.terms.iter() {
        assert_close(
            &format!("{fixture} loss.{}", t.name),
            &t.value,
            &g.f32(&format!("loss.{}", t.name))?,
            tol(),
        )?;
    }
    assert_close(
        &format!("{fixture} loss.total"),
        &out.total,
        &g.f32("loss.total")?,
        tol(),
    )?;
    if phase == Phase::Main {
        let center = out.center.as_ref().expect("main phase has a centre");
        let bbox = out.bbox.as_ref().expect("main phase has a box");
        assert_close(
            &format!("{fixture} center"),
            center,
            &g.f32("debug.center")?,
            tol(),
        )?;
        assert_close(&format!("{fixture} box"), bbox, &g.f32("debug.box")?, tol())?;
    }

    let grads = out.total.backward()?;
    let trainable: Vec<(String, Var)> = named_vars(&s.varmap)
        .into_iter()
        .filter(|(n, _)| is_trainable(n))
        .collect();
    // Every trainable variable receives a gradient…
    assert_all_vars_have_grads(&trainable, &grads)?;
    let mut compared = 0;
    for (name, var) in &trainable {
        let key = format!("grad.encoder.{name}");
        if g.names().contains(&key) {
            let got = grads.get(var.as_tensor()).expect("checked above");
            assert_close(&format!("{fixture} {key}"), got, &g.f32(&key)?, grad_tol())?;
            compared += 1;
        }
    }
    assert!(
        compared >= 3,
        "{fixture}: only {compared} gradients in the fixture"
    );
    // …and the frozen autoencoder none.
    for (name, var) in &s.ae_vars {
        assert!(
            grads.get(var.as_tensor()).is_none(),
            "{fixture}: {name} got a gradient"
        );
    }
    for (name, var) in named_vars(&s.varmap)
        .iter()
        .filter(|(n, _)| !is_trainable(n))
    {
        assert_close(
            &format!("{fixture} {name} after the step"),
            var.as_tensor(),
            &g.f32(&format!("after.encoder.{name}"))?,
            tol(),
        )?;
    }
    Ok(())
}

#[test]
fn warmup_through_the_autoencoder_matches_pytorch() -> Result<()> {
    check("step_warmup", Phase::Warmup, true)
}

#[test]
fn main_phase_through_the_autoencoder_matches_pytorch() -> Result<()> {
    check("step_main", Phase::Main, true)
}

#[test]
fn warmup_in_lab_space_matches_pytorch() -> Result<()> {
    check("step_warmup_lab", Phase::Warmup, false)
}

#[test]
fn main_phase_in_lab_space_matches_pytorch() -> Result<()> {
    check("step_main_lab", Phase::Main, false)
}

/// The same comparisons on another device, when `VSSL_TEST_DEVICE` names one (e.g. `cuda:0` in a
/// `--features cuda` build on a GPU machine): every op then takes its portable path and candle's
/// GPU kernels sum in another order, so the forward bound is 1e-5 and the gradients' 1e-3·max.
#[test]
fn every_fixture_on_the_test_device() -> Result<()> {
    let Ok(spec) = std::env::var("VSSL_TEST_DEVICE") else {
        eprintln!("skipping: VSSL_TEST_DEVICE is not set (e.g. cuda:0)");
        return Ok(());
    };
    let dev = vssl_core::device::parse_device(&spec)?;
    for (fixture, phase, ae) in [
        ("step_warmup", Phase::Warmup, true),
        ("step_main", Phase::Main, true),
        ("step_warmup_lab", Phase::Warmup, false),
        ("step_main_lab", Phase::Main, false),
    ] {
        check_on(
            fixture,
            phase,
            ae,
            &dev,
            Tolerance::COMPOSITE.with_atol(1e-5),
            Tolerance::COMPOSITE.with_atol_of_max(1e-3),
        )?;
        eprintln!("{fixture} on {spec}: ok");
    }
    Ok(())
}
