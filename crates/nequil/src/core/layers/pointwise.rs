//! The layer of a parameter-free element-wise function `y = φ(x)` that is not positively
//! homogeneous (sigmoid, GELU, softplus, hard swish): one implementation of [`Layer`] for every
//! such φ, which supplies only `(φ(x), φ'(x), φ''(x))` through [`PointwiseFn`].
//!
//! Backward `dx = φ'(x) ⊙ dy`. R-operator: `R{y} = φ'(x) ⊙ R{x}` and
//! `R{dx} = φ'(x) ⊙ R{dy} + φ''(x) ⊙ R{x} ⊙ dy`. Not positively homogeneous, so a rescaling of
//! the units before it is not a symmetry: it blocks them ([`Pass::Block`]), and the symmetry
//! catalog says so. The ReLU family and tanh, whose structure the catalog uses, are
//! [`super::ActivationLayer`].

use super::{BlockSpec, Fwd, Layer, Pass, RFwd, Structure};
use std::fmt::Debug;

/// A scalar function applied element-wise by [`PointwiseLayer`].
pub trait PointwiseFn: Clone + Debug + Send + Sync + 'static {
    /// The spec name (`sigmoid`, `gelu`, …).
    const KIND: &'static str;
    /// A short description with the function's arguments, for tables.
    fn describe(&self) -> String {
        Self::KIND.into()
    }
    /// `(φ(x), φ'(x), φ''(x))` at `x` (at a kink, the one-sided values PyTorch's backward uses).
    fn eval(&self, x: f64) -> (f64, f64, f64);
    /// The distance from `x` to the nearest point where φ' or φ'' jumps (∞ where there is none):
    /// finite differences must not step across one.
    fn kink_distance(&self, _x: f64) -> f64 {
        f64::INFINITY
    }
}

/// `y = φ(x)` element-wise on per-sample tensors of any shape.
#[derive(Clone, Debug)]
pub struct PointwiseLayer<F> {
    f: F,
    shape: Vec<usize>,
}

impl<F: PointwiseFn> PointwiseLayer<F> {
    /// φ on tensors of the given per-sample shape.
    pub fn new(f: F, shape: Vec<usize>) -> Self {
        PointwiseLayer { f, shape }
    }
}

impl<F: PointwiseFn> Layer for PointwiseLayer<F> {
    fn kind(&self) -> &'static str {
        F::KIND
    }
    fn describe(&self) -> String {
        self.f.describe()
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
            homogeneous: false,
            activation: None,
        }
    }
    fn pass(&self, _positions: &[usize]) -> Pass {
        Pass::Block
    }
    fn kink_distance(&self, _p: &[f64], x: &[f64], b: usize) -> f64 {
        x[..b * self.in_dim()]
            .iter()
            .fold(f64::INFINITY, |m, v| m.min(self.f.kink_distance(*v)))
    }

    fn forward(&self, _p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let n = b * self.out_dim();
        y[..n]
            .iter_mut()
            .zip(&x[..n])
            .for_each(|(yv, xv)| *yv = self.f.eval(*xv).0);
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
        for ((d, g), x) in dx[..n].iter_mut().zip(&dy[..n]).zip(&f.x[..n]) {
            *d = g * self.f.eval(*x).1;
        }
    }

    fn grad_sq(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _sm: &mut [f64], _s: &mut [f64]) {}
    fn grad_quad(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _d: &[f64], _q: &mut [f64], _s: &mut [f64]) {}

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
        match rx {
            None => ry[..n].fill(0.0),
            Some(rx) => {
                for ((r, x), v) in ry[..n].iter_mut().zip(&f.x[..n]).zip(&rx[..n]) {
                    *r = self.f.eval(*x).1 * v;
                }
            }
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
        let x = r.f.x;
        for k in 0..n {
            let (_, d1, d2) = self.f.eval(x[k]);
            rdx[k] = d1 * rdy[k];
            if let Some(rx) = r.rx {
                rdx[k] += d2 * rx[k] * r.dy[k];
            }
        }
    }
}
