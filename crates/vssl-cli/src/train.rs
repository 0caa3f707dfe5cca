//! `vssl train`: a training run, then the loss curve and a J&F report against the baselines.
//!
//! With no argument it runs the embedded default, `configs/contrastcorr-cpu-tiny.toml`:
//! synthetic clips generated on the fly, a narrow ResNet-18, sized for a few minutes on two CPU
//! cores. At the end (unless `--no-eval` or `eval.enabled = false`) the run's encoder propagates
//! labels on the synthetic `eval` split (fixed clips, disjoint textures and shapes) next to the
//! copy-first, raw-Lab and random-init baselines, and on three DAVIS-2016 sequences when a DAVIS
//! root is given or found; `RUN/report.json` holds the numbers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use vssl_core::device::parse_device;
use vssl_data::dataset::Davis;
use vssl_data::synth::{self, Split};
use vssl_eval::encoder::Encoder;
use vssl_eval::protocol::{ColourInput, Protocol};
use vssl_eval::vos::{self, Method};
use vssl_train::config::{DataSource, EvalConfig, TrainConfig};
use vssl_train::progress::{Progress, human_duration};
use vssl_train::run::{Outcome, Trainer, load_config, read_metrics};

use crate::bench::write_json;
use crate::eval_propagate::{comparison_table, run_method, size_rule};

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../../configs/contrastcorr-cpu-tiny.toml");
/// Where the DAVIS-2016 evaluation data is looked for when `--davis` is not given.
const SHARED_DAVIS: &str = "../shared/data/davis2016-val";
/// The J&F margin over the raw-Lab and random-init baselines the default run must reach on the
/// synthetic split.
pub const MARGIN_TARGET: f64 = 0.03;

/// Arguments of `vssl train`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Configuration file (TOML; keys not given keep the paper's defaults). Default: the embedded
    /// `configs/contrastcorr-cpu-tiny.toml`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a configuration key, e.g. `--set schedule.lr=1e-3 --set data.batch_size=8`
    /// (repeatable; applied in order after the file).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Training videos: a folder (searched recursively for video files and frame folders) or a
    /// list file; sets `data.source = "videos"`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run folder (default `runs/<config name>-<UTC time>`).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Continue the run in `--run` from its newest checkpoint, with its saved configuration.
    #[arg(long)]
    pub resume: bool,
    /// Device: cpu, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// DAVIS-2016 root for the final evaluation (default: ../shared/data/davis2016-val when it
    /// exists).
    #[arg(long)]
    pub davis: Option<PathBuf>,
    /// Skip the evaluation at the end.
    #[arg(long)]
    pub no_eval: bool,
}

/// Runs `vssl train`.
pub fn run(a: TrainArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let mut overrides = a.set.clone();
    if let Some(d) = &a.data {
        overrides.push("data.source=\"videos\"".into());
        overrides.push(format!(
            "data.path={}",
            toml_string(&d.display().to_string())
        ));
    }
    let (cfg, dir) = if a.resume {
        let Some(dir) = a.run.clone() else {
            bail!("--resume continues an existing run: name its folder with --run DIR");
        };
        if a.config.is_some() {
            eprintln!(
                "note: --resume uses the run's saved configuration ({}); --config is ignored",
                dir.join("config.toml").display()
            );
        }
        (load_config(&dir, &overrides)?, dir)
    } else {
        let (text, source) = match &a.config {
            Some(p) => (
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the configuration {}", p.display()))?,
                p.display().to_string(),
            ),
            None => (
                DEFAULT_CONFIG.to_string(),
                "configs/contrastcorr-cpu-tiny.toml (embedded)".to_string(),
            ),
        };
        let cfg = TrainConfig::from_toml(&text, &source, &overrides)?;
        let dir = a.run.clone().unwrap_or_else(|| {
            PathBuf::from("runs").join(format!("{}-{}", cfg.name, compact_utc()))
        });
        (cfg, dir)
    };
    if cfg.data.source == DataSource::Videos && cfg.data.path.is_none() {
        bail!(
            "configuration {:?} trains on videos: give them with --data PATH (a folder or a list file)",
            cfg.name
        );
    }
    let mut trainer = Trainer::new(cfg.clone(), &dir, device.clone(), a.resume)
        .with_context(|| format!("preparing the run folder {}", dir.display()))?;
    eprintln!(
        "run {} · {} · {:?} {} width {} · {} epochs ({} warm-up) · {} steps · {}",
        dir.display(),
        cfg.name,
        cfg.model.depth,
        format!("{:?}", cfg.step.method).to_lowercase(),
        cfg.model.width,
        cfg.epochs(),
        cfg.schedule.warmup_epochs,
        trainer.schedule_steps(),
        a.device
    );
    install_ctrlc(trainer.stop_flag());
    let mut progress = Progress::new(cfg.log.every_steps);
    let outcome = trainer.run(&mut progress);
    progress.finish();
    let outcome = outcome.with_context(|| format!("training run {}", dir.display()))?;
    let state = trainer.state().clone();
    let skipped = trainer.skips().total();
    let skipped_list: Vec<Value> = trainer
        .skips()
        .snapshot()
        .into_iter()
        .map(|(path, reason, count)| json!({"path": path.display().to_string(), "reason": reason, "count": count}))
        .collect();
    drop(trainer);
    eprintln!(
        "{} at step {} after {} of training{}",
        match outcome {
            Outcome::Finished => "finished",
            Outcome::StepLimit => "stopped at schedule.max_steps",
            Outcome::Interrupted => "interrupted (Ctrl-C); resume with --resume --run DIR",
        },
        state.step,
        human_duration(state.train_seconds),
        if skipped > 0 {
            format!(
                " ({skipped} bad inputs skipped, each named in a warning above and in report.json)"
            )
        } else {
            String::new()
        }
    );
    let curve = write_loss_curve(&dir)?;
    eprintln!("loss curve: {}", curve.display());
    if outcome == Outcome::Interrupted {
        return Ok(());
    }
    let mut report = json!({
        "run": dir.display().to_string(),
        "config": cfg.name,
        "outcome": format!("{outcome:?}").to_lowercase(),
        "steps": state.step,
        "train_seconds": state.train_seconds,
        "final_loss": state.last_loss,
        "skipped_inputs": skipped,
        "skipped": skipped_list,
        "loss_curve": curve.display().to_string(),
    });
    if cfg.eval.enabled && !a.no_eval {
        let davis = a.davis.clone().or_else(|| {
            Path::new(SHARED_DAVIS)
                .is_dir()
                .then(|| PathBuf::from(SHARED_DAVIS))
        });
        let eval = evaluate(&dir, &cfg, davis.as_deref(), &device)?;
        report["evaluation"] = eval;
    }
    let path = dir.join("report.json");
    write_json(&path, &report)?;
    println!("report: {}", path.display());
    Ok(())
}

/// A string as a TOML value.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `20261201-193012` (UTC).
fn compact_utc() -> String {
    crate::bench::utc_now()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect::<String>()
        .replace('T', "-")
}

/// First Ctrl-C: stop after the current step with a checkpoint. Second: exit at once.
fn install_ctrlc(flag: Arc<AtomicBool>) {
    let result = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a new checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: stopping after this step with a checkpoint (Ctrl-C again to abort)");
    });
    if let Err(e) = result {
        eprintln!(
            "warning: cannot catch Ctrl-C ({e}); an interrupt will stop without a checkpoint"
        );
    }
}

/// Draws `RUN/loss.png` from `RUN/metrics.jsonl`.
fn write_loss_curve(dir: &Path) -> Result<PathBuf> {
    let records = read_metrics(dir)?;
    let path = dir.join("loss.png");
    vssl_train::plot::write_loss_curve(&records, &path)
        .with_context(|| format!("drawing {}", path.display()))?;
    Ok(path)
}

/// One evaluation set's methods, scored.
fn evaluate_set(
    name: &str,
    davis: &Davis,
    protocol: &Protocol,
    methods: Vec<(String, Method)>,
    out: &Path,
    device: &candle_core::Device,
) -> Result<Value> {
    let mut runs = Vec::new();
    for (m, method) in methods {
        let dir = out.join(&m);
        let overlays = (m == "model").then(|| out.join("overlays"));
        runs.push(run_method(
            davis,
            &m,
            &method,
            protocol,
            device,
            &dir,
            overlays.as_deref(),
        )?);
    }
    let jf = |n: &str| {
        runs.iter()
            .find(|r| r.name == n)
            .map(|r| r.results.summary.jf_mean)
    };
    let model = jf("model").unwrap_or(f64::NAN);
    let margin = |b: &str| jf(b).map(|v| model - v);
    let margins = json!({
        "lab": margin("lab"),
        "random-init": margin("random-init"),
        "copy-first": margin("copy-first"),
    });
    let met = ["lab", "random-init"]
        .iter()
        .all(|b| margin(b).is_some_and(|m| m >= MARGIN_TARGET));
    println!("\n{name}: {} sequences", davis.sequences.len());
    print!("{}", comparison_table(&runs));
    println!(
        "margins of the model (J&F): over lab {:+.3}, over random-init {:+.3}, over copy-first {:+.3}",
        margin("lab").unwrap_or(f64::NAN),
        margin("random-init").unwrap_or(f64::NAN),
        margin("copy-first").unwrap_or(f64::NAN),
    );
    Ok(json!({
        "sequences": davis.sequences.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "protocol": serde_json::to_value(protocol)?,
        "methods": runs.iter().map(|r| (r.name.clone(), r.json())).collect::<serde_json::Map<_, _>>(),
        "J&F-Mean": model,
        "margins": margins,
        "margin_target": MARGIN_TARGET,
        "beats_lab_and_random_init_by_margin": met,
        "outputs": out.display().to_string(),
    }))
}

/// The methods compared: the run's encoder, its initial weights, and the pixel baselines.
fn methods(
    dir: &Path,
    protocol: &Protocol,
    device: &candle_core::Device,
) -> Result<Vec<(String, Method)>> {
    let model = Encoder::from_checkpoint(dir, &protocol.strides, device)
        .with_context(|| format!("loading the encoder of {}", dir.display()))?;
    let init = dir.join("init.safetensors");
    let random = Encoder::from_weights(&init, "encoder.", &protocol.strides, device)
        .with_context(|| format!("loading {}", init.display()))?;
    Ok(vec![
        ("model".into(), Method::Propagate(model)),
        ("random-init".into(), Method::Propagate(random)),
        ("lab".into(), vos::baseline("lab", protocol, device)?),
        (
            "copy-first".into(),
            vos::baseline("copy-first", protocol, device)?,
        ),
    ])
}

/// The evaluation protocol: the preset at the given size, fed the input the encoder was trained
/// on (normalised 8-bit Lab, as every method of this trainer; CRW's own preset feeds RGB).
fn protocol(preset: &str, size: &str) -> Result<Protocol> {
    let mut p = Protocol::preset(preset)?;
    p.colour = ColourInput::Lab;
    p.size = size_rule(size)?;
    p.validate()?;
    Ok(p)
}

/// The evaluation after training: the synthetic split, and DAVIS when given.
fn evaluate(
    dir: &Path,
    cfg: &TrainConfig,
    davis_root: Option<&Path>,
    device: &candle_core::Device,
) -> Result<Value> {
    let e: &EvalConfig = &cfg.eval;
    let mut out = serde_json::Map::new();
    // The synthetic eval split: fixed clips, written once in the DAVIS layout.
    let data = dir.join("eval").join("synthetic-data");
    let mut synth_cfg = e.synthetic_preset.config();
    synth_cfg.width = e.synthetic_size;
    synth_cfg.height = e.synthetic_size;
    if !data.join("ImageSets").is_dir() {
        synth::write_dataset(
            &synth_cfg,
            Split::Eval,
            e.synthetic_seed,
            e.synthetic_clips,
            &data,
        )
        .with_context(|| format!("writing the synthetic eval split to {}", data.display()))?;
    }
    let set = Davis::open(&data, 2017, "480p", None)
        .with_context(|| format!("opening {}", data.display()))?;
    let p = protocol(&e.synthetic_protocol, "native")?;
    eprintln!(
        "evaluating on {} synthetic {} clips ({} protocol)",
        set.sequences.len(),
        e.synthetic_preset.name(),
        e.synthetic_protocol
    );
    let v = evaluate_set(
        "synthetic eval split",
        &set,
        &p,
        methods(dir, &p, device)?,
        &dir.join("eval").join("synthetic"),
        device,
    )?;
    out.insert("synthetic".into(), v);
    if let Some(root) = davis_root {
        let davis = Davis::open(root, 2016, "480p", Some(&e.davis_sequences))
            .with_context(|| format!("opening DAVIS-2016 at {}", root.display()))?;
        let p = protocol(&e.davis_protocol, &e.davis_size)?;
        eprintln!(
            "evaluating on DAVIS-2016 {} ({} protocol)",
            e.davis_sequences.join(", "),
            e.davis_protocol
        );
        let v = evaluate_set(
            "DAVIS-2016",
            &davis,
            &p,
            methods(dir, &p, device)?,
            &dir.join("eval").join("davis2016"),
            device,
        )?;
        out.insert("davis2016".into(), v);
    }
    Ok(Value::Object(out))
}
