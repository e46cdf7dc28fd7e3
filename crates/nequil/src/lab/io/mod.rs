//! Reading and writing arrays and weights: NumPy `.npy`/`.npz`, MNIST IDX, safetensors.
//!
//! Everything is read into `f64`: [`NdArray`] holds a shape and C-order data, and safetensors
//! files map PyTorch state-dict names (`layers.0.weight`) to a shape and data. Errors are
//! [`Error::Io`](crate::Error::Io) for unreadable or malformed files and name the file and the
//! problem; [`Error::Invalid`](crate::Error::Invalid) for bad arguments (e.g. a shape that does
//! not match the data).
//!
//! Every writer goes through [`write_atomic`], so a crash never leaves a half-written file in
//! place of a good one.
//!
//! - [`npy`]: `.npy` (versions 1–3, any integer/float/bool dtype, either byte order, Fortran
//!   order) and `.npz` (stored or deflated).
//! - [`idx`]: MNIST IDX files, raw or gzip-compressed, and [`load_mnist`].
//! - [`safetensors`]: `F64` weights written, `F64`/`F32`/`F16`/`BF16` read.

pub mod idx;
pub mod npy;
pub mod safetensors;

pub use self::idx::{load_mnist, read_idx, write_idx_u8};
pub use self::npy::{has_non_finite, npy_bytes, parse_npy, read_npy, read_npz, write_npy, write_npz, NdArray};
pub use self::safetensors::{read_safetensors, read_safetensors_with_metadata, write_safetensors, Tensors};

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{io_err, Result};

/// Writes `bytes` to `path` atomically: the data goes to a temporary file in the same directory,
/// is flushed to disk, and is then renamed over `path`. Readers see either the old file or the
/// complete new one. The directory must already exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io_err!("cannot write {}: not a file path", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err!("cannot write {}: {e}", path.display())
    })
}
