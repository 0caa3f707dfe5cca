//! Weight import and export: safetensors, PyTorch `.pth` (zip and legacy formats), loading into
//! a [`VarMap`] with strict key checks, torchvision-compatible export, and `hf:` specs.
//!
//! ```no_run
//! # fn main() -> vssl_core::Result<()> {
//! use std::path::Path;
//! use candle_core::Device;
//! use vssl_model::weights;
//!
//! // A ContrastCorr training checkpoint: {'epoch': .., 'state_dict': {'module.gray_encoder.*': ..}}
//! let path = Path::new("checkpoint.pth.tar");
//! let all = weights::load_tensors(path, &Device::Cpu)?;
//! let encoder = weights::strip_prefix(all, "module.gray_encoder.");
//! let varmap = candle_nn::VarMap::new();
//! // ... build the model on `varmap`, then:
//! let report = weights::load_into_varmap(&varmap, &encoder, path)?;
//! println!("set {} tensors", report.set);
//! # Ok(()) }
//! ```

mod pickle;
mod pth;

#[cfg(feature = "hub")]
mod hub;

#[cfg(feature = "hub")]
pub use hub::{hf_cache_dir, resolve_in_cache};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use vssl_core::{Error, Result};

/// Tensors by name, sorted (the shape of a PyTorch `state_dict`).
pub type TensorMap = BTreeMap<String, Tensor>;

/// The formats [`load_tensors`] reads, detected from the file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A safetensors file (8-byte little-endian header length, then a JSON header).
    Safetensors,
    /// A PyTorch zip archive (`torch.save` since torch 1.6).
    PthZip,
    /// A PyTorch legacy file (`torch.save` before 1.6, or `_use_new_zipfile_serialization=False`).
    PthLegacy,
}

/// Detects the format of `bytes` by content: zip magic `PK\x03\x04`, torch's legacy pickle magic
/// number, or a plausible safetensors header. `None` when it is none of these.
pub fn detect_format(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Some(Format::PthZip);
    }
    if pth::is_legacy(bytes) {
        return Some(Format::PthLegacy);
    }
    if bytes.len() >= 10 {
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[..8]);
        let n = u64::from_le_bytes(n);
        if bytes[8] == b'{' && n >= 2 && n <= (bytes.len() - 8) as u64 {
            return Some(Format::Safetensors);
        }
    }
    None
}

/// Reads every tensor of a weight file, whatever its extension: safetensors, a PyTorch `.pth`
/// zip archive or a legacy (pre-1.6) `.pth` file (see [`detect_format`]).
///
/// For `.pth` files the tensor dict is the saved object itself when it holds tensors at its top
/// level, else the first of its `state_dict`, `model` or `net` entries that does (training
/// checkpoints); non-tensor entries are skipped. PyTorch views are copied out honouring their
/// storage offset and strides, so the result is always contiguous. Storage types: Float (f32),
/// Double (f64), Half (f16), BFloat16, Long (i64), Int (i32), Short (i16), Byte and Bool (u8).
///
/// Errors name the file and say what is wrong (missing, truncated, unknown format or storage
/// type, not a tensor dict, ...).
pub fn load_tensors(path: &Path, device: &Device) -> Result<TensorMap> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    match detect_format(&bytes) {
        Some(Format::Safetensors) => {
            let map = candle_core::safetensors::load_buffer(&bytes, device)
                .map_err(|e| Error::file(path, format!("bad safetensors file: {e}")))?;
            Ok(map.into_iter().collect())
        }
        Some(Format::PthZip) => pth::read_zip(&bytes, path, device),
        Some(Format::PthLegacy) => pth::read_legacy(&bytes, path, device),
        None if bytes.is_empty() => Err(Error::file(path, "empty file")),
        None => Err(Error::file(
            path,
            format!(
                "unknown weight format (first bytes {:02x?}): expected safetensors, a PyTorch zip \
                 archive or a legacy PyTorch file",
                &bytes[..bytes.len().min(8)]
            ),
        )),
    }
}

/// Keeps the entries whose key starts with `prefix`, with the prefix removed; the others are
/// dropped. E.g. `strip_prefix(map, "module.gray_encoder.")` turns a ContrastCorr checkpoint
/// into the encoder's own state dict. An empty prefix returns the map unchanged.
pub fn strip_prefix(map: TensorMap, prefix: &str) -> TensorMap {
    map.into_iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v)))
        .collect()
}

/// What [`load_into_varmap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// How many variables were set.
    pub set: usize,
    /// Keys of the source that were skipped on purpose (`*num_batches_tracked` without a
    /// matching variable), sorted.
    pub ignored: Vec<String>,
}

/// True for keys that PyTorch writes but candle models have no variable for.
fn ignorable(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}

/// Sets every variable of `varmap` from `tensors`, strictly: all variables must be present with
/// the same shape (the dtype is converted to the variable's), and no other key may be present
/// except `*num_batches_tracked`, which is ignored. On any problem nothing is set and ONE error
/// naming `source` lists the missing keys, the unexpected keys and the shape mismatches (sorted,
/// with shapes).
pub fn load_into_varmap(varmap: &VarMap, tensors: &TensorMap, source: &Path) -> Result<LoadReport> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| Error::file(source, "the VarMap's lock is poisoned"))?;
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, var) in vars.iter() {
        match tensors.get(name) {
            None => missing.push(format!("{name} {:?}", var.dims())),
            Some(t) if t.dims() != var.dims() => mismatched.push(format!(
                "{name}: file {:?}, model {:?}",
                t.dims(),
                var.dims()
            )),
            Some(_) => {}
        }
    }
    let mut unexpected = Vec::new();
    let mut ignored = Vec::new();
    for (name, t) in tensors {
        if vars.contains_key(name) {
            continue;
        }
        if ignorable(name) {
            ignored.push(name.clone());
        } else {
            unexpected.push(format!("{name} {:?}", t.dims()));
        }
    }
    if !(missing.is_empty() && unexpected.is_empty() && mismatched.is_empty()) {
        missing.sort();
        mismatched.sort();
        let mut msg = String::from("weights do not match the model");
        for (title, list) in [
            ("missing keys", &missing),
            ("unexpected keys", &unexpected),
            ("shape mismatches", &mismatched),
        ] {
            if !list.is_empty() {
                msg.push_str(&format!(
                    "\n  {title} ({}): {}",
                    list.len(),
                    list.join(", ")
                ));
            }
        }
        return Err(Error::file(source, msg));
    }
    let mut set = 0;
    for (name, var) in vars.iter() {
        if let Some(t) = tensors.get(name) {
            let t = t.to_dtype(var.dtype())?.to_device(var.device())?;
            var.set(&t)
                .map_err(|e| Error::file(source, format!("cannot set {name}: {e}")))?;
            set += 1;
        }
    }
    Ok(LoadReport { set, ignored })
}

/// Writes `tensors` to a safetensors file atomically: a temporary file in the same folder,
/// flushed to disk, then renamed over `path`. Errors name `path`.
pub fn save_safetensors(tensors: &TensorMap, path: &Path) -> Result<()> {
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| Error::file(path, format!("cannot serialise tensors: {e}")))?;
    vssl_core::io::write_atomic(path, &bytes)
}

/// Writes a ResNet state dict under torchvision's names so that
/// `torchvision.models.resnet18/resnet50` (with `fc` replaced by `nn.Identity()`) load it with
/// `strict=True`: the given tensors as they are, plus a 0-d int64 `<bn>.num_batches_tracked`
/// (value 0) for every `<bn>.running_mean` that lacks one. Float tensors are written as f32.
/// `tests/golden/export_check.py` checks such a file with PyTorch.
pub fn export_torchvision(tensors: &TensorMap, path: &Path) -> Result<()> {
    let mut out = TensorMap::new();
    for (name, t) in tensors {
        let t = match t.dtype() {
            DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
            _ => t.clone(),
        };
        out.insert(name.clone(), t);
        if let Some(bn) = name.strip_suffix(".running_mean") {
            let key = format!("{bn}.num_batches_tracked");
            if !tensors.contains_key(&key) {
                out.insert(key, Tensor::new(0i64, &Device::Cpu)?);
            }
        }
    }
    save_safetensors(&out, path)
}

/// Resolves a weight spec to a local file.
///
/// - A plain path is returned as is; it is an error naming it if it does not exist.
/// - `hf:ORG/NAME[:FILE]` (FILE defaults to `model.safetensors`) is looked up in the local
///   Hugging Face cache (see `hf_cache_dir`: `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
///   `~/.cache/huggingface/hub`, Python's `models--ORG--NAME/snapshots/<refs/main>/FILE`
///   layout). Nothing is ever downloaded, with or without `HF_HUB_OFFLINE=1`: fill the cache with
///   `huggingface-cli download ORG/NAME FILE` on a machine with network access. This needs the
///   `hub` feature; without it an `hf:` spec is an error that says so.
pub fn resolve_weights(spec: &str) -> Result<PathBuf> {
    if let Some(rest) = spec.strip_prefix("hf:") {
        let (repo, file) = parse_hf(spec, rest)?;
        return resolve_hf(spec, repo, file);
    }
    let path = PathBuf::from(spec);
    if path.exists() {
        Ok(path)
    } else {
        Err(Error::file(path, "no such weight file"))
    }
}

/// Splits `ORG/NAME[:FILE]`.
fn parse_hf<'a>(spec: &str, rest: &'a str) -> Result<(&'a str, &'a str)> {
    let (repo, file) = match rest.split_once(':') {
        Some((repo, file)) => (repo, file),
        None => (rest, "model.safetensors"),
    };
    let ok_repo = repo
        .split_once('/')
        .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
    if !ok_repo || file.is_empty() {
        return Err(Error::op(
            "resolve_weights",
            format!("bad spec {spec:?}: expected hf:ORG/NAME or hf:ORG/NAME:FILE"),
        ));
    }
    Ok((repo, file))
}

#[cfg(feature = "hub")]
fn resolve_hf(spec: &str, repo: &str, file: &str) -> Result<PathBuf> {
    let cache = hub::hf_cache_dir().ok_or_else(|| {
        Error::op(
            "resolve_weights",
            format!("{spec}: no Hugging Face cache folder (set HF_HUB_CACHE or HF_HOME)"),
        )
    })?;
    hub::resolve_in_cache(&cache, repo, file)
}

#[cfg(not(feature = "hub"))]
fn resolve_hf(spec: &str, _repo: &str, _file: &str) -> Result<PathBuf> {
    Err(Error::op(
        "resolve_weights",
        format!(
            "{spec}: hf: specs need the `hub` feature (build with `--features hub`, e.g. \
             `cargo build -p vssl-model --features hub`), or pass a local path"
        ),
    ))
}
