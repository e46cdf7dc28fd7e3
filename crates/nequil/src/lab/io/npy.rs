//! NumPy `.npy` and `.npz` files.
//!
//! Reading accepts format versions 1.0, 2.0 and 3.0, little- and big-endian floats (`f8`, `f4`,
//! `f2`), signed and unsigned integers of 1 to 8 bytes and `bool`, in C or Fortran order; every
//! array is converted to `f64` in C (row-major) order. Complex, string, object, datetime and
//! structured dtypes are rejected with an error naming the dtype.
//!
//! Writing always produces `'<f8'`, C order, format version 1.0 (2.0 only if the header would not
//! fit, which needs an absurd number of dimensions). `.npz` archives are written uncompressed, as
//! `np.savez` does; both stored and deflated (`np.savez_compressed`) members are read.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Write};
use std::path::Path;

use crate::lab::resources::{available_memory, human_bytes, read_budget};
use crate::{invalid, io_err, Error, Result};

/// The magic string that starts every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An n-dimensional array of `f64` in C (row-major) order.
///
/// The last index varies fastest: element `[i, j]` of a `rows × cols` array is
/// `data[i * cols + j]`. A 0-dimensional array (a scalar) has an empty `shape` and one element.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// The extent of each axis.
    pub shape: Vec<usize>,
    /// The elements, in C order; `data.len()` is the product of `shape`.
    pub data: Vec<f64>,
}

impl NdArray {
    /// Builds an array, checking that `data` has as many elements as `shape` calls for.
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Result<Self> {
        let n = element_count(&shape).ok_or_else(|| invalid!("array shape {shape:?} overflows"))?;
        if n != data.len() {
            return Err(invalid!(
                "array shape {shape:?} needs {n} elements but {} were given",
                data.len()
            ));
        }
        Ok(NdArray { shape, data })
    }

    /// The number of dimensions (0 for a scalar).
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The total number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the array has no elements (some axis has extent 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The flat index of the first NaN or infinite element, if any.
pub fn has_non_finite(a: &NdArray) -> Option<usize> {
    a.data.iter().position(|x| !x.is_finite())
}

/// The product of `shape`, or `None` on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

// ---------------------------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------------------------

/// A supported element type: kind (`b'f'`, `b'i'`, `b'u'` or `b'b'` for bool), size in bytes and
/// byte order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dtype {
    pub kind: u8,
    pub size: usize,
    pub big_endian: bool,
}

impl Dtype {
    /// Parses a NumPy type string such as `'<f8'`, `'>i4'` or `'|b1'`.
    fn parse(descr: &str) -> std::result::Result<Dtype, String> {
        let unsupported = || {
            format!(
                "unsupported dtype '{descr}' (supported: f2/f4/f8, i1/i2/i4/i8, u1/u2/u4/u8, b1, \
                 in either byte order)"
            )
        };
        let b = descr.as_bytes();
        if b.len() < 2 {
            return Err(unsupported());
        }
        let (order, rest) = match b[0] {
            b'<' | b'>' | b'|' | b'=' => (b[0], &b[1..]),
            _ => (b'=', b),
        };
        let big_endian = match order {
            b'>' => true,
            b'<' | b'|' => false,
            _ => cfg!(target_endian = "big"),
        };
        let kind = rest[0];
        let size: usize = std::str::from_utf8(&rest[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(unsupported)?;
        let ok = match kind {
            b'f' => matches!(size, 2 | 4 | 8),
            b'i' | b'u' => matches!(size, 1 | 2 | 4 | 8),
            b'b' => size == 1,
            _ => false,
        };
        if ok {
            Ok(Dtype { kind, size, big_endian })
        } else {
            Err(unsupported())
        }
    }
}

/// Reads `N` bytes as an array.
fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

/// Converts `bytes` (a whole number of elements of `dtype`) to `f64`.
#[allow(clippy::redundant_closure_call)]
pub(crate) fn decode(dtype: Dtype, bytes: &[u8]) -> Vec<f64> {
    macro_rules! conv {
        ($n:literal, $f:expr) => {
            bytes
                .chunks_exact($n)
                .map(|c| {
                    let mut a = arr::<$n>(c);
                    if dtype.big_endian {
                        a.reverse();
                    }
                    $f(a)
                })
                .collect()
        };
    }
    match (dtype.kind, dtype.size) {
        (b'f', 8) => conv!(8, f64::from_le_bytes),
        (b'f', 4) => conv!(4, |a| f32::from_le_bytes(a) as f64),
        (b'f', 2) => conv!(2, |a| half::f16::from_le_bytes(a).to_f64()),
        (b'i', 1) => bytes.iter().map(|&b| b as i8 as f64).collect(),
        (b'i', 2) => conv!(2, |a| i16::from_le_bytes(a) as f64),
        (b'i', 4) => conv!(4, |a| i32::from_le_bytes(a) as f64),
        (b'i', 8) => conv!(8, |a| i64::from_le_bytes(a) as f64),
        (b'u', 1) => bytes.iter().map(|&b| b as f64).collect(),
        (b'u', 2) => conv!(2, |a| u16::from_le_bytes(a) as f64),
        (b'u', 4) => conv!(4, |a| u32::from_le_bytes(a) as f64),
        (b'u', 8) => conv!(8, |a| u64::from_le_bytes(a) as f64),
        (b'b', 1) => bytes.iter().map(|&b| f64::from(u8::from(b != 0))).collect(),
        _ => unreachable!("Dtype::parse admits only the types decoded here"),
    }
}

// ---------------------------------------------------------------------------------------------
// Header: a Python dict literal
// ---------------------------------------------------------------------------------------------

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug)]
enum Py {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Seq(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

/// A recursive-descent parser for the Python literal in a `.npy` header.
struct Lit<'a> {
    s: &'a [char],
    i: usize,
    /// Brackets open around the current position (bounded by [`MAX_DEPTH`]).
    depth: usize,
}

/// The deepest nesting of brackets accepted in a header (NumPy writes depth 2: the dict and the
/// shape tuple); deeper is refused before the parser's recursion could exhaust the stack.
const MAX_DEPTH: usize = 16;

impl Lit<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("malformed header: expected '{c}' at character {}", self.i))
        }
    }

    /// Parses items up to `close`, separated by commas (trailing comma allowed).
    fn items(&mut self, close: char, dict: bool) -> std::result::Result<Vec<(Py, Py)>, String> {
        let mut out = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(out);
            }
            let k = self.value()?;
            let v = if dict {
                self.expect(':')?;
                self.value()?
            } else {
                Py::None
            };
            out.push((k, v));
            if self.peek() == Some(',') {
                self.i += 1;
            } else {
                self.expect(close)?;
                return Ok(out);
            }
        }
    }

    fn value(&mut self) -> std::result::Result<Py, String> {
        if matches!(self.peek(), Some('{' | '(' | '[')) {
            if self.depth >= MAX_DEPTH {
                return Err(format!(
                    "malformed header: brackets nested deeper than {MAX_DEPTH} at character {}",
                    self.i
                ));
            }
            self.depth += 1;
            let v = self.value_inner();
            self.depth -= 1;
            return v;
        }
        self.value_inner()
    }

    fn value_inner(&mut self) -> std::result::Result<Py, String> {
        match self.peek() {
            Some(q @ ('\'' | '"')) => {
                self.i += 1;
                let mut out = String::new();
                while let Some(&c) = self.s.get(self.i) {
                    self.i += 1;
                    match c {
                        '\\' => {
                            if let Some(&e) = self.s.get(self.i) {
                                out.push(e);
                                self.i += 1;
                            }
                        }
                        c if c == q => return Ok(Py::Str(out)),
                        c => out.push(c),
                    }
                }
                Err("malformed header: unterminated string".into())
            }
            Some('{') => {
                self.i += 1;
                Ok(Py::Dict(self.items('}', true)?))
            }
            Some(open @ ('(' | '[')) => {
                self.i += 1;
                let close = if open == '(' { ')' } else { ']' };
                Ok(Py::Seq(self.items(close, false)?.into_iter().map(|(k, _)| k).collect()))
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '-' => {
                let start = self.i;
                while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == '-') {
                    self.i += 1;
                }
                let word: String = self.s[start..self.i].iter().collect();
                match word.as_str() {
                    "True" => Ok(Py::Bool(true)),
                    "False" => Ok(Py::Bool(false)),
                    "None" => Ok(Py::None),
                    w => w
                        .trim_end_matches('L')
                        .parse()
                        .map(Py::Int)
                        .map_err(|_| format!("malformed header: unexpected '{w}'")),
                }
            }
            Some(c) => Err(format!("malformed header: unexpected '{c}'")),
            None => Err("malformed header: unexpected end".into()),
        }
    }
}

/// The three fields of a `.npy` header.
struct Header {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = Lit {
        s: &chars,
        i: 0,
        depth: 0,
    };
    let Py::Dict(entries) = p.value()? else {
        return Err(format!("malformed header: not a dict: {:?}", text.trim()));
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Py::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("malformed header: no '{key}' in {:?}", text.trim()))
    };
    let dtype = match get("descr")? {
        Py::Str(s) => Dtype::parse(s)?,
        Py::Seq(_) => return Err("structured (record) dtypes are not supported".into()),
        other => return Err(format!("malformed header: bad 'descr' {other:?}")),
    };
    let fortran_order = match get("fortran_order")? {
        Py::Bool(b) => *b,
        other => return Err(format!("malformed header: bad 'fortran_order' {other:?}")),
    };
    let shape = match get("shape")? {
        Py::Seq(dims) => dims
            .iter()
            .map(|d| match d {
                Py::Int(n) => usize::try_from(*n).map_err(|_| format!("dimension {n} too large")),
                other => Err(format!("malformed header: bad dimension {other:?}")),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        other => return Err(format!("malformed header: bad 'shape' {other:?}")),
    };
    Ok(Header {
        dtype,
        fortran_order,
        shape,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Parses a whole `.npy` file held in memory; errors are plain messages, to be given context.
fn parse(bytes: &[u8]) -> std::result::Result<NdArray, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic; expected \\x93NUMPY)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(arr(&bytes[8..12])) as usize, 12),
        2 | 3 => return Err("truncated header".into()),
        _ => return Err(format!("unsupported .npy format version {major}.{minor}")),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| format!("truncated header: {header_len} bytes announced"))?;
    let raw = &bytes[start..end];
    let text: String = if major == 3 {
        std::str::from_utf8(raw)
            .map_err(|_| "header is not UTF-8".to_string())?
            .to_owned()
    } else {
        raw.iter().map(|&b| b as char).collect() // latin-1
    };
    let h = parse_header(&text)?;
    let n = element_count(&h.shape).ok_or_else(|| format!("shape {:?} overflows", h.shape))?;
    let body = &bytes[end..];
    let need = n
        .checked_mul(h.dtype.size)
        .ok_or_else(|| format!("shape {:?} overflows", h.shape))?;
    if body.len() < need {
        return Err(format!(
            "truncated data: shape {:?} needs {need} bytes, only {} present",
            h.shape,
            body.len()
        ));
    }
    check_decoded(n, h.fortran_order && h.shape.len() > 1)?;
    let values = decode(h.dtype, &body[..need]);
    let data = if h.fortran_order && h.shape.len() > 1 && n > 0 {
        fortran_to_c(&h.shape, &values)
    } else {
        values
    };
    Ok(NdArray { shape: h.shape, data })
}

/// Refuses to convert `n` elements to `f64` (twice when they are reordered from Fortran order)
/// when that needs more memory than is available (a file of bytes holds 8 times as much as
/// `f64`, and a compressed one more still).
pub(crate) fn check_decoded(n: usize, reorder: bool) -> std::result::Result<(), String> {
    let need = n as u128 * 8 * if reorder { 2 } else { 1 };
    match available_memory() {
        Some(avail) if need > avail as u128 => Err(format!(
            "{n} elements need {} of memory as f64, but {} is available",
            human_bytes(need),
            human_bytes(avail as u128)
        )),
        _ => Ok(()),
    }
}

/// Reorders column-major `values` of the given shape into row-major order.
fn fortran_to_c(shape: &[usize], values: &[f64]) -> Vec<f64> {
    let nd = shape.len();
    let mut strides = vec![1usize; nd]; // C-order strides
    for k in (0..nd.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    let mut out = vec![0.0; values.len()];
    let mut idx = vec![0usize; nd];
    let mut off = 0usize; // C offset of `idx`
    for &v in values {
        out[off] = v;
        // Advance the multi-index with the first axis fastest (Fortran order).
        for k in 0..nd {
            idx[k] += 1;
            off += strides[k];
            if idx[k] < shape[k] {
                break;
            }
            off -= strides[k] * idx[k];
            idx[k] = 0;
        }
    }
    out
}

/// Parses the bytes of a `.npy` file held in memory.
pub fn parse_npy(bytes: &[u8]) -> Result<NdArray> {
    parse(bytes).map_err(|m| io_err!("npy data: {m}"))
}

/// Reads a `.npy` file, converting its elements to `f64` in C order.
pub fn read_npy(path: &Path) -> Result<NdArray> {
    let bytes = std::fs::read(path).map_err(|e| io_err!("cannot read {}: {e}", path.display()))?;
    parse(&bytes).map_err(|m| io_err!("{}: {m}", path.display()))
}

/// Reads every array of a `.npz` archive, in archive order, keyed by member name without the
/// `.npy` suffix. Stored (`np.savez`) and deflated (`np.savez_compressed`) members are accepted.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NdArray)>> {
    let file = File::open(path).map_err(|e| io_err!("cannot read {}: {e}", path.display()))?;
    npz_members(BufReader::new(file)).map_err(|m| io_err!("{}: {m}", path.display()))
}

/// [`read_npz`] for an archive held in memory (e.g. one embedded in the binary); errors name
/// `what` in place of a file.
pub fn parse_npz(bytes: &[u8], what: &str) -> Result<Vec<(String, NdArray)>> {
    npz_members(Cursor::new(bytes)).map_err(|m| io_err!("{what}: {m}"))
}

/// The arrays of a `.npz` archive read from `reader`.
fn npz_members<R: Read + std::io::Seek>(reader: R) -> std::result::Result<Vec<(String, NdArray)>, String> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| format!("not a valid .npz (zip) archive: {e}"))?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| format!("member {i}: {e}"))?;
        if member.is_dir() {
            continue;
        }
        let name = member.name().map_err(|e| format!("member {i}: {e}"))?.into_owned();
        // The sizes in a zip's headers are claims: memory is reserved for what is actually
        // inflated (at most a few MB up front), and inflating stops at the read budget.
        let budget = read_budget();
        let mut bytes = Vec::with_capacity(usize::try_from(member.size().min(1 << 22)).unwrap_or(0));
        (&mut member)
            .take(budget.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("member '{name}': {e}"))?;
        if bytes.len() as u64 > budget {
            return Err(format!(
                "member '{name}': inflates to more than {}, more than the memory available allows",
                human_bytes(budget as u128)
            ));
        }
        let array = parse(&bytes).map_err(|m| format!("member '{name}': {m}"))?;
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_owned();
        out.push((key, array));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Encodes an array as a `.npy` file (`'<f8'`, C order, version 1.0).
pub fn npy_bytes(a: &NdArray) -> Result<Vec<u8>> {
    if element_count(&a.shape) != Some(a.data.len()) {
        return Err(invalid!(
            "array shape {:?} does not match its {} elements",
            a.shape,
            a.data.len()
        ));
    }
    let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces and end with '\n' so that magic + version + length + header is a
    // multiple of 64 bytes.
    let v1 = header.len() + 11 <= u16::MAX as usize;
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.extend(std::iter::repeat_n(' ', total - prefix - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + 8 * a.data.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        let len = u32::try_from(header.len()).map_err(|_| invalid!("npy header too long"))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for x in &a.data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    Ok(out)
}

/// Writes an array as a `.npy` file (`'<f8'`, C order, version 1.0), atomically.
pub fn write_npy(path: &Path, a: &NdArray) -> Result<()> {
    super::write_atomic(path, &npy_bytes(a)?)
}

/// Writes arrays to an uncompressed `.npz` archive (as `np.savez` does), atomically. Each key
/// becomes a member `key.npy`; keys must be distinct.
pub fn write_npz(path: &Path, arrays: &[(&str, &NdArray)]) -> Result<()> {
    let zerr = |e: zip::result::ZipError| io_err!("writing {}: {e}", path.display());
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let mut seen = std::collections::HashSet::new();
    for (key, a) in arrays {
        if !seen.insert(*key) {
            return Err(invalid!("duplicate npz key '{key}' for {}", path.display()));
        }
        let bytes = npy_bytes(a).map_err(|e| match e {
            Error::Invalid(m) => invalid!("npz key '{key}': {m}"),
            e => e,
        })?;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(bytes.len() as u64 >= u32::MAX as u64);
        zip.start_file(format!("{key}.npy"), options).map_err(zerr)?;
        zip.write_all(&bytes)
            .map_err(|e| io_err!("writing {}: {e}", path.display()))?;
    }
    let bytes = zip.finish().map_err(zerr)?.into_inner();
    super::write_atomic(path, &bytes)
}
