//! Sweeps: a grid of runs from one spec, run in parallel, resumable, shardable, and merged into
//! one table (`nequil sweep`, `nequil slurm`, `nequil merge`).
//!
//! A sweep spec is a run spec (see [`crate::lab::spec`]) plus a `[sweep]` table whose keys are dotted
//! paths into the spec and whose values are arrays of values:
//!
//! ```toml
//! [sweep]
//! "train.lr" = [0.01, 0.003]
//! "train.batch_size" = [1, 4]
//! seed = [0, 1, 2]
//! ```
//!
//! The runs are the Cartesian product of the arrays, in row-major order over the keys as they
//! appear in the file (the last key varies fastest): run 0 is `lr = 0.01, batch_size = 1,
//! seed = 0`, run 1 is `seed = 1`, …, run 11 is `lr = 0.003, batch_size = 4, seed = 2`. Run `i` is
//! named `run-000i` (zero-padded to at least four digits); ids depend only on the sweep spec,
//! never on sharding or on which runs have finished. A key may name any key of the schema
//! (`data.x_cov.phi`, `model.widths` with array values, `train.weight_decay`, `seed`, …); keys
//! written unquoted (`train.lr = [..]`, or a `[sweep.train]` table) mean the same as quoted ones.
//!
//! Every run of a grid is parsed and built ([`Spec::from_toml`], [`Spec::build`]) before any is
//! run ([`Sweep::prepare`]); an error names the sweep key and value.
//!
//! ## The output directory
//!
//! ```text
//! OUT/sweep.toml                the sweep spec, verbatim
//! OUT/runs/run-0003/params.json the run's id, index and swept values (written when it starts)
//!                   spec.toml, metrics.csv, final.safetensors, summary.json   (as `nequil run`)
//!                   status.json {"status": "ok" | "diverged" | "failed", "error": …, "seconds": …}
//!                               (written last)
//! OUT/runs/run-0003.lock        the run's lock while a process executes it (see below)
//! ```
//!
//! The JSON files are typed ([`RunParams`], [`RunStatus`], [`RunSummary`] in
//! [`crate::lab::files`]); reading one with a missing or malformed field is an error naming the
//! file and the field.
//!
//! A run directory without `status.json` is unfinished (the process was killed): a restart
//! deletes it and runs it again from scratch. Runs with a `status.json` are skipped, failures
//! included, unless [`SweepOptions::retry_failed`]. A restart into a directory whose `sweep.toml`
//! holds a different sweep is refused. Every file is written atomically, so a killed sweep never
//! leaves a truncated file behind a `status.json`.
//!
//! ## One writer per run: the run lock
//!
//! A process executes a run only while it holds an exclusive lock on `OUT/runs/<id>.lock` (next
//! to the run directory, not in it: an unfinished run directory is deleted and rerun, and that
//! deletion happens only under the lock). The lock is an advisory lock of the operating system
//! ([`std::fs::File::try_lock`]: `flock` on Unix), so the kernel releases it when the process
//! dies, however it dies (SIGKILL, a Slurm time limit, preemption): a lock file left behind by a
//! dead process is stale and simply taken over. A run whose lock a live process holds is skipped
//! (reported as [`SweepEvent::Held`] and counted in [`SweepReport::held`]); it stays unfinished
//! for [`merge`] until its holder records it. So two copies of one shard in one directory share
//! the work instead of restarting each other's runs. After taking the lock, the run's status is
//! read again: a run another process finished in the meantime is not run twice. The lock file
//! holds the holder's pid and host (for people; the lock itself is the kernel's) and is removed
//! when the run is recorded.
//!
//! On NFS, Linux (since 2.6.12) emulates `flock` with POSIX byte-range locks, which the server
//! arbitrates: they work between nodes with NFSv4 (and NFSv3 with the lock manager running). An
//! NFSv3 mount with `nolock` or `local_lock=flock|all` keeps locks local to each node: copies on
//! one node still exclude each other, copies on different nodes do not. Without lock support at all
//! (`ENOLCK`) the sweep stops with an error rather than run unprotected.
//!
//! ## Shards
//!
//! [`Shard`] `I/N` selects the runs whose index `i` has `i % N == I`. Shards may write into one
//! shared directory or into separate ones; [`merge`] gathers any number of them into `runs.csv`.

use crate::core::parallel::with_threads;
use crate::error::panic_message;
use crate::lab::files::{csv, read_json, write_json, Cell, RunSummary};
use crate::lab::io::write_new_atomic;
use crate::lab::runner::{run_spec, write_run_dir};
use crate::lab::spec::Spec;
use crate::{invalid, io_err, Error, Result};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use toml::Value;

/// Largest grid accepted (a guard against a typo multiplying the grid by accident).
pub const MAX_RUNS: usize = 1_000_000;

/// One swept key and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Dotted path into the spec (`"train.lr"`, `"seed"`).
    pub key: String,
    /// The values, in the order given.
    pub values: Vec<Value>,
}

/// A parsed sweep spec: the base run spec and the swept keys.
#[derive(Clone, Debug)]
pub struct Sweep {
    base: toml::Table,
    axes: Vec<Axis>,
    text: String,
}

/// One run of a sweep, parsed.
#[derive(Clone, Debug)]
pub struct SweepRun {
    /// Position in the grid (0-based).
    pub index: usize,
    /// Stable id and directory name (`run-0003`).
    pub id: String,
    /// The swept keys and this run's values, in axis order.
    pub params: Vec<(String, Value)>,
    /// The resolved run spec.
    pub spec: Spec,
    /// The memory the run needs at most, in bytes ([`crate::lab::spec::Built::memory`]; 0 until
    /// [`Sweep::prepare`] has built it).
    pub memory: u128,
}

impl Sweep {
    /// Parses a sweep spec. Errors: TOML syntax, a missing or empty `[sweep]` table, a swept key
    /// whose value is not a non-empty array, a key given twice, a grid larger than [`MAX_RUNS`].
    /// Whether the keys exist in the schema is checked by [`Sweep::prepare`].
    pub fn from_toml(text: &str) -> Result<Sweep> {
        let mut base: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| invalid!("sweep spec: {}", e.to_string().trim_end()))?;
        let table = match base.remove("sweep") {
            Some(Value::Table(t)) => t,
            Some(other) => return Err(invalid!("sweep: must be a table, got a {}", other.type_str())),
            None => {
                return Err(invalid!(
                    "sweep spec: no [sweep] table (a sweep spec is a run spec plus a [sweep] table of dotted keys \
                     and arrays of values, e.g. \"train.lr\" = [0.01, 0.003])"
                ))
            }
        };
        let mut axes = Vec::new();
        flatten("", table, &mut axes)?;
        if axes.is_empty() {
            return Err(invalid!("sweep: the [sweep] table is empty; give at least one key"));
        }
        for (i, a) in axes.iter().enumerate() {
            if a.key.split('.').any(|s| s.is_empty()) {
                return Err(invalid!("sweep key \"{}\": empty segment in the dotted path", a.key));
            }
            if axes[..i].iter().any(|b| b.key == a.key) {
                return Err(invalid!("sweep key \"{}\": given twice", a.key));
            }
            if let Some(b) = axes[..i]
                .iter()
                .find(|b| a.key.starts_with(&format!("{}.", b.key)) || b.key.starts_with(&format!("{}.", a.key)))
            {
                return Err(invalid!(
                    "sweep keys \"{}\" and \"{}\" overlap (one contains the other)",
                    b.key,
                    a.key
                ));
            }
        }
        let mut n: usize = 1;
        for a in &axes {
            n = n
                .checked_mul(a.values.len())
                .filter(|&n| n <= MAX_RUNS)
                .ok_or_else(|| invalid!("sweep: the grid has more than {MAX_RUNS} runs"))?;
        }
        Ok(Sweep {
            base,
            axes,
            text: text.to_string(),
        })
    }

    /// Reads and parses a sweep spec file.
    pub fn from_file(path: &Path) -> Result<Sweep> {
        let text =
            std::fs::read_to_string(path).map_err(|e| io_err!("cannot read sweep spec {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Invalid(m) => invalid!("{}: {m}", path.display()),
            e => e,
        })
    }

    /// The text the sweep was parsed from (written verbatim to `OUT/sweep.toml`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The swept keys, in file order.
    pub fn axes(&self) -> &[Axis] {
        &self.axes
    }

    /// The number of runs (the product of the axis lengths).
    pub fn len(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// Always false: a sweep has at least one run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of run `index`: `run-` and the index zero-padded to at least four digits (to the
    /// width of the largest index).
    pub fn id(&self, index: usize) -> String {
        let width = (self.len().saturating_sub(1)).to_string().len().max(4);
        format!("run-{index:0width$}")
    }

    /// The swept values of run `index`, in axis order (last axis fastest).
    pub fn point(&self, index: usize) -> Vec<(String, Value)> {
        let mut rest = index;
        let mut out: Vec<(String, Value)> = Vec::with_capacity(self.axes.len());
        for a in self.axes.iter().rev() {
            let k = a.values.len();
            out.push((a.key.clone(), a.values[rest % k].clone()));
            rest /= k;
        }
        out.reverse();
        out
    }

    /// The spec of run `index` as a TOML table (the base with the swept values set).
    pub fn table(&self, index: usize) -> Result<toml::Table> {
        let mut t = self.base.clone();
        for (k, v) in self.point(index) {
            set_path(&mut t, &k, v)?;
        }
        Ok(t)
    }

    /// Whether two sweeps define the same runs (same base spec and the same keys and values in
    /// the same order); comments and formatting do not matter. `Err` says what differs.
    pub fn same_as(&self, other: &Sweep) -> std::result::Result<(), String> {
        if self.axes.len() != other.axes.len() || self.axes.iter().zip(&other.axes).any(|(a, b)| a.key != b.key) {
            let keys = |s: &Sweep| s.axes.iter().map(|a| a.key.as_str()).collect::<Vec<_>>().join(", ");
            return Err(format!("swept keys differ ([{}] vs [{}])", keys(self), keys(other)));
        }
        if let Some((a, _)) = self
            .axes
            .iter()
            .zip(&other.axes)
            .find(|(a, b)| !same_list(&a.values, &b.values))
        {
            return Err(format!("the values of \"{}\" differ", a.key));
        }
        if !same_table(&self.base, &other.base) {
            return Err("the base spec (outside [sweep]) differs".into());
        }
        Ok(())
    }

    /// Parses every run of the grid into a [`Spec`], then builds each (model, data, schedule) on
    /// up to `jobs` threads, without running anything; each run's memory need is kept in
    /// [`SweepRun::memory`] ([`run_sweep`] checks that `--jobs` of them fit together). `base` resolves relative data paths (the
    /// sweep spec's directory). Errors name the sweep key and value: first each value of each key
    /// is checked alone (unknown paths, wrong types), then every combination.
    pub fn prepare(&self, base: &Path, jobs: usize) -> Result<Vec<SweepRun>> {
        for (ai, axis) in self.axes.iter().enumerate() {
            for v in &axis.values {
                let mut t = self.base.clone();
                for (bi, b) in self.axes.iter().enumerate() {
                    let value = if bi == ai { v } else { &b.values[0] };
                    set_path(&mut t, &b.key, value.clone())?;
                }
                parse_table(&t).map_err(|e| invalid!("sweep key \"{}\" = {}: {}", axis.key, inline(v), msg(&e)))?;
            }
        }
        let runs: Vec<SweepRun> = (0..self.len())
            .map(|i| {
                let params = self.point(i);
                let spec = parse_table(&self.table(i)?)
                    .map_err(|e| invalid!("sweep run {} ({}): {}", self.id(i), describe(&params), msg(&e)))?;
                Ok(SweepRun {
                    index: i,
                    id: self.id(i),
                    params,
                    spec,
                    memory: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let built = crate::core::parallel::par_map(jobs, &runs, |r| {
            r.spec
                .build(base)
                .map(|b| b.memory)
                .map_err(|e| invalid!("sweep run {} ({}): {}", r.id, describe(&r.params), msg(&e)))
        });
        let memory = built.into_iter().collect::<Result<Vec<u128>>>()?;
        let mut runs = runs;
        for (r, m) in runs.iter_mut().zip(memory) {
            r.memory = m;
        }
        Ok(runs)
    }
}

fn flatten(prefix: &str, table: toml::Table, axes: &mut Vec<Axis>) -> Result<()> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
        match v {
            Value::Table(sub) => flatten(&key, sub, axes)?,
            Value::Array(values) if values.is_empty() => {
                return Err(invalid!("sweep key \"{key}\": the array of values is empty"))
            }
            Value::Array(values) => axes.push(Axis { key, values }),
            other => {
                return Err(invalid!(
                    "sweep key \"{key}\": expected an array of values to sweep over, e.g. \"{key}\" = [{}], got a \
                     single {}",
                    inline(&other),
                    other.type_str()
                ))
            }
        }
    }
    Ok(())
}

/// Sets the dotted `key` in `t`, creating missing intermediate tables (a key unknown to the
/// schema is then rejected when the table is parsed as a [`Spec`]).
fn set_path(t: &mut toml::Table, key: &str, v: Value) -> Result<()> {
    let segs: Vec<&str> = key.split('.').collect();
    let (last, parents) = segs.split_last().expect("split yields at least one segment");
    let mut cur = t;
    for (i, s) in parents.iter().enumerate() {
        let entry = cur
            .entry(s.to_string())
            .or_insert_with(|| Value::Table(toml::Table::new()));
        cur = match entry {
            Value::Table(sub) => sub,
            other => {
                return Err(invalid!(
                    "sweep key \"{key}\": `{}` is a {} in the spec, not a table",
                    segs[..=i].join("."),
                    other.type_str()
                ))
            }
        };
    }
    cur.insert(last.to_string(), v);
    Ok(())
}

/// Parses a run's table as a [`Spec`] (errors name the key, without a line: the text is
/// generated).
fn parse_table(t: &toml::Table) -> Result<Spec> {
    let text = toml::to_string(t).map_err(|e| invalid!("spec: {e}"))?;
    super::spec::parse_toml_located(&text, "spec", false)
}

/// The message of an error without the "invalid input: " prefix (it is added once, outside).
fn msg(e: &Error) -> String {
    match e {
        Error::Invalid(m) => m.clone(),
        e => e.to_string(),
    }
}

/// A value as written in TOML (`0.01`, `"relu"`, `[10, 20, 10]`).
fn inline(v: &Value) -> String {
    v.to_string()
}

/// `train.lr = 0.01, seed = 1`.
pub fn describe(params: &[(String, Value)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k} = {}", inline(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A slice `I/N` of a sweep: the runs whose index `i` has `i % N == I`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// `I`, in `0..count`.
    pub index: usize,
    /// `N ≥ 1`.
    pub count: usize,
}

impl Shard {
    /// The whole sweep (`0/1`).
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// A shard, checked: `count ≥ 1` and `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            return Err(invalid!("shard: the number of shards must be ≥ 1, got {index}/{count}"));
        }
        if index >= count {
            return Err(invalid!(
                "shard: index {index} is out of range for {count} shards (shards are numbered 0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N` (e.g. `0/4`).
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || invalid!("--shard: expected I/N with 0 ≤ I < N (e.g. 0/4), got \"{s}\"");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n).map_err(|e| invalid!("--shard {s}: {}", msg(&e)))
    }

    /// The shard of a Slurm job-array task, from the environment (`var` looks a variable up):
    /// `None` when `SLURM_ARRAY_TASK_ID` is unset. The index is `SLURM_ARRAY_TASK_ID −
    /// SLURM_ARRAY_TASK_MIN` (MIN defaults to 0); the count is `SLURM_ARRAY_TASK_COUNT`, or else
    /// `SLURM_ARRAY_TASK_MAX − SLURM_ARRAY_TASK_MIN + 1`. The array must be a contiguous range
    /// (`--array=0-15`, not `0-15:4`); anything else is an error naming the variables.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let Some(id) = var("SLURM_ARRAY_TASK_ID") else {
            return Ok(None);
        };
        let num = |name: &str, v: &str| -> Result<usize> {
            v.trim()
                .parse()
                .map_err(|_| invalid!("{name}: expected a non-negative integer, got \"{v}\""))
        };
        let id = num("SLURM_ARRAY_TASK_ID", &id)?;
        let min = match var("SLURM_ARRAY_TASK_MIN") {
            Some(v) => num("SLURM_ARRAY_TASK_MIN", &v)?,
            None => 0,
        };
        let count = match (var("SLURM_ARRAY_TASK_COUNT"), var("SLURM_ARRAY_TASK_MAX")) {
            (Some(c), _) => num("SLURM_ARRAY_TASK_COUNT", &c)?,
            (None, Some(max)) => (num("SLURM_ARRAY_TASK_MAX", &max)? + 1)
                .checked_sub(min)
                .ok_or_else(|| invalid!("SLURM_ARRAY_TASK_MAX is below SLURM_ARRAY_TASK_MIN"))?,
            (None, None) => {
                return Err(invalid!(
                    "SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is; \
                     pass --shard I/N"
                ))
            }
        };
        let index = id
            .checked_sub(min)
            .ok_or_else(|| invalid!("SLURM_ARRAY_TASK_ID = {id} is below SLURM_ARRAY_TASK_MIN = {min}"))?;
        Shard::new(index, count).map(Some).map_err(|e| {
            invalid!(
                "SLURM_ARRAY_TASK_ID = {id} (with SLURM_ARRAY_TASK_MIN = {min} and {count} tasks): {}; use a contiguous \
                 --array=0-{} or pass --shard I/N",
                msg(&e),
                count.saturating_sub(1)
            )
        })
    }

    /// Whether run `index` belongs to this shard.
    pub fn contains(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

pub use crate::lab::files::{RunParams, RunState, RunStatus};

/// Reads `dir/status.json`: `Ok(None)` when it does not exist (the run is unfinished).
pub fn read_status(dir: &Path) -> Result<Option<RunStatus>> {
    let p = dir.join("status.json");
    match p.try_exists() {
        Ok(false) => Ok(None),
        Ok(true) => read_json(&p).map(Some),
        Err(e) => Err(io_err!("cannot read {}: {e}", p.display())),
    }
}

/// How to execute a sweep.
#[derive(Clone, Copy, Debug)]
pub struct SweepOptions {
    /// Runs at a time.
    pub jobs: usize,
    /// Cores the sweep may use. Each run gets `⌊cores / r⌋` threads (at least 1; see
    /// [`crate::core::parallel`], bit-identical to one thread), where `r` is the number of runs at
    /// a time (`jobs`, or fewer when fewer runs are pending), in place of its `train.threads`.
    pub cores: usize,
    /// Which runs to execute.
    pub shard: Shard,
    /// Rerun runs recorded as failed or diverged.
    pub retry_failed: bool,
}

/// Progress of [`run_sweep`], reported to its callback (from worker threads).
#[derive(Debug)]
pub enum SweepEvent<'a> {
    /// Before anything runs: the shard's runs, those already finished (skipped), and the runs
    /// and SGD steps left to do.
    Planned {
        /// Runs in the shard.
        in_shard: usize,
        /// Runs of the shard already finished (skipped).
        skipped: usize,
        /// Runs to execute now.
        pending: usize,
        /// Their steps in total.
        pending_steps: u64,
    },
    /// A run starts.
    Started(&'a SweepRun),
    /// Some steps were done (the total over all `Steps` events is `pending_steps`).
    Steps(u64),
    /// A run finished and its status is recorded.
    Finished(&'a SweepRun, &'a RunStatus),
    /// A run could not be recorded (e.g. the disk is full); it stays unfinished.
    Unrecorded(&'a SweepRun, &'a Error),
    /// A run planned here is locked by another live process (another copy of the shard): it is
    /// skipped and left to that process.
    Held(&'a SweepRun),
    /// A run planned here was finished by another process before this one took its lock: it is
    /// skipped (counted as finished before).
    FinishedElsewhere(&'a SweepRun, &'a RunStatus),
}

/// Final state of the shard after [`run_sweep`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepReport {
    /// Runs in the whole sweep.
    pub total: usize,
    /// Runs in this shard.
    pub in_shard: usize,
    /// Runs of the shard that had finished before, or that another process finished while this
    /// one ran (skipped).
    pub skipped: usize,
    /// Runs executed now.
    pub ran: usize,
    /// Runs of the shard skipped because another live process held their lock (it is running
    /// them; they are unfinished until it records them).
    pub held: usize,
    /// Runs of the shard now recorded ok (previous and new).
    pub ok: usize,
    /// … recorded diverged.
    pub diverged: usize,
    /// … recorded failed.
    pub failed: usize,
}

/// Checks or initialises the output directory: a new or empty directory gets `sweep.toml` and
/// `runs/`; an existing sweep directory must hold the same sweep; anything else is refused.
///
/// Shards starting at the same moment into one new directory all succeed, whatever the
/// interleaving. `sweep.toml` is created with create-new semantics and complete contents
/// ([`write_new_atomic`]): exactly one shard's file lands, and every shard then reads it and
/// compares. No shard creates `runs/` before `sweep.toml` exists, and `sweep.toml` is never
/// removed, so a shard that finds the directory holding anything besides temporary files, its
/// `sweep.toml` and an empty `runs/` looks for `sweep.toml` again before refusing:
///
/// * a sibling's `sweep.toml`, its temporary files or an empty `runs/`: taken as ours;
/// * a sibling's non-empty `runs/` (it has locked or started a run): `sweep.toml` was created
///   before it, so the second look finds it (a directory listing may miss an entry added while it
///   is read, hence the second look rather than the listing);
/// * two shards creating `sweep.toml` together: one creates it, the other finds it and compares;
///   two *different* sweeps started together into one directory: the one whose file did not land
///   is refused.
pub fn init_out_dir(sweep: &Sweep, out: &Path) -> Result<()> {
    let st = out.join("sweep.toml");
    if !st.exists() {
        // The second look: a sibling's runs/ is created after its sweep.toml.
        if foreign_entry(out)?.is_some() && !st.exists() {
            return Err(invalid!(
                "{} exists, is not empty and has no sweep.toml: not a sweep directory; choose another --out",
                out.display()
            ));
        }
        std::fs::create_dir_all(out).map_err(|e| io_err!("cannot create {}: {e}", out.display()))?;
        // Ours, or a sibling shard's of a moment ago: compared below either way.
        write_new_atomic(&st, sweep.text().as_bytes())?;
    }
    let text = std::fs::read_to_string(&st).map_err(|e| io_err!("cannot read {}: {e}", st.display()))?;
    let old = Sweep::from_toml(&text).map_err(|e| invalid!("{}: {}", st.display(), msg(&e)))?;
    old.same_as(sweep).map_err(|why| {
        invalid!(
            "{} holds a different sweep ({why}); refusing to resume into it. Use a new --out directory, or \
             restore the spec that started it",
            st.display()
        )
    })?;
    let runs = out.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| io_err!("cannot create {}: {e}", runs.display()))
}

/// The first entry of `out` that a sweep starting into it cannot account for, if any (`None`
/// also when `out` does not exist): anything but hidden names (temporary files), `sweep.toml`
/// and an empty `runs/`.
fn foreign_entry(out: &Path) -> Result<Option<String>> {
    let entries = match std::fs::read_dir(out) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err!("cannot read directory {}: {e}", out.display())),
    };
    for e in entries {
        let e = e.map_err(|e| io_err!("cannot read directory {}: {e}", out.display()))?;
        let name = e.file_name().to_string_lossy().to_string();
        let ours = name.starts_with('.')
            || name == "sweep.toml"
            || (name == "runs" && std::fs::read_dir(e.path()).is_ok_and(|mut r| r.next().is_none()));
        if !ours {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Executes the runs of `opts.shard` that have not finished, `opts.jobs` at a time, into
/// `out/runs/<id>/` (see the module documentation), each under its run lock; runs whose lock a
/// live process holds are skipped. `runs` comes from [`Sweep::prepare`] on the same sweep; `base`
/// resolves relative data paths. A run that diverges or fails is recorded as such and the sweep
/// goes on; the result is `Err` only when the directory is refused, a run's status could not be
/// written, or a run could not be locked.
pub fn run_sweep(
    sweep: &Sweep,
    runs: &[SweepRun],
    base: &Path,
    out: &Path,
    opts: &SweepOptions,
    events: &(dyn Fn(SweepEvent<'_>) + Sync),
) -> Result<SweepReport> {
    if runs.len() != sweep.len() {
        return Err(invalid!(
            "run_sweep: {} runs given for a sweep of {}",
            runs.len(),
            sweep.len()
        ));
    }
    check_memory(runs.iter().filter(|r| opts.shard.contains(r.index)), opts.jobs)?;
    init_out_dir(sweep, out)?;
    let runs_dir = out.join("runs");
    let mut report = SweepReport {
        total: runs.len(),
        ..Default::default()
    };
    // Each pending run with the status it had when planned (a failed run, with retry_failed).
    let mut pending: Vec<(&SweepRun, Option<RunStatus>)> = Vec::new();
    for r in runs.iter().filter(|r| opts.shard.contains(r.index)) {
        report.in_shard += 1;
        // A malformed status (impossible with atomic writes, but a person may have edited it)
        // counts as unfinished.
        match read_status(&runs_dir.join(&r.id)).unwrap_or(None) {
            Some(st) if st.is_ok() || !opts.retry_failed => {
                report.skipped += 1;
                count(&mut report, &st);
            }
            st => pending.push((r, st)),
        }
    }
    events(SweepEvent::Planned {
        in_shard: report.in_shard,
        skipped: report.skipped,
        pending: pending.len(),
        pending_steps: pending.iter().map(|(r, _)| r.spec.train.steps).sum(),
    });
    enum Outcome {
        Ran(Result<RunStatus>),
        FinishedElsewhere(RunStatus),
        Held,
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let workers = opts.jobs.clamp(1, pending.len().max(1));
    let threads = (opts.cores / workers).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((run, planned)) = pending.get(k) else { break };
                let dir = runs_dir.join(&run.id);
                let outcome = match RunLock::try_acquire(&lock_path(&runs_dir, &run.id)) {
                    Err(e) => {
                        // No locks on this filesystem: stop rather than run unprotected.
                        stop.store(true, Ordering::Relaxed);
                        Outcome::Ran(Err(e))
                    }
                    Ok(None) => {
                        events(SweepEvent::Held(run));
                        Outcome::Held
                    }
                    Ok(Some(lock)) => match read_status(&dir).unwrap_or(None) {
                        // Recorded by another process since the plan (with retry_failed: recorded
                        // again, so it was retried there).
                        Some(st) if st.is_ok() || !opts.retry_failed || Some(&st) != planned.as_ref() => {
                            drop(lock);
                            events(SweepEvent::FinishedElsewhere(run, &st));
                            Outcome::FinishedElsewhere(st)
                        }
                        _ => {
                            events(SweepEvent::Started(run));
                            let r =
                                with_threads(threads, || execute(run, base, &dir, &|d| events(SweepEvent::Steps(d))));
                            // Released (and its file removed) once the status is on disk.
                            drop(lock);
                            match &r {
                                Ok(st) => events(SweepEvent::Finished(run, st)),
                                Err(e) => events(SweepEvent::Unrecorded(run, e)),
                            }
                            Outcome::Ran(r)
                        }
                    },
                };
                results.lock().expect("no poisoned lock").push(outcome);
            });
        }
    });
    let mut first_err = None;
    for r in results.into_inner().expect("lock") {
        match r {
            Outcome::Ran(Ok(st)) => {
                report.ran += 1;
                count(&mut report, &st);
            }
            Outcome::Ran(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Outcome::FinishedElsewhere(st) => {
                report.skipped += 1;
                count(&mut report, &st);
            }
            Outcome::Held => report.held += 1,
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// How many of the largest of `runs` fit in the memory available together (at least 1;
/// `usize::MAX` when the memory is unknown).
pub fn jobs_that_fit<'a>(runs: impl Iterator<Item = &'a SweepRun>) -> usize {
    let largest = runs.map(|r| r.memory).max().unwrap_or(0).max(1);
    match crate::lab::resources::available_memory() {
        Some(avail) => usize::try_from(avail as u128 / largest).unwrap_or(usize::MAX).max(1),
        None => usize::MAX,
    }
}

/// Refuses to run `jobs` runs at a time when so many of the largest of `runs` ([`SweepRun::memory`])
/// do not fit in the memory available together; the error names `--jobs` and how many would fit.
pub fn check_memory<'a>(runs: impl Iterator<Item = &'a SweepRun>, jobs: usize) -> Result<()> {
    let runs: Vec<&SweepRun> = runs.collect();
    let at_once = jobs.clamp(1, runs.len().max(1));
    let (Some(largest), Some(avail)) = (
        runs.iter().max_by_key(|r| r.memory),
        crate::lab::resources::available_memory(),
    ) else {
        return Ok(());
    };
    let need = largest.memory.saturating_mul(at_once as u128);
    if at_once > 1 && need > avail as u128 {
        use crate::lab::resources::human_bytes;
        return Err(invalid!(
            "--jobs {at_once}: {at_once} runs at a time need up to {} of memory ({} for the largest, {}), but {} is \
             available; run at most {} at a time",
            human_bytes(need),
            human_bytes(largest.memory),
            largest.id,
            human_bytes(avail as u128),
            (avail as u128 / largest.memory.max(1)).max(1)
        ));
    }
    Ok(())
}

/// Where the lock of run `id` lives: `OUT/runs/<id>.lock`, next to its directory.
pub fn lock_path(runs_dir: &Path, id: &str) -> PathBuf {
    runs_dir.join(format!("{id}.lock"))
}

/// An exclusive lock on one run (see the module documentation), released when dropped. The
/// lock file is removed while the lock is still held, so that a process waiting on the old file
/// sees that it no longer is the lock file and tries again with the current one.
struct RunLock {
    file: std::fs::File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock at `path` without waiting: `Ok(None)` when a live process holds it. A lock
    /// file left by a dead process is taken over. `Err` when the file cannot be created or the
    /// filesystem does not support locks.
    fn try_acquire(path: &Path) -> Result<Option<RunLock>> {
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| io_err!("cannot create the run lock {}: {e}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io_err!(
                        "cannot lock {}: {e}; a sweep directory must be on a filesystem with file locks (on NFS: \
                         NFSv4, or NFSv3 with the lock manager)",
                        path.display()
                    ))
                }
            }
            // The previous holder may have removed the file between our open and our lock: then
            // the lock is on a file no longer at `path`; try again with the one there now.
            if same_file(&file, path) {
                let mut lock = RunLock {
                    file,
                    path: path.to_path_buf(),
                };
                lock.note_holder();
                return Ok(Some(lock));
            }
        }
    }

    /// Writes `pid@host` into the lock file, for people looking at a running sweep.
    fn note_holder(&mut self) {
        use std::io::{Seek, Write};
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let _ = self.file.set_len(0);
        let _ = self.file.rewind();
        let _ = writeln!(self.file, "{}@{host}", std::process::id());
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while held (the file is closed, and the lock released, right after).
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Elsewhere an open file cannot be removed, so the file at `path` is the one locked.
#[cfg(not(unix))]
fn same_file(_file: &std::fs::File, _path: &Path) -> bool {
    true
}

fn count(report: &mut SweepReport, st: &RunStatus) {
    match st.status {
        RunState::Ok => report.ok += 1,
        RunState::Diverged => report.diverged += 1,
        RunState::Failed => report.failed += 1,
    }
}

/// Runs one sweep run from scratch into `dir` and records its status. `Err` only when the
/// run's files or its status could not be written (a full disk, a file size limit): then `dir`
/// is removed, so the run stays unfinished and a restart runs it again. Called only with the
/// run's lock held (it deletes an unfinished `dir`).
fn execute(run: &SweepRun, base: &Path, dir: &Path, steps: &dyn Fn(u64)) -> Result<RunStatus> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io_err!("cannot remove unfinished run {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| io_err!("cannot create {}: {e}", dir.display()))?;
    let recorded = record(run, base, dir, steps);
    if recorded.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    recorded
}

/// The body of [`execute`] once `dir` exists and is empty.
fn record(run: &SweepRun, base: &Path, dir: &Path, steps: &dyn Fn(u64)) -> Result<RunStatus> {
    let params = RunParams {
        id: run.id.clone(),
        index: run.index,
        params: run
            .params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null)))
            .collect(),
    };
    write_json(&dir.join("params.json"), &params)?;
    let start = Instant::now();
    let total = run.spec.train.steps;
    let mut reported = 0u64;
    let result = catch_unwind(AssertUnwindSafe(|| {
        run_spec(&run.spec, base, &mut [], &mut |d, _| {
            steps(d.saturating_sub(reported));
            reported = reported.max(d);
        })
    }));
    steps(total.saturating_sub(reported));
    let (status, error) = match result {
        Ok(Ok((model, out))) => {
            // A run's files that cannot be written leave it unfinished, not failed.
            write_run_dir(dir, &run.spec, &model, &out)?;
            match out.error {
                None => (RunState::Ok, None),
                Some(e @ Error::Diverged { .. }) => (RunState::Diverged, Some(e.to_string())),
                Some(e) => (RunState::Failed, Some(e.to_string())),
            }
        }
        Ok(Err(e)) => (RunState::Failed, Some(e.to_string())),
        Err(panic) => (RunState::Failed, Some(format!("panicked: {}", panic_message(&*panic)))),
    };
    let st = RunStatus {
        status,
        error,
        seconds: start.elapsed().as_secs_f64(),
    };
    write_json(&dir.join("status.json"), &st)?;
    Ok(st)
}

/// The table [`merge`] builds.
#[derive(Clone, Debug)]
pub struct Merged {
    /// `runs.csv`: one row per run, sorted by id.
    pub csv: String,
    /// Runs in the sweep.
    pub total: usize,
    /// Runs recorded ok.
    pub ok: usize,
    /// Runs recorded diverged.
    pub diverged: usize,
    /// Runs recorded failed.
    pub failed: usize,
    /// Ids of runs started but unfinished in every directory (status `unfinished`).
    pub unfinished: Vec<String>,
    /// Ids of runs found in no directory (status `missing`).
    pub missing: Vec<String>,
}

struct Found {
    dir: PathBuf,
    status: RunStatus,
    summary: Option<RunSummary>,
    columns: Vec<String>,
}

/// Gathers the runs of one sweep from any number of sweep or shard directories into one table.
///
/// Columns: `id`, the swept keys (values as in TOML, strings unquoted), `status` (`ok`,
/// `diverged`, `failed`, and with `allow_incomplete` also `unfinished` or `missing`), the final
/// row of the run's log from `summary.json` (`step`, `t`, `lr`, `batch_loss`, `loss`, `norm2.*`,
/// …, in log order; the union over runs), and `error`. Refused with a message: a directory
/// without `sweep.toml`, directories holding different sweeps, a run directory that is not a run
/// of the sweep, a run with different results (status or summary) in two directories, and — unless
/// `allow_incomplete` — runs that are unfinished or missing.
pub fn merge(dirs: &[PathBuf], allow_incomplete: bool) -> Result<Merged> {
    let first = dirs.first().ok_or_else(|| invalid!("merge: no directories given"))?;
    let read_sweep = |d: &Path| -> Result<Sweep> {
        let p = d.join("sweep.toml");
        if !p.exists() {
            return Err(invalid!("{}: no sweep.toml there; not a sweep directory", d.display()));
        }
        let text = std::fs::read_to_string(&p).map_err(|e| io_err!("cannot read {}: {e}", p.display()))?;
        Sweep::from_toml(&text).map_err(|e| invalid!("{}: {}", p.display(), msg(&e)))
    };
    let sweep = read_sweep(first)?;
    let mut found: BTreeMap<usize, Vec<Found>> = BTreeMap::new();
    let mut started: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    let ids: BTreeMap<String, usize> = (0..sweep.len()).map(|i| (sweep.id(i), i)).collect();
    for d in dirs {
        let s = read_sweep(d)?;
        s.same_as(&sweep).map_err(|why| {
            invalid!(
                "{} and {} hold different sweeps ({why}); merge only directories of one sweep",
                first.display(),
                d.display()
            )
        })?;
        let rd = d.join("runs");
        if !rd.exists() {
            continue;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&rd)
            .map_err(|e| io_err!("cannot read {}: {e}", rd.display()))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| io_err!("cannot read {}: {e}", rd.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            // A run's lock (a run in progress, or a stale lock of a killed one).
            if name.strip_suffix(".lock").is_some_and(|id| ids.contains_key(id)) {
                continue;
            }
            let &i = ids
                .get(&name)
                .ok_or_else(|| invalid!("{}: not a run of this sweep", e.path().display()))?;
            let dir = e.path();
            match read_status(&dir)? {
                None => started.entry(i).or_default().push(dir),
                Some(status) => {
                    // A run that failed before training (e.g. a spec it could not build) has no
                    // summary; a summary that is there must be complete.
                    let sp = dir.join("summary.json");
                    let summary = if sp.exists() {
                        Some(read_json::<RunSummary>(&sp)?)
                    } else {
                        None
                    };
                    let columns = std::fs::read_to_string(dir.join("metrics.csv"))
                        .ok()
                        .and_then(|t| t.lines().next().map(|h| h.split(',').map(String::from).collect()))
                        .unwrap_or_default();
                    found.entry(i).or_default().push(Found {
                        dir,
                        status,
                        summary,
                        columns,
                    });
                }
            }
        }
    }
    // The same run in two directories must carry the same result.
    for (i, fs) in &found {
        for f in &fs[1..] {
            let a = &fs[0];
            let why = if a.status.status != f.status.status || a.status.error != f.status.error {
                Some(format!("status {} vs {}", a.status.status, f.status.status))
            } else if a.summary != f.summary {
                Some("summary.json differs".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(invalid!(
                    "{} has different results in {} and {} ({why}); merge only directories of one sweep run with \
                     one build",
                    sweep.id(*i),
                    a.dir.display(),
                    f.dir.display()
                ));
            }
        }
    }
    let mut m = Merged {
        csv: String::new(),
        total: sweep.len(),
        ok: 0,
        diverged: 0,
        failed: 0,
        unfinished: Vec::new(),
        missing: Vec::new(),
    };
    for i in 0..sweep.len() {
        match found.get(&i) {
            Some(fs) => match fs[0].status.status {
                RunState::Ok => m.ok += 1,
                RunState::Diverged => m.diverged += 1,
                RunState::Failed => m.failed += 1,
            },
            None if started.contains_key(&i) => m.unfinished.push(sweep.id(i)),
            None => m.missing.push(sweep.id(i)),
        }
    }
    let incomplete = !m.unfinished.is_empty() || !m.missing.is_empty();
    if incomplete && !allow_incomplete {
        let list = |v: &[String]| {
            let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 5 {
                s.push_str(&format!(", … ({} more)", v.len() - 5));
            }
            s
        };
        let mut parts = Vec::new();
        if !m.unfinished.is_empty() {
            let where_ = m
                .unfinished
                .first()
                .and_then(|id| started.get(&ids[id]))
                .and_then(|v| v.first())
                .map(|p| format!(" (e.g. {})", p.display()))
                .unwrap_or_default();
            parts.push(format!(
                "{} unfinished (a directory without status.json{where_}): {}",
                m.unfinished.len(),
                list(&m.unfinished)
            ));
        }
        if !m.missing.is_empty() {
            parts.push(format!(
                "{} missing from every directory: {}",
                m.missing.len(),
                list(&m.missing)
            ));
        }
        return Err(invalid!(
            "merge: the sweep is incomplete: {}. Finish the sweep (rerun it or its shards; finished runs are \
             skipped), give the missing shard directories, or pass --allow-incomplete",
            parts.join("; ")
        ));
    }
    // Metric columns: the union over runs, in log order, first appearance first.
    let mut metric_cols: Vec<String> = Vec::new();
    for f in found.values().map(|v| &v[0]) {
        let mut cols = f.columns.clone();
        if let Some(s) = &f.summary {
            cols.extend(s.final_row.iter().map(|(k, _)| k.clone()));
        }
        for c in cols {
            if !metric_cols.contains(&c) {
                metric_cols.push(c);
            }
        }
    }
    let mut header = vec!["id".to_string()];
    header.extend(sweep.axes().iter().map(|a| a.key.clone()));
    header.push("status".into());
    header.extend(metric_cols.iter().cloned());
    header.push("error".into());
    let mut rows = Vec::with_capacity(sweep.len());
    for i in 0..sweep.len() {
        let mut row: Vec<Cell> = vec![Cell::Text(sweep.id(i))];
        row.extend(sweep.point(i).iter().map(|(_, v)| Cell::Text(csv_value(v))));
        let f = found.get(&i).map(|v| &v[0]);
        row.push(Cell::Text(match f {
            Some(f) => f.status.status.name().into(),
            None if started.contains_key(&i) => "unfinished".into(),
            None => "missing".into(),
        }));
        let fin = f.and_then(|f| f.summary.as_ref()).map(|s| &s.final_row);
        for c in &metric_cols {
            row.push(match fin.and_then(|x| x.iter().find(|(k, _)| k == c)) {
                Some((_, v)) => Cell::Num(*v),
                None => Cell::Text(String::new()),
            });
        }
        row.push(Cell::Text(f.and_then(|f| f.status.error.clone()).unwrap_or_default()));
        rows.push(row);
    }
    m.csv = csv(&header, &rows);
    Ok(m)
}

/// A swept value in a CSV cell: strings bare, everything else as in TOML.
fn csv_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => inline(v),
    }
}

/// TOML values equal as a sweep's definition: like `==`, except that a NaN equals a NaN (a spec
/// written to `sweep.toml` and read back must be the same sweep, whatever its values).
fn same_value(a: &toml::Value, b: &toml::Value) -> bool {
    use toml::Value as V;
    match (a, b) {
        (V::Float(x), V::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (V::Array(x), V::Array(y)) => same_list(x, y),
        (V::Table(x), V::Table(y)) => same_table(x, y),
        _ => a == b,
    }
}

/// [`same_value`] element by element.
fn same_list(x: &[toml::Value], y: &[toml::Value]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
}

/// [`same_value`] key by key: the same keys, each with the same value.
fn same_table(x: &toml::Table, y: &toml::Table) -> bool {
    x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
seed = 0
[model]
kind = "linear"
widths = [2, 3, 2]
[data]
x_cov = { phi = 0.5 }
[train]
lr = 0.01
steps = 100
"#;

    fn sweep(extra: &str) -> Result<Sweep> {
        Sweep::from_toml(&format!("{BASE}\n[sweep]\n{extra}"))
    }

    #[test]
    fn grid_order_ids_and_points() {
        let s = sweep("\"train.lr\" = [0.01, 0.003]\n\"train.batch_size\" = [1, 4]\nseed = [0, 1, 2]\n").unwrap();
        assert_eq!(s.len(), 12);
        let keys: Vec<_> = s.axes().iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["train.lr", "train.batch_size", "seed"], "file order");
        assert_eq!(s.id(3), "run-0003");
        assert_eq!(describe(&s.point(0)), "train.lr = 0.01, train.batch_size = 1, seed = 0");
        assert_eq!(describe(&s.point(1)), "train.lr = 0.01, train.batch_size = 1, seed = 1");
        assert_eq!(
            describe(&s.point(11)),
            "train.lr = 0.003, train.batch_size = 4, seed = 2"
        );
        let runs = s.prepare(Path::new("."), 2).unwrap();
        assert_eq!(runs[5].spec.train.batch_size, 4);
        assert_eq!(runs[5].spec.seed, 2);
        assert_eq!(runs[6].spec.train.lr, Some(0.003));
    }

    #[test]
    fn a_sweep_with_nan_values_is_the_same_sweep_when_read_back() {
        // sweep.toml is compared with the command's sweep on every start; NaN ≠ NaN under `==`
        // made a sweep whose spec holds a NaN refuse its own fresh directory (found by fuzzing).
        let s = Sweep::from_toml(
            &format!("{BASE}\n[sweep]\nseed = [0, 1]\n").replace("seed = 0", "seed = [nan, 1.0, inf]"),
        )
        .unwrap();
        let back = Sweep::from_toml(s.text()).unwrap();
        assert_eq!(s.same_as(&back), Ok(()));
        let nan_axis = sweep("\"train.lr\" = [nan, 0.01]\n").unwrap();
        assert_eq!(nan_axis.same_as(&Sweep::from_toml(nan_axis.text()).unwrap()), Ok(()));
        let other = sweep("\"train.lr\" = [0.02, 0.01]\n").unwrap();
        assert!(nan_axis.same_as(&other).is_err(), "NaN is not equal to a number");
    }

    #[test]
    fn nested_keys_arrays_and_tables() {
        let s = sweep("model.widths = [[2, 3, 2], [2, 5, 5, 2]]\n\"data.x_cov.phi\" = [0.25, 1.0]\n").unwrap();
        let runs = s.prepare(Path::new("."), 1).unwrap();
        assert_eq!(runs[3].spec.model.widths, vec![2, 5, 5, 2]);
        assert_eq!(runs[3].spec.data.x_cov, Some(crate::lab::spec::CovSpec::Phi(1.0)));
        let s = sweep("\"train.weight_decay\" = [0.0, 0.1]\n\"probes.every\" = [10]\n").unwrap();
        let runs = s.prepare(Path::new("."), 1).unwrap();
        assert_eq!(runs[1].spec.train.weight_decay, 0.1);
        assert_eq!(runs[1].spec.probes.every, Some(10));
    }

    #[test]
    fn errors_name_the_key() {
        let e = |x: &str| match sweep(x).and_then(|s| s.prepare(Path::new("."), 1)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{x} accepted"),
        };
        assert!(e("\"train.learning_rate\" = [0.1]").contains("train.learning_rate"));
        assert!(e("\"train.lr\" = 0.1").contains("expected an array"));
        assert!(e("\"train.lr\" = []").contains("empty"));
        let m = e("\"train.steps\" = [10, \"many\"]");
        assert!(m.contains("train.steps") && m.contains("\"many\""), "{m}");
        let m = e("\"model.kind.x\" = [1]");
        assert!(m.contains("model.kind"), "{m}");
        let m = e("\"model.widths\" = [[2, 3, 2], [2, 0, 2]]");
        assert!(m.contains("run-0001") && m.contains("model.widths"), "{m}");
        assert!(Sweep::from_toml(BASE).unwrap_err().to_string().contains("[sweep]"));
        assert!(e("\"train.lr\" = [0.1]\ntrain.lr = [0.2]").contains("twice"));
    }

    #[test]
    fn shards() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "0/0", "1", "a/b", "-1/2", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        fn env(vars: &[(&str, &str)]) -> Result<Option<Shard>> {
            Shard::from_env(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
        }
        assert_eq!(env(&[]).unwrap(), None);
        let two = [("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "2")];
        assert_eq!(env(&two).unwrap(), Some(Shard { index: 1, count: 2 }));
        let minmax = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
        ];
        assert_eq!(env(&minmax).unwrap(), Some(Shard { index: 2, count: 4 }));
        assert!(env(&[("SLURM_ARRAY_TASK_ID", "1")]).is_err());
        assert!(env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "2")]).is_err());
        assert!(env(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "2")]).is_err());
        let s = Shard::parse("1/3").unwrap();
        assert_eq!((0..9).filter(|&i| s.contains(i)).collect::<Vec<_>>(), [1, 4, 7]);
    }

    #[test]
    fn run_lock_excludes_and_takes_over_stale_files() {
        let d = std::env::temp_dir().join(format!("nequil-runlock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = lock_path(&d, "run-0001");
        assert_eq!(p, d.join("run-0001.lock"));
        let held = RunLock::try_acquire(&p).unwrap().expect("free");
        let holder = std::fs::read_to_string(&p).unwrap();
        assert!(holder.starts_with(&format!("{}@", std::process::id())), "{holder}");
        // flock is per open file: a second open, even in this process, is refused.
        assert!(RunLock::try_acquire(&p).unwrap().is_none());
        drop(held);
        assert!(!p.exists(), "the lock file is removed on release");
        // A file left behind with no lock on it (its process died) is taken over.
        std::fs::write(&p, "12345@elsewhere\n").unwrap();
        let taken = RunLock::try_acquire(&p).unwrap().expect("stale");
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .starts_with(&format!("{}@", std::process::id())));
        drop(taken);
        // Someone's old handle to a removed lock file does not lock the run.
        let old = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .unwrap();
        std::fs::remove_file(&p).unwrap();
        old.lock().unwrap();
        let fresh = RunLock::try_acquire(&p).unwrap().expect("a new file");
        drop(fresh);
        drop(old);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn same_as_ignores_formatting() {
        let a = sweep("\"train.lr\" = [0.01, 0.003]").unwrap();
        let b = Sweep::from_toml(&format!("# comment\n{BASE}\n[sweep.train]\nlr = [0.01, 0.003]\n")).unwrap();
        assert!(a.same_as(&b).is_ok());
        let c = sweep("\"train.lr\" = [0.01, 0.004]").unwrap();
        assert!(a.same_as(&c).unwrap_err().contains("train.lr"));
    }
}
