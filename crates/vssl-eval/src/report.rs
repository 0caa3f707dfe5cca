//! Reports of a DAVIS evaluation: the two CSV files the official `evaluation_method.py` writes,
//! a JSON summary, and a text table ([`format_table`]).
//!
//! CSV: `global_results-<set>.csv` with the columns
//! `J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay` and one row, and
//! `per-sequence_results-<set>.csv` with `Sequence,J-Mean,F-Mean` and one row per object named
//! `<sequence>_<id>`. Numbers are written as pandas' `to_csv(float_format="%.3f")` writes them:
//! three decimals, rounded from the exact binary value, NaN as an empty field, `\n` line ends.
//!
//! JSON ([`json_summary`], [`write_json`]): the global numbers under the CSV column names, then
//! per sequence its object-averaged `J-Mean`/`F-Mean`/`J&F-Mean` and per object every statistic
//! and the per-frame J and F (NaN is written as `null`).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::metrics::davis::{DavisResults, ObjectResult, SequenceResult, Summary};
use crate::{Error, Result};

/// Column names of the official global CSV, in order.
pub const GLOBAL_COLUMNS: [&str; 7] = [
    "J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay",
];

/// Column names of the official per-sequence CSV, in order.
pub const SEQUENCE_COLUMNS: [&str; 3] = ["Sequence", "J-Mean", "F-Mean"];

/// `x` as `"%.3f" % x` writes it; NaN as the empty string (pandas' `na_rep`).
pub fn fmt3(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else {
        format!("{x:.3}")
    }
}

/// The summary's values in [`GLOBAL_COLUMNS`] order.
pub fn global_values(s: &Summary) -> [f64; 7] {
    [
        s.jf_mean, s.j_mean, s.j_recall, s.j_decay, s.f_mean, s.f_recall, s.f_decay,
    ]
}

/// The name of an object in the per-sequence CSV: `<sequence>_<id>`.
pub fn object_name(seq: &SequenceResult, obj: &ObjectResult) -> String {
    format!("{}_{}", seq.name, obj.id)
}

/// The text of `global_results-<set>.csv`.
pub fn global_csv(summary: &Summary) -> String {
    let values: Vec<String> = global_values(summary).iter().map(|&v| fmt3(v)).collect();
    format!("{}\n{}\n", GLOBAL_COLUMNS.join(","), values.join(","))
}

/// The text of `per-sequence_results-<set>.csv`.
pub fn per_sequence_csv(results: &DavisResults) -> String {
    let mut out = SEQUENCE_COLUMNS.join(",");
    out.push('\n');
    for seq in &results.sequences {
        for obj in &seq.objects {
            out.push_str(&format!(
                "{},{},{}\n",
                object_name(seq, obj),
                fmt3(obj.j_stats.mean),
                fmt3(obj.f_stats.mean)
            ));
        }
    }
    out
}

/// Writes `global_results-<set>.csv` and `per-sequence_results-<set>.csv` into `dir` (created if
/// missing) and returns their paths.
pub fn write_csv(
    dir: impl AsRef<Path>,
    results: &DavisResults,
    set: &str,
) -> Result<(PathBuf, PathBuf)> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
    let global = dir.join(format!("global_results-{set}.csv"));
    let per_seq = dir.join(format!("per-sequence_results-{set}.csv"));
    write_text(&global, &global_csv(&results.summary))?;
    write_text(&per_seq, &per_sequence_csv(results))?;
    Ok((global, per_seq))
}

/// The JSON summary (see the module docs).
pub fn json_summary(results: &DavisResults) -> Value {
    let s = &results.summary;
    let sequences: Vec<Value> = results
        .sequences
        .iter()
        .map(|seq| {
            let n = seq.objects.len() as f64;
            let mean = |f: fn(&ObjectResult) -> f64| {
                if seq.objects.is_empty() {
                    f64::NAN
                } else {
                    seq.objects.iter().map(f).sum::<f64>() / n
                }
            };
            let (jm, fm) = (mean(|o| o.j_stats.mean), mean(|o| o.f_stats.mean));
            let objects: Vec<Value> = seq
                .objects
                .iter()
                .map(|o| {
                    json!({
                        "id": o.id,
                        "name": object_name(seq, o),
                        "J&F-Mean": (o.j_stats.mean + o.f_stats.mean) / 2.0,
                        "J-Mean": o.j_stats.mean,
                        "J-Recall": o.j_stats.recall,
                        "J-Decay": o.j_stats.decay,
                        "F-Mean": o.f_stats.mean,
                        "F-Recall": o.f_stats.recall,
                        "F-Decay": o.f_stats.decay,
                        "J": o.j,
                        "F": o.f,
                    })
                })
                .collect();
            json!({
                "name": seq.name,
                "J&F-Mean": (jm + fm) / 2.0,
                "J-Mean": jm,
                "F-Mean": fm,
                "frames": seq.frames,
                "objects": objects,
            })
        })
        .collect();
    json!({
        "J&F-Mean": s.jf_mean,
        "J-Mean": s.j_mean,
        "J-Recall": s.j_recall,
        "J-Decay": s.j_decay,
        "F-Mean": s.f_mean,
        "F-Recall": s.f_recall,
        "F-Decay": s.f_decay,
        "objects": s.objects,
        "sequences_count": s.sequences,
        "bound_th": results.bound_th,
        "sequences": sequences,
    })
}

/// Writes [`json_summary`] to `path` (pretty-printed; the parent folder is created).
pub fn write_json(path: impl AsRef<Path>, results: &DavisResults) -> Result<()> {
    let path = path.as_ref();
    let text = serde_json::to_string_pretty(&json_summary(results))
        .map_err(|e| Error::file(path, format!("cannot serialise the results: {e}")))?;
    write_text(path, &(text + "\n"))
}

/// The global and per-object numbers as an aligned text table (4 decimals).
pub fn format_table(results: &DavisResults) -> String {
    let mut out = String::from("Global results\n");
    let values = global_values(&results.summary);
    out.push_str(
        &GLOBAL_COLUMNS
            .iter()
            .map(|c| format!("{c:>9}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    out.push('\n');
    out.push_str(
        &values
            .iter()
            .map(|v| format!("{v:>9.4}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    out.push_str(&format!(
        "\n({} objects in {} sequences)\n\nPer-object results\n",
        results.summary.objects, results.summary.sequences
    ));
    let names: Vec<String> = results
        .sequences
        .iter()
        .flat_map(|s| s.objects.iter().map(move |o| object_name(s, o)))
        .collect();
    let width = names.iter().map(String::len).max().unwrap_or(0).max(8);
    out.push_str(&format!(
        "{:<width$} {:>7} {:>7} {:>8} {:>7} {:>7} {:>8}\n",
        "Sequence", "J-Mean", "F-Mean", "J&F", "J-Rec", "F-Rec", "J-Decay"
    ));
    let mut k = 0;
    for seq in &results.sequences {
        for o in &seq.objects {
            out.push_str(&format!(
                "{:<width$} {:>7.4} {:>7.4} {:>8.4} {:>7.4} {:>7.4} {:>8.4}\n",
                names[k],
                o.j_stats.mean,
                o.f_stats.mean,
                (o.j_stats.mean + o.f_stats.mean) / 2.0,
                o.j_stats.recall,
                o.f_stats.recall,
                o.j_stats.decay
            ));
            k += 1;
        }
    }
    out
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::file(parent, format!("cannot create: {e}")))?;
    }
    std::fs::write(path, text).map_err(|e| Error::file(path, format!("cannot write: {e}")))
}
