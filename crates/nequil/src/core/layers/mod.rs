//! Layers: the building blocks of a model, one kind per file.
//!
//! A model ([`crate::core::models::Model`]) is a stack of layers applied in order to one sample's
//! input. Every layer kind implements [`Layer`], which is everything the engine needs of it:
//!
//! * [`Layer::forward`] on a chunk of `b` samples;
//! * [`Layer::backward`]: the gradient with respect to its input (per sample) and the mean gradient
//!   of its parameters;
//! * its block of the exact per-sample gradient statistics: the per-parameter second moment
//!   [`Layer::grad_sq`] and the per-sample quadratic forms `g_iᵀ D g_i` for a diagonal `D`
//!   [`Layer::grad_quad`], without a `b × P` matrix of per-sample gradients;
//! * Pearlmutter's R-operator for exact Hessian-vector products ([`Layer::rforward`],
//!   [`Layer::rbackward`]);
//! * its parameter blocks with PyTorch names and shapes ([`Layer::blocks`]) and how they are
//!   initialized;
//! * its structure ([`Layer::structure`]), from which the symmetries of the model are derived.
//!
//! # Conventions
//!
//! * A chunk of `b` samples is row-major: `x` is `b × in_dim`, `y` is `b × out_dim`, where the
//!   per-sample shapes are [`Layer::in_shape`] and [`Layer::out_shape`] (row-major too).
//! * `dy` holds the per-sample gradients `∂ℓ_i/∂y_i` of the per-sample loss `ℓ_i` (no batch factor);
//!   `dx` receives `∂ℓ_i/∂x_i`.
//! * Parameters `p` are the layer's own slice of θ, blocks in the order of [`Layer::blocks`],
//!   each row-major (`[out, in]` for a dense weight, as PyTorch).
//! * A layer may keep per-sample values from the forward pass to the backward pass (`saved`,
//!   `b × saved_per_sample`, sample-major) and use a scratch buffer of [`Layer::scratch_len`]
//!   values; neither is allocated by the layer, so steps allocate nothing.
//! * Layers whose statistics use the provided per-sample defaults ([`per_sample_grad_sq`],
//!   [`per_sample_grad_quad`]) must count `n_params + backward scratch of one sample` in
//!   [`Layer::scratch_len`].
//!
//! # Adding a layer kind
//!
//! A layer kind is one file here holding everything about it:
//!
//! * its configuration: a serde struct with PyTorch's names and defaults
//!   (`#[serde(deny_unknown_fields)]`), what a spec's `{ type = "…", … }` table holds, and its
//!   [`BuildLayer::build`], which checks the configuration against the per-sample input shape
//!   (errors name the spec key: `model.layers[3].kernel: …`) and returns the layer;
//! * the layer itself, implementing [`Layer`]: forward, backward, statistics, R-operator, blocks,
//!   structure. A parameter-free element-wise function that is not positively homogeneous
//!   (sigmoid, GELU, softplus, hard swish) implements only [`PointwiseFn`] — `(φ, φ', φ'')` at a
//!   point, and its kinks — and its config builds a [`PointwiseLayer`] around it.
//!
//! and one line in the registry [`LayerConfig`] (the `registry!` invocation below; beside it the
//! file's `mod` and `pub use` lines), which gives the kind its spec name. The spec's `[model]`
//! layer list is a list of [`LayerConfig`]s, residual blocks nest them,
//! [`crate::core::models::Model::sequential`] builds them, and the Python package's PyTorch
//! adapter emits them (`python/nequil/torch.py`, whose table `_TORCH_KINDS` must list every
//! registered kind, or `_NO_TORCH` with a reason; a test checks it and the spec reference). The statistics, Hessian-vector products, training loop, probes and symmetry
//! catalog see only the trait.
//!
//! The kinds: [`Linear`] (`linear`), [`ActivationLayer`] (`identity`, `tanh`, `relu`,
//! `leaky-relu`, `swish`, also spelled `silu`), [`Sigmoid`] (`sigmoid`), [`Gelu`] (`gelu`),
//! [`Softplus`] (`softplus`), [`Hardswish`] (`hardswish`), [`Conv2d`] (`conv2d` and `conv1d`),
//! [`MaxPool2d`] (`max-pool2d`), [`AvgPool2d`] (`avg-pool2d`), [`AdaptiveAvgPool`]
//! (`adaptive-avg-pool2d`, `adaptive-avg-pool1d`), [`Flatten`] (`flatten`), [`LayerNorm`]
//! (`layer-norm`), [`BatchNorm`] (`batch-norm`), [`RmsNorm`] (`rms-norm`), [`GroupNorm`]
//! (`group-norm`), [`SelfAttention`] (`self-attention`), [`Residual`] (`residual`), [`MeanPool`]
//! (`mean-pool`); and [`ScaleNet`] (the paper's Fig. 7 nets, `model.kind = "net-a"`/`"net-b"`,
//! which are whole models rather than layers of a stack, so not registered).
//!
//! # What comes next
//!
//! Operations with several inputs (add, concat, attention's three operands) and parameter blocks
//! shared between nodes (tied embeddings) are designed in [`crate::core::graph`]; a scalar type
//! parameter (f32 beside f64) in [`crate::core::scalar`], used by [`Linear`]'s generic kernels.

mod activation;
mod adaptive_avg_pool;
mod attention;
mod avg_pool2d;
mod batch_norm;
mod conv2d;
pub(crate) mod dual;
#[cfg(test)]
mod elementwise_check;
#[cfg(test)]
mod fd_check;
mod flatten;
mod gelu;
mod group_norm;
mod hardswish;
mod layer_norm;
mod linear;
mod max_pool2d;
mod mean_pool;
mod norm_common;
mod pointwise;
mod residual;
mod rms_norm;
mod scale_net;
mod sigmoid;
mod softplus;

pub use activation::{
    Activation, ActivationLayer, IdentityConfig, LeakyReluConfig, ReluConfig, SwishConfig, TanhConfig,
};
pub use adaptive_avg_pool::{AdaptiveAvgPool, AdaptiveAvgPool1dConfig, AdaptiveAvgPool2dConfig};
pub use attention::{SelfAttention, SelfAttentionConfig};
pub use avg_pool2d::{AvgPool2d, AvgPool2dConfig};
pub use batch_norm::{BatchNorm, BatchNormConfig};
pub use conv2d::{Conv1dConfig, Conv2d, Conv2dConfig, ConvGeometry, KernelSpec, Padding, PaddingMode};
pub use flatten::{Flatten, FlattenConfig};
pub use gelu::{Gelu, GeluApproximate, GeluConfig};
pub use group_norm::{GroupNorm, GroupNormConfig};
pub use hardswish::{Hardswish, HardswishConfig};
pub use layer_norm::{LayerNorm, LayerNormConfig};
pub use linear::{Linear, LinearConfig};
pub use max_pool2d::{MaxPool2d, MaxPool2dConfig};
pub use mean_pool::{MeanPool, MeanPoolConfig};
pub use pointwise::{PointwiseFn, PointwiseLayer};
pub use residual::{Residual, ResidualConfig};
pub use rms_norm::{RmsNorm, RmsNormConfig};
pub use scale_net::{ScaleKind, ScaleNet};
pub use sigmoid::{Sigmoid, SigmoidConfig};
pub use softplus::{Softplus, SoftplusConfig};

/// The registry of layer kinds: `Variant(ConfigType) = "spec-name",`. It declares
/// [`LayerConfig`] (one variant per kind, tagged by `type` in specs), [`LayerConfig::KINDS`],
/// [`LayerConfig::kind`], [`LayerConfig::build`]'s dispatch and `From<ConfigType>`.
macro_rules! registry {
    ($($(#[$m:meta])* $variant:ident($config:ty) = $name:literal,)+) => {
        /// One layer of a sequential model, before its input shape is known: the spec's
        /// `{ type = "conv2d", out_channels = 8, kernel = 3, padding = 1 }` (PyTorch's names and
        /// defaults). Each variant wraps the configuration type of its kind, defined in the
        /// kind's file.
        #[derive(Clone, Debug, serde::Deserialize, serde::Serialize, PartialEq)]
        #[serde(tag = "type")]
        pub enum LayerConfig {
            $($(#[$m])* #[serde(rename = $name)] $variant($config),)+
        }

        impl LayerConfig {
            /// Every registered kind's spec name, in registry order.
            pub const KINDS: &'static [&'static str] = &[$($name),+];

            /// The kind's spec name (`linear`, `conv2d`, …).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(LayerConfig::$variant(_) => $name,)+
                }
            }

            fn config(&self) -> &dyn BuildLayer {
                match self {
                    $(LayerConfig::$variant(c) => c,)+
                }
            }
        }

        $(impl From<$config> for LayerConfig {
            fn from(c: $config) -> Self {
                LayerConfig::$variant(c)
            }
        })+
    };
}

registry! {
    /// `nn.Linear` on the last axis.
    Linear(LinearConfig) = "linear",
    /// `nn.Conv2d` on `[C, H, W]`.
    Conv2d(Conv2dConfig) = "conv2d",
    /// `nn.Conv1d` on `[C, L]`.
    Conv1d(Conv1dConfig) = "conv1d",
    /// `nn.MaxPool2d` on `[C, H, W]`.
    MaxPool2d(MaxPool2dConfig) = "max-pool2d",
    /// `nn.AvgPool2d` on `[C, H, W]`.
    AvgPool2d(AvgPool2dConfig) = "avg-pool2d",
    /// `nn.AdaptiveAvgPool2d` on `[C, H, W]`.
    AdaptiveAvgPool2d(AdaptiveAvgPool2dConfig) = "adaptive-avg-pool2d",
    /// `nn.AdaptiveAvgPool1d` on `[C, L]`.
    AdaptiveAvgPool1d(AdaptiveAvgPool1dConfig) = "adaptive-avg-pool1d",
    /// `nn.Flatten()`.
    Flatten(FlattenConfig) = "flatten",
    /// `nn.LayerNorm` over the last axis.
    LayerNorm(LayerNormConfig) = "layer-norm",
    /// `nn.BatchNorm1d`/`2d`/`3d` in evaluation mode on `[C, …]`.
    BatchNorm(BatchNormConfig) = "batch-norm",
    /// `nn.RMSNorm` over the last axis.
    RmsNorm(RmsNormConfig) = "rms-norm",
    /// `nn.GroupNorm` on `[C, …]`.
    GroupNorm(GroupNormConfig) = "group-norm",
    /// Self-attention on `[T, E]`.
    SelfAttention(SelfAttentionConfig) = "self-attention",
    /// The mean over a sequence, `[T, d] → [d]`.
    MeanPool(MeanPoolConfig) = "mean-pool",
    /// `x + F(x)`, F the inner layers.
    Residual(ResidualConfig) = "residual",
    /// φ(z) = z.
    Identity(IdentityConfig) = "identity",
    /// tanh.
    Tanh(TanhConfig) = "tanh",
    /// ReLU.
    Relu(ReluConfig) = "relu",
    /// Leaky ReLU.
    LeakyRelu(LeakyReluConfig) = "leaky-relu",
    /// Swish (`nn.SiLU`; the spec also accepts the spelling `silu`).
    #[serde(alias = "silu")]
    Swish(SwishConfig) = "swish",
    /// The logistic sigmoid (`nn.Sigmoid`).
    Sigmoid(SigmoidConfig) = "sigmoid",
    /// GELU, exact or its tanh approximation (`nn.GELU`).
    Gelu(GeluConfig) = "gelu",
    /// Softplus (`nn.Softplus`).
    Softplus(SoftplusConfig) = "softplus",
    /// Hard swish (`nn.Hardswish`).
    Hardswish(HardswishConfig) = "hardswish",
}

/// A layer kind's configuration: how it becomes a layer once the input shape is known.
pub trait BuildLayer {
    /// The layer for per-sample inputs of shape `input` (at most [`MAX_VALUES`] values: checked
    /// by [`LayerConfig::build`] before), or an error whose message starts with
    /// the spec key `key` (`model.layers[3]`), extended by the field at fault where there is one
    /// (`model.layers[3].kernel: …`).
    fn build(&self, input: &[usize], key: &str) -> Result<Arc<dyn Layer>>;
}

impl LayerConfig {
    /// The layer for per-sample inputs of shape `input`, or an error naming `key` (the layer's
    /// place in the spec, `model.layers[3]`) and what does not fit. Every size a layer computes
    /// from its shapes is checked against [`MAX_VALUES`] first, so that no layer's arithmetic can
    /// overflow.
    pub fn build(&self, input: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        checked_size(key, "the input shape", input)?;
        self.config().build(input, key)
    }
}

/// The most values any one size of a layer may hold (2⁴⁸, 2 PiB of `f64`): larger is refused when
/// the model is built, before a layer's arithmetic could overflow.
pub const MAX_VALUES: usize = 1 << 48;

/// The number of values of a tensor of shape `dims`, or an error naming `key` and `what` when it
/// exceeds [`MAX_VALUES`]. Sizes below it are left to the memory check of a run.
pub fn checked_size(key: &str, what: &str, dims: &[usize]) -> Result<usize> {
    let n = dims
        .iter()
        .try_fold(1u128, |a, &d| a.checked_mul(d as u128))
        .unwrap_or(u128::MAX);
    if n > MAX_VALUES as u128 {
        Err(invalid!(
            "{key}: {what} {dims:?} holds more than 2^48 values, more than any machine's memory"
        ))
    } else {
        Ok(n as usize)
    }
}

/// `input` as `[C, H, W]`, or an error naming `key` and the kind that needs it.
pub(crate) fn chw(key: &str, kind: &str, input: &[usize]) -> Result<[usize; 3]> {
    match input {
        [c, h, w] => Ok([*c, *h, *w]),
        _ => Err(invalid!("{key}: {kind} needs inputs of shape [C, H, W], got {input:?}")),
    }
}

use crate::core::footprint::F64;
use crate::{invalid, Result};
use std::fmt::Debug;
use std::sync::Arc;

/// How a parameter block is initialized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BlockInit {
    /// A weight with these fans: `N(0, 1/fan_in)` (Kaiming), `N(0, 2/(fan_in + fan_out))`
    /// (Xavier), or one standard deviation per weight block (`init = "std"`), in model order.
    Weight {
        /// Inputs per output unit.
        fan_in: usize,
        /// Outputs per input unit.
        fan_out: usize,
    },
    /// All zeros (biases).
    Zeros,
    /// All ones (normalization gains).
    Ones,
}

/// One parameter block of a layer: its local name (`weight`, `bias`, …; the model prefixes the
/// module name), its shape and its initialization.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockSpec {
    /// Local name, e.g. `weight`.
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Initialization.
    pub init: BlockInit,
}

impl BlockSpec {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the block is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The coarse kind of a layer, for recognising chains of dense layers ([`crate::core::models::Model::as_chain`])
/// and double rotations between two dense maps with nothing between them.
#[derive(Clone, Debug, PartialEq)]
pub enum Structure {
    /// `y = W x + b` on the last axis: `out` output units, `inp` inputs per unit, applied at
    /// `positions` positions per sample (1 for a vector input, T for a sequence); block 0 is the
    /// weight `[out, inp]`, block 1 (if `bias`) the bias `[out]`.
    Dense {
        /// Output units (neurons).
        out: usize,
        /// Inputs per unit.
        inp: usize,
        /// Whether there is a bias block.
        bias: bool,
        /// Positions per sample the map is applied at.
        positions: usize,
    },
    /// An element-wise map `y = φ(x)`; `homogeneous` if `φ(cx) = cφ(x)` for every `c > 0`.
    Elementwise {
        /// Positively homogeneous of degree one.
        homogeneous: bool,
        /// The function, if it is one of [`Activation`]'s.
        activation: Option<Activation>,
    },
    /// A layer the catalog does not look inside; its own symmetries come from
    /// [`Layer::intrinsic_symmetries`].
    Opaque,
}

/// The output units of a layer whose values scale with some of its parameters: scaling the
/// parameters `params[k]` by `c > 0` scales the outputs at `positions[k]` by `c` and leaves every
/// other output unchanged (a dense layer's neuron k: row k of `W` and `b_k`; a convolution's
/// channel; a normalization's affine feature).
#[derive(Clone, Debug, PartialEq)]
pub struct Units {
    /// What a unit is called in symmetry names (`neuron`, `channel`, `feature`).
    pub noun: &'static str,
    /// Local parameter indices of each unit.
    pub params: Vec<Vec<usize>>,
    /// Output positions (per sample, row-major) of each unit.
    pub positions: Vec<Vec<usize>>,
}

/// What a layer does with a set of its input positions all scaled by one `c > 0`.
#[derive(Clone, Debug, PartialEq)]
pub enum Pass {
    /// The output equals the unscaled one except at these output positions, which are scaled by
    /// `c` (positively homogeneous element-wise maps, pooling of whole channels, reshapes).
    Through(Vec<usize>),
    /// Scaling these local parameters by `1/c` restores the unscaled output exactly (the inputs
    /// enter linearly through them: the columns of a dense layer's weight, a convolution's input
    /// channels).
    Absorb(Vec<usize>),
    /// Neither: the scaling is visible in the output.
    Block,
}

/// A symmetry a layer has on its own, whatever surrounds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Intrinsic {
    /// The layer's output does not change when all the listed blocks are multiplied by one `c > 0`:
    /// a scale invariance, generator `A = I` on the blocks. The catalog names it `scale` when it
    /// covers all of θ, `scale.{block}` for one block, `scale.{module}` otherwise.
    Scale {
        /// Indices into [`Layer::blocks`].
        blocks: Vec<usize>,
    },
    /// A double rotation: for any symmetric `d × d` matrix `M`, each vector of local parameters
    /// `plus[i]` (length `d`) maps to `e^{λM}` times itself and each `minus[i]` to `e^{−λM}` times
    /// itself, leaving the output unchanged (attention's query/key and value/output pairs per
    /// head). The catalog lists the family as `{name}.{label}.{tag}` and its `d` diagonal members
    /// (`M = e_k e_kᵀ`) as `{name}.{label}.{tag}.{k}`.
    Rotation {
        /// Family name (`qk`, `vo`).
        name: &'static str,
        /// Which one (the head).
        tag: String,
        /// Vectors that transform by `e^{λM}`.
        plus: Vec<Vec<usize>>,
        /// Vectors that transform by `e^{−λM}`.
        minus: Vec<Vec<usize>>,
    },
}

/// A layer inside a block layer: the layer, the offset of its parameters in the block's
/// parameters, its module name relative to the block (`0`, `1`) and its label relative to the
/// block.
#[derive(Clone, Debug)]
pub struct Child {
    /// The layer.
    pub layer: std::sync::Arc<dyn Layer>,
    /// Offset of its parameters within the block's.
    pub offset: usize,
    /// Module name relative to the block (its index).
    pub module: String,
}

/// What a layer sees of one chunk of `b` samples after its forward pass.
#[derive(Clone, Copy, Debug)]
pub struct Fwd<'a> {
    /// Inputs, `b × in_dim`.
    pub x: &'a [f64],
    /// Outputs, `b × out_dim`.
    pub y: &'a [f64],
    /// Values kept by the forward pass, `b × saved_per_sample`.
    pub saved: &'a [f64],
}

/// The quantities of one chunk the R-operator works with (see [`Layer::rbackward`]).
#[derive(Clone, Copy, Debug)]
pub struct RFwd<'a> {
    /// The forward pass.
    pub f: Fwd<'a>,
    /// `∂ℓ_i/∂y_i`.
    pub dy: &'a [f64],
    /// `∂ℓ_i/∂x_i`, if the layer is not the first (the first layer's input is data).
    pub dx: Option<&'a [f64]>,
    /// `R{x}`, the directional derivative of the input; `None` for data (zero).
    pub rx: Option<&'a [f64]>,
    /// `R{y}`.
    pub ry: &'a [f64],
}

/// What a layer's buffers take for chunks of `b` samples, in bytes ([`Layer::footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerFootprint {
    /// Buffers held for this layer alone: its output, the gradient with respect to it and its
    /// saved values.
    pub kept: u128,
    /// Scratch, shared by the layers of a model (a workspace holds the largest).
    pub scratch: u128,
}

/// A layer kind: everything the engine needs of it (see the module docs for the conventions).
pub trait Layer: Debug + Send + Sync {
    /// The kind's name in specs (`linear`, `relu`, …).
    fn kind(&self) -> &'static str;
    /// A short description, e.g. `linear 10 → 20, bias`.
    fn describe(&self) -> String;
    /// Per-sample input shape.
    fn in_shape(&self) -> &[usize];
    /// Per-sample output shape.
    fn out_shape(&self) -> &[usize];
    /// Per-sample input size.
    fn in_dim(&self) -> usize {
        self.in_shape().iter().product()
    }
    /// Per-sample output size.
    fn out_dim(&self) -> usize {
        self.out_shape().iter().product()
    }
    /// Parameter blocks, in layout order.
    fn blocks(&self) -> Vec<BlockSpec>;
    /// Number of parameters.
    fn n_params(&self) -> usize {
        self.blocks().iter().map(BlockSpec::len).sum()
    }
    /// Values per sample kept from the forward to the backward pass.
    fn saved_per_sample(&self) -> usize {
        0
    }
    /// Scratch values needed by any method for a chunk of `b` samples.
    fn scratch_len(&self, _b: usize) -> usize {
        0
    }
    /// The memory a model's [`crate::core::models::Workspace`] holds for this layer for chunks of
    /// `b` samples ([`LayerFootprint`]): its output and the gradient with respect to it
    /// (`2 · b · out_dim` values), its saved values (`b · saved_per_sample`) and its scratch
    /// ([`Layer::scratch_len`]`(b)` values, shared between layers: the workspace holds the largest).
    /// A layer that allocates anything else while it runs overrides this to count it.
    fn footprint(&self, b: usize) -> LayerFootprint {
        let per = 2 * self.out_dim() as u128 + self.saved_per_sample() as u128;
        LayerFootprint {
            kept: per.saturating_mul(b as u128).saturating_mul(F64),
            scratch: (self.scratch_len(b) as u128).saturating_mul(F64),
        }
    }
    /// The layer's structure, for the symmetry catalog.
    fn structure(&self) -> Structure {
        Structure::Opaque
    }
    /// Symmetries of the layer itself (see [`Intrinsic`]).
    fn intrinsic_symmetries(&self) -> Vec<Intrinsic> {
        Vec::new()
    }
    /// Output units that scale with parameters (see [`Units`]); `None` for none.
    fn units(&self) -> Option<Units> {
        None
    }
    /// What happens to the input positions `positions`, all scaled by one `c > 0` (see [`Pass`]).
    fn pass(&self, _positions: &[usize]) -> Pass {
        Pass::Block
    }
    /// Whether the output is unchanged, exactly, when the whole input is scaled by any `c > 0`
    /// (a normalization without an ε): the parameters that produce its input are then scale
    /// invariant.
    fn normalizes_input(&self) -> bool {
        false
    }
    /// The layers inside a block layer (a residual block), with their places in the block's
    /// parameters; the symmetry catalog looks inside.
    fn children(&self) -> &[Child] {
        &[]
    }
    /// How far the inputs `x` (`b` samples) are from a point where the layer is not
    /// differentiable (a ReLU's kink at 0, a tie in a max-pooling window), at parameters `p`;
    /// `∞` for smooth layers. For finite-difference checks, whose steps must not cross such
    /// points (allocates; not for hot loops).
    fn kink_distance(&self, _p: &[f64], _x: &[f64], _b: usize) -> f64 {
        f64::INFINITY
    }
    /// The layer's fixed buffers by local name, as PyTorch's `state_dict()` holds them beside the
    /// parameters (`running_mean`, `running_var` of a batch-norm): not part of θ, never trained;
    /// their values come from the spec. `None` for a buffer whose value nequil does not use
    /// (`num_batches_tracked`). A weights file may hold them: a value is checked against the
    /// spec's (see [`crate::lab::io::theta_from_tensors`]). By default a block layer's children's,
    /// prefixed by their module names.
    fn buffers(&self) -> Vec<(String, Option<Vec<f64>>)> {
        self.children()
            .iter()
            .flat_map(|c| {
                c.layer
                    .buffers()
                    .into_iter()
                    .map(move |(n, v)| (format!("{}.{n}", c.module), v))
            })
            .collect()
    }
    /// Parameters that do not affect the output at all (attention's key bias: softmax ignores a
    /// shift shared by all keys), as local indices; their gradient is identically zero.
    fn inert_params(&self) -> Vec<usize> {
        Vec::new()
    }

    /// `y = layer(x)` for `b` samples; fills `saved`.
    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], saved: &mut [f64], b: usize, scratch: &mut [f64]);

    /// From `dy`: writes `dx` (if asked) and, if `grad` is given, **overwrites** it with
    /// `alpha · Σ_i g_i`, where `g_i` is the gradient of `ℓ_i` with respect to the layer's parameters.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        p: &[f64],
        f: Fwd<'_>,
        dy: &[f64],
        dx: Option<&mut [f64]>,
        grad: Option<&mut [f64]>,
        alpha: f64,
        b: usize,
        scratch: &mut [f64],
    );

    /// Adds `Σ_i g_i ⊙ g_i` (per-parameter) to `sm`.
    fn grad_sq(&self, p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        per_sample_grad_sq(self, p, f, dy, b, sm, scratch);
    }

    /// Adds `g_iᵀ diag(d) g_i` to `q[i]` for each sample (`d`: the layer's part of the diagonal).
    #[allow(clippy::too_many_arguments)]
    fn grad_quad(&self, p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, d: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        per_sample_grad_quad(self, p, f, dy, b, d, q, scratch);
    }

    /// R-forward: `ry = R{y}` along the parameter direction `v` (the layer's slice) and the input
    /// direction `rx` (`None`: zero).
    #[allow(clippy::too_many_arguments)]
    fn rforward(
        &self,
        p: &[f64],
        v: &[f64],
        f: Fwd<'_>,
        rx: Option<&[f64]>,
        ry: &mut [f64],
        b: usize,
        scratch: &mut [f64],
    );

    /// R-backward: from `rdy = R{∂ℓ_i/∂y_i}`, writes `rdx = R{∂ℓ_i/∂x_i}` (if asked) and adds
    /// `alpha · Σ_i R{g_i}` (the layer's block of `Σ_i H_i v`) to `hv`.
    #[allow(clippy::too_many_arguments)]
    fn rbackward(
        &self,
        p: &[f64],
        v: &[f64],
        r: RFwd<'_>,
        rdy: &[f64],
        rdx: Option<&mut [f64]>,
        hv: &mut [f64],
        alpha: f64,
        b: usize,
        scratch: &mut [f64],
    );
}

/// The features `J` when `positions` (in a row-major `[t, width]` tensor) are exactly
/// `{p·width + j : p < t, j ∈ J}`: the same features at every position. `None` otherwise.
pub fn features_at_every_position(positions: &[usize], width: usize, t: usize) -> Option<Vec<usize>> {
    let mut feats: Vec<usize> = positions.iter().filter(|&&p| p < width).copied().collect();
    feats.sort_unstable();
    feats.dedup();
    if feats.is_empty() || positions.len() != feats.len() * t {
        return None;
    }
    let mut all: Vec<usize> = (0..t).flat_map(|p| feats.iter().map(move |j| p * width + j)).collect();
    let mut given = positions.to_vec();
    all.sort_unstable();
    given.sort_unstable();
    (all == given).then_some(feats)
}

/// The sample-`i` view of a chunk.
fn sample<'a, L: Layer + ?Sized>(l: &L, f: Fwd<'a>, i: usize) -> Fwd<'a> {
    let (di, dout, ds) = (l.in_dim(), l.out_dim(), l.saved_per_sample());
    Fwd {
        x: &f.x[i * di..(i + 1) * di],
        y: &f.y[i * dout..(i + 1) * dout],
        saved: &f.saved[i * ds..(i + 1) * ds],
    }
}

/// [`Layer::grad_sq`] by one backward pass per sample (the per-sample gradient of the layer's
/// parameters, `n_params` values, lives in `scratch`). For layers without a closed form.
pub fn per_sample_grad_sq<L: Layer + ?Sized>(
    l: &L,
    p: &[f64],
    f: Fwd<'_>,
    dy: &[f64],
    b: usize,
    sm: &mut [f64],
    scratch: &mut [f64],
) {
    let np = l.n_params();
    if np == 0 {
        return;
    }
    let dout = l.out_dim();
    let (g, rest) = scratch.split_at_mut(np);
    for i in 0..b {
        l.backward(
            p,
            sample(l, f, i),
            &dy[i * dout..(i + 1) * dout],
            None,
            Some(g),
            1.0,
            1,
            rest,
        );
        for (s, v) in sm.iter_mut().zip(g.iter()) {
            *s += v * v;
        }
    }
}

/// [`Layer::grad_quad`] by one backward pass per sample (see [`per_sample_grad_sq`]).
#[allow(clippy::too_many_arguments)]
pub fn per_sample_grad_quad<L: Layer + ?Sized>(
    l: &L,
    p: &[f64],
    f: Fwd<'_>,
    dy: &[f64],
    b: usize,
    d: &[f64],
    q: &mut [f64],
    scratch: &mut [f64],
) {
    let np = l.n_params();
    if np == 0 {
        return;
    }
    let dout = l.out_dim();
    let (g, rest) = scratch.split_at_mut(np);
    for (i, qi) in q.iter_mut().enumerate().take(b) {
        l.backward(
            p,
            sample(l, f, i),
            &dy[i * dout..(i + 1) * dout],
            None,
            Some(g),
            1.0,
            1,
            rest,
        );
        *qi += g.iter().zip(d).map(|(v, e)| v * v * e).sum::<f64>();
    }
}
