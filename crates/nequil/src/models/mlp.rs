//! Dense chains and MLPs: `a_0 = x`, `z_{l+1} = W_l a_l + b_l`, `a_{l+1} = φ(z_{l+1})` for hidden
//! layers, and `f(x) = z_D` (linear output). Parameters are named `layers.{l}.weight` (`[out, in]`)
//! and `layers.{l}.bias` (`[out]`), as a PyTorch `nn.ModuleList` of `nn.Linear` named `layers`.

use super::Workspace;
use crate::linalg::{gemm_nn, gemm_nt, gemm_tn};
use crate::params::Layout;
use crate::{invalid, Result};

/// Hidden-layer activation function φ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// φ(z) = z (a deep linear network).
    Identity,
    /// φ(z) = tanh z.
    Tanh,
    /// φ(z) = max(z, 0).
    Relu,
    /// φ(z) = z for z > 0, `slope · z` otherwise.
    LeakyRelu(f64),
    /// φ(z) = z · sigmoid(z) (SiLU).
    Swish,
}

impl Activation {
    /// φ(z).
    #[inline]
    pub fn apply(self, z: f64) -> f64 {
        match self {
            Activation::Identity => z,
            Activation::Tanh => crate::math::tanh(z),
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu(s) => {
                if z > 0.0 {
                    z
                } else {
                    s * z
                }
            }
            Activation::Swish => z / (1.0 + (-z).exp()),
        }
    }
    /// φ'(z), given z and a = φ(z).
    #[inline]
    pub fn deriv(self, z: f64, a: f64) -> f64 {
        match self {
            Activation::Identity => 1.0,
            Activation::Tanh => 1.0 - a * a,
            Activation::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(s) => {
                if z > 0.0 {
                    1.0
                } else {
                    s
                }
            }
            Activation::Swish => {
                let s = 1.0 / (1.0 + (-z).exp());
                s + z * s * (1.0 - s)
            }
        }
    }
    /// Whether φ is positively homogeneous (φ(cz) = cφ(z) for c > 0), which gives every hidden
    /// neuron a rescaling symmetry.
    pub fn is_homogeneous(self) -> bool {
        matches!(self, Activation::Identity | Activation::Relu | Activation::LeakyRelu(_))
    }
    /// The name used in specs.
    pub fn name(self) -> String {
        match self {
            Activation::Identity => "identity".into(),
            Activation::Tanh => "tanh".into(),
            Activation::Relu => "relu".into(),
            Activation::LeakyRelu(s) => format!("leaky-relu({s})"),
            Activation::Swish => "swish".into(),
        }
    }
}

/// A dense chain / MLP with widths `[d_0, d_1, …, d_D]`.
#[derive(Clone, Debug)]
pub struct Mlp {
    widths: Vec<usize>,
    act: Activation,
    bias: bool,
    layout: Layout,
    w_off: Vec<usize>,
    b_off: Vec<Option<usize>>,
}

impl Mlp {
    /// An MLP with the given widths (at least two: input and output), hidden activation and
    /// biases. A deep linear chain is `Mlp::new(widths, Activation::Identity, false)`.
    pub fn new(widths: &[usize], act: Activation, bias: bool) -> Result<Self> {
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
        let mut layout = Layout::new();
        let mut w_off = vec![];
        let mut b_off = vec![];
        for l in 0..widths.len() - 1 {
            w_off.push(layout.push(format!("layers.{l}.weight"), vec![widths[l + 1], widths[l]]));
            b_off.push(bias.then(|| layout.push(format!("layers.{l}.bias"), vec![widths[l + 1]])));
        }
        Ok(Mlp {
            widths: widths.to_vec(),
            act,
            bias,
            layout,
            w_off,
            b_off,
        })
    }

    /// Parameter layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// Widths `[d_0, …, d_D]`.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }
    /// Depth D (number of weight matrices).
    pub fn depth(&self) -> usize {
        self.widths.len() - 1
    }
    /// Hidden activation.
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
    pub(crate) fn describe(&self) -> String {
        format!(
            "MLP {:?}, activation {}, {}",
            self.widths,
            self.act.name(),
            if self.bias { "with biases" } else { "no biases" }
        )
    }

    /// Forward pass. Layers without a nonlinearity (identity hidden layers and the output layer)
    /// write their pre-activations straight into `ws.a` and leave `ws.z` untouched (there a = z,
    /// and nothing reads z for them); other layers fill both.
    pub(crate) fn forward(&self, theta: &[f64], x: &[f64], b: usize, ws: &mut Workspace) {
        let d = self.depth();
        for l in 0..d {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let w = &theta[self.w_off[l]..self.w_off[l] + din * dout];
            let (prev, rest) = ws.a.split_at_mut(l);
            let input: &[f64] = if l == 0 { x } else { &prev[l - 1] };
            let linear = l + 1 == d || self.act == Activation::Identity;
            let z = if linear { &mut rest[0] } else { &mut ws.z[l] };
            gemm_nt(z, input, w, b, dout, din, false);
            if let Some(bo) = self.b_off[l] {
                let bias = &theta[bo..bo + dout];
                for row in z[..b * dout].chunks_exact_mut(dout) {
                    for (v, bb) in row.iter_mut().zip(bias) {
                        *v += bb;
                    }
                }
            }
            if !linear {
                let (a, z) = (&mut rest[0][..b * dout], &ws.z[l][..b * dout]);
                // One loop per activation, so that the compiler vectorizes each; tanh and ReLU run
                // the slice kernels compiled for the CPU's SIMD path.
                match self.act {
                    Activation::Tanh => crate::math::tanh_slice(a, z),
                    Activation::Relu => crate::math::relu_slice(a, z),
                    act => a.iter_mut().zip(z).for_each(|(av, zv)| *av = act.apply(*zv)),
                }
            }
        }
    }

    /// Backward pass after [`Mlp::forward`] with `δ_D` already in `ws.delta[D-1]`: fills the
    /// remaining per-sample δ's and, if `grad` is given, the mean gradient `(1/b) Σ_i ∇ℓ_i`.
    pub(crate) fn backward(&self, theta: &[f64], x: &[f64], b: usize, grad: Option<&mut [f64]>, ws: &mut Workspace) {
        let d = self.depth();
        let inv_b = 1.0 / b as f64;
        let mut grad = grad;
        for l in (0..d).rev() {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let w = &theta[self.w_off[l]..self.w_off[l] + din * dout];
            if let Some(g) = grad.as_deref_mut() {
                let input: &[f64] = if l == 0 { x } else { &ws.a[l - 1] };
                let gw = &mut g[self.w_off[l]..self.w_off[l] + din * dout];
                gemm_tn(gw, &ws.delta[l], input, dout, din, b, inv_b, false);
                if let Some(bo) = self.b_off[l] {
                    let gb = &mut g[bo..bo + dout];
                    gb.fill(0.0);
                    for row in ws.delta[l][..b * dout].chunks_exact(dout) {
                        for (gv, dv) in gb.iter_mut().zip(row) {
                            *gv += dv;
                        }
                    }
                    gb.iter_mut().for_each(|v| *v *= inv_b);
                }
            }
            if l > 0 {
                let (lo, hi) = ws.delta.split_at_mut(l);
                let dprev = &mut lo[l - 1];
                gemm_nn(dprev, &hi[0], w, b, din, dout, false);
                let (z, a) = (&ws.z[l - 1], &ws.a[l - 1]);
                // tanh and ReLU run the slice kernels compiled for the CPU's SIMD path.
                match self.act {
                    Activation::Identity => {}
                    Activation::Tanh => crate::math::tanh_backward_slice(&mut dprev[..b * din], &a[..b * din]),
                    Activation::Relu => crate::math::relu_backward_slice(&mut dprev[..b * din], &z[..b * din]),
                    act => {
                        for ((dv, zv), av) in dprev[..b * din].iter_mut().zip(&z[..b * din]).zip(&a[..b * din]) {
                            *dv *= act.deriv(*zv, *av);
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn loss_grad(
        &self,
        theta: &[f64],
        x: &[f64],
        y: &[f64],
        b: usize,
        grad: &mut [f64],
        ws: &mut Workspace,
    ) -> f64 {
        self.forward(theta, x, b, ws);
        let d = self.depth();
        let dout = self.widths[d];
        let mut loss = 0.0;
        {
            let (f, delta) = (&ws.a[d - 1], &mut ws.delta[d - 1]);
            for ((dv, fv), yv) in delta[..b * dout].iter_mut().zip(&f[..b * dout]).zip(&y[..b * dout]) {
                let r = fv - yv;
                loss += r * r;
                *dv = 2.0 * r;
            }
        }
        self.backward(theta, x, b, Some(grad), ws);
        loss / b as f64
    }
}
