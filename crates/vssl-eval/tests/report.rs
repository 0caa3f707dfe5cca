//! The official CSV layout and number format, and the JSON summary.

mod common;

use vssl_eval::Result;
use vssl_eval::metrics::davis::{DavisResults, ObjectResult, SequenceResult, statistics};
use vssl_eval::report::{
    fmt3, format_table, global_csv, json_summary, per_sequence_csv, write_csv, write_json,
};

fn object(id: u8, j: Vec<f64>, f: Vec<f64>) -> ObjectResult {
    ObjectResult {
        id,
        j_stats: statistics(&j),
        f_stats: statistics(&f),
        j,
        f,
    }
}

fn results() -> DavisResults {
    DavisResults::new(
        0.008,
        vec![
            SequenceResult {
                name: "bike-packing".into(),
                frames: vec!["00001".into(), "00002".into()],
                objects: vec![
                    object(1, vec![0.5, 0.6], vec![0.7, 0.9]),
                    object(2, vec![1.0, 0.0], vec![0.25, 0.25]),
                ],
            },
            SequenceResult {
                name: "blackswan".into(),
                frames: vec!["00001".into()],
                objects: vec![object(1, vec![0.9], vec![0.3125])],
            },
        ],
    )
}

#[test]
fn numbers_are_written_like_percent_3f() {
    // Python: "%.3f" % x (round half to even on the exact binary value; 0.0625 and 0.3125 are
    // exact ties)
    assert_eq!(fmt3(0.0625), "0.062");
    assert_eq!(fmt3(0.3125), "0.312");
    assert_eq!(fmt3(0.6875), "0.688");
    assert_eq!(fmt3(0.1235), "0.123"); // 0.1235 is 0.12349999...
    assert_eq!(fmt3(-0.0001), "-0.000");
    assert_eq!(fmt3(1.0), "1.000");
    assert_eq!(fmt3(f64::NAN), "");
}

#[test]
fn csv_files_have_the_official_columns() {
    let r = results();
    // objects: J means 0.55, 0.5, 0.9; F means 0.8, 0.25, 0.3125 (a tie: 0.312)
    assert_eq!(
        per_sequence_csv(&r),
        "Sequence,J-Mean,F-Mean\n\
         bike-packing_1,0.550,0.800\n\
         bike-packing_2,0.500,0.250\n\
         blackswan_1,0.900,0.312\n"
    );
    let s = r.summary;
    assert_eq!(s.objects, 3);
    let jm = (0.55 + 0.5 + 0.9) / 3.0;
    let fm = (0.8 + 0.25 + 0.3125) / 3.0;
    assert!((s.j_mean - jm).abs() < 1e-12 && (s.f_mean - fm).abs() < 1e-12);
    assert!((s.jf_mean - (jm + fm) / 2.0).abs() < 1e-12);
    let csv = global_csv(&s);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay")
    );
    // J recall: (1/2 + 1/2 + 1)/3; J decay: (−0.1 + 1 + 0)/3; F recall (1 + 0 + 0)/3;
    // F decay (−0.2 + 0 + 0)/3
    assert_eq!(
        lines.next(),
        Some("0.552,0.650,0.667,0.300,0.454,0.333,-0.067")
    );
    assert!(csv.ends_with('\n'));
}

#[test]
fn json_summary_has_global_sequence_and_object_entries() -> Result<()> {
    let r = results();
    let v = json_summary(&r);
    for key in [
        "J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay",
    ] {
        assert!(v[key].is_f64(), "{key}: {}", v[key]);
    }
    assert_eq!(v["objects"], 3);
    let seq = &v["sequences"][0];
    assert_eq!(seq["name"], "bike-packing");
    assert!((seq["J-Mean"].as_f64().unwrap_or(f64::NAN) - 0.525).abs() < 1e-12);
    let obj = &seq["objects"][1];
    assert_eq!(obj["name"], "bike-packing_2");
    assert_eq!(obj["J"][0], 1.0);
    assert!(obj["J-Decay"].is_f64());
    assert!(format_table(&r).contains("blackswan_1"));
    Ok(())
}

#[test]
fn files_hold_what_the_text_functions_return() -> Result<()> {
    let r = results();
    let tmp = common::Tmp::new("report");
    let (g, s) = write_csv(tmp.path().join("csv"), &r, "val")?;
    assert!(g.ends_with("csv/global_results-val.csv"), "{}", g.display());
    assert!(
        s.ends_with("csv/per-sequence_results-val.csv"),
        "{}",
        s.display()
    );
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("read back");
    assert_eq!(read(&g), global_csv(&r.summary));
    assert_eq!(read(&s), per_sequence_csv(&r));
    let json = tmp.path().join("out/summary.json");
    write_json(&json, &r)?;
    // text equality: serde_json's default parser may round the last bit of a float
    let text = read(&json);
    let want = serde_json::to_string_pretty(&json_summary(&r)).expect("serialise");
    assert_eq!(text, want + "\n");
    let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(back["sequences"][1]["objects"][0]["name"], "blackswan_1");
    Ok(())
}
