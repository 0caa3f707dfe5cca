//! A small pickle virtual machine for the objects `torch.save` writes.
//!
//! It understands the opcodes of pickle protocols 2 to 5 that appear in PyTorch checkpoints (and
//! the common protocol-0 text forms). Classes are never imported: a `GLOBAL` becomes
//! [`Value::Global`], and `REDUCE` of a global is resolved by [`Machine`] for the few callables
//! that matter (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, ...) and kept as an
//! opaque [`Value::Reduce`] otherwise. Persistent ids (`BINPERSID`, how torch refers to tensor
//! storages) become [`Value::Storage`] when they have torch's `('storage', type, key, location,
//! numel[, view_metadata])` form.
//!
//! Lists and dicts are shared (`Rc<RefCell<..>>`) so that a memoised container filled after it was
//! memoised (`EMPTY_DICT`, `BINPUT`, `SETITEMS`) is seen filled when fetched again from the memo.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A shared, mutable list of values (pickle lists, sets).
pub(crate) type List = Rc<RefCell<Vec<Value>>>;
/// A shared, mutable dict, in insertion order.
pub(crate) type Dict = Rc<RefCell<Vec<(Value, Value)>>>;

/// A reference to (part of) a tensor storage, from a torch persistent id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    /// The storage class name, e.g. `FloatStorage`.
    pub class: String,
    /// The key under which the storage bytes are stored (zip entry name / legacy key).
    pub key: String,
    /// Elements of the root storage (as recorded in the persistent id).
    pub numel: usize,
    /// Offset in elements into the root storage (legacy storage views; 0 otherwise).
    pub view_offset: usize,
}

/// A tensor as `torch._utils._rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    /// Its storage.
    pub storage: StorageRef,
    /// Offset in elements into the storage.
    pub offset: usize,
    /// Shape.
    pub size: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
}

/// A value on the pickle stack.
// Payloads of scalars nothing reads yet (bools, floats, bytes) are kept for `Debug` output.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// The `MARK` sentinel.
    Mark,
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// Any integer up to 128 bits.
    Int(i128),
    /// A float.
    Float(f64),
    /// A string (`str`; protocol-2 `BINSTRING`s are decoded as UTF-8, lossily).
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list or set.
    List(List),
    /// A dict or `OrderedDict`.
    Dict(Dict),
    /// A global (class or function) named by module and name.
    Global(String, String),
    /// A call of a global that is not resolved.
    Reduce(Box<Value>, Box<Value>),
    /// A persistent id that is not a torch storage.
    PersId(Box<Value>),
    /// A torch storage reference.
    Storage(StorageRef),
    /// A tensor.
    Tensor(TensorRef),
}

impl Value {
    /// A short description for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Mark => "mark",
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(..) => "global",
            Value::Reduce(..) => "object",
            Value::PersId(_) => "persistent id",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
    }

    fn as_usize_tuple(&self) -> Option<Vec<usize>> {
        match self {
            Value::Tuple(items) => items.iter().map(Value::as_usize).collect(),
            _ => None,
        }
    }
}

/// A pickle error: what went wrong and at which byte of the stream.
pub(crate) type PResult<T> = std::result::Result<T, String>;

/// Reads bytes from a slice, reporting truncation with the position.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "truncated: needs {n} more bytes at byte {} but only {} remain",
                self.pos,
                self.data.len() - self.pos
            )),
        }
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> PResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len_u64(&mut self) -> PResult<usize> {
        let n = u64::from_le_bytes(self.le::<8>()?);
        usize::try_from(n).map_err(|_| format!("length {n} too large at byte {}", self.pos))
    }

    fn line(&mut self) -> PResult<&'a [u8]> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let s = &rest[..i];
                self.pos += i + 1;
                Ok(s)
            }
            None => Err(format!(
                "truncated: unterminated text argument at byte {}",
                self.pos
            )),
        }
    }
}

/// Decodes a little-endian two's-complement integer of up to 16 bytes (`LONG1`/`LONG4`).
fn decode_long(bytes: &[u8]) -> PResult<i128> {
    if bytes.len() > 16 {
        return Err(format!("integer of {} bytes is too large", bytes.len()));
    }
    let mut v: i128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        v |= i128::from(b) << (8 * i);
    }
    if let Some(&last) = bytes.last()
        && bytes.len() < 16
        && last & 0x80 != 0
    {
        v -= 1i128 << (8 * bytes.len());
    }
    Ok(v)
}

/// The pickle machine: a stack, a metastack of marks and the memo.
pub(crate) struct Machine {
    stack: Vec<Value>,
    memo: HashMap<u64, Value>,
}

impl Machine {
    /// Runs one pickle from `data[*pos..]` to its `STOP`, advancing `*pos` past it, and returns
    /// the unpickled object.
    pub fn load(data: &[u8], pos: &mut usize) -> PResult<Value> {
        let mut m = Machine {
            stack: Vec::new(),
            memo: HashMap::new(),
        };
        let mut r = Reader { data, pos: *pos };
        let out = m.run(&mut r);
        *pos = r.pos;
        out
    }

    fn pop(&mut self, at: usize) -> PResult<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err(format!("pickle stack underflow at byte {at}")),
            Some(v) => Ok(v),
        }
    }

    fn top(&mut self, at: usize) -> PResult<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| format!("pickle stack underflow at byte {at}"))
    }

    fn pop_mark(&mut self, at: usize) -> PResult<Vec<Value>> {
        let i = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| format!("pickle MARK missing at byte {at}"))?;
        let items = self.stack.split_off(i + 1);
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, key: u64, at: usize) -> PResult<()> {
        let v = self.top(at)?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64, at: usize) -> PResult<()> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("pickle memo entry {key} missing at byte {at}"))?;
        self.stack.push(v);
        Ok(())
    }

    fn run(&mut self, r: &mut Reader<'_>) -> PResult<Value> {
        loop {
            let at = r.pos;
            let op = r.u8()?;
            match op {
                // PROTO
                0x80 => {
                    let proto = r.u8()?;
                    if proto > 5 {
                        return Err(format!("unsupported pickle protocol {proto}"));
                    }
                }
                // FRAME
                0x95 => {
                    r.len_u64()?;
                }
                b'.' => return self.pop(at),
                b'(' => self.stack.push(Value::Mark),
                b'0' => {
                    self.pop(at)?;
                }
                b'1' => {
                    self.pop_mark(at)?;
                }
                b'2' => {
                    let v = self.top(at)?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(r.le::<4>()?);
                    self.stack.push(Value::Int(v.into()))
                }
                b'K' => {
                    let v = r.u8()?;
                    self.stack.push(Value::Int(v.into()))
                }
                b'M' => {
                    let v = u16::from_le_bytes(r.le::<2>()?);
                    self.stack.push(Value::Int(v.into()))
                }
                0x8a => {
                    let n = usize::from(r.u8()?);
                    let v = decode_long(r.take(n)?)?;
                    self.stack.push(Value::Int(v))
                }
                0x8b => {
                    let n = i32::from_le_bytes(r.le::<4>()?);
                    let n = usize::try_from(n).map_err(|_| format!("negative LONG4 at {at}"))?;
                    let v = decode_long(r.take(n)?)?;
                    self.stack.push(Value::Int(v))
                }
                // INT / LONG (text)
                b'I' | b'L' => {
                    let line = String::from_utf8_lossy(r.line()?).to_string();
                    let v = match (op, line.as_str()) {
                        (b'I', "01") => Value::Bool(true),
                        (b'I', "00") => Value::Bool(false),
                        _ => Value::Int(
                            line.trim_end_matches('L')
                                .parse()
                                .map_err(|_| format!("bad integer {line:?} at byte {at}"))?,
                        ),
                    };
                    self.stack.push(v)
                }
                b'G' => {
                    let v = f64::from_be_bytes(r.le::<8>()?);
                    self.stack.push(Value::Float(v))
                }
                b'F' => {
                    let line = String::from_utf8_lossy(r.line()?).to_string();
                    let v = line
                        .parse()
                        .map_err(|_| format!("bad float {line:?} at byte {at}"))?;
                    self.stack.push(Value::Float(v))
                }
                // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u32::from_le_bytes(r.le::<4>()?) as usize,
                        0x8c => usize::from(r.u8()?),
                        _ => r.len_u64()?,
                    };
                    let s = std::str::from_utf8(r.take(n)?)
                        .map_err(|_| format!("invalid UTF-8 string at byte {at}"))?;
                    self.stack.push(Value::Str(s.to_string()))
                }
                // BINSTRING, SHORT_BINSTRING (Python 2 str)
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        u32::from_le_bytes(r.le::<4>()?) as usize
                    } else {
                        usize::from(r.u8()?)
                    };
                    let s = String::from_utf8_lossy(r.take(n)?).to_string();
                    self.stack.push(Value::Str(s))
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => u32::from_le_bytes(r.le::<4>()?) as usize,
                        b'C' => usize::from(r.u8()?),
                        _ => r.len_u64()?,
                    };
                    let b = r.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b))
                }
                b'c' => {
                    let module = String::from_utf8_lossy(r.line()?).to_string();
                    let name = String::from_utf8_lossy(r.line()?).to_string();
                    self.stack.push(Value::Global(module, name))
                }
                // STACK_GLOBAL
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(format!("STACK_GLOBAL without strings at byte {at}")),
                    }
                }
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b']' => self.stack.push(Value::List(Rc::default())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                // EMPTY_SET
                0x8f => self.stack.push(Value::List(Rc::default())),
                b'd' => {
                    let items = self.pop_mark(at)?;
                    let dict = pairs(items, at)?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(dict))))
                }
                b'l' => {
                    let items = self.pop_mark(at)?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))))
                }
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.stack.push(Value::Tuple(items))
                }
                // FROZENSET
                0x91 => {
                    let items = self.pop_mark(at)?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))))
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(format!("pickle stack underflow at byte {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    if items.iter().any(|v| matches!(v, Value::Mark)) {
                        return Err(format!("pickle stack underflow at byte {at}"));
                    }
                    self.stack.push(Value::Tuple(items))
                }
                b'a' => {
                    let v = self.pop(at)?;
                    match self.top(at)? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other => return Err(format!("APPEND to a {} at byte {at}", other.kind())),
                    }
                }
                // APPENDS, ADDITEMS
                b'e' | 0x90 => {
                    let items = self.pop_mark(at)?;
                    match self.top(at)? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other => return Err(format!("APPENDS to a {} at byte {at}", other.kind())),
                    }
                }
                b's' => {
                    let v = self.pop(at)?;
                    let k = self.pop(at)?;
                    match self.top(at)? {
                        Value::Dict(d) => d.borrow_mut().push((k, v)),
                        other => return Err(format!("SETITEM on a {} at byte {at}", other.kind())),
                    }
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    let kv = pairs(items, at)?;
                    match self.top(at)? {
                        Value::Dict(d) => d.borrow_mut().extend(kv),
                        other => {
                            return Err(format!("SETITEMS on a {} at byte {at}", other.kind()));
                        }
                    }
                }
                // REDUCE, NEWOBJ
                b'R' | 0x81 => {
                    let args = self.pop(at)?;
                    let func = self.pop(at)?;
                    let v = call(func, args).map_err(|e| format!("{e} (at byte {at})"))?;
                    self.stack.push(v)
                }
                // NEWOBJ_EX
                0x92 => {
                    let _kwargs = self.pop(at)?;
                    let args = self.pop(at)?;
                    let func = self.pop(at)?;
                    let v = call(func, args).map_err(|e| format!("{e} (at byte {at})"))?;
                    self.stack.push(v)
                }
                // BUILD: object state. For a dict (an OrderedDict's `_metadata`) the state holds
                // attributes, not items, so it is dropped; other objects stay opaque.
                b'b' => {
                    self.pop(at)?;
                    self.top(at)?;
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    self.stack.push(persistent(pid));
                }
                b'P' => {
                    let pid = String::from_utf8_lossy(r.line()?).to_string();
                    self.stack.push(persistent(Value::Str(pid)));
                }
                b'q' => {
                    let k = r.u8()?;
                    self.memo_put(k.into(), at)?
                }
                b'r' => {
                    let k = u32::from_le_bytes(r.le::<4>()?);
                    self.memo_put(k.into(), at)?
                }
                // MEMOIZE
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k, at)?
                }
                b'p' => {
                    let line = String::from_utf8_lossy(r.line()?).to_string();
                    let k = line
                        .parse()
                        .map_err(|_| format!("bad memo key {line:?} at byte {at}"))?;
                    self.memo_put(k, at)?
                }
                b'h' => {
                    let k = r.u8()?;
                    self.memo_get(k.into(), at)?
                }
                b'j' => {
                    let k = u32::from_le_bytes(r.le::<4>()?);
                    self.memo_get(k.into(), at)?
                }
                b'g' => {
                    let line = String::from_utf8_lossy(r.line()?).to_string();
                    let k = line
                        .parse()
                        .map_err(|_| format!("bad memo key {line:?} at byte {at}"))?;
                    self.memo_get(k, at)?
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {at} (not a PyTorch file?)"
                    ));
                }
            }
        }
    }
}

fn pairs(items: Vec<Value>, at: usize) -> PResult<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return Err(format!("odd number of dict items at byte {at}"));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Turns torch's `('storage', StorageClass, key, location, numel[, view_metadata])` persistent
/// id into a [`Value::Storage`]; anything else stays a [`Value::PersId`].
fn persistent(pid: Value) -> Value {
    let storage = match &pid {
        Value::Tuple(t) if t.len() >= 5 && matches!(&t[0], Value::Str(s) if s == "storage") => {
            let class = match &t[1] {
                Value::Global(_, name) => Some(name.clone()),
                // torch 2.x untyped storages are pickled with a dtype global instead.
                Value::Str(name) => Some(name.clone()),
                _ => None,
            };
            let key = match &t[2] {
                Value::Str(k) => Some(k.clone()),
                Value::Int(i) => Some(i.to_string()),
                _ => None,
            };
            let numel = t[4].as_usize();
            // Legacy storage views: (view_key, offset, view_size).
            let view_offset = match t.get(5) {
                Some(Value::Tuple(v)) if v.len() == 3 => v[1].as_usize(),
                _ => Some(0),
            };
            match (class, key, numel, view_offset) {
                (Some(class), Some(key), Some(numel), Some(view_offset)) => Some(StorageRef {
                    class,
                    key,
                    numel,
                    view_offset,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    match storage {
        Some(s) => Value::Storage(s),
        None => Value::PersId(Box::new(pid)),
    }
}

/// `REDUCE`: resolves the callables torch checkpoints use, keeps the rest opaque.
fn call(func: Value, args: Value) -> PResult<Value> {
    let Value::Global(module, name) = &func else {
        return Ok(Value::Reduce(Box::new(func), Box::new(args)));
    };
    let args_vec = match &args {
        Value::Tuple(a) => a.as_slice(),
        _ => &[],
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
            // OrderedDict() or OrderedDict([(k, v), ...]).
            let mut items = Vec::new();
            if let Some(Value::List(l)) = args_vec.first() {
                for item in l.borrow().iter() {
                    if let Value::Tuple(kv) = item
                        && kv.len() == 2
                    {
                        items.push((kv[0].clone(), kv[1].clone()));
                    }
                }
            }
            Ok(Value::Dict(Rc::new(RefCell::new(items))))
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            // (storage, storage_offset, size, stride, ...)
            if args_vec.len() < 4 {
                return Err(format!("{module}.{name} with {} arguments", args_vec.len()));
            }
            let Value::Storage(storage) = &args_vec[0] else {
                return Err(format!(
                    "{module}.{name}: first argument is a {}, not a torch storage",
                    args_vec[0].kind()
                ));
            };
            let offset = args_vec[1].as_usize();
            let size = args_vec[2].as_usize_tuple();
            let stride = args_vec[3].as_usize_tuple();
            match (offset, size, stride) {
                (Some(offset), Some(size), Some(stride)) if size.len() == stride.len() => {
                    Ok(Value::Tensor(TensorRef {
                        storage: storage.clone(),
                        offset,
                        size,
                        stride,
                    }))
                }
                _ => Err(format!(
                    "{module}.{name}: bad offset/size/stride {:?}",
                    &args_vec[1..4]
                )),
            }
        }
        // nn.Parameter(data, requires_grad, hooks[, state]): the data.
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => match args_vec.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Ok(Value::Reduce(Box::new(func), Box::new(args))),
        },
        // Tensor subclasses: (func, type, args, state) -> func(*args).
        ("torch._tensor", "_rebuild_from_type_v2") => match (args_vec.first(), args_vec.get(2)) {
            (Some(inner), Some(inner_args)) => call(inner.clone(), inner_args.clone()),
            _ => Ok(Value::Reduce(Box::new(func), Box::new(args))),
        },
        _ => Ok(Value::Reduce(Box::new(func), Box::new(args))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_decoding_is_twos_complement() {
        assert_eq!(decode_long(&[]), Ok(0));
        assert_eq!(decode_long(&[0xff]), Ok(-1));
        assert_eq!(decode_long(&[0x80, 0x00]), Ok(128));
        // torch's legacy magic number, as pickled by LONG1 with 10 bytes.
        let magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        assert_eq!(decode_long(&magic), Ok(0x1950a86a20f9469cfc6c));
    }

    #[test]
    fn memoised_dict_is_seen_filled() {
        // [] memo0, {} memo1, append (the empty dict goes into the list), get1, 'k': 1 setitem
        // (fills the dict through the memo), pop -> the list's dict must be the filled one.
        let p = b"\x80\x02]q\x00}q\x01ah\x01X\x01\x00\x00\x00kK\x01s0.";
        let mut pos = 0;
        let v = Machine::load(p, &mut pos).map_err(|e| e.to_string());
        let Ok(Value::List(l)) = v else {
            panic!("not a list: {v:?}")
        };
        let l = l.borrow();
        let Value::Dict(d) = &l[0] else {
            panic!("not a dict")
        };
        assert_eq!(d.borrow().len(), 1);
        assert_eq!(pos, p.len());
    }

    #[test]
    fn truncation_is_reported_with_position() {
        let p = b"\x80\x02X\x10\x00\x00\x00abc";
        let mut pos = 0;
        let e = Machine::load(p, &mut pos).err().unwrap_or_default();
        assert!(e.contains("truncated"), "{e}");
        assert!(e.contains("byte 7"), "{e}");
    }
}
