//! Every file format the library writes, as types: the JSON files of runs and sweeps, and the one
//! CSV writer (the conventions below hold for the files of other crates built on it too).
//!
//! | file | type | written by |
//! |---|---|---|
//! | run `summary.json` | [`RunSummary`] | [`crate::lab::runner::write_run_dir`] |
//! | sweep run `status.json` | [`RunStatus`] | [`crate::lab::sweep`] |
//! | sweep run `params.json` | [`RunParams`] | [`crate::lab::sweep`] |
//! | `metrics.csv`, `runs.csv` | [`csv`], [`log_csv`] | runner, merge |
//!
//! Conventions shared by every JSON file:
//!
//! * numbers are `f64` written in the shortest form that reads back to the same bits; JSON has no
//!   NaN or infinity, so non-finite values are written as the strings `"NaN"`, `"inf"` and
//!   `"-inf"` (and read back from them);
//! * maps whose order matters (the final row of a log, the swept values of a run) keep the order
//!   in which they were written;
//! * reading is strict: [`read_json`] refuses unknown fields, and a missing or malformed field is
//!   an error naming the file and the field (`checks[2]: missing field `pass``). No field has a
//!   default.
//!
//! Every file is written atomically ([`write_json`]: a temporary name, then a rename).

use crate::lab::io::write_atomic;
use crate::train::Log;
use crate::{io_err, Error, Result};
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Reading and writing JSON.

/// Parses JSON text into `T`; an error names the field (`checks[2].pass: invalid type …`, or
/// `missing field `status`` at the top level).
pub fn parse_json<T: DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            inner.to_string()
        } else {
            format!("field `{path}`: {inner}")
        }
    })?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

/// Reads a JSON file into `T` ([`parse_json`]); errors name the file and the field.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err!("cannot read {}: {e}", path.display()))?;
    parse_json(&text).map_err(|m| io_err!("{}: {m}", path.display()))
}

/// JSON text of `v`, indented.
pub fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Numerical(format!("cannot serialize to JSON: {e}")))
}

/// Writes `v` as indented JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    write_atomic(path, to_json(v)?.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Numbers.

/// The text of a non-finite number in JSON files (`"NaN"`, `"inf"`, `"-inf"`).
fn non_finite_name(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

struct NumVisitor;

impl Visitor<'_> for NumVisitor {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, or one of \"NaN\", \"inf\", \"-inf\"")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<f64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<f64, E> {
        match v {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

/// An `f64` in a JSON file: a number, or `"NaN"`, `"inf"`, `"-inf"`.
#[derive(Clone, Copy, Debug)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_str(non_finite_name(self.0))
        }
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(NumVisitor).map(Num)
    }
}

/// `#[serde(with = "num")]` for an `f64` field ([`Num`]).
pub mod num {
    use super::Num;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    /// Serializes a number, non-finite values as strings.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        Num(*v).serialize(s)
    }
    /// Reads a number or one of the strings `"NaN"`, `"inf"`, `"-inf"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Num::deserialize(d).map(|n| n.0)
    }
}

/// `#[serde(with = "nums")]` for a `Vec<f64>` field ([`Num`] per element).
pub mod nums {
    use super::*;
    /// Serializes the numbers as a JSON array.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&Num(*x))?;
        }
        seq.end()
    }
    /// Reads a JSON array of numbers.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<f64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Vec<f64>, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(Num(x)) = a.next_element()? {
                    out.push(x);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// Reads an `Option` field that must be present (as `null` or a value): serde would otherwise
/// read a missing `Option` field as `None`.
fn required<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> std::result::Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// A JSON object whose key order is kept: `Vec<(key, value)>` written as `{key: value, …}`.
/// Reading refuses a key given twice.
fn ser_ordered<S: Serializer, V: Serialize>(v: &[(String, V)], s: S) -> std::result::Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(v.len()))?;
    for (k, x) in v {
        m.serialize_entry(k, x)?;
    }
    m.end()
}

fn de_ordered<'de, D: Deserializer<'de>, V: Deserialize<'de>>(d: D) -> std::result::Result<Vec<(String, V)>, D::Error> {
    struct Ordered<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Ordered<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> std::result::Result<Self::Value, A::Error> {
            let mut out: Vec<(String, V)> = Vec::new();
            while let Some((k, v)) = a.next_entry::<String, V>()? {
                if out.iter().any(|(q, _)| *q == k) {
                    return Err(de::Error::custom(format!("key `{k}` given twice")));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(Ordered(std::marker::PhantomData))
}

/// `#[serde(with = "ordered_nums")]`: an ordered object of numbers ([`Num`]).
mod ordered_nums {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[(String, f64)], s: S) -> std::result::Result<S::Ok, S::Error> {
        let w: Vec<(String, Num)> = v.iter().map(|(k, x)| (k.clone(), Num(*x))).collect();
        ser_ordered(&w, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<(String, f64)>, D::Error> {
        de_ordered::<D, Num>(d).map(|v| v.into_iter().map(|(k, n)| (k, n.0)).collect())
    }
}

/// `#[serde(with = "ordered_values")]`: an ordered object of arbitrary JSON values.
mod ordered_values {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[(String, serde_json::Value)], s: S) -> std::result::Result<S::Ok, S::Error> {
        ser_ordered(v, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Vec<(String, serde_json::Value)>, D::Error> {
        de_ordered(d)
    }
}

/// Bitwise equality of two number slices (NaN equals NaN): what "the same result" means for
/// files that may hold NaN.
fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

// ---------------------------------------------------------------------------------------------
// A run's summary.json.

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Every step was done.
    Ok,
    /// A loss or parameter became non-finite; the log up to that step is kept.
    Diverged,
    /// An instrument failed (the log up to its last complete row is kept), or any other error.
    Failed,
}

impl RunState {
    /// The name used in files (`ok`, `diverged`, `failed`).
    pub fn name(self) -> &'static str {
        match self {
            RunState::Ok => "ok",
            RunState::Diverged => "diverged",
            RunState::Failed => "failed",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a run diverged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Divergence {
    /// The number of updates applied when the non-finite value was found.
    pub step: u64,
    /// What was non-finite (`batch loss is NaN`, `a parameter became non-finite`).
    pub what: String,
}

/// Where and how an instrument failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeFailure {
    /// The instrument, by its spec key (`probes.hessian.top_eigen`).
    pub probe: String,
    /// The number of updates applied when it failed (the log's rows stop before this step).
    pub step: u64,
    /// Its error message.
    pub error: String,
}

/// Why a run stopped early.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunError {
    /// `{"step": …, "what": …}`: training diverged.
    Diverged(Divergence),
    /// `{"probe": …, "step": …, "error": …}`: an instrument failed (status `failed`).
    Probe(ProbeFailure),
    /// The error message of any other failure.
    Failed(String),
}

/// One parameter block of the model: its PyTorch name and shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamBlock {
    /// State-dict name, e.g. `layers.0.weight`.
    pub name: String,
    /// Shape, `[out, in]` for weights, `[out]` for biases.
    pub shape: Vec<usize>,
}

/// `summary.json` of a run directory (`nequil run`, and every run of a sweep).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSummary {
    /// How the run ended.
    pub status: RunState,
    /// `null` when ok; otherwise where it diverged or the error message.
    #[serde(deserialize_with = "required")]
    pub error: Option<RunError>,
    /// Updates completed.
    pub steps_done: u64,
    /// The model, described in words (`linear [10, 20, 10]`).
    pub model: String,
    /// Number of parameters P.
    pub n_params: usize,
    /// The parameter blocks in layout order (the flat θ is their concatenation).
    pub parameters: Vec<ParamBlock>,
    /// Size of the evaluation set behind the `loss` column (the training set for fixed data, a
    /// fixed-seed population sample for online data).
    pub eval_samples: usize,
    /// The last row of the log: column name → value, in log order (units as in `metrics.csv`:
    /// `t = Σ η`, losses per sample without the weight-decay term, `norm2.*` squared norms).
    /// Empty if no row was recorded.
    #[serde(rename = "final", with = "ordered_nums")]
    pub final_row: Vec<(String, f64)>,
    /// The conventions behind the numbers, in words.
    pub conventions: String,
}

impl RunSummary {
    /// The conventions every run states.
    pub const CONVENTIONS: &'static str = "per-sample loss ||f(x)-y||^2 (no 1/2), batch mean; weight decay gamma*||theta||^2 in the loss; t = sum of learning rates";

    /// Whether two summaries hold the same result (numbers compared bit for bit, NaN included).
    pub fn same_as(&self, other: &RunSummary) -> bool {
        let (ka, va): (Vec<&String>, Vec<f64>) = self.final_row.iter().map(|(k, v)| (k, *v)).unzip();
        let (kb, vb): (Vec<&String>, Vec<f64>) = other.final_row.iter().map(|(k, v)| (k, *v)).unzip();
        self.status == other.status
            && self.error == other.error
            && self.steps_done == other.steps_done
            && self.model == other.model
            && self.n_params == other.n_params
            && self.parameters == other.parameters
            && self.eval_samples == other.eval_samples
            && ka == kb
            && same_bits(&va, &vb)
            && self.conventions == other.conventions
    }
}

impl PartialEq for RunSummary {
    fn eq(&self, other: &Self) -> bool {
        self.same_as(other)
    }
}

// ---------------------------------------------------------------------------------------------
// A sweep run's status.json and params.json.

/// `status.json` of a sweep run: written last, so its presence marks the run finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStatus {
    /// How the run ended.
    pub status: RunState,
    /// The error message; `null` when ok.
    #[serde(deserialize_with = "required")]
    pub error: Option<String>,
    /// Wall-clock seconds the run took (informational, not a result).
    #[serde(with = "num")]
    pub seconds: f64,
}

impl RunStatus {
    /// Whether the run finished without error.
    pub fn is_ok(&self) -> bool {
        self.status == RunState::Ok
    }
}

/// `params.json` of a sweep run: written when it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// The run's id and directory name (`run-0003`).
    pub id: String,
    /// Its 0-based position in the grid.
    pub index: usize,
    /// The swept keys (dotted paths into the spec) and this run's values, in the sweep's axis
    /// order; values as in the spec (TOML values as JSON).
    #[serde(with = "ordered_values")]
    pub params: Vec<(String, serde_json::Value)>,
}

// ---------------------------------------------------------------------------------------------
// CSV.

/// One cell of a CSV file.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// A number ([`csv_number`]).
    Num(f64),
    /// Text, quoted when it holds a comma, a quote or a line break.
    Text(String),
}

impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Num(v)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}

/// A number in a CSV cell: integral values (steps, counts) without a fraction, others in the
/// shortest form that reads back to the same `f64` bits (`-0` keeps its sign); non-finite values
/// as `nan`, `inf`, `-inf`.
pub fn csv_number(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if v == 0.0 && v.is_sign_negative() {
        "-0".into()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:?}")
    }
}

/// A text cell: quoted (with doubled quotes) when it holds a comma, a quote or a line break.
pub fn csv_text(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The one CSV writer: a header line, then one line per row (`\n` line ends). Every CSV file the
/// project writes goes through it.
pub fn csv(header: &[String], rows: &[Vec<Cell>]) -> String {
    let mut s = String::new();
    let line = |s: &mut String, cells: &mut dyn Iterator<Item = String>| {
        let mut first = true;
        for c in cells {
            if !first {
                s.push(',');
            }
            first = false;
            s.push_str(&c);
        }
        s.push('\n');
    };
    line(&mut s, &mut header.iter().map(|h| csv_text(h)));
    for r in rows {
        line(
            &mut s,
            &mut r.iter().map(|c| match c {
                Cell::Num(v) => csv_number(*v),
                Cell::Text(t) => csv_text(t),
            }),
        );
    }
    s
}

/// A training log as CSV (`metrics.csv`, experiment logs): its columns, one line per row.
pub fn log_csv(log: &Log) -> String {
    let rows: Vec<Vec<Cell>> = log
        .rows
        .iter()
        .map(|r| r.iter().map(|v| Cell::Num(*v)).collect())
        .collect();
    csv(&log.columns, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_numbers_round_trip_and_text_is_quoted() {
        let log = Log {
            columns: vec!["a".into(), "b,c".into()],
            rows: vec![vec![1.0, 0.1 + 0.2], vec![f64::NAN, -3.5e-300], vec![-0.0, 1e300]],
        };
        let text = log_csv(&log);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "a,\"b,c\"");
        assert_eq!(lines[1], "1,0.30000000000000004");
        assert!(lines[2].starts_with("nan,"));
        for (line, row) in lines[1..].iter().zip(&log.rows) {
            for (cell, v) in line.split(',').zip(row) {
                let back: f64 = cell.parse().unwrap();
                assert!(
                    back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()),
                    "{cell} vs {v}"
                );
            }
        }
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn non_finite_numbers_round_trip_in_json() {
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Values {
            #[serde(with = "nums")]
            x: Vec<f64>,
            #[serde(with = "num")]
            y: f64,
        }
        let v = vec![1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e-310];
        for y in v.iter().copied() {
            let s = Values { x: v.clone(), y };
            let back: Values = parse_json(&serde_json::to_string(&s).unwrap()).unwrap();
            assert!(same_bits(&back.x, &v) && same_bits(&[back.y], &[y]));
        }
        let e = parse_json::<Values>(r#"{"x":["nan"],"y":0}"#).unwrap_err();
        assert!(e.contains("x[0]"), "{e}");
    }
}
