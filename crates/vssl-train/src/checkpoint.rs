//! Checkpoints of a run folder: written atomically, the newest few kept, found again on resume.
//!
//! A checkpoint is **one** file, `checkpoint-<step>.safetensors`, so that it is complete or
//! absent, never half-written:
//! - tensors: the encoder's variables under `encoder.` (weights, biases, BatchNorm running
//!   statistics; torchvision's names after the prefix, which is what `vssl-eval` reads) and the
//!   optimizer's state (`adam.m.*`, `adam.v.*`, `adam.step.*`);
//! - metadata `vssl_state`: the [`RunState`] as JSON (step, epoch and batch position, seed,
//!   learning rate, phase, time).
//!
//! After the file is in place, `state.json` (the same state, for people and scripts) and the
//! `latest` pointer (the file's name) are replaced, each atomically, and checkpoints beyond the
//! newest `keep_last` are deleted. Killed at any moment, the folder still holds a loadable
//! checkpoint that `latest` names: the new file only replaces the pointer once it is complete.
//!
//! Randomness needs no saved generator state: every random draw of a run comes from a
//! counter-based stream keyed by (seed, epoch, index) ([`vssl_data::rng::sample_rng`]), so the
//! position (epoch, batch) *is* the RNG state.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};
use vssl_core::io::{is_temporary, write_atomic, write_atomic_with};
use vssl_core::{Error, Result};
use vssl_model::weights::TensorMap;

use crate::contrastcorr::Phase;

/// Metadata key of the run state inside a checkpoint file.
pub const STATE_KEY: &str = "vssl_state";
/// Format of [`RunState`]; bumped when its meaning changes.
pub const STATE_FORMAT: u32 = 1;
/// Test hook: when this environment variable names a file, [`save`] creates that file after the
/// checkpoint's temporary file is complete and waits there for 60 s before renaming it, so that a
/// test can kill the process at the most delicate moment. Never set it outside tests.
pub const PAUSE_BEFORE_RENAME_ENV: &str = "VSSL_TEST_PAUSE_BEFORE_RENAME";

/// Where a run stands: everything besides the tensors that a bit-exact resume needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Epoch of the next step.
    pub epoch: u64,
    /// Index, within that epoch, of the next batch.
    pub batch: u64,
    /// Run seed (the random streams are keyed by it, the epoch and the sample).
    pub seed: u64,
    /// Phase of the next step.
    pub phase: Phase,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Total loss of the last step (NaN before the first).
    pub last_loss: f64,
    /// Seconds spent training, over every session of the run.
    pub train_seconds: f64,
    /// Whether the run has done every step of its schedule.
    pub finished: bool,
}

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The file.
    pub path: PathBuf,
    /// Encoder and optimizer tensors.
    pub tensors: TensorMap,
    /// The run state.
    pub state: RunState,
}

/// The file name of step `step`'s checkpoint.
pub fn file_name(step: u64) -> String {
    format!("checkpoint-{step}.safetensors")
}

/// The step of a checkpoint file name, if it is one.
pub fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Writes a checkpoint of `tensors` and `state` into `dir` (see the [module docs](self)),
/// updates `state.json` and `latest`, and keeps the newest `keep_last` checkpoints. Returns the
/// checkpoint's path.
///
/// # Errors
/// [`Error::File`] naming the file that could not be written; the previous checkpoint and
/// pointer are then untouched.
pub fn save(
    dir: &Path,
    tensors: &TensorMap,
    state: &RunState,
    keep_last: usize,
) -> Result<PathBuf> {
    let path = dir.join(file_name(state.step));
    let json = serde_json::to_string(state)
        .map_err(|e| Error::file(&path, format!("cannot write the run state: {e}")))?;
    let meta = std::collections::HashMap::from([(STATE_KEY.to_string(), json)]);
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), Some(meta))
        .map_err(|e| Error::file(&path, format!("cannot serialise tensors: {e}")))?;
    write_atomic_with(&path, &bytes, |_tmp| {
        if let Some(marker) = std::env::var_os(PAUSE_BEFORE_RENAME_ENV) {
            std::fs::write(&marker, b"paused")
                .map_err(|e| Error::file(PathBuf::from(&marker), e.to_string()))?;
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        Ok(())
    })?;
    let pretty = serde_json::to_string_pretty(state)
        .map_err(|e| Error::file(dir.join("state.json"), e.to_string()))?;
    write_atomic(&dir.join("state.json"), (pretty + "\n").as_bytes())?;
    write_atomic(
        &dir.join("latest"),
        (file_name(state.step) + "\n").as_bytes(),
    )?;
    prune(dir, keep_last.max(1), state.step)?;
    Ok(path)
}

/// The checkpoint files of `dir` as (step, path), oldest first.
///
/// # Errors
/// [`Error::File`] when `dir` cannot be listed.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| step_of(&e.file_name().to_string_lossy()).map(|s| (s, e.path())))
        .collect();
    out.sort();
    Ok(out)
}

/// Deletes checkpoints beyond the newest `keep`, never the one of step `current`.
fn prune(dir: &Path, keep: usize, current: u64) -> Result<()> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep);
    for (step, path) in all.into_iter().take(excess) {
        if step != current {
            std::fs::remove_file(&path)
                .map_err(|e| Error::file(&path, format!("cannot delete an old checkpoint: {e}")))?;
        }
    }
    Ok(())
}

/// Removes temporary files left in `dir` by an interrupted write; returns how many.
///
/// # Errors
/// [`Error::File`] when `dir` cannot be listed or a file cannot be removed.
pub fn remove_temporaries(dir: &Path) -> Result<usize> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
    let mut n = 0;
    for e in entries.flatten() {
        if is_temporary(&e.file_name().to_string_lossy()) {
            let p = e.path();
            std::fs::remove_file(&p)
                .map_err(|err| Error::file(&p, format!("cannot remove: {err}")))?;
            n += 1;
        }
    }
    Ok(n)
}

/// The checkpoint `dir/latest` names (else the newest `checkpoint-<step>.safetensors`), loaded on
/// `device`. `None` when the folder holds no checkpoint.
///
/// # Errors
/// [`Error::File`] naming the file when `latest` names a missing file, or the checkpoint cannot
/// be read or holds no valid run state.
pub fn load_latest(dir: &Path, device: &Device) -> Result<Option<Checkpoint>> {
    let latest = dir.join("latest");
    let path = if latest.is_file() {
        let name = std::fs::read_to_string(&latest)
            .map_err(|e| Error::file(&latest, format!("cannot read: {e}")))?;
        let p = dir.join(name.trim());
        if !p.is_file() {
            return Err(Error::file(
                &latest,
                format!("names {}, which does not exist", p.display()),
            ));
        }
        p
    } else {
        match list(dir)?.pop() {
            Some((_, p)) => p,
            None => return Ok(None),
        }
    };
    load(&path, device).map(Some)
}

/// Loads one checkpoint file.
///
/// # Errors
/// [`Error::File`] naming `path` when it cannot be read, is not a safetensors file, or holds no
/// valid run state.
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| {
            Error::file(
                path,
                format!("no run state (metadata {STATE_KEY:?}): not a vssl training checkpoint"),
            )
        })?;
    let state: RunState =
        serde_json::from_str(json).map_err(|e| Error::file(path, format!("bad run state: {e}")))?;
    if state.format != STATE_FORMAT {
        return Err(Error::file(
            path,
            format!(
                "run state format {} (this build reads {STATE_FORMAT})",
                state.format
            ),
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| Error::file(path, format!("cannot load tensors: {e}")))?
        .into_iter()
        .collect();
    Ok(Checkpoint {
        path: path.to_path_buf(),
        tensors,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn state(step: u64) -> RunState {
        RunState {
            format: STATE_FORMAT,
            step,
            epoch: 1,
            batch: 2,
            seed: 3,
            phase: Phase::Warmup,
            lr: 1e-4,
            last_loss: 0.5,
            train_seconds: 1.0,
            finished: false,
        }
    }

    #[test]
    fn save_keeps_the_newest_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("vssl-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load_latest(&dir, &Device::Cpu).unwrap().is_none());
        for step in [10, 20, 30] {
            let mut t = TensorMap::new();
            t.insert(
                "encoder.w".into(),
                Tensor::new(&[step as f32, 1.5], &Device::Cpu).unwrap(),
            );
            save(&dir, &t, &state(step), 2).unwrap();
        }
        let steps: Vec<u64> = list(&dir).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, [20, 30]);
        let c = load_latest(&dir, &Device::Cpu).unwrap().unwrap();
        assert_eq!(c.state, state(30));
        assert_eq!(
            c.tensors["encoder.w"].to_vec1::<f32>().unwrap(),
            [30.0, 1.5]
        );
        let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
        assert_eq!(serde_json::from_str::<RunState>(&text).unwrap(), state(30));
        // A stray temporary file is removed; a pointer to a missing file is an error naming it.
        std::fs::write(dir.join(".checkpoint-40.safetensors.tmp99"), b"x").unwrap();
        assert_eq!(remove_temporaries(&dir).unwrap(), 1);
        std::fs::write(dir.join("latest"), "checkpoint-99.safetensors").unwrap();
        let e = load_latest(&dir, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("latest") && e.contains("checkpoint-99"), "{e}");
        // A safetensors file without the run state is refused.
        let plain = dir.join("plain.safetensors");
        vssl_model::weights::save_safetensors(&c.tensors, &plain).unwrap();
        let e = load(&plain, &Device::Cpu).unwrap_err().to_string();
        assert!(
            e.contains("plain.safetensors") && e.contains("run state"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
