//! A minimal MATLAB v5 `.mat` reader for numeric arrays (what JHMDB's `joint_positions.mat`
//! holds).
//!
//! Format (MathWorks, "MAT-File Format", v5): a 128-byte header (116 bytes of text, 8 bytes of
//! subsystem offset, a 2-byte version, a 2-byte endian indicator `IM`/`MI`), then tagged data
//! elements. A variable is an `miMATRIX` element holding sub-elements: array flags (class in
//! the low byte), dimensions, name, real part (any numeric storage type, converted here to
//! `f64`) and, for complex arrays, an imaginary part (ignored). Elements are padded to 8 bytes;
//! an element whose tag's high 16 bits are non-zero is a "small" element with its data packed
//! into the tag.
//!
//! `miCOMPRESSED` elements (the zlib-compressed `-v7` default) are inflated (flate2, already a
//! dependency of the `png` crate) and read like the elements they hold. Not supported: `-v7.3`
//! (HDF5) files, and non-numeric classes (cells, structs, chars, sparse), which are skipped.

use std::path::Path;

use crate::{Error, Result};

/// One numeric variable of a `.mat` file.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// Variable name.
    pub name: String,
    /// Dimensions, MATLAB order (at least 2).
    pub dims: Vec<usize>,
    /// Values in column-major (MATLAB) order, converted to `f64`.
    pub data: Vec<f64>,
}

impl MatArray {
    /// The value at `index` (one index per dimension, 0-based), if in range.
    pub fn get(&self, index: &[usize]) -> Option<f64> {
        if index.len() != self.dims.len() {
            return None;
        }
        let mut offset = 0;
        let mut stride = 1;
        for (&i, &d) in index.iter().zip(&self.dims) {
            if i >= d {
                return None;
            }
            offset += i * stride;
            stride *= d;
        }
        self.data.get(offset).copied()
    }
}

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

/// mxDOUBLE_CLASS ..= mxUINT64_CLASS are the numeric classes.
const NUMERIC_CLASSES: std::ops::RangeInclusive<u8> = 6..=15;

/// Byte reader over the file's bytes in its endianness.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    big: bool,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// Reads one element tag and its data: `(type, data)`, skipping the padding.
    fn element(&mut self) -> Option<(u32, &'a [u8])> {
        let first = self.u32()?;
        if first >> 16 != 0 {
            // small data element: the tag word (read in the file's endianness) holds the byte
            // count in its high half and the type in its low half, then 4 bytes of data
            let (ty, n) = (first & 0xFFFF, (first >> 16) as usize);
            let data = self.take(4)?;
            return Some((ty, data.get(..n)?));
        }
        let n = self.u32()? as usize;
        let data = self.take(n)?;
        if first != MI_COMPRESSED {
            let pad = (8 - n % 8) % 8;
            // the last element of a file may omit its padding
            let pad = pad.min(self.bytes.len() - self.pos);
            self.take(pad)?;
        }
        Some((first, data))
    }
}

/// Converts the data of a numeric element of storage type `ty` to `f64`.
fn numbers(ty: u32, data: &[u8], big: bool) -> Option<Vec<f64>> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            data.chunks_exact($n)
                .map(|c| {
                    let b: [u8; $n] = c.try_into().unwrap_or([0; $n]);
                    (if big {
                        <$t>::from_be_bytes(b)
                    } else {
                        <$t>::from_le_bytes(b)
                    }) as f64
                })
                .collect()
        };
    }
    Some(match ty {
        MI_INT8 => data.iter().map(|&b| f64::from(b as i8)).collect(),
        MI_UINT8 => data.iter().map(|&b| f64::from(b)).collect(),
        MI_INT16 => conv!(i16, 2),
        MI_UINT16 => conv!(u16, 2),
        MI_INT32 => conv!(i32, 4),
        MI_UINT32 => conv!(u32, 4),
        MI_SINGLE => conv!(f32, 4),
        MI_DOUBLE => conv!(f64, 8),
        MI_INT64 => conv!(i64, 8),
        MI_UINT64 => conv!(u64, 8),
        _ => return None,
    })
}

/// Parses the sub-elements of one `miMATRIX`; `Ok(None)` for a non-numeric variable.
fn parse_matrix(data: &[u8], big: bool) -> std::result::Result<Option<MatArray>, String> {
    let mut c = Cursor {
        bytes: data,
        pos: 0,
        big,
    };
    let truncated = || "truncated matrix element".to_string();
    let (_, flags) = c.element().ok_or_else(truncated)?;
    let flags = numbers(MI_UINT32, flags.get(..4).ok_or_else(truncated)?, big)
        .and_then(|v| v.first().copied())
        .ok_or_else(truncated)? as u32;
    let class = (flags & 0xFF) as u8;
    let (dty, dims) = c.element().ok_or_else(truncated)?;
    let dims: Vec<usize> = numbers(dty, dims, big)
        .ok_or_else(|| format!("dimensions stored as type {dty}"))?
        .into_iter()
        .map(|d| d as usize)
        .collect();
    let (nty, name) = c.element().ok_or_else(truncated)?;
    if nty != MI_INT8 && nty != MI_UINT8 && nty != MI_UTF8 {
        return Err(format!("array name stored as type {nty}"));
    }
    let name = String::from_utf8_lossy(name).into_owned();
    if !NUMERIC_CLASSES.contains(&class) {
        return Ok(None);
    }
    let (rty, real) = c.element().ok_or_else(truncated)?;
    let data = numbers(rty, real, big)
        .ok_or_else(|| format!("variable {name}: real part stored as type {rty}"))?;
    let count: usize = dims.iter().product();
    if data.len() != count {
        return Err(format!(
            "variable {name}: dimensions {dims:?} need {count} values, the file has {}",
            data.len()
        ));
    }
    Ok(Some(MatArray { name, dims, data }))
}

/// Every numeric variable of the MATLAB v5 file `path`, in file order (other variables are
/// skipped).
///
/// Compressed (`miCOMPRESSED`) variables are inflated. Errors (naming the file) when it is not
/// a v5 MAT-file, is truncated, or holds a compressed element that does not inflate.
pub fn read_mat_arrays(path: impl AsRef<Path>) -> Result<Vec<MatArray>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    parse_mat(&bytes).map_err(|msg| Error::file(path, msg))
}

fn parse_mat(bytes: &[u8]) -> std::result::Result<Vec<MatArray>, String> {
    if bytes.len() < 128 {
        return Err("not a MATLAB v5 file: shorter than its 128-byte header".into());
    }
    if bytes.starts_with(b"\x89HDF") || bytes[..128].windows(4).any(|w| w == b"7.3 ") {
        return Err("MATLAB v7.3 (HDF5) file: only v5 files are supported".into());
    }
    let big = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        _ => return Err("not a MATLAB v5 file: no endian indicator at byte 126".into()),
    };
    let mut out = Vec::new();
    parse_elements(bytes, 128, big, &mut out, 0)?;
    Ok(out)
}

/// Reads the top-level elements of `bytes` from `start`, appending numeric variables to `out`.
/// A compressed element is inflated and read the same way (`depth` guards against nesting).
fn parse_elements(
    bytes: &[u8],
    start: usize,
    big: bool,
    out: &mut Vec<MatArray>,
    depth: usize,
) -> std::result::Result<(), String> {
    let mut c = Cursor {
        bytes,
        pos: start,
        big,
    };
    while c.pos < bytes.len() {
        let at = c.pos;
        let (ty, data) = c
            .element()
            .ok_or_else(|| format!("truncated data element at byte {at}"))?;
        match ty {
            MI_MATRIX => {
                if let Some(a) = parse_matrix(data, big).map_err(|m| format!("byte {at}: {m}"))? {
                    out.push(a);
                }
            }
            MI_COMPRESSED if depth == 0 => {
                let mut inflated = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::ZlibDecoder::new(data),
                    &mut inflated,
                )
                .map_err(|e| format!("compressed variable at byte {at} does not inflate: {e}"))?;
                parse_elements(&inflated, 0, big, out, depth + 1)
                    .map_err(|m| format!("in the compressed variable at byte {at}: {m}"))?;
            }
            MI_COMPRESSED => {
                return Err(format!("nested compressed element at byte {at}"));
            }
            _ => {} // other top-level elements are not variables
        }
    }
    Ok(())
}

/// The numeric variable `name` of the MATLAB v5 file `path`; errors when it is absent.
pub fn read_mat_array(path: impl AsRef<Path>, name: &str) -> Result<MatArray> {
    let path = path.as_ref();
    read_mat_arrays(path)?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Error::file(path, format!("no numeric variable {name}")))
}
