//! Element-wise activations `y = φ(x)`: identity, tanh, ReLU, leaky ReLU, swish. No parameters.
//!
//! Backward `dx = φ'(x) ⊙ dy`. R-operator: `R{y} = φ'(x) ⊙ R{x}`, and
//! `R{dx} = φ'(x) ⊙ R{dy} + φ''(x) ⊙ R{x} ⊙ dy`. `φ''` is 0 for identity, ReLU and leaky ReLU (the
//! Hessian where it exists; the kinks have measure zero), `−2 tanh x (1 − tanh² x)` for tanh
//! (used in the form `−2 y ⊙ R{x} ⊙ dx`, since `dx = (1 − y²) dy`) and `s(1 − s)(2 + x(1 − 2s))`,
//! `s = sigmoid x`, for swish.

use super::{BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd, Structure};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The configurations of the parameter-free activations without keys: `{ type = "identity" }`
/// (`nn.Identity`), `"tanh"` (`nn.Tanh`), `"relu"` (`nn.ReLU`), `"swish"` (`nn.SiLU`).
macro_rules! plain_activation {
    ($($(#[$m:meta])* $name:ident => $act:expr,)+) => {$(
        $(#[$m])*
        #[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct $name {}

        impl BuildLayer for $name {
            fn build(&self, inp: &[usize], _key: &str) -> Result<Arc<dyn Layer>> {
                Ok(Arc::new(ActivationLayer::new($act, inp.to_vec())))
            }
        }
    )+};
}

plain_activation! {
    /// `{ type = "identity" }`: φ(z) = z (`nn.Identity`, or `nn.Dropout(p=0)`).
    IdentityConfig => Activation::Identity,
    /// `{ type = "tanh" }` (`nn.Tanh`).
    TanhConfig => Activation::Tanh,
    /// `{ type = "relu" }` (`nn.ReLU`).
    ReluConfig => Activation::Relu,
    /// `{ type = "swish" }`: z · sigmoid(z) (`nn.SiLU`).
    SwishConfig => Activation::Swish,
}

/// `{ type = "leaky-relu", slope = 0.01 }`: `nn.LeakyReLU(negative_slope)`, PyTorch's default
/// slope.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LeakyReluConfig {
    /// Slope for negative inputs (finite; 0.01).
    pub slope: f64,
}

impl Default for LeakyReluConfig {
    fn default() -> Self {
        LeakyReluConfig { slope: 0.01 }
    }
}

impl BuildLayer for LeakyReluConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let s = self.slope;
        if !s.is_finite() {
            return Err(invalid!("{key}.slope: must be finite, got {s}"));
        }
        Ok(Arc::new(ActivationLayer::new(Activation::LeakyRelu(s), inp.to_vec())))
    }
}

/// An activation function φ.
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
            Activation::Tanh => crate::core::math::tanh(z),
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
    /// φ''(z), given z and a = φ(z).
    #[inline]
    pub fn second_deriv(self, z: f64, a: f64) -> f64 {
        match self {
            Activation::Tanh => -2.0 * a * (1.0 - a * a),
            Activation::Swish => {
                let s = 1.0 / (1.0 + (-z).exp());
                s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
            }
            Activation::Identity | Activation::Relu | Activation::LeakyRelu(_) => 0.0,
        }
    }
    /// Whether φ is positively homogeneous (φ(cz) = cφ(z) for c > 0), which gives every neuron that
    /// feeds it a rescaling symmetry.
    pub fn is_homogeneous(self) -> bool {
        matches!(self, Activation::Identity | Activation::Relu | Activation::LeakyRelu(_))
    }
    /// The name used in specs and descriptions (`leaky-relu(0.01)` with its slope).
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

/// An activation applied element-wise to a per-sample tensor of any shape.
#[derive(Clone, Debug)]
pub struct ActivationLayer {
    act: Activation,
    shape: Vec<usize>,
}

impl ActivationLayer {
    /// φ on tensors of the given per-sample shape.
    pub fn new(act: Activation, shape: Vec<usize>) -> Self {
        ActivationLayer { act, shape }
    }
    /// The function φ.
    pub fn activation(&self) -> Activation {
        self.act
    }
}

impl Layer for ActivationLayer {
    fn kind(&self) -> &'static str {
        match self.act {
            Activation::Identity => "identity",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky-relu",
            Activation::Swish => "swish",
        }
    }
    fn describe(&self) -> String {
        self.act.name()
    }
    fn in_shape(&self) -> &[usize] {
        &self.shape
    }
    fn out_shape(&self) -> &[usize] {
        &self.shape
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        Vec::new()
    }
    fn n_params(&self) -> usize {
        0
    }
    fn structure(&self) -> Structure {
        Structure::Elementwise {
            homogeneous: self.act.is_homogeneous(),
            activation: Some(self.act),
        }
    }

    fn kink_distance(&self, _p: &[f64], x: &[f64], b: usize) -> f64 {
        match self.act {
            Activation::Relu | Activation::LeakyRelu(_) => {
                x[..b * self.in_dim()].iter().fold(f64::INFINITY, |m, v| m.min(v.abs()))
            }
            _ => f64::INFINITY,
        }
    }
    fn pass(&self, positions: &[usize]) -> Pass {
        if self.act.is_homogeneous() {
            Pass::Through(positions.to_vec())
        } else {
            Pass::Block
        }
    }

    fn forward(&self, _p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let n = b * self.out_dim();
        let (y, z) = (&mut y[..n], &x[..n]);
        // tanh and ReLU run the slice kernels compiled for the CPU's SIMD path; the others one
        // loop each, so that the compiler vectorizes them.
        match self.act {
            Activation::Identity => y.copy_from_slice(z),
            Activation::Tanh => crate::core::math::tanh_slice(y, z),
            Activation::Relu => crate::core::math::relu_slice(y, z),
            act => y.iter_mut().zip(z).for_each(|(av, zv)| *av = act.apply(*zv)),
        }
    }

    fn backward(
        &self,
        _p: &[f64],
        f: Fwd<'_>,
        dy: &[f64],
        dx: Option<&mut [f64]>,
        _grad: Option<&mut [f64]>,
        _alpha: f64,
        b: usize,
        _scratch: &mut [f64],
    ) {
        let Some(dx) = dx else { return };
        let n = b * self.out_dim();
        let act = self.act;
        dx[..n].copy_from_slice(&dy[..n]);
        match act {
            Activation::Identity => {}
            Activation::Tanh => crate::core::math::tanh_backward_slice(&mut dx[..n], &f.y[..n]),
            Activation::Relu => crate::core::math::relu_backward_slice(&mut dx[..n], &f.x[..n]),
            _ => {
                for ((d, z), a) in dx[..n].iter_mut().zip(&f.x[..n]).zip(&f.y[..n]) {
                    *d *= act.deriv(*z, *a);
                }
            }
        }
    }

    fn grad_sq(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _sm: &mut [f64], _scratch: &mut [f64]) {}

    fn grad_quad(
        &self,
        _p: &[f64],
        _f: Fwd<'_>,
        _dy: &[f64],
        _b: usize,
        _d: &[f64],
        _q: &mut [f64],
        _scratch: &mut [f64],
    ) {
    }

    fn rforward(
        &self,
        _p: &[f64],
        _v: &[f64],
        f: Fwd<'_>,
        rx: Option<&[f64]>,
        ry: &mut [f64],
        b: usize,
        _scratch: &mut [f64],
    ) {
        let n = b * self.out_dim();
        let Some(rx) = rx else {
            ry[..n].fill(0.0);
            return;
        };
        let act = self.act;
        if act == Activation::Identity {
            ry[..n].copy_from_slice(&rx[..n]);
            return;
        }
        let (z, a) = (f.x, f.y);
        for k in 0..n {
            ry[k] = act.deriv(z[k], a[k]) * rx[k];
        }
    }

    fn rbackward(
        &self,
        _p: &[f64],
        _v: &[f64],
        r: RFwd<'_>,
        rdy: &[f64],
        rdx: Option<&mut [f64]>,
        _hv: &mut [f64],
        _alpha: f64,
        b: usize,
        _scratch: &mut [f64],
    ) {
        let Some(rdx) = rdx else { return };
        let n = b * self.out_dim();
        let act = self.act;
        let (z, a) = (r.f.x, r.f.y);
        match (act, r.rx, r.dx) {
            (Activation::Identity, _, _) => rdx[..n].copy_from_slice(&rdy[..n]),
            (Activation::Relu | Activation::LeakyRelu(_), _, _) | (_, None, _) | (Activation::Tanh, _, None) => {
                for k in 0..n {
                    rdx[k] = rdy[k] * act.deriv(z[k], a[k]);
                }
            }
            (Activation::Tanh, Some(rz), Some(dl)) => {
                // φ''(z) dy = −2a (1 − a²) dy = −2a dx.
                for k in 0..n {
                    rdx[k] = (1.0 - a[k] * a[k]) * rdy[k] - 2.0 * a[k] * rz[k] * dl[k];
                }
            }
            (Activation::Swish, Some(rz), _) => {
                for k in 0..n {
                    rdx[k] = act.deriv(z[k], a[k]) * rdy[k] + act.second_deriv(z[k], a[k]) * rz[k] * r.dy[k];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::LayerConfig;

    /// `silu`, PyTorch's name of the function, is read as `swish` and written back as `swish`.
    #[test]
    fn silu_is_a_spelling_of_swish() {
        let c: LayerConfig = toml::from_str("type = \"silu\"").unwrap();
        assert_eq!(c, LayerConfig::Swish(SwishConfig {}));
        assert_eq!(c.kind(), "swish");
        assert!(toml::to_string(&c).unwrap().contains("\"swish\""));
        let l = c.build(&[2], "model.layers[0]").unwrap();
        let mut y = [0.0; 2];
        l.forward(&[], &[1.5, -2.0], &mut y, &mut [], 1, &mut []);
        // x · σ(x), to rounding.
        for (a, x) in y.iter().zip([1.5f64, -2.0]) {
            let e = x / (1.0 + (-x).exp());
            assert!((a - e).abs() <= 1e-15, "{a} vs {e}");
        }
        let e = toml::from_str::<LayerConfig>("type = \"silu\"\ninplace = true").unwrap_err();
        assert!(e.to_string().contains("unknown field `inplace`"), "{e}");
    }
}
