//! `vssl bench all`: every benchmark of the workspace in turn, then one summary.
//!
//! Runs `vssl bench core`, `data`, `train-step`, `step` and `eval` as child processes of this
//! same binary (their output goes straight through), each writing its own JSON under
//! `--out-dir` exactly as when run alone. A benchmark that fails is recorded with its error and
//! the others still run; the command exits non-zero at the end if any failed. `--reuse` takes an
//! existing JSON as it is instead of running that benchmark again.
//!
//! Then it writes `all.json` (this run's provenance and, per benchmark, its file, status,
//! seconds, provenance, targets and a few headline figures) and rewrites the generated block of
//! the Markdown page (`docs/benchmarks.md`) between the [`BEGIN`] and [`END`] marker lines: the
//! machine, a table of every target and one line of headline figures per benchmark. Everything
//! outside the markers is kept byte for byte; the markers go after the page's intro paragraph
//! when absent.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use super::{provenance, write_json};

/// The benchmarks in the order they run: (`vssl bench` subcommand, JSON file stem).
pub const BENCHMARKS: [(&str, &str); 5] = [
    ("core", "core"),
    ("data", "data"),
    ("train-step", "train_step"),
    ("step", "step"),
    ("eval", "eval"),
];

/// The line that opens the generated block of the Markdown page.
pub const BEGIN: &str = "<!-- bench:all:begin -->";
/// The line that closes it.
pub const END: &str = "<!-- bench:all:end -->";

const MIB: f64 = 1024.0 * 1024.0;

/// Options of `vssl bench all`.
#[derive(clap::Args)]
pub struct AllArgs {
    /// Only these benchmarks (comma-separated: core, data, train-step, step, eval).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Not these benchmarks (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Do not run a benchmark whose JSON already exists in the output folder: take it as it is.
    #[arg(long)]
    pub reuse: bool,
    /// Folder of every benchmark's JSON and of all.json.
    #[arg(long, default_value = "target/bench")]
    pub out_dir: PathBuf,
    /// Markdown page whose generated block (between the bench:all markers) is rewritten.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub doc: PathBuf,
    /// Leave the Markdown page alone.
    #[arg(long)]
    pub no_doc: bool,
}

/// The benchmarks `--only` (all when absent) and `--skip` select; `_` may stand for `-`.
fn selected(only: Option<&[String]>, skip: &[String]) -> Result<Vec<&'static str>> {
    let norm = |n: &String| n.trim().replace('_', "-");
    for n in only.into_iter().flatten().chain(skip) {
        if !BENCHMARKS.iter().any(|(b, _)| *b == norm(n)) {
            bail!("unknown benchmark {n:?}; the benchmarks are core, data, train-step, step, eval");
        }
    }
    let wanted = |b: &str| {
        only.is_none_or(|o| o.iter().any(|n| norm(n) == b)) && !skip.iter().any(|n| norm(n) == b)
    };
    Ok(BENCHMARKS
        .iter()
        .map(|b| b.0)
        .filter(|b| wanted(b))
        .collect())
}

/// Runs `vssl bench <name> --out <file>`, forwarding its output. On failure the error names the
/// exit status and what the child printed last (from anyhow's `Error:` line on).
fn run_one(name: &str, file: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the vssl executable")?;
    let mut child = Command::new(&exe)
        .args(["bench", name, "--out"])
        .arg(file)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {} bench {name}", exe.display()))?;
    let mut tail = VecDeque::new();
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let _ = std::io::stderr().write_all(&line);
            if tail.len() == 40 {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(&line).trim_end().to_string());
            line.clear();
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("vssl bench {name} did not finish"))?;
    if status.success() {
        return Ok(());
    }
    let from = tail
        .iter()
        .rposition(|l| l.starts_with("Error: "))
        .unwrap_or(0);
    let said: Vec<&str> = tail.iter().skip(from).map(String::as_str).collect();
    bail!(
        "vssl bench {name} failed ({status}): {}",
        said.join("\n").trim()
    )
}

/// Reads one benchmark's JSON report.
fn read_report(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("bad JSON in {}", path.display()))
}

/// One benchmark's entry of `all.json`.
fn entry(bench: &str, file: &Path, status: &str, seconds: Option<f64>, report: &Value) -> Value {
    json!({
        "file": file.display().to_string(),
        "reused": status == "reused",
        "status": status,
        "seconds": seconds,
        "provenance": report["provenance"],
        "targets": report["targets"].as_array().cloned().unwrap_or_default(),
        "headline": headline(bench, report),
    })
}

/// `vssl bench all`.
pub fn run(args: AllArgs) -> Result<()> {
    let chosen = selected(args.only.as_deref(), &args.skip)?;
    let mut prov = provenance();
    prov["logical_cpus"] = json!(std::thread::available_parallelism().ok().map(|n| n.get()));
    let mut benchmarks = Map::new();
    let mut failed = Vec::new();
    for (name, stem) in BENCHMARKS {
        let file = args.out_dir.join(format!("{stem}.json"));
        let (status, seconds, outcome) = if !chosen.contains(&name) {
            eprintln!("bench all: {name}: skipped");
            ("skipped", None, Ok(Value::Null))
        } else if args.reuse && file.exists() {
            let r = read_report(&file);
            if let Ok(r) = &r {
                let p = &r["provenance"];
                eprintln!(
                    "bench all: {name}: reusing {} as it is (commit {}, {})",
                    file.display(),
                    p["git_commit"],
                    p["date_utc"]
                );
            }
            ("reused", None, r)
        } else {
            eprintln!("bench all: running vssl bench {name} ...");
            let t = Instant::now();
            let r = run_one(name, &file).and_then(|()| read_report(&file));
            ("ran", Some(t.elapsed().as_secs_f64()), r)
        };
        let e = match outcome {
            Ok(report) => entry(name, &file, status, seconds, &report),
            Err(err) => {
                eprintln!("bench all: {name} FAILED: {err:#}");
                failed.push(name);
                let mut e = entry(name, &file, "failed", seconds, &Value::Null);
                e["reused"] = json!(status == "reused");
                e["error"] = json!(format!("{err:#}"));
                e
            }
        };
        benchmarks.insert(name.to_string(), e);
    }
    let targets = benchmarks
        .values()
        .flat_map(|b| b["targets"].as_array().cloned().unwrap_or_default());
    let (met, total) = targets.fold((0, 0), |(m, t), x| {
        (m + usize::from(x["met"] == true), t + 1)
    });
    let summary = json!({
        "benchmark": "all",
        "provenance": prov,
        "benchmarks": benchmarks,
        "targets_met": met,
        "targets_total": total,
    });
    let path = args.out_dir.join("all.json");
    write_json(&path, &summary)?;
    eprintln!(
        "bench all: {met} of {total} targets met; wrote {}",
        path.display()
    );
    if !args.no_doc {
        update_doc(&args.doc, &render(&summary))?;
        eprintln!(
            "bench all: rewrote the generated block of {}",
            args.doc.display()
        );
    }
    if !failed.is_empty() {
        bail!(
            "{} benchmark(s) failed: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Mebibytes from a byte count (null when it is not a number).
fn mib(bytes: &Value) -> Value {
    bytes.as_f64().map_or(Value::Null, |b| json!(b / MIB))
}

/// `eval`'s headline: frames/s and peak RSS per preset, over its DAVIS sequences and over its
/// synthetic videos apart (`<preset>_davis`, `<preset>_synth`).
fn eval_headline(results: &[Value]) -> Map<String, Value> {
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::new();
    for r in results {
        let Some(preset) = r["preset"].as_str() else {
            continue;
        };
        let synth = r["sequence"]
            .as_str()
            .is_some_and(|s| s.starts_with("synth"));
        let key = format!("{preset}_{}", if synth { "synth" } else { "davis" });
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let figures = |mine: &[&Value]| {
        let timed = mine
            .iter()
            .filter_map(|r| Some((r["frames"].as_f64()?, r["seconds"].as_f64()?)));
        let (frames, secs) = timed.fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let peak = mine
            .iter()
            .filter_map(|r| r["peak_rss_bytes"].as_f64())
            .reduce(f64::max);
        json!({
            "frames_per_second": (secs > 0.0).then(|| frames / secs),
            "peak_rss_mib": peak.map(|b| b / MIB),
        })
    };
    groups
        .into_iter()
        .map(|(key, mine)| (key, figures(&mine)))
        .collect()
}

/// A few key figures of one benchmark's report (`bench` is its subcommand name), per
/// configuration, or per preset and input for `eval`. A missing field gives null.
pub fn headline(bench: &str, report: &Value) -> Value {
    let results = report["results"].as_array().map_or(&[][..], Vec::as_slice);
    let mut h = Map::new();
    if bench == "eval" {
        return Value::Object(eval_headline(results));
    }
    for r in results {
        let Some(name) = r["name"].as_str() else {
            continue;
        };
        let rss = mib(&r["peak_rss_bytes"]);
        let figures = match bench {
            "core" => json!({"seconds": r["seconds_median"], "peak_rss_mib": rss}),
            "data" if r.get("skipped").is_some() => json!({"skipped": true}),
            "data" if name == "loader" => json!({
                "frames_per_second": r["frames_per_second"],
                "batches_per_second": r["batches_per_second"],
                "peak_rss_mib": rss,
            }),
            "data" => json!({"frames_per_second": r["frames_per_second"], "peak_rss_mib": rss}),
            "train-step" if name == "conv_gemm" => json!({"throughput_vs_gemm": r["ratio"]}),
            "train-step" => json!({
                "seconds": r["seconds_median"],
                "ratio_to_pytorch": r["ratio_to_pytorch"],
                "peak_rss_mib": rss,
            }),
            "step" => json!({
                "seconds": r["seconds_median"],
                "time_ratio_official": r["official_here"]["time_ratio"],
                "memory_ratio_official": r["official_here"]["memory_ratio"],
                "peak_rss_mib": rss,
            }),
            _ => continue,
        };
        h.insert(name.to_string(), figures);
    }
    Value::Object(h)
}

/// `v` with about three significant digits.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        a if a >= 0.001 || a == 0.0 => format!("{v:.3}"),
        _ => format!("{v:.2e}"),
    }
}

/// A table cell: `|` escaped, one line.
fn esc(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// One row of the target table: benchmark | target | value | wanted | met (✓, ✗, or — when
/// not measured). Byte counts of RSS targets show in MiB.
pub fn target_row(bench: &str, t: &Value) -> String {
    let name = t["name"].as_str().unwrap_or("?");
    let cell = |v: &Value| match v {
        Value::Null => "—".to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if name.contains("RSS") && x.abs() >= MIB => format!("{:.0} MiB", x / MIB),
            Some(x) => num(x),
            None => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let met = match &t["met"] {
        Value::Bool(true) => "✓",
        Value::Bool(false) => "✗",
        _ => "—",
    };
    let (value, wanted) = (cell(&t["value"]), cell(&t["target"]));
    format!(
        "| {bench} | {} | {} | {} | {met} |",
        esc(name),
        esc(&value),
        esc(&wanted)
    )
}

/// How each headline figure reads, in the order shown: (key, unit).
const UNITS: [(&str, &str); 8] = [
    ("seconds", " s"),
    ("frames_per_second", " frames/s"),
    ("batches_per_second", " batches/s"),
    ("ratio_to_pytorch", "x PyTorch's time"),
    ("time_ratio_official", "x the official time"),
    ("memory_ratio_official", "x the official peak"),
    ("throughput_vs_gemm", "x the GEMM's throughput"),
    ("peak_rss_mib", " MiB peak"),
];

/// The headline figures of one benchmark as one line of text (null figures left out).
fn figures(headline: &Value) -> String {
    let Some(configs) = headline.as_object().filter(|c| !c.is_empty()) else {
        return "no figures".into();
    };
    let parts = configs.iter().map(|(name, f)| {
        if f["skipped"] == true {
            return format!("`{name}` skipped");
        }
        let shown: Vec<String> = UNITS
            .iter()
            .filter_map(|(k, unit)| Some(format!("{}{unit}", num(f[*k].as_f64()?))))
            .collect();
        let shown = if shown.is_empty() {
            "—".to_string()
        } else {
            shown.join(", ")
        };
        format!("`{name}` {shown}")
    });
    parts.collect::<Vec<_>>().join("; ")
}

/// A provenance field as text ("unknown" when missing).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "unknown".into(),
        other => other.to_string(),
    }
}

/// A commit, shortened to 12 hex digits (keeping a `-dirty` suffix).
fn short(commit: &Value) -> String {
    let c = text(commit);
    match c.get(..12) {
        Some(h) if c.len() > 12 => {
            format!("{h}{}", if c.ends_with("-dirty") { "-dirty" } else { "" })
        }
        _ => c,
    }
}

/// The generated block's body (between the markers) from `all.json`'s value.
pub fn render(summary: &Value) -> String {
    let p = &summary["provenance"];
    let features: Vec<&str> = p["cpu_features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = String::from(
        "<!-- generated by `cargo xtask bench` (vssl bench all): edit outside the markers only -->\n\n",
    );
    out += "## Latest full run (`cargo xtask bench`)\n\n";
    out += &format!(
        "Machine: {}, {} logical CPUs, {} compute threads; CPU features: {}; {}/{}; {} build of vssl {} at commit `{}`; started {} (load average {}).\n\n",
        text(&p["cpu_model"]),
        text(&p["logical_cpus"]),
        text(&p["threads"]),
        if features.is_empty() {
            "none detected".to_string()
        } else {
            features.join(", ")
        },
        text(&p["os"]),
        text(&p["arch"]),
        text(&p["build_profile"]),
        text(&p["vssl_version"]),
        short(&p["git_commit"]),
        text(&p["date_utc"]),
        text(&p["load_average_at_start"]),
    );
    out += "| benchmark | target | value | wanted | met |\n|---|---|---|---|---|\n";
    let mut lines = String::new();
    for (name, _) in BENCHMARKS {
        let b = &summary["benchmarks"][name];
        let status = b["status"].as_str().unwrap_or("skipped");
        for t in b["targets"].as_array().into_iter().flatten() {
            out += &target_row(name, t);
            out.push('\n');
        }
        if status == "failed" {
            out += &format!("| {name} | did not run: failed (see below) | — | — | ✗ |\n");
        }
        let bp = &b["provenance"];
        lines += &match status {
            "skipped" => format!("- **{name}**: not run (`--only` / `--skip`).\n"),
            "failed" => {
                let error = b["error"].as_str().and_then(|e| e.lines().next());
                let error: String = error.unwrap_or("").chars().take(200).collect();
                format!("- **{name}**: **failed**: {}\n", esc(&error))
            }
            _ => format!(
                "- **{name}** (`{}`, {}, commit `{}`, {}): {}.\n",
                text(&b["file"]),
                match b["seconds"].as_f64() {
                    Some(s) if status == "ran" => format!("ran in {s:.0} s"),
                    _ => "reused".to_string(),
                },
                short(&bp["git_commit"]),
                text(&bp["date_utc"]),
                figures(&b["headline"]),
            ),
        };
    }
    out += &format!(
        "\n**{} of {} targets met.**\n\n{lines}",
        text(&summary["targets_met"]),
        text(&summary["targets_total"])
    );
    out
}

/// Every line of `doc` with the byte offset where it starts (newline included in the line).
fn line_spans(doc: &str) -> Vec<(usize, &str)> {
    let mut start = 0;
    doc.split_inclusive('\n')
        .map(|l| {
            let s = start;
            start += l.len();
            (s, l)
        })
        .collect()
}

/// `doc` with the block between the [`BEGIN`] and [`END`] lines replaced by `body` (which ends
/// with a newline); when the page has no markers, they go after the first heading's intro
/// paragraph (at the top when it has no heading). Every byte outside the markers is kept.
pub fn replace_block(doc: &str, body: &str) -> Result<String> {
    let nl = if body.ends_with('\n') { "" } else { "\n" };
    let block = format!("{BEGIN}\n{body}{nl}{END}");
    let lines = line_spans(doc);
    let begin = lines.iter().find(|(_, l)| l.trim() == BEGIN);
    let end = lines.iter().find(|(_, l)| l.trim() == END);
    match (begin, end) {
        (Some(&(b, _)), Some(&(e, line))) if e > b => {
            let after = e + line.trim_end_matches(['\r', '\n']).len();
            Ok(format!("{}{block}{}", &doc[..b], &doc[after..]))
        }
        (None, None) => {
            let heading = lines.iter().position(|(_, l)| l.starts_with('#'));
            let mut i = heading.map_or(0, |h| h + 1);
            if heading.is_some() {
                while lines.get(i).is_some_and(|(_, l)| l.trim().is_empty()) {
                    i += 1;
                }
                while lines
                    .get(i)
                    .is_some_and(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
                {
                    i += 1;
                }
            }
            let (head, tail) = doc.split_at(lines.get(i).map_or(doc.len(), |(s, _)| *s));
            let before = match head {
                "" => "",
                h if h.ends_with('\n') => "\n",
                _ => "\n\n",
            };
            let blank_next = tail.is_empty() || tail.starts_with('\n') || tail.starts_with("\r\n");
            let after = if blank_next { "\n" } else { "\n\n" };
            Ok(format!("{head}{before}{block}{after}{tail}"))
        }
        _ => bail!("the page has one bench:all marker without the other, or they are out of order"),
    }
}

/// Rewrites the generated block of the page at `path` (created when absent), atomically.
fn update_doc(path: &Path, body: &str) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let new =
        replace_block(&old, body).with_context(|| format!("cannot update {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    vssl_core::io::write_atomic(path, new.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_the_block_keeps_every_byte_outside() {
        let head = "# B\n\nintro\n\n";
        let tail = "\n\n## core\n\n| a | b |\r\ntrailing  spaces  \n";
        let doc = format!("{head}{BEGIN}\nold text\n{END}{tail}");
        let new = replace_block(&doc, "new\n").unwrap();
        assert_eq!(new, format!("{head}{BEGIN}\nnew\n{END}{tail}"));
        assert_eq!(replace_block(&new, "new\n").unwrap(), new);
        assert_eq!(replace_block(&doc, "new").unwrap(), new);
        // A marker quoted inside a line is not a marker.
        let quoted = format!("see `{BEGIN}` here\n{doc}");
        assert!(
            replace_block(&quoted, "x\n")
                .unwrap()
                .starts_with(&format!("see `{BEGIN}` here\n{head}"))
        );
        assert!(replace_block(&format!("{END}\n{BEGIN}\n"), "x\n").is_err());
        assert!(replace_block(&format!("# B\n{BEGIN}\n"), "x\n").is_err());
    }

    #[test]
    fn markers_go_after_the_intro_when_absent() {
        let doc = "# Benchmarks\n\nIntro one\nintro two.\n\n## Machine\n\ntext\n";
        let new = replace_block(doc, "body\n").unwrap();
        let want = format!(
            "# Benchmarks\n\nIntro one\nintro two.\n\n{BEGIN}\nbody\n{END}\n\n## Machine\n\ntext\n"
        );
        assert_eq!(new, want);
        assert_eq!(replace_block(&new, "body\n").unwrap(), want);
        assert_eq!(
            replace_block("", "b\n").unwrap(),
            format!("{BEGIN}\nb\n{END}\n")
        );
        assert_eq!(
            replace_block("# T\n## U\n", "b\n").unwrap(),
            format!("# T\n\n{BEGIN}\nb\n{END}\n\n## U\n")
        );
    }

    #[test]
    fn target_rows_show_met_and_missing() {
        let crw = json!({"met": false, "name": "crw frames/s ≥ 1", "target": 1.0, "value": 0.7947806795964582});
        assert_eq!(
            target_row("eval", &crw),
            "| eval | crw frames/s ≥ 1 | 0.795 | 1.00 | ✗ |"
        );
        let rss = json!({"met": true, "name": "crw peak RSS ≤ 2 GiB (DAVIS sequences)", "target": 2147483648.0, "value": 515641344.0});
        assert_eq!(
            target_row("eval", &rss),
            "| eval | crw peak RSS ≤ 2 GiB (DAVIS sequences) | 492 MiB | 2048 MiB | ✓ |"
        );
        let none = json!({"name": "a | b", "value": null, "target": ">= 1.0", "met": null});
        assert_eq!(
            target_row("data", &none),
            "| data | a \\| b | — | >= 1.0 | — |"
        );
        let core = json!({"name": "topk speed-up", "value": 21.3, "target": ">= 5", "met": true});
        assert_eq!(
            target_row("core", &core),
            "| core | topk speed-up | 21.3 | >= 5 | ✓ |"
        );
    }

    #[test]
    fn eval_headline_per_preset_from_the_real_shape() {
        let report = json!({"benchmark": "eval", "results": [
            {"frames": 50, "frames_per_second": 0.11715181189206968, "name": "contrastcorr_blackswan", "peak_rss_bytes": 1031995392, "preset": "contrastcorr", "seconds": 426.796642685, "sequence": "blackswan"},
            {"frames": 40, "frames_per_second": 0.11199188072442642, "name": "contrastcorr_car-shadow", "peak_rss_bytes": 1050320896, "preset": "contrastcorr", "seconds": 357.168749567, "sequence": "car-shadow"},
            {"frames": 100, "frames_per_second": 2.130179881112674, "name": "contrastcorr_synth100", "peak_rss_bytes": 200028160, "preset": "contrastcorr", "seconds": 46.944392296, "sequence": "synth100"},
            {"frames": 100, "name": "crw_synth100", "preset": "crw", "sequence": "synth100"},
        ]});
        let h = headline("eval", &report);
        let fps = h["contrastcorr_davis"]["frames_per_second"]
            .as_f64()
            .unwrap();
        assert!(
            (fps - 90.0 / (426.796642685 + 357.168749567)).abs() < 1e-12,
            "{h}"
        );
        assert_eq!(
            h["contrastcorr_davis"]["peak_rss_mib"],
            json!(1050320896.0 / MIB)
        );
        assert!(
            (h["contrastcorr_synth"]["frames_per_second"]
                .as_f64()
                .unwrap()
                - 2.130179881112674)
                .abs()
                < 1e-12
        );
        // crw has no DAVIS results, and its synthetic one lacks seconds and RSS: nulls.
        assert!(h.get("crw_davis").is_none());
        assert_eq!(
            h["crw_synth"],
            json!({"frames_per_second": null, "peak_rss_mib": null})
        );
    }

    #[test]
    fn step_and_train_step_headlines_from_the_real_shape() {
        let step = json!({"results": [
            {"name": "main_b2", "seconds_median": 16.652417357, "peak_rss_bytes": 1603067904,
             "official_here": {"memory_ratio": 0.482851778313253, "peak_bytes": 3320000000.0, "seconds": 17.29, "time_ratio": 0.9631241964719492}},
            {"name": "main_b2_lab", "seconds_median": 10.834713281, "peak_rss_bytes": 1492897792, "official_here": null},
        ]});
        let h = headline("step", &step);
        assert_eq!(h["main_b2"]["seconds"], json!(16.652417357));
        assert_eq!(
            h["main_b2"]["time_ratio_official"],
            json!(0.9631241964719492)
        );
        assert_eq!(
            h["main_b2"]["memory_ratio_official"],
            json!(0.482851778313253)
        );
        assert_eq!(h["main_b2_lab"]["time_ratio_official"], Value::Null);
        assert_eq!(
            figures(&h),
            "`main_b2` 16.7 s, 0.963x the official time, 0.483x the official peak, 1529 MiB peak; `main_b2_lab` 10.8 s, 1424 MiB peak"
        );
        let ts = json!({"results": [
            {"name": "tv_b8", "seconds_median": 1.384633818, "ratio_to_pytorch": 1.2080587640568474, "peak_rss_bytes": 669573120},
            {"name": "conv_gemm", "ratio": 1.287415824561106, "peak_rss_bytes": 95027200},
        ]});
        let h = headline("train-step", &ts);
        assert_eq!(h["tv_b8"]["ratio_to_pytorch"], json!(1.2080587640568474));
        assert_eq!(
            h["conv_gemm"],
            json!({"throughput_vs_gemm": 1.287415824561106})
        );
    }

    #[test]
    fn missing_fields_give_null_not_a_panic() {
        let h = headline(
            "core",
            &json!({"results": [{"name": "topk_select"}, 3, {"no": "name"}]}),
        );
        assert_eq!(
            h,
            json!({"topk_select": {"seconds": null, "peak_rss_mib": null}})
        );
        assert_eq!(
            headline(
                "data",
                &json!({"results": [{"name": "pyav_opencv", "skipped": "no python3"}]})
            ),
            json!({"pyav_opencv": {"skipped": true}})
        );
        for b in ["core", "data", "train-step", "step", "eval", "other"] {
            assert_eq!(headline(b, &Value::Null), json!({}));
            assert_eq!(headline(b, &json!({"results": "oops"})), json!({}));
        }
        assert_eq!(figures(&json!({})), "no figures");
    }

    #[test]
    fn render_lists_targets_failures_and_reuse() {
        let summary = json!({
            "provenance": {"cpu_model": "AMD EPYC", "cpu_features": ["avx2", "fma"], "git_commit": "99a7e2ee6926e36649e294c073a8467324122844-dirty"},
            "benchmarks": {
                "core": {"status": "reused", "file": "target/bench/core.json", "provenance": {"git_commit": "776861e7eb5c2d46", "date_utc": "2026-12-01T15:29:11Z"},
                         "targets": [{"name": "t1", "value": 2.0, "target": ">= 1", "met": true}, {"name": "t2", "value": 0.5, "target": ">= 1", "met": false}],
                         "headline": {"topk_select": {"seconds": 0.049}}},
                "data": {"status": "failed", "error": "vssl bench data failed: no clip\nmore"},
            },
            "targets_met": 1, "targets_total": 2,
        });
        let md = render(&summary);
        assert!(
            md.contains("Machine: AMD EPYC, unknown logical CPUs"),
            "{md}"
        );
        assert!(
            md.contains("CPU features: avx2, fma;") && md.contains("commit `99a7e2ee6926-dirty`"),
            "{md}"
        );
        assert!(md.contains("| core | t2 | 0.500 | >= 1 | ✗ |\n"), "{md}");
        assert!(
            md.contains("| data | did not run: failed (see below) | — | — | ✗ |"),
            "{md}"
        );
        assert!(md.contains("**1 of 2 targets met.**"), "{md}");
        assert!(md.contains("- **core** (`target/bench/core.json`, reused, commit `776861e7eb5c`, 2026-12-01T15:29:11Z): `topk_select` 0.049 s.\n"), "{md}");
        assert!(
            md.contains("- **data**: **failed**: vssl bench data failed: no clip\n"),
            "{md}"
        );
        assert!(md.contains("- **eval**: not run"), "{md}");
    }

    #[test]
    fn options_parse_with_their_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            all: AllArgs,
        }
        let a = Cli::try_parse_from(["all"]).unwrap().all;
        assert!(a.only.is_none() && a.skip.is_empty() && !a.reuse && !a.no_doc);
        assert_eq!(a.out_dir, PathBuf::from("target/bench"));
        assert_eq!(a.doc, PathBuf::from("docs/benchmarks.md"));
        let argv = [
            "all",
            "--only",
            "step,eval",
            "--skip",
            "eval",
            "--reuse",
            "--no-doc",
        ];
        let a = Cli::try_parse_from(argv).unwrap().all;
        assert_eq!(a.only.unwrap(), ["step", "eval"]);
        assert_eq!(a.skip, ["eval"]);
        assert!(a.reuse && a.no_doc);
    }

    #[test]
    fn selection_follows_only_and_skip() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            selected(None, &[]).unwrap(),
            ["core", "data", "train-step", "step", "eval"]
        );
        assert_eq!(
            selected(Some(&s(&["eval", "train_step"])), &s(&["eval"])).unwrap(),
            ["train-step"]
        );
        assert!(selected(None, &s(&["nope"])).is_err());
    }
}
