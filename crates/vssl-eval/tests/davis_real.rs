//! The evaluator on the real DAVIS-2016 val tree, when it is present: `$VSSL_SHARED_DATA/
//! davis2016-val`, by default `<workspace>/../shared/data/davis2016-val`. Without it, each test
//! prints `skipped: ... not found` and passes (CI machines do not have the data).
//!
//! - The GT scored against itself: J = F = 1, recall 1, decay 0 through the real folder layout
//!   and mode-L masks.
//! - Predictions made from the GT by the committed rule of `tests/golden/davis_real.py` (frame
//!   `t` predicts the GT of frame `max(t − 3, 0)` moved 2 px down and 3 px left), written as
//!   palette PNGs and scored from the folder at full 854×480: every number equals the one the
//!   Python transcription of the official evaluator committed in
//!   `tests/golden/davis_real_expected.json` (which the official `davis2017-evaluation` code
//!   itself reproduces bit for bit on these predictions).

mod common;

use std::path::PathBuf;

use serde_json::Value;
use vssl_data::dataset::davis::read_mask;
use vssl_data::dataset::{Davis, write_palette_mask};
use vssl_data::frame::LabelMap;
use vssl_eval::Result;
use vssl_eval::metrics::davis::{BOUND_TH, detect_year, evaluate_dataset};

const EXPECTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/golden/davis_real_expected.json"
);
/// The rule of `tests/golden/davis_real.py`.
const LAG: usize = 3;
const SHIFT_DOWN: usize = 2;
const SHIFT_LEFT: usize = 3;
/// The acceptance tolerance is 4 decimals (|diff| < 5e-5); the implementations agree far closer
/// (the counts are integers, only summation order differs), so the test holds them to 1e-9.
const TOL: f64 = 1e-9;

/// The DAVIS-2016 val root, or `None` (after saying so) when it is absent.
fn davis2016() -> Option<PathBuf> {
    let shared = std::env::var_os("VSSL_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
        });
    let root = shared.join("davis2016-val");
    if root.join("Annotations/480p").is_dir() {
        Some(root)
    } else {
        println!(
            "skipped: DAVIS-2016 val not found at {} (set VSSL_SHARED_DATA to the folder holding \
             davis2016-val)",
            root.display()
        );
        None
    }
}

#[test]
fn ground_truth_against_itself_is_perfect() -> Result<()> {
    let Some(root) = davis2016() else {
        return Ok(());
    };
    assert_eq!(detect_year(&root, "480p")?, 2016);
    let names: Vec<String> = ["blackswan", "camel", "soapbox"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let davis = Davis::open(&root, 2016, "480p", Some(&names))?;
    let r = evaluate_dataset(&davis, root.join("Annotations/480p"), BOUND_TH)?;
    assert_eq!(r.summary.objects, 3);
    let s = r.summary;
    for v in [s.jf_mean, s.j_mean, s.j_recall, s.f_mean, s.f_recall] {
        assert_eq!(v, 1.0);
    }
    assert_eq!((s.j_decay, s.f_decay), (0.0, 0.0));
    // every frame but the first and the last is scored
    let blackswan = &r.sequences[0];
    assert_eq!(blackswan.frames.len(), davis.sequences[0].len() - 2);
    assert_eq!(blackswan.frames[0], "00001");
    Ok(())
}

/// `pred[y][x] = src[y − SHIFT_DOWN][x + SHIFT_LEFT]`, background where that is outside.
fn shifted(src: &LabelMap) -> LabelMap {
    let (w, h) = src.dimensions();
    LabelMap::from_fn(w, h, |x, y| {
        let (x, y) = (x as usize + SHIFT_LEFT, y as usize);
        if y < SHIFT_DOWN || x >= w as usize {
            image::Luma([0])
        } else {
            *src.get_pixel(x as u32, (y - SHIFT_DOWN) as u32)
        }
    })
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing from {EXPECTED}"))
}

fn check(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() < TOL,
        "{what}: {got} (vssl) vs {want} (Python transcription), |diff| = {:e}",
        (got - want).abs()
    );
}

#[test]
fn rule_predictions_match_the_official_numbers() -> Result<()> {
    let Some(root) = davis2016() else {
        return Ok(());
    };
    let text = std::fs::read_to_string(EXPECTED).expect("read the expected JSON");
    let expected: Value = serde_json::from_str(&text).expect("parse the expected JSON");
    let seqs = expected["sequences"].as_array().expect("sequences");
    let names: Vec<String> = seqs
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect();
    assert!(
        names.len() >= 3,
        "{EXPECTED} lists {} sequences",
        names.len()
    );

    let davis = Davis::open(&root, 2016, "480p", Some(&names))?;
    let tmp = common::Tmp::new("davis-real");
    for seq in &davis.sequences {
        let gt = seq
            .annotations
            .iter()
            .map(|a| read_mask(a.as_ref().expect("DAVIS-2016 annotates every frame")))
            .collect::<Result<Vec<_>>>()?;
        for (t, a) in seq.annotations.iter().enumerate() {
            let stem = a.as_ref().and_then(|a| a.file_stem()).expect("stem");
            let path = tmp
                .path()
                .join(&seq.name)
                .join(format!("{}.png", stem.to_string_lossy()));
            write_palette_mask(path, &shifted(&gt[t.saturating_sub(LAG)]))?;
        }
    }
    let r = evaluate_dataset(&davis, tmp.path(), BOUND_TH)?;

    assert_eq!(
        r.summary.objects as u64,
        expected["objects"].as_u64().expect("objects")
    );
    let g = &expected["global"];
    let s = &r.summary;
    for (key, got) in [
        ("J&F-Mean", s.jf_mean),
        ("J-Mean", s.j_mean),
        ("J-Recall", s.j_recall),
        ("J-Decay", s.j_decay),
        ("F-Mean", s.f_mean),
        ("F-Recall", s.f_recall),
        ("F-Decay", s.f_decay),
    ] {
        check(&format!("global {key}"), got, num(g, key));
    }
    for (want, got) in seqs.iter().zip(&r.sequences) {
        assert_eq!(want["name"].as_str(), Some(got.name.as_str()));
        assert_eq!(
            want["frames"].as_u64(),
            Some(got.frames.len() as u64 + 2),
            "{}: scored frames",
            got.name
        );
        let objs = want["objects"].as_array().expect("objects");
        assert_eq!(objs.len(), got.objects.len(), "{}: objects", got.name);
        for (wo, o) in objs.iter().zip(&got.objects) {
            let tag = format!("{}_{}", got.name, o.id);
            check(&format!("{tag} J-Mean"), o.j_stats.mean, num(wo, "J-Mean"));
            check(
                &format!("{tag} J-Recall"),
                o.j_stats.recall,
                num(wo, "J-Recall"),
            );
            check(
                &format!("{tag} J-Decay"),
                o.j_stats.decay,
                num(wo, "J-Decay"),
            );
            check(&format!("{tag} F-Mean"), o.f_stats.mean, num(wo, "F-Mean"));
            check(
                &format!("{tag} F-Recall"),
                o.f_stats.recall,
                num(wo, "F-Recall"),
            );
            check(
                &format!("{tag} F-Decay"),
                o.f_stats.decay,
                num(wo, "F-Decay"),
            );
        }
    }
    // the rule is not trivially perfect: it must move every number away from 1
    assert!(s.j_mean < 0.9 && s.f_mean < 0.9, "{s:?}");
    Ok(())
}
