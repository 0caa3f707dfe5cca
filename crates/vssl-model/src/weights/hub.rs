//! `hf:ORG/NAME[:FILE]` specs resolved in the local Hugging Face cache (feature `hub`).
//!
//! Only the cache is read; nothing is ever downloaded, whether `HF_HUB_OFFLINE=1` is set or not.

use std::path::{Path, PathBuf};

use vssl_core::{Error, Result};

/// The Hugging Face hub cache folder, as Python's `huggingface_hub` finds it: `HF_HUB_CACHE`,
/// else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
/// else `~/.cache/huggingface/hub`. `None` when none of these can be formed (no home folder).
pub fn hf_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// Resolves `ORG/NAME` and `FILE` in the hub cache at `cache`: reads `models--ORG--NAME/refs/main`
/// for the snapshot hash and returns `snapshots/<hash>/FILE` if it exists. The error says which
/// part is missing and how to fill the cache.
pub fn resolve_in_cache(cache: &Path, repo: &str, file: &str) -> Result<PathBuf> {
    let hf = hf_hub::Cache::new(cache.to_path_buf());
    if let Some(p) = hf.model(repo.to_string()).get(file) {
        return Ok(p);
    }
    // hf-hub only says "not there"; find out what is missing for the message.
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    let refs = folder.join("refs").join("main");
    let why = if !folder.is_dir() {
        format!("{} does not exist", folder.display())
    } else {
        match std::fs::read_to_string(&refs) {
            Err(_) => format!("{} is missing", refs.display()),
            Ok(hash) => {
                let snap = folder.join("snapshots").join(hash.trim());
                if hash.trim() != hash {
                    // hf-hub does not trim the ref; accept a trailing newline ourselves.
                    let p = snap.join(file);
                    if p.is_file() {
                        return Ok(p);
                    }
                }
                format!("{} is missing", snap.join(file).display())
            }
        }
    };
    Err(Error::file(
        cache,
        format!(
            "hf:{repo}:{file} is not in the local Hugging Face cache ({why}); nothing is \
             downloaded: fill the cache on a machine with network access, e.g. \
             `huggingface-cli download {repo} {file}` (with HF_HUB_CACHE/HF_HOME pointing here), \
             or pass a local path instead"
        ),
    ))
}
