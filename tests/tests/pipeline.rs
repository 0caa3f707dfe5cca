//! The whole pipeline on a tiny synthetic set: train a few steps → checkpoint → stop → resume
//! (bit for bit equal to an uninterrupted run) → propagate labels with the trained encoder →
//! score, with exact values where they are known.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;
use vssl_data::dataset::{Davis, read_mask, write_palette_mask};
use vssl_data::frame::{Frame, LabelMap};
use vssl_data::synth::{self, Preset, Split};
use vssl_eval::encoder::Encoder;
use vssl_eval::metrics::davis::{BOUND_TH, evaluate_dataset};
use vssl_eval::protocol::{Protocol, SizeRule};
use vssl_eval::vos::{Method, propagate_sequence};
use vssl_model::{Depth, ResNetConfig};
use vssl_train::checkpoint;
use vssl_train::config::{ColourKind, DataSource, SyntheticData, TrainConfig};
use vssl_train::run::{Observer, Outcome, StepRecord, Trainer, read_metrics};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vssl-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Two epochs (one warm-up, one main) of 4 steps on 8 synthetic 64² clips, batch 2, two loader
/// workers, channel dropout on, a checkpoint every 3 steps.
fn tiny_config() -> TrainConfig {
    let mut c = TrainConfig {
        name: "e2e".into(),
        seed: 11,
        model: ResNetConfig::contrastcorr(Depth::R18).with_width(0.125),
        ..TrainConfig::default()
    };
    c.colour.space = ColourKind::Lab;
    c.data.source = DataSource::Synthetic;
    c.data.synthetic = SyntheticData {
        clips: 8,
        preset: Preset::Medium,
        size: 64,
        frames: 6,
        seed: 3,
    };
    c.data.batch_size = 2;
    c.data.workers = 2;
    c.data.channel_dropout = true;
    c.data.warmup_crop = 64;
    c.data.main_full_size = 64;
    c.data.main_crop = 32;
    c.step.concentration_window = 4;
    c.step.concentration_stride = 4;
    c.schedule.warmup_epochs = 1;
    c.schedule.main_epochs = 1;
    c.schedule.lr = 1e-3;
    c.schedule.concentration_from_epoch = 0;
    c.checkpoint.every_steps = 3;
    c.checkpoint.keep_last = 2;
    c
}

/// Sets the stop flag (as Ctrl-C does) once step `at` is done.
struct StopAt {
    at: u64,
    flag: Arc<AtomicBool>,
}

impl Observer for StopAt {
    fn step(&mut self, r: &StepRecord) {
        if r.step == self.at {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

/// One step's losses as bits: (step, total, (term, value) pairs, dropped channels).
type StepBits = (u64, u64, Vec<(String, u64)>, Vec<usize>);

/// What must match bit for bit between two runs: every loss value of every step.
fn losses(records: &[StepRecord]) -> Vec<StepBits> {
    records
        .iter()
        .map(|r| {
            (
                r.step,
                r.loss.to_bits(),
                r.terms
                    .iter()
                    .map(|t| (t.name.clone(), t.value.to_bits()))
                    .collect(),
                r.dropped_channels.clone(),
            )
        })
        .collect()
}

fn write_frames(root: &Path, name: &str, frames: &[Frame], masks: &[LabelMap]) -> Result<()> {
    let jpg = root.join("JPEGImages/480p").join(name);
    std::fs::create_dir_all(&jpg)?;
    for (t, f) in frames.iter().enumerate() {
        f.save(jpg.join(format!("{t:05}.jpg")))?;
    }
    for (t, m) in masks.iter().enumerate() {
        write_palette_mask(
            root.join("Annotations/480p")
                .join(name)
                .join(format!("{t:05}.png")),
            m,
        )?;
    }
    Ok(())
}

#[test]
fn train_stop_resume_propagate_score() -> Result<()> {
    let device = Device::Cpu;
    let cfg = tiny_config();

    // An uninterrupted run.
    let straight = scratch("straight");
    let mut t = Trainer::new(cfg.clone(), &straight, device.clone(), false)?;
    assert_eq!(t.schedule_steps(), 8);
    assert_eq!(t.run(&mut ())?, Outcome::Finished);
    drop(t);
    let want = read_metrics(&straight)?;
    assert_eq!(want.len(), 8);
    assert!(want[..4].iter().all(|r| r.terms.len() >= 2));
    assert!(
        want[4..]
            .iter()
            .all(|r| r.terms.iter().any(|t| t.name == "sparsity")),
        "the main phase has the inter-video terms"
    );
    assert!(
        want.iter().any(|r| !r.dropped_channels.is_empty()),
        "channel dropout happened"
    );

    // The same run stopped mid-way through the main epoch (as Ctrl-C does), then resumed.
    let resumed = scratch("resumed");
    let mut t = Trainer::new(cfg.clone(), &resumed, device.clone(), false)?;
    let mut stop = StopAt {
        at: 6,
        flag: t.stop_flag(),
    };
    assert_eq!(t.run(&mut stop)?, Outcome::Interrupted);
    assert_eq!((t.state().epoch, t.state().batch), (1, 2), "mid-epoch");
    drop(t);
    let steps: Vec<u64> = checkpoint::list(&resumed)?.iter().map(|c| c.0).collect();
    assert_eq!(steps, [3, 6], "every 3 steps, the last 2 kept");
    assert_eq!(
        std::fs::read_to_string(resumed.join("latest"))?.trim(),
        "checkpoint-6.safetensors"
    );
    // A fresh start in a folder with checkpoints is refused; resuming continues.
    let again = Trainer::new(cfg.clone(), &resumed, device.clone(), false).unwrap_err();
    assert!(again.to_string().contains("--resume"), "{again}");
    let mut t = Trainer::new(cfg.clone(), &resumed, device.clone(), true)?;
    assert_eq!(t.state().step, 6);
    assert_eq!(t.run(&mut ())?, Outcome::Finished);
    drop(t);
    let got = read_metrics(&resumed)?;
    assert_eq!(
        losses(&got),
        losses(&want),
        "resumed losses equal bit for bit"
    );
    let a = checkpoint::load_latest(&straight, &device)?.ok_or("no checkpoint")?;
    let b = checkpoint::load_latest(&resumed, &device)?.ok_or("no checkpoint")?;
    assert_eq!(a.state.step, 8);
    assert!(b.state.finished);
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (k, v) in &a.tensors {
        let w = &b.tensors[k];
        let (x, y) = (
            v.flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?,
            w.flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?,
        );
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{k} differs after resuming"
        );
    }
    assert!(
        a.tensors.keys().any(|k| k.starts_with("adam.m.")),
        "optimizer moments are checkpointed"
    );

    // Propagate with the trained encoder and score.
    let root = scratch("davis");
    let mut sc = Preset::Easy.config();
    (sc.width, sc.height, sc.frames) = (64, 64, 5);
    synth::write_dataset(&sc, Split::Eval, 5, 1, &root)?;
    let clip = synth::generate_clip(&sc, Split::Eval, 5, 0)?;
    // A static clip (every frame the first) and an all-background clip.
    let n = 5;
    let still = vec![clip.frames[0].clone(); n];
    write_frames(&root, "static", &still, &vec![clip.masks[0].clone(); n])?;
    write_frames(
        &root,
        "empty",
        &clip.frames,
        &vec![LabelMap::new(64, 64); n],
    )?;
    let mut protocol = Protocol::preset("crw")?;
    protocol.size = SizeRule::Native;
    let model = Method::Propagate(Encoder::from_checkpoint(
        &resumed,
        &protocol.strides,
        &device,
    )?);
    let names = vec![
        "static".to_string(),
        "empty".to_string(),
        "synth-eval-00000".to_string(),
    ];
    let davis = Davis::open(&root, 2017, "480p", Some(&names))?;
    let (model_out, copy_out) = (root.join("pred-model"), root.join("pred-copy"));
    for seq in &davis.sequences {
        let r = propagate_sequence(seq, &model, &protocol, &device, &model_out, None)?;
        assert_eq!(r.frames, n);
        propagate_sequence(seq, &Method::CopyFirst, &protocol, &device, &copy_out, None)?;
        for t in 0..n {
            let p = model_out.join(&seq.name).join(format!("{t:05}.png"));
            let m = read_mask(&p)?;
            assert_eq!(m.dimensions(), (64, 64), "{}", p.display());
            if seq.name == "empty" {
                assert!(
                    m.as_raw().iter().all(|&v| v == 0),
                    "an all-background first frame propagates to all-background masks"
                );
            }
        }
    }
    let copy = evaluate_dataset(&davis, &copy_out, BOUND_TH)?;
    let model_scores = evaluate_dataset(&davis, &model_out, BOUND_TH)?;
    let per_seq = |name: &str| {
        copy.sequences
            .iter()
            .find(|s| s.name == name)
            .ok_or("missing sequence")
    };
    // Copy-first on a static clip is exact: J = F = 1 on every scored frame.
    let s = per_seq("static")?;
    assert!(!s.objects.is_empty());
    for o in &s.objects {
        assert!(o.j.iter().chain(&o.f).all(|&v| v == 1.0), "{o:?}");
    }
    // The all-background clip has no object (the first annotation holds none): it adds nothing
    // to the object-weighted means, as in the official evaluator.
    assert!(per_seq("empty")?.objects.is_empty());
    let objects: usize = copy.sequences.iter().map(|s| s.objects.len()).sum();
    assert_eq!(copy.summary.objects, objects);
    assert_eq!(model_scores.summary.objects, objects);
    let m = &model_scores.summary;
    assert!((0.0..=1.0).contains(&m.j_mean) && (0.0..=1.0).contains(&m.f_mean));
    assert_eq!(m.jf_mean, (m.j_mean + m.f_mean) / 2.0);

    for d in [straight, resumed, root] {
        let _ = std::fs::remove_dir_all(d);
    }
    Ok(())
}
