//! The paper's model families, all on a flat parameter vector (see [`crate::core::params`]).
//!
//! * [`Mlp`]: deep linear chains `W_D ⋯ W_1` (activation [`Activation::Identity`], no biases; the
//!   paper's `U W` is depth 2 and the scalar `u w` model is widths `[1, 1, 1]`) and MLPs with tanh,
//!   ReLU, leaky ReLU or swish hidden activations, biases optional. The output layer is linear.
//! * [`ScaleNet`]: the scale-invariant two-layer tanh nets of Fig. 7, Net-A and Net-B.
//!
//! Loss convention: per-sample loss `ℓ(θ, (x, y)) = ‖f(x) − y‖²` (no ½); the loss of a batch is the
//! mean over the batch, and "the gradient" is the gradient of that mean.
//!
//! Initialization ([`Init`]) maps to the paper's notation as follows: for the two-layer net
//! `U W` (U: `d_y × d`, W: `d × d_x`), Kaiming fan-in gives `σ_W² = 1/d_x`, `σ_U² = 1/d`; Xavier gives
//! `σ_W² = 2/(d_x + d)`, `σ_U² = 2/(d + d_y)`; `Init::Std` sets each layer's standard deviation
//! directly (`σ_W`, `σ_U` in layer order). Biases start at zero.

mod mlp;
mod scale;

pub use mlp::{Activation, Mlp};
pub use scale::{ScaleKind, ScaleNet};

use crate::core::params::Layout;
use crate::core::rng::Rng;
use crate::{invalid, Result};

/// Weight initialization scheme (biases are always initialized to zero).
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// `N(0, 1/fan_in)` for every weight matrix.
    Kaiming,
    /// `N(0, 2/(fan_in + fan_out))`.
    Xavier,
    /// `N(0, s_l²)` with one standard deviation per weight matrix, in layer order.
    Std(Vec<f64>),
}

/// Preallocated buffers for one batch size. Create with [`Model::workspace`]; reuse across steps.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The batch size the buffers were sized for (the maximum usable batch).
    pub batch: usize,
    /// Pre-activations `z_l` of layers `1..=D`, each `batch × width_l`. MLP layers without a
    /// nonlinearity (identity hidden layers, the output layer) do not write theirs: there `a = z`.
    pub(crate) z: Vec<Vec<f64>>,
    /// Activations `a_l` of layers `1..=D` (the last is the output), each `batch × width_l`.
    pub(crate) a: Vec<Vec<f64>>,
    /// Per-sample output gradients `δ_l = ∂ℓ_i/∂z_l` of layers `1..=D` (unscaled by the batch size).
    pub(crate) delta: Vec<Vec<f64>>,
    /// Scratch buffers.
    pub(crate) tmp: Vec<Vec<f64>>,
}

impl Workspace {
    fn new(batch: usize, widths: &[usize], tmp: &[usize]) -> Self {
        let mk = || widths[1..].iter().map(|w| vec![0.0; batch * w]).collect::<Vec<_>>();
        Workspace {
            batch,
            z: mk(),
            a: mk(),
            delta: mk(),
            tmp: tmp.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// The outputs `f(x_i)` of the last forward pass, `b × d_out` row-major.
    pub fn output(&self) -> &[f64] {
        self.a.last().expect("model has layers")
    }
}

/// A model of one of the paper's families.
#[derive(Clone, Debug)]
pub enum Model {
    /// Dense chain / MLP.
    Mlp(Mlp),
    /// Net-A or Net-B.
    Scale(ScaleNet),
}

impl Model {
    /// The named layout of θ.
    pub fn layout(&self) -> &Layout {
        match self {
            Model::Mlp(m) => m.layout(),
            Model::Scale(m) => m.layout(),
        }
    }
    /// Number of parameters P.
    pub fn n_params(&self) -> usize {
        self.layout().len()
    }
    /// Layer widths `[d_in, h_1, …, d_out]`.
    pub fn widths(&self) -> &[usize] {
        match self {
            Model::Mlp(m) => m.widths(),
            Model::Scale(m) => m.widths(),
        }
    }
    /// Input dimension.
    pub fn d_in(&self) -> usize {
        self.widths()[0]
    }
    /// Output dimension.
    pub fn d_out(&self) -> usize {
        *self.widths().last().unwrap()
    }
    /// A short human-readable description.
    pub fn describe(&self) -> String {
        match self {
            Model::Mlp(m) => m.describe(),
            Model::Scale(m) => m.describe(),
        }
    }

    /// Buffers for batches of up to `batch` samples.
    pub fn workspace(&self, batch: usize) -> Workspace {
        let w = self.widths();
        let maxw = *w.iter().max().unwrap();
        match self {
            Model::Mlp(_) => Workspace::new(batch, w, &[batch * maxw, batch * maxw, batch]),
            Model::Scale(_) => Workspace::new(batch, w, &[batch * maxw, batch * maxw, batch]),
        }
    }

    /// Initial parameters drawn with `init` from `rng`.
    pub fn init(&self, init: &Init, rng: &mut Rng) -> Result<Vec<f64>> {
        let layout = self.layout();
        let mut theta = vec![0.0; layout.len()];
        let weights: Vec<_> = layout.blocks().iter().filter(|b| b.shape.len() == 2).collect();
        if let Init::Std(s) = init {
            if s.len() != weights.len() {
                return Err(invalid!(
                    "model.init_std: {} values given, the model has {} weight matrices",
                    s.len(),
                    weights.len()
                ));
            }
            if let Some(v) = s.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(invalid!(
                    "model.init_std: standard deviations must be finite and ≥ 0, got {v}"
                ));
            }
        }
        for (l, b) in weights.iter().enumerate() {
            let (fan_out, fan_in) = (b.shape[0] as f64, b.shape[1] as f64);
            let sd = match init {
                Init::Kaiming => (1.0 / fan_in).sqrt(),
                Init::Xavier => (2.0 / (fan_in + fan_out)).sqrt(),
                Init::Std(s) => s[l],
            };
            for v in &mut theta[b.range()] {
                *v = sd * rng.normal();
            }
        }
        Ok(theta)
    }

    /// Forward pass on `b` samples `x` (`b × d_in`); outputs are in [`Workspace::output`].
    pub fn forward(&self, theta: &[f64], x: &[f64], b: usize, ws: &mut Workspace) {
        debug_assert!(b <= ws.batch);
        match self {
            Model::Mlp(m) => m.forward(theta, x, b, ws),
            Model::Scale(m) => m.forward(theta, x, b, ws),
        }
    }

    /// Mean loss `(1/b) Σ_i ‖f(x_i) − y_i‖²` of a batch.
    pub fn loss(&self, theta: &[f64], x: &[f64], y: &[f64], b: usize, ws: &mut Workspace) -> f64 {
        self.forward(theta, x, b, ws);
        let f = ws.output();
        let n = b * self.d_out();
        f[..n].iter().zip(&y[..n]).map(|(a, c)| (a - c) * (a - c)).sum::<f64>() / b as f64
    }

    /// Mean loss of a batch and its gradient, written into `grad` (length P). Leaves the
    /// per-sample output gradients `δ` in the workspace (for [`crate::core::stats`]). Allocation-free.
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
        match self {
            Model::Mlp(m) => m.loss_grad(theta, x, y, b, grad, ws),
            Model::Scale(m) => m.loss_grad(theta, x, y, b, grad, ws),
        }
    }

    /// Loss over a large set in chunks of the workspace's batch size.
    pub fn loss_chunked(&self, theta: &[f64], x: &[f64], y: &[f64], n: usize, ws: &mut Workspace) -> f64 {
        let (dx, dy) = (self.d_in(), self.d_out());
        let mut total = 0.0;
        for_chunks(n, ws.batch, |i, b| {
            total += b as f64 * self.loss(theta, &x[i * dx..(i + b) * dx], &y[i * dy..(i + b) * dy], b, ws);
        });
        total / n as f64
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
