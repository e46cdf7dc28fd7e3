//! Fuzzing of every file format nequil reads, on the stable toolchain, as ordinary tests.
//!
//! Formats: run specs, sweep specs, the model TOML of `nequil equilibrium`, `.npy`, `.npz` (stored
//! and deflated), safetensors, IDX (raw and gzipped). Each case is a valid input of the format
//! with structured mutations: bit flips, bytes set to boundary values, truncation at every length
//! class, inserted, deleted and repeated ranges, header fields and shapes set to absurd values
//! (2⁶² elements, negative and zero dimensions), wrong dtypes, NaN and ±∞, deep nesting, huge
//! TOML arrays, spec values replaced by extreme ones.
//!
//! Every case, called on the library's reader inside `catch_unwind`, must end in `Ok` or in a
//! clean error whose message names the file (or, for a spec that parses, a key), never a panic;
//! and this thread may not allocate more than [`PEAK_LIMIT`] on the way (a counting global
//! allocator measures it; the inputs are all under 1 MiB). A smaller number of cases goes through
//! the `nequil` binary: exit status 0, 1 (a run that failed, with its summary) or 2 (bad input,
//! the message naming the file, and nothing written), never a signal.
//!
//! The committed corpus `tests/fuzz-corpus/<format>/` (every input that ever failed, and the crash
//! cases of the issue that started this suite) is replayed first. A new failure is saved under
//! `target/fuzz-failures/<format>/`; add it to the corpus with the fix.
//!
//! Environment: `NEQUIL_FUZZ_SEED` (default: from the clock; printed), `NEQUIL_FUZZ_CASES` (library
//! cases per format, default 1500), `NEQUIL_FUZZ_CLI_CASES` (binary cases per format, default 30),
//! `NEQUIL_FUZZ_SECONDS` (time budget per format, default 60; the count printed is what ran).

use nequil::core::rng::Rng;
use nequil::lab::io::{self, NdArray};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

// ---------------------------------------------------------------------------------------------
// A counting allocator: bytes live and their peak, per thread.

/// The most a case may allocate on its thread beyond what was live before it.
const PEAK_LIMIT: i64 = 256 << 20;
/// Above this, an allocation is refused (the process aborts with the allocator's message) rather
/// than granted: a runaway reader must not take the machine's memory.
const HARD_LIMIT: i64 = 2 << 30;
/// The memory cap the library plans with during the fuzz ([`nequil::lab::resources`]): specs and
/// files that need more are refused up front, as they would be on a machine with this much.
const PLAN_LIMIT: u64 = 128 << 20;

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
    static TRACK: Cell<bool> = const { Cell::new(false) };
}

/// Records `delta` bytes on this thread; false when a tracked thread would pass the hard limit.
fn note(delta: i64) -> bool {
    LIVE.try_with(|l| {
        let v = l.get() + delta;
        if delta > 0 && v > HARD_LIMIT && TRACK.try_with(Cell::get).unwrap_or(false) {
            return false;
        }
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
        true
    })
    .unwrap_or(true)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if !note(l.size() as i64) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(l);
        if p.is_null() {
            note(-(l.size() as i64));
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if !note(l.size() as i64) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(l);
        if p.is_null() {
            note(-(l.size() as i64));
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        note(-(l.size() as i64));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let d = new as i64 - l.size() as i64;
        if d > 0 && !note(d) {
            return std::ptr::null_mut();
        }
        let q = System.realloc(p, l, new);
        if q.is_null() {
            if d > 0 {
                note(-d);
            }
        } else if d < 0 {
            note(d);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` with this thread's allocations tracked; returns its result and the peak of bytes
/// allocated beyond those live at the start.
fn measured<R>(f: impl FnOnce() -> R) -> (R, i64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    TRACK.with(|t| t.set(true));
    let r = f();
    TRACK.with(|t| t.set(false));
    (r, PEAK.with(Cell::get) - base)
}

// ---------------------------------------------------------------------------------------------
// Panics: caught per case and recorded, silently, on fuzzing threads.

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let msg = nequil::error::panic_message(info.payload());
                let at = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                default(info)
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// Settings.

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

struct Settings {
    seed: u64,
    cases: u64,
    cli_cases: u64,
    seconds: f64,
}

fn settings() -> Settings {
    let seed = env_u64("NEQUIL_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    Settings {
        seed,
        cases: env_u64("NEQUIL_FUZZ_CASES").unwrap_or(1500),
        cli_cases: env_u64("NEQUIL_FUZZ_CLI_CASES").unwrap_or(30),
        seconds: env_u64("NEQUIL_FUZZ_SECONDS").unwrap_or(60) as f64,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("fuzz", name)
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// Integers at the edges: zero, one, the powers of two at type boundaries, all ones.
const EDGE_INTS: [u64; 14] = [
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    1 << 53,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

fn pick<'a, T>(r: &mut Rng, v: &'a [T]) -> &'a T {
    &v[r.below(v.len())]
}

/// A length at one of the classes of `len`: empty, a byte or a few, around the marks (header
/// ends), half, one short, or anywhere.
fn length_class(r: &mut Rng, len: usize, marks: &[usize]) -> usize {
    let l = match r.below(7) {
        0 => r.below(3),
        1 => *pick(r, &[4usize, 8, 10, 12, 16, 64]),
        2 if !marks.is_empty() => {
            let m = *pick(r, marks);
            (m + r.below(3)).saturating_sub(1)
        }
        3 => len / 2,
        4 => len.saturating_sub(1),
        5 => len.saturating_sub(1 + r.below(16)),
        _ => r.below(len + 1),
    };
    l.min(len)
}

/// One to three byte-level mutations of `b`; `marks` are offsets worth aiming at (ends of
/// headers, size fields).
fn mutate_bytes(r: &mut Rng, b: &mut Vec<u8>, marks: &[usize]) {
    for _ in 0..1 + r.below(3) {
        let len = b.len();
        match r.below(9) {
            0 if len > 0 => {
                for _ in 0..1 + r.below(8) {
                    let i = r.below(len);
                    b[i] ^= 1 << r.below(8);
                }
            }
            1 if len > 0 => {
                let i = if !marks.is_empty() && r.below(2) == 0 {
                    (*pick(r, marks)).min(len - 1)
                } else {
                    r.below(len)
                };
                b[i] = *pick(
                    r,
                    &[
                        0u8, 1, 0x7F, 0x80, 0xFF, b'(', b'[', b'{', b'"', b'\'', b'-', b'9', b'\n',
                    ],
                );
            }
            2 => {
                let l = length_class(r, len, marks);
                b.truncate(l);
            }
            3 => {
                let at = r.below(len + 1);
                let n = 1 + r.below(16);
                let ins: Vec<u8> = (0..n).map(|_| r.next_u64() as u8).collect();
                b.splice(at..at, ins);
            }
            4 if len > 0 => {
                let at = r.below(len);
                let n = 1 + r.below((len - at).min(64));
                b.drain(at..at + n);
            }
            5 if len > 0 => {
                let at = r.below(len);
                let n = 1 + r.below((len - at).min(256));
                let chunk = b[at..at + n].to_vec();
                let to = r.below(len + 1);
                let times = 1 + r.below(4);
                for _ in 0..times {
                    b.splice(to..to, chunk.iter().copied());
                }
            }
            6 if len >= 8 => {
                let at = if !marks.is_empty() && r.below(2) == 0 {
                    (*pick(r, marks)).min(len - 8)
                } else {
                    r.below(len - 7)
                };
                let v = *pick(r, &EDGE_INTS);
                let v = if r.below(4) == 0 { v.wrapping_neg() } else { v };
                let width = *pick(r, &[1usize, 2, 4, 8]);
                let bytes = if r.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let src = if bytes[0] == (v as u8) {
                    &bytes[..width]
                } else {
                    &bytes[8 - width..]
                };
                b[at..at + width].copy_from_slice(src);
            }
            7 => {
                let n = 1 + r.below(64);
                b.extend((0..n).map(|_| r.next_u64() as u8));
            }
            _ => {
                // Special floats over an aligned f64 or f32.
                if len >= 8 {
                    let at = r.below(len - 7);
                    let v = *pick(r, &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MAX, 5e-324]);
                    if r.below(2) == 0 {
                        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                    } else {
                        b[at..at + 4].copy_from_slice(&(v as f32).to_le_bytes());
                    }
                }
            }
        }
    }
}

/// Nested brackets `depth` deep: `[[[…]]]`, `(((…)))` or `{…}`.
fn nested(open: char, close: char, depth: usize) -> String {
    let mut s = String::with_capacity(2 * depth);
    s.extend(std::iter::repeat_n(open, depth));
    s.extend(std::iter::repeat_n(close, depth));
    s
}

// ---------------------------------------------------------------------------------------------
// npy.

/// A `.npy` file with the given header fields and body, in format version `version`.
fn npy_raw(descr: &str, fortran: &str, shape: &str, body: &[u8], version: u8) -> Vec<u8> {
    let mut header = format!("{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}");
    let pre = if version == 1 { 10 } else { 12 };
    while !(pre + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    if version == 1 {
        out.extend((header.len() as u16).to_le_bytes());
    } else {
        out.extend((header.len() as u32).to_le_bytes());
    }
    out.extend(header.as_bytes());
    out.extend(body);
    out
}

/// Valid `.npy` files: every supported dtype, both byte orders, C and Fortran order, versions
/// 1 to 3, 0-d to 3-d.
fn npy_seeds() -> Vec<Vec<u8>> {
    let mut out = vec![];
    for shape in [vec![], vec![0], vec![3], vec![2, 3], vec![2, 3, 2]] {
        let n: usize = shape.iter().product();
        let a = NdArray::new(shape, (0..n).map(|i| i as f64 * 0.5 - 1.0).collect()).unwrap();
        out.push(io::npy_bytes(&a).unwrap());
    }
    let body = |size: usize, n: usize| -> Vec<u8> { (0..n * size).map(|i| (i * 37 % 251) as u8).collect() };
    for (descr, size) in [
        ("'<f4'", 4),
        ("'>f8'", 8),
        ("'<f2'", 2),
        ("'|i1'", 1),
        ("'<i2'", 2),
        ("'>i4'", 4),
        ("'<i8'", 8),
        ("'|u1'", 1),
        ("'<u2'", 2),
        ("'<u4'", 4),
        ("'>u8'", 8),
        ("'|b1'", 1),
    ] {
        out.push(npy_raw(descr, "False", "(4, 3)", &body(size, 12), 1));
    }
    out.push(npy_raw("'<f8'", "True", "(3, 4)", &body(8, 12), 1));
    out.push(npy_raw("'<f8'", "True", "(2, 3, 2)", &body(8, 12), 2));
    out.push(npy_raw("'<f4'", "False", "(5,)", &body(4, 5), 3));
    out
}

/// Header texts worth trying in place of a valid one.
fn npy_header_mutant(r: &mut Rng) -> (String, String, String) {
    let shapes = [
        "(4611686018427387904,)".to_string(),
        "(-1, 3)".into(),
        "(0, 5)".into(),
        "(3, 0, 4611686018427387904)".into(),
        "(0, 4611686018427387904, 4611686018427387904)".into(),
        "(2147483648, 2147483648, 2147483648)".into(),
        "(18446744073709551615,)".into(),
        "(18446744073709551616,)".into(),
        "()".into(),
        "(3.5,)".into(),
        "('3',)".into(),
        "None".into(),
        "[4, 3]".into(),
        format!("({})", vec!["1"; 64].join(", ")),
        format!("({})", vec!["2"; 70].join(", ")),
        nested('(', ')', 1 + r.below(5000)),
        nested('[', ']', 1 + r.below(5000)),
        format!("{}{}", "(".repeat(3000), "1,"),
    ];
    let descrs = [
        "'<f8'",
        "'<c16'",
        "'|O'",
        "'<U10'",
        "'|S5'",
        "'<M8[ns]'",
        "'<f16'",
        "'f8'",
        "'<i3'",
        "''",
        "'>'",
        "'<'",
        "[('a', '<f8')]",
        "None",
        "'<f8 '",
        "'|V8'",
        "'<f0'",
        "'<f99999999999999999999'",
        "{}",
    ];
    let fortran = ["False", "True", "None", "1", "'x'", "()"];
    (
        pick(r, descrs.as_slice()).to_string(),
        pick(r, fortran.as_slice()).to_string(),
        pick(r, shapes.as_slice()).clone(),
    )
}

fn npy_mutant(r: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let seed = pick(r, seeds).clone();
    let header_end = 10 + u16::from_le_bytes([seed[8], seed[9]]) as usize;
    match r.below(10) {
        0..=2 => {
            let (mut descr, mut fortran, mut shape) = ("'<f8'".to_string(), "False".to_string(), "(4, 3)".to_string());
            let (d, f, s) = npy_header_mutant(r);
            match r.below(4) {
                0 => descr = d,
                1 => fortran = f,
                2 => shape = s,
                _ => (descr, fortran, shape) = (d, f, s),
            }
            let body_len = *pick(r, &[0usize, 8, 96, 100, 4096]);
            let body: Vec<u8> = (0..body_len).map(|_| r.next_u64() as u8).collect();
            let version = *pick(r, &[1u8, 2, 3]);
            let mut b = npy_raw(&descr, &fortran, &shape, &body, version);
            if version == 1 && b.len() > 65535 + 10 {
                b = npy_raw(&descr, &fortran, &shape, &body, 2);
            }
            b
        }
        3 => {
            // Keys removed, doubled or unknown.
            let texts = [
                "{'descr': '<f8', 'shape': (2,), }",
                "{'fortran_order': False, 'shape': (2,), }",
                "{'descr': '<f8', 'fortran_order': False, }",
                "{'descr': '<f8', 'descr': '<i1', 'fortran_order': False, 'shape': (16,), }",
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': [1, 2, {3: 4}], }",
                "{}",
                "",
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)",
                "{'descr': '<f8\\', 'fortran_order': False, 'shape': (2,), }",
            ];
            let text = pick(r, texts.as_slice());
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend((text.len() as u16).to_le_bytes());
            b.extend(text.as_bytes());
            b.extend([0u8; 16]);
            b
        }
        4 => {
            // NaN and infinities in the data (a valid file: the reader accepts it).
            let mut b = seed;
            let n = (b.len() - header_end) / 8;
            for _ in 0..1 + r.below(3) {
                if n > 0 {
                    let i = header_end + 8 * r.below(n);
                    let v = *pick(r, &[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
                    b[i..i + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            b
        }
        _ => {
            let mut b = seed;
            mutate_bytes(r, &mut b, &[6, 8, 10, header_end]);
            b
        }
    }
}

// ---------------------------------------------------------------------------------------------
// npz.

fn zip_of(members: &[(String, Vec<u8>)], deflated: bool) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflated {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let mut seen = std::collections::HashSet::new();
    for (name, bytes) in members {
        if !seen.insert(name.clone()) {
            continue;
        }
        z.start_file(
            name.as_str(),
            zip::write::SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn npz_seeds(deflated: bool) -> Vec<Vec<u8>> {
    let npy = npy_seeds();
    let mut out = vec![];
    for k in 0..4 {
        let members: Vec<(String, Vec<u8>)> = (0..1 + k % 3)
            .map(|j| {
                (
                    format!("{}.npy", ["x", "y", "z"][j]),
                    npy[(k * 3 + j) % npy.len()].clone(),
                )
            })
            .collect();
        out.push(zip_of(&members, deflated));
    }
    out
}

/// Deflated archives of zeros: 1, 12 and 40 MiB of `u1`, `f8` and `b1` elements in 1 to 40 kB
/// (the largest inflates past the read budget of the fuzz's memory cap).
fn bombs() -> &'static [Vec<u8>] {
    static B: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        [(1usize, "'|u1'"), (12, "'<f8'"), (12, "'|u1'"), (40, "'|b1'")]
            .iter()
            .map(|&(mib, descr)| {
                let n = mib << 20;
                let size = if descr == "'<f8'" { 8 } else { 1 };
                let npy = npy_raw(descr, "False", &format!("({},)", n / size), &vec![0u8; n], 1);
                zip_of(&[("x.npy".into(), npy)], true)
            })
            .collect()
    })
}

/// Offsets of the zip records' size, count and offset fields in `b`.
fn zip_marks(b: &[u8]) -> Vec<usize> {
    let mut marks = vec![];
    for i in 0..b.len().saturating_sub(4) {
        match &b[i..i + 4] {
            [0x50, 0x4b, 0x03, 0x04] => marks.extend([i + 8, i + 14, i + 18, i + 22, i + 26, i + 28]),
            [0x50, 0x4b, 0x01, 0x02] => marks.extend([i + 10, i + 20, i + 24, i + 28, i + 30, i + 42]),
            [0x50, 0x4b, 0x05, 0x06] => marks.extend([i + 8, i + 10, i + 12, i + 16, i + 20]),
            _ => {}
        }
    }
    marks
}

fn npz_mutant(r: &mut Rng, seeds: &[Vec<u8>], deflated: bool) -> Vec<u8> {
    match r.below(4) {
        0 => {
            // A valid archive around mutated arrays.
            let npy = npy_seeds();
            let members: Vec<(String, Vec<u8>)> = (0..1 + r.below(3))
                .map(|j| {
                    let name = pick(r, &["x.npy", "y.npy", "x", "", "../x.npy", "a/b.npy", "x.npy"]).to_string();
                    let name = if j > 0 && name == "x.npy" {
                        format!("m{j}.npy")
                    } else {
                        name
                    };
                    (name, npy_mutant(r, &npy))
                })
                .collect();
            zip_of(&members, deflated)
        }
        1 if deflated && r.below(4) == 0 => {
            // Highly compressible members: megabytes of zeros in tens of kilobytes.
            pick(r, bombs()).clone()
        }
        _ => {
            let mut b = pick(r, seeds).clone();
            let marks = zip_marks(&b);
            mutate_bytes(r, &mut b, &marks);
            b
        }
    }
}

// ---------------------------------------------------------------------------------------------
// safetensors.

/// A safetensors file from a JSON header and a body.
fn st_raw(header: &str, body: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(body);
    out
}

fn st_seeds() -> Vec<Vec<u8>> {
    let mut out = vec![];
    let w: Vec<f64> = (0..12).map(|i| i as f64 * 0.25 - 1.0).collect();
    let b: Vec<f64> = vec![0.5, -0.5, 1.5];
    out.push(
        io::safetensors_bytes(
            &[
                ("layers.0.weight".to_string(), vec![3, 4], w.as_slice()),
                ("layers.0.bias".to_string(), vec![3], b.as_slice()),
            ],
            Some([("format".to_string(), "pt".to_string())].into_iter().collect()),
        )
        .unwrap(),
    );
    for (dtype, size) in [("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8)] {
        let header = format!(
            r#"{{"layers.0.weight":{{"dtype":"{dtype}","shape":[3,4],"data_offsets":[0,{}]}}}}"#,
            12 * size
        );
        let body: Vec<u8> = (0..12 * size).map(|i| (i * 13 % 200) as u8 + 20).collect();
        out.push(st_raw(&header, &body));
    }
    out
}

fn st_mutant(r: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match r.below(8) {
        0..=2 => {
            let dtype = *pick(
                r,
                &[
                    "F64", "F32", "F16", "BF16", "I64", "I32", "U8", "BOOL", "F8_E4M3", "C64", "X", "",
                ],
            );
            let shape = pick(
                r,
                &[
                    "[3,4]",
                    "[4611686018427387904]",
                    "[-1,4]",
                    "[0,4]",
                    "[]",
                    "[2147483648,2147483648,2147483648]",
                    "[18446744073709551615,2]",
                    "[3.5]",
                    "\"3\"",
                    "[3,4,0,4611686018427387904]",
                ],
            )
            .to_string();
            let offsets = pick(
                r,
                &[
                    "[0,96]",
                    "[0,0]",
                    "[96,0]",
                    "[0,18446744073709551615]",
                    "[0,95]",
                    "[0,97]",
                    "[-1,96]",
                    "[0]",
                ],
            )
            .to_string();
            let name = *pick(r, &["layers.0.weight", "layers.0.bias", "", "__metadata__", "x"]);
            let mut header = format!(r#"{{"{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#);
            if r.below(3) == 0 {
                header = format!(r#"{{"__metadata__":{{"format":"pt"}},{}"#, &header[1..]);
            }
            let body: Vec<u8> = (0..*pick(r, &[0usize, 95, 96, 97, 4096]))
                .map(|_| r.next_u64() as u8)
                .collect();
            st_raw(&header, &body)
        }
        3 => {
            // Deep or odd JSON headers.
            let depth = 1 + r.below(20000);
            let header = match r.below(4) {
                0 => format!(r#"{{"a":{}}}"#, nested('[', ']', depth)),
                1 => format!("{}1{}", "{\"a\":".repeat(depth.min(4000)), "}".repeat(depth.min(4000))),
                2 => format!(r#"{{"__metadata__":{}}}"#, nested('[', ']', depth)),
                _ => "[]".to_string(),
            };
            st_raw(&header, &[])
        }
        4 => {
            // A header length beyond the file, or absurd.
            let mut b = pick(r, seeds).clone();
            let v = *pick(
                r,
                &[
                    0u64,
                    1,
                    1 << 60,
                    u64::MAX,
                    100_000_001,
                    b.len() as u64,
                    b.len() as u64 - 7,
                ],
            );
            b[..8].copy_from_slice(&v.to_le_bytes());
            b
        }
        _ => {
            let mut b = pick(r, seeds).clone();
            let hl = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            mutate_bytes(r, &mut b, &[0, 8, 8 + hl]);
            b
        }
    }
}

// ---------------------------------------------------------------------------------------------
// IDX.

fn idx_raw(code: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(body);
    out
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn idx_seeds() -> Vec<Vec<u8>> {
    let mut out = vec![
        idx_raw(
            0x08,
            &[5, 28, 28],
            &(0..5 * 784).map(|i| (i % 256) as u8).collect::<Vec<_>>(),
        ),
        idx_raw(0x08, &[5], &[0, 1, 2, 9, 7]),
        idx_raw(0x08, &[3, 2, 2], &[0, 255, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    ];
    for (code, size) in [(0x09u8, 1usize), (0x0B, 2), (0x0C, 4), (0x0D, 4), (0x0E, 8)] {
        out.push(idx_raw(
            code,
            &[2, 3],
            &(0..6 * size).map(|i| i as u8 * 7).collect::<Vec<_>>(),
        ));
    }
    out
}

fn idx_mutant(r: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match r.below(5) {
        0 => {
            let code = *pick(r, &[0x08u8, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x00, 0xFF]);
            let nd = *pick(r, &[0usize, 1, 2, 3, 4, 255]);
            let dims: Vec<u32> = (0..nd)
                .map(|_| *pick(r, &[0u32, 1, 3, 28, 60000, 1 << 31, u32::MAX, 65536]))
                .collect();
            let body: Vec<u8> = (0..*pick(r, &[0usize, 1, 12, 784, 4096]))
                .map(|_| r.next_u64() as u8)
                .collect();
            idx_raw(code, &dims, &body)
        }
        _ => {
            let mut b = pick(r, seeds).clone();
            let nd = b[3] as usize;
            mutate_bytes(r, &mut b, &[2, 3, 4, 4 + 4 * nd]);
            b
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TOML: run specs, sweep specs, model files.

const SPEC_EXTRA: &[&str] = &[
    // Fixed data, GD, biases, a piecewise schedule, every instrument.
    r#"seed = 3
[model]
kind = "mlp"
widths = [3, 5, 2]
activation = "tanh"
bias = true
[data]
mode = "fixed"
n = 40
target = "tanh-teacher"
teacher_hidden = 4
x_cov = { diag = [1.0, 0.5, 2.0] }
noise_cov = { blocks = [[1, 0.1], [1, 0.2]] }
[train]
optimizer = "gd"
schedule = "piecewise"
boundaries = [5]
values = [0.01, 0.02]
steps = 10
weight_decay = 0.001
[probes]
every = 2
[probes.charges]
symmetries = ["all"]
[probes.hessian]
every = 5
lanczos_iter = 10
"#,
    r#"[model]
kind = "linear"
widths = [3, 4, 3]
init = "std"
init_std = [0.5, 0.5]
[data]
mode = "population"
x_cov = { full = [[2.0, 0.1, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 0.5]] }
target = "linear"
teacher = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
[train]
optimizer = "gd"
lr = 0.05
steps = 20
schedule = "linear-warmup"
warmup_steps = 5
[probes]
log_points = 5
[probes.sharpness]
[probes.equilibrium]
data = "population"
[probes.charges]
symmetries = []
families = ["all"]
time = "discrete"
"#,
    r#"seed = 1
[model]
kind = "net-a"
widths = [3, 4, 2]
[data]
target = "linear"
noise_cov = { scalar = 0.1 }
[train]
lr = 0.01
batch_size = 4
steps = 30
[probes]
every = 10
eval_samples = 64
"#,
    r#"[model]
kind = "linear"
widths = [3, 2, 1]
[data]
source = "npy"
mode = "fixed"
x_path = "x.npy"
y_path = "y.npy"
[train]
lr = 0.01
batch_size = 2
steps = 20
[probes]
every = 10
"#,
    r#"[model]
kind = "linear"
widths = [3, 2, 1]
[data]
source = "npy"
mode = "fixed"
npz_path = "d.npz"
replacement = false
[train]
lr = 0.01
batch_size = 2
steps = 20
"#,
];

/// The run specs the fuzz starts from: the examples and the specs above.
fn spec_seeds() -> Vec<String> {
    let mut out: Vec<String> = [
        "linear2-autoencoder.toml",
        "linear2-instruments.toml",
        "cnn.toml",
        "transformer.toml",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(root().join("examples").join(f)).unwrap())
    .collect();
    out.extend(SPEC_EXTRA.iter().map(|s| s.to_string()));
    out
}

fn sweep_seeds() -> Vec<String> {
    let mut out = vec![std::fs::read_to_string(root().join("examples/sweep-linear2.toml")).unwrap()];
    for (i, s) in SPEC_EXTRA.iter().enumerate() {
        let sweep = match i % 3 {
            0 => "[sweep]\nseed = [0, 1]\n",
            1 => "[sweep]\n\"train.lr\" = [0.01, 0.02]\n\"model.widths\" = [[3, 4, 3], [3, 2, 3]]\n",
            _ => "[sweep.train]\nsteps = [5, 10]\n",
        };
        out.push(format!("{s}\n{sweep}"));
    }
    out
}

fn model_seeds() -> Vec<String> {
    let mut out = vec![
        "[model]\nkind = \"linear\"\nwidths = [3, 4, 3]\n".to_string(),
        "[model]\nkind = \"mlp\"\nwidths = [3, 4, 3]\nactivation = \"leaky-relu\"\nleaky_slope = 0.1\nbias = true\n"
            .into(),
        "[model]\nkind = \"net-b\"\nwidths = [3, 4, 3]\n".into(),
        "[model]\nkind = \"sequential\"\ninput = [3]\nlayers = [{ type = \"linear\", out_features = 4 }, { type = \"relu\" }, { type = \"linear\", out_features = 3 }]\n".into(),
    ];
    for f in ["cnn.toml", "transformer.toml", "linear2-autoencoder.toml"] {
        out.push(std::fs::read_to_string(root().join("examples").join(f)).unwrap());
    }
    out
}

/// Keys (table path, key) worth setting to extreme values even where a seed lacks them.
const SPEC_KEYS: &[(&str, &str)] = &[
    ("", "seed"),
    ("model", "widths"),
    ("model", "input"),
    ("model", "kind"),
    ("model", "init_std"),
    ("model", "leaky_slope"),
    ("data", "n"),
    ("data", "mode"),
    ("data", "teacher_hidden"),
    ("data", "teacher"),
    ("data", "x_cov"),
    ("data", "noise_cov"),
    ("train", "steps"),
    ("train", "lr"),
    ("train", "batch_size"),
    ("train", "boundaries"),
    ("train", "values"),
    ("train", "warmup_steps"),
    ("train", "weight_decay"),
    ("probes", "every"),
    ("probes", "log_points"),
    ("probes", "eval_samples"),
    ("probes.charges", "symmetries"),
    ("probes.charges", "families"),
    ("probes.charges", "every"),
    ("probes.hessian", "lanczos_iter"),
    ("probes.hessian", "hutchinson"),
    ("probes.hessian", "exact_max"),
    ("probes.hessian", "max_samples"),
    ("probes.hessian", "log_points"),
    ("probes.sharpness", "data"),
    ("probes.equilibrium", "every"),
];

/// An extreme TOML value: edge integers, special floats, odd strings, huge arrays, deep nesting.
fn extreme_value(r: &mut Rng, big: bool) -> toml::Value {
    use toml::Value as V;
    let ints = [
        0i64,
        -1,
        1,
        2,
        1 << 31,
        1 << 32,
        (1 << 53) + 1,
        1 << 62,
        i64::MAX,
        i64::MIN,
        100_000,
        3_000_000_000,
    ];
    match r.below(12) {
        0 | 1 => V::Integer(*pick(r, &ints)),
        2 => V::Float(*pick(
            r,
            &[
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
                1e308,
                5e-324,
                1e20,
                -1e-300,
                0.5,
            ],
        )),
        3 => V::String(
            pick(
                r,
                &[
                    "",
                    "x",
                    "all",
                    "linear",
                    "population",
                    "npy",
                    "../../x.npy",
                    "\u{0}",
                    "layers.0.weight",
                    "*",
                    "qk.*",
                ],
            )
            .to_string(),
        ),
        4 => V::String("🦀".repeat(1 + r.below(if big { 20_000 } else { 100 }))),
        5 => V::Boolean(r.below(2) == 0),
        6 => V::Array(vec![]),
        7 => {
            // A huge array of one value.
            let n = if big { 1 + r.below(50_000) } else { 1 + r.below(300) };
            let v = *pick(r, &[0i64, 1, 3, 100_000, 1 << 62]);
            V::Array(vec![V::Integer(v); n])
        }
        8 => V::Array(vec![
            V::Integer(*pick(r, &ints)),
            V::Integer(*pick(r, &ints)),
            V::Integer(*pick(r, &ints)),
        ]),
        9 => {
            // Nested arrays.
            let depth = 1 + r.below(if big { 3000 } else { 60 });
            let mut v = V::Integer(1);
            for _ in 0..depth {
                v = V::Array(vec![v]);
            }
            v
        }
        10 => {
            let mut t = toml::Table::new();
            t.insert("scalar".into(), V::Float(1.0));
            t.insert(
                pick(r, &["phi", "diag", "full", "x", "type"]).to_string(),
                V::Integer(*pick(r, &ints)),
            );
            V::Table(t)
        }
        _ => V::Array(vec![V::Float(f64::NAN), V::Float(1.0), V::Float(f64::INFINITY)]),
    }
}

/// Mostly an extreme value of the same type as `v` (so that it passes the parser and reaches
/// validation), sometimes any extreme value.
fn extreme_like(r: &mut Rng, v: &toml::Value, big: bool) -> toml::Value {
    use toml::Value as V;
    if r.below(4) == 0 {
        return extreme_value(r, big);
    }
    match v {
        V::Integer(_) => V::Integer(*pick(
            r,
            &[
                0i64,
                1,
                2,
                3,
                7,
                100_000,
                3_000_000_000,
                1 << 31,
                1 << 40,
                1 << 53,
                1 << 62,
                i64::MAX,
            ],
        )),
        V::Float(_) => V::Float(*pick(
            r,
            &[
                0.0,
                -0.0,
                1e-300,
                5e-324,
                1e-12,
                0.5,
                2.0,
                1e6,
                1e100,
                1e308,
                f64::INFINITY,
                f64::NAN,
            ],
        )),
        V::Array(a) if !a.is_empty() => {
            let mut a = a.clone();
            match r.below(4) {
                0 => {
                    let i = r.below(a.len());
                    a[i] = extreme_like(r, &a[i].clone(), big);
                }
                1 => {
                    let n = if big { r.below(20_000) } else { r.below(40) };
                    let x = a[r.below(a.len())].clone();
                    a.extend(std::iter::repeat_n(x, n));
                }
                2 => a.truncate(r.below(a.len())),
                _ => {
                    for x in a.iter_mut() {
                        *x = extreme_like(r, &x.clone(), big);
                    }
                }
            }
            V::Array(a)
        }
        V::String(_) => V::String(
            pick(
                r,
                &[
                    "all",
                    "linear",
                    "mlp",
                    "sequential",
                    "population",
                    "fixed",
                    "online",
                    "npy",
                    "gd",
                    "piecewise",
                    "eval",
                    "discrete",
                    "neuron.0.*",
                    "layer_pair.0",
                    "qk.*",
                    "scale",
                    "rotation.0",
                    "x",
                    "../y.npy",
                    "d.npz",
                    "",
                ],
            )
            .to_string(),
        ),
        _ => extreme_value(r, big),
    }
}

/// Every path to a value in `t` (tables and arrays entered).
fn value_paths(v: &toml::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                at.push(k.clone());
                value_paths(x, at, out);
                at.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(8) {
                at.push(format!("#{i}"));
                value_paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn value_at<'a>(v: &'a mut toml::Value, path: &[String]) -> Option<&'a mut toml::Value> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            toml::Value::Table(t) => t.get_mut(p)?,
            toml::Value::Array(a) => a.get_mut(p.strip_prefix('#')?.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A mutation of a TOML text: structured (a value replaced, a key removed or added, an array
/// grown) or textual (bytes, deep nesting).
fn toml_mutant(r: &mut Rng, seeds: &[String], big: bool) -> Vec<u8> {
    let text = pick(r, seeds).clone();
    match r.below(10) {
        0..=5 => {
            let Ok(table) = text.parse::<toml::Table>() else {
                return text.into_bytes();
            };
            let mut root = toml::Value::Table(table);
            for _ in 0..1 + r.below(3) {
                match r.below(5) {
                    0 | 1 => {
                        let mut paths = vec![];
                        value_paths(&root, &mut vec![], &mut paths);
                        if paths.len() < 2 {
                            continue;
                        }
                        let path = pick(r, &paths[1..]).clone();
                        if let Some(slot) = value_at(&mut root, &path) {
                            *slot = extreme_like(r, &slot.clone(), big);
                        }
                    }
                    2 => {
                        let (table, key) = *pick(r, SPEC_KEYS);
                        let v = extreme_value(r, big);
                        let mut cur = &mut root;
                        for part in table.split('.').filter(|p| !p.is_empty()) {
                            let toml::Value::Table(t) = cur else { break };
                            cur = t
                                .entry(part.to_string())
                                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                        }
                        if let toml::Value::Table(t) = cur {
                            t.insert(key.to_string(), v);
                        }
                    }
                    3 => {
                        let mut paths = vec![];
                        value_paths(&root, &mut vec![], &mut paths);
                        if paths.len() < 2 {
                            continue;
                        }
                        let path = pick(r, &paths[1..]).clone();
                        if let Some((last, parent)) = path.split_last() {
                            if let Some(toml::Value::Table(t)) = value_at(&mut root, parent) {
                                t.remove(last);
                            }
                        }
                    }
                    _ => {
                        // An array grown by copies of its elements, or a table given an unknown key.
                        let mut paths = vec![];
                        value_paths(&root, &mut vec![], &mut paths);
                        let path = pick(r, &paths).clone();
                        let n = if big { r.below(20_000) } else { r.below(50) };
                        match value_at(&mut root, &path) {
                            Some(toml::Value::Array(a)) if !a.is_empty() => {
                                let first = a[0].clone();
                                a.extend(std::iter::repeat_n(first, n));
                            }
                            Some(toml::Value::Table(t)) => {
                                t.insert("unknown_key".into(), toml::Value::Integer(1));
                            }
                            _ => {}
                        }
                    }
                }
            }
            match toml::to_string(&root) {
                Ok(s) => s.into_bytes(),
                Err(_) => text.into_bytes(),
            }
        }
        6 => {
            // Deep nesting in text: arrays, inline tables, nested residual layers.
            let depth = 1 + r.below(if big { 100_000 } else { 2_000 });
            let inject = match r.below(3) {
                0 => format!("deep = {}\n", nested('[', ']', depth)),
                1 => format!("deep = {}1{}\n", "{ a = ".repeat(depth), " }".repeat(depth)),
                _ => format!(
                    "layers = [{}{{ type = \"linear\", out_features = 2 }}{}]\n",
                    "{ type = \"residual\", layers = [".repeat(depth.min(20_000)),
                    "] }".repeat(depth.min(20_000))
                ),
            };
            let at = text
                .find("[model]")
                .map_or(0, |i| i + "[model]\n".len())
                .min(text.len());
            let mut t = text;
            t.insert_str(at, &inject);
            t.into_bytes()
        }
        _ => {
            let mut b = text.into_bytes();
            let marks: Vec<usize> = b
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == b'\n')
                .map(|(i, _)| i)
                .collect();
            mutate_bytes(r, &mut b, &marks);
            b
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The formats and their library checks.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    RunSpec,
    SweepSpec,
    ModelToml,
    Npy,
    NpzStored,
    NpzDeflated,
    Safetensors,
    IdxRaw,
    IdxGz,
}

impl Format {
    const ALL: [Format; 9] = [
        Format::RunSpec,
        Format::SweepSpec,
        Format::ModelToml,
        Format::Npy,
        Format::NpzStored,
        Format::NpzDeflated,
        Format::Safetensors,
        Format::IdxRaw,
        Format::IdxGz,
    ];

    fn name(self) -> &'static str {
        match self {
            Format::RunSpec => "run-spec",
            Format::SweepSpec => "sweep-spec",
            Format::ModelToml => "model-toml",
            Format::Npy => "npy",
            Format::NpzStored => "npz-stored",
            Format::NpzDeflated => "npz-deflated",
            Format::Safetensors => "safetensors",
            Format::IdxRaw => "idx",
            Format::IdxGz => "idx-gz",
        }
    }

    /// The file name a case is written to.
    fn file(self) -> &'static str {
        match self {
            Format::RunSpec | Format::SweepSpec | Format::ModelToml => "case.toml",
            Format::Npy => "case.npy",
            Format::NpzStored | Format::NpzDeflated => "case.npz",
            Format::Safetensors => "case.safetensors",
            Format::IdxRaw | Format::IdxGz => "case-idx3-ubyte",
        }
    }
}

/// What the fuzz of one format starts from.
struct Seeds {
    bytes: Vec<Vec<u8>>,
    text: Vec<String>,
}

fn seeds(f: Format) -> Seeds {
    let none = Vec::new;
    match f {
        Format::RunSpec => Seeds {
            bytes: none(),
            text: spec_seeds(),
        },
        Format::SweepSpec => Seeds {
            bytes: none(),
            text: sweep_seeds(),
        },
        Format::ModelToml => Seeds {
            bytes: none(),
            text: model_seeds(),
        },
        Format::Npy => Seeds {
            bytes: npy_seeds(),
            text: vec![],
        },
        Format::NpzStored => Seeds {
            bytes: npz_seeds(false),
            text: vec![],
        },
        Format::NpzDeflated => Seeds {
            bytes: npz_seeds(true),
            text: vec![],
        },
        Format::Safetensors => Seeds {
            bytes: st_seeds(),
            text: vec![],
        },
        Format::IdxRaw | Format::IdxGz => Seeds {
            bytes: idx_seeds(),
            text: vec![],
        },
    }
}

fn mutant(f: Format, r: &mut Rng, s: &Seeds) -> Vec<u8> {
    // Now and then a large TOML mutation (huge arrays, deep nesting), kept under 1 MiB.
    let big = r.below(20) == 0;
    let b = match f {
        Format::RunSpec | Format::SweepSpec | Format::ModelToml => toml_mutant(r, &s.text, big),
        Format::Npy => npy_mutant(r, &s.bytes),
        Format::NpzStored => npz_mutant(r, &s.bytes, false),
        Format::NpzDeflated => npz_mutant(r, &s.bytes, true),
        Format::Safetensors => st_mutant(r, &s.bytes),
        Format::IdxRaw => idx_mutant(r, &s.bytes),
        Format::IdxGz => {
            if r.below(3) == 0 {
                let seed: &Vec<u8> = pick(r, &s.bytes);
                let mut b = gz(seed);
                mutate_bytes(r, &mut b, &[0, 2, 3, 10]);
                b
            } else {
                gz(&idx_mutant(r, &s.bytes))
            }
        }
    };
    if b.len() >= 1 << 20 {
        let mut b = b;
        b.truncate((1 << 20) - 1);
        b
    } else {
        b
    }
}

/// The files a case's reader may need beside the case: data for specs, a model and weights for
/// safetensors, labels for IDX images.
fn support_files(dir: &Path) {
    let x = NdArray::new(vec![6, 3], (0..18).map(|i| i as f64 / 9.0 - 1.0).collect()).unwrap();
    let y = NdArray::new(vec![6, 1], (0..6).map(|i| i as f64 / 3.0).collect()).unwrap();
    io::write_npy(&dir.join("x.npy"), &x).unwrap();
    io::write_npy(&dir.join("y.npy"), &y).unwrap();
    io::write_npz(&dir.join("d.npz"), &[("x", &x), ("y", &y)]).unwrap();
}

/// Whether `msg` names the file `path` or, for a spec that parsed, one of its keys.
fn names_file_or_key(msg: &str, path: &Path, keys: bool) -> bool {
    let p = path.display().to_string();
    if msg.contains(&p) {
        return true;
    }
    keys && ["seed", "model", "data", "train", "probes", "sweep"]
        .iter()
        .any(|k| msg.contains(k))
}

thread_local! {
    /// How the last case ended at library level, for the tally: `refused` (a clean error),
    /// `accepted`, and for specs `built` (validated, too large to train here) or `trained`.
    static OUTCOME: Cell<&'static str> = const { Cell::new("") };
}

fn outcome(o: &'static str) {
    OUTCOME.with(|c| c.set(o));
}

/// Calls the library's readers on the case at `path`. `Err` describes a failure of the reader:
/// an error message that names neither the file nor a key, or an inconsistent result.
fn library_check(f: Format, path: &Path, dir: &Path) -> Result<(), String> {
    outcome("accepted");
    let clean = |e: nequil::Error, keys: bool| -> Result<(), String> {
        outcome("refused");
        let m = e.to_string();
        if std::env::var_os("NEQUIL_FUZZ_SHOW").is_some() {
            println!("refused: {}", m.chars().take(300).collect::<String>());
        }
        if names_file_or_key(&m, path, keys) {
            Ok(())
        } else {
            Err(format!("error names neither the file nor a key: {m}"))
        }
    };
    let array_ok = |a: &NdArray| -> Result<(), String> {
        let n: Option<usize> = a.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if n == Some(a.data.len()) {
            Ok(())
        } else {
            Err(format!("shape {:?} but {} values", a.shape, a.data.len()))
        }
    };
    match f {
        Format::RunSpec => {
            let spec = match nequil::lab::spec::Spec::from_file(path) {
                Ok(s) => s,
                Err(e) => return clean(e, false),
            };
            let built = match spec.build(dir) {
                Ok(b) => b,
                Err(e) => return clean(e, true),
            };
            // Small enough to train a few steps: every instrument once or twice. (The work an
            // instrument is asked for, such as 10⁹ Hutchinson probes of a large model, is the
            // user's to ask for; it is not run here.)
            let cheap_hessian = spec
                .probes
                .hessian
                .as_ref()
                .is_none_or(|h| h.hutchinson <= 64 && h.lanczos_iter <= 200 && h.exact_max <= 4096);
            let small = built.model.n_params() <= 4000
                && built.config.eval_samples <= 4096
                && spec.data.n.unwrap_or(0) <= 4096
                && built.model.d_in() <= 512
                && cheap_hessian;
            drop(built);
            outcome("built");
            if small {
                outcome("trained");
                let mut s = spec.clone();
                s.train.steps = s.train.steps.min(6);
                if let Err(e) = nequil::lab::runner::run_spec(&s, dir, &mut [], &mut |_, _| {}) {
                    return clean(e, true);
                }
            }
            Ok(())
        }
        Format::SweepSpec => {
            let sweep = match nequil::lab::sweep::Sweep::from_file(path) {
                Ok(s) => s,
                Err(e) => return clean(e, false),
            };
            // Large grids are parsed only: preparing builds every run (minutes for 10⁵ runs).
            if sweep.len() > 64 {
                outcome("parsed (large grid)");
                return Ok(());
            }
            match sweep.prepare(dir, 1) {
                Ok(_) => {
                    outcome("built");
                    Ok(())
                }
                Err(e) => clean(e, true),
            }
        }
        Format::ModelToml => match nequil::lab::spec::load_model(path) {
            Ok(m) => {
                let _ = m.n_params();
                Ok(())
            }
            Err(e) => clean(e, false),
        },
        Format::Npy => match io::read_npy(path) {
            Ok(a) => array_ok(&a),
            Err(e) => clean(e, false),
        },
        Format::NpzStored | Format::NpzDeflated => match io::read_npz(path) {
            Ok(v) => v.iter().try_for_each(|(_, a)| array_ok(a)),
            Err(e) => clean(e, false),
        },
        Format::Safetensors => {
            match io::read_safetensors(path) {
                Ok(t) => {
                    outcome("read, not the model's weights");
                    for (name, (shape, data)) in &t {
                        let n: Option<usize> = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
                        if n != Some(data.len()) {
                            return Err(format!("tensor {name}: shape {shape:?} but {} values", data.len()));
                        }
                    }
                }
                Err(e) => return clean(e, false),
            }
            let model = nequil::core::models::Model::mlp(&[4, 3], nequil::core::models::Activation::Identity, true)
                .map_err(|e| e.to_string())?;
            let r = nequil::lab::io::load_weights(path, &model);
            if r.is_err() && OUTCOME.with(Cell::get) == "read, not the model's weights" {
                // Read fine, but another model's weights: refused by load_weights, as it should.
                return r
                    .map(|_| ())
                    .or_else(|e| clean(e, false))
                    .map(|()| outcome("read, not the model's weights"));
            }
            match r {
                Ok(theta) if theta.len() == model.n_params() => Ok(()),
                Ok(theta) => Err(format!("{} values for {} parameters", theta.len(), model.n_params())),
                Err(e) => clean(e, false),
            }
        }
        Format::IdxRaw | Format::IdxGz => {
            match io::read_idx(path) {
                Ok(a) => array_ok(&a)?,
                Err(e) => clean(e, false)?,
            }
            // The case as MNIST images (with valid labels) and as labels (with valid images).
            let gzs = if f == Format::IdxGz { ".gz" } else { "" };
            let bytes = std::fs::read(path).unwrap();
            let mnist = dir.join("mnist");
            for as_images in [true, false] {
                let _ = std::fs::remove_dir_all(&mnist);
                std::fs::create_dir_all(&mnist).unwrap();
                let (img, lbl) = (
                    mnist.join(format!("train-images-idx3-ubyte{gzs}")),
                    mnist.join(format!("train-labels-idx1-ubyte{gzs}")),
                );
                let (case, other) = if as_images { (&img, &lbl) } else { (&lbl, &img) };
                std::fs::write(case, &bytes).unwrap();
                std::fs::write(
                    other,
                    &valid_mnist()[usize::from(!as_images) * 2 + usize::from(!gzs.is_empty())],
                )
                .unwrap();
                match io::load_mnist(&mnist, true, Some(1000)) {
                    Ok((images, labels)) => {
                        array_ok(&images)?;
                        if images.shape[0] != labels.len() || labels.iter().any(|&l| l > 9) {
                            return Err(format!("MNIST: {:?} images, labels {labels:?}", images.shape));
                        }
                    }
                    Err(e) => {
                        let m = e.to_string();
                        if !m.contains(&case.display().to_string()) && !m.contains(&mnist.display().to_string()) {
                            return Err(format!("MNIST error names no file: {m}"));
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

/// Valid MNIST labels and images, raw and gzipped: `[labels, labels.gz, images, images.gz]`.
fn valid_mnist() -> &'static [Vec<u8>; 4] {
    static V: std::sync::OnceLock<[Vec<u8>; 4]> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let labels = idx_raw(0x08, &[5], &[0, 1, 2, 9, 7]);
        let images = idx_raw(0x08, &[5, 28, 28], &vec![3u8; 5 * 784]);
        [labels.clone(), gz(&labels), images.clone(), gz(&images)]
    })
}

// ---------------------------------------------------------------------------------------------
// Running cases.

/// The outcome of one case at library level.
fn run_library_case(f: Format, bytes: &[u8], dir: &Path) -> Result<(), String> {
    let path = dir.join(f.file());
    std::fs::write(&path, bytes).unwrap();
    QUIET.with(|q| q.set(true));
    let (r, peak) = measured(|| catch_unwind(AssertUnwindSafe(|| library_check(f, &path, dir))));
    QUIET.with(|q| q.set(false));
    let r = match r {
        Ok(r) => r,
        Err(_) => Err(format!(
            "panicked: {}",
            LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default()
        )),
    };
    r?;
    if peak > PEAK_LIMIT {
        return Err(format!(
            "allocated {:.1} MiB at its peak (limit {} MiB) for an input of {} bytes",
            peak as f64 / (1 << 20) as f64,
            PEAK_LIMIT >> 20,
            bytes.len()
        ));
    }
    Ok(())
}

/// Saves a failing input where a person can add it to the corpus; returns its path.
fn save_failure(f: Format, bytes: &[u8], tag: &str) -> PathBuf {
    let d = root().join("target/fuzz-failures").join(f.name());
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(format!("{tag}-{}", f.file()));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The committed corpus of a format, sorted by name.
fn corpus(f: Format) -> Vec<(String, Vec<u8>)> {
    let d = root().join("tests/fuzz-corpus").join(f.name());
    let mut out: Vec<(String, Vec<u8>)> = match std::fs::read_dir(&d) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().to_string(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect(),
        Err(_) => vec![],
    };
    out.sort();
    out
}

/// Replays the corpus, then runs the format's mutants until the case count or the time budget is
/// reached. Returns (corpus cases, new cases, failures).
fn fuzz_library(f: Format, s: &Settings) -> (usize, u64, Vec<String>) {
    install_panic_hook();
    let dir = scratch(f.name());
    support_files(&dir);
    let mut failures = vec![];
    let replay = corpus(f);
    for (name, bytes) in &replay {
        if let Err(e) = run_library_case(f, bytes, &dir) {
            failures.push(format!("corpus {}/{name}: {e}", f.name()));
        }
    }
    let sd = seeds(f);
    let mut r = Rng::derive(s.seed, f.name());
    let start = Instant::now();
    let mut n = 0u64;
    // The input of the case running now, for a person to find if the process dies on it.
    let current = root()
        .join("target/fuzz-failures")
        .join(format!("running-{}", f.name()));
    let _ = std::fs::create_dir_all(current.parent().unwrap());
    let mut slowest = (0.0f64, 0u64);
    let mut tally = std::collections::BTreeMap::new();
    while n < s.cases && start.elapsed().as_secs_f64() < s.seconds {
        let bytes = mutant(f, &mut r, &sd);
        let _ = std::fs::write(&current, &bytes);
        let t = Instant::now();
        let result = run_library_case(f, &bytes, &dir);
        *tally.entry(OUTCOME.with(Cell::get)).or_insert(0u64) += 1;
        if t.elapsed().as_secs_f64() > slowest.0 {
            slowest = (t.elapsed().as_secs_f64(), n);
        }
        if let Err(e) = result {
            let p = save_failure(f, &bytes, &format!("seed{}-case{n}", s.seed));
            failures.push(format!("{} case {n}: {e} (input saved to {})", f.name(), p.display()));
        }
        n += 1;
    }
    let _ = std::fs::remove_file(&current);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "fuzz {}: outcomes {tally:?}; slowest case {} took {:.2} s",
        f.name(),
        slowest.1,
        slowest.0
    );
    (replay.len(), n, failures)
}

fn fuzz_format(f: Format) {
    let s = settings();
    nequil::lab::resources::set_memory_limit(Some(PLAN_LIMIT));
    let t = Instant::now();
    let (replayed, n, failures) = fuzz_library(f, &s);
    println!(
        "fuzz {}: seed {} (NEQUIL_FUZZ_SEED), {replayed} corpus cases and {n} new cases in {:.1} s",
        f.name(),
        s.seed,
        t.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of the {} cases of {} failed (seed {}):\n{}",
        failures.len(),
        replayed as u64 + n,
        f.name(),
        s.seed,
        failures.join("\n")
    );
}

#[test]
fn fuzz_run_specs() {
    fuzz_format(Format::RunSpec);
}

#[test]
fn fuzz_sweep_specs() {
    fuzz_format(Format::SweepSpec);
}

#[test]
fn fuzz_model_toml() {
    fuzz_format(Format::ModelToml);
}

#[test]
fn fuzz_npy() {
    fuzz_format(Format::Npy);
}

#[test]
fn fuzz_npz_stored() {
    fuzz_format(Format::NpzStored);
}

#[test]
fn fuzz_npz_deflated() {
    fuzz_format(Format::NpzDeflated);
}

#[test]
fn fuzz_safetensors() {
    fuzz_format(Format::Safetensors);
}

#[test]
fn fuzz_idx() {
    fuzz_format(Format::IdxRaw);
}

#[test]
fn fuzz_idx_gz() {
    fuzz_format(Format::IdxGz);
}

// ---------------------------------------------------------------------------------------------
// Through the binary.

/// A tiny model, weights and data that fit each other, for `nequil equilibrium`.
fn equilibrium_files(dir: &Path) {
    std::fs::write(
        dir.join("model.toml"),
        "[model]\nkind = \"linear\"\nwidths = [3, 2, 1]\n",
    )
    .unwrap();
    let w0: Vec<f64> = vec![0.5, -0.2, 0.1, 0.3, 0.4, -0.6];
    let w1: Vec<f64> = vec![0.7, -0.3];
    io::write_safetensors(
        &dir.join("w.safetensors"),
        &[
            ("layers.0.weight".into(), vec![2, 3], w0.as_slice()),
            ("layers.1.weight".into(), vec![1, 2], w1.as_slice()),
        ],
        None,
    )
    .unwrap();
    support_files(dir);
}

/// The `nequil` command for a case of format `f` at `case`, writing into `out`.
fn cli_command(f: Format, case: &Path, dir: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nequil"));
    c.env("NEQUIL_MAX_MEMORY", "512M");
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
    ] {
        c.env_remove(v);
    }
    let eq = |c: &mut Command, model: &Path, weights: &Path| {
        c.arg("equilibrium")
            .arg("--model")
            .arg(model)
            .arg("--weights")
            .arg(weights);
        c.args(["--lr", "0.1", "--batch-size", "2", "--out"])
            .arg(out.join("r.safetensors"));
    };
    match f {
        Format::RunSpec => {
            c.arg("run").arg(case).arg("--out").arg(out).arg("--quiet");
        }
        Format::SweepSpec => {
            c.arg("sweep")
                .arg(case)
                .arg("--out")
                .arg(out)
                .args(["--quiet", "--jobs", "1"]);
        }
        Format::ModelToml => {
            eq(&mut c, case, &dir.join("w.safetensors"));
            c.arg("--x").arg(dir.join("x.npy")).arg("--y").arg(dir.join("y.npy"));
        }
        Format::Npy => {
            eq(&mut c, &dir.join("model.toml"), &dir.join("w.safetensors"));
            c.arg("--x").arg(case).arg("--y").arg(dir.join("y.npy"));
        }
        Format::NpzStored | Format::NpzDeflated => {
            eq(&mut c, &dir.join("model.toml"), &dir.join("w.safetensors"));
            c.arg("--npz").arg(case);
        }
        Format::Safetensors => {
            eq(&mut c, &dir.join("model.toml"), case);
            c.arg("--x").arg(dir.join("x.npy")).arg("--y").arg(dir.join("y.npy"));
        }
        Format::IdxRaw | Format::IdxGz => {
            c.args(["reproduce", "fig5-deep-linear", "--quiet", "--mnist"])
                .arg(dir.join("mnist"))
                .arg("--out")
                .arg(out);
        }
    }
    c
}

/// Runs one case through the binary (at most `limit`): exit 0, 1 with a run summary, or 2 with a
/// message naming the file and nothing written; never a signal. `Ok(true)` when it was stopped
/// at the limit (a valid input that runs long).
fn run_cli_case(f: Format, bytes: &[u8], dir: &Path, limit: Duration) -> Result<bool, String> {
    let case = dir.join(f.file());
    std::fs::write(&case, bytes).unwrap();
    if matches!(f, Format::IdxRaw | Format::IdxGz) {
        let gzs = if f == Format::IdxGz { ".gz" } else { "" };
        let m = dir.join("mnist");
        let _ = std::fs::remove_dir_all(&m);
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join(format!("train-images-idx3-ubyte{gzs}")), bytes).unwrap();
        let labels = idx_raw(0x08, &[5], &[0, 1, 2, 9, 7]);
        std::fs::write(
            m.join(format!("train-labels-idx1-ubyte{gzs}")),
            if gzs.is_empty() { labels } else { gz(&labels) },
        )
        .unwrap();
    }
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = cli_command(f, &case, dir, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err_pipe, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = reader.join().unwrap();
    let Some(status) = status else {
        return Ok(true);
    };
    match status.code() {
        Some(0) => Ok(false),
        Some(1) => {
            // A run (or a sweep's run) that failed or diverged: its summary says so.
            let summary = if f == Format::SweepSpec {
                std::fs::read_dir(out.join("runs")).ok().and_then(|rd| {
                    rd.flatten()
                        .map(|e| e.path().join("status.json"))
                        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| !t.contains("\"ok\"")))
                })
            } else if matches!(f, Format::IdxRaw | Format::IdxGz) {
                Some(out.join("report.html"))
            } else {
                Some(out.join("summary.json"))
            };
            match summary {
                Some(p) if p.exists() => Ok(false),
                _ => Err(format!("exit 1 without a record of the failure: {stderr}")),
            }
        }
        Some(2) => {
            if !names_file_or_key(&stderr, &case, true) && !stderr.contains(&dir.display().to_string()) {
                return Err(format!(
                    "exit 2 with a message that names neither the file nor a key: {stderr}"
                ));
            }
            if out.exists() {
                return Err(format!("exit 2 but {} was written: {stderr}", out.display()));
            }
            Ok(false)
        }
        code => Err(format!("ended with {code:?} ({status}): {stderr}")),
    }
}

/// A few cases of every format through the binary, and the issue's crash cases.
#[test]
fn fuzz_through_the_binary() {
    let s = settings();
    let t = Instant::now();
    let dir = scratch("cli");
    equilibrium_files(&dir);
    let mut failures = vec![];
    let (mut n, mut long) = (0, 0);
    for f in Format::ALL {
        // The corpus first (the crash cases among them), then new mutants.
        let mut cases: Vec<(String, Vec<u8>)> = corpus(f);
        let sd = seeds(f);
        let mut r = Rng::derive(s.seed, &format!("cli-{}", f.name()));
        for i in 0..s.cli_cases {
            cases.push((format!("case {i}"), mutant(f, &mut r, &sd)));
        }
        for (name, bytes) in cases {
            // MNIST that loads would run the whole experiment: only refused inputs go through.
            if matches!(f, Format::IdxRaw | Format::IdxGz) {
                let p = dir.join("probe").join(f.file());
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, &bytes).unwrap();
                if io::read_idx(&p).is_ok_and(|a| a.shape.len() == 3 && a.shape[1] * a.shape[2] == 784) {
                    continue;
                }
            }
            n += 1;
            match run_cli_case(f, &bytes, &dir, Duration::from_secs(3)) {
                Ok(true) => long += 1,
                Ok(false) => {}
                Err(e) => {
                    let p = save_failure(f, &bytes, &format!("cli-seed{}-{}", s.seed, name.replace(' ', "")));
                    failures.push(format!("{} {name}: {e} (input saved to {})", f.name(), p.display()));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "fuzz through the binary: seed {}, {n} cases ({long} valid ones stopped after 3 s) in {:.1} s",
        s.seed,
        t.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} binary cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
