//! Weights in the safetensors format, keyed by PyTorch state-dict names (`layers.0.weight`).
//!
//! Written tensors are always `F64` little-endian, so a round trip is bit-exact. Reading accepts
//! `F64`, `F32`, `F16` and `BF16` (converted to `f64`) and rejects every other dtype with an error
//! naming the tensor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use ::safetensors::tensor::{Dtype, SafeTensors, TensorView};

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
    let bytes = safetensors_bytes(tensors, metadata).map_err(|e| match e {
        crate::Error::Invalid(m) => invalid!("{}: {m}", path.display()),
        e => e,
    })?;
    super::write_atomic(path, &bytes)
}

/// The bytes of the safetensors file [`write_safetensors`] writes (the same tensors always give
/// the same bytes: metadata in key order).
pub fn safetensors_bytes(
    tensors: &[(String, Vec<usize>, &[f64])],
    metadata: Option<BTreeMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, shape, data) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(invalid!("duplicate tensor name '{name}'"));
        }
        if element_count(shape) != Some(data.len()) {
            return Err(invalid!(
                "tensor '{name}': shape {shape:?} does not match its {} elements",
                data.len()
            ));
        }
        buffers.push(data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    }
    let views = tensors
        .iter()
        .zip(&buffers)
        .map(|((name, shape, _), bytes)| {
            TensorView::new(Dtype::F64, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .map_err(|e| invalid!("tensor '{name}': {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let hashed: Option<HashMap<String, String>> = metadata.clone().map(|m| m.into_iter().collect());
    let mut bytes = ::safetensors::serialize(views, hashed).map_err(|e| invalid!("cannot encode safetensors: {e}"))?;
    if let Some(m) = &metadata {
        sort_metadata(&mut bytes, m);
    }
    Ok(bytes)
}

/// The safetensors crate writes `__metadata__` from a `HashMap`, whose order changes from one
/// map to the next; rewrite it in key order so that the same tensors always give the same bytes.
/// The header begins `{"__metadata__":{…}` and the sorted object has the same length, so it is
/// replaced in place (left as it is if the header does not look as expected).
fn sort_metadata(bytes: &mut [u8], meta: &BTreeMap<String, String>) {
    const PREFIX: &[u8] = br#"{"__metadata__":"#;
    let sorted = serde_json::to_string(meta).expect("string map serializes");
    let start = 8 + PREFIX.len();
    let end = start + sorted.len();
    if bytes.len() < end || !bytes[8..].starts_with(PREFIX) {
        return;
    }
    let same = serde_json::from_slice::<BTreeMap<String, String>>(&bytes[start..end]).is_ok_and(|m| &m == meta);
    if same {
        bytes[start..end].copy_from_slice(sorted.as_bytes());
    }
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
