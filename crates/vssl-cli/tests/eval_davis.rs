//! `vssl eval davis` end to end on a small DAVIS-2017-style tree: the printed table, the official
//! CSV files and the JSON summary carry the library's numbers, and bad predictions fail with the
//! offending file named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vssl_data::dataset::{Davis, write_palette_mask};
use vssl_data::frame::LabelMap;
use vssl_eval::metrics::davis::{BOUND_TH, evaluate_dataset};
use vssl_eval::report;

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn labels(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> LabelMap {
    let raw = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| f(x, y));
    LabelMap::from_raw(w, h, raw.collect()).expect("w·h values")
}

/// Two sequences of 5 frames, 24×16: `a` with two objects, `b` with one; the predictions are
/// the GT moved by three pixels (so the scores are neither 0 nor 1).
fn tree(root: &Path) -> vssl_eval::Result<()> {
    for (name, n_obj) in [("a", 2u8), ("b", 1u8)] {
        std::fs::create_dir_all(root.join("davis/JPEGImages/480p").join(name)).expect("mkdir");
        for t in 0..5u32 {
            let gt = labels(24, 16, |x, y| {
                let o1 = (4 + t..12 + t).contains(&x) && (3..10).contains(&y);
                let o2 = n_obj > 1 && (14..20).contains(&x) && (2 + t / 2..12).contains(&y);
                if o1 {
                    1
                } else if o2 {
                    2
                } else {
                    0
                }
            });
            let pred = labels(24, 16, |x, y| {
                if x < 3 {
                    0
                } else {
                    gt.get_pixel(x - 3, y).0[0]
                }
            });
            std::fs::write(
                root.join("davis/JPEGImages/480p")
                    .join(name)
                    .join(format!("{t:05}.jpg")),
                b"",
            )
            .expect("write jpg");
            let stem = format!("{t:05}.png");
            write_palette_mask(
                root.join("davis/Annotations/480p").join(name).join(&stem),
                &gt,
            )?;
            write_palette_mask(root.join("pred").join(name).join(&stem), &pred)?;
        }
    }
    Ok(())
}

fn vssl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vssl"))
        .args(args)
        .output()
        .expect("run vssl")
}

#[test]
fn eval_davis_writes_the_official_reports() -> vssl_eval::Result<()> {
    let tmp = Tmp(std::env::temp_dir().join(format!("vssl-cli-eval-{}", std::process::id())));
    let root = &tmp.0;
    tree(root)?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (data, pred) = (root.join("davis"), root.join("pred"));
    let (json, csv) = (root.join("out/r.json"), root.join("out/csv"));
    let out = vssl(&[
        "eval",
        "davis",
        "--predictions",
        &s(&pred),
        "--data",
        &s(&data),
        "--json",
        &s(&json),
        "--csv-dir",
        &s(&csv),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("DAVIS 2017 480p: 2 sequences, 3 objects"),
        "{stdout}"
    );

    let davis = Davis::open(&data, 2017, "480p", None)?;
    let want = evaluate_dataset(&davis, &pred, BOUND_TH)?;
    let m = want.summary;
    assert!(
        m.j_mean > 0.3 && m.j_mean < 0.99 && m.f_mean < 0.99,
        "{m:?}"
    );
    assert!(stdout.contains(&report::format_table(&want)), "{stdout}");
    let read = |p: PathBuf| std::fs::read_to_string(p).expect("read output");
    assert_eq!(
        read(csv.join("global_results-val.csv")),
        report::global_csv(&want.summary)
    );
    assert_eq!(
        read(csv.join("per-sequence_results-val.csv")),
        report::per_sequence_csv(&want)
    );
    // text equality: serde_json's default parser may round the last bit of a float
    let text = serde_json::to_string_pretty(&report::json_summary(&want)).expect("JSON");
    assert_eq!(read(json), text + "\n");

    // --sequences restricts the set
    let out = vssl(&[
        "eval",
        "davis",
        "--predictions",
        &s(&pred),
        "--data",
        &s(&data),
        "--sequences",
        "b",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 sequences, 1 objects") && stdout.contains("b_1"),
        "{stdout}"
    );
    assert!(!stdout.contains("a_1"), "{stdout}");

    // an id the GT does not have: the file is named
    let bad = pred.join("b/00002.png");
    write_palette_mask(&bad, &labels(24, 16, |x, _| u8::from(x == 3) * 2))?;
    let out = vssl(&[
        "eval",
        "davis",
        "--predictions",
        &s(&pred),
        "--data",
        &s(&data),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&s(&bad)) && stderr.contains("id 2"),
        "{stderr}"
    );

    // a missing frame: the file is named
    std::fs::remove_file(&bad).expect("remove");
    let out = vssl(&[
        "eval",
        "davis",
        "--predictions",
        &s(&pred),
        "--data",
        &s(&data),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&s(&bad)) && stderr.contains("missing"),
        "{stderr}"
    );
    Ok(())
}
