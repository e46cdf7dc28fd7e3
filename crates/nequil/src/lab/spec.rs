//! Run specifications: the TOML schema of `nequil run`, its validation, and how it builds the
//! model, the data and the training configuration.
//!
//! Every key is documented in the README ("Spec schema"). Unknown keys and wrong types are
//! rejected by the parser with the key's name and position; impossible values (a zero width, a
//! batch larger than the fixed dataset, a negative learning rate) by [`Spec::build`], with the key's
//! dotted name. Nothing is written before a spec has been fully built.

use crate::core::data::{Cov, Dataset, Gaussian, Source, Target};
use crate::core::linalg::Dense;
use crate::core::models::{Activation, Init, Model, ScaleKind};
use crate::core::rng::Rng;
use crate::lab::io::{read_npy, read_npz, NdArray};
use crate::train::{Batching, LrSchedule, Schedule, TrainConfig};
use crate::{invalid, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod instruments;
pub use instruments::{ChargesSpec, HessianSpec, TwoLayerSpec, MAX_CHARGE_ENTRIES};

/// A complete run specification (the TOML file).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Seed of everything random in the run (initialization, data, batches, evaluation sample).
    #[serde(default)]
    pub seed: u64,
    /// The model.
    pub model: ModelSpec,
    /// The data.
    pub data: DataSpec,
    /// Optimizer and schedule.
    pub train: TrainSpec,
    /// Instruments.
    #[serde(default)]
    pub probes: ProbeSpec,
}

/// `[model]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `"linear"` (deep linear chain, no biases), `"mlp"`, `"net-a"` or `"net-b"`.
    pub kind: String,
    /// Widths `[d_in, h_1, …, d_out]` (Net-A/Net-B: exactly three).
    pub widths: Vec<usize>,
    /// MLP hidden activation: `"identity"`, `"tanh"`, `"relu"`, `"leaky-relu"`, `"swish"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
    /// Slope of leaky ReLU for negative inputs (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaky_slope: Option<f64>,
    /// MLP biases (default false).
    #[serde(default)]
    pub bias: bool,
    /// `"kaiming"` (N(0, 1/fan_in), default), `"xavier"` (N(0, 2/(fan_in+fan_out))) or `"std"`.
    #[serde(default = "default_init")]
    pub init: String,
    /// With `init = "std"`: one standard deviation per weight matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<Vec<f64>>,
}

fn default_init() -> String {
    "kaiming".into()
}

impl ModelSpec {
    /// Builds and validates the model alone (kind, widths, activation, biases), with errors naming
    /// the `model.*` key. The initialization keys are checked by [`ModelSpec::init_scheme`].
    pub fn build_model(&self) -> Result<Model> {
        let m = self;
        one_of("model.kind", &m.kind, &["linear", "mlp", "net-a", "net-b"])?;
        if let Some(i) = m.widths.iter().position(|&w| w == 0) {
            return Err(invalid!("model.widths[{i}]: widths must be positive"));
        }
        Ok(match m.kind.as_str() {
            "linear" => {
                if m.bias || m.activation.as_deref().is_some_and(|a| a != "identity") {
                    return Err(invalid!(
                        "model.kind: \"linear\" has no activation and no biases (use kind = \"mlp\")"
                    ));
                }
                Model::linear(&m.widths)?
            }
            "mlp" => {
                let a = m.activation.as_deref().unwrap_or("relu");
                one_of(
                    "model.activation",
                    a,
                    &["identity", "tanh", "relu", "leaky-relu", "swish"],
                )?;
                let act = match a {
                    "identity" => Activation::Identity,
                    "tanh" => Activation::Tanh,
                    "relu" => Activation::Relu,
                    "leaky-relu" => Activation::LeakyRelu(m.leaky_slope.unwrap_or(0.01)),
                    _ => Activation::Swish,
                };
                if m.leaky_slope.is_some() && a != "leaky-relu" {
                    return Err(invalid!(
                        "model.leaky_slope: only meaningful with activation = \"leaky-relu\""
                    ));
                }
                Model::mlp(&m.widths, act, m.bias)?
            }
            k => {
                if m.widths.len() != 3 {
                    return Err(invalid!(
                        "model.widths: {k} needs exactly [d_in, hidden, d_out], got {:?}",
                        m.widths
                    ));
                }
                if m.bias || m.activation.is_some() {
                    return Err(invalid!("model: {k} has a fixed tanh activation and no biases"));
                }
                let kind = if k == "net-a" { ScaleKind::NetA } else { ScaleKind::NetB };
                Model::scale_net(kind, m.widths[0], m.widths[1], m.widths[2])?
            }
        })
    }

    /// The initialization scheme of `model.init` / `model.init_std`, validated.
    pub fn init_scheme(&self) -> Result<Init> {
        let m = self;
        one_of("model.init", &m.init, &["kaiming", "xavier", "std"])?;
        let init = match m.init.as_str() {
            "kaiming" => Init::Kaiming,
            "xavier" => Init::Xavier,
            _ => Init::Std(
                m.init_std
                    .clone()
                    .ok_or_else(|| invalid!("model.init_std: required with init = \"std\""))?,
            ),
        };
        if m.init != "std" && m.init_std.is_some() {
            return Err(invalid!("model.init_std: only meaningful with init = \"std\""));
        }
        Ok(init)
    }
}

/// A file holding nothing but a `[model]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    model: ModelSpec,
}

/// The `[model]` table of a TOML text that is either a complete run spec (its other tables are
/// parsed and checked too, but only `[model]` is returned) or a file with nothing but a `[model]`
/// table. Unknown keys and wrong types are errors naming the key; build the model with
/// [`ModelSpec::build_model`].
pub fn model_spec_from_toml(text: &str) -> Result<ModelSpec> {
    let table: toml::Table = toml::from_str(text).map_err(|e| invalid!("{}", e.to_string().trim_end()))?;
    if !table.contains_key("model") {
        return Err(invalid!(
            "no [model] table (give a run spec, or a file with a [model] table such as kind = \"mlp\", widths = [8, 32, 1])"
        ));
    }
    if table.keys().all(|k| k == "model") {
        toml::from_str::<ModelFile>(text)
            .map(|f| f.model)
            .map_err(|e| invalid!("{}", e.to_string().trim_end()))
    } else {
        Spec::from_toml(text).map(|s| s.model)
    }
}

/// Reads [`model_spec_from_toml`] from a file; errors name the file.
pub fn load_model_spec(path: &Path) -> Result<ModelSpec> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("cannot read model file {}: {e}", path.display())))?;
    model_spec_from_toml(&text).map_err(|e| match e {
        Error::Invalid(m) => invalid!("model file {}: {m}", path.display()),
        e => e,
    })
}

/// Reads the model description of `path` ([`load_model_spec`]) and builds the model
/// ([`ModelSpec::build_model`]); every error names the file and the key.
pub fn load_model(path: &Path) -> Result<Model> {
    load_model_spec(path)?.build_model().map_err(|e| match e {
        Error::Invalid(m) => invalid!("model file {}: {m}", path.display()),
        e => e,
    })
}

/// A covariance in a spec: exactly one of the keys.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum CovSpec {
    /// `{ scalar = s }`: `s·I`.
    Scalar(f64),
    /// `{ diag = [..] }`.
    Diag(Vec<f64>),
    /// `{ phi = φ }`: `diag(φ·I_{d/2}, (2 − φ)·I_{d − d/2})` (the paper's Fig. 3).
    Phi(f64),
    /// `{ blocks = [[size, variance], …] }`.
    Blocks(Vec<(usize, f64)>),
    /// `{ full = [[..], ..] }`: a symmetric positive-definite matrix.
    Full(Vec<Vec<f64>>),
}

impl CovSpec {
    fn build(&self, d: usize, key: &str) -> Result<Cov> {
        Ok(match self {
            CovSpec::Scalar(s) => Cov::Scalar(*s),
            CovSpec::Diag(v) => Cov::Diag(v.clone()),
            CovSpec::Phi(p) => {
                if !(p.is_finite() && *p >= 0.0 && *p <= 2.0) {
                    return Err(invalid!("{key}.phi: must lie in [0, 2], got {p}"));
                }
                Cov::phi(d, *p)
            }
            CovSpec::Blocks(b) => Cov::Blocks(b.clone()),
            CovSpec::Full(rows) => Cov::Full(matrix(rows, key)?),
        })
    }
}

fn matrix(rows: &[Vec<f64>], key: &str) -> Result<Dense> {
    let r = rows.len();
    let c = rows.first().map_or(0, |x| x.len());
    if rows.iter().any(|x| x.len() != c) || r == 0 || c == 0 {
        return Err(invalid!("{key}: rows must be non-empty and of equal length"));
    }
    Ok(Dense::from_slice(r, c, &rows.concat()))
}

/// `[data]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// `"gaussian"` (default) or `"npy"` (arrays from files).
    #[serde(default = "default_source")]
    pub source: String,
    /// `"online"` (fresh samples every step; default) or `"fixed"` (N samples drawn once).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Dataset size N for `mode = "fixed"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Fixed data: draw batches with replacement (default true) or by reshuffled passes.
    #[serde(default = "default_true")]
    pub replacement: bool,
    /// Input second moment Σ_x (default `{ scalar = 1.0 }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_cov: Option<CovSpec>,
    /// `"identity"` (default), `"linear"` or `"tanh-teacher"`.
    #[serde(default = "default_target")]
    pub target: String,
    /// Linear teacher `V` (`d_y × d_x`); random `N(0, 1/d_x)` from the seed if omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<Vec<Vec<f64>>>,
    /// Hidden width of the tanh teacher (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_hidden: Option<usize>,
    /// Label-noise second moment Σ_ε; omitted means noiseless labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_cov: Option<CovSpec>,
    /// `source = "npy"`: path of the inputs (`.npy`, `n × d_in`), relative to the spec file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_path: Option<PathBuf>,
    /// `source = "npy"`: path of the targets (`.npy`, `n × d_out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_path: Option<PathBuf>,
    /// `source = "npy"`: an `.npz` archive holding both, instead of `x_path`/`y_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npz_path: Option<PathBuf>,
    /// Key of the inputs in the archive (default `"x"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_key: Option<String>,
    /// Key of the targets in the archive (default `"y"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y_key: Option<String>,
}

fn default_source() -> String {
    "gaussian".into()
}
fn default_mode() -> String {
    "online".into()
}
fn default_target() -> String {
    "identity".into()
}
fn default_true() -> bool {
    true
}

/// `[train]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// `"sgd"` (default) or `"gd"` (full batch, fixed data only).
    #[serde(default = "default_opt")]
    pub optimizer: String,
    /// SGD batch size S (default 1).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Number of updates.
    pub steps: u64,
    /// Learning rate η (constant and linear-warmup schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// `"constant"` (default), `"linear-warmup"` or `"piecewise"`.
    #[serde(default = "default_sched")]
    pub schedule: String,
    /// Length of the linear warmup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<u64>,
    /// Piecewise: steps at which η changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundaries: Option<Vec<u64>>,
    /// Piecewise: the rates (one more than boundaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    /// Weight decay γ; the loss carries `γ‖θ‖²` (default 0).
    #[serde(default)]
    pub weight_decay: f64,
}

fn default_opt() -> String {
    "sgd".into()
}
fn default_batch() -> usize {
    1
}
fn default_sched() -> String {
    "constant".into()
}

/// `[probes]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Record every k steps (exclusive with `log_points`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Record at about this many log-spaced steps (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_points: Option<usize>,
    /// Size of the fixed-seed population sample used for the `loss` column with online data
    /// (default 2048).
    #[serde(default = "default_eval")]
    pub eval_samples: usize,
    /// `[probes.charges]`: Noether charges of catalog symmetries, their noise imbalance, drift and
    /// predicted equilibrium ([`ChargesSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charges: Option<ChargesSpec>,
    /// `[probes.hessian]`: Hessian trace, top eigenvalue and stability margin ([`HessianSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hessian: Option<HessianSpec>,
    /// `[probes.sharpness]`: the paper's sharpness of a two-layer linear net ([`TwoLayerSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharpness: Option<TwoLayerSpec>,
    /// `[probes.equilibrium]`: distance of a two-layer linear net to its predicted noise
    /// equilibrium ([`TwoLayerSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equilibrium: Option<TwoLayerSpec>,
}

fn default_eval() -> usize {
    2048
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            every: None,
            log_points: None,
            eval_samples: default_eval(),
            charges: None,
            hessian: None,
            sharpness: None,
            equilibrium: None,
        }
    }
}

/// Everything a spec builds.
#[derive(Clone, Debug)]
pub struct Built {
    /// The model.
    pub model: Model,
    /// The data source.
    pub source: Source,
    /// Initial parameters.
    pub theta0: Vec<f64>,
    /// Training configuration.
    pub config: TrainConfig,
}

fn one_of(key: &str, v: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(invalid!(
            "{key}: unknown value \"{v}\", expected one of {}",
            allowed.join(", ")
        ))
    }
}

impl Spec {
    /// Parses TOML text. Unknown keys and type errors are reported with the key and line.
    pub fn from_toml(text: &str) -> Result<Spec> {
        toml::from_str(text).map_err(|e| invalid!("spec: {}", e.to_string().trim_end()))
    }

    /// Reads and parses a spec file.
    pub fn from_file(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("cannot read spec {}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    /// The spec with every default filled in, as TOML.
    pub fn resolved_toml(&self) -> String {
        let mut s = self.clone();
        if s.data.source == "gaussian" && s.data.x_cov.is_none() {
            s.data.x_cov = Some(CovSpec::Scalar(1.0));
        }
        if s.probes.every.is_none() && s.probes.log_points.is_none() {
            s.probes.log_points = Some(200);
        }
        if s.model.kind == "mlp" && s.model.activation.is_none() {
            s.model.activation = Some("relu".into());
        }
        toml::to_string(&s).expect("spec serializes")
    }

    /// Builds and validates the model, data, initial θ and training configuration, and checks the
    /// instrument tables against them (build the probes with [`Spec::probes`]). Relative data
    /// paths are resolved against `base` (the spec file's directory).
    pub fn build(&self, base: &Path) -> Result<Built> {
        let model = self.model.build_model()?;
        let init = self.model.init_scheme()?;
        let theta0 = model.init(&init, &mut Rng::derive(self.seed, "init"))?;
        let source = self.data.build(model.d_in(), model.d_out(), self.seed, base)?;
        let config = self.train_config(&source)?;
        instruments::validate(&self.probes, &model, &source, self.seed)?;
        Ok(Built {
            model,
            source,
            theta0,
            config,
        })
    }

    fn train_config(&self, source: &Source) -> Result<TrainConfig> {
        let t = &self.train;
        one_of("train.optimizer", &t.optimizer, &["sgd", "gd"])?;
        one_of(
            "train.schedule",
            &t.schedule,
            &["constant", "linear-warmup", "piecewise"],
        )?;
        let batching = if t.optimizer == "gd" {
            Batching::Full
        } else {
            Batching::Sgd(t.batch_size)
        };
        if t.batch_size == 0 {
            return Err(invalid!("train.batch_size: must be ≥ 1"));
        }
        if let (Batching::Sgd(s), Source::Fixed { data, .. }) = (batching, source) {
            if s > data.n {
                return Err(invalid!(
                    "train.batch_size: {s} is larger than the fixed dataset (data.n = {})",
                    data.n
                ));
            }
        }
        if t.optimizer == "gd" && matches!(source, Source::Online(_)) {
            return Err(invalid!(
                "train.optimizer: \"gd\" needs a fixed dataset (data.mode = \"fixed\")"
            ));
        }
        let need_lr = || {
            t.lr.ok_or_else(|| invalid!("train.lr: required with schedule = \"{}\"", t.schedule))
        };
        let lr = match t.schedule.as_str() {
            "constant" => LrSchedule::Constant(need_lr()?),
            "linear-warmup" => LrSchedule::LinearWarmup {
                warmup_steps: t
                    .warmup_steps
                    .ok_or_else(|| invalid!("train.warmup_steps: required with schedule = \"linear-warmup\""))?,
                lr: need_lr()?,
            },
            _ => {
                if t.lr.is_some() {
                    return Err(invalid!(
                        "train.lr: not used with schedule = \"piecewise\" (give train.values)"
                    ));
                }
                LrSchedule::Piecewise {
                    boundaries: t
                        .boundaries
                        .clone()
                        .ok_or_else(|| invalid!("train.boundaries: required with schedule = \"piecewise\""))?,
                    values: t
                        .values
                        .clone()
                        .ok_or_else(|| invalid!("train.values: required with schedule = \"piecewise\""))?,
                }
            }
        };
        if t.schedule != "linear-warmup" && t.warmup_steps.is_some() {
            return Err(invalid!(
                "train.warmup_steps: only meaningful with schedule = \"linear-warmup\""
            ));
        }
        if t.schedule != "piecewise" && (t.boundaries.is_some() || t.values.is_some()) {
            return Err(invalid!(
                "train.boundaries/values: only meaningful with schedule = \"piecewise\""
            ));
        }
        lr.validate()?;
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(invalid!(
                "train.weight_decay: must be finite and ≥ 0, got {}",
                t.weight_decay
            ));
        }
        let p = &self.probes;
        let schedule = match (p.every, p.log_points) {
            (Some(_), Some(_)) => return Err(invalid!("probes: give either `every` or `log_points`, not both")),
            (Some(0), _) => return Err(invalid!("probes.every: must be ≥ 1")),
            (Some(k), None) => Schedule::Every(k),
            (None, Some(n)) if n < 2 => return Err(invalid!("probes.log_points: must be ≥ 2")),
            (None, Some(n)) => Schedule::LogSpaced(n),
            (None, None) => Schedule::LogSpaced(200),
        };
        if p.eval_samples == 0 {
            return Err(invalid!("probes.eval_samples: must be ≥ 1"));
        }
        Ok(TrainConfig {
            steps: t.steps,
            batching,
            lr,
            weight_decay: t.weight_decay,
            schedule,
            eval_samples: p.eval_samples,
            seed: self.seed,
        })
    }
}

impl DataSpec {
    fn build(&self, d_x: usize, d_y: usize, seed: u64, base: &Path) -> Result<Source> {
        one_of("data.source", &self.source, &["gaussian", "npy"])?;
        one_of("data.mode", &self.mode, &["online", "fixed"])?;
        if self.source == "npy" {
            return self.build_npy(d_x, d_y, base);
        }
        for (k, present) in [
            ("x_path", self.x_path.is_some()),
            ("y_path", self.y_path.is_some()),
            ("npz_path", self.npz_path.is_some()),
        ] {
            if present {
                return Err(invalid!("data.{k}: only meaningful with source = \"npy\""));
            }
        }
        one_of("data.target", &self.target, &["identity", "linear", "tanh-teacher"])?;
        let x_cov = self
            .x_cov
            .clone()
            .unwrap_or(CovSpec::Scalar(1.0))
            .build(d_x, "data.x_cov")?;
        let noise = match &self.noise_cov {
            Some(c) => Some(c.build(d_y, "data.noise_cov")?),
            None => None,
        };
        let mut trng = Rng::derive(seed, "teacher");
        let target = match self.target.as_str() {
            "identity" => Target::Identity,
            "linear" => match &self.teacher {
                Some(rows) => Target::Linear(matrix(rows, "data.teacher")?),
                None => Target::random_linear(d_x, d_y, &mut trng),
            },
            _ => {
                let h = self.teacher_hidden.unwrap_or(32);
                if h == 0 {
                    return Err(invalid!("data.teacher_hidden: must be ≥ 1"));
                }
                Target::random_tanh(d_x, h, d_y, &mut trng)
            }
        };
        if self.teacher.is_some() && self.target != "linear" {
            return Err(invalid!("data.teacher: only meaningful with target = \"linear\""));
        }
        let mut g = Gaussian::new(d_x, d_y, x_cov, target, noise)?;
        match self.mode.as_str() {
            "online" => {
                if self.n.is_some() {
                    return Err(invalid!("data.n: only meaningful with mode = \"fixed\""));
                }
                Ok(Source::Online(g))
            }
            _ => {
                let n = self
                    .n
                    .ok_or_else(|| invalid!("data.n: required with mode = \"fixed\""))?;
                if n == 0 {
                    return Err(invalid!("data.n: must be ≥ 1"));
                }
                let data = g.dataset(&mut Rng::derive(seed, "dataset"), n);
                Ok(Source::Fixed {
                    data,
                    replacement: self.replacement,
                    dist: Some(g),
                })
            }
        }
    }

    fn build_npy(&self, d_x: usize, d_y: usize, base: &Path) -> Result<Source> {
        if self.mode != "fixed" {
            return Err(invalid!(
                "data.mode: arrays from files are a fixed dataset (set mode = \"fixed\")"
            ));
        }
        let (x, y) = match (&self.npz_path, &self.x_path, &self.y_path) {
            (Some(p), None, None) => {
                let arrays = read_npz(&base.join(p))?;
                let get = |k: &str| {
                    arrays
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, a)| a.clone())
                        .ok_or_else(|| invalid!("data.npz_path: archive {} has no array `{k}`", p.display()))
                };
                (
                    get(self.x_key.as_deref().unwrap_or("x"))?,
                    get(self.y_key.as_deref().unwrap_or("y"))?,
                )
            }
            (None, Some(xp), Some(yp)) => (read_npy(&base.join(xp))?, read_npy(&base.join(yp))?),
            _ => {
                return Err(invalid!(
                    "data: with source = \"npy\" give either npz_path, or both x_path and y_path"
                ))
            }
        };
        let data = dataset_from_arrays(&x, &y, d_x, d_y)?;
        if let Some(n) = self.n {
            if n != data.n {
                return Err(invalid!("data.n: {n} given, the arrays hold {} samples", data.n));
            }
        }
        Ok(Source::Fixed {
            data,
            replacement: self.replacement,
            dist: None,
        })
    }
}

/// A dataset from arrays `x` (`n × d_x`, or `n × …` flattened) and `y` (`n × d_y`, or a vector of
/// `n` values when `d_y = 1`), with clear errors for shape mismatches and non-finite values.
pub fn dataset_from_arrays(x: &NdArray, y: &NdArray, d_x: usize, d_y: usize) -> Result<Dataset> {
    let n = *x
        .shape
        .first()
        .ok_or_else(|| invalid!("data: the input array is 0-dimensional"))?;
    let fx: usize = x.shape[1..].iter().product();
    if fx != d_x {
        return Err(invalid!(
            "data: inputs have shape {:?}, the model expects {d_x} features per sample",
            x.shape
        ));
    }
    let ny = *y
        .shape
        .first()
        .ok_or_else(|| invalid!("data: the target array is 0-dimensional"))?;
    let fy: usize = y.shape[1..].iter().product();
    if ny != n || fy != d_y {
        return Err(invalid!(
            "data: targets have shape {:?}, expected [{n}, {d_y}]",
            y.shape
        ));
    }
    if let Some(i) = crate::lab::io::has_non_finite(x) {
        return Err(invalid!(
            "data: input array has a non-finite value at sample {}",
            i / d_x.max(1)
        ));
    }
    if let Some(i) = crate::lab::io::has_non_finite(y) {
        return Err(invalid!(
            "data: target array has a non-finite value at sample {}",
            i / d_y.max(1)
        ));
    }
    Dataset::new(n, d_x, d_y, x.data.clone(), y.data.clone())
}
