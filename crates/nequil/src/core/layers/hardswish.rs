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

use super::{BuildLayer, Layer, PointwiseFn, PointwiseLayer};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "hardswish" }`: `nn.Hardswish()` (no keys).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HardswishConfig {}

impl BuildLayer for HardswishConfig {
    fn build(&self, inp: &[usize], _key: &str) -> Result<Arc<dyn Layer>> {
        Ok(Arc::new(PointwiseLayer::new(Hardswish, inp.to_vec())))
    }
}

/// Hard swish, as the function of a [`PointwiseLayer`].
#[derive(Clone, Copy, Debug)]
pub struct Hardswish;

impl PointwiseFn for Hardswish {
    const KIND: &'static str = "hardswish";
    fn kink_distance(&self, x: f64) -> f64 {
        (x + 3.0).abs().min((x - 3.0).abs())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::elementwise_check::check_against_central_differences;
    use crate::core::layers::Fwd;
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
