//! PyTorch `.pth` readers: the zip format (torch >= 1.6) and the legacy format (before 1.6).
//!
//! Both formats pickle the saved object with tensors as `_rebuild_tensor_v2(storage, offset,
//! size, stride, ...)` calls whose storages are persistent ids; they differ in where the storage
//! bytes live:
//!
//! - zip: `<archive>/data.pkl` is the pickle, storage `key` is the entry `<archive>/data/<key>`
//!   (raw little-endian bytes; `<archive>/byteorder` says so when present).
//! - legacy: one file of consecutive pickles: the magic number `0x1950a86a20f9469cfc6c`, the
//!   protocol version, a `sys_info` dict (`little_endian`, type sizes), the object, the list of
//!   storage keys; then, for each key in that order, an int64 element count and the raw bytes.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use vssl_core::{Error, Result};

use super::TensorMap;
use super::pickle::{Machine, StorageRef, TensorRef, Value};

/// The legacy format's magic number (`torch.serialization.MAGIC_NUMBER`).
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// Keys under which training checkpoints keep their state dict, tried in this order after the
/// top level.
pub(crate) const STATE_DICT_KEYS: [&str; 3] = ["state_dict", "model", "net"];

/// The candle dtype of a torch storage class.
fn storage_dtype(class: &str) -> Option<DType> {
    Some(match class {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "ByteStorage" => DType::U8,
        // One byte per element, 0 or 1.
        "BoolStorage" => DType::U8,
        _ => return None,
    })
}

/// Picks the tensor dict out of an unpickled object: the top level if it holds tensors, else the
/// first of [`STATE_DICT_KEYS`] that holds a dict of tensors. Non-tensor entries of the chosen
/// dict are skipped.
fn tensor_entries(obj: &Value, path: &Path) -> Result<Vec<(String, TensorRef)>> {
    fn tensors_of(v: &Value) -> Option<Vec<(String, TensorRef)>> {
        let Value::Dict(d) = v else { return None };
        let out: Vec<_> = d
            .borrow()
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Tensor(t)) => Some((k.clone(), t.clone())),
                _ => None,
            })
            .collect();
        (!out.is_empty()).then_some(out)
    }
    if let Some(t) = tensors_of(obj) {
        return Ok(t);
    }
    let Value::Dict(d) = obj else {
        return Err(Error::file(
            path,
            format!("not a tensor dict: the file holds a {}", obj.kind()),
        ));
    };
    for key in STATE_DICT_KEYS {
        let found = d
            .borrow()
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            .map(|(_, v)| v.clone());
        if let Some(t) = found.as_ref().and_then(tensors_of) {
            return Ok(t);
        }
    }
    let keys: Vec<String> = d
        .borrow()
        .iter()
        .map(|(k, v)| match k {
            Value::Str(s) => format!("{s:?} ({})", v.kind()),
            other => format!("<{}> ({})", other.kind(), v.kind()),
        })
        .collect();
    Err(Error::file(
        path,
        format!(
            "not a tensor dict: no tensors at the top level nor under {STATE_DICT_KEYS:?}; \
             top-level keys: [{}]",
            keys.join(", ")
        ),
    ))
}

/// Builds a contiguous tensor from `storage` bytes (the whole root storage, `numel` elements)
/// for the view `t`, honouring the storage offset and strides.
fn materialise(
    name: &str,
    t: &TensorRef,
    storage: &[u8],
    dtype: DType,
    path: &Path,
) -> Result<Tensor> {
    let esize = dtype.size_in_bytes();
    let avail = storage.len() / esize;
    let numel: usize = t.size.iter().product();
    let base = t.storage.view_offset + t.offset;
    let shape_err = || {
        Error::file(
            path,
            format!(
                "tensor {name:?}: view (offset {}, size {:?}, stride {:?}) reaches past its \
                 storage {:?} of {avail} elements",
                base, t.size, t.stride, t.storage.key
            ),
        )
    };
    if numel == 0 {
        return Ok(Tensor::zeros(t.size.as_slice(), dtype, &Device::Cpu)?);
    }
    // Furthest element the view touches.
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(base, |acc, (&n, &s)| {
            acc.checked_add((n - 1).checked_mul(s)?)
        })
        .ok_or_else(shape_err)?;
    if last >= avail {
        return Err(shape_err());
    }
    let mut contiguous = true;
    let mut expect = 1usize;
    for (&n, &s) in t.size.iter().zip(&t.stride).rev() {
        if n != 1 && s != expect {
            contiguous = false;
        }
        expect *= n;
    }
    let bytes = if contiguous {
        storage[base * esize..(base + numel) * esize].to_vec()
    } else {
        let mut out = Vec::with_capacity(numel * esize);
        let rank = t.size.len();
        let mut idx = vec![0usize; rank];
        for _ in 0..numel {
            let off = base
                + idx
                    .iter()
                    .zip(&t.stride)
                    .map(|(&i, &s)| i * s)
                    .sum::<usize>();
            out.extend_from_slice(&storage[off * esize..(off + 1) * esize]);
            // Row-major increment of the multi-index.
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < t.size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    };
    Ok(Tensor::from_raw_buffer(
        &bytes,
        dtype,
        &t.size,
        &Device::Cpu,
    )?)
}

fn dtype_of(name: &str, s: &StorageRef, path: &Path) -> Result<DType> {
    storage_dtype(&s.class).ok_or_else(|| {
        Error::file(
            path,
            format!(
                "tensor {name:?}: unknown storage type torch.{} (supported: Float, Double, \
                 Half, BFloat16, Long, Int, Short, Byte, Bool)",
                s.class
            ),
        )
    })
}

/// Reads a zip-format `.pth` file.
pub(crate) fn read_zip(bytes: &[u8], path: &Path, device: &Device) -> Result<TensorMap> {
    let zerr = |e: zip::result::ZipError| Error::file(path, format!("bad zip archive: {e}"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zerr)?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.to_string())
        .collect();
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl"))
        .min_by_key(|n| n.len())
        .cloned()
        .ok_or_else(|| {
            Error::file(
                path,
                "zip archive without a data.pkl entry: not a torch.save file",
            )
        })?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let read_entry = |zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str| {
        let mut f = zip
            .by_name(name)
            .map_err(|e| Error::file(path, format!("zip entry {name:?}: {e}")))?;
        let mut buf = Vec::with_capacity((f.size() as usize).min(bytes.len()));
        f.read_to_end(&mut buf)
            .map_err(|e| Error::file(path, format!("zip entry {name:?} is unreadable: {e}")))?;
        Ok::<_, Error>(buf)
    };
    let byteorder = format!("{prefix}byteorder");
    if names.contains(&byteorder) {
        let order = read_entry(&mut zip, &byteorder)?;
        if order.trim_ascii() != b"little" {
            return Err(Error::file(
                path,
                format!(
                    "byte order {:?} is not supported (only little-endian)",
                    String::from_utf8_lossy(&order)
                ),
            ));
        }
    }
    let pickle = read_entry(&mut zip, &pkl)?;
    let mut pos = 0;
    let obj =
        Machine::load(&pickle, &mut pos).map_err(|e| Error::file(path, format!("{pkl}: {e}")))?;
    let entries = tensor_entries(&obj, path)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = TensorMap::new();
    for (name, t) in entries {
        let dtype = dtype_of(&name, &t.storage, path)?;
        if !storages.contains_key(&t.storage.key) {
            let entry = format!("{prefix}data/{}", t.storage.key);
            let data = read_entry(&mut zip, &entry)?;
            storages.insert(t.storage.key.clone(), data);
        }
        let data = storages
            .get(&t.storage.key)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let tensor = materialise(&name, &t, data, dtype, path)?.to_device(device)?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// True when `bytes` start like a legacy `.pth` file (a pickle whose first object is torch's
/// magic number).
pub(crate) fn is_legacy(bytes: &[u8]) -> bool {
    if bytes.first() != Some(&0x80) {
        return false;
    }
    let mut pos = 0;
    matches!(Machine::load(bytes, &mut pos), Ok(Value::Int(LEGACY_MAGIC)))
}

/// Reads a legacy-format `.pth` file.
pub(crate) fn read_legacy(bytes: &[u8], path: &Path, device: &Device) -> Result<TensorMap> {
    let mut pos = 0;
    let mut next = |what: &str| {
        Machine::load(bytes, &mut pos).map_err(|e| Error::file(path, format!("{what}: {e}")))
    };
    match next("magic number")? {
        Value::Int(LEGACY_MAGIC) => {}
        other => {
            return Err(Error::file(
                path,
                format!(
                    "not a legacy torch file: first pickle is a {}, not torch's magic number",
                    other.kind()
                ),
            ));
        }
    }
    match next("protocol version")? {
        Value::Int(1001) => {}
        Value::Int(v) => {
            return Err(Error::file(
                path,
                format!("unsupported legacy protocol version {v} (expected 1001)"),
            ));
        }
        other => {
            return Err(Error::file(
                path,
                format!("protocol version is a {}, not an int", other.kind()),
            ));
        }
    }
    if let Value::Dict(info) = next("sys_info")? {
        let big = info.borrow().iter().any(
            |(k, v)| matches!((k, v), (Value::Str(k), Value::Bool(false)) if k == "little_endian"),
        );
        if big {
            return Err(Error::file(
                path,
                "written on a big-endian machine: not supported",
            ));
        }
    }
    let obj = next("saved object")?;
    let keys = match next("storage key list")? {
        Value::List(l) => l
            .borrow()
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.clone()),
                Value::Int(i) => Ok(i.to_string()),
                other => Err(Error::file(
                    path,
                    format!("storage key is a {}, not a string", other.kind()),
                )),
            })
            .collect::<Result<Vec<_>>>()?,
        other => {
            return Err(Error::file(
                path,
                format!("storage key list is a {}, not a list", other.kind()),
            ));
        }
    };
    let entries = tensor_entries(&obj, path)?;
    // The element size of each storage, from the tensors that use it.
    let mut esize: HashMap<&str, usize> = HashMap::new();
    for (name, t) in &entries {
        esize.insert(
            &t.storage.key,
            dtype_of(name, &t.storage, path)?.size_in_bytes(),
        );
    }
    // Walk the data section; storages no wanted tensor uses are skipped if their element size is
    // known from the object (any tensor of the file), else the walk stops there.
    let mut all_sizes: HashMap<String, usize> = HashMap::new();
    collect_storage_sizes(&obj, &mut all_sizes);
    let mut spans: HashMap<&str, (usize, usize)> = HashMap::new();
    for key in &keys {
        let Some(&es) = esize
            .get(key.as_str())
            .or_else(|| all_sizes.get(key.as_str()))
        else {
            break;
        };
        let count_end = pos + 8;
        if count_end > bytes.len() {
            return Err(Error::file(
                path,
                format!("truncated: the element count of storage {key:?} at byte {pos} is missing"),
            ));
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&bytes[pos..count_end]);
        let count = i64::from_le_bytes(c);
        let len = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(es))
            .ok_or_else(|| {
                Error::file(
                    path,
                    format!("storage {key:?} has a bad element count {count}"),
                )
            })?;
        let end = count_end.checked_add(len).filter(|&e| e <= bytes.len()).ok_or_else(|| {
            Error::file(
                path,
                format!(
                    "truncated: storage {key:?} needs {len} bytes at byte {count_end} but the file \
                     has {} bytes",
                    bytes.len()
                ),
            )
        })?;
        spans.insert(key.as_str(), (count_end, end));
        pos = end;
    }
    let mut out = TensorMap::new();
    for (name, t) in entries {
        let dtype = dtype_of(&name, &t.storage, path)?;
        let &(start, end) = spans.get(t.storage.key.as_str()).ok_or_else(|| {
            Error::file(
                path,
                format!(
                    "tensor {name:?}: storage {:?} is not in the file's data section",
                    t.storage.key
                ),
            )
        })?;
        let tensor = materialise(&name, &t, &bytes[start..end], dtype, path)?.to_device(device)?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Element sizes of every storage referenced anywhere in `v` (so the legacy data section can be
/// walked past storages of tensors that are not loaded, such as optimizer state).
fn collect_storage_sizes(v: &Value, out: &mut HashMap<String, usize>) {
    match v {
        Value::Tensor(t) => {
            if let Some(d) = storage_dtype(&t.storage.class) {
                out.insert(t.storage.key.clone(), d.size_in_bytes());
            }
        }
        Value::Storage(s) => {
            if let Some(d) = storage_dtype(&s.class) {
                out.insert(s.key.clone(), d.size_in_bytes());
            }
        }
        Value::Tuple(items) => items.iter().for_each(|i| collect_storage_sizes(i, out)),
        Value::List(l) => l
            .borrow()
            .iter()
            .for_each(|i| collect_storage_sizes(i, out)),
        Value::Dict(d) => d.borrow().iter().for_each(|(k, v)| {
            collect_storage_sizes(k, out);
            collect_storage_sizes(v, out);
        }),
        Value::Reduce(f, a) => {
            collect_storage_sizes(f, out);
            collect_storage_sizes(a, out);
        }
        _ => {}
    }
}
