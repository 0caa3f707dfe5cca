//! `vssl bench`: benchmarks that write JSON with their provenance.
//!
//! Every benchmark runs each configuration in a separate child process (this same binary, with
//! `--child NAME`), so that the peak resident memory it reports belongs to that configuration
//! alone, inputs included. Speed and memory targets are checked here, never in timed tests.

pub mod all;
pub mod core;
pub mod data;
pub mod eval;
pub mod step;
pub mod train_step;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Where the machine, the build and the code came from, for every benchmark file.
pub fn provenance() -> Value {
    json!({
        "git_commit": git_commit(),
        "date_utc": utc_now(),
        "cpu_model": cpu_model(),
        "threads": candle_core::utils::get_num_threads(),
        "rayon_threads": rayon::current_num_threads(),
        "build_profile": build_profile(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "cpu_features": cpu_features(),
        "vssl_version": env!("CARGO_PKG_VERSION"),
        "load_average_at_start": load_average(),
    })
}

/// The 1-minute load average (Linux), to show when other work shared the machine.
fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(Value::Null, |v| json!(v))
}

fn git_commit() -> Value {
    if let Ok(c) = std::env::var("VSSL_GIT_COMMIT") {
        return json!(c);
    }
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| json!(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or(Value::Null)
}

fn build_profile() -> String {
    std::env::var("VSSL_BUILD_PROFILE").unwrap_or_else(|_| {
        if cfg!(debug_assertions) {
            "debug".into()
        } else {
            "release".into()
        }
    })
}

fn cpu_model() -> Value {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| json!(v.trim()))
        })
        .unwrap_or(Value::Null)
}

fn cpu_features() -> Value {
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            f.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            f.push("fma");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            f.push("avx512f");
        }
    }
    json!(f)
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), or `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs `f` `repeats` times after one warm-up call and returns the seconds of each timed run.
pub fn time_runs(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?;
    let mut runs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        f()?;
        runs.push(t.elapsed().as_secs_f64());
    }
    Ok(runs)
}

/// Median of `v` (which must not be empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Runs `vssl bench <bench> --child <config>` and parses the one JSON object it prints.
pub fn run_child(bench: &str, config: &str, extra: &[String]) -> Result<Value> {
    let exe = std::env::current_exe().context("cannot find the vssl executable")?;
    let out = Command::new(&exe)
        .args(["bench", bench, "--child", config])
        .args(extra)
        .output()
        .with_context(|| format!("cannot run {} for {bench}/{config}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "benchmark {bench}/{config} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    last_json_line(&out.stdout, &format!("benchmark {bench}/{config}"))
}

/// The last line of `stdout` that holds a JSON object (what a child process reports).
pub fn last_json_line(stdout: &[u8], what: &str) -> Result<Value> {
    let stdout = String::from_utf8_lossy(stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{what} printed no JSON: {stdout}"))?;
    serde_json::from_str(line).with_context(|| format!("bad JSON from {what}: {line}"))
}

/// Writes `value` as pretty JSON to `path`, atomically (temporary file, then rename).
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value)? + "\n";
    vssl_core::io::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// `target/bench/<name>.json` under the current directory, unless `out` is given.
pub fn out_path(out: Option<PathBuf>, name: &str) -> PathBuf {
    out.unwrap_or_else(|| {
        PathBuf::from("target")
            .join("bench")
            .join(format!("{name}.json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_now_is_iso8601() {
        let s = utc_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(
            s.starts_with("20") && s.ends_with('Z') && &s[10..11] == "T",
            "{s}"
        );
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn peak_rss_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 1 << 20));
        }
    }
}
