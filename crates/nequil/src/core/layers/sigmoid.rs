//! `sigmoid`: the logistic function applied element-wise, `y = σ(x) = 1/(1 + e^{−x})` (PyTorch
//! `nn.Sigmoid`). No parameters.
//!
//! Backward `dx = σ'(x) ⊙ dy` with `σ' = y(1 − y)`. R-operator: `R{y} = y(1 − y) ⊙ R{x}` and
//! `R{dx} = y(1 − y) ⊙ R{dy} + σ''(x) ⊙ R{x} ⊙ dy` with `σ'' = y(1 − y)(1 − 2y)`.
//!
//! Not positively homogeneous (`σ(cx) ≠ cσ(x)`), so a rescaling of the units before it is not a
//! symmetry: it blocks them, and the symmetry catalog says so.

use super::{BuildLayer, Layer, PointwiseFn, PointwiseLayer};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "sigmoid" }`: `nn.Sigmoid()` (no keys).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigmoidConfig {}

impl BuildLayer for SigmoidConfig {
    fn build(&self, inp: &[usize], _key: &str) -> Result<Arc<dyn Layer>> {
        Ok(Arc::new(PointwiseLayer::new(Sigmoid, inp.to_vec())))
    }
}

/// The logistic sigmoid, as the function of a [`PointwiseLayer`].
#[derive(Clone, Copy, Debug)]
pub struct Sigmoid;

impl PointwiseFn for Sigmoid {
    const KIND: &'static str = "sigmoid";
    /// `(σ, σ(1 − σ), σ(1 − σ)(1 − 2σ))` at `x`.
    #[inline]
    fn eval(&self, x: f64) -> (f64, f64, f64) {
        let y = sigma(x);
        let d1 = y * (1.0 - y);
        (y, d1, d1 * (1.0 - 2.0 * y))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::LayerConfig;
    use crate::core::layers::{Fwd, RFwd};
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
