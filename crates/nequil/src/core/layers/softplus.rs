//! `softplus`: `y = log(1 + e^{βx})/β` applied element-wise, and `y = x` where `βx > threshold`
//! (PyTorch `nn.Softplus(beta, threshold)`, whose defaults 1 and 20 it keeps, and whose numerics:
//! `log1p(exp(βx))/β` below the threshold). No parameters.
//!
//! Below the threshold `y' = σ(βx)` and `y'' = β σ(βx)(1 − σ(βx))` (σ the logistic function);
//! above it `y' = 1` and `y'' = 0`, as PyTorch's backward. At `βx = threshold` the function jumps
//! by `log1p(e^{−threshold})/β` (2·10⁻⁹ at the defaults): [`Layer::kink_distance`] reports it.
//!
//! Backward `dx = y'(x) ⊙ dy`. R-operator: `R{y} = y'(x) ⊙ R{x}` and
//! `R{dx} = y'(x) ⊙ R{dy} + y''(x) ⊙ R{x} ⊙ dy`.
//!
//! Not positively homogeneous, so a rescaling of the units before it is not a symmetry: it blocks
//! them, as the sigmoid does.

use super::{BuildLayer, Layer, PointwiseFn, PointwiseLayer};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "softplus", beta = 1.0, threshold = 20.0 }`: `nn.Softplus(beta, threshold)`,
/// PyTorch's defaults.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SoftplusConfig {
    /// `β` in `log(1 + e^{βx})/β` (finite, > 0; 1).
    pub beta: f64,
    /// Above `βx = threshold` the layer is the identity (finite; 20).
    pub threshold: f64,
}

impl Default for SoftplusConfig {
    fn default() -> Self {
        SoftplusConfig {
            beta: 1.0,
            threshold: 20.0,
        }
    }
}

impl BuildLayer for SoftplusConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let (beta, threshold) = (self.beta, self.threshold);
        if !(beta.is_finite() && beta > 0.0) {
            return Err(invalid!("{key}.beta: must be finite and > 0, got {beta}"));
        }
        if !threshold.is_finite() {
            return Err(invalid!("{key}.threshold: must be finite, got {threshold}"));
        }
        Ok(Arc::new(PointwiseLayer::new(
            Softplus { beta, threshold },
            inp.to_vec(),
        )))
    }
}

/// Softplus with `beta` (finite, > 0) and `threshold` (finite), as the function of a
/// [`PointwiseLayer`].
#[derive(Clone, Copy, Debug)]
pub struct Softplus {
    /// β.
    pub beta: f64,
    /// Where `βx` exceeds it, `y = x`.
    pub threshold: f64,
}

impl PointwiseFn for Softplus {
    const KIND: &'static str = "softplus";
    fn describe(&self) -> String {
        format!("softplus (beta {}, threshold {})", self.beta, self.threshold)
    }
    fn kink_distance(&self, x: f64) -> f64 {
        (x - self.threshold / self.beta).abs()
    }
    /// `(y, y', y'')` at `x`.
    #[inline]
    fn eval(&self, x: f64) -> (f64, f64, f64) {
        let z = x * self.beta;
        if z > self.threshold {
            return (x, 1.0, 0.0);
        }
        // PyTorch's log1p(exp(z)) where exp(z) is finite; past that, z + log1p(e^{−z}) (only
        // reached with a threshold above 709).
        let y = if z <= 709.0 {
            z.exp().ln_1p() / self.beta
        } else {
            (z + (-z).exp().ln_1p()) / self.beta
        };
        // σ(z) without overflow.
        let s = if z >= 0.0 {
            1.0 / (1.0 + (-z).exp())
        } else {
            let e = z.exp();
            e / (1.0 + e)
        };
        (y, s, self.beta * s * (1.0 - s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::elementwise_check::check_against_central_differences;
    use crate::core::layers::Fwd;
    use crate::core::layers::LayerConfig;
    use crate::core::rng::Rng;

    fn layer(toml_table: &str) -> Arc<dyn Layer> {
        let c: LayerConfig = toml::from_str(toml_table).unwrap();
        c.build(&[2, 3], "model.layers[0]").unwrap()
    }

    /// Values of `log(1 + e^{βx})/β` at 40 digits (mpmath); above the threshold, `x` itself.
    #[test]
    fn forward_matches_references_and_is_linear_above_the_threshold() {
        let l = layer("type = \"softplus\"");
        let xs = [-30.0, -2.0, -0.5, 0.1, 1.0, 3.0, 19.9, 20.5, 700.0, -800.0, 0.0, 5.0];
        let mut y = vec![0.0; 12];
        l.forward(&[], &xs, &mut y, &mut [], 2, &mut []);
        let want = [
            9.357_622_968_839_737e-14,
            0.126_928_011_042_972_5,
            0.474_076_984_180_106_7,
            0.744_396_660_073_570_9,
            1.313_261_687_518_222_8,
            3.048_587_351_573_742,
            19.900_000_002_277_924,
        ];
        for k in 0..want.len() {
            let r = (y[k] - want[k]).abs() / want[k];
            assert!(r <= 1e-15, "softplus({}) = {:e}, reference {:e}", xs[k], y[k], want[k]);
        }
        // Above βx = 20: the input itself, bit for bit; far below: e^{βx}/β underflowing to 0.
        assert_eq!(&y[7..10], &[20.5, 700.0, 0.0]);
        assert_eq!(y[10], std::f64::consts::LN_2);
        // β = 1.5, threshold 3: linear above x = 2.
        let l = layer("type = \"softplus\"\nbeta = 1.5\nthreshold = 3.0");
        let xs = [-2.0, 0.7, 1.9, 2.1, 4.0, -0.0];
        let mut y = vec![0.0; 6];
        l.forward(&[], &xs, &mut y, &mut [], 1, &mut []);
        let want = [0.032_391_567_715_828_04, 0.900_038_986_411_762, 1.937_488_785_252_322];
        for k in 0..3 {
            let r = (y[k] - want[k]).abs() / want[k];
            assert!(
                r <= 1e-15,
                "softplus_1.5({}) = {:e}, reference {:e}",
                xs[k],
                y[k],
                want[k]
            );
        }
        assert_eq!(&y[3..5], &[2.1, 4.0]);
        // The backward pass above the threshold passes dy through, as PyTorch's.
        let mut dx = [0.0; 6];
        let f = Fwd {
            x: &xs,
            y: &y,
            saved: &[],
        };
        l.backward(&[], f, &[2.0; 6], Some(&mut dx), None, 1.0, 1, &mut []);
        assert_eq!(&dx[3..5], &[2.0, 2.0]);
        assert_eq!(dx[5], 1.0);
    }

    /// The input gradient and R-operator against central differences, on both sides of the
    /// threshold. With β = 1.5 the derivatives up to the fourth order are below β³/8 < 1
    /// (`m3 = 1`).
    #[test]
    fn backward_and_r_operator_match_central_differences() {
        let l = layer("type = \"softplus\"\nbeta = 1.5\nthreshold = 3.0");
        let b = 4;
        let mut x = vec![0.0; b * 6];
        Rng::new(7).fill_normal(&mut x);
        x.iter_mut().for_each(|v| *v *= 2.5);
        assert!(x.iter().any(|v| 1.5 * v > 3.0) && x.iter().any(|v| 1.5 * v < 3.0));
        check_against_central_differences(&*l, &x, b, 1.0, 11);
    }

    #[test]
    fn the_spec_table_parses_and_refuses_unknown_keys_and_bad_values() {
        let c: LayerConfig = toml::from_str("type = \"softplus\"").unwrap();
        assert_eq!(c, LayerConfig::Softplus(SoftplusConfig::default()));
        assert_eq!(
            (SoftplusConfig::default().beta, SoftplusConfig::default().threshold),
            (1.0, 20.0)
        );
        assert_eq!(c.kind(), "softplus");
        let c: LayerConfig = toml::from_str("type = \"softplus\"\nbeta = 2.0\nthreshold = 10.0").unwrap();
        assert_eq!(
            c,
            LayerConfig::Softplus(SoftplusConfig {
                beta: 2.0,
                threshold: 10.0
            })
        );
        let e = toml::from_str::<LayerConfig>("type = \"softplus\"\nslope = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field `slope`"), "{e}");
        for (table, msg) in [
            ("beta = 0.0", "model.layers[2].beta: must be finite and > 0, got 0"),
            ("beta = -1.0", "model.layers[2].beta: must be finite and > 0, got -1"),
            ("beta = nan", "model.layers[2].beta: must be finite and > 0, got NaN"),
            ("beta = inf", "model.layers[2].beta: must be finite and > 0, got inf"),
            ("threshold = inf", "model.layers[2].threshold: must be finite, got inf"),
        ] {
            let c: LayerConfig = toml::from_str(&format!("type = \"softplus\"\n{table}")).unwrap();
            let e = c.build(&[3], "model.layers[2]").unwrap_err().to_string();
            assert!(e.contains(msg), "{table}: {e}");
        }
    }
}
