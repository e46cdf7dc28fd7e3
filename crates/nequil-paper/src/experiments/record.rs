//! Records of finished experiment runs, so that an interrupted experiment resumes where it
//! stopped.
//!
//! When [`Ctx::runs_dir`](super::Ctx::runs_dir) is set, [`simulate`](super::simulate) writes
//! every run that finished — completed, or stopped by a divergence: both are results the checks
//! judge — to `<runs_dir>/<file name>.json` ([`file_name`]), atomically. Before running a run it
//! looks for that file: a record whose fingerprint ([`fingerprint`]) equals the run's is loaded
//! in place of running it; a record that differs or cannot be read (a file truncated by hand, a
//! format from another version) is ignored and overwritten by the rerun. The granularity is the
//! whole run: a run killed midway restarts from its first step.
//!
//! A record holds the format version, the fingerprint, the run's name, the updates completed,
//! the error that stopped it (every field, so the same [`Error`] variant comes back), the log
//! (column names and rows), the final θ and the probes' summaries. Every f64 is stored as the 16
//! hexadecimal digits of its IEEE-754 bits ([`f64::to_bits`]), so values — NaN and ±∞ included —
//! read back bit for bit; a 400 000-parameter θ takes 6.4 MB.

use super::plan::{PlannedRun, RunResult};
use nequil::core::data::Source;
use nequil::lab::io::write_atomic;
use nequil::train::Log;
use nequil::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The version of the record format; a record of another version is ignored (the run reruns).
pub const FORMAT: u32 = 1;

/// File names longer than this (in bytes, before `.json`) are shortened with a hash.
const MAX_NAME: usize = 180;

/// The record's file name for a run named `run`: the name with every byte outside
/// `[A-Za-z0-9._-]` written as `%XX` (so `%` itself too, which keeps the map one-to-one), then
/// `.json`. `sgd/phi=0.4` → `sgd%2Fphi%3D0.4.json`. A name whose encoding is longer than 180
/// bytes keeps its first 160 bytes and appends `~` and the 16 hex digits of the FNV-1a hash of
/// the full name (`~` never appears in an encoding, so such names cannot meet short ones).
pub fn file_name(run: &str) -> String {
    let mut s = String::with_capacity(run.len() + 8);
    for b in run.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    if s.len() > MAX_NAME {
        let mut h = Fnv::new();
        h.bytes(run.as_bytes());
        s.truncate(160);
        let _ = write!(s, "~{:016x}", h.finish());
    }
    s.push_str(".json");
    s
}

/// FNV-1a, 64 bits: a stable hash (the same on every machine and version of Rust).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn raw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }
    /// A length-prefixed field, so that two fields never run into each other.
    fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.raw(bytes);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn f64s(&mut self, v: &[f64]) {
        self.u64(v.len() as u64);
        for x in v {
            self.u64(x.to_bits());
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The fingerprint of a planned run: the FNV-1a 64-bit hash of everything that decides its
/// result — the record format, the crate version and the SIMD path in use (results are
/// bit-identical only within one path), the run's name, its spec (as JSON), the bits of its
/// initial-θ override, its data override (a fixed data set by its sizes and the bits of every
/// sample, a distribution by its debug form), each extra probe's name, columns, schedule and
/// whether it observes steps, and its cost. Code changes inside a probe or an experiment that
/// leave all of these alone are not seen: after such a change, delete the records
/// (`nequil reproduce --fresh`).
pub fn fingerprint(run: &PlannedRun) -> Result<u64> {
    let mut h = Fnv::new();
    h.str("nequil experiment run");
    h.u64(FORMAT as u64);
    h.str(env!("CARGO_PKG_VERSION"));
    h.str(nequil::simd::active().name());
    h.str(&run.name);
    let spec = serde_json::to_string(&run.spec)
        .map_err(|e| Error::Numerical(format!("run `{}`: cannot serialize its spec: {e}", run.name)))?;
    h.str(&spec);
    match &run.theta0 {
        None => h.u64(0),
        Some(t) => {
            h.u64(1);
            h.f64s(t);
        }
    }
    match &run.source {
        None => h.u64(0),
        Some(Source::Online(g)) => {
            h.u64(1);
            h.str(&format!("{g:?}"));
        }
        Some(Source::Fixed {
            data,
            replacement,
            dist,
        }) => {
            h.u64(2);
            h.u64(data.n as u64);
            h.u64(data.d_x as u64);
            h.u64(data.d_y as u64);
            h.f64s(&data.x);
            h.f64s(&data.y);
            h.u64(*replacement as u64);
            h.str(&format!("{dist:?}"));
        }
    }
    h.u64(run.probes.len() as u64);
    for p in &run.probes {
        h.str(&p.name());
        let cols = p.columns();
        h.u64(cols.len() as u64);
        for c in &cols {
            h.str(c);
        }
        h.str(&format!("{:?}", p.schedule()));
        h.u64(p.observes_steps() as u64);
    }
    h.u64(run.cost);
    Ok(h.finish())
}

/// The error that stopped a run, field by field.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ErrorRecord {
    Invalid { message: String },
    Io { message: String },
    Diverged { step: u64, what: String },
    Numerical { message: String },
    ProbeFailed { probe: String, step: u64, error: String },
}

impl ErrorRecord {
    fn of(e: &Error) -> Self {
        match e.clone() {
            Error::Invalid(message) => ErrorRecord::Invalid { message },
            Error::Io(message) => ErrorRecord::Io { message },
            Error::Diverged { step, what } => ErrorRecord::Diverged { step, what },
            Error::Numerical(message) => ErrorRecord::Numerical { message },
            Error::ProbeFailed { probe, step, error } => ErrorRecord::ProbeFailed { probe, step, error },
        }
    }
    fn error(self) -> Error {
        match self {
            ErrorRecord::Invalid { message } => Error::Invalid(message),
            ErrorRecord::Io { message } => Error::Io(message),
            ErrorRecord::Diverged { step, what } => Error::Diverged { step, what },
            ErrorRecord::Numerical { message } => Error::Numerical(message),
            ErrorRecord::ProbeFailed { probe, step, error } => Error::ProbeFailed { probe, step, error },
        }
    }
}

/// The file: every vector of numbers as a string of 16 hex digits per value.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    format: u32,
    fingerprint: String,
    name: String,
    steps_done: u64,
    error: Option<ErrorRecord>,
    columns: Vec<String>,
    rows: Vec<String>,
    theta: String,
    summary: BTreeMap<String, String>,
}

/// What a record restores of a [`RunResult`] (the name, spec and model come from the plan).
#[derive(Debug)]
pub struct Recorded {
    /// The log.
    pub log: Log,
    /// θ after the last completed update.
    pub theta: Vec<f64>,
    /// Updates completed.
    pub steps_done: u64,
    /// The error that stopped the run early, if any.
    pub error: Option<Error>,
    /// The probes' end-of-run values.
    pub summary: BTreeMap<String, Vec<f64>>,
}

fn hex(v: &[f64]) -> String {
    let mut s = String::with_capacity(16 * v.len());
    for x in v {
        let _ = write!(s, "{:016x}", x.to_bits());
    }
    s
}

fn unhex(s: &str) -> Option<Vec<f64>> {
    if !s.len().is_multiple_of(16) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 16)
        .map(|i| {
            u64::from_str_radix(&s[16 * i..16 * i + 16], 16)
                .ok()
                .map(f64::from_bits)
        })
        .collect()
}

/// Writes the record of a finished run `r` with fingerprint `fp` to `path`, atomically.
pub fn save(path: &Path, fp: u64, r: &RunResult) -> Result<()> {
    let file = RecordFile {
        format: FORMAT,
        fingerprint: format!("{fp:016x}"),
        name: r.name.clone(),
        steps_done: r.steps_done,
        error: r.error.as_ref().map(ErrorRecord::of),
        columns: r.log.columns.clone(),
        rows: r.log.rows.iter().map(|row| hex(row)).collect(),
        theta: hex(&r.theta),
        summary: r.summary.iter().map(|(k, v)| (k.clone(), hex(v))).collect(),
    };
    let text = serde_json::to_vec(&file)
        .map_err(|e| Error::Numerical(format!("run `{}`: cannot serialize its record: {e}", r.name)))?;
    write_atomic(path, &text)
}

/// The record at `path` if it exists, reads back whole and belongs to the run `name` with
/// fingerprint `fp`; `None` otherwise (no file, a truncated or malformed one, another format,
/// another run or another fingerprint): the run is then run again.
pub fn load(path: &Path, fp: u64, name: &str) -> Option<Recorded> {
    let text = std::fs::read(path).ok()?;
    let f: RecordFile = serde_json::from_slice(&text).ok()?;
    if f.format != FORMAT || f.fingerprint != format!("{fp:016x}") || f.name != name {
        return None;
    }
    let rows: Vec<Vec<f64>> = f.rows.iter().map(|r| unhex(r)).collect::<Option<_>>()?;
    let summary = f
        .summary
        .into_iter()
        .map(|(k, v)| unhex(&v).map(|v| (k, v)))
        .collect::<Option<_>>()?;
    Some(Recorded {
        log: Log {
            columns: f.columns,
            rows,
        },
        theta: unhex(&f.theta)?,
        steps_done: f.steps_done,
        error: f.error.map(ErrorRecord::error),
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_one_to_one() {
        assert_eq!(file_name("sgd/phi=0.4"), "sgd%2Fphi%3D0.4.json");
        assert_eq!(file_name("a%2Fb"), "a%252Fb.json");
        assert_ne!(file_name("a/b"), file_name("a%2Fb"));
        assert_eq!(file_name("η"), "%CE%B7.json");
        let long_a = "x/".repeat(100) + "a";
        let long_b = "x/".repeat(100) + "b";
        let (a, b) = (file_name(&long_a), file_name(&long_b));
        assert_ne!(a, b);
        assert!(a.len() <= MAX_NAME + 5 && a.contains('~'), "{a}");
    }

    #[test]
    fn numbers_round_trip_bit_for_bit() {
        let v = [
            0.0,
            -0.0,
            1.5,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            5e-324,
        ];
        let back = unhex(&hex(&v)).unwrap();
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert!(unhex("0123").is_none());
        assert!(unhex(&"g".repeat(16)).is_none());
    }
}
