//! `vssl eval propagate` and `vssl eval keypoints` end to end on small synthetic clips written in
//! the DAVIS layout: the files, the JSON against the library's own scoring of the written masks,
//! the baselines, and errors that name what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use vssl_data::dataset::Davis;
use vssl_data::synth::{Preset, Split, write_dataset};
use vssl_eval::metrics::davis::{BOUND_TH, evaluate_dataset};

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(name: &str) -> Tmp {
    let d = std::env::temp_dir().join(format!("vssl-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a scratch folder");
    Tmp(d)
}

/// Two synthetic clips of 10 frames at 96×64 under `root`.
fn clips(root: &Path) {
    let mut cfg = Preset::Easy.config();
    cfg.width = 96;
    cfg.height = 64;
    cfg.frames = 10;
    write_dataset(&cfg, Split::Eval, 5, 2, root).expect("the synthetic clips");
}

fn vssl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vssl"))
        .args(args)
        .output()
        .expect("vssl runs")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("the JSON file")).expect("JSON")
}

#[test]
fn propagate_writes_masks_overlays_csv_and_json_with_the_baselines() {
    let dir = tmp("prop");
    let (data, out, json) = (dir.0.join("data"), dir.0.join("out"), dir.0.join("s.json"));
    clips(&data);
    let o = vssl(&[
        "eval",
        "propagate",
        "--baseline",
        "lab",
        "--data",
        data.to_str().expect("utf-8"),
        "--protocol",
        "crw",
        "--previous",
        "3",
        "--out",
        out.to_str().expect("utf-8"),
        "--json",
        json.to_str().expect("utf-8"),
        "--baselines",
        "copy-first,lab",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let davis = Davis::open(&data, 2017, "480p", None).expect("the clips");
    for seq in &davis.sequences {
        for f in &seq.frames {
            let stem = f
                .file_stem()
                .expect("a stem")
                .to_string_lossy()
                .into_owned();
            for d in [out.clone(), out.join("baselines/copy-first")] {
                let p = d.join(&seq.name).join(format!("{stem}.png"));
                assert!(p.is_file(), "{} missing", p.display());
            }
        }
        assert!(
            out.join("overlays")
                .join(format!("{}.png", seq.name))
                .is_file()
        );
    }
    // The model (here the lab baseline) is not run twice as a baseline.
    assert!(!out.join("baselines/lab").exists());
    for f in [
        "global_results-val.csv",
        "per-sequence_results-val.csv",
        "summary.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let s = read_json(&json);
    assert_eq!(s, read_json(&out.join("summary.json")));
    assert_eq!(s["model"]["name"], "lab");
    assert_eq!(s["protocol"]["previous"], 3);
    assert_eq!(s["protocol"]["affinity"]["rule"], "joint");
    let names: Vec<&str> = s["baselines"]
        .as_object()
        .expect("baselines")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, ["copy-first"]);
    // The JSON's numbers are the scores of the masks on disk.
    for (dir, entry) in [
        (out.clone(), &s["model"]),
        (
            out.join("baselines/copy-first"),
            &s["baselines"]["copy-first"],
        ),
    ] {
        let r = evaluate_dataset(&davis, &dir, BOUND_TH).expect("scores");
        let j = entry["scores"]["J-Mean"].as_f64().expect("J-Mean");
        let f = entry["scores"]["F-Mean"].as_f64().expect("F-Mean");
        assert!(
            (j - r.summary.j_mean).abs() < 1e-12,
            "{j} vs {}",
            r.summary.j_mean
        );
        assert!(
            (f - r.summary.f_mean).abs() < 1e-12,
            "{f} vs {}",
            r.summary.f_mean
        );
        assert_eq!(entry["frames"], json!(20));
    }
    assert_eq!(s["J&F-Mean"], s["model"]["scores"]["J&F-Mean"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("copy-first") && stdout.contains("J&F"),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_are_named() {
    let dir = tmp("bad");
    let data = dir.0.join("data");
    clips(&data);
    let d = data.to_str().expect("utf-8");
    let out = dir.0.join("out");
    let out = out.to_str().expect("utf-8");
    let missing = dir.0.join("nowhere.safetensors");
    let o = vssl(&[
        "eval",
        "propagate",
        "--weights",
        missing.to_str().expect("utf-8"),
        "--data",
        d,
        "--out",
        out,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("nowhere.safetensors"),
        "{err}"
    );
    let o = vssl(&[
        "eval",
        "propagate",
        "--baseline",
        "pixels",
        "--data",
        d,
        "--out",
        out,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("copy-first"), "{err}");
    let o = vssl(&[
        "eval",
        "propagate",
        "--baseline",
        "lab",
        "--data",
        d,
        "--out",
        out,
        "--protocol",
        "contrastcorr",
        "--radius",
        "4",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--radius"), "{err}");
    let o = vssl(&[
        "eval",
        "propagate",
        "--baseline",
        "lab",
        "--data",
        d,
        "--out",
        out,
        "--protocol",
        "timecycle",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("crw"), "{err}");
}

/// A BADJA-format file for synthetic clip `name` from its point tracks: joints as `[row, col]`
/// at 1920×1080, every other frame annotated.
fn badja_file(data: &Path, name: &str, (w, h): (f64, f64)) -> PathBuf {
    let tracks = read_json(&data.join("tracks").join(format!("{name}.json")));
    let frames = tracks["frames"].as_u64().expect("frames") as usize;
    let mut entries = Vec::new();
    for t in (0..frames).step_by(2) {
        let (mut joints, mut vis) = (Vec::new(), Vec::new());
        for obj in tracks["objects"].as_array().expect("objects") {
            for p in obj["points"].as_array().expect("points") {
                let xy = &p["xy"][t];
                let (x, y) = (xy[0].as_f64().expect("x"), xy[1].as_f64().expect("y"));
                joints.push(json!([y * 1080.0 / h, x * 1920.0 / w]));
                vis.push(json!(p["visible"][t].as_bool().expect("visible")));
            }
        }
        entries.push(json!({
            "image_path": format!("DAVIS/JPEGImages/Full-Resolution/{name}/{t:05}.jpg"),
            "segmentation_path": format!("DAVIS/Annotations/Full-Resolution/{name}/{t:05}.png"),
            "joints": joints,
            "visibility": vis,
        }));
    }
    let dir = data.join("badja");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let p = dir.join(format!("{name}.json"));
    std::fs::write(&p, serde_json::to_string(&entries).expect("JSON")).expect("write");
    p
}

#[test]
fn keypoints_score_pck_for_the_model_and_the_baselines() {
    let dir = tmp("kp");
    let data = dir.0.join("data");
    clips(&data);
    let davis = Davis::open(&data, 2017, "480p", None).expect("the clips");
    for s in &davis.sequences {
        badja_file(&data, &s.name, (96.0, 64.0));
    }
    let json = dir.0.join("kp.json");
    let o = vssl(&[
        "eval",
        "keypoints",
        "--baseline",
        "lab",
        "--data",
        data.to_str().expect("utf-8"),
        "--badja",
        data.join("badja").to_str().expect("utf-8"),
        "--protocol",
        "crw",
        "--previous",
        "3",
        "--baselines",
        "copy-first",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_json(&json);
    let model = &s["model"];
    let copy = &s["baselines"]["copy-first"];
    for m in [model, copy] {
        let (a, b) = (
            m["PCK@0.1"].as_f64().expect("PCK@0.1"),
            m["PCK@0.2"].as_f64().expect("PCK@0.2"),
        );
        assert!((0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b), "{m}");
        assert!(a <= b, "PCK grows with the threshold: {a} > {b}");
    }
    // Copy-first predicts the seed at every frame: recompute its PCK@0.2 from the JSON's own
    // points with BADJA's rule, independently of the library.
    let (mut ok, mut n) = (0usize, 0usize);
    for seq in copy["sequences"].as_array().expect("sequences") {
        let gt = seq["gt"].as_array().expect("gt");
        let pred = seq["pred"].as_array().expect("pred");
        let vis = seq["visible"].as_array().expect("visible");
        let area = seq["mask_areas"].as_array().expect("areas");
        assert_eq!(pred[1], gt[0], "copy-first keeps the seed");
        for t in 1..gt.len() {
            let thr = 0.2 * area[t].as_f64().expect("area").sqrt();
            for j in 0..gt[t].as_array().expect("joints").len() {
                if !vis[t][j].as_bool().expect("bool") {
                    continue;
                }
                let d = |k: usize| {
                    pred[t][j][k].as_f64().expect("p") - gt[t][j][k].as_f64().expect("g")
                };
                n += 1;
                ok += usize::from((d(0).powi(2) + d(1).powi(2)).sqrt() <= thr);
            }
        }
    }
    let want = ok as f64 / n as f64;
    let got = copy["PCK@0.2"].as_f64().expect("PCK@0.2");
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("PCK@0.1"), "{stdout}");
}

/// A small ResNet-18 (width 1/8, CRW's strides, candle's random init) under torchvision's names.
fn small_resnet() -> vssl_model::weights::TensorMap {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    let varmap = VarMap::new();
    let cfg = vssl_model::ResNetConfig {
        width: 0.125,
        ..vssl_model::ResNetConfig::crw(vssl_model::Depth::R18)
    };
    vssl_model::ResNet::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .expect("a ResNet");
    vssl_core::testing::named_vars(&varmap)
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect()
}

fn prefixed(t: &vssl_model::weights::TensorMap, prefix: &str) -> vssl_model::weights::TensorMap {
    t.iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect()
}

#[test]
fn weights_files_and_run_checkpoints_are_evaluated() {
    let dir = tmp("weights");
    let data = dir.0.join("data");
    clips(&data);
    let d = data.to_str().expect("utf-8");
    let net = small_resnet();
    // A file trained elsewhere, under a prefix.
    let file = dir.0.join("cc.safetensors");
    vssl_model::weights::export_torchvision(&prefixed(&net, "module.gray_encoder."), &file)
        .expect("saved");
    let (out, json) = (dir.0.join("w"), dir.0.join("w.json"));
    let o = vssl(&[
        "eval",
        "propagate",
        "--weights",
        file.to_str().expect("utf-8"),
        "--strip-prefix",
        "module.gray_encoder.",
        "--data",
        d,
        "--protocol",
        "crw",
        "--previous",
        "2",
        "--out",
        out.to_str().expect("utf-8"),
        "--json",
        json.to_str().expect("utf-8"),
        "--baselines",
        "none",
        "--no-overlay",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_json(&json);
    let method = s["model"]["method"].as_str().expect("method");
    assert!(
        method.contains("cc.safetensors") && method.contains("0.125"),
        "{method}"
    );
    assert!(s["baselines"].as_object().expect("baselines").is_empty());
    assert!(!out.join("overlays").exists());
    // Without the prefix stripped, the error says what is missing.
    let o = vssl(&[
        "eval",
        "propagate",
        "--weights",
        file.to_str().expect("utf-8"),
        "--data",
        d,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--strip-prefix"),
        "{err}"
    );
    // A run folder: the newest checkpoint's `encoder.` keys.
    let run = dir.0.join("run");
    std::fs::create_dir_all(&run).expect("mkdir");
    vssl_model::weights::save_safetensors(
        &prefixed(&net, "encoder."),
        &run.join("checkpoint-7.safetensors"),
    )
    .expect("saved");
    let (out2, json2) = (dir.0.join("r"), dir.0.join("r.json"));
    let o = vssl(&[
        "eval",
        "propagate",
        "--checkpoint",
        run.to_str().expect("utf-8"),
        "--data",
        d,
        "--protocol",
        "crw",
        "--previous",
        "2",
        "--out",
        out2.to_str().expect("utf-8"),
        "--json",
        json2.to_str().expect("utf-8"),
        "--baselines",
        "none",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s2 = read_json(&json2);
    let method = s2["model"]["method"].as_str().expect("method");
    assert!(method.contains("checkpoint-7.safetensors"), "{method}");
    // The same weights give the same masks, whichever way they came.
    assert_eq!(
        s["model"]["scores"]["J-Mean"],
        s2["model"]["scores"]["J-Mean"]
    );
}
