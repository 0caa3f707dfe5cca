//! Project automation for vssl: `cargo xtask <command>`.
//!
//! xtask links no product crate, so it builds on a bare machine. Before anything needs them it
//! installs the Debian packages the build and the tests use (apt-get when running as root;
//! otherwise it prints the exact command and exits non-zero), then runs cargo or the release
//! `vssl` binary.
//!
//! Commands:
//! - `test`: everything CI runs: `cargo fmt --check`, clippy with `-D warnings`, `cargo doc`
//!   with `-D warnings`, and every test of the workspace (test profile: opt-level 3).
//! - `train`, `eval`, `bench`, `data`, `export`: build `vssl` in release and run
//!   `vssl <command> ...`. While it runs, xtask ignores Ctrl-C: the terminal delivers it to
//!   `vssl` too, which stops training with a checkpoint, and xtask waits for it to finish.
//!   `bench` alone (or followed by options only, e.g. `bench --reuse`) runs `vssl bench all`:
//!   every benchmark, then `target/bench/all.json` and the generated summary block of
//!   `docs/benchmarks.md`; `bench <name> ...` runs that one benchmark.
//! - `deps`: only install the system packages.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Debian packages and why each is needed. Only the missing ones are installed.
const SYSTEM_PACKAGES: &[(&str, &str)] = &[
    (
        "pkg-config",
        "locates the FFmpeg libraries for vssl-data's `video` feature",
    ),
    (
        "clang",
        "bindgen (ffmpeg-sys-next) parses the FFmpeg headers",
    ),
    (
        "libclang-dev",
        "bindgen needs libclang and its builtin headers",
    ),
    ("libavcodec-dev", "FFmpeg decoding (`video` feature)"),
    ("libavformat-dev", "FFmpeg demuxing (`video` feature)"),
    ("libavutil-dev", "FFmpeg utilities (`video` feature)"),
    (
        "libswscale-dev",
        "FFmpeg resize and pixel formats (`video` feature)",
    ),
    (
        "libswresample-dev",
        "linked by ffmpeg-next (`video` feature)",
    ),
    ("libavfilter-dev", "linked by ffmpeg-next (`video` feature)"),
    ("libavdevice-dev", "linked by ffmpeg-next (`video` feature)"),
    ("ffmpeg", "the CLI makes test clips, including broken ones"),
];

const USAGE: &str = "\
usage: cargo xtask <command> [args...]

commands:
  test               fmt --check, clippy -D warnings, doc -D warnings, all tests (what CI runs)
  train [args...]    release build, then `vssl train [args...]`
  eval [args...]     release build, then `vssl eval [args...]`
  bench [args...]    release build, then `vssl bench [args...]` (e.g. `bench core`); with no
                     args, or options only (`bench --reuse`, `bench --only step,eval`),
                     `vssl bench all`: every benchmark, target/bench/all.json and the summary
                     in docs/benchmarks.md (`vssl bench all --help` lists the options)
  data [args...]     release build, then `vssl data [args...]`
  export [args...]   release build, then `vssl export [args...]` (a run's encoder for PyTorch)
  deps               install the Debian packages the build and tests need
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match cmd.as_str() {
        "test" => ensure_system_packages().and_then(|()| test(rest)),
        "train" | "eval" | "bench" | "data" | "export" => {
            ensure_system_packages().and_then(|()| run_vssl(cmd, &vssl_args(cmd, rest)))
        }
        "deps" => ensure_system_packages(),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's folder).
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd`, echoing it first; fails with its exit status.
fn run(mut cmd: Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// The packages of [`SYSTEM_PACKAGES`] that dpkg does not list as installed. `None` when this
/// is not a dpkg-based system (nothing can be checked there).
fn missing_packages() -> Option<Vec<&'static str>> {
    let names: Vec<&str> = SYSTEM_PACKAGES.iter().map(|(n, _)| *n).collect();
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Status}\n"])
        .args(&names)
        .output()
        .ok()?;
    // dpkg-query exits 1 when some package is unknown; its stdout still lists the known ones.
    let listed = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_suffix(" installed"))
        .collect();
    Some(
        names
            .into_iter()
            .filter(|n| !installed.iter().any(|i| i.split(':').next() == Some(n)))
            .collect(),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs the missing system packages (as root), or says exactly what to run.
fn ensure_system_packages() -> Result<(), String> {
    let Some(missing) = missing_packages() else {
        eprintln!(
            "xtask: dpkg-query not found; not a Debian system, so the FFmpeg development \
             packages cannot be checked. Install their equivalents yourself."
        );
        return Ok(());
    };
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    let install = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {list}"
    );
    if !is_root() {
        return Err(format!(
            "these Debian packages are missing: {list}\nrun as root:\n  {install}\nthen run cargo xtask again"
        ));
    }
    eprintln!("xtask: installing missing Debian packages: {list}");
    for (name, why) in SYSTEM_PACKAGES.iter().filter(|(n, _)| missing.contains(n)) {
        eprintln!("  {name}: {why}");
    }
    let mut update = Command::new("apt-get");
    update.arg("update").arg("-q");
    run(update)?;
    let mut inst = Command::new("apt-get");
    inst.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing);
    run(inst)?;
    match missing_packages() {
        Some(still) if !still.is_empty() => Err(format!(
            "apt-get finished but these are still missing: {}",
            still.join(" ")
        )),
        _ => Ok(()),
    }
}

/// What CI runs.
fn test(extra: &[String]) -> Result<(), String> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run(fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    // Optional features that need no system toolkit (never `cuda`/`metal`): lint and test them too.
    let mut clippy_hub = cargo();
    clippy_hub.args([
        "clippy",
        "-p",
        "vssl-model",
        "--features",
        "hub",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy_hub)?;

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;

    let mut tests = cargo();
    tests.args(["test", "--workspace", "--locked"]).args(extra);
    let mut hub = cargo();
    hub.args([
        "test",
        "-p",
        "vssl-model",
        "--features",
        "hub",
        "--test",
        "weights",
        "--locked",
    ])
    .args(extra);
    run_tests(vec![tests, hub])
}

/// Runs each `cargo test` command in turn, echoing its output, and closes with one line that sums
/// every test binary's `test result:` line (the per-binary lines end on doc-test runs that often
/// hold no test).
fn run_tests(cmds: Vec<Command>) -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for mut cmd in cmds {
        eprintln!("xtask: running {cmd:?}");
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start cargo test: {e}"))?;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line.map_err(|e| format!("cannot read cargo test output: {e}"))?;
                println!("{line}");
                if let Some(rest) = line.trim().strip_prefix("test result: ") {
                    for part in rest.split(';') {
                        let mut words = part.split_whitespace().rev();
                        let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                            continue;
                        };
                        let n: u64 = n.parse().unwrap_or(0);
                        match kind {
                            "passed" => passed += n,
                            "failed" => failed += n,
                            "ignored" => ignored += n,
                            _ => {}
                        }
                    }
                }
            }
        }
        let status = child
            .wait()
            .map_err(|e| format!("cargo test did not finish: {e}"))?;
        if !status.success() {
            failures.push(format!("{cmd:?} failed with {status}"));
        }
    }
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if failures.is_empty() && failed == 0 {
        Ok(())
    } else {
        Err(format!("cargo test failed: {}", failures.join("; ")))
    }
}

/// `git rev-parse HEAD` (with `-dirty` when the tree has changes), for benchmark provenance.
fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .current_dir(root())
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .current_dir(root())
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        commit.push_str("-dirty");
    }
    Some(commit)
}

/// The arguments after `vssl <cmd>`: `bench` with nothing after it, or with options only,
/// means `bench all` (help flags still go to `vssl bench`).
fn vssl_args(cmd: &str, rest: &[String]) -> Vec<String> {
    let options_only = rest
        .first()
        .is_none_or(|a| a.starts_with('-') && !matches!(a.as_str(), "-h" | "--help"));
    if cmd == "bench" && options_only {
        std::iter::once("all".to_string())
            .chain(rest.iter().cloned())
            .collect()
    } else {
        rest.to_vec()
    }
}

/// Builds the release `vssl` binary and runs `vssl <cmd> <args>`.
fn run_vssl(cmd: &str, args: &[String]) -> Result<(), String> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "vssl-cli",
        "--bin",
        "vssl",
    ]);
    run(build)?;
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let mut vssl = Command::new(target.join("release").join("vssl"));
    vssl.current_dir(root()).arg(cmd).args(args);
    if let Some(commit) = git_commit() {
        vssl.env("VSSL_GIT_COMMIT", commit);
    }
    vssl.env("VSSL_BUILD_PROFILE", "release");
    // Ctrl-C reaches the whole foreground process group: let `vssl` handle it (a checkpoint,
    // then a clean exit) and wait for it, instead of dying first and returning the prompt early.
    if let Err(e) = ctrlc::set_handler(|| {}) {
        eprintln!("xtask: cannot catch Ctrl-C ({e})");
    }
    run(vssl)
}
