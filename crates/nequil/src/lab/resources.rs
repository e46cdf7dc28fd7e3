//! The machine's memory, and the refusal of models that cannot fit in it before anything is
//! allocated.
//!
//! A model's parameter count is known as soon as its spec is read; a run needs θ, its gradient
//! and a few copies of it (the initial and final parameters), plus the layers' buffers for one
//! batch. When that exceeds the memory available, the spec is refused with the numbers, instead of
//! the process aborting on a failed allocation halfway through.

use crate::core::models::Model;
use crate::{invalid, Result};

/// Bytes of memory available to this process: `MemAvailable` of `/proc/meminfo`, lowered to the
/// cgroup's limit (`memory.max − memory.current`, cgroup v2) when there is one. `None` where
/// neither can be read (another OS): then no limit is enforced beyond allocation failures.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let avail = meminfo.as_deref().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let cgroup = match (read("/sys/fs/cgroup/memory.max"), read("/sys/fs/cgroup/memory.current")) {
        (Some(max), Some(cur)) => Some(max.saturating_sub(cur)),
        (Some(max), None) => Some(max),
        _ => None,
    };
    match (avail, cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// A byte count for people: `640.0 GB`, `4.8 MB`, `512 B` (powers of 1000).
pub fn human_bytes(b: u128) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// Refuses `model` when `copies` copies of θ plus the buffers for batches of `batch` samples need
/// more memory than is available. `what` names the model for the message (e.g. the spec key with
/// the widths) and `use_` says what needs the copies.
pub fn check_fits(model: &Model, copies: u32, batch: usize, what: &str, use_: &str) -> Result<()> {
    let p = model.n_params() as u128;
    let buffers = model.workspace_bytes(batch).map(|b| b as u128).unwrap_or(u128::MAX / 4);
    let need = p * 8 * copies as u128 + buffers;
    let Some(avail) = available_memory() else {
        return Ok(());
    };
    if need > avail as u128 {
        return Err(invalid!(
            "{what}: the model has {p} parameters; {use_} needs at least {} of memory ({copies} × 8 bytes per \
             parameter for θ, its gradient and copies, plus {} of buffers for batches of {batch}), but {} is available",
            human_bytes(need),
            human_bytes(buffers),
            human_bytes(avail as u128)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4_800_000), "4.8 MB");
        assert_eq!(human_bytes(640_000_000_000), "640.0 GB");
    }

    #[test]
    fn memory_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(available_memory().is_some_and(|b| b > 0));
        }
    }
}
