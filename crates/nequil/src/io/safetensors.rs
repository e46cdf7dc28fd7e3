//! Weights in the safetensors format, keyed by PyTorch state-dict names (`layers.0.weight`).
//!
//! Written tensors are always `F64` little-endian, so a round trip is bit-exact. Reading accepts
//! `F64`, `F32`, `F16` and `BF16` (converted to `f64`) and rejects every other dtype with an error
//! naming the tensor.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use ::safetensors::tensor::{Dtype, SafeTensors};

use super::npy::element_count;
use crate::{invalid, io_err, Result};

/// Tensors read from a safetensors file: name → (shape, data in C order).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

/// Writes tensors `(name, shape, data)` as `F64` to a safetensors file, atomically (through a
/// temporary file in the same directory). `metadata` goes to the header's `__metadata__`.
/// Names must be distinct and each `data` must have as many elements as its shape.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f64])],
    metadata: Option<BTreeMap<String, String>>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, shape, data) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(invalid!("duplicate tensor name '{name}' for {}", path.display()));
        }
        if element_count(shape) != Some(data.len()) {
            return Err(invalid!(
                "tensor '{name}': shape {shape:?} does not match its {} elements",
                data.len()
            ));
        }
        buffers.push(data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    }
    // The header is built here rather than by the safetensors crate, whose metadata map is a
    // HashMap: a fixed key order makes the file a deterministic function of its contents.
    let mut header = serde_json::Map::new();
    if let Some(m) = metadata {
        let meta: serde_json::Map<String, serde_json::Value> =
            m.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0usize;
    for ((name, shape, _), buf) in tensors.iter().zip(&buffers) {
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F64", "shape": shape, "data_offsets": [offset, offset + buf.len()] }),
        );
        offset += buf.len();
    }
    let mut head = serde_json::to_string(&serde_json::Value::Object(header)).expect("header serializes");
    while head.len() % 8 != 0 {
        head.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + head.len() + offset);
    bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
    bytes.extend_from_slice(head.as_bytes());
    for buf in &buffers {
        bytes.extend_from_slice(buf);
    }
    super::write_atomic(path, &bytes)
}

/// Reads every tensor of a safetensors file, converting `F64`/`F32`/`F16`/`BF16` to `f64`.
pub fn read_safetensors(path: &Path) -> Result<Tensors> {
    read_safetensors_with_metadata(path).map(|(t, _)| t)
}

/// Like [`read_safetensors`], also returning the header's `__metadata__` (empty if absent).
pub fn read_safetensors_with_metadata(path: &Path) -> Result<(Tensors, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| io_err!("cannot read {}: {e}", path.display()))?;
    let bad = |e: ::safetensors::SafeTensorError| io_err!("{}: not a valid safetensors file: {e}", path.display());
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let st = SafeTensors::deserialize(&bytes).map_err(bad)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        let raw = view.data();
        let data: Vec<f64> = match view.dtype() {
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            other => {
                return Err(io_err!(
                    "{}: tensor '{name}' has unsupported dtype {other:?} \
                     (supported: F64, F32, F16, BF16)",
                    path.display()
                ))
            }
        };
        out.insert(name.to_owned(), (view.shape().to_vec(), data));
    }
    Ok((out, metadata))
}
