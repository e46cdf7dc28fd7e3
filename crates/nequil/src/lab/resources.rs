//! The machine's memory, and the refusal of models and data that cannot fit in it before anything
//! is allocated.
//!
//! A model's parameter count is known as soon as its spec is read; a run needs θ, its gradient
//! and a few copies of it (the initial and final parameters), plus the layers' buffers for one
//! batch, its data, evaluation sample and log, and what its probes build ([`Footprint`]: each
//! component declares its own, beside the code that allocates; the spec's build sums them). When
//! that exceeds the memory available ([`check`]), the spec is refused with the numbers, part by
//! part, each naming its component, instead of the process aborting on a failed allocation halfway
//! through. File readers bound what they
//! inflate and decode the same way ([`read_budget`]). The memory available may be capped for the
//! process ([`set_memory_limit`], or [`MEMORY_ENV`] on the command line).

use crate::core::models::Model;
use crate::{invalid, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// The cap set by [`set_memory_limit`] (`u64::MAX`: none).
static LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// The environment variable that caps the memory nequil plans for: a byte count with an optional
/// unit, `512M`, `4G`, `1.5G`, `65536` (units `k`, `M`, `G`, `T` are powers of 1024).
pub const MEMORY_ENV: &str = "NEQUIL_MAX_MEMORY";

/// Caps the memory that [`available_memory`] reports (and so what runs, analyses and file readers
/// may plan to allocate) at `bytes` for this process; `None` removes the cap. The command line
/// sets it from [`MEMORY_ENV`] ([`init`]).
pub fn set_memory_limit(bytes: Option<u64>) {
    LIMIT.store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Reads [`MEMORY_ENV`] and applies it with [`set_memory_limit`]; a value that is not a byte
/// count is bad input (an error naming the variable). Unset or empty: no cap.
pub fn init() -> Result<()> {
    match std::env::var(MEMORY_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            let b = parse_bytes(&v).ok_or_else(|| {
                invalid!("{MEMORY_ENV}: expected a byte count such as 512M, 4G or 1073741824, got \"{v}\"")
            })?;
            set_memory_limit(Some(b));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `512M` → 536870912: a number (decimals allowed) and an optional unit `k`/`K`, `M`, `G`, `T`
/// (powers of 1024), optionally followed by `B`/`iB`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix("iB").or_else(|| s.strip_suffix('B')).unwrap_or(s);
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    let b = v * mult as f64;
    (b.is_finite() && b >= 1.0 && b < u64::MAX as f64).then_some(b as u64)
}

/// Bytes of memory available to this process: `MemAvailable` of `/proc/meminfo`, lowered to the
/// cgroup's limit (`memory.max − memory.current`, cgroup v2) when there is one, and to the cap of
/// [`set_memory_limit`] ([`MEMORY_ENV`]). `None` where none of these is known (another OS, no
/// cap): then no limit is enforced beyond allocation failures.
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
    let cap = match LIMIT.load(Ordering::Relaxed) {
        u64::MAX => None,
        c => Some(c),
    };
    [avail, cgroup, cap].into_iter().flatten().min()
}

pub use crate::core::footprint::{human_bytes, Footprint};

/// Refuses `footprint` when its total exceeds [`available_memory`]. The error starts with `what`
/// (the spec key and value of the model's size, or a file), says what `use_` needs in all and
/// lists the parts, largest first, each naming its component (a probe by its spec key, a layer, the
/// data) and its bytes.
pub fn check(footprint: &Footprint, what: &str, use_: &str) -> Result<()> {
    let Some(avail) = available_memory() else {
        return Ok(());
    };
    let need = footprint.total();
    if need <= avail as u128 {
        return Ok(());
    }
    Err(invalid!(
        "{what}: {use_} needs at least {} of memory ({}), but {} is available",
        human_bytes(need),
        footprint.listing(),
        human_bytes(avail as u128)
    ))
}

/// The part of a [`Footprint`] that every use of `model` has: `copies` copies of θ (θ, its
/// gradient and copies, 8 bytes per parameter) and the layers' buffers for batches of `batch`
/// samples.
pub fn model_footprint(model: &Model, copies: u32, batch: usize) -> Footprint {
    let p = model.n_params() as u128;
    let mut f = Footprint::new();
    f.add(
        format!("θ, its gradient and copies ({copies} × 8 bytes for each of {p} parameters)"),
        p * copies as u128,
        8,
    );
    f.extend(model.footprint(batch));
    f
}

/// Refuses `model` when `copies` copies of θ plus the buffers for batches of `batch` samples need
/// more memory than is available. `what` names the model for the message (e.g. the spec key with
/// the widths) and `use_` says what needs the copies.
pub fn check_fits(model: &Model, copies: u32, batch: usize, what: &str, use_: &str) -> Result<()> {
    check(
        &model_footprint(model, copies, batch),
        &format!("{what}: the model has {} parameters", model.n_params()),
        use_,
    )
}

/// Refuses the equilibrium analysis of `model` on `n` samples
/// ([`crate::core::equilibrium::rebalance_with`]: `nequil equilibrium`, the Python package's
/// `nequil.equilibrium`) when θ and its copies, the layers' buffers and the analysis's own
/// declaration ([`crate::core::equilibrium::rebalance_footprint`]: one generator of P values per
/// catalog symmetry) do not fit in the memory available. `what` names the model for the message
/// (its file).
pub fn check_equilibrium(model: &Model, n: usize, what: &str) -> Result<()> {
    let mut f = model_footprint(model, 6, n.clamp(1, 256));
    f.extend_named(
        "the equilibrium analysis",
        crate::core::equilibrium::rebalance_footprint(model, n),
    );
    check(
        &f,
        &format!("{what}: the model has {} parameters", model.n_params()),
        "the equilibrium analysis",
    )
}

/// The most bytes a reader may inflate or decode from one file: a quarter of the memory
/// available (the data are then converted to `f64`, up to 8 bytes per byte read), or no bound
/// when the memory is unknown.
pub fn read_budget() -> u64 {
    available_memory().map_or(u64::MAX, |a| a / 4)
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
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes("4G"), Some(4 << 30));
        assert_eq!(parse_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_bytes("65536"), Some(65536));
        assert_eq!(parse_bytes("2kB"), Some(2048));
        for bad in ["", "G", "-1G", "0", "lots", "1e30T", "NaN"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn memory_is_known_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(available_memory().is_some_and(|b| b > 0));
        }
    }
}
