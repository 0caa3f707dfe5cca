//! Behaviour of the ContrastCorr step beyond the golden comparison: method presets and term
//! toggles, batches of one, channel dropout, the colour-space records, gradients for every preset,
//! and clear errors for bad batches.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vssl_core::Result;
use vssl_core::testing::{assert_all_vars_have_grads, named_vars};
use vssl_model::{Autoencoder, AutoencoderWidths, Depth, ResNet, ResNetConfig, is_trainable};
use vssl_train::{
    ColourSpace, ContrastCorrStep, Method, PairBatch, Phase, StepConfig, StepOptions,
};

const WIDTHS: AutoencoderWidths = AutoencoderWidths { a: 4, b: 8, c: 16 };

fn step(method: Method, autoencoder: bool) -> Result<(VarMap, ContrastCorrStep)> {
    step_with_temp(method, autoencoder, 1.0)
}

fn step_with_temp(
    method: Method,
    autoencoder: bool,
    temp: f64,
) -> Result<(VarMap, ContrastCorrStep)> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let encoder = ResNet::new(
        &ResNetConfig::contrastcorr(Depth::R18).with_width(1.0 / 16.0),
        vb,
    )?;
    let colour = if autoencoder {
        ColourSpace::Autoencoder(Box::new(Autoencoder::random(WIDTHS, 1, &Device::Cpu)?))
    } else {
        ColourSpace::Lab
    };
    let cfg = StepConfig {
        method,
        temp,
        ..StepConfig::default()
    };
    Ok((varmap, ContrastCorrStep::new(encoder, colour, cfg)?))
}

fn images(b: usize, h: usize, w: usize, seed: u64) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..b * 3 * h * w)
        .map(|_| rng.random_range(-0.8f32..0.8))
        .collect();
    Ok(Tensor::from_vec(v, (b, 3, h, w), &Device::Cpu)?)
}

fn batch(b: usize, phase: Phase) -> Result<PairBatch> {
    let (r, t) = match phase {
        Phase::Warmup => (64, 64),
        Phase::Main => (64, 128),
    };
    Ok(PairBatch {
        reference: images(b, r, r, 1)?,
        target: images(b, t, t, 2)?,
        dropped_channels: vec![],
    })
}

fn names(method: Method, phase: Phase, opts: &StepOptions) -> Result<Vec<&'static str>> {
    let (_, s) = step(method, false)?;
    let out = s.forward(&batch(2, phase)?, phase, opts)?;
    Ok(out.terms.iter().map(|t| t.name).collect())
}

#[test]
fn presets_select_their_terms() -> Result<()> {
    let on = StepOptions::default();
    assert_eq!(names(Method::Colorization, Phase::Warmup, &on)?, ["intra"]);
    assert_eq!(
        names(Method::Uvc, Phase::Warmup, &on)?,
        ["intra", "concentration"]
    );
    assert_eq!(
        names(Method::Uvc, Phase::Main, &on)?,
        ["intra", "concentration"]
    );
    assert_eq!(
        names(Method::Contrastcorr, Phase::Warmup, &on)?,
        ["intra", "self_rec", "concentration"]
    );
    assert_eq!(
        names(Method::Contrastcorr, Phase::Main, &on)?,
        ["intra", "self_rec", "concentration", "inter", "sparsity"]
    );
    // Concentration is gated per step (before epoch 10 of the warm-up).
    let early = StepOptions {
        concentration: false,
        ..on
    };
    assert_eq!(
        names(Method::Contrastcorr, Phase::Warmup, &early)?,
        ["intra", "self_rec"]
    );
    Ok(())
}

#[test]
fn total_is_the_weighted_sum_and_the_switch_adds_to_intra() -> Result<()> {
    let opts = StepOptions {
        thr: None,
        ..StepOptions::default()
    };
    let b = batch(2, Phase::Main)?;
    let (_, s) = step(Method::Contrastcorr, true)?;
    let out = s.forward(&b, Phase::Main, &opts)?;
    let values = out.terms.values()?;
    let get = |n: &str| {
        values
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| *v)
            .expect(n)
    };
    let want = get("intra")
        + get("self_rec")
        + 0.3 * get("concentration")
        + get("inter")
        + get("sparsity");
    let total = out.total.to_scalar::<f32>()? as f64;
    assert!(
        (total - want).abs() <= 1e-5 * want.abs(),
        "{total} vs {want}"
    );
    // Without the colour switch (UVC minus switch is not a preset; compare UVC's intra, which
    // includes it, against colourisation's intra in the warm-up with the same encoder weights).
    let (vm_u, uvc) = step(Method::Uvc, false)?;
    let (vm_c, col) = step(Method::Colorization, false)?;
    for (name, var) in named_vars(&vm_c) {
        let src = named_vars(&vm_u)
            .into_iter()
            .find(|(n, _)| *n == name)
            .expect("same names");
        var.set(src.1.as_tensor())?;
    }
    let wb = batch(2, Phase::Warmup)?;
    let eval = StepOptions {
        thr: None,
        concentration: false,
        train: false,
    };
    let with = uvc.forward(&wb, Phase::Warmup, &eval)?.terms.values()?[0].1;
    let without = col.forward(&wb, Phase::Warmup, &eval)?.terms.values()?[0].1;
    assert!(
        with > without,
        "the switch adds a positive term: {with} vs {without}"
    );
    Ok(())
}

#[test]
fn batch_of_one_works_in_both_phases_and_spaces() -> Result<()> {
    for ae in [false, true] {
        let (varmap, s) = step(Method::Contrastcorr, ae)?;
        for phase in [Phase::Warmup, Phase::Main] {
            let out = s.forward(&batch(1, phase)?, phase, &StepOptions::default())?;
            let total = out.total.to_scalar::<f32>()?;
            assert!(total.is_finite(), "{phase:?}: {total}");
            if phase == Phase::Main {
                assert_eq!(
                    out.bbox.as_ref().map(|b| b.dims().to_vec()),
                    Some(vec![1, 4])
                );
                // One video: all of every row's mass is on its own video.
                let sparsity = out
                    .terms
                    .get("sparsity")
                    .expect("on")
                    .value
                    .to_scalar::<f32>()?;
                assert!(sparsity.abs() < 1e-5, "{sparsity}");
            }
            let grads = out.total.backward()?;
            let trainable: Vec<_> = named_vars(&varmap)
                .into_iter()
                .filter(|(n, _)| is_trainable(n))
                .collect();
            assert_all_vars_have_grads(&trainable, &grads)?;
        }
    }
    Ok(())
}

#[test]
fn every_preset_trains_every_encoder_variable() -> Result<()> {
    for (method, phase) in [
        (Method::Colorization, Phase::Warmup),
        (Method::Uvc, Phase::Warmup),
        (Method::Uvc, Phase::Main),
    ] {
        // At torchvision's initialisation the raw dot products of noise images saturate every
        // softmax at temperature 1 (one-hot rows pass no gradient); a lower temperature keeps
        // them soft, as trained features do.
        let (varmap, s) = step_with_temp(method, true, 0.02)?;
        let opts = StepOptions {
            thr: None,
            ..StepOptions::default()
        };
        let out = s.forward(&batch(2, phase)?, phase, &opts)?;
        let grads = out.total.backward()?;
        let trainable: Vec<_> = named_vars(&varmap)
            .into_iter()
            .filter(|(n, _)| is_trainable(n))
            .collect();
        assert_all_vars_have_grads(&trainable, &grads)?;
        // BatchNorm running statistics are updated in the forward pass, never by gradient.
        for (n, v) in named_vars(&varmap).iter().filter(|(n, _)| !is_trainable(n)) {
            assert!(
                grads.get(v.as_tensor()).is_none(),
                "{method:?}: {n} got a gradient"
            );
        }
    }
    Ok(())
}

#[test]
fn channel_dropout_changes_the_encoder_input_only() -> Result<()> {
    let (_, s) = step(Method::Contrastcorr, false)?;
    let eval = StepOptions {
        thr: None,
        concentration: true,
        train: false,
    };
    let mut b = batch(2, Phase::Warmup)?;
    let plain = s.forward(&b, Phase::Warmup, &eval)?.terms.values()?;
    b.dropped_channels = vec![1];
    let dropped = s.forward(&b, Phase::Warmup, &eval)?.terms.values()?;
    assert_ne!(plain, dropped);
    b.dropped_channels = vec![0, 1, 2];
    let e = s
        .forward(&b, Phase::Warmup, &eval)
        .expect_err("three channels")
        .to_string();
    assert!(e.contains("[0, 1, 2]"), "{e}");
    Ok(())
}

#[test]
fn colour_space_is_recorded() -> Result<()> {
    assert_eq!(
        step(Method::Contrastcorr, true)?.1.colour().name(),
        "autoencoder"
    );
    assert_eq!(step(Method::Contrastcorr, false)?.1.colour().name(), "lab");
    Ok(())
}

#[test]
fn bad_batches_are_clear_errors() -> Result<()> {
    let (_, s) = step(Method::Contrastcorr, false)?;
    let opts = StepOptions::default();
    let err = |b: PairBatch, phase: Phase| -> String {
        s.forward(&b, phase, &opts)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let empty = PairBatch {
        reference: Tensor::zeros((0, 3, 64, 64), DType::F32, &Device::Cpu)?,
        target: Tensor::zeros((0, 3, 64, 64), DType::F32, &Device::Cpu)?,
        dropped_channels: vec![],
    };
    assert!(err(empty, Phase::Warmup).contains("empty"));
    let mismatched = PairBatch {
        reference: images(2, 64, 64, 1)?,
        target: images(3, 64, 64, 2)?,
        dropped_channels: vec![],
    };
    let e = err(mismatched, Phase::Warmup);
    assert!(e.contains("2 pairs") && e.contains("3"), "{e}");
    let sizes = PairBatch {
        reference: images(2, 64, 64, 1)?,
        target: images(2, 64, 72, 2)?,
        dropped_channels: vec![],
    };
    let e = err(sizes, Phase::Warmup);
    assert!(e.contains("64×64") && e.contains("64×72"), "{e}");
    let odd = PairBatch {
        reference: images(2, 60, 64, 1)?,
        target: images(2, 64, 64, 2)?,
        dropped_channels: vec![],
    };
    let e = err(odd, Phase::Warmup);
    assert!(
        e.contains("multiples of 8") && e.contains("[2, 3, 60, 64]"),
        "{e}"
    );
    let big_patch = PairBatch {
        reference: images(2, 128, 128, 1)?,
        target: images(2, 64, 64, 2)?,
        dropped_channels: vec![],
    };
    assert!(err(big_patch, Phase::Main).contains("larger than the target"));
    let (_, col) = step(Method::Colorization, false)?;
    let e = col
        .forward(&batch(2, Phase::Main)?, Phase::Main, &opts)
        .expect_err("no tracking")
        .to_string();
    assert!(e.contains("tracking is off"), "{e}");
    // The autoencoder needs stride 8.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let tv = ResNet::new(
        &ResNetConfig::torchvision(Depth::R18).with_width(1.0 / 16.0),
        vb,
    )?;
    let e = ContrastCorrStep::new(
        tv,
        ColourSpace::Autoencoder(Box::new(Autoencoder::random(WIDTHS, 1, &Device::Cpu)?)),
        StepConfig::default(),
    )
    .expect_err("stride 32")
    .to_string();
    assert!(e.contains("stride is 32"), "{e}");
    Ok(())
}
