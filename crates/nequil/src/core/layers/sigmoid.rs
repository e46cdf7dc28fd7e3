//! `sigmoid`: the logistic function applied element-wise, `y = σ(x) = 1/(1 + e^{−x})` (PyTorch
//! `nn.Sigmoid`). No parameters.
//!
//! Backward `dx = σ'(x) ⊙ dy` with `σ' = y(1 − y)`. R-operator: `R{y} = y(1 − y) ⊙ R{x}` and
//! `R{dx} = y(1 − y) ⊙ R{dy} + σ''(x) ⊙ R{x} ⊙ dy` with `σ'' = y(1 − y)(1 − 2y)`.
//!
//! Not positively homogeneous (`σ(cx) ≠ cσ(x)`), so a rescaling of the units before it is not a
//! symmetry: it blocks them, and the symmetry catalog says so.

use super::{BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd, Structure};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "sigmoid" }`: `nn.Sigmoid()` (no keys).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigmoidConfig {}

impl BuildLayer for SigmoidConfig {
    fn build(&self, inp: &[usize], _key: &str) -> Result<Arc<dyn Layer>> {
        Ok(Arc::new(Sigmoid::new(inp.to_vec())))
    }
}

/// The logistic sigmoid on per-sample tensors of any shape.
#[derive(Clone, Debug)]
pub struct Sigmoid {
    shape: Vec<usize>,
}

impl Sigmoid {
    /// σ on tensors of the given per-sample shape.
    pub fn new(shape: Vec<usize>) -> Self {
        Sigmoid { shape }
    }
}

/// σ(z), without overflow for large |z| (`e^{−|z|}` only).
#[inline]
fn sigma(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Layer for Sigmoid {
    fn kind(&self) -> &'static str {
        "sigmoid"
    }
    fn describe(&self) -> String {
        "sigmoid".into()
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

    fn forward(&self, _p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let n = b * self.out_dim();
        y[..n].iter_mut().zip(&x[..n]).for_each(|(yv, xv)| *yv = sigma(*xv));
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
        for ((d, g), y) in dx[..n].iter_mut().zip(&dy[..n]).zip(&f.y[..n]) {
            *d = g * y * (1.0 - y);
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
                for ((r, y), v) in ry[..n].iter_mut().zip(&f.y[..n]).zip(&rx[..n]) {
                    *r = y * (1.0 - y) * v;
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
        let y = r.f.y;
        for k in 0..n {
            let d1 = y[k] * (1.0 - y[k]);
            rdx[k] = d1 * rdy[k];
            if let Some(rx) = r.rx {
                rdx[k] += d1 * (1.0 - 2.0 * y[k]) * rx[k] * r.dy[k];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::LayerConfig;
    use crate::core::rng::Rng;

    /// `(x, y = σ(x))` of `b` samples of shape `[2, 3]`, and the layer.
    fn setup(b: usize) -> (Arc<dyn Layer>, Vec<f64>, Vec<f64>) {
        let l = LayerConfig::from(SigmoidConfig {})
            .build(&[2, 3], "model.layers[0]")
            .unwrap();
        let mut x = vec![0.0; b * 6];
        Rng::new(7).fill_normal(&mut x);
        x.iter_mut().for_each(|v| *v *= 3.0);
        let mut y = vec![0.0; b * 6];
        l.forward(&[], &x, &mut y, &mut [], b, &mut []);
        (l, x, y)
    }

    #[test]
    fn forward_is_the_logistic_function_without_overflow() {
        let (l, x, y) = setup(2);
        for (a, z) in y.iter().zip(&x) {
            let e = 1.0 / (1.0 + (-z).exp());
            assert!((a - e).abs() <= 1e-15, "σ({z}) = {a}, expected {e}");
        }
        let mut big = [0.0; 6];
        l.forward(
            &[],
            &[-800.0, 800.0, 0.0, -40.0, 40.0, 1.0],
            &mut big,
            &mut [],
            1,
            &mut [],
        );
        assert_eq!(&big[..3], &[0.0, 1.0, 0.5]);
        assert!(big.iter().all(|v| v.is_finite()));
    }

    /// The input gradient against central differences of `Σ_i dy_i · σ(x_i)`, and the R-operator's
    /// `R{y}` and `R{dx}` against central differences of the forward and backward passes along `rx`.
    #[test]
    fn backward_and_r_operator_match_central_differences() {
        let b = 3;
        let (l, x, y) = setup(b);
        let n = b * 6;
        let mut rng = Rng::new(11);
        let (mut dy, mut rx, mut rdy) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        rng.fill_normal(&mut dy);
        rng.fill_normal(&mut rx);
        rng.fill_normal(&mut rdy);
        let f = Fwd {
            x: &x,
            y: &y,
            saved: &[],
        };
        let mut dx = vec![0.0; n];
        l.backward(&[], f, &dy, Some(&mut dx), None, 1.0, b, &mut []);
        let h = 1e-5;
        // At x ± h·rx: outputs and input gradients (with dy ± h·rdy, so that R{dy} = rdy).
        let at = |s: f64| {
            let xs: Vec<f64> = x.iter().zip(&rx).map(|(a, r)| a + s * h * r).collect();
            let dys: Vec<f64> = dy.iter().zip(&rdy).map(|(a, r)| a + s * h * r).collect();
            let mut ys = vec![0.0; n];
            l.forward(&[], &xs, &mut ys, &mut [], b, &mut []);
            let mut dxs = vec![0.0; n];
            let fs = Fwd {
                x: &xs,
                y: &ys,
                saved: &[],
            };
            l.backward(&[], fs, &dys, Some(&mut dxs), None, 1.0, b, &mut []);
            (ys, dxs)
        };
        let ((yp, dxp), (ym, dxm)) = (at(1.0), at(-1.0));
        // Directional derivative of Σ dy ⊙ σ(x) along rx equals dx · rx.
        let fd: f64 = (0..n).map(|k| dy[k] * (yp[k] - ym[k]) / (2.0 * h)).sum();
        let an: f64 = dx.iter().zip(&rx).map(|(a, r)| a * r).sum();
        assert!(
            (fd - an).abs() <= 1e-8 * (1.0 + an.abs()),
            "dx·rx {an}, differences {fd}"
        );
        let mut ry = vec![0.0; n];
        l.rforward(&[], &[], f, Some(&rx), &mut ry, b, &mut []);
        let r = RFwd {
            f,
            dy: &dy,
            dx: Some(&dx),
            rx: Some(&rx),
            ry: &ry,
        };
        let mut rdx = vec![0.0; n];
        l.rbackward(&[], &[], r, &rdy, Some(&mut rdx), &mut [], 1.0, b, &mut []);
        for k in 0..n {
            let (fy, fdx) = ((yp[k] - ym[k]) / (2.0 * h), (dxp[k] - dxm[k]) / (2.0 * h));
            // Central differences: error O(h²) times third derivatives (≤ 1 here) ≈ 1e-10.
            assert!((ry[k] - fy).abs() <= 1e-8, "R{{y}}[{k}] {} vs {fy}", ry[k]);
            assert!((rdx[k] - fdx).abs() <= 1e-8, "R{{dx}}[{k}] {} vs {fdx}", rdx[k]);
        }
    }

    #[test]
    fn the_spec_table_parses_and_refuses_unknown_keys() {
        let c: LayerConfig = toml::from_str("type = \"sigmoid\"").unwrap();
        assert_eq!(c, LayerConfig::Sigmoid(SigmoidConfig {}));
        assert_eq!(c.kind(), "sigmoid");
        let e = toml::from_str::<LayerConfig>("type = \"sigmoid\"\nslope = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field `slope`"), "{e}");
    }
}
