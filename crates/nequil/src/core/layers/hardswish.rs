//! `hardswish`: `y = x · relu6(x + 3)/6` applied element-wise, `relu6(z) = min(max(z, 0), 6)`
//! (PyTorch `nn.Hardswish`, its numerics: `x · min(max(x + 3, 0), 6) / 6`). No parameters.
//!
//! `y = 0` for `x < −3`, `x(x + 3)/6` on `[−3, 3]`, `x` for `x > 3`. The derivative follows
//! PyTorch's backward (its scalar CPU and its CUDA kernels) at the kinks: `y' = 0` for `x < −3`,
//! `x/3 + 1/2` for `−3 ≤ x ≤ 3` (so −1/2 at −3 and 3/2 at 3), `1` for `x > 3`; `y'' = 1/3` on
//! `[−3, 3]` and 0 elsewhere. (PyTorch's vectorized CPU kernel gives 1 at exactly `x = 3`; the
//! points ±3 are kinks, which [`Layer::kink_distance`] reports.)
//!
//! Backward `dx = y'(x) ⊙ dy`. R-operator: `R{y} = y'(x) ⊙ R{x}` and
//! `R{dx} = y'(x) ⊙ R{dy} + y''(x) ⊙ R{x} ⊙ dy`.
//!
//! Not positively homogeneous, so a rescaling of the units before it is not a symmetry: it blocks
//! them, as the sigmoid does.

use super::{BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd, Structure};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "hardswish" }`: `nn.Hardswish()` (no keys).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HardswishConfig {}

impl BuildLayer for HardswishConfig {
    fn build(&self, inp: &[usize], _key: &str) -> Result<Arc<dyn Layer>> {
        Ok(Arc::new(Hardswish::new(inp.to_vec())))
    }
}

/// Hard swish on per-sample tensors of any shape.
#[derive(Clone, Debug)]
pub struct Hardswish {
    shape: Vec<usize>,
}

impl Hardswish {
    /// Hard swish on tensors of the given per-sample shape.
    pub fn new(shape: Vec<usize>) -> Self {
        Hardswish { shape }
    }

    /// `(y, y', y'')` at `x`.
    #[inline]
    fn eval(&self, x: f64) -> (f64, f64, f64) {
        let y = x * (x + 3.0).clamp(0.0, 6.0) / 6.0;
        if x < -3.0 {
            (y, 0.0, 0.0)
        } else if x <= 3.0 {
            (y, x / 3.0 + 0.5, 1.0 / 3.0)
        } else {
            (y, 1.0, 0.0)
        }
    }
}

impl Layer for Hardswish {
    fn kind(&self) -> &'static str {
        "hardswish"
    }
    fn describe(&self) -> String {
        "hardswish".into()
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
            .fold(f64::INFINITY, |m, v| m.min((v + 3.0).abs()).min((v - 3.0).abs()))
    }

    fn forward(&self, _p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let n = b * self.out_dim();
        y[..n]
            .iter_mut()
            .zip(&x[..n])
            .for_each(|(yv, xv)| *yv = self.eval(*xv).0);
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
            *d = g * self.eval(*x).1;
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
                    *r = self.eval(*x).1 * v;
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
            let (_, d1, d2) = self.eval(x[k]);
            rdx[k] = d1 * rdy[k];
            if let Some(rx) = r.rx {
                rdx[k] += d2 * rx[k] * r.dy[k];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::elementwise_check::check_against_central_differences;
    use crate::core::layers::LayerConfig;
    use crate::core::rng::Rng;

    fn layer() -> Arc<dyn Layer> {
        let c: LayerConfig = toml::from_str("type = \"hardswish\"").unwrap();
        c.build(&[2, 3], "model.layers[0]").unwrap()
    }

    #[test]
    fn forward_and_the_derivative_at_the_kinks_follow_pytorch() {
        let l = layer();
        let xs = [-4.0, -3.5, -1.0, 0.5, 2.9, 3.5, -3.0, 3.0, 0.0, -1e300, 1e300, 6.0];
        let mut y = vec![0.0; 12];
        l.forward(&[], &xs, &mut y, &mut [], 2, &mut []);
        // x(x + 3)/6 on [−3, 3] (exact rationals, rounded), 0 below, x above.
        let want = [
            0.0,
            0.0,
            -1.0 / 3.0,
            0.291_666_666_666_666_7,
            2.851_666_666_666_666_6,
            3.5,
        ];
        for k in 0..6 {
            assert!(
                (y[k] - want[k]).abs() <= 1e-16 * want[k].abs(),
                "hardswish({}) = {}",
                xs[k],
                y[k]
            );
        }
        assert_eq!(&y[6..], &[0.0, 3.0, 0.0, 0.0, 1e300, 6.0]);
        let f = Fwd {
            x: &xs,
            y: &y,
            saved: &[],
        };
        let mut dx = vec![0.0; 12];
        l.backward(&[], f, &[1.0; 12], Some(&mut dx), None, 1.0, 2, &mut []);
        // y' = 0 below −3, x/3 + 1/2 on [−3, 3] (−1/2 at −3, 3/2 at 3), 1 above.
        assert_eq!(
            &dx[..6],
            &[0.0, 0.0, -1.0 / 3.0 + 0.5, 0.5 / 3.0 + 0.5, 2.9 / 3.0 + 0.5, 1.0]
        );
        assert_eq!(&dx[6..], &[-0.5, 1.5, 0.5, 0.0, 1.0, 1.0]);
        assert!((l.kink_distance(&[], &xs[..6], 1) - 0.1).abs() <= 1e-15);
    }

    /// The input gradient and R-operator against central differences, away from the kinks at ±3
    /// (checked). Piecewise quadratic: the third derivative vanishes between the kinks, and
    /// `m3 = 1` leaves the rounding term the one that matters.
    #[test]
    fn backward_and_r_operator_match_central_differences() {
        let l = layer();
        let b = 4;
        let mut x = vec![0.0; b * 6];
        Rng::new(7).fill_normal(&mut x);
        x.iter_mut().for_each(|v| *v *= 3.0);
        assert!(x.iter().any(|v| *v < -3.0) && x.iter().any(|v| *v > 3.0));
        check_against_central_differences(&*l, &x, b, 1.0, 11);
    }

    #[test]
    fn the_spec_table_parses_and_refuses_unknown_keys() {
        let c: LayerConfig = toml::from_str("type = \"hardswish\"").unwrap();
        assert_eq!(c, LayerConfig::Hardswish(HardswishConfig {}));
        assert_eq!(c.kind(), "hardswish");
        let e = toml::from_str::<LayerConfig>("type = \"hardswish\"\ninplace = true").unwrap_err();
        assert!(e.to_string().contains("unknown field `inplace`"), "{e}");
    }
}
