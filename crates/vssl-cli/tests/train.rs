//! `vssl train` as a process: Ctrl-C, a kill -9 at the most delicate moment of a checkpoint
//! write, and the errors a person sees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use vssl_train::checkpoint;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const VSSL: &str = env!("CARGO_BIN_EXE_vssl");

/// Colourisation on 6 synthetic 64² clips, batch 2 (3 steps per epoch), 50 epochs, no
/// evaluation.
const TINY: &str = r#"
name = "cli-tiny"
[model]
width = 0.125
[step]
method = "colorization"
[colour]
space = "lab"
[data]
source = "synthetic"
batch_size = 2
workers = 2
warmup_crop = 64
[data.synthetic]
clips = 6
preset = "easy"
size = 64
frames = 4
[schedule]
warmup_epochs = 50
main_epochs = 0
[checkpoint]
every_steps = 1000
[eval]
enabled = false
"#;

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("vssl-cli-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("tiny.toml"), TINY)?;
    Ok(dir)
}

fn vssl(args: &[&str]) -> Result<Output> {
    Ok(Command::new(VSSL).args(args).output()?)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > limit {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn latest(run: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(run.join("latest"))?
        .trim()
        .to_string())
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_kill_9_between_temporary_file_and_rename_keeps_the_previous_checkpoint() -> Result<()> {
    let dir = scratch("kill9")?;
    let run = dir.join("run");
    let (cfg, run_s) = (dir.join("tiny.toml"), run.display().to_string());
    let cfg_s = cfg.display().to_string();
    let o = vssl(&[
        "train",
        "--config",
        &cfg_s,
        "--run",
        &run_s,
        "--set",
        "schedule.max_steps=2",
    ])?;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(latest(&run)?, "checkpoint-2.safetensors");
    let good = std::fs::read(run.join("checkpoint-2.safetensors"))?;

    // Resume towards step 4 and kill the process while its checkpoint is a complete temporary
    // file that is not yet renamed.
    let marker = dir.join("paused");
    let mut child = Command::new(VSSL)
        .args([
            "train",
            "--run",
            &run_s,
            "--resume",
            "--set",
            "schedule.max_steps=4",
        ])
        .env(checkpoint::PAUSE_BEFORE_RENAME_ENV, &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let waited = wait_for(
        "the pause before the rename",
        Duration::from_secs(120),
        || marker.exists(),
    );
    child.kill()?; // SIGKILL
    child.wait()?;
    waited?;
    let names: Vec<String> = std::fs::read_dir(&run)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(".checkpoint-4.safetensors.tmp")),
        "the killed write left its temporary file: {names:?}"
    );
    assert!(!run.join("checkpoint-4.safetensors").exists());
    assert_eq!(latest(&run)?, "checkpoint-2.safetensors");
    assert_eq!(std::fs::read(run.join("checkpoint-2.safetensors"))?, good);
    let c = checkpoint::load_latest(&run, &Device::Cpu)?.ok_or("no checkpoint")?;
    assert_eq!(c.state.step, 2);

    // The next resume cleans up and continues from step 2.
    let o = vssl(&[
        "train",
        "--run",
        &run_s,
        "--resume",
        "--set",
        "schedule.max_steps=4",
    ])?;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(latest(&run)?, "checkpoint-4.safetensors");
    assert_eq!(lines(&run.join("metrics.jsonl")), 4);
    let left = std::fs::read_dir(&run)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .count();
    assert_eq!(left, 0, "temporary files removed");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_cleanly() -> Result<()> {
    let dir = scratch("sigint")?;
    let run = dir.join("run");
    let child = Command::new(VSSL)
        .args(["train", "--config"])
        .arg(dir.join("tiny.toml"))
        .arg("--run")
        .arg(&run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let metrics = run.join("metrics.jsonl");
    let waited = wait_for("two steps", Duration::from_secs(120), || {
        lines(&metrics) >= 2
    });
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status()?;
    let out = child.wait_with_output()?;
    waited?;
    assert!(kill.success());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    let steps = lines(&metrics);
    assert!(steps < 150, "stopped early, after {steps} steps");
    assert_eq!(latest(&run)?, format!("checkpoint-{steps}.safetensors"));
    let c = checkpoint::load_latest(&run, &Device::Cpu)?.ok_or("no checkpoint")?;
    assert_eq!(c.state.step as usize, steps);
    assert!(!c.state.finished);
    assert!(run.join("loss.png").is_file());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn mistakes_get_clear_errors() -> Result<()> {
    let dir = scratch("errors")?;
    let cfg = dir.join("tiny.toml").display().to_string();
    let run = dir.join("run").display().to_string();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &[
                "train",
                "--config",
                &cfg,
                "--run",
                &run,
                "--set",
                "model.widht=1",
            ],
            &["widht"],
        ),
        (
            &[
                "train", "--config", &cfg, "--run", &run, "--device", "cuda:0",
            ],
            &["cuda", "feature"],
        ),
        (&["train", "--resume"], &["--run"]),
        (&["train", "--config", "/no/such.toml"], &["/no/such.toml"]),
        (
            &["train", "--run", &run, "--resume", "--set", "schedule.lr=1"],
            &["config.toml"],
        ),
    ];
    for (args, want) in cases {
        let o = vssl(args)?;
        assert!(!o.status.success(), "{args:?} should fail");
        let t = text(&o);
        for w in want {
            assert!(t.contains(w), "{args:?}: {w:?} not in {t}");
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
