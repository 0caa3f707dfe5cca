//! Training runs: configurations, non-finite losses, step limits.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use vssl_data::synth::Preset;
use vssl_model::{Depth, ResNetConfig};
use vssl_train::checkpoint;
use vssl_train::config::{ColourKind, DataSource, SyntheticData, TrainConfig};
use vssl_train::run::{Outcome, Trainer, read_metrics};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vssl-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One warm-up epoch of 3 steps on 6 synthetic 64² clips.
fn tiny() -> TrainConfig {
    let mut c = TrainConfig {
        name: "tiny".into(),
        model: ResNetConfig::contrastcorr(Depth::R18).with_width(0.125),
        ..TrainConfig::default()
    };
    c.colour.space = ColourKind::Lab;
    c.data.source = DataSource::Synthetic;
    c.data.synthetic = SyntheticData {
        clips: 6,
        preset: Preset::Easy,
        size: 64,
        frames: 4,
        seed: 1,
    };
    c.data.batch_size = 2;
    c.data.workers = 1;
    c.data.warmup_crop = 64;
    c.schedule.warmup_epochs = 1;
    c.schedule.main_epochs = 0;
    c.step.method = vssl_train::Method::Colorization;
    c.checkpoint.every_steps = 100;
    c
}

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn every_committed_config_parses_and_round_trips() -> Result<()> {
    let mut n = 0;
    for e in std::fs::read_dir(configs_dir())? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p)?;
        let cfg = TrainConfig::from_toml(&text, &p.display().to_string(), &[])?;
        let stem = p.file_stem().and_then(|s| s.to_str()).ok_or("name")?;
        assert_eq!(cfg.name, stem, "{}: name = the file's name", p.display());
        let back = TrainConfig::from_toml(&cfg.to_toml()?, "round trip", &[])?;
        assert_eq!(back, cfg, "{}", p.display());
        n += 1;
    }
    assert!(n >= 6, "configs/ holds {n} files");
    // The paper's file states the defaults.
    let paper = std::fs::read_to_string(configs_dir().join("contrastcorr-paper.toml"))?;
    let cfg = TrainConfig::from_toml(&paper, "paper", &[])?;
    let want = TrainConfig {
        eval: cfg.eval.clone(),
        ..TrainConfig::default()
    };
    assert_eq!(cfg, want, "contrastcorr-paper.toml is the defaults");
    Ok(())
}

#[test]
fn overrides_apply_and_unknown_keys_are_named() -> Result<()> {
    let sets = [
        "schedule.lr=3e-4".to_string(),
        "data.batch_size=4".to_string(),
        "colour.space=lab".to_string(),
        "schedule.thr=1.5".to_string(),
    ];
    let cfg = TrainConfig::from_toml("", "test", &sets)?;
    assert_eq!(cfg.schedule.lr, 3e-4);
    assert_eq!(cfg.data.batch_size, 4);
    assert_eq!(cfg.colour.space, ColourKind::Lab);
    assert_eq!(cfg.schedule.thr, Some(1.5));
    // `none` removes a key, so its default applies again.
    let limited = "[schedule]\nmax_steps = 5\n";
    let cfg = TrainConfig::from_toml(limited, "test", &[])?;
    assert_eq!(cfg.schedule.max_steps, Some(5));
    let cfg = TrainConfig::from_toml(limited, "test", &["schedule.max_steps=none".into()])?;
    assert_eq!(cfg.schedule.max_steps, None);
    let bad = |text: &str, sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        match TrainConfig::from_toml(text, "my.toml", &sets) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let e = bad("", &["model.widht=0.5"]);
    assert!(e.contains("widht") && e.contains("my.toml"), "{e}");
    let e = bad("[schedule]\nlr_stp_epochs = 3\n", &[]);
    assert!(e.contains("lr_stp_epochs"), "{e}");
    let e = bad("", &["data.batch_size=many"]);
    assert!(e.contains("batch_size"), "{e}");
    let e = bad("", &["data.warmup_crop=100"]);
    assert!(
        e.contains("data.warmup_crop") && e.contains("stride 8"),
        "{e}"
    );
    let e = bad("", &["step.method=colorization"]);
    assert!(e.contains("main_epochs"), "{e}");
    // `none` on a key that does not exist is an error too, not a silent no-op.
    let e = bad("", &["schedule.max_stpes=none"]);
    assert!(e.contains("schedule.max_stpes"), "{e}");
    let e = bad("", &["schedul.max_steps=none"]);
    assert!(e.contains("schedul"), "{e}");
    let e = bad("", &[" seed . x = none"]);
    assert!(
        e.contains("--set seed.x=none") && e.contains("seed is a value"),
        "{e}"
    );
    let e = bad("seed = 3\n", &["seed.x=none"]);
    assert!(e.contains("seed is a value"), "{e}");
    let cfg = TrainConfig::from_toml("", "test", &["data.synthetic=none".into()])?;
    assert_eq!(cfg.data.synthetic, TrainConfig::default().data.synthetic);
    // ... while `none` on a known key that the file does not set is fine.
    let cfg = TrainConfig::from_toml("", "test", &["schedule.thr=none".into()])?;
    assert_eq!(cfg.schedule.thr, TrainConfig::default().schedule.thr);
    let e = bad("", &["nokey"]);
    assert!(e.contains("key=value"), "{e}");
    let e = bad("x = [", &[]);
    assert!(e.contains("my.toml") && e.contains("TOML"), "{e}");
    Ok(())
}

#[test]
fn a_non_finite_loss_names_the_term_and_step_and_keeps_the_last_checkpoint() -> Result<()> {
    let dir = scratch("nan");
    let mut cfg = tiny();
    cfg.schedule.max_steps = Some(2);
    let mut t = Trainer::new(cfg.clone(), &dir, Device::Cpu, false)?;
    assert_eq!(t.run(&mut ())?, Outcome::StepLimit);
    drop(t);
    assert_eq!(checkpoint::list(&dir)?.len(), 1);
    let before = std::fs::read(dir.join("checkpoint-2.safetensors"))?;

    // Resume, then poison the first convolution: the next step's loss is NaN.
    cfg.schedule.max_steps = None;
    let mut t = Trainer::new(cfg, &dir, Device::Cpu, true)?;
    let w = t
        .varmap()
        .data()
        .lock()
        .map_err(|_| "lock")?
        .get("conv1.weight")
        .cloned()
        .ok_or("no conv1.weight")?;
    w.set(&(Tensor::ones(w.shape(), w.dtype(), &Device::Cpu)? * f64::NAN)?)?;
    let poisoned = w.as_tensor().flatten_all()?.to_vec1::<f32>()?;
    assert!(poisoned.iter().all(|v| v.is_nan()), "the weight is NaN");
    let outcome = t.run(&mut ());
    let err = match outcome {
        Ok(o) => panic!(
            "{o:?} at step {}; metrics {:?}",
            t.state().step,
            read_metrics(&dir)?
                .iter()
                .map(|r| r.loss)
                .collect::<Vec<_>>()
        ),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("\"intra\"") && err.contains("step 3"),
        "names the term and the step: {err}"
    );
    drop(t);
    // Nothing was written for the bad step: the last good checkpoint is intact and current.
    assert_eq!(std::fs::read(dir.join("checkpoint-2.safetensors"))?, before);
    assert_eq!(
        std::fs::read_to_string(dir.join("latest"))?.trim(),
        "checkpoint-2.safetensors"
    );
    assert_eq!(read_metrics(&dir)?.len(), 2);
    let c = checkpoint::load_latest(&dir, &Device::Cpu)?.ok_or("no checkpoint")?;
    assert_eq!(c.state.step, 2);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn bad_data_and_bad_checkpoints_are_clear_errors() -> Result<()> {
    // A videos run without a path.
    let mut cfg = tiny();
    cfg.data.source = DataSource::Videos;
    let e = Trainer::new(cfg, &scratch("nodata"), Device::Cpu, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.path"), "{e}");
    // A folder without a single video names the folder.
    let empty = scratch("novideos");
    std::fs::create_dir_all(&empty)?;
    let mut cfg = tiny();
    cfg.data.source = DataSource::Videos;
    cfg.data.path = Some(empty.clone());
    let e = Trainer::new(cfg, &scratch("novideos-run"), Device::Cpu, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&empty.display().to_string()), "{e}");
    // Resuming with another model width names the checkpoint.
    let dir = scratch("width");
    let mut cfg = tiny();
    cfg.schedule.max_steps = Some(1);
    Trainer::new(cfg.clone(), &dir, Device::Cpu, false)?.run(&mut ())?;
    cfg.model.width = 0.25;
    let e = Trainer::new(cfg, &dir, Device::Cpu, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("checkpoint-1.safetensors"), "{e}");
    // Too few clips for one batch.
    let mut cfg = tiny();
    cfg.data.synthetic.clips = 1;
    let mut t = Trainer::new(cfg, &scratch("fewclips"), Device::Cpu, false)?;
    let e = t.run(&mut ()).unwrap_err().to_string();
    assert!(e.contains("batch"), "{e}");
    for d in ["width", "novideos", "nodata", "novideos-run", "fewclips"] {
        let _ = std::fs::remove_dir_all(scratch(d));
    }
    Ok(())
}

/// The encoder's tensors of a finished run's last checkpoint, split into (weights, BatchNorm
/// running statistics), each sorted by name.
type Named = Vec<(String, Vec<f32>)>;
fn final_encoder(dir: &std::path::Path) -> Result<(Named, Named)> {
    let c = checkpoint::load_latest(dir, &Device::Cpu)?.ok_or("no checkpoint")?;
    assert!(c.state.finished, "the run finished");
    let mut all: Named = c
        .tensors
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("encoder.").map(|n| (n.to_string(), v)))
        .map(|(n, v)| Ok((n, v.flatten_all()?.to_vec1::<f32>()?)))
        .collect::<Result<_>>()?;
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let (stats, weights): (Named, Named) = all
        .into_iter()
        .partition(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"));
    assert!(!stats.is_empty() && !weights.is_empty());
    Ok((weights, stats))
}

#[test]
fn precise_bn_replaces_only_the_running_statistics_deterministically() -> Result<()> {
    let plain = scratch("bn-plain");
    let mut t = Trainer::new(tiny(), &plain, Device::Cpu, false)?;
    assert_eq!(t.run(&mut ())?, Outcome::Finished);
    drop(t);
    let mut cfg = tiny();
    cfg.schedule.precise_bn_batches = 2;
    let mut runs = Vec::new();
    for name in ["bn-precise-a", "bn-precise-b"] {
        let dir = scratch(name);
        let mut t = Trainer::new(cfg.clone(), &dir, Device::Cpu, false)?;
        assert_eq!(t.run(&mut ())?, Outcome::Finished);
        drop(t);
        runs.push(final_encoder(&dir)?);
        std::fs::remove_dir_all(&dir)?;
    }
    let (w_plain, s_plain) = final_encoder(&plain)?;
    let (w_precise, s_precise) = &runs[0];
    // The same training (bit for bit); then only the statistics were recomputed.
    assert_eq!(&w_plain, w_precise);
    assert_eq!(s_plain.len(), s_precise.len());
    let changed = s_plain
        .iter()
        .zip(s_precise)
        .filter(|((_, a), (_, b))| a != b)
        .count();
    assert_eq!(
        changed,
        s_plain.len(),
        "every running statistic is recomputed"
    );
    for (name, v) in s_precise {
        assert!(v.iter().all(|x| x.is_finite()), "{name} finite");
        if name.ends_with("running_var") {
            assert!(v.iter().all(|&x| x >= 0.0), "{name} non-negative");
        }
    }
    // The batches depend only on the seed: a second run gives the same statistics bit for bit.
    assert_eq!(runs[0], runs[1]);
    std::fs::remove_dir_all(&plain)?;
    Ok(())
}
