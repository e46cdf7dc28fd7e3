//! Run specifications: the TOML schema of `nequil run`, its validation, and how it builds the
//! model, the data and the training configuration.
//!
//! Every key is documented in the README ("Spec schema"). Unknown keys and wrong types are
//! rejected by the parser with the key's name and position; impossible values (a zero width, a
//! batch larger than the fixed dataset, a negative learning rate) by [`Spec::build`], with the key's
//! dotted name. Nothing is written before a spec has been fully built.

use crate::core::data::{Cov, Dataset, Gaussian, Source, Target};
pub use crate::core::layers::{KernelSpec, LayerConfig};
use crate::core::linalg::Dense;
use crate::core::models::{Activation, Init, Model, ScaleKind};
use crate::core::rng::Rng;
use crate::core::symmetry::Momentum;
use crate::lab::io::{read_npy, read_npz, NdArray};
use crate::lab::resources::{check, model_footprint, Footprint};
use crate::train::{Batching, LrSchedule, Optimizer, Schedule, TrainConfig};
use crate::{invalid, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod instruments;
pub use instruments::{ChargesSpec, HessianSpec, TwoLayerSpec, MAX_CHARGE_ENTRIES};

/// Declares a spec value that is one of a fixed set of names (kebab-case in TOML). A wrong name
/// is a parse error that names the key and lists the allowed values.
macro_rules! choice {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v),+
        }
        impl $name {
            /// The name used in specs.
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
            /// Every allowed name, in order.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
pub(crate) use choice;

choice!(
    /// `model.kind`.
    ModelKind {
        /// A deep linear chain (no activation, no biases).
        Linear = "linear",
        /// An MLP.
        Mlp = "mlp",
        /// Net-A.
        NetA = "net-a",
        /// Net-B.
        NetB = "net-b",
        /// A stack of layers (`input`, `layers`), named as PyTorch's `nn.Sequential`.
        Sequential = "sequential",
    }
);

choice!(
    /// `model.activation`.
    ActivationName {
        /// φ(z) = z.
        Identity = "identity",
        /// tanh.
        Tanh = "tanh",
        /// ReLU.
        Relu = "relu",
        /// Leaky ReLU (slope `model.leaky_slope`).
        LeakyRelu = "leaky-relu",
        /// Swish / SiLU.
        Swish = "swish",
    }
);

choice!(
    /// `model.loss`.
    LossName {
        /// `‖f(x) − y‖²`, summed over the outputs (no ½): the paper's.
        Mse = "mse",
        /// `−log softmax(f)_y` over logits and integer class labels (the mean over positions for a
        /// sequence model's `[T, K]` logits).
        CrossEntropy = "cross-entropy",
    }
);

impl LossName {
    /// The name `name` (`"mse"`, `"cross-entropy"`), or an error naming `key` (a flag, say) and
    /// the allowed values.
    pub fn parse(name: &str, key: &str) -> Result<LossName> {
        Ok(match crate::core::loss::Loss::parse(name, key)? {
            crate::core::loss::Loss::Mse => LossName::Mse,
            crate::core::loss::Loss::CrossEntropy => LossName::CrossEntropy,
        })
    }
    /// The loss of [`crate::core::loss`].
    pub fn loss(self) -> crate::core::loss::Loss {
        match self {
            LossName::Mse => crate::core::loss::Loss::Mse,
            LossName::CrossEntropy => crate::core::loss::Loss::CrossEntropy,
        }
    }
}

choice!(
    /// `model.init`.
    InitName {
        /// `N(0, 1/fan_in)`.
        Kaiming = "kaiming",
        /// `N(0, 2/(fan_in + fan_out))`.
        Xavier = "xavier",
        /// One standard deviation per weight matrix (`model.init_std`).
        Std = "std",
    }
);

choice!(
    /// `data.source`.
    DataSource {
        /// Gaussian inputs, a teacher and label noise, generated.
        Gaussian = "gaussian",
        /// Arrays from `.npy`/`.npz` files.
        Npy = "npy",
    }
);

choice!(
    /// `data.mode`.
    DataMode {
        /// Fresh samples every step.
        Online = "online",
        /// N samples drawn once.
        Fixed = "fixed",
        /// The d_x noiseless samples whose second moment is exactly Σ_x (identity or linear
        /// teacher): full-batch GD on them follows the population gradient.
        Population = "population",
    }
);

choice!(
    /// `data.target`.
    TargetKind {
        /// `y = x (+ ε)`.
        Identity = "identity",
        /// `y = V x (+ ε)`.
        Linear = "linear",
        /// A random two-layer tanh teacher.
        TanhTeacher = "tanh-teacher",
        /// A random teacher of the model's own architecture, drawn with `model.init`.
        ModelTeacher = "model-teacher",
    }
);

choice!(
    /// `train.optimizer`.
    OptimizerName {
        /// Minibatch SGD.
        Sgd = "sgd",
        /// Full-batch gradient descent (fixed data).
        Gd = "gd",
        /// Heavy-ball momentum (`torch.optim.SGD(momentum = β)`).
        Momentum = "momentum",
        /// Nesterov momentum (`torch.optim.SGD(momentum = β, nesterov = True)`).
        Nesterov = "nesterov",
        /// Adam with L2 weight decay in the gradient (`torch.optim.Adam`).
        Adam = "adam",
        /// Adam with decoupled weight decay (`torch.optim.AdamW`).
        #[allow(clippy::upper_case_acronyms)]
        AdamW = "adamw",
    }
);

choice!(
    /// `train.schedule`.
    ScheduleName {
        /// η constant.
        Constant = "constant",
        /// Linear ramp over `warmup_steps`.
        LinearWarmup = "linear-warmup",
        /// Piecewise constant (`boundaries`, `values`).
        Piecewise = "piecewise",
    }
);

/// Parses TOML text into `T`; a wrong key, type or value is an error naming the dotted key and
/// where it is: `spec: train.optimizer: unknown variant `adam`, expected `sgd` or `gd` (line 12,
/// column 13)`.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    parse_toml_located(text, what, true)
}

/// [`parse_toml`], with or without the line and column (text generated by the program, such as a
/// sweep's runs, has no lines worth pointing at).
pub(crate) fn parse_toml_located<T: serde::de::DeserializeOwned>(text: &str, what: &str, locate: bool) -> Result<T> {
    let at = |e: &toml::de::Error| match e.span() {
        Some(sp) if locate => {
            let before = &text[..sp.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" (line {line}, column {col})")
        }
        _ => String::new(),
    };
    let de = toml::Deserializer::parse(text).map_err(|e| invalid!("{what}: {}{}", e.message().trim_end(), at(&e)))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        invalid!("{what}: {key}{}{}", inner.message().trim_end(), at(&inner))
    })
}

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
    /// `"linear"` (deep linear chain, no biases), `"mlp"`, `"net-a"`, `"net-b"` or `"sequential"`.
    pub kind: ModelKind,
    /// Widths `[d_in, h_1, …, d_out]` (Net-A/Net-B: exactly three); not with `"sequential"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub widths: Vec<usize>,
    /// `"sequential"`: the per-sample input shape (`[d]`, `[C, H, W]`, `[T, d]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<usize>>,
    /// `"sequential"`: the layers, in order (see [`LayerSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSpec>>,
    /// MLP hidden activation: `"identity"`, `"tanh"`, `"relu"` (default), `"leaky-relu"`, `"swish"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationName>,
    /// Slope of leaky ReLU for negative inputs (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaky_slope: Option<f64>,
    /// MLP biases (default false).
    #[serde(default)]
    pub bias: bool,
    /// `"kaiming"` (N(0, 1/fan_in), default), `"xavier"` (N(0, 2/(fan_in+fan_out))) or `"std"`.
    #[serde(default = "default_init")]
    pub init: InitName,
    /// With `init = "std"`: one standard deviation per weight matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<Vec<f64>>,
    /// Start from these weights (safetensors by PyTorch name, relative to the spec file) instead
    /// of the `init` draw: e.g. `nequil rebalance`'s output or a run's `final.safetensors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// The per-sample loss: `"mse"` (default: `‖f(x) − y‖²`, summed over outputs, no ½) or
    /// `"cross-entropy"` (the output's last axis holds logits over K ≥ 2 classes, the targets are
    /// integer labels, one per sample or one per position of a sequence; book
    /// `theory/conventions.md#losses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossName>,
}

fn default_init() -> InitName {
    InitName::Kaiming
}

/// One layer of a `kind = "sequential"` model: the registry's [`LayerConfig`] (each kind's
/// configuration lives beside its layer in [`crate::core::layers`]).
pub type LayerSpec = LayerConfig;

impl ModelSpec {
    /// Builds and validates the model alone (kind, widths, activation, biases), with errors naming
    /// the `model.*` key. The initialization keys are checked by [`ModelSpec::init_scheme`].
    pub fn build_model(&self) -> Result<Model> {
        let model = self.build_model_inner().map_err(|e| match e {
            // The stack's own errors ("model: …") name the widths they came from.
            Error::Invalid(m) if m.starts_with("model:") => {
                invalid!("{}: {}", self.shape_key(), m.trim_start_matches("model:").trim())
            }
            e => e,
        })?;
        match self.loss {
            None | Some(LossName::Mse) => Ok(model),
            Some(l) => model.with_loss(l.loss(), "model.loss"),
        }
    }

    /// Builds the model ([`ModelSpec::build_model`]) for an analysis at given weights (the
    /// equilibrium, statistics, curvature), refusing a model whose θ, gradient and copies (six)
    /// with the buffers for batches of 256 do not fit in the memory available. The equilibrium
    /// analysis checks its own footprint as well ([`crate::lab::resources::check_equilibrium`]).
    pub fn build_for_analysis(&self) -> Result<Model> {
        let model = self.build_model()?;
        crate::lab::resources::check_fits(&model, 6, 256, &self.shape_key(), "the equilibrium analysis")?;
        Ok(model)
    }

    /// The key and value that fix the model's size, for messages: `model.widths [10, 20, 10]` or
    /// `model.input [1, 28, 28]`.
    pub fn shape_key(&self) -> String {
        match &self.input {
            Some(i) if self.kind == ModelKind::Sequential => format!("model.input {i:?}"),
            _ => format!("model.widths {:?}", self.widths),
        }
    }

    fn build_model_inner(&self) -> Result<Model> {
        let m = self;
        if m.kind == ModelKind::Sequential {
            for (k, set) in [
                ("widths", !m.widths.is_empty()),
                ("activation", m.activation.is_some()),
                ("leaky_slope", m.leaky_slope.is_some()),
                ("bias", m.bias),
            ] {
                if set {
                    return Err(invalid!(
                        "model.{k}: not used with kind = \"sequential\" (give model.input and model.layers)"
                    ));
                }
            }
            let input = m
                .input
                .as_ref()
                .ok_or_else(|| invalid!("model.input: required with kind = \"sequential\" (the per-sample shape)"))?;
            let layers = m
                .layers
                .as_ref()
                .ok_or_else(|| invalid!("model.layers: required with kind = \"sequential\""))?;
            return Model::sequential(input, layers);
        }
        for (k, set) in [("input", m.input.is_some()), ("layers", m.layers.is_some())] {
            if set {
                return Err(invalid!("model.{k}: only meaningful with kind = \"sequential\""));
            }
        }
        if m.widths.is_empty() {
            return Err(invalid!("model.widths: required with kind = \"{}\"", m.kind));
        }
        if let Some(i) = m.widths.iter().position(|&w| w == 0) {
            return Err(invalid!("model.widths[{i}]: widths must be positive"));
        }
        Ok(match m.kind {
            ModelKind::Sequential => unreachable!("handled above"),
            ModelKind::Linear => {
                if m.bias || m.activation.is_some_and(|a| a != ActivationName::Identity) {
                    return Err(invalid!(
                        "model.kind: \"linear\" has no activation and no biases (use kind = \"mlp\")"
                    ));
                }
                Model::linear(&m.widths)?
            }
            ModelKind::Mlp => {
                let a = m.activation.unwrap_or(ActivationName::Relu);
                let act = match a {
                    ActivationName::Identity => Activation::Identity,
                    ActivationName::Tanh => Activation::Tanh,
                    ActivationName::Relu => Activation::Relu,
                    ActivationName::LeakyRelu => Activation::LeakyRelu(m.leaky_slope.unwrap_or(0.01)),
                    ActivationName::Swish => Activation::Swish,
                };
                if m.leaky_slope.is_some() && a != ActivationName::LeakyRelu {
                    return Err(invalid!(
                        "model.leaky_slope: only meaningful with activation = \"leaky-relu\""
                    ));
                }
                Model::mlp(&m.widths, act, m.bias)?
            }
            k @ (ModelKind::NetA | ModelKind::NetB) => {
                if m.widths.len() != 3 {
                    return Err(invalid!(
                        "model.widths: {k} needs exactly [d_in, hidden, d_out], got {:?}",
                        m.widths
                    ));
                }
                if m.bias || m.activation.is_some() {
                    return Err(invalid!("model: {k} has a fixed tanh activation and no biases"));
                }
                let kind = if k == ModelKind::NetA {
                    ScaleKind::NetA
                } else {
                    ScaleKind::NetB
                };
                Model::scale_net(kind, m.widths[0], m.widths[1], m.widths[2])?
            }
        })
    }

    /// The initialization scheme of `model.init` / `model.init_std`, validated.
    pub fn init_scheme(&self) -> Result<Init> {
        let m = self;
        let init = match m.init {
            InitName::Kaiming => Init::Kaiming,
            InitName::Xavier => Init::Xavier,
            InitName::Std => Init::Std(
                m.init_std
                    .clone()
                    .ok_or_else(|| invalid!("model.init_std: required with init = \"std\""))?,
            ),
        };
        if m.init != InitName::Std && m.init_std.is_some() {
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
        parse_toml::<ModelFile>(text, "model file").map(|f| f.model)
    } else {
        Spec::from_toml(text).map(|s| s.model)
    }
}

/// The text of a JSON object (a Python dict, say) as TOML, for the TOML parsers: the same keys,
/// types and checks, without line numbers (the text was not written by a person). `null` has no
/// TOML form and is an error naming `what`.
fn json_as_toml(value: &serde_json::Value, what: &str) -> Result<String> {
    if !value.is_object() {
        return Err(invalid!("{what}: expected a table (a dict of keys), got {value}"));
    }
    toml::to_string(value).map_err(|e| {
        invalid!(
            "{what}: {} (None/null values have no TOML form: leave the key out)",
            e.to_string().trim_end()
        )
    })
}

/// A `[model]` table given as JSON (the Python package's `nequil.Model(dict)`), with the checks
/// and messages of [`model_spec_from_toml`] (without line numbers).
pub fn model_spec_from_json(value: &serde_json::Value) -> Result<ModelSpec> {
    let text = json_as_toml(&serde_json::json!({ "model": value }), "model")?;
    parse_toml_located::<ModelFile>(&text, "model", false).map(|f| f.model)
}

/// A `[probes.charges]` table given as JSON (the Python package's training-loop monitor), with
/// the checks and messages of a spec's (keys named `probes.charges.*`, without line numbers).
pub fn charges_spec_from_json(value: &serde_json::Value) -> Result<ChargesSpec> {
    let text = json_as_toml(&serde_json::json!({ "probes": { "charges": value } }), "probes.charges")?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probes {
        probes: ProbeSpec,
    }
    let p = parse_toml_located::<Probes>(&text, "probes", false)?;
    Ok(p.probes.charges.unwrap_or_default())
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
    let spec = load_model_spec(path)?;
    spec.build_for_analysis().map_err(|e| match e {
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
    pub source: DataSource,
    /// `"online"` (fresh samples every step; default), `"fixed"` (N samples drawn once) or
    /// `"population"` (the d_x noiseless samples whose second moment is exactly Σ_x, so that
    /// full-batch GD follows the population gradient; identity or linear teacher).
    #[serde(default = "default_mode")]
    pub mode: DataMode,
    /// Dataset size N for `mode = "fixed"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
    /// Fixed data: draw batches with replacement (default true) or by reshuffled passes.
    #[serde(default = "default_true")]
    pub replacement: bool,
    /// Input second moment Σ_x (default `{ scalar = 1.0 }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_cov: Option<CovSpec>,
    /// `"identity"` (default), `"linear"`, `"tanh-teacher"` or `"model-teacher"` (the model itself
    /// at parameters drawn with `model.init` from the seed's teacher stream).
    #[serde(default = "default_target")]
    pub target: TargetKind,
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

fn default_source() -> DataSource {
    DataSource::Gaussian
}
fn default_mode() -> DataMode {
    DataMode::Online
}
fn default_target() -> TargetKind {
    TargetKind::Identity
}
fn default_true() -> bool {
    true
}

/// `[train]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// `"sgd"` (default), `"gd"` (full batch, fixed data only), `"momentum"`, `"nesterov"`,
    /// `"adam"` or `"adamw"` (PyTorch's update rules; book `spec-reference.md#optimizers`).
    #[serde(default = "default_opt")]
    pub optimizer: OptimizerName,
    /// Momentum β of `"momentum"` and `"nesterov"` (default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// Dampening τ of `"momentum"` (default 0; Nesterov needs 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dampening: Option<f64>,
    /// `[β₁, β₂]` of `"adam"` and `"adamw"` (default `[0.9, 0.999]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    /// ε of `"adam"` and `"adamw"` (default 1e-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
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
    pub schedule: ScheduleName,
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
    /// Threads for the run's large products (forward and backward GEMMs, per-sample statistics,
    /// Hessian-vector products; [`crate::core::parallel`]). Default 1. The results are
    /// bit-identical for every value, so it is left out of the resolved spec when 1; `--threads`
    /// and a sweep's spare cores override it.
    #[serde(default = "default_threads", skip_serializing_if = "is_one")]
    pub threads: usize,
}

fn default_opt() -> OptimizerName {
    OptimizerName::Sgd
}
fn default_batch() -> usize {
    1
}
fn default_threads() -> usize {
    1
}
fn is_one(v: &usize) -> bool {
    *v == 1
}
fn default_sched() -> ScheduleName {
    ScheduleName::Constant
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
    /// The memory the run will need at most, in bytes (the estimate it was checked with:
    /// θ and its copies, layer buffers, data, the log).
    pub memory: u128,
}

impl Spec {
    /// Parses TOML text. Unknown keys and type errors are reported with the key and line.
    pub fn from_toml(text: &str) -> Result<Spec> {
        parse_toml(text, "spec")
    }

    /// A run spec given as JSON (the Python package's `nequil.run(dict)`): the checks and messages
    /// of [`Spec::from_toml`], without line numbers.
    pub fn from_json(value: &serde_json::Value) -> Result<Spec> {
        parse_toml_located(&json_as_toml(value, "spec")?, "spec", false)
    }

    /// Reads and parses a spec file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("cannot read spec {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Invalid(m) => invalid!("{}: {m}", path.display()),
            e => e,
        })
    }

    /// The spec with every default filled in, as TOML.
    pub fn resolved_toml(&self) -> String {
        let mut s = self.clone();
        if s.data.source == DataSource::Gaussian && s.data.x_cov.is_none() {
            s.data.x_cov = Some(CovSpec::Scalar(1.0));
        }
        if s.probes.every.is_none() && s.probes.log_points.is_none() {
            s.probes.log_points = Some(200);
        }
        if s.model.kind == ModelKind::Mlp && s.model.activation.is_none() {
            s.model.activation = Some(ActivationName::Relu);
        }
        match s.train.optimizer {
            OptimizerName::Momentum | OptimizerName::Nesterov => {
                s.train.momentum.get_or_insert(DEFAULT_MOMENTUM);
                s.train.dampening.get_or_insert(0.0);
            }
            OptimizerName::Adam | OptimizerName::AdamW => {
                s.train.betas.get_or_insert(DEFAULT_BETAS);
                s.train.eps.get_or_insert(DEFAULT_EPS);
            }
            OptimizerName::Sgd | OptimizerName::Gd => {}
        }
        toml::to_string(&s).expect("spec serializes")
    }

    /// Builds and validates the model, data, initial θ and training configuration, and checks the
    /// instrument tables against them (build the probes with [`Spec::probes`]). Relative data
    /// paths are resolved against `base` (the spec file's directory).
    pub fn build(&self, base: &Path) -> Result<Built> {
        let model = self.model.build_model()?;
        let batch = match self.train.optimizer {
            OptimizerName::Gd if self.data.mode == DataMode::Population => model.d_in(),
            OptimizerName::Gd => self.data.n.unwrap_or(1),
            _ => self.train.batch_size,
        };
        let what = format!(
            "{}: the model has {} parameters",
            self.model.shape_key(),
            model.n_params()
        );
        let mut footprint = model_footprint(&model, 4, batch.max(1));
        check(&footprint, &what, "training")?;
        self.data_footprint(&model, &mut footprint);
        // The probes' declarations, from the model's structure (every model kind), before the
        // data exist; a table that does not apply is reported below, after the data's checks.
        let eval_n = usize::try_from(self.eval_n(&model)).unwrap_or(usize::MAX).max(1);
        let probes = instruments::footprint(&self.probes, &model, eval_n, self.seed).unwrap_or_default();
        let with_probes = |probes: Footprint| {
            let mut f = footprint.clone();
            f.extend(probes);
            f
        };
        check(&with_probes(probes.clone()), &what, "training")?;
        let init = self.model.init_scheme()?;
        let theta0 = match &self.model.init_from {
            Some(p) => {
                let path = base.join(p);
                crate::lab::io::load_weights(&path, &model).map_err(|e| match e {
                    Error::Invalid(m) => invalid!("model.init_from: {m}"),
                    Error::Io(m) => invalid!("model.init_from: {m}"),
                    e => e,
                })?
            }
            None => model.init(&init, &mut Rng::derive(self.seed, "init"))?,
        };
        let source = self.data.build(&model, &init, self.seed, base)?;
        // Data read from files: the probes see the whole set, now that its size is known.
        let mut probes = probes;
        if let Source::Fixed { data, .. } = &source {
            if data.n != eval_n {
                probes = instruments::footprint(&self.probes, &model, data.n.max(1), self.seed).unwrap_or_default();
                check(&with_probes(probes.clone()), &what, "training")?;
            }
        }
        let mut footprint = with_probes(probes);
        let config = self.train_config(&source)?;
        let columns = instruments::columns(&self.probes, &model, &source, self.seed)?;
        // The log: a row of every column at each step of every schedule, and the steps themselves.
        let mut rows = config.schedule.count_bound(config.steps);
        for s in instruments::schedules(&self.probes)?.iter().flatten() {
            rows = rows.saturating_add(s.count_bound(config.steps));
        }
        let cols = 5 + model.layout().blocks().len() as u128 + columns as u128;
        footprint.add(
            format!("probes.every / log_points: the log of up to {rows} rows × {cols} columns"),
            rows,
            8 * (cols + 1),
        );
        check(&footprint, &what, "training")?;
        Ok(Built {
            model,
            source,
            theta0,
            config,
            memory: footprint.total(),
        })
    }

    /// The size of the evaluation set the probes see: the fixed dataset (`data.n`), `d_x` samples
    /// for population data, `probes.eval_samples` for online data; 0 for data read from files
    /// (known once read).
    fn eval_n(&self, model: &Model) -> u128 {
        match (self.data.source, self.data.mode) {
            (DataSource::Gaussian, DataMode::Fixed) => self.data.n.unwrap_or(1) as u128,
            (DataSource::Gaussian, DataMode::Population) => model.d_in() as u128,
            (DataSource::Gaussian, DataMode::Online) => self.probes.eval_samples as u128,
            (DataSource::Npy, _) => 0,
        }
    }

    /// Adds to `f` what the data will take before they exist: the teacher, covariance factors
    /// and exact second moments, the fixed dataset (and its copy as the evaluation set) or the
    /// evaluation sample, and the layer buffers of evaluation batches. Arrays read from files are
    /// bounded by the files themselves (and [`crate::lab::resources::read_budget`]).
    fn data_footprint(&self, model: &Model, f: &mut Footprint) {
        let d = &self.data;
        let (dx, dy) = (model.d_in() as u128, model.d_out() as u128);
        let eval_n = self.eval_n(model);
        if d.source == DataSource::Gaussian {
            use crate::core::data::footprint as data;
            match d.target {
                TargetKind::Linear if d.teacher.is_none() => f.add(
                    "data.target = \"linear\": the random teacher (d_y × d_x)",
                    data::linear_teacher(dx, dy),
                    8,
                ),
                TargetKind::TanhTeacher => f.add(
                    "data.teacher_hidden: the tanh teacher",
                    data::tanh_teacher(d.teacher_hidden.unwrap_or(32) as u128, dx, dy),
                    8,
                ),
                _ => {}
            }
            // A full covariance and its factor; Σ_x and Σ_ε as matrices where population data
            // or the instruments use them.
            if matches!(d.x_cov, Some(CovSpec::Full(_))) {
                f.add("data.x_cov: the full covariance's factor", data::full_covariance(dx), 8);
            }
            if matches!(d.noise_cov, Some(CovSpec::Full(_))) {
                f.add(
                    "data.noise_cov: the full covariance's factor",
                    data::full_covariance(dy),
                    8,
                );
            }
            let p = &self.probes;
            if d.mode == DataMode::Population || p.hessian.is_some() || p.sharpness.is_some() || p.equilibrium.is_some()
            {
                f.add("the exact second moments Σ_x and Σ_ε", data::second_moments(dx, dy), 8);
            }
            let what = match d.mode {
                DataMode::Fixed => "data.n: the fixed dataset and its copy as the evaluation set",
                DataMode::Population => "data.mode = \"population\": d_x samples and their copy as the evaluation set",
                DataMode::Online => "probes.eval_samples: the evaluation sample",
            };
            let copies = if d.mode == DataMode::Online { 1 } else { 2 };
            f.add(what, copies * data::samples(eval_n, dx, dy), 8);
        }
        let eval_batch = usize::try_from(eval_n.clamp(1, 1024)).unwrap_or(1024);
        f.extend_named("evaluation", model.footprint(eval_batch));
    }

    fn train_config(&self, source: &Source) -> Result<TrainConfig> {
        let t = &self.train;
        let batching = if t.optimizer == OptimizerName::Gd {
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
        if t.optimizer == OptimizerName::Gd && matches!(source, Source::Online(_)) {
            return Err(invalid!(
                "train.optimizer: \"gd\" needs a fixed dataset (data.mode = \"fixed\")"
            ));
        }
        let need_lr = || {
            t.lr.ok_or_else(|| invalid!("train.lr: required with schedule = \"{}\"", t.schedule))
        };
        let lr = match t.schedule {
            ScheduleName::Constant => LrSchedule::Constant(need_lr()?),
            ScheduleName::LinearWarmup => LrSchedule::LinearWarmup {
                warmup_steps: t
                    .warmup_steps
                    .ok_or_else(|| invalid!("train.warmup_steps: required with schedule = \"linear-warmup\""))?,
                lr: need_lr()?,
            },
            ScheduleName::Piecewise => {
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
        if t.schedule != ScheduleName::LinearWarmup && t.warmup_steps.is_some() {
            return Err(invalid!(
                "train.warmup_steps: only meaningful with schedule = \"linear-warmup\""
            ));
        }
        if t.schedule != ScheduleName::Piecewise && (t.boundaries.is_some() || t.values.is_some()) {
            return Err(invalid!(
                "train.boundaries/values: only meaningful with schedule = \"piecewise\""
            ));
        }
        lr.validate()?;
        let optimizer = self.optimizer()?;
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(invalid!(
                "train.weight_decay: must be finite and ≥ 0, got {}",
                t.weight_decay
            ));
        }
        if !(1..=1024).contains(&t.threads) {
            return Err(invalid!("train.threads: must be between 1 and 1024, got {}", t.threads));
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
            optimizer,
            schedule,
            eval_samples: p.eval_samples,
            seed: self.seed,
        })
    }
}

/// Momentum β when `train.momentum` is omitted (PyTorch has no default; 0.9 is the common one).
pub const DEFAULT_MOMENTUM: f64 = 0.9;
/// `train.betas` when omitted (PyTorch's).
pub const DEFAULT_BETAS: [f64; 2] = [0.9, 0.999];
/// `train.eps` when omitted (PyTorch's).
pub const DEFAULT_EPS: f64 = 1e-8;

impl Spec {
    /// The update rule of `[train]`: `optimizer` with `momentum`, `dampening`, `betas`, `eps`,
    /// checked; a hyperparameter given to an optimizer that has none of that name is an error
    /// naming the key.
    pub fn optimizer(&self) -> Result<Optimizer> {
        let t = &self.train;
        let name = t.optimizer;
        let is_momentum = matches!(name, OptimizerName::Momentum | OptimizerName::Nesterov);
        let is_adam = matches!(name, OptimizerName::Adam | OptimizerName::AdamW);
        for (key, given, ok, for_whom) in [
            (
                "momentum",
                t.momentum.is_some(),
                is_momentum,
                "\"momentum\" and \"nesterov\"",
            ),
            ("dampening", t.dampening.is_some(), is_momentum, "\"momentum\""),
            ("betas", t.betas.is_some(), is_adam, "\"adam\" and \"adamw\""),
            ("eps", t.eps.is_some(), is_adam, "\"adam\" and \"adamw\""),
        ] {
            if given && !ok {
                return Err(invalid!(
                    "train.{key}: only meaningful with optimizer = {for_whom}, not \"{name}\""
                ));
            }
        }
        let opt = match name {
            OptimizerName::Sgd | OptimizerName::Gd => Optimizer::Sgd,
            OptimizerName::Momentum | OptimizerName::Nesterov => Optimizer::Momentum(Momentum {
                beta: t.momentum.unwrap_or(DEFAULT_MOMENTUM),
                dampening: t.dampening.unwrap_or(0.0),
                nesterov: name == OptimizerName::Nesterov,
            }),
            OptimizerName::Adam | OptimizerName::AdamW => {
                let [beta1, beta2] = t.betas.unwrap_or(DEFAULT_BETAS);
                Optimizer::Adam {
                    beta1,
                    beta2,
                    eps: t.eps.unwrap_or(DEFAULT_EPS),
                    decoupled: name == OptimizerName::AdamW,
                }
            }
        };
        opt.validate()?;
        Ok(opt)
    }
}

impl DataSpec {
    fn build(&self, model: &Model, init: &Init, seed: u64, base: &Path) -> Result<Source> {
        if self.source == DataSource::Npy {
            return self.build_npy(model, base);
        }
        // The Gaussian source draws the teacher's real-valued outputs (d_out per sample); with
        // cross-entropy a fixed dataset's labels are their argmax per position.
        let (d_x, d_y) = (model.d_in(), model.d_out());
        let classify = model.loss_kind() == crate::core::loss::Loss::CrossEntropy;
        if classify && self.mode != DataMode::Fixed {
            return Err(invalid!(
                "data.mode: with loss = \"cross-entropy\" the Gaussian source gives a fixed dataset \
                 (mode = \"fixed\"), labelled by the argmax of the teacher's outputs; got mode = \"{}\"",
                self.mode
            ));
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
        let target = match self.target {
            TargetKind::Identity => Target::Identity,
            TargetKind::Linear => match &self.teacher {
                Some(rows) => Target::Linear(matrix(rows, "data.teacher")?),
                None => Target::random_linear(d_x, d_y, &mut trng),
            },
            TargetKind::TanhTeacher => {
                let h = self.teacher_hidden.unwrap_or(32);
                if h == 0 {
                    return Err(invalid!("data.teacher_hidden: must be ≥ 1"));
                }
                Target::random_tanh(d_x, h, d_y, &mut trng)
            }
            TargetKind::ModelTeacher => Target::model_teacher(model, init, &mut trng)?,
        };
        if self.teacher_hidden.is_some() && self.target != TargetKind::TanhTeacher {
            return Err(invalid!(
                "data.teacher_hidden: only meaningful with target = \"tanh-teacher\""
            ));
        }
        if self.teacher.is_some() && self.target != TargetKind::Linear {
            return Err(invalid!("data.teacher: only meaningful with target = \"linear\""));
        }
        let mut g = Gaussian::new(d_x, d_y, x_cov, target, noise)?;
        match self.mode {
            DataMode::Online => {
                if self.n.is_some() {
                    return Err(invalid!("data.n: only meaningful with mode = \"fixed\""));
                }
                Ok(Source::Online(g))
            }
            DataMode::Population => {
                if self.n.is_some() {
                    return Err(invalid!(
                        "data.n: not used with mode = \"population\" (the dataset has d_x = {d_x} samples)"
                    ));
                }
                let data = g.population_dataset()?;
                Ok(Source::Fixed {
                    data,
                    replacement: self.replacement,
                    dist: Some(g),
                })
            }
            DataMode::Fixed => {
                let n = self
                    .n
                    .ok_or_else(|| invalid!("data.n: required with mode = \"fixed\""))?;
                if n == 0 {
                    return Err(invalid!("data.n: must be ≥ 1"));
                }
                let data = g.dataset(&mut Rng::derive(seed, "dataset"), n);
                if classify {
                    // The labels' distribution is not the Gaussian's: no exact moments.
                    return Ok(Source::Fixed {
                        data: argmax_labels(&data, model.classes())?,
                        replacement: self.replacement,
                        dist: None,
                    });
                }
                Ok(Source::Fixed {
                    data,
                    replacement: self.replacement,
                    dist: Some(g),
                })
            }
        }
    }

    fn build_npy(&self, model: &Model, base: &Path) -> Result<Source> {
        let (d_x, d_y) = (model.d_in(), model.d_y());
        if self.mode != DataMode::Fixed {
            return Err(invalid!(
                "data.mode: arrays from files are a fixed dataset (set mode = \"fixed\")"
            ));
        }
        let y_key = match (&self.npz_path, &self.y_path) {
            (Some(_), _) => "data.npz_path",
            _ => "data.y_path",
        };
        let (x, y) = match (&self.npz_path, &self.x_path, &self.y_path) {
            (Some(p), None, None) => {
                let arrays = read_npz(&base.join(p)).map_err(|e| in_key("data.npz_path", e))?;
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
            (None, Some(xp), Some(yp)) => (
                read_npy(&base.join(xp)).map_err(|e| in_key("data.x_path", e))?,
                read_npy(&base.join(yp)).map_err(|e| in_key("data.y_path", e))?,
            ),
            _ => {
                return Err(invalid!(
                    "data: with source = \"npy\" give either npz_path, or both x_path and y_path"
                ))
            }
        };
        let data = dataset_from_arrays(&x, &y, d_x, d_y)?;
        let what = match &self.npz_path {
            Some(p) => format!(
                "{y_key} ({}, array `{}`)",
                p.display(),
                self.y_key.as_deref().unwrap_or("y")
            ),
            None => format!(
                "{y_key} ({})",
                self.y_path.as_deref().unwrap_or(Path::new("")).display()
            ),
        };
        model.check_targets(&data.y, data.n, &what)?;
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

/// A dataset with real-valued targets (`d_y = T·K` per sample) relabelled for cross-entropy: per
/// position t, the class `argmax_k y_{t,k}` (the first one on ties), so `d_y = T`.
fn argmax_labels(data: &Dataset, k: usize) -> Result<Dataset> {
    let t = data.d_y / k;
    let labels = data
        .y
        .chunks_exact(k)
        .map(|row| {
            let mut best = 0;
            for (j, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = j;
                }
            }
            best as f64
        })
        .collect();
    Dataset::new(data.n, data.d_x, t, data.x.clone(), labels)
}

/// An error of reading the file a key names, with the key in front (`data.x_path: cannot read …`).
fn in_key(key: &str, e: Error) -> Error {
    match e {
        Error::Io(m) => Error::Io(format!("{key}: {m}")),
        Error::Invalid(m) => invalid!("{key}: {m}"),
        e => e,
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
