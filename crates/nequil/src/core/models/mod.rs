//! Models as stacks of layers, on a flat parameter vector (see [`crate::core::params`]).
//!
//! A [`Model`] applies its layers ([`crate::core::layers`]) in order to one sample's input; θ is one
//! flat vector whose named blocks are the layers' blocks, prefixed by each layer's module name
//! (`layers.0.weight`, `layers.0.bias`, …, as a PyTorch `nn.ModuleList` named `layers`; or `0.weight`
//! for an `nn.Sequential`).
//!
//! The paper's families are stacks:
//!
//! * deep linear chains `W_D ⋯ W_1` ([`Model::linear`]: linear layers without biases; the paper's
//!   `U W` is depth 2 and the scalar `u w` model is widths `[1, 1, 1]`);
//! * MLPs ([`Model::mlp`]): linear layers with an activation between consecutive ones (tanh,
//!   ReLU, leaky ReLU or swish), biases optional, a linear output;
//! * Net-A and Net-B ([`Model::scale_net`]): one [`ScaleNet`] layer.
//!
//! Loss convention: per-sample loss `ℓ(θ, (x, y)) = ‖f(x) − y‖²` (no ½); the loss of a batch is the
//! mean over the batch, and "the gradient" is the gradient of that mean.
//!
//! Initialization ([`Init`]) maps to the paper's notation as follows: for the two-layer net
//! `U W` (U: `d_y × d`, W: `d × d_x`), Kaiming fan-in gives `σ_W² = 1/d_x`, `σ_U² = 1/d`; Xavier gives
//! `σ_W² = 2/(d_x + d)`, `σ_U² = 2/(d + d_y)`; `Init::Std` sets each weight block's standard
//! deviation directly (`σ_W`, `σ_U` in layer order). Biases start at zero.

use crate::core::footprint::{human_bytes, Footprint};
pub use crate::core::layers::{Activation, LayerConfig, ScaleKind, ScaleNet, MAX_VALUES};
use crate::core::layers::{ActivationLayer, BlockInit, Fwd, Layer, Linear, Structure};
pub use crate::core::loss::Loss;
use crate::core::loss::{cross_entropy_row, cross_entropy_value};
use crate::core::params::Layout;
use crate::core::rng::Rng;
use crate::{invalid, Result};
use std::ops::Range;
use std::sync::Arc;

/// Weight initialization scheme (biases are always initialized to zero, normalization gains to one).
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// `N(0, 1/fan_in)` for every weight block.
    Kaiming,
    /// `N(0, 2/(fan_in + fan_out))`.
    Xavier,
    /// `N(0, s_l²)` with one standard deviation per weight block, in model order.
    Std(Vec<f64>),
}

/// One layer of a model with its place in θ and its names.
#[derive(Clone, Debug)]
pub struct Node {
    layer: Arc<dyn Layer>,
    offset: usize,
    len: usize,
    module: String,
    label: String,
}

impl Node {
    /// The layer.
    pub fn layer(&self) -> &dyn Layer {
        &*self.layer
    }
    /// The layer's parameters' index range in θ.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
    /// Offset of the layer's first parameter in θ.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// Module name, the prefix of the layer's block names (`layers.0`; empty for none).
    pub fn module(&self) -> &str {
        &self.module
    }
    /// The layer's label in symmetry names (`neuron.{label}.{k}`): the index of a linear layer
    /// in an MLP's `layers` list, or its `nn.Sequential` path.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// Full name of the layer's block `local` (`layers.0` + `weight`).
    pub fn block_name(&self, local: &str) -> String {
        if self.module.is_empty() {
            local.to_string()
        } else {
            format!("{}.{local}", self.module)
        }
    }
}

/// A layer to put in a model: the layer, its module name (block-name prefix) and its label in
/// symmetry names.
pub struct NodeSpec {
    /// The layer.
    pub layer: Arc<dyn Layer>,
    /// Module name (`layers.0`, `0`, `2.0`; may be empty).
    pub module: String,
    /// Label in symmetry names.
    pub label: String,
}

/// A model: a stack of layers (see the module docs).
#[derive(Clone, Debug)]
pub struct Model {
    nodes: Vec<Node>,
    layout: Layout,
    desc: String,
    loss: Loss,
}

/// Bytes of `n` values of `f64`, or an error when that overflows.
fn bytes_of(n: usize, what: &str) -> Result<usize> {
    n.checked_mul(8)
        .ok_or_else(|| invalid!("{what}: {n} values do not fit in memory on any machine"))
}

impl Model {
    /// A model from a stack of layers, described by `desc`. Consecutive layers' shapes must match;
    /// every size must be positive and the parameter count must fit in memory arithmetic (errors
    /// name the layer).
    pub fn from_nodes(nodes: Vec<NodeSpec>, desc: impl Into<String>) -> Result<Self> {
        if nodes.is_empty() {
            return Err(invalid!("model: needs at least one layer"));
        }
        let mut layout = Layout::new();
        let mut out = Vec::with_capacity(nodes.len());
        let mut prev: Option<Vec<usize>> = None;
        for (k, n) in nodes.into_iter().enumerate() {
            let l = &n.layer;
            if let Some(p) = &prev {
                if p.as_slice() != l.in_shape() {
                    return Err(invalid!(
                        "model: layer {k} ({}) takes inputs of shape {:?}, the layer before gives {:?}",
                        l.describe(),
                        l.in_shape(),
                        p
                    ));
                }
            }
            for (what, shape) in [("input", l.in_shape()), ("output", l.out_shape())] {
                let mut total = 1usize;
                for &d in shape {
                    if d == 0 {
                        return Err(invalid!(
                            "model: layer {k} ({}) has an empty {what} {shape:?}",
                            l.describe()
                        ));
                    }
                    total = total.checked_mul(d).ok_or_else(|| {
                        invalid!("model: layer {k} ({}): {what} shape {shape:?} overflows", l.describe())
                    })?;
                }
            }
            let offset = layout.len();
            let mut len = 0usize;
            for b in l.blocks() {
                let mut size = 1usize;
                for &d in &b.shape {
                    size = size.checked_mul(d).ok_or_else(|| {
                        invalid!(
                            "model: block {} of shape {:?} has more entries than can be counted",
                            if n.module.is_empty() {
                                b.name.clone()
                            } else {
                                format!("{}.{}", n.module, b.name)
                            },
                            b.shape
                        )
                    })?;
                }
                len = len
                    .checked_add(size)
                    .filter(|t| t.checked_add(offset).is_some())
                    .ok_or_else(|| invalid!("model: the parameter count overflows at layer {k} ({})", l.describe()))?;
                let name = if n.module.is_empty() {
                    b.name
                } else {
                    format!("{}.{}", n.module, b.name)
                };
                if layout.find(&name).is_some() {
                    return Err(invalid!("model: two parameter blocks are named `{name}`"));
                }
                layout.push(name, b.shape);
            }
            prev = Some(l.out_shape().to_vec());
            out.push(Node {
                layer: n.layer,
                offset,
                len,
                module: n.module,
                label: n.label,
            });
        }
        bytes_of(layout.len(), "model: the parameters")?;
        Ok(Model {
            nodes: out,
            layout,
            desc: desc.into(),
            loss: Loss::Mse,
        })
    }

    /// An MLP with the given widths (at least two: input and output), hidden activation and
    /// biases: `linear, φ, linear, φ, …, linear`, named `layers.{l}.weight`/`layers.{l}.bias`.
    /// A deep linear chain is `Model::mlp(widths, Activation::Identity, false)` (no activation
    /// layers at all; see [`Model::linear`]).
    pub fn mlp(widths: &[usize], act: Activation, bias: bool) -> Result<Self> {
        if widths.len() < 2 {
            return Err(invalid!(
                "model.widths: need at least an input and an output width, got {widths:?}"
            ));
        }
        if let Some(i) = widths.iter().position(|&w| w == 0) {
            return Err(invalid!("model.widths[{i}]: widths must be positive"));
        }
        if let Activation::LeakyRelu(s) = act {
            if !s.is_finite() {
                return Err(invalid!("model.leaky_slope: must be finite, got {s}"));
            }
        }
        let d = widths.len() - 1;
        let mut nodes = Vec::new();
        for l in 0..d {
            nodes.push(NodeSpec {
                layer: Arc::new(Linear::new(widths[l], widths[l + 1], bias)),
                module: format!("layers.{l}"),
                label: l.to_string(),
            });
            if l + 1 < d && act != Activation::Identity {
                nodes.push(NodeSpec {
                    layer: Arc::new(ActivationLayer::new(act, vec![widths[l + 1]])),
                    module: String::new(),
                    label: String::new(),
                });
            }
        }
        let desc = format!(
            "MLP {widths:?}, activation {}, {}",
            act.name(),
            if bias { "with biases" } else { "no biases" }
        );
        Self::from_nodes(nodes, desc)
    }

    /// A deep linear chain `W_D ⋯ W_1` without biases.
    pub fn linear(widths: &[usize]) -> Result<Self> {
        Self::mlp(widths, Activation::Identity, false)
    }

    /// Net-A or Net-B with widths `[d_in, hidden, d_out]`; blocks `layers.0.weight` (W) and
    /// `layers.1.weight` (U).
    pub fn scale_net(kind: ScaleKind, d_in: usize, hidden: usize, d_out: usize) -> Result<Self> {
        if d_in == 0 || hidden == 0 || d_out == 0 {
            return Err(invalid!(
                "model.widths: widths must be positive, got [{d_in}, {hidden}, {d_out}]"
            ));
        }
        let net = ScaleNet::new(kind, d_in, hidden, d_out);
        let desc = net.describe();
        Self::from_nodes(
            vec![NodeSpec {
                layer: Arc::new(net),
                module: "layers".into(),
                label: String::new(),
            }],
            desc,
        )
    }

    /// The layers with their places in θ.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// The named layout of θ.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// Number of parameters P.
    pub fn n_params(&self) -> usize {
        self.layout.len()
    }
    /// Per-sample input shape.
    pub fn in_shape(&self) -> &[usize] {
        self.nodes[0].layer.in_shape()
    }
    /// Per-sample output shape.
    pub fn out_shape(&self) -> &[usize] {
        self.nodes.last().expect("a model has layers").layer.out_shape()
    }
    /// Input size per sample.
    pub fn d_in(&self) -> usize {
        self.nodes[0].layer.in_dim()
    }
    /// Output size per sample.
    pub fn d_out(&self) -> usize {
        self.nodes.last().expect("a model has layers").layer.out_dim()
    }
    /// A short human-readable description.
    pub fn describe(&self) -> String {
        self.desc.clone()
    }

    /// The model scored by `loss` ([`crate::core::loss`]; models are built with [`Loss::Mse`]).
    /// Cross-entropy reads the output's last axis as logits over `K ≥ 2` classes; an output with
    /// fewer is an error naming `key`.
    pub fn with_loss(mut self, loss: Loss, key: &str) -> Result<Self> {
        if loss == Loss::CrossEntropy {
            let k = self.out_shape().last().copied().unwrap_or(0);
            if k < 2 {
                return Err(invalid!(
                    "{key}: cross-entropy needs at least 2 logits on the output's last axis, the model's output has shape {:?}",
                    self.out_shape()
                ));
            }
        }
        self.loss = loss;
        Ok(self)
    }
    /// The per-sample loss the model is scored by.
    pub fn loss_kind(&self) -> Loss {
        self.loss
    }
    /// Number of classes K of cross-entropy: the size of the output's last axis.
    pub fn classes(&self) -> usize {
        self.out_shape().last().copied().unwrap_or(1)
    }
    /// Target values per sample: `d_out` for the mean-squared error; one label per position
    /// (`d_out / K`: 1 for an output `[K]`, T for a sequence's `[T, K]`) for cross-entropy.
    pub fn d_y(&self) -> usize {
        match self.loss {
            Loss::Mse => self.d_out(),
            Loss::CrossEntropy => self.d_out() / self.classes(),
        }
    }
    /// Checks `n` samples' targets `y` for this model's loss: for cross-entropy, integer labels
    /// in `0..K` (errors name `what`, the sample and the value); nothing for the mean-squared
    /// error.
    pub fn check_targets(&self, y: &[f64], n: usize, what: &str) -> Result<()> {
        match self.loss {
            Loss::Mse => Ok(()),
            Loss::CrossEntropy => {
                let d = self.d_y();
                crate::core::loss::check_labels(&y[..(n * d).min(y.len())], self.classes(), d, what)
            }
        }
    }

    /// The model as a chain of dense layers with one activation between consecutive ones, if it
    /// is one (deep linear chains, MLPs).
    pub fn as_chain(&self) -> Option<DenseChain> {
        let mut widths = vec![];
        let mut w_off = vec![];
        let mut b_off = vec![];
        let mut bias = None;
        let mut act: Option<Activation> = None;
        let mut expect_dense = true;
        for n in &self.nodes {
            let l = n.layer();
            match l.structure() {
                Structure::Dense {
                    out,
                    inp,
                    bias: has,
                    positions: 1,
                } if expect_dense => {
                    if *bias.get_or_insert(has) != has {
                        return None;
                    }
                    if widths.is_empty() {
                        widths.push(inp);
                    }
                    widths.push(out);
                    w_off.push(n.offset);
                    b_off.push(has.then_some(n.offset + out * inp));
                    expect_dense = false;
                }
                Structure::Elementwise { activation, .. } if !expect_dense => {
                    let a = activation?;
                    if *act.get_or_insert(a) != a {
                        return None;
                    }
                    expect_dense = true;
                }
                Structure::Dense {
                    out,
                    inp,
                    bias: has,
                    positions: 1,
                } => {
                    // Dense after dense: only in chains without activation layers.
                    if act.is_some() || *bias.get_or_insert(has) != has {
                        return None;
                    }
                    if widths.last() != Some(&inp) {
                        return None;
                    }
                    widths.push(out);
                    w_off.push(n.offset);
                    b_off.push(has.then_some(n.offset + out * inp));
                }
                _ => return None,
            }
        }
        if expect_dense && !w_off.is_empty() {
            return None; // ends with an activation
        }
        Some(DenseChain {
            desc: self.describe(),
            n_params: self.n_params(),
            widths,
            act: act.unwrap_or(Activation::Identity),
            bias: bias?,
            w_off,
            b_off,
            loss: self.loss,
        })
    }

    /// [`Model::as_chain`], or an error naming the model.
    pub fn chain(&self) -> Result<DenseChain> {
        self.as_chain().ok_or_else(|| {
            invalid!(
                "needs a chain of dense layers with one activation between them, got {}",
                self.describe()
            )
        })
    }

    /// The model as a deep linear chain (dense layers without biases, nothing between them).
    pub fn as_linear_chain(&self) -> Option<DenseChain> {
        self.as_chain()
            .filter(|c| c.activation() == Activation::Identity && !c.has_bias())
    }

    /// The footprint of a [`Workspace`] for batches of `batch` samples, from the layers'
    /// declarations ([`Layer::footprint`]): one part for the buffers every layer keeps (`Σ_l kept_l`:
    /// outputs, their gradients, saved values, and the buffers' handles), naming the largest layer,
    /// and one for the scratch the layers share (`max_l scratch_l`).
    pub fn footprint(&self, batch: usize) -> Footprint {
        let mut kept = 0u128;
        let mut scratch = 0u128;
        let mut largest: Option<(u128, &Node)> = None;
        for n in &self.nodes {
            let f = n.layer().footprint(batch);
            kept = kept.saturating_add(f.kept);
            scratch = scratch.max(f.scratch);
            if largest.is_none_or(|(b, _)| f.kept > b) {
                largest = Some((f.kept, n));
            }
        }
        // The handles of the buffers: three per layer.
        let handles = 3 * self.nodes.len() as u128 * std::mem::size_of::<Vec<f64>>() as u128;
        let mut f = Footprint::new();
        let big = match largest {
            Some((b, n)) if self.nodes.len() > 1 => {
                let name = if n.module().is_empty() {
                    String::new()
                } else {
                    format!("{} ", n.module())
                };
                format!(" (largest: {name}{} {})", n.layer().describe(), human_bytes(b))
            }
            _ => String::new(),
        };
        f.add(
            format!("layer buffers for batches of {batch}{big}"),
            kept.saturating_add(handles),
            1,
        );
        f.add(format!("layer scratch for batches of {batch}"), scratch, 1);
        f
    }

    /// Bytes of the buffers of a [`Workspace`] for batches of `batch` samples, or an error if the
    /// count overflows.
    pub fn workspace_bytes(&self, batch: usize) -> Result<usize> {
        let mut vals = 0usize;
        let mut scratch = 0usize;
        for n in &self.nodes {
            let l = n.layer();
            let per = l
                .out_dim()
                .checked_mul(2)
                .and_then(|v| v.checked_add(l.saved_per_sample()))
                .and_then(|v| v.checked_mul(batch));
            vals = per
                .and_then(|p| vals.checked_add(p))
                .ok_or_else(|| invalid!("workspace for batches of {batch}: its size overflows"))?;
            scratch = scratch.max(l.scratch_len(batch));
        }
        bytes_of(
            vals.checked_add(scratch)
                .ok_or_else(|| invalid!("workspace for batches of {batch}: its size overflows"))?,
            "workspace",
        )
    }

    /// Buffers for batches of up to `batch` samples.
    pub fn workspace(&self, batch: usize) -> Workspace {
        let mk = |f: &dyn Fn(&dyn Layer) -> usize| self.nodes.iter().map(|n| vec![0.0; batch * f(n.layer())]).collect();
        Workspace {
            batch,
            out: mk(&|l| l.out_dim()),
            delta: mk(&|l| l.out_dim()),
            saved: mk(&|l| l.saved_per_sample()),
            scratch: vec![
                0.0;
                self.nodes
                    .iter()
                    .map(|n| n.layer().scratch_len(batch))
                    .max()
                    .unwrap_or(0)
            ],
        }
    }

    /// Initial parameters drawn with `init` from `rng`: weight blocks in model order, each from
    /// `N(0, σ²)`; biases zero, gains one. Errors if θ cannot be allocated.
    pub fn init(&self, init: &Init, rng: &mut Rng) -> Result<Vec<f64>> {
        let n_weights = self
            .nodes
            .iter()
            .flat_map(|n| n.layer().blocks())
            .filter(|b| matches!(b.init, BlockInit::Weight { .. }))
            .count();
        if let Init::Std(s) = init {
            if s.len() != n_weights {
                return Err(invalid!(
                    "model.init_std: {} values given, the model has {} weight matrices",
                    s.len(),
                    n_weights
                ));
            }
            if let Some(v) = s.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(invalid!(
                    "model.init_std: standard deviations must be finite and ≥ 0, got {v}"
                ));
            }
        }
        let mut theta = zeros(self.n_params(), "θ")?;
        let mut l = 0;
        let mut off = 0;
        for n in &self.nodes {
            for b in n.layer().blocks() {
                let r = off..off + b.len();
                off = r.end;
                match b.init {
                    BlockInit::Weight { fan_in, fan_out } => {
                        let (fi, fo) = (fan_in as f64, fan_out as f64);
                        let sd = match init {
                            Init::Kaiming => (1.0 / fi).sqrt(),
                            Init::Xavier => (2.0 / (fi + fo)).sqrt(),
                            Init::Std(s) => s[l],
                        };
                        for v in &mut theta[r] {
                            *v = sd * rng.normal();
                        }
                        l += 1;
                    }
                    BlockInit::Zeros => {}
                    BlockInit::Ones => theta[r].fill(1.0),
                }
            }
        }
        Ok(theta)
    }

    /// Forward pass on `b` samples `x` (`b × d_in`); outputs are in [`Workspace::output`].
    pub fn forward(&self, theta: &[f64], x: &[f64], b: usize, ws: &mut Workspace) {
        debug_assert!(b <= ws.batch);
        for (k, n) in self.nodes.iter().enumerate() {
            let (prev, rest) = ws.out.split_at_mut(k);
            let input: &[f64] = if k == 0 { x } else { &prev[k - 1] };
            n.layer.forward(
                &theta[n.range()],
                input,
                &mut rest[0],
                &mut ws.saved[k],
                b,
                &mut ws.scratch,
            );
        }
    }

    /// Backward pass after [`Model::forward`] with the per-sample output gradients `δ` already in
    /// the workspace ([`Workspace::output_grad_mut`]): fills every layer's `δ` and, if `grad` is
    /// given, the mean gradient `(1/b) Σ_i ∇ℓ_i`.
    pub fn backward(&self, theta: &[f64], x: &[f64], b: usize, grad: Option<&mut [f64]>, ws: &mut Workspace) {
        let mut grad = grad;
        let inv_b = 1.0 / b as f64;
        for k in (0..self.nodes.len()).rev() {
            let n = &self.nodes[k];
            let (lo, hi) = ws.delta.split_at_mut(k);
            let dx = if k > 0 { Some(&mut lo[k - 1][..]) } else { None };
            let g = grad.as_deref_mut().map(|g| &mut g[n.range()]);
            if dx.is_none() && (g.is_none() || n.len == 0) {
                continue;
            }
            let f = Fwd {
                x: if k == 0 { x } else { &ws.out[k - 1] },
                y: &ws.out[k],
                saved: &ws.saved[k],
            };
            n.layer
                .backward(&theta[n.range()], f, &hi[0], dx, g, inv_b, b, &mut ws.scratch);
        }
    }

    /// How far the `b` samples `x` are, at θ, from a point where the model is not differentiable
    /// (ReLU kinks, pooling ties; [`Layer::kink_distance`]); `∞` for smooth models. For
    /// finite-difference checks (allocates).
    pub fn kink_distance(&self, theta: &[f64], x: &[f64], b: usize) -> f64 {
        let mut ws = self.workspace(b);
        self.forward(theta, x, b, &mut ws);
        self.nodes
            .iter()
            .enumerate()
            .map(|(k, n)| {
                let input: &[f64] = if k == 0 { x } else { &ws.out[k - 1] };
                n.layer.kink_distance(&theta[n.range()], input, b)
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Mean loss `(1/b) Σ_i ℓ_i` of a batch (`ℓ_i = ‖f(x_i) − y_i‖²` for the mean-squared error;
    /// see [`crate::core::loss`]). `y` holds [`Model::d_y`] values per sample.
    pub fn loss(&self, theta: &[f64], x: &[f64], y: &[f64], b: usize, ws: &mut Workspace) -> f64 {
        self.forward(theta, x, b, ws);
        let f = ws.output();
        match self.loss {
            Loss::Mse => {
                let n = b * self.d_out();
                f[..n].iter().zip(&y[..n]).map(|(a, c)| (a - c) * (a - c)).sum::<f64>() / b as f64
            }
            Loss::CrossEntropy => {
                let (k, t) = (self.classes(), self.d_y());
                let mut total = 0.0;
                for i in 0..b {
                    let mut li = 0.0;
                    for p in 0..t {
                        let r = (i * t + p) * k;
                        li += cross_entropy_value(&f[r..r + k], y[i * t + p]);
                    }
                    total += li / t as f64;
                }
                total / b as f64
            }
        }
    }

    /// Forward pass and the per-sample output gradients `δ_i = ∂ℓ_i/∂f(x_i)` in the workspace
    /// (`2(f − y)` for the mean-squared error, `(softmax(f_t) − e_{y_t})/T` per position for
    /// cross-entropy); returns the mean loss.
    pub(crate) fn forward_residual(&self, theta: &[f64], x: &[f64], y: &[f64], b: usize, ws: &mut Workspace) -> f64 {
        self.forward(theta, x, b, ws);
        let last = self.nodes.len() - 1;
        let dout = self.d_out();
        let mut loss = 0.0;
        let (f, delta) = (&ws.out[last], &mut ws.delta[last]);
        match self.loss {
            Loss::Mse => {
                for ((dv, fv), yv) in delta[..b * dout].iter_mut().zip(&f[..b * dout]).zip(&y[..b * dout]) {
                    let r = fv - yv;
                    loss += r * r;
                    *dv = 2.0 * r;
                }
            }
            Loss::CrossEntropy => {
                let (k, t) = (self.classes(), self.d_y());
                let scale = 1.0 / t as f64;
                for i in 0..b {
                    let mut li = 0.0;
                    for p in 0..t {
                        let r = (i * t + p) * k..(i * t + p + 1) * k;
                        li += cross_entropy_row(&f[r.clone()], y[i * t + p], &mut delta[r], scale);
                    }
                    loss += li * scale;
                }
            }
        }
        loss / b as f64
    }

    /// Mean loss of a batch and its gradient, written into `grad` (length P). Leaves every layer's
    /// per-sample `δ` in the workspace (for [`crate::core::stats`]). Allocation-free.
    pub fn loss_grad(
        &self,
        theta: &[f64],
        x: &[f64],
        y: &[f64],
        b: usize,
        grad: &mut [f64],
        ws: &mut Workspace,
    ) -> f64 {
        debug_assert!(b <= ws.batch && grad.len() == self.n_params());
        let loss = self.forward_residual(theta, x, y, b, ws);
        self.backward(theta, x, b, Some(grad), ws);
        loss
    }

    /// Loss over a large set in chunks of the workspace's batch size.
    pub fn loss_chunked(&self, theta: &[f64], x: &[f64], y: &[f64], n: usize, ws: &mut Workspace) -> f64 {
        let (dx, dy) = (self.d_in(), self.d_y());
        let mut total = 0.0;
        for_chunks(n, ws.batch, |i, b| {
            total += b as f64 * self.loss(theta, &x[i * dx..(i + b) * dx], &y[i * dy..(i + b) * dy], b, ws);
        });
        total / n as f64
    }
}

impl Model {
    /// An `nn.Sequential` model: the layers applied in order to per-sample inputs of shape
    /// `input`, named `{i}.weight`, `{i}.bias`, … (`{i}.{j}.weight` inside residual blocks), as
    /// PyTorch names them. Each layer's input shape is the previous one's output; errors name
    /// the layer (`model.layers[2]`, `model.layers[2].kernel`) and what does not fit. The layers
    /// are the registry's configurations ([`LayerConfig`]), as a spec's `model.layers` holds them.
    ///
    /// ```
    /// use nequil::core::layers::{Conv2dConfig, FlattenConfig, KernelSpec, LinearConfig, ReluConfig};
    /// use nequil::{catalog, grad_stats, Init, Model, Rng};
    ///
    /// # fn main() -> nequil::Result<()> {
    /// // A small CNN on 1×6×6 images: conv 3 channels (3×3, padding 1), ReLU, flatten, linear head.
    /// let model = Model::sequential(
    ///     &[1, 6, 6],
    ///     &[
    ///         Conv2dConfig {
    ///             out_channels: 3,
    ///             kernel: KernelSpec::Square(3),
    ///             stride: 1,
    ///             padding: 1.into(),
    ///             dilation: KernelSpec::Square(1),
    ///             groups: 1,
    ///             bias: true,
    ///         }
    ///         .into(),
    ///         ReluConfig {}.into(),
    ///         FlattenConfig {}.into(),
    ///         LinearConfig { out_features: 2, bias: true }.into(),
    ///     ],
    /// )?;
    /// assert_eq!(model.n_params(), 3 * 9 + 3 + 2 * 108 + 2);
    /// // The symmetries are derived from the stack: one rescaling per ReLU channel.
    /// let cat = catalog(&model);
    /// assert_eq!(cat.symmetries.iter().filter(|s| s.name.starts_with("channel.0.")).count(), 3);
    /// // Exact per-sample gradient statistics of 5 samples.
    /// let theta = model.init(&Init::Kaiming, &mut Rng::new(0))?;
    /// let mut rng = Rng::new(1);
    /// let (mut x, mut y) = (vec![0.0; 5 * 36], vec![0.0; 5 * 2]);
    /// rng.fill_normal(&mut x);
    /// rng.fill_normal(&mut y);
    /// let st = grad_stats(&model, &theta, &x, &y, 5, &mut model.workspace(5));
    /// assert!(st.variance().iter().all(|v| *v >= -1e-12));
    /// # Ok(())
    /// # }
    /// ```
    pub fn sequential(input: &[usize], layers: &[LayerConfig]) -> Result<Self> {
        if input.is_empty() || input.contains(&0) {
            return Err(invalid!(
                "model.input: the per-sample shape must be non-empty with positive sizes, got {input:?}"
            ));
        }
        if layers.is_empty() {
            return Err(invalid!("model.layers: needs at least one layer"));
        }
        let mut shape = input.to_vec();
        let mut nodes = vec![];
        let mut names = vec![];
        for (i, d) in layers.iter().enumerate() {
            let l = d.build(&shape, &format!("model.layers[{i}]"))?;
            shape = l.out_shape().to_vec();
            names.push(l.kind());
            nodes.push(NodeSpec {
                layer: l,
                module: i.to_string(),
                label: i.to_string(),
            });
        }
        let desc = format!("sequential {input:?} → {shape:?}: {}", names.join(", "));
        Self::from_nodes(nodes, desc)
    }
}

/// A zero vector of `n` values, or an error naming `what` if it cannot be allocated.
pub(crate) fn zeros(n: usize, what: &str) -> Result<Vec<f64>> {
    let bytes = bytes_of(n, what)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| invalid!("{what}: cannot allocate {n} values ({bytes} bytes)"))?;
    v.resize(n, 0.0);
    Ok(v)
}

/// A view of a model that is a chain of dense layers with one activation φ between consecutive
/// ones ([`Model::as_chain`]): `a_0 = x`, `z_{l+1} = W_l a_l + b_l`, `a_{l+1} = φ(z_{l+1})` for
/// hidden layers, `f(x) = z_D`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseChain {
    desc: String,
    n_params: usize,
    widths: Vec<usize>,
    act: Activation,
    bias: bool,
    w_off: Vec<usize>,
    b_off: Vec<Option<usize>>,
    loss: Loss,
}

impl DenseChain {
    /// The loss of the model the chain was read from. The closed forms of linear chains (the
    /// equilibria of Theorems 5.2 and 5.4, the population Hessian, the sharpness) are claims about
    /// the mean-squared error: [`Loss::mse_only`] refuses them for cross-entropy.
    pub fn loss(&self) -> Loss {
        self.loss
    }
    /// The model's description.
    pub fn describe(&self) -> String {
        self.desc.clone()
    }
    /// Number of parameters P of the model.
    pub fn n_params(&self) -> usize {
        self.n_params
    }
    /// Widths `[d_0, …, d_D]`.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }
    /// Depth D (number of weight matrices).
    pub fn depth(&self) -> usize {
        self.widths.len() - 1
    }
    /// Hidden activation (identity for linear chains).
    pub fn activation(&self) -> Activation {
        self.act
    }
    /// Whether layers have biases.
    pub fn has_bias(&self) -> bool {
        self.bias
    }
    /// Offset of weight `W_l` in θ.
    pub fn weight_offset(&self, l: usize) -> usize {
        self.w_off[l]
    }
    /// Offset of bias `b_l` in θ, if present.
    pub fn bias_offset(&self, l: usize) -> Option<usize> {
        self.b_off[l]
    }
}

/// Preallocated buffers for one batch size. Create with [`Model::workspace`]; reuse across steps.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The batch size the buffers were sized for (the maximum usable batch).
    pub batch: usize,
    /// Output of every layer, `batch × out_dim`.
    pub(crate) out: Vec<Vec<f64>>,
    /// Per-sample gradients `∂ℓ_i/∂(output of the layer)` (unscaled by the batch size).
    pub(crate) delta: Vec<Vec<f64>>,
    /// Values each layer keeps from its forward to its backward pass.
    pub(crate) saved: Vec<Vec<f64>>,
    /// Scratch shared by the layers.
    pub(crate) scratch: Vec<f64>,
}

impl Workspace {
    /// The outputs `f(x_i)` of the last forward pass, `b × d_out` row-major.
    pub fn output(&self) -> &[f64] {
        self.out.last().expect("model has layers")
    }
    /// The per-sample gradients with respect to the output, to be set before [`Model::backward`].
    pub fn output_grad_mut(&mut self) -> &mut [f64] {
        self.delta.last_mut().expect("model has layers")
    }
}

/// Calls `f(start, len)` for consecutive chunks of at most `batch` of `n` samples.
pub(crate) fn for_chunks(n: usize, batch: usize, mut f: impl FnMut(usize, usize)) {
    let batch = batch.max(1);
    let mut i = 0;
    while i < n {
        let b = batch.min(n - i);
        f(i, b);
        i += b;
    }
}
