//! `gelu`: the Gaussian error linear unit applied element-wise (PyTorch `nn.GELU`), exact or in
//! its tanh approximation. No parameters.
//!
//! * `approximate = "none"` (PyTorch's default): `y = x Φ(x)` with `Φ` the standard normal
//!   distribution function, `Φ(x) = erfc(−x/√2)/2` ([`crate::core::math::erfc`], which keeps the
//!   relative accuracy in the left tail where PyTorch's `(1 + erf(x/√2))/2` rounds to 0; the two
//!   agree to 10⁻¹⁶ absolutely). `y' = Φ(x) + x φ(x)` and `y'' = φ(x)(2 − x²)`, with
//!   `φ(x) = e^{−x²/2}/√(2π)`.
//! * `approximate = "tanh"`: `y = x (1 + tanh u)/2` with `u = √(2/π)(x + 0.044715 x³)`;
//!   with `t = tanh u`, `u' = √(2/π)(1 + 3·0.044715 x²)` and `u'' = 6·0.044715 √(2/π) x`:
//!   `y' = (1 + t)/2 + x(1 − t²)u'/2` and `y'' = (1 − t²)u' + x(1 − t²)(u'' − 2t u'²)/2`.
//!
//! Backward `dx = y'(x) ⊙ dy`. R-operator: `R{y} = y'(x) ⊙ R{x}` and
//! `R{dx} = y'(x) ⊙ R{dy} + y''(x) ⊙ R{x} ⊙ dy`.
//!
//! Not positively homogeneous, so a rescaling of the units before it is not a symmetry: it blocks
//! them, as the sigmoid does.

use super::{BuildLayer, Layer, PointwiseFn, PointwiseLayer};
use crate::core::math::{erfc, tanh};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI, SQRT_2};
use std::sync::Arc;

/// Which GELU: PyTorch's `approximate` argument.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GeluApproximate {
    /// The exact `x Φ(x)` (`"none"`, the default).
    #[default]
    None,
    /// `x (1 + tanh(√(2/π)(x + 0.044715 x³)))/2` (`"tanh"`).
    Tanh,
}

/// `{ type = "gelu", approximate = "none" }`: `nn.GELU(approximate)`, PyTorch's default
/// (`"none"`: exact; `"tanh"`: the tanh approximation).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GeluConfig {
    /// `"none"` (exact) or `"tanh"`.
    pub approximate: GeluApproximate,
}

impl BuildLayer for GeluConfig {
    fn build(&self, inp: &[usize], _key: &str) -> Result<Arc<dyn Layer>> {
        Ok(Arc::new(PointwiseLayer::new(
            Gelu {
                approximate: self.approximate,
            },
            inp.to_vec(),
        )))
    }
}

/// GELU, exact or tanh, as the function of a [`PointwiseLayer`].
#[derive(Clone, Copy, Debug)]
pub struct Gelu {
    /// Exact or the tanh approximation.
    pub approximate: GeluApproximate,
}

/// `1/√(2π)`, formed as PyTorch forms it (`M_2_SQRTPI · M_SQRT1_2 / 2`).
const INV_SQRT_2PI: f64 = FRAC_2_SQRT_PI * FRAC_1_SQRT_2 * 0.5;
/// `√(2/π)`, formed as PyTorch forms it (`M_SQRT2 · M_2_SQRTPI / 2`).
const SQRT_2_OVER_PI: f64 = SQRT_2 * FRAC_2_SQRT_PI * 0.5;
/// The cubic coefficient of the tanh approximation.
const KAPPA: f64 = 0.044715;

/// `(y, y', y'')` of the exact GELU at `x`.
#[inline]
fn exact(x: f64) -> (f64, f64, f64) {
    let cdf = 0.5 * erfc(-x * FRAC_1_SQRT_2);
    let pdf = (-0.5 * x * x).exp() * INV_SQRT_2PI;
    (x * cdf, cdf + x * pdf, pdf * (2.0 - x * x))
}

/// `(y, y', y'')` of the tanh approximation at `x`. Where `1 − t² = 0` (|u| large) the terms it
/// multiplies vanish, even when `u'` has overflowed.
#[inline]
fn approx(x: f64) -> (f64, f64, f64) {
    let u = SQRT_2_OVER_PI * (x + KAPPA * (x * x * x));
    let t = tanh(u);
    let s = 1.0 - t * t;
    let y = 0.5 * x * (1.0 + t);
    if s == 0.0 {
        return (y, 0.5 * (1.0 + t), 0.0);
    }
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * KAPPA * x * x);
    let ddu = 6.0 * KAPPA * SQRT_2_OVER_PI * x;
    (
        y,
        0.5 * (1.0 + t) + 0.5 * x * s * du,
        s * du + 0.5 * x * s * (ddu - 2.0 * t * du * du),
    )
}

impl PointwiseFn for Gelu {
    const KIND: &'static str = "gelu";
    fn describe(&self) -> String {
        match self.approximate {
            GeluApproximate::None => "gelu".into(),
            GeluApproximate::Tanh => "gelu (tanh)".into(),
        }
    }
    #[inline]
    fn eval(&self, x: f64) -> (f64, f64, f64) {
        match self.approximate {
            GeluApproximate::None => exact(x),
            GeluApproximate::Tanh => approx(x),
        }
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

    fn forward(l: &dyn Layer, x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        l.forward(&[], x, &mut y, &mut [], x.len() / 6, &mut []);
        y
    }

    /// Values of `x Φ(x)` at 40 digits (mpmath), at `x = −6, −3, −1, −0.5, 0.1, 1, 2.5, 8`, and
    /// of the tanh form at `x = −3, −1, −0.5, 0.1, 1, 2.5`.
    #[test]
    fn forward_matches_references_for_both_forms() {
        let xs = [-6.0, -3.0, -1.0, -0.5, 0.1, 1.0, 2.5, 8.0, 0.0, -0.0, -40.0, 40.0];
        let want = [
            -5.919_525_870_226_188_5e-9,
            -0.004_049_694_094_890_283_5,
            -0.158_655_253_931_457_05,
            -0.154_268_769_362_993_44,
            0.053_982_783_727_702_904,
            0.841_344_746_068_542_9,
            2.484_475_836_685_559_7,
            7.999_999_999_999_995,
        ];
        let y = forward(&*layer("type = \"gelu\""), &xs);
        for k in 0..want.len() {
            let r = (y[k] - want[k]).abs() / want[k].abs();
            assert!(r <= 1e-14, "gelu({}) = {:e}, reference {:e}", xs[k], y[k], want[k]);
        }
        // Zero at ±0; the far left tail keeps relative accuracy (−40 Φ(−40), about −1.4e-348,
        // underflows to −0); the far right is the identity.
        assert_eq!(&y[8..], &[0.0, 0.0, 0.0, 40.0]);
        let want_tanh = [
            -0.003_637_392_081_773_019,
            -0.158_808_009_391_723_3,
            -0.154_285_990_174_856_09,
            0.053_982_751_045_435_165,
            0.841_191_990_608_276_7,
            2.484_915_733_910_001,
        ];
        let xs = [-3.0, -1.0, -0.5, 0.1, 1.0, 2.5];
        let l = layer("type = \"gelu\"\napproximate = \"tanh\"");
        let y = forward(&*l, &xs);
        for k in 0..6 {
            let r = (y[k] - want_tanh[k]).abs() / want_tanh[k].abs();
            assert!(
                r <= 1e-14,
                "tanh gelu({}) = {:e}, reference {:e}",
                xs[k],
                y[k],
                want_tanh[k]
            );
        }
        // Large |x|: no NaN from the overflowing cube.
        let y = forward(&*l, &[-1e200, 1e200, -30.0, 30.0, 0.0, 1.0]);
        assert_eq!(&y[..4], &[0.0, 1e200, 0.0, 30.0]);
        let mut dx = [0.0; 6];
        let f = Fwd {
            x: &[-1e200, 1e200, -30.0, 30.0, 0.0, 1.0],
            y: &y,
            saved: &[],
        };
        l.backward(&[], f, &[1.0; 6], Some(&mut dx), None, 1.0, 1, &mut []);
        assert_eq!(&dx[..4], &[0.0, 1.0, 0.0, 1.0]);
    }

    /// Both forms' input gradient and R-operator against central differences. The derivatives up
    /// to the fourth order of both forms are below 2 on the reals (`m3 = 2`).
    #[test]
    fn backward_and_r_operator_match_central_differences() {
        for table in ["type = \"gelu\"", "type = \"gelu\"\napproximate = \"tanh\""] {
            let l = layer(table);
            let b = 4;
            let mut x = vec![0.0; b * 6];
            Rng::new(7).fill_normal(&mut x);
            x.iter_mut().for_each(|v| *v *= 2.5);
            check_against_central_differences(&*l, &x, b, 2.0, 11);
        }
    }

    #[test]
    fn the_spec_table_parses_and_refuses_unknown_keys_and_values() {
        let c: LayerConfig = toml::from_str("type = \"gelu\"").unwrap();
        assert_eq!(c, LayerConfig::Gelu(GeluConfig::default()));
        assert_eq!(c.kind(), "gelu");
        let c: LayerConfig = toml::from_str("type = \"gelu\"\napproximate = \"tanh\"").unwrap();
        assert_eq!(
            c,
            LayerConfig::Gelu(GeluConfig {
                approximate: GeluApproximate::Tanh
            })
        );
        let e = toml::from_str::<LayerConfig>("type = \"gelu\"\nslope = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field `slope`"), "{e}");
        let e = toml::from_str::<LayerConfig>("type = \"gelu\"\napproximate = \"erf\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `erf`"), "{e}");
    }
}
