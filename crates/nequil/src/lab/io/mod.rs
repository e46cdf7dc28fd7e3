//! Reading and writing arrays and weights: NumPy `.npy`/`.npz`, MNIST IDX, safetensors.
//!
//! Everything is read into `f64`: [`NdArray`] holds a shape and C-order data, and safetensors
//! files map PyTorch state-dict names (`layers.0.weight`) to a shape and data. Errors are
//! [`Error::Io`](crate::Error::Io) for unreadable or malformed files and name the file and the
//! problem; [`Error::Invalid`](crate::Error::Invalid) for bad arguments (e.g. a shape that does
//! not match the data).
//!
//! Every writer goes through [`write_atomic`] (or [`write_atomic_all`] for a set of files,
//! [`write_new_atomic`] for a file that must not exist yet), so a crash, a full disk or a file
//! size limit never leaves a half-written file in place of a good one.
//!
//! - [`npy`]: `.npy` (versions 1–3, any integer/float/bool dtype, either byte order, Fortran
//!   order) and `.npz` (stored or deflated).
//! - [`idx`]: MNIST IDX files, raw or gzip-compressed, and [`load_mnist`].
//! - [`safetensors`]: `F64` weights written, `F64`/`F32`/`F16`/`BF16` read.
//! - [`weights`]: a model's θ as safetensors by PyTorch name ([`load_weights`], [`save_weights`]).

pub mod idx;
pub mod npy;
pub mod safetensors;
pub mod weights;

pub use self::idx::{load_mnist, read_idx, write_idx_u8};
pub use self::npy::{
    has_non_finite, npy_bytes, parse_npy, parse_npz, read_npy, read_npz, write_npy, write_npz, NdArray,
};
pub use self::safetensors::{
    read_safetensors, read_safetensors_with_metadata, safetensors_bytes, write_safetensors, Tensors,
};
pub use self::weights::{load_weights, named_tensors, save_weights, theta_from_tensors, weights_bytes};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{io_err, Result};

/// Writes `bytes` to `path` atomically: the data goes to a temporary file in the same directory,
/// is flushed to disk, and is then renamed over `path`. Readers see either the old file or the
/// complete new one; on any error (a full disk, a file size limit, a read-only directory) the
/// temporary file is removed and `path` is left as it was. The directory must already exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_all(&[(path, bytes)])
}

/// Writes several files all or nothing: each goes to a temporary file next to its path (flushed
/// to disk); only once every one is complete are they renamed into place, in the order given.
/// On an error while writing, every temporary file is removed and no file at the paths has
/// changed. (A rename cannot run out of space; should one fail all the same, the files renamed
/// before it stay in place, each of them complete.)
pub fn write_atomic_all(files: &[(&Path, &[u8])]) -> Result<()> {
    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    let cleanup = |temps: &[PathBuf]| {
        for t in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    for (path, bytes) in files {
        match write_temp(path, bytes) {
            Ok(t) => temps.push(t),
            Err(e) => {
                cleanup(&temps);
                return Err(e);
            }
        }
    }
    for (i, ((path, _), tmp)) in files.iter().zip(&temps).enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            cleanup(&temps[i..]);
            return Err(io_err!("cannot write {}: {e}", path.display()));
        }
    }
    Ok(())
}

/// Creates `path` holding `bytes`, atomically and only if it does not exist yet; returns whether
/// this call created it (`false`: it existed and is left as it was). The data go to a temporary
/// file next to `path` (flushed to disk), which is hard-linked to `path` and then removed: the
/// link fails when `path` exists, so of several processes creating one file at the same moment
/// exactly one succeeds, and readers see either no file or the complete one. On a filesystem
/// without hard links the temporary file is renamed into place when `path` does not exist yet
/// (complete contents still, but two processes checking at the same moment may both rename, and
/// the last one's file stays). The directory must already exist.
pub fn write_new_atomic(path: &Path, bytes: &[u8]) -> Result<bool> {
    let tmp = write_temp(path, bytes)?;
    let created = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) if path.exists() => Ok(false),
        Err(_) => std::fs::rename(&tmp, path)
            .map(|()| true)
            .map_err(|e| io_err!("cannot write {}: {e}", path.display())),
    };
    // Gone already when it was renamed.
    let _ = std::fs::remove_file(&tmp);
    created
}

/// Writes `bytes` to a new temporary file next to `path` (a hidden name that ends in `.tmp`),
/// flushed to disk; returns its path. On error nothing is left behind.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
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
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io_err!("cannot write {}: {e}", path.display()))
        }
    }
}
