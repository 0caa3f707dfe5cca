//! `vssl bench eval`: label propagation speed and memory, each configuration in its own process.
//!
//! - `<preset>_<sequence>` for the `contrastcorr` and `crw` presets on DAVIS-2016 val's
//!   blackswan, car-shadow and dog (from `--data`, default `../shared/data/davis2016-val`;
//!   skipped with a note when absent): frames per second of the whole pass (decoding, features,
//!   affinities, the output masks written) and peak RSS. A full-width ResNet-18 with the
//!   preset's strides and random weights: the time does not depend on the values.
//! - `<preset>_synth<T>`: the same on a synthetic 320×240 video of T = 100 and T = 400 frames
//!   (generated once, written as JPEG frames + palette masks under `target/bench/eval-synth`),
//!   with ContrastCorr's input scaled to a 240-pixel short side so the 400 frames take minutes:
//!   streaming means the two peaks are equal within 10%.
//!
//! Reference figures (from the issue, a 2-core AVX-512 machine): the official ContrastCorr
//! `test.py` runs at 0.09 frames/s (2.4 GB peak), CRW's `test.py` at 0.087 frames/s (12.4 GB
//! after 20 frames). Targets: `contrastcorr` ≥ 2x the official speed, `crw` ≥ 1 frame/s, peak
//! RSS ≤ 2 GiB for both, synthetic peaks within 10%.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use serde_json::{Value, json};
use vssl_data::dataset::Davis;
use vssl_data::synth::{Preset, Split, generate_clip};
use vssl_eval::encoder::Encoder;
use vssl_eval::protocol::{Protocol, SizeRule};
use vssl_eval::vos::{Method, propagate_sequence};

use super::{out_path, peak_rss_bytes, provenance, run_child, write_json};

/// The DAVIS sequences timed.
const SEQUENCES: [&str; 3] = ["blackswan", "car-shadow", "dog"];
/// The presets timed.
const PRESETS: [&str; 2] = ["contrastcorr", "crw"];
/// Synthetic video lengths whose peaks are compared.
const SYNTH_LENGTHS: [usize; 2] = [100, 400];
/// The official ContrastCorr `test.py` speed on the machine, frames/s.
const OFFICIAL_CC_FPS: f64 = 0.09;
/// Peak RSS target.
const RSS_TARGET: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;

/// The protocol of a configuration: the preset, with ContrastCorr's input at a 240-pixel short
/// side for the synthetic videos.
fn protocol(preset: &str, synthetic: bool) -> Result<Protocol> {
    let mut p = Protocol::preset(preset)?;
    if synthetic && matches!(p.size, SizeRule::ShortSide { .. }) {
        p.size = SizeRule::ShortSide {
            side: 240,
            multiple: 64,
        };
    }
    Ok(p)
}

/// Runs one configuration: `<preset>_<sequence>` on `root` (a DAVIS-layout folder).
fn child(config: &str, data: &Path, synth_root: &Path, frames: Option<usize>) -> Result<Value> {
    let (preset, what) = config
        .split_once('_')
        .with_context(|| format!("bad configuration {config:?}"))?;
    let synthetic = what.starts_with("synth");
    let (root, year) = if synthetic {
        (synth_root, 2017)
    } else {
        (data, 2016)
    };
    let p = protocol(preset, synthetic)?;
    let device = Device::Cpu;
    let davis = Davis::open(root, year, "480p", Some(&[what.to_string()]))?;
    let mut seq = davis.sequences[0].clone();
    if let Some(n) = frames {
        seq.frames.truncate(n.max(2));
        seq.annotations.truncate(n.max(2));
    }
    let encoder = Encoder::random(&p.strides, 0, &device)?;
    let out = std::env::temp_dir().join(format!("vssl-bench-eval-{}", std::process::id()));
    let r = propagate_sequence(&seq, &Method::Propagate(encoder), &p, &device, &out, None);
    let _ = std::fs::remove_dir_all(&out);
    let r = r?;
    Ok(json!({
        "name": config,
        "preset": preset,
        "sequence": what,
        "frames": r.frames,
        "seconds": r.seconds,
        "frames_per_second": r.frames as f64 / r.seconds,
        "peak_rss_bytes": peak_rss_bytes(),
        "protocol": serde_json::to_value(&p)?,
    }))
}

/// Writes the synthetic videos (`synth100`, `synth400`) under `root` unless they are there.
fn make_synthetic(root: &Path) -> Result<()> {
    for &t in &SYNTH_LENGTHS {
        let name = format!("synth{t}");
        let dir = root.join("JPEGImages/480p").join(&name);
        if dir.join(format!("{:05}.jpg", t - 1)).exists() {
            continue;
        }
        eprintln!("bench eval: generating {name} (320x240, {t} frames) ...");
        let mut cfg = Preset::Medium.config();
        cfg.width = 320;
        cfg.height = 240;
        cfg.frames = t;
        let clip = generate_clip(&cfg, Split::Eval, 7, 0)?;
        vssl_data::synth::write_davis(&clip, root, &name)?;
    }
    Ok(())
}

/// `vssl bench eval`.
pub fn run(
    child_config: Option<String>,
    out: Option<PathBuf>,
    data: PathBuf,
    frames: Option<usize>,
) -> Result<()> {
    let synth_root = PathBuf::from("target/bench/eval-synth");
    if let Some(config) = child_config {
        println!("{}", child(&config, &data, &synth_root, frames)?);
        return Ok(());
    }
    make_synthetic(&synth_root)?;
    let have_davis = SEQUENCES
        .iter()
        .all(|s| data.join("JPEGImages/480p").join(s).is_dir());
    if !have_davis {
        eprintln!(
            "bench eval: {} has no DAVIS-2016 blackswan/car-shadow/dog: timing the synthetic videos only",
            data.display()
        );
    }
    let mut extra = vec!["--data".to_string(), data.display().to_string()];
    if let Some(n) = frames {
        extra.extend(["--frames".to_string(), n.to_string()]);
    }
    let mut configs = Vec::new();
    for preset in PRESETS {
        if have_davis {
            configs.extend(SEQUENCES.iter().map(|s| format!("{preset}_{s}")));
        }
        configs.extend(SYNTH_LENGTHS.iter().map(|t| format!("{preset}_synth{t}")));
    }
    let mut results = Vec::new();
    for c in &configs {
        eprintln!("bench eval: {c} ...");
        let r = run_child("eval", c, &extra)?;
        eprintln!(
            "  {} frames in {:.1} s: {:.3} frames/s, peak RSS {:.0} MiB",
            r["frames"],
            r["seconds"].as_f64().unwrap_or(f64::NAN),
            r["frames_per_second"].as_f64().unwrap_or(f64::NAN),
            r["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / 1048576.0
        );
        results.push(r);
    }
    let mut targets = Vec::new();
    for preset in PRESETS {
        let mine: Vec<&Value> = results
            .iter()
            .filter(|r| {
                r["preset"] == preset && !r["sequence"].as_str().unwrap_or("").starts_with("synth")
            })
            .collect();
        if !mine.is_empty() {
            let frames: f64 = mine.iter().filter_map(|r| r["frames"].as_f64()).sum();
            let secs: f64 = mine.iter().filter_map(|r| r["seconds"].as_f64()).sum();
            let fps = frames / secs;
            let peak = mine
                .iter()
                .filter_map(|r| r["peak_rss_bytes"].as_f64())
                .fold(0.0, f64::max);
            let (name, target, met) = if preset == "contrastcorr" {
                (
                    "contrastcorr frames/s ≥ 2x the official test.py (0.09 on the issue's machine)",
                    2.0 * OFFICIAL_CC_FPS,
                    fps >= 2.0 * OFFICIAL_CC_FPS,
                )
            } else {
                ("crw frames/s ≥ 1", 1.0, fps >= 1.0)
            };
            targets.push(json!({"name": name, "value": fps, "target": target, "met": met}));
            targets.push(json!({
                "name": format!("{preset} peak RSS ≤ 2 GiB (DAVIS sequences)"),
                "value": peak, "target": RSS_TARGET, "met": peak <= RSS_TARGET,
            }));
        }
        let peak = |t: usize| -> Result<f64> {
            results
                .iter()
                .find(|r| r["name"] == format!("{preset}_synth{t}"))
                .and_then(|r| r["peak_rss_bytes"].as_f64())
                .with_context(|| format!("no peak RSS for {preset}_synth{t}"))
        };
        let ratio = peak(SYNTH_LENGTHS[1])? / peak(SYNTH_LENGTHS[0])?;
        targets.push(json!({
            "name": format!("{preset}: peak RSS of 400 frames / 100 frames within 10%"),
            "value": ratio, "target": "0.9..1.1", "met": (0.9..=1.1).contains(&ratio),
        }));
    }
    let report = json!({
        "benchmark": "eval",
        "provenance": provenance(),
        "data": data.display().to_string(),
        "frames_cap": frames,
        "reference": {
            "official_contrastcorr_test_py": {"frames_per_second": OFFICIAL_CC_FPS, "peak_rss_bytes": 2.4e9},
            "official_crw_test_py": {"frames_per_second": 0.087, "peak_rss_bytes_after_20_frames": 12.4e9},
            "machine": "the issue's 2-core AVX-512 x86-64 machine",
        },
        "results": results,
        "targets": targets,
    });
    let path = out_path(out, "eval");
    write_json(&path, &report)?;
    for t in &targets {
        eprintln!(
            "bench eval: {}: {} ({})",
            t["name"].as_str().unwrap_or(""),
            t["value"],
            if t["met"] == true { "met" } else { "NOT met" }
        );
    }
    eprintln!("bench eval: wrote {}", path.display());
    if results.is_empty() {
        bail!("no configuration ran");
    }
    Ok(())
}
