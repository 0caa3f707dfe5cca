//! Atomic file writes: whatever happens, a reader finds either the old file or the new one,
//! never a mixture.
//!
//! The bytes go to a temporary file in the same folder (so the rename cannot cross a file
//! system), which is flushed to disk, then renamed over the destination, and the folder is
//! synced so that the rename itself survives a power loss. A process killed at any point leaves
//! the previous file intact; the temporary file it may leave behind starts with `.` and ends in
//! `.tmp<pid>` ([`is_temporary`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically. Errors name `path`.
///
/// # Errors
/// [`Error::File`] when the folder does not exist or a write, sync or rename fails (the
/// temporary file is removed then).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, |_| Ok(()))
}

/// [`write_atomic`] with a hook run after the temporary file is written and synced and before it
/// is renamed (given the temporary file's path); an error from the hook abandons the write.
///
/// # Errors
/// As [`write_atomic`], and the hook's error.
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::file(path, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_then_rename(path, &tmp, bytes, before_rename);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    path: &Path,
    tmp: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let werr = |e: std::io::Error| Error::file(path, format!("cannot write: {e}"));
    let mut f = std::fs::File::create(tmp).map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    drop(f);
    before_rename(tmp)?;
    std::fs::rename(tmp, path).map_err(werr)?;
    // Make the rename itself durable where the platform allows opening a folder.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether `name` is a temporary file left by an interrupted [`write_atomic`].
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("vssl-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // A failing hook leaves the old file and no temporary file.
        let r = write_atomic_with(&p, b"three", |tmp| {
            assert!(tmp.exists());
            assert!(is_temporary(&tmp.file_name().unwrap().to_string_lossy()));
            Err(Error::op("test", "stop"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(write_atomic(&dir.join("missing").join("x"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names() {
        assert!(is_temporary(".checkpoint-3.safetensors.tmp123"));
        assert!(!is_temporary("checkpoint-3.safetensors"));
        assert!(!is_temporary(".hidden.tmp"));
    }
}
