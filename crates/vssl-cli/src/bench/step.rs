//! `vssl bench step`: one ContrastCorr training step (forward, backward, Adam update) at the
//! paper's sizes, batch 2, each phase in its own process.
//!
//! - `warmup_b2`: reference and target 256² crops;
//! - `main_b2`: a 256² reference patch tracked into a 640² target;
//! - `warmup_b2_lab`, `main_b2_lab`: the same in down-sampled Lab space (no autoencoder: the
//!   default when its weights are not given; the official code has no such mode, so its figures
//!   are shown for scale only).
//!
//! Full-width ResNet-18 (ContrastCorr strides, 512 channels at stride 8), BatchNorm in train mode,
//! the frozen Lab autoencoder (the published weights from `--autoencoder DIR` when its
//! `encoder.safetensors` and `decoder.safetensors` exist, else random weights of the same shape:
//! the time does not depend on the values), every term on, Adam (lr 1e-4, no weight decay).
//!
//! For reference (from the issue): the official code under PyTorch 2.9 on a 2-core AVX-512
//! machine takes 2.03 s (warm-up, B = 2, 2.2 GB peak) and 6.33 s (main, B = 2, 4.0 GB peak). No
//! speed target here: the kernels issue owns it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use vssl_model::{Autoencoder, AutoencoderWidths, Depth, ResNet, ResNetConfig, is_trainable};
use vssl_train::{ColourSpace, ContrastCorrStep, PairBatch, Phase, StepConfig, StepOptions};

use super::{median, out_path, peak_rss_bytes, provenance, run_child, write_json};

/// (name, phase, reference side, target side, batch, through the autoencoder, official
/// seconds, official peak bytes)
type Config = (&'static str, Phase, usize, usize, usize, bool, f64, f64);
const CONFIGS: &[Config] = &[
    ("warmup_b2", Phase::Warmup, 256, 256, 2, true, 2.03, 2.2e9),
    ("main_b2", Phase::Main, 256, 640, 2, true, 6.33, 4.0e9),
    (
        "warmup_b2_lab",
        Phase::Warmup,
        256,
        256,
        2,
        false,
        2.03,
        2.2e9,
    ),
    ("main_b2_lab", Phase::Main, 256, 640, 2, false, 6.33, 4.0e9),
];

/// A smooth random normalised-Lab batch `[b, 3, side, side]` (low-frequency sinusoids plus a
/// little noise, so the affinities are not degenerate).
fn images(b: usize, side: usize, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let mut v = Vec::with_capacity(b * 3 * side * side);
    for _ in 0..b * 3 {
        let (fx, fy, ph): (f32, f32, f32) = (
            rng.random_range(1.0..4.0),
            rng.random_range(1.0..4.0),
            rng.random_range(0.0..std::f32::consts::TAU),
        );
        for y in 0..side {
            for x in 0..side {
                let (u, w) = (x as f32 / side as f32, y as f32 / side as f32);
                let s = (std::f32::consts::TAU * (fx * u + fy * w) + ph).sin() * 0.5;
                v.push(s + rng.random_range(-0.05f32..0.05));
            }
        }
    }
    Ok(Tensor::from_vec(v, (b, 3, side, side), &Device::Cpu)?)
}

fn autoencoder(dir: &Path) -> Result<(Autoencoder, &'static str)> {
    let (enc, dec) = (
        dir.join("encoder.safetensors"),
        dir.join("decoder.safetensors"),
    );
    let widths = AutoencoderWidths::default();
    if enc.exists() && dec.exists() {
        let ae = Autoencoder::load(&enc, &dec, &Device::Cpu)?;
        Ok((ae, "published UVC weights"))
    } else {
        Ok((
            Autoencoder::random(widths, 1, &Device::Cpu)?,
            "random weights (published ones absent)",
        ))
    }
}

fn child(config: &str, repeats: usize, ae_dir: &Path) -> Result<Value> {
    let Some(&(_, phase, rs, ts, b, use_ae, _, _)) = CONFIGS.iter().find(|c| c.0 == config) else {
        bail!("unknown step benchmark {config:?}");
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let encoder = ResNet::new(&ResNetConfig::contrastcorr(Depth::R18), vb)?;
    let (colour, ae_source) = if use_ae {
        let (ae, source) = autoencoder(ae_dir)?;
        (ColourSpace::Autoencoder(Box::new(ae)), source)
    } else {
        (ColourSpace::Lab, "none (Lab space)")
    };
    let step = ContrastCorrStep::new(encoder, colour, StepConfig::default())?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let batch = PairBatch {
        reference: images(b, rs, &mut rng)?,
        target: images(b, ts, &mut rng)?,
        dropped_channels: vec![],
    };
    let opts = StepOptions {
        thr: None,
        concentration: true,
        train: true,
    };
    let vars: Vec<_> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned var map"))?
        .iter()
        .filter(|(n, _)| is_trainable(n))
        .map(|(_, v)| v.clone())
        .collect();
    let params = ParamsAdamW {
        lr: 1e-4,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    let mut opt = AdamW::new(vars, params)?;
    let (mut fwd, mut bwd, mut upd) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=repeats {
        let t0 = Instant::now();
        let out = step.forward(&batch, phase, &opts)?;
        // Force the forward pass to finish before timing the backward one.
        let loss = out.total.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = out.total.backward()?;
        let t2 = Instant::now();
        opt.step(&grads)?;
        let t3 = Instant::now();
        if !loss.is_finite() {
            bail!("non-finite loss {loss} in {config}");
        }
        if i > 0 {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            upd.push((t3 - t2).as_secs_f64());
        }
    }
    let total: Vec<f64> = (0..fwd.len()).map(|i| fwd[i] + bwd[i] + upd[i]).collect();
    Ok(json!({
        "name": config,
        "phase": format!("{phase:?}").to_lowercase(),
        "batch": b,
        "reference_side": rs,
        "target_side": ts,
        "autoencoder": ae_source,
        "seconds_median": median(&total),
        "forward_seconds_median": median(&fwd),
        "backward_seconds_median": median(&bwd),
        "optimizer_seconds_median": median(&upd),
        "seconds_runs": total,
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}

/// `vssl bench step`.
pub fn run(
    child_config: Option<String>,
    out: Option<PathBuf>,
    repeats: usize,
    ae_dir: PathBuf,
) -> Result<()> {
    if let Some(config) = child_config {
        println!("{}", child(&config, repeats, &ae_dir)?);
        return Ok(());
    }
    let extra = vec![
        "--repeats".to_string(),
        repeats.to_string(),
        "--autoencoder".to_string(),
        ae_dir.display().to_string(),
    ];
    let mut results = Vec::new();
    for &(name, _, _, _, _, _, ref_s, ref_bytes) in CONFIGS {
        eprintln!("bench step: {name} ...");
        let mut r = run_child("step", name, &extra)?;
        let secs = r["seconds_median"].as_f64().unwrap_or(f64::NAN);
        let rss = r["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN);
        r["official_seconds"] = json!(ref_s);
        r["official_peak_bytes"] = json!(ref_bytes);
        r["time_ratio_to_official"] = json!(secs / ref_s);
        r["memory_ratio_to_official"] = json!(rss / ref_bytes);
        eprintln!(
            "  {secs:.2} s per step (official {ref_s} s, {:.2}x), peak RSS {:.2} GB (official {:.1} GB)",
            secs / ref_s,
            rss / 1e9,
            ref_bytes / 1e9
        );
        results.push(r);
    }
    let report = json!({
        "benchmark": "step",
        "provenance": provenance(),
        "repeats": repeats,
        "model": "ResNet-18, ContrastCorr strides (1,2,1,1), 512 channels at stride 8, BN train mode; Lab autoencoder (256-d at stride 8); all ContrastCorr terms; Adam lr 1e-4",
        "official_reference": "official ContrastCorr code under PyTorch 2.9 on a 2-core AVX-512 x86-64 machine (numbers from the issue)",
        "results": results,
    });
    let path = out_path(out, "step");
    write_json(&path, &report)?;
    eprintln!("bench step: wrote {}", path.display());
    Ok(())
}
