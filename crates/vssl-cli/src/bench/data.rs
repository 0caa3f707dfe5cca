//! `vssl bench data`: decode + resize throughput of the data pipeline's frame sources.
//!
//! Configurations (each in its own process):
//! - `video_decode`: a 20 s 640x480 H.264 clip (ffmpeg `testsrc2`, libx264 defaults, yuv420p,
//!   25 fps: 500 frames), made once by the `ffmpeg` CLI into `target/bench/fixtures/`, decoded by
//!   [`VideoSource`] (FFmpeg frame threads, swscale bilinear to 256x256 RGB24) and converted to an
//!   f32 tensor `[3, 256, 256] / 255` per frame;
//! - `jpeg_folder`: the 854x480 JPEG folders blackswan, car-shadow and dog of DAVIS-2016 val
//!   (`../shared/data`, relative to the repository root) through [`FolderSource`] (parallel
//!   decode, bilinear resize to 256x256), then the same tensor conversion; skipped with a note
//!   when the data is absent;
//! - `pyav_opencv`: the committed script `pyav_decode.py` (PyAV threaded decode, `cv2.resize`
//!   `INTER_LINEAR`, float conversion) on the same clip, run by `python3` from `PATH`; skipped with
//!   a note unless `python3 -c 'import av, cv2'` works (`pip install av opencv-python-headless`).
//!
//! - `generator`: the synthetic generator (`medium` preset, 256², 48-frame clips, eval split),
//!   frames/s;
//! - `loader`: the training input path at batch 16 with 2 loader workers: a pool of 8 synthetic
//!   clips held in memory, per sample a frame pair as the reference draws it, 8-bit Lab, the
//!   warm-up augmentation (rotation, scale, 256² crops, flip), `(lab − 128)/128` tensors; batches/s.
//!
//! Target (from the issue): `video_decode` frames/s ≥ 1.0x `pyav_opencv` frames/s.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use vssl_data::augment::{WarmupPipeline, lab_frame_to_tensor, rgb_to_lab_frame};
use vssl_data::frame::Frame;
use vssl_data::loader::{Loader, MakeFn};
use vssl_data::sample::pair_indices;
use vssl_data::source::FrameSource;
use vssl_data::source::folder::FolderSource;
use vssl_data::source::video::VideoSource;
use vssl_data::synth::{Preset, Split, generate_clip};

use super::{
    last_json_line, median, out_path, peak_rss_bytes, provenance, run_child, time_runs, write_json,
};

/// Output side of every configuration.
const SIZE: u32 = 256;
/// Frames decoded per `frames()` call in `video_decode` (bounds the memory held at once).
const CHUNK: usize = 50;
/// DAVIS-2016 val sequences timed by `jpeg_folder`.
const DAVIS_SEQUENCES: &[&str] = &["blackswan", "car-shadow", "dog"];
/// The PyAV + OpenCV baseline script, embedded so that the binary can run from anywhere.
const PYAV_SCRIPT: &str = include_str!("pyav_decode.py");

const CONFIGS: &[(&str, &str)] = &[
    (
        "video_decode",
        "vssl VideoSource: 20 s 640x480 testsrc2 H.264 (500 frames) -> 256x256 RGB (swscale \
         bilinear) -> f32 [3,256,256]/255",
    ),
    (
        "jpeg_folder",
        "vssl FolderSource: DAVIS-2016 val blackswan, car-shadow, dog 854x480 JPEG -> 256x256 \
         (bilinear) -> f32 [3,256,256]/255",
    ),
    (
        "generator",
        "vssl synth::generate_clip, medium preset, 256x256, 48 frames, eval split: 4 clips",
    ),
    (
        "loader",
        "vssl Loader, 2 workers, batch 16: synthetic clip pool -> pair -> Lab -> warm-up \
         augmentation -> [3,256,256] tensors; 20 batches",
    ),
    (
        "pyav_opencv",
        "PyAV (thread_type AUTO) + cv2.resize INTER_LINEAR + float32 CHW /255 on the same clip",
    ),
];

/// The benchmark clip, made by the ffmpeg CLI when missing.
fn clip_path() -> PathBuf {
    PathBuf::from("target")
        .join("bench")
        .join("fixtures")
        .join("testsrc2_640x480_25fps_20s_h264.mp4")
}

fn ensure_clip() -> Result<PathBuf> {
    let path = clip_path();
    if path.is_file() {
        return Ok(path);
    }
    let dir = path.parent().context("clip path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("tmp.mp4");
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=640x480:rate=25:duration=20")
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&tmp)
        .status()
        .context("cannot run the ffmpeg CLI (needed to make the benchmark clip)")?;
    if !status.success() {
        bail!("ffmpeg failed to make {}", tmp.display());
    }
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(path)
}

/// `../shared/data` from the repository root (the current directory of `cargo xtask bench`),
/// or next to the crate when run from elsewhere.
fn shared_data() -> PathBuf {
    let cwd = PathBuf::from("../shared/data");
    if cwd.is_dir() {
        return cwd;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
}

fn davis_dirs() -> Vec<PathBuf> {
    let root = shared_data().join("davis2016-val/JPEGImages/480p");
    DAVIS_SEQUENCES.iter().map(|s| root.join(s)).collect()
}

/// An RGB8 frame as an f32 tensor `[3, h, w]` in [0, 1].
fn to_tensor(f: &Frame) -> Result<Tensor> {
    let (w, h) = f.dimensions();
    let plane = (w * h) as usize;
    let mut v = vec![0f32; 3 * plane];
    let (r, rest) = v.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in f.as_raw().chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = f32::from(px[0]) * (1.0 / 255.0);
        *g = f32::from(px[1]) * (1.0 / 255.0);
        *b = f32::from(px[2]) * (1.0 / 255.0);
    }
    Ok(Tensor::from_vec(
        v,
        (3, h as usize, w as usize),
        &Device::Cpu,
    )?)
}

/// Converts a chunk of frames in parallel and drops the tensors.
fn convert(frames: &[Frame]) -> Result<()> {
    let tensors: Vec<Tensor> = frames.par_iter().map(to_tensor).collect::<Result<_>>()?;
    std::hint::black_box(tensors);
    Ok(())
}

fn decode_video(path: &Path) -> Result<usize> {
    let mut src = VideoSource::open(path)?;
    let n = src.len();
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(CHUNK) {
        let frames = src.frames(chunk, Some((SIZE, SIZE)))?;
        convert(&frames)?;
    }
    Ok(n)
}

fn decode_folders(dirs: &[PathBuf]) -> Result<usize> {
    let mut n = 0;
    for dir in dirs {
        let mut src = FolderSource::open(dir)?;
        let all: Vec<usize> = (0..src.len()).collect();
        let frames = src.frames(&all, Some((SIZE, SIZE)))?;
        convert(&frames)?;
        n += all.len();
    }
    Ok(n)
}

fn timing(runs: &[f64], frames: usize) -> Value {
    let m = median(runs);
    json!({
        "frames": frames,
        "seconds_median": m,
        "seconds_min": runs.iter().copied().fold(f64::INFINITY, f64::min),
        "seconds_runs": runs,
        "frames_per_second": frames as f64 / m,
        "peak_rss_bytes": peak_rss_bytes(),
    })
}

/// Runs one configuration in this process and returns its measurements.
fn child(config: &str, repeats: usize) -> Result<Value> {
    let mut r = match config {
        "video_decode" => {
            let clip = clip_path();
            let frames = decode_video(&clip)?;
            let runs = time_runs(repeats, || {
                decode_video(&clip)?;
                Ok(())
            })?;
            let mut t = timing(&runs, frames);
            t["input"] = json!(clip.display().to_string());
            t
        }
        "jpeg_folder" => {
            let dirs = davis_dirs();
            if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
                return Ok(json!({
                    "name": config,
                    "skipped": format!("{} is absent (DAVIS-2016 val is not in ../shared/data)", missing.display()),
                }));
            }
            let frames = decode_folders(&dirs)?;
            let runs = time_runs(repeats, || {
                decode_folders(&dirs)?;
                Ok(())
            })?;
            let mut t = timing(&runs, frames);
            t["input"] = json!(
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
            );
            t
        }
        "generator" => {
            let cfg = Preset::Medium.config();
            let clips = 4u64;
            let generate = || -> Result<usize> {
                let mut n = 0;
                for i in 0..clips {
                    n += generate_clip(&cfg, Split::Eval, 7, i)?.frames.len();
                }
                Ok(n)
            };
            let frames = generate()?;
            let runs = time_runs(repeats, || {
                generate()?;
                Ok(())
            })?;
            timing(&runs, frames)
        }
        "loader" => {
            let batches = 20usize;
            let batch = 16usize;
            let loader = training_loader(batch)?;
            let run_epoch = |epoch: u64| -> Result<()> {
                for b in loader.epoch(epoch).take(batches) {
                    std::hint::black_box(b?);
                }
                Ok(())
            };
            let mut epoch = 0u64;
            let runs = time_runs(repeats, || {
                epoch += 1;
                run_epoch(epoch)
            })?;
            let mut t = timing(&runs, batches * batch * 2);
            let m = median(&runs);
            t["batches"] = json!(batches);
            t["batch_size"] = json!(batch);
            t["workers"] = json!(2);
            t["batches_per_second"] = json!(batches as f64 / m);
            t
        }
        "pyav_opencv" => return pyav(repeats),
        other => bail!("unknown data benchmark {other:?}"),
    };
    r["name"] = json!(config);
    Ok(r)
}

/// The warm-up training input path over a pool of synthetic clips, 2 workers.
fn training_loader(batch: usize) -> Result<Loader<(Tensor, Tensor)>> {
    let cfg = Preset::Medium.config();
    let pool: Vec<Vec<Frame>> = (0..8u64)
        .into_par_iter()
        .map(|i| Ok(generate_clip(&cfg, Split::Train, 11, i)?.frames))
        .collect::<vssl_data::Result<_>>()?;
    let pool = Arc::new(pool);
    let pipeline = WarmupPipeline::default();
    let make: MakeFn<(Tensor, Tensor)> = Arc::new(move |_epoch, index, rng| {
        let clip = &pool[index % pool.len()];
        let (i0, i1) = pair_indices(clip.len(), rng)?;
        let (r, t) = (rgb_to_lab_frame(&clip[i0])?, rgb_to_lab_frame(&clip[i1])?);
        let (r, t) = pipeline.apply(&r, &t, rng)?;
        Ok((lab_frame_to_tensor(&r)?, lab_frame_to_tensor(&t)?))
    });
    Ok(Loader::new(10_000, batch, 2, 4, 3, make)?)
}

/// The PyAV + OpenCV baseline, when `python3` can import `av` and `cv2`.
fn pyav(repeats: usize) -> Result<Value> {
    let probe = Command::new("python3")
        .args(["-c", "import av, cv2"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Ok(json!({
                "name": "pyav_opencv",
                "skipped": format!("python3 cannot import av and cv2: {}", String::from_utf8_lossy(&o.stderr).trim()),
            }));
        }
        Err(e) => {
            return Ok(
                json!({"name": "pyav_opencv", "skipped": format!("no python3 on PATH: {e}")}),
            );
        }
    }
    let clip = clip_path();
    let out = Command::new("python3")
        .args(["-c", PYAV_SCRIPT])
        .arg(&clip)
        .arg(repeats.to_string())
        .arg(SIZE.to_string())
        .output()
        .context("cannot run python3")?;
    if !out.status.success() {
        bail!(
            "pyav_decode.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut r = last_json_line(&out.stdout, "pyav_decode.py")?;
    let frames = r["frames"].as_f64().unwrap_or(f64::NAN);
    let secs = r["seconds_median"].as_f64().unwrap_or(f64::NAN);
    r["frames_per_second"] = json!(frames / secs);
    r["name"] = json!("pyav_opencv");
    r["input"] = json!(clip.display().to_string());
    Ok(r)
}

/// `vssl bench data`.
pub fn run(child_config: Option<String>, out: Option<PathBuf>, repeats: usize) -> Result<()> {
    if let Some(config) = child_config {
        println!("{}", child(&config, repeats)?);
        return Ok(());
    }
    ensure_clip()?;
    let extra = vec!["--repeats".to_string(), repeats.to_string()];
    let mut results = Vec::new();
    for (name, description) in CONFIGS {
        eprintln!("bench data: {name} ...");
        let mut r = run_child("data", name, &extra)?;
        r["description"] = json!(description);
        match r["skipped"].as_str() {
            Some(why) => eprintln!("  skipped: {why}"),
            None => eprintln!(
                "  {:.0} frames/s (median {:.3} s for {} frames), peak RSS {:.1} MiB",
                r["frames_per_second"].as_f64().unwrap_or(f64::NAN),
                r["seconds_median"].as_f64().unwrap_or(f64::NAN),
                r["frames"],
                r["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / 1048576.0
            ),
        }
        results.push(r);
    }
    let fps = |name: &str| {
        results
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["frames_per_second"].as_f64())
    };
    let batches_per_second = results
        .iter()
        .find(|r| r["name"] == "loader")
        .and_then(|r| r["batches_per_second"].as_f64());
    if let Some(bps) = batches_per_second {
        eprintln!("  loader: {bps:.1} batches/s of 16 pairs");
    }
    let targets = match (fps("video_decode"), fps("pyav_opencv")) {
        (Some(ours), Some(theirs)) => {
            let ratio = ours / theirs;
            json!([{
                "name": "video decode + resize frames/s, vssl / PyAV + OpenCV",
                "value": ratio,
                "target": ">= 1.0",
                "met": ratio >= 1.0,
            }])
        }
        _ => json!([{
            "name": "video decode + resize frames/s, vssl / PyAV + OpenCV",
            "value": null,
            "target": ">= 1.0",
            "met": null,
            "note": "not measured: the PyAV + OpenCV baseline was skipped",
        }]),
    };
    let report = json!({
        "benchmark": "data",
        "provenance": provenance(),
        "repeats": repeats,
        "results": results,
        "targets": targets,
    });
    let path = out_path(out, "data");
    write_json(&path, &report)?;
    eprintln!(
        "bench data: ratio vs PyAV + OpenCV {}; wrote {}",
        report["targets"][0]["value"],
        path.display()
    );
    Ok(())
}
