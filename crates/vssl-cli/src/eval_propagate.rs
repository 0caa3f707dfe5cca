//! `vssl eval propagate` and `vssl eval keypoints`: label propagation with a model (a run's
//! checkpoint, a weights file or a baseline), scored next to the baselines.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use vssl_core::device::parse_device;
use vssl_data::dataset::{Badja, Davis};

use crate::bench::write_json;
use crate::eval::DavisSet;
use vssl_eval::badja::{SequenceKeypoints, propagate_badja, score};
use vssl_eval::encoder::Encoder;
use vssl_eval::metrics::davis::{BOUND_TH, DavisResults, evaluate_dataset};
use vssl_eval::metrics::pck::PckConvention;
use vssl_eval::protocol::{Affinity, Protocol, SizeRule};
use vssl_eval::report;
use vssl_eval::vos::{self, BASELINES, Method, OverlayOptions};

/// Where the model's features come from.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct ModelSource {
    /// A vssl training run (its folder, or one checkpoint file): the encoder under `encoder.`.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A weights file (safetensors or PyTorch `.pth`) holding a ResNet under torchvision's names
    /// (after `--strip-prefix`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Evaluate a baseline as the model: copy-first, lab or random.
    #[arg(long)]
    pub baseline: Option<String>,
}

/// The protocol and its knobs.
#[derive(Args, Debug, Clone)]
pub struct ProtocolArgs {
    /// Protocol preset: contrastcorr, uvc or crw.
    #[arg(long, default_value = "contrastcorr")]
    pub protocol: String,
    /// A JSON file holding a whole protocol (every knob; `--print-protocol` shows the form);
    /// replaces the preset.
    #[arg(long)]
    pub protocol_file: Option<PathBuf>,
    /// Print the resolved protocol as JSON and exit.
    #[arg(long)]
    pub print_protocol: bool,
    /// Weights kept per target node.
    #[arg(long)]
    pub topk: Option<usize>,
    /// Softmax temperature (contrastcorr/uvc: multiplier of the affinity; crw: divisor).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Previous frames in the context (besides the first frame).
    #[arg(long)]
    pub previous: Option<usize>,
    /// Radius (feature cells) of the local window on the previous frames, or `none`
    /// (joint-affinity protocols only).
    #[arg(long)]
    pub radius: Option<String>,
    /// The encoder's input size: a short side in pixels (long side floored to a multiple of
    /// 64), or `native`.
    #[arg(long)]
    pub size: Option<String>,
}

impl ProtocolArgs {
    /// The protocol the arguments describe.
    pub fn resolve(&self) -> Result<Protocol> {
        let mut p = match &self.protocol_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading the protocol file {}", f.display()))?;
                serde_json::from_str::<Protocol>(&text)
                    .with_context(|| format!("{}: not a protocol", f.display()))?
            }
            None => Protocol::preset(&self.protocol)?,
        };
        if let Some(k) = self.topk {
            match &mut p.affinity {
                Affinity::PerFrame { topk, .. } | Affinity::Joint { topk, .. } => *topk = k,
            }
        }
        if let Some(t) = self.temperature {
            match &mut p.affinity {
                Affinity::PerFrame { temperature, .. } | Affinity::Joint { temperature, .. } => {
                    *temperature = t
                }
            }
        }
        if let Some(n) = self.previous {
            p.previous = n;
        }
        if let Some(r) = &self.radius {
            let value = if r == "none" {
                None
            } else {
                Some(
                    r.parse::<usize>()
                        .with_context(|| format!("--radius {r:?}: a number of cells or none"))?,
                )
            };
            match &mut p.affinity {
                Affinity::Joint { radius, .. } => *radius = value,
                Affinity::PerFrame { .. } => {
                    bail!("--radius applies to joint-affinity protocols (crw), not this one")
                }
            }
        }
        if let Some(s) = &self.size {
            p.size = size_rule(s)?;
        }
        p.validate()?;
        Ok(p)
    }
}

/// An encoder input size: `native`, or a short side in pixels (the long side floored to a
/// multiple of 64, as the reference scripts size frames).
pub(crate) fn size_rule(s: &str) -> Result<SizeRule> {
    Ok(if s == "native" {
        SizeRule::Native
    } else {
        SizeRule::ShortSide {
            side: s
                .parse()
                .with_context(|| format!("size {s:?}: a short side in pixels or native"))?,
            multiple: 64,
        }
    })
}

/// The model, the protocol, the baselines and the device: what every propagation command takes.
#[derive(Args, Debug, Clone)]
pub struct MethodArgs {
    #[command(flatten)]
    pub model: ModelSource,
    /// Prefix removed from every key of `--weights` (e.g. `module.gray_encoder.`).
    #[arg(long, default_value = "")]
    pub strip_prefix: String,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    /// Baselines run next to the model (comma-separated: copy-first, lab, random; `none`).
    #[arg(long, value_delimiter = ',', default_value = "copy-first,lab,random")]
    pub baselines: Vec<String>,
    /// Device: cpu, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// [`MethodArgs`] resolved: the protocol, the device, the model and the baselines to run.
struct Methods {
    protocol: Protocol,
    device: candle_core::Device,
    model_name: String,
    model: Method,
    baselines: Vec<String>,
}

impl MethodArgs {
    /// `None` when `--print-protocol` asked only for the protocol (printed here).
    fn resolve(&self) -> Result<Option<Methods>> {
        let protocol = self.protocol.resolve()?;
        if self.protocol.print_protocol {
            println!("{}", serde_json::to_string_pretty(&protocol)?);
            return Ok(None);
        }
        let device = parse_device(&self.device)?;
        let (model_name, model) =
            model_method(&self.model, &self.strip_prefix, &protocol, &device)?;
        let baselines = baseline_names(&self.baselines, &model_name)?;
        Ok(Some(Methods {
            protocol,
            device,
            model_name,
            model,
            baselines,
        }))
    }
}

/// `vssl eval propagate`.
#[derive(Args, Debug, Clone)]
pub struct PropagateArgs {
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub set: DavisSet,
    /// Output folder: the model's masks in the DAVIS layout (`OUT/<seq>/<frame>.png`), the
    /// baselines' under `OUT/baselines/<name>/`, overlays under `OUT/overlays/`, the official
    /// CSV files and `summary.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the JSON summary here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the overlay images.
    #[arg(long)]
    pub no_overlay: bool,
}

/// The model the source arguments name.
fn model_method(
    src: &ModelSource,
    strip: &str,
    protocol: &Protocol,
    device: &candle_core::Device,
) -> Result<(String, Method)> {
    if let Some(run) = &src.checkpoint {
        let e = Encoder::from_checkpoint(run, &protocol.strides, device)?;
        return Ok(("model".into(), Method::Propagate(e)));
    }
    if let Some(w) = &src.weights {
        let e = Encoder::from_weights(w, strip, &protocol.strides, device)?;
        return Ok(("model".into(), Method::Propagate(e)));
    }
    let name = src.baseline.as_deref().unwrap_or_default();
    Ok((name.to_string(), vos::baseline(name, protocol, device)?))
}

/// The baselines to run besides the model (the model's own name left out).
fn baseline_names(requested: &[String], model: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in requested {
        let b = b.trim();
        if b.is_empty() || b == "none" {
            continue;
        }
        if !BASELINES.contains(&b) {
            bail!("unknown baseline {b:?}; the baselines are {BASELINES:?} (or none)");
        }
        if b != model && !out.iter().any(|o: &String| o == b) {
            out.push(b.to_string());
        }
    }
    Ok(out)
}

/// One method's run over the dataset: masks, scores and timing.
pub(crate) struct MethodRun {
    pub(crate) name: String,
    pub(crate) describe: String,
    pub(crate) results: DavisResults,
    pub(crate) frames: usize,
    pub(crate) seconds: f64,
}

impl MethodRun {
    pub(crate) fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "name": self.name,
            "method": self.describe,
            "frames": self.frames,
            "seconds": self.seconds,
            "frames_per_second": self.fps(),
            "scores": report::json_summary(&self.results),
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_method(
    davis: &Davis,
    name: &str,
    method: &Method,
    protocol: &Protocol,
    device: &candle_core::Device,
    masks: &Path,
    overlays: Option<&Path>,
) -> Result<MethodRun> {
    let (mut frames, mut seconds) = (0usize, 0f64);
    for seq in &davis.sequences {
        let overlay_path = overlays.map(|o| o.join(format!("{}.png", seq.name)));
        let overlay = overlay_path
            .as_deref()
            .map(|p| (p, OverlayOptions::default()));
        let r = vos::propagate_sequence(seq, method, protocol, device, masks, overlay)
            .with_context(|| format!("{name}: propagating {}", seq.name))?;
        eprintln!(
            "  {name}: {} ({} frames, {:.1} s, {:.2} frames/s)",
            r.name,
            r.frames,
            r.seconds,
            r.frames as f64 / r.seconds.max(1e-9)
        );
        frames += r.frames;
        seconds += r.seconds;
    }
    let results = evaluate_dataset(davis, masks, BOUND_TH)
        .with_context(|| format!("{name}: scoring {}", masks.display()))?;
    Ok(MethodRun {
        name: name.into(),
        describe: method.describe(),
        results,
        frames,
        seconds,
    })
}

/// The comparison table: one line per method.
pub(crate) fn comparison_table(runs: &[MethodRun]) -> String {
    let mut s = format!(
        "{:<12} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}\n",
        "method", "J&F", "J", "F", "J-Recall", "F-Recall", "frames/s"
    );
    for r in runs {
        let m = &r.results.summary;
        s += &format!(
            "{:<12} {:>7.3} {:>7.3} {:>7.3} {:>9.3} {:>9.3} {:>9.3}\n",
            r.name,
            m.jf_mean,
            m.j_mean,
            m.f_mean,
            m.j_recall,
            m.f_recall,
            r.fps()
        );
    }
    s
}

/// Runs `vssl eval propagate`.
pub fn propagate(a: PropagateArgs) -> Result<()> {
    let Some(Methods {
        protocol,
        device,
        model_name,
        model,
        baselines,
    }) = a.method.resolve()?
    else {
        return Ok(());
    };
    let davis = a.set.open()?;
    let year = davis.year;
    eprintln!(
        "propagating {} sequences of DAVIS {year} with {} ({} protocol) and {} baselines",
        davis.sequences.len(),
        model.describe(),
        a.method.protocol.protocol,
        baselines.len()
    );
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("creating the output folder {}", a.out.display()))?;
    let overlays = (!a.no_overlay).then(|| a.out.join("overlays"));
    let mut runs = vec![run_method(
        &davis,
        &model_name,
        &model,
        &protocol,
        &device,
        &a.out,
        overlays.as_deref(),
    )?];
    drop(model);
    for b in &baselines {
        let method = vos::baseline(b, &protocol, &device)?;
        let dir = a.out.join("baselines").join(b);
        runs.push(run_method(
            &davis, b, &method, &protocol, &device, &dir, None,
        )?);
    }
    let main = &runs[0];
    report::write_csv(&a.out, &main.results, "val")
        .with_context(|| format!("writing the CSV files into {}", a.out.display()))?;
    let summary = json!({
        "data": a.set.data.display().to_string(),
        "year": year,
        "protocol_preset": a.method.protocol.protocol,
        "protocol": serde_json::to_value(&protocol)?,
        "device": a.method.device,
        "model": main.json(),
        "baselines": runs[1..].iter().map(|r| (r.name.clone(), r.json())).collect::<serde_json::Map<_, _>>(),
        "J&F-Mean": main.results.summary.jf_mean,
        "J-Mean": main.results.summary.j_mean,
        "F-Mean": main.results.summary.f_mean,
    });
    write_json(&a.out.join("summary.json"), &summary)?;
    if let Some(j) = &a.json {
        write_json(j, &summary)?;
    }
    print!("{}", report::format_table(&main.results));
    println!("{}", comparison_table(&runs));
    println!("masks: {}", a.out.display());
    Ok(())
}

/// `vssl eval keypoints`.
#[derive(Args, Debug, Clone)]
pub struct KeypointArgs {
    #[command(flatten)]
    pub method: MethodArgs,
    /// DAVIS-2016 root holding the BADJA sequences' frames (`JPEGImages/480p/<seq>/`) and masks.
    #[arg(long)]
    pub data: PathBuf,
    /// BADJA annotations: a folder of `<seq>.json` files or one file.
    #[arg(long)]
    pub badja: PathBuf,
    /// Only these sequences (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub sequences: Option<Vec<String>>,
    /// PCK convention: badja (α·√(mask area)) or jhmdb.
    #[arg(long, default_value = "badja")]
    pub convention: String,
    /// Write the JSON summary here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The BADJA files `--badja` names, filtered by `--sequences`.
fn badja_files(path: &Path, only: Option<&[String]>) -> Result<Vec<PathBuf>> {
    let mut files = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("listing {}", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if let Some(only) = only {
        files.retain(|f| {
            f.file_stem()
                .is_some_and(|s| only.iter().any(|o| o.as_str() == s.to_string_lossy()))
        });
    }
    if files.is_empty() {
        bail!("{}: no BADJA .json file to evaluate", path.display());
    }
    Ok(files)
}

/// Runs `vssl eval keypoints`.
pub fn keypoints(a: KeypointArgs) -> Result<()> {
    let Some(Methods {
        protocol,
        device,
        model_name,
        model,
        baselines,
    }) = a.method.resolve()?
    else {
        return Ok(());
    };
    let convention = pck_convention(&a.convention)?;
    let files = badja_files(&a.badja, a.sequences.as_deref())?;
    let mut sets = Vec::new();
    for f in &files {
        sets.push(Badja::load(f, &a.data).with_context(|| {
            format!("loading BADJA {} against {}", f.display(), a.data.display())
        })?);
    }
    let mut rows = Vec::new();
    rows.push(keypoint_row(
        &model_name,
        &model,
        &sets,
        &a.data,
        &protocol,
        &device,
        convention,
    )?);
    drop(model);
    for b in &baselines {
        let m = vos::baseline(b, &protocol, &device)?;
        rows.push(keypoint_row(
            b, &m, &sets, &a.data, &protocol, &device, convention,
        )?);
    }
    println!("{}", keypoint_table(&rows));
    let summary = json!({
        "data": a.data.display().to_string(),
        "badja": a.badja.display().to_string(),
        "protocol_preset": a.method.protocol.protocol,
        "protocol": serde_json::to_value(&protocol)?,
        "convention": a.convention,
        "model": rows[0].json(),
        "baselines": rows[1..].iter().map(|r| (r.name.clone(), r.json())).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(j) = &a.json {
        write_json(j, &summary)?;
    }
    Ok(())
}

fn pck_convention(name: &str) -> Result<PckConvention> {
    match name {
        "badja" => Ok(PckConvention::Badja),
        "jhmdb" => Ok(PckConvention::Jhmdb),
        other => bail!("unknown PCK convention {other:?}: badja or jhmdb"),
    }
}

/// One method's keypoint run over the BADJA sequences.
struct KeypointRow {
    name: String,
    describe: String,
    sequences: Vec<SequenceKeypoints>,
    pck_01: f64,
    pck_02: f64,
    per_sequence: Vec<(String, f64, f64)>,
    seconds: f64,
}

impl KeypointRow {
    pub(crate) fn json(&self) -> Value {
        json!({
            "name": self.name,
            "method": self.describe,
            "PCK@0.1": self.pck_01,
            "PCK@0.2": self.pck_02,
            "seconds": self.seconds,
            "sequences": self.per_sequence.iter().zip(&self.sequences).map(|((n, a, b), s)| json!({
                "sequence": n, "PCK@0.1": a, "PCK@0.2": b, "frames": s.frames,
                "pred": s.pred, "gt": s.gt, "visible": s.visible, "mask_areas": s.mask_areas,
            })).collect::<Vec<_>>(),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn keypoint_row(
    name: &str,
    method: &Method,
    sets: &[Badja],
    data: &Path,
    protocol: &Protocol,
    device: &candle_core::Device,
    convention: PckConvention,
) -> Result<KeypointRow> {
    let start = std::time::Instant::now();
    let mut sequences = Vec::new();
    let mut per_sequence = Vec::new();
    for set in sets {
        let s = propagate_badja(set, data, method, protocol, device)
            .with_context(|| format!("{name}: propagating the joints of {}", set.sequence))?;
        let one = score(std::slice::from_ref(&s), convention)?;
        eprintln!(
            "  {name}: {} PCK@0.1 {:.3} PCK@0.2 {:.3}",
            s.sequence, one.pck_01.pck, one.pck_02.pck
        );
        per_sequence.push((s.sequence.clone(), one.pck_01.pck, one.pck_02.pck));
        sequences.push(s);
    }
    let all = score(&sequences, convention)?;
    Ok(KeypointRow {
        name: name.into(),
        describe: method.describe(),
        sequences,
        pck_01: all.pck_01.pck,
        pck_02: all.pck_02.pck,
        per_sequence,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn keypoint_table(rows: &[KeypointRow]) -> String {
    let mut s = format!("{:<12} {:>9} {:>9}\n", "method", "PCK@0.1", "PCK@0.2");
    for r in rows {
        s += &format!("{:<12} {:>9.3} {:>9.3}\n", r.name, r.pck_01, r.pck_02);
    }
    s
}
