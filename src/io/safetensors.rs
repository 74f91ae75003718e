//! Checkpoints in the safetensors format, with PyTorch's `state_dict` names.
//!
//! The format (huggingface/safetensors): an 8-byte little-endian header length N; N bytes of
//! UTF-8 JSON mapping each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
//! (offsets relative to the data section) plus an optional `"__metadata__"` map of strings,
//! padded with spaces; then the data section, every tensor little-endian and row-major, the
//! tensors back to back with no gap. The reader checks all of it and never trusts a size it
//! has not compared with the file's real length; the writer lays files out as the reference
//! implementation does (8-byte aligned header, tensors sorted by descending dtype size then
//! name), but with a deterministic header, so equal states give byte-identical files.

use super::{IoError, display_name, write_atomic};
use crate::nn::{Module, Sequential};
use half::{bf16, f16};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The reference implementation refuses larger headers; so do we.
const MAX_HEADER_LEN: u64 = 100_000_000;

/// Floating-point type of the weights in a written checkpoint. Computation is always f32;
/// f16/bf16 halve the file. Integer counters stay int64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SaveDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

impl FromStr for SaveDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(SaveDtype::F32),
            "f16" | "float16" | "half" => Ok(SaveDtype::F16),
            "bf16" | "bfloat16" => Ok(SaveDtype::Bf16),
            _ => Err(format!("unknown dtype \"{s}\": expected f32, f16 or bf16")),
        }
    }
}

impl fmt::Display for SaveDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaveDtype::F32 => "f32",
            SaveDtype::F16 => "f16",
            SaveDtype::Bf16 => "bf16",
        })
    }
}

/// The values of one stored tensor, in the type they are stored in.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    /// PyTorch's integer buffers (`num_batches_tracked`) and integer state such as Adam's step.
    I64(Vec<i64>),
}

impl ArrayData {
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F16(v) => v.len(),
            ArrayData::Bf16(v) => v.len(),
            ArrayData::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The safetensors dtype name: "F32", "F16", "BF16", "I64".
    pub fn dtype(&self) -> &'static str {
        match self {
            ArrayData::F32(_) => "F32",
            ArrayData::F16(_) => "F16",
            ArrayData::Bf16(_) => "BF16",
            ArrayData::I64(_) => "I64",
        }
    }

    fn elem_size(&self) -> usize {
        match self {
            ArrayData::F32(_) => 4,
            ArrayData::F16(_) | ArrayData::Bf16(_) => 2,
            ArrayData::I64(_) => 8,
        }
    }

    /// The values as f32 (exact for every float type); `None` for integers.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match self {
            ArrayData::F32(v) => Some(v.clone()),
            ArrayData::F16(v) => Some(v.iter().map(|x| x.to_f32()).collect()),
            ArrayData::Bf16(v) => Some(v.iter().map(|x| x.to_f32()).collect()),
            ArrayData::I64(_) => None,
        }
    }

    /// The index of the first NaN or infinite value; None for an integer array or all-finite
    /// values.
    pub fn first_non_finite(&self) -> Option<usize> {
        match self {
            ArrayData::F32(v) => v.iter().position(|x| !x.is_finite()),
            ArrayData::F16(v) => v.iter().position(|x| !x.is_finite()),
            ArrayData::Bf16(v) => v.iter().position(|x| !x.is_finite()),
            ArrayData::I64(_) => None,
        }
    }

    /// f32 values stored as `dtype` (round to nearest even for f16/bf16).
    pub fn from_f32(values: &[f32], dtype: SaveDtype) -> Self {
        match dtype {
            SaveDtype::F32 => ArrayData::F32(values.to_vec()),
            SaveDtype::F16 => ArrayData::F16(values.iter().map(|&x| f16::from_f32(x)).collect()),
            SaveDtype::Bf16 => ArrayData::Bf16(values.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    fn write_le(&self, out: &mut Vec<u8>) {
        match self {
            ArrayData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            ArrayData::F16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            ArrayData::Bf16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            ArrayData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }
}

/// One named tensor of a safetensors file. `shape` is empty for a 0-dim scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedArray {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

impl NamedArray {
    /// Why a stored tensor cannot be loaded because of its values, or None when every one is
    /// finite: the check every loader of weights and optimizer state shares.
    pub fn non_finite(&self) -> Option<String> {
        self.data.first_non_finite().map(|i| {
            format!(
                "{} holds non-finite values: a NaN or infinity (element {i}); the file is corrupt, \
                 or was saved from a run that diverged",
                self.name
            )
        })
    }

    pub fn new(name: impl Into<String>, shape: &[usize], data: ArrayData) -> Self {
        NamedArray { name: name.into(), shape: shape.to_vec(), data }
    }

    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, shape: &[usize], values: Vec<f32>) -> Self {
        Self::new(name, shape, ArrayData::F32(values))
    }

    /// A 0-dim int64 scalar, as PyTorch stores `num_batches_tracked`.
    pub fn scalar_i64(name: impl Into<String>, value: i64) -> Self {
        Self::new(name, &[], ArrayData::I64(vec![value]))
    }
}

/// A parsed safetensors file: its tensors in file order and its `__metadata__`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Safetensors {
    pub tensors: Vec<NamedArray>,
    pub metadata: BTreeMap<String, String>,
}

// ---- writing ---------------------------------------------------------------------------

/// The bytes of a safetensors file holding `tensors` and `metadata`.
///
/// Panics on a programming error: a tensor whose value count differs from its shape's
/// product, two tensors with one name, or a tensor called `__metadata__`.
pub fn serialize_safetensors(tensors: &[NamedArray], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut order: Vec<&NamedArray> = tensors.iter().collect();
    // As the reference writer: descending element size (keeps every tensor aligned), then name.
    order.sort_by(|a, b| b.data.elem_size().cmp(&a.data.elem_size()).then_with(|| a.name.cmp(&b.name)));
    for pair in order.windows(2) {
        assert!(pair[0].name != pair[1].name, "write_safetensors: two tensors named \"{}\"", pair[0].name);
    }

    let json = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        let entries: Vec<String> = metadata.iter().map(|(k, v)| format!("{}:{}", json(k), json(v))).collect();
        header.push_str(&entries.join(","));
        header.push('}');
    }
    let mut offset = 0usize;
    for t in &order {
        assert!(t.name != "__metadata__", "write_safetensors: \"__metadata__\" is not a tensor name");
        let n: usize = t.shape.iter().product();
        assert_eq!(
            n,
            t.data.len(),
            "write_safetensors: tensor \"{}\" has {} values for shape {:?}",
            t.name,
            t.data.len(),
            t.shape
        );
        let bytes = n * t.data.elem_size();
        if header.len() > 1 {
            header.push(',');
        }
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json(&t.name),
            t.data.dtype(),
            shape.join(","),
            offset,
            offset + bytes
        ));
        offset += bytes;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }

    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for t in &order {
        t.data.write_le(&mut out);
    }
    out
}

/// Write a safetensors file atomically (temporary file, fsync, rename).
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedArray],
    metadata: &BTreeMap<String, String>,
) -> Result<(), IoError> {
    write_atomic(path, &serialize_safetensors(tensors, metadata))
}

// ---- reading ---------------------------------------------------------------------------

/// Bits per element of every dtype the format defines (so that files holding types this
/// program cannot use are still recognised as valid, and refused with a precise message).
fn dtype_bits(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

struct Entry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// Read and check a safetensors file; tensors in file order.
pub fn read_safetensors(path: &Path) -> Result<Vec<NamedArray>, IoError> {
    Ok(read_safetensors_with_metadata(path)?.tensors)
}

/// [`read_safetensors`] that also returns the file's `__metadata__`.
pub fn read_safetensors_with_metadata(path: &Path) -> Result<Safetensors, IoError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::os(path, "read", e))?;
    parse_safetensors(&bytes, &display_name(path))
}

/// Parse the bytes of a safetensors file; `name` is the file name errors show. Every length,
/// offset, dtype and shape is checked against the actual bytes: malformed input gives an
/// [`IoError`], never a panic or a huge allocation.
pub fn parse_safetensors(bytes: &[u8], name: &str) -> Result<Safetensors, IoError> {
    let file = || name.to_string();
    let header_err = |msg: String| IoError::Header { file: file(), msg };
    let tensor_err =
        |tensor: &str, msg: String| IoError::Tensor { file: file(), tensor: tensor.to_string(), msg };

    let Some(len_bytes) = bytes.get(..8) else {
        return Err(IoError::Truncated {
            file: file(),
            msg: format!(
                "the file has {} bytes, but a safetensors file starts with an 8-byte header length",
                bytes.len()
            ),
        });
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_LEN {
        return Err(header_err(format!(
            "header length {header_len} exceeds the format's limit of {MAX_HEADER_LEN} bytes (not a safetensors file?)"
        )));
    }
    let available = bytes.len() as u64 - 8;
    if header_len > available {
        return Err(IoError::Truncated {
            file: file(),
            msg: format!(
                "the header should be {header_len} bytes, but only {available} bytes follow its length"
            ),
        });
    }
    let header_end = 8 + header_len as usize;
    let header = std::str::from_utf8(&bytes[8..header_end])
        .map_err(|e| header_err(format!("the header is not UTF-8 ({e})")))?;
    let value = serde_json::from_str::<StrictJson>(header)
        .map_err(|e| header_err(format!("the header is not valid JSON ({e})")))?
        .0;
    let Value::Object(map) = value else {
        return Err(header_err("the header is not a JSON object".to_string()));
    };

    let mut metadata = BTreeMap::new();
    let mut entries = Vec::with_capacity(map.len());
    for (key, v) in map {
        if key == "__metadata__" {
            let Value::Object(m) = v else {
                return Err(header_err("\"__metadata__\" is not an object of strings".to_string()));
            };
            for (k, v) in m {
                let Value::String(s) = v else {
                    return Err(header_err(format!("\"__metadata__\".\"{k}\" is not a string")));
                };
                metadata.insert(k, s);
            }
            continue;
        }
        let Value::Object(info) = v else {
            return Err(tensor_err(&key, "its header entry is not an object".to_string()));
        };
        let dtype = match info.get("dtype") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(tensor_err(&key, "\"dtype\" is not a string".to_string())),
            None => return Err(tensor_err(&key, "no \"dtype\" field".to_string())),
        };
        if dtype_bits(&dtype).is_none() {
            return Err(tensor_err(&key, format!("unknown dtype \"{dtype}\"")));
        }
        let shape = match info.get("shape") {
            Some(Value::Array(dims)) => dims
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    tensor_err(&key, "\"shape\" is not a list of non-negative integers".to_string())
                })?,
            Some(_) => return Err(tensor_err(&key, "\"shape\" is not a list".to_string())),
            None => return Err(tensor_err(&key, "no \"shape\" field".to_string())),
        };
        let (begin, end) = match info.get("data_offsets") {
            Some(Value::Array(o)) if o.len() == 2 => match (o[0].as_u64(), o[1].as_u64()) {
                (Some(b), Some(e)) => (b, e),
                _ => {
                    return Err(tensor_err(
                        &key,
                        "\"data_offsets\" are not non-negative integers".to_string(),
                    ));
                }
            },
            Some(_) => {
                return Err(tensor_err(&key, "\"data_offsets\" is not a list [begin, end]".to_string()));
            }
            None => return Err(tensor_err(&key, "no \"data_offsets\" field".to_string())),
        };
        if end < begin {
            return Err(tensor_err(&key, format!("data_offsets [{begin}, {end}] end before they begin")));
        }
        entries.push(Entry { name: key, dtype, shape, begin, end });
    }

    // The data section must be covered exactly: tensors back to back, no overlap, no gap,
    // nothing past the end of the file and nothing after the last tensor.
    let data = &bytes[header_end..];
    let data_len = data.len() as u64;
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut next = 0u64;
    for e in &entries {
        if e.end > data_len {
            return Err(IoError::Truncated {
                file: file(),
                msg: format!(
                    "tensor \"{}\" has data_offsets [{}, {}], but the data section has only {data_len} bytes",
                    e.name, e.begin, e.end
                ),
            });
        }
        if e.begin < next {
            return Err(tensor_err(
                &e.name,
                format!(
                    "data_offsets [{}, {}] overlap the previous tensor, which ends at {next}",
                    e.begin, e.end
                ),
            ));
        }
        if e.begin > next {
            return Err(tensor_err(
                &e.name,
                format!(
                    "data_offsets [{}, {}] leave a gap after byte {next} of the data section",
                    e.begin, e.end
                ),
            ));
        }
        next = e.end;
    }
    if next != data_len {
        return Err(header_err(format!(
            "the tensors cover {next} bytes of data, but the file holds {data_len} bytes after the header"
        )));
    }

    let mut tensors = Vec::with_capacity(entries.len());
    for e in entries {
        let bits = dtype_bits(&e.dtype).expect("checked above") as u128;
        let count = e.shape.iter().try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
        let expected = count.and_then(|c| c.checked_mul(bits)).filter(|b| b % 8 == 0).map(|b| b / 8);
        let actual = (e.end - e.begin) as u128;
        if expected != Some(actual) {
            let shape_bytes = match expected {
                Some(b) => format!("{b} bytes"),
                None => "a size that is not a whole number of bytes".to_string(),
            };
            return Err(tensor_err(
                &e.name,
                format!(
                    "shape {:?} of {} needs {shape_bytes}, but data_offsets [{}, {}] hold {actual}",
                    e.shape, e.dtype, e.begin, e.end
                ),
            ));
        }
        let raw = &data[e.begin as usize..e.end as usize];
        let values = match e.dtype.as_str() {
            "F32" => ArrayData::F32(
                raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            ),
            "F16" => ArrayData::F16(
                raw.chunks_exact(2).map(|b| f16::from_le_bytes(b.try_into().unwrap())).collect(),
            ),
            "BF16" => ArrayData::Bf16(
                raw.chunks_exact(2).map(|b| bf16::from_le_bytes(b.try_into().unwrap())).collect(),
            ),
            "I64" => ArrayData::I64(
                raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(),
            ),
            other => {
                return Err(tensor_err(
                    &e.name,
                    format!(
                        "dtype {other} is valid safetensors, but this program reads only F32, F16, BF16 and I64"
                    ),
                ));
            }
        };
        tensors.push(NamedArray { name: e.name, shape: e.shape, data: values });
    }
    Ok(Safetensors { tensors, metadata })
}

/// JSON parsed into a [`Value`], refusing an object with a repeated key anywhere (a
/// repeated field would otherwise silently override the first, and the reference
/// implementation rejects repeated tensor fields).
struct StrictJson(Value);

impl<'de> serde::Deserialize<'de> for StrictJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!("duplicate key \"{key}\"")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

// ---- model state -----------------------------------------------------------------------

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

/// One entry of a module's state, PyTorch's order.
enum StateItem {
    Tensor(String, crate::Tensor),
    Counter(String, u64),
}

impl StateItem {
    fn name(&self) -> &str {
        match self {
            StateItem::Tensor(n, _) | StateItem::Counter(n, _) => n,
        }
    }
}

/// The module's tensors and counters in PyTorch's `state_dict` order: each counter goes right
/// after the last tensor of its own submodule (BatchNorm2d: weight, bias, running_mean,
/// running_var, num_batches_tracked).
fn state_items(module: &Sequential) -> Vec<StateItem> {
    let owner = |name: &str| name.rsplit_once('.').map(|(m, _)| m.to_string()).unwrap_or_default();
    let mut items: Vec<StateItem> =
        module.named_tensors().into_iter().map(|(n, t)| StateItem::Tensor(n, t)).collect();
    for (name, value) in module.counters() {
        let m = owner(&name);
        let at = items.iter().rposition(|it| owner(it.name()) == m).map_or(items.len(), |i| i + 1);
        items.insert(at, StateItem::Counter(name, value));
    }
    items
}

/// A module's state as PyTorch's `state_dict` would hold it for a module that keeps this
/// Sequential under the attribute `prefix` (pytorch/examples' DCGAN calls it "main"):
/// `main.0.weight`, `main.1.weight`, `main.1.bias`, `main.1.running_mean`,
/// `main.1.running_var`, `main.1.num_batches_tracked` (0-dim int64), ... in PyTorch's order.
/// Float tensors are stored as `dtype`.
pub fn module_state(prefix: &str, module: &Sequential, dtype: SaveDtype) -> Vec<NamedArray> {
    state_items(module)
        .into_iter()
        .map(|item| match item {
            StateItem::Tensor(name, t) => NamedArray {
                name: join(prefix, &name),
                shape: t.shape().to_vec(),
                data: ArrayData::from_f32(&t.to_vec(), dtype),
            },
            StateItem::Counter(name, n) => {
                NamedArray::scalar_i64(join(prefix, &name), i64::try_from(n).unwrap_or(i64::MAX))
            }
        })
        .collect()
}

/// Load a state written by [`module_state`] (or by PyTorch's `save_file(model.state_dict())`)
/// into `module`. Every expected name must be present with exactly the module's shape, and no
/// other name may be; float tensors of any stored type are converted to f32. Nothing is
/// changed unless everything fits. `file` is only used in messages.
pub fn load_module_state(
    prefix: &str,
    module: &Sequential,
    arrays: &[NamedArray],
    file: &Path,
) -> Result<(), IoError> {
    let mismatch = |msg: String| IoError::Mismatch { file: display_name(file), msg };
    let mut by_name: HashMap<&str, &NamedArray> = HashMap::with_capacity(arrays.len());
    for a in arrays {
        if by_name.insert(a.name.as_str(), a).is_some() {
            return Err(mismatch(format!("{} appears twice", a.name)));
        }
    }
    const HINT: &str =
        "(a checkpoint of another architecture? check --image-size, --channels, --nz, --ngf and --ndf)";

    let items = state_items(module);
    let mut plan: Vec<(&StateItem, &NamedArray)> = Vec::with_capacity(items.len());
    for item in &items {
        let full = join(prefix, item.name());
        let Some(&a) = by_name.get(full.as_str()) else {
            return Err(mismatch(format!("{full} is missing; the model expects it {HINT}")));
        };
        match item {
            StateItem::Tensor(_, t) => {
                if a.shape != t.shape() {
                    return Err(mismatch(format!(
                        "{full} has shape {:?}, the model expects {:?} {HINT}",
                        a.shape,
                        t.shape()
                    )));
                }
                if matches!(a.data, ArrayData::I64(_)) {
                    return Err(mismatch(format!(
                        "{full} is stored as I64, the model expects floating point"
                    )));
                }
                if let Some(why) = a.non_finite() {
                    return Err(mismatch(why));
                }
            }
            StateItem::Counter(..) => {
                if a.data.len() != 1 || a.shape.len() > 1 {
                    return Err(mismatch(format!(
                        "{full} has shape {:?}, the model expects a scalar []",
                        a.shape
                    )));
                }
                match a.data {
                    ArrayData::I64(ref v) if v[0] >= 0 => {}
                    ArrayData::I64(ref v) => {
                        return Err(mismatch(format!("{full} is {}, a count cannot be negative", v[0])));
                    }
                    _ => {
                        return Err(mismatch(format!(
                            "{full} is stored as {}, the model expects an I64 count",
                            a.data.dtype()
                        )));
                    }
                }
            }
        }
        plan.push((item, a));
    }
    if arrays.len() != plan.len() {
        let expected: std::collections::HashSet<String> =
            items.iter().map(|i| join(prefix, i.name())).collect();
        let extra: Vec<&str> =
            arrays.iter().map(|a| a.name.as_str()).filter(|n| !expected.contains(*n)).take(5).collect();
        return Err(mismatch(format!(
            "unexpected tensor{} {} not in the model {HINT}",
            if extra.len() == 1 { "" } else { "s" },
            extra.join(", ")
        )));
    }

    for (item, a) in plan {
        match (item, &a.data) {
            (StateItem::Tensor(_, t), data) => {
                t.copy_from_slice(&data.to_f32().expect("checked: a float type"))
            }
            (StateItem::Counter(name, _), ArrayData::I64(v)) => {
                let ok = module.set_counter(name, v[0] as u64);
                debug_assert!(ok, "counter {name} listed by the module but not settable");
            }
            (StateItem::Counter(..), _) => unreachable!("checked: counters are I64"),
        }
    }
    Ok(())
}

/// Write `module`'s state ([`module_state`]) to a safetensors file, atomically.
pub fn save_module_file(
    path: &Path,
    prefix: &str,
    module: &Sequential,
    dtype: SaveDtype,
    metadata: &BTreeMap<String, String>,
) -> Result<(), IoError> {
    write_safetensors(path, &module_state(prefix, module, dtype), metadata)
}

/// Read a safetensors file and load it into `module` ([`load_module_state`]); returns the
/// file's `__metadata__`.
pub fn load_module_file(
    path: &Path,
    prefix: &str,
    module: &Sequential,
) -> Result<BTreeMap<String, String>, IoError> {
    let file = read_safetensors_with_metadata(path)?;
    load_module_state(prefix, module, &file.tensors, path)?;
    Ok(file.metadata)
}
