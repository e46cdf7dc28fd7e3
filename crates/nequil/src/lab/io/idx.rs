//! MNIST IDX files.
//!
//! An IDX file is two zero bytes, a type code (`0x08` u8, `0x09` i8, `0x0B` i16, `0x0C` i32,
//! `0x0D` f32, `0x0E` f64), the number of dimensions, each dimension as a big-endian `u32`, then
//! the elements in C order, big-endian. Files compressed with gzip (as distributed, `*.gz`) are
//! recognised by their magic bytes `1f 8b` and inflated in memory.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::npy::{check_decoded, decode, element_count, Dtype, NdArray};
use crate::lab::resources::{human_bytes, read_budget};
use crate::{invalid, io_err, Result};

/// A decoded IDX file: shape, element type and the raw (big-endian) element bytes.
struct Raw {
    shape: Vec<usize>,
    dtype: Dtype,
    body: Vec<u8>,
}

/// Reads a file, inflating it if it is gzip-compressed.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| io_err!("cannot read {}: {e}", path.display()))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let budget = read_budget();
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(1 << 26));
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(budget.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| io_err!("{}: corrupt gzip data: {e}", path.display()))?;
        if out.len() as u64 > budget {
            return Err(io_err!(
                "{}: inflates to more than {}, more than the memory available allows",
                path.display(),
                human_bytes(budget as u128)
            ));
        }
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses an IDX file held in memory (already inflated).
fn parse(mut bytes: Vec<u8>) -> std::result::Result<Raw, String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (bad magic; expected 00 00 <type> <ndim>)".into());
    }
    let (kind, size) = match bytes[2] {
        0x08 => (b'u', 1),
        0x09 => (b'i', 1),
        0x0B => (b'i', 2),
        0x0C => (b'i', 4),
        0x0D => (b'f', 4),
        0x0E => (b'f', 8),
        t => return Err(format!("unknown IDX type code 0x{t:02X}")),
    };
    let dtype = Dtype {
        kind,
        size,
        big_endian: true,
    };
    let ndim = bytes[3] as usize;
    let start = 4 + 4 * ndim;
    if bytes.len() < start {
        return Err(format!("truncated header: {ndim} dimensions announced"));
    }
    let shape: Vec<usize> = bytes[4..start]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let need = element_count(&shape)
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    let have = bytes.len() - start;
    if have < need {
        return Err(format!(
            "truncated data: shape {shape:?} needs {need} bytes, only {have} present"
        ));
    }
    bytes.truncate(start + need);
    bytes.drain(..start);
    Ok(Raw {
        shape,
        dtype,
        body: bytes,
    })
}

/// Reads and parses an IDX file (raw or gzip), with errors naming the file.
fn read_raw(path: &Path) -> Result<Raw> {
    parse(read_maybe_gz(path)?).map_err(|m| io_err!("{}: {m}", path.display()))
}

/// Reads an IDX file (raw or gzip-compressed), converting its elements to `f64` unscaled.
pub fn read_idx(path: &Path) -> Result<NdArray> {
    let raw = read_raw(path)?;
    check_decoded(raw.body.len() / raw.dtype.size, false).map_err(|m| io_err!("{}: {m}", path.display()))?;
    Ok(NdArray {
        data: decode(raw.dtype, &raw.body),
        shape: raw.shape,
    })
}

/// Writes an uncompressed IDX file of unsigned bytes (type code `0x08`), atomically.
pub fn write_idx_u8(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    if element_count(dims) != Some(data.len()) {
        return Err(invalid!(
            "IDX dims {dims:?} do not match {} bytes of data for {}",
            data.len(),
            path.display()
        ));
    }
    let ndim = u8::try_from(dims.len()).map_err(|_| invalid!("IDX allows at most 255 dims"))?;
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, 0x08, ndim]);
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| invalid!("IDX dimension {d} exceeds u32"))?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    super::write_atomic(path, &out)
}

/// Finds the first existing file among `base` and its variants in `dir`, or lists what was tried.
fn find(dir: &Path, names: &[&str]) -> std::result::Result<PathBuf, Vec<String>> {
    let mut tried = Vec::new();
    for name in names {
        for candidate in [name.to_string(), format!("{name}.gz")] {
            let p = dir.join(&candidate);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(candidate);
        }
    }
    Err(tried)
}

/// Loads the MNIST training (`train = true`) or test set from `dir`.
///
/// Looks for `train-images-idx3-ubyte` / `train-labels-idx1-ubyte` or `t10k-images-idx3-ubyte` /
/// `t10k-labels-idx1-ubyte`, each possibly with a `.gz` suffix (the `*.idx3-ubyte` spelling with a
/// dot is accepted too). Returns the images as an `N × (rows·cols)` array (`N × 784` for MNIST)
/// with pixels scaled to `[0, 1]`, and the labels (digits 0 to 9: any other value is an error
/// naming the file). `limit` keeps only the first `limit` examples.
pub fn load_mnist(dir: &Path, train: bool, limit: Option<usize>) -> Result<(NdArray, Vec<u8>)> {
    let prefix = if train { "train" } else { "t10k" };
    let locate = |what: &str, idx: &str| {
        let names = [
            format!("{prefix}-{what}-{idx}-ubyte"),
            format!("{prefix}-{what}.{idx}-ubyte"),
        ];
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        find(dir, &names).map_err(|tried| {
            io_err!(
                "MNIST {} {what} not found in {}: looked for {}",
                if train { "training" } else { "test" },
                dir.display(),
                tried.join(", ")
            )
        })
    };
    let (img_path, lbl_path) = (locate("images", "idx3")?, locate("labels", "idx1")?);
    let (img, lbl) = (read_raw(&img_path)?, read_raw(&lbl_path)?);
    if img.dtype.kind != b'u' || img.shape.len() != 3 {
        return Err(io_err!(
            "{}: expected a 3-dimensional u8 image file, found shape {:?}",
            img_path.display(),
            img.shape
        ));
    }
    if lbl.dtype.kind != b'u' || lbl.shape.len() != 1 {
        return Err(io_err!(
            "{}: expected a 1-dimensional u8 label file, found shape {:?}",
            lbl_path.display(),
            lbl.shape
        ));
    }
    if img.shape[0] != lbl.shape[0] {
        return Err(io_err!(
            "MNIST images ({}) and labels ({}) disagree on the number of examples: {} vs {}",
            img_path.display(),
            lbl_path.display(),
            img.shape[0],
            lbl.shape[0]
        ));
    }
    if let Some(i) = lbl.body.iter().position(|&l| l > 9) {
        return Err(io_err!(
            "{}: label {i} is {}; MNIST labels are digits 0 to 9",
            lbl_path.display(),
            lbl.body[i]
        ));
    }
    let n = limit.map_or(img.shape[0], |l| l.min(img.shape[0]));
    let pixels = img.shape[1] * img.shape[2];
    check_decoded(n * pixels, false).map_err(|m| io_err!("{}: {m}", img_path.display()))?;
    let data = img.body[..n * pixels].iter().map(|&p| p as f64 / 255.0).collect();
    let mut labels = lbl.body;
    labels.truncate(n);
    Ok((
        NdArray {
            shape: vec![n, pixels],
            data,
        },
        labels,
    ))
}
