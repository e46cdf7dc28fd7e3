//! `rms-norm`: root-mean-square normalization over the last axis (PyTorch `nn.RMSNorm(d, eps,
//! elementwise_affine)`): per position, `x̂ = x/√(mean(x²) + ε)` over the `d` values, and
//! `y = γ ⊙ x̂` with an affine `weight` γ (`[d]`, initialized to 1) when affine. No bias and no
//! centring. PyTorch's default `eps = None` means the machine epsilon of the input's type:
//! nequil computes in `f64`, so it is `f64::EPSILON` = 2.220446049250313e-16.
//!
//! Backward: `dx̂ = γ ⊙ dy`, `dx = (dx̂ − x̂ · mean(dx̂ ⊙ x̂)) / √(mean(x²) + ε)`,
//! `g_γ = Σ_t dy ⊙ x̂` (summed over positions). The R-operator runs the same passes, written once
//! generic in the scalar type, on dual numbers.
//!
//! Symmetries: with `ε = 0` the output does not change when the whole input is scaled by `c > 0`,
//! so the parameters that produce the input are scale invariant (the catalog's `scale.{label}`).
//! With `ε > 0` (PyTorch's default included, however small) that holds only approximately — the
//! breaking is of relative size `ε/mean(x²)` — and is not claimed. The affine features are units:
//! scaling `γ_j` by `c` scales output feature `j`.

use super::dual::Num;
use super::norm_common::{self, RowNorm};
use super::{BlockSpec, BuildLayer, Layer, Pass, Units};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "rms-norm", eps = 2.22e-16, affine = true }`: `nn.RMSNorm(d, eps,
/// elementwise_affine)` over the last axis (`d` is the input's last size). Without `eps`,
/// PyTorch's default for `f64` inputs, `torch.finfo(torch.float64).eps`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RmsNormConfig {
    /// ε, finite and ≥ 0 (default: `f64::EPSILON`; 0 makes the scale invariance exact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// A learnable `weight` (true).
    pub affine: bool,
}

impl Default for RmsNormConfig {
    fn default() -> Self {
        RmsNormConfig {
            eps: None,
            affine: true,
        }
    }
}

impl BuildLayer for RmsNormConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let eps = self.eps.unwrap_or(f64::EPSILON);
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(invalid!("{key}.eps: must be finite and ≥ 0, got {eps}"));
        }
        if inp.is_empty() {
            return Err(invalid!("{key}: rms-norm needs a non-empty input shape"));
        }
        Ok(Arc::new(RmsNorm::new(inp.to_vec(), eps, self.affine)))
    }
}

/// RMS normalization over the last axis (see the module docs).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    shape: Vec<usize>,
    eps: f64,
    affine: bool,
}

impl RmsNorm {
    /// Normalizes the last axis of per-sample tensors of shape `shape` (non-empty).
    pub fn new(shape: Vec<usize>, eps: f64, affine: bool) -> Self {
        RmsNorm { shape, eps, affine }
    }
}

impl RowNorm for RmsNorm {
    /// `(positions, d)`.
    fn dims(&self) -> (usize, usize) {
        let d = *self.shape.last().expect("non-empty shape");
        (self.shape[..self.shape.len() - 1].iter().product(), d)
    }

    /// Forward on `rows` rows of `d` values: `y`, `x̂`, `1/√(mean(x²) + ε)` per row. A row of
    /// zeros with `ε = 0` gives `x̂ = 0` (PyTorch gives NaN): the limit along every ray is bounded,
    /// and 0 is the value at which the gradient below is finite.
    fn forward_num<T: Num>(&self, p: &[T], x: &[T], y: &mut [T], xhat: &mut [T], rstd: &mut [T], rows: usize) {
        let (_, d) = self.dims();
        let inv_d = 1.0 / d as f64;
        for r in 0..rows {
            let xr = &x[r * d..(r + 1) * d];
            let mut ms = T::cst(0.0);
            for v in xr {
                ms += *v * *v;
            }
            let ms = ms.scale(inv_d) + T::cst(self.eps);
            let rs = if ms.val() > 0.0 { ms.sqrt().recip() } else { T::cst(0.0) };
            rstd[r] = rs;
            for j in 0..d {
                let h = xr[j] * rs;
                xhat[r * d + j] = h;
                y[r * d + j] = if self.affine { h * p[j] } else { h };
            }
        }
    }

    /// Backward on `rows` rows; `grad` (if given) is overwritten with `alpha Σ g`.
    #[allow(clippy::too_many_arguments)]
    fn backward_num<T: Num>(
        &self,
        p: &[T],
        xhat: &[T],
        rstd: &[T],
        dy: &[T],
        dx: Option<&mut [T]>,
        grad: Option<&mut [T]>,
        alpha: f64,
        rows: usize,
    ) {
        let (_, d) = self.dims();
        let inv_d = 1.0 / d as f64;
        if let Some(g) = grad {
            let zero = T::cst(0.0);
            g.iter_mut().for_each(|v| *v = zero);
            for r in 0..rows {
                for j in 0..d {
                    g[j] += dy[r * d + j] * xhat[r * d + j];
                }
            }
            g.iter_mut().for_each(|v| *v = v.scale(alpha));
        }
        if let Some(dx) = dx {
            for r in 0..rows {
                let dh = |j: usize| {
                    if self.affine {
                        dy[r * d + j] * p[j]
                    } else {
                        dy[r * d + j]
                    }
                };
                let mut m2 = T::cst(0.0);
                for j in 0..d {
                    m2 += dh(j) * xhat[r * d + j];
                }
                let m2 = m2.scale(inv_d);
                for j in 0..d {
                    dx[r * d + j] = (dh(j) - xhat[r * d + j] * m2) * rstd[r];
                }
            }
        }
    }
}

impl Layer for RmsNorm {
    fn kind(&self) -> &'static str {
        "rms-norm"
    }
    fn describe(&self) -> String {
        format!(
            "rms-norm over the last axis of {:?}, eps {}{}",
            self.shape,
            self.eps,
            if self.affine { ", affine" } else { "" }
        )
    }
    fn in_shape(&self) -> &[usize] {
        &self.shape
    }
    fn out_shape(&self) -> &[usize] {
        &self.shape
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        norm_common::affine_blocks(self.affine, self.dims().1, false)
    }
    fn n_params(&self) -> usize {
        if self.affine {
            self.dims().1
        } else {
            0
        }
    }
    /// `[x̂ (T·d) | 1/√(mean(x²) + ε) (T)]` per sample.
    fn saved_per_sample(&self) -> usize {
        norm_common::saved_per_sample(self)
    }
    fn normalizes_input(&self) -> bool {
        self.eps == 0.0
    }
    fn units(&self) -> Option<Units> {
        let (t, d) = self.dims();
        self.affine.then(|| Units {
            noun: "feature",
            params: (0..d).map(|j| vec![j]).collect(),
            positions: (0..d).map(|j| (0..t).map(|p| p * d + j).collect()).collect(),
        })
    }
    fn pass(&self, _positions: &[usize]) -> Pass {
        Pass::Block
    }

    norm_common::row_norm_passes!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::{fd_check, LayerConfig};
    use crate::core::rng::Rng;

    fn normal(n: usize, seed: u64) -> Vec<f64> {
        let mut v = vec![0.0; n];
        Rng::new(seed).fill_normal(&mut v);
        v
    }

    /// PyTorch's formula written out: `γ_j x_j / √(mean(x²) + ε)` per row of 4.
    #[test]
    fn forward_is_pytorchs_formula_with_its_default_eps() {
        let l = LayerConfig::from(RmsNormConfig::default()).build(&[3, 4], "k").unwrap();
        assert!(
            l.describe().contains("eps 0.0000000000000002220446049250313"),
            "{}",
            l.describe()
        );
        let (b, p, x) = (2, normal(4, 1), normal(24, 2));
        let mut y = vec![0.0; 24];
        l.forward(&p, &x, &mut y, &mut vec![0.0; b * l.saved_per_sample()], b, &mut []);
        for r in 0..6 {
            let row = &x[r * 4..(r + 1) * 4];
            let ms = row.iter().map(|v| v * v).sum::<f64>() / 4.0 + f64::EPSILON;
            for j in 0..4 {
                let e = p[j] * row[j] / ms.sqrt();
                // A few roundings of values of order 1.
                assert!(
                    (y[r * 4 + j] - e).abs() <= 1e-14 * (1.0 + e.abs()),
                    "{} vs {e}",
                    y[r * 4 + j]
                );
            }
        }
    }

    /// Central differences with step `h = 1e-5` on inputs with `mean(x²)` of order 1: truncation
    /// `h² · |f'''| ≈ 1e-10 · O(10)`, rounding `ε/h ≈ 1e-11`: checked to 1e-7.
    #[test]
    fn backward_r_operator_and_statistics_match_differences_and_a_per_sample_loop() {
        for (eps, affine) in [(None, true), (Some(1e-3), false), (Some(0.0), true)] {
            let l = LayerConfig::from(RmsNormConfig { eps, affine })
                .build(&[3, 4], "k")
                .unwrap();
            let (b, p, x) = (3, normal(l.n_params(), 3), normal(36, 4));
            fd_check::check(&*l, &p, &x, b, 1e-5, 1e-7);
        }
    }

    /// With ε = 0 the output is exactly invariant under a scaling of the whole input (the
    /// symmetry claimed); with ε > 0 it is not, and nothing is claimed.
    #[test]
    fn exact_scale_invariance_only_without_eps() {
        let x = normal(8, 5);
        let xs: Vec<f64> = x.iter().map(|v| v * 7.0).collect();
        for (eps, claimed) in [(0.0, true), (1e-5, false)] {
            let l = LayerConfig::from(RmsNormConfig {
                eps: Some(eps),
                affine: false,
            })
            .build(&[8], "k")
            .unwrap();
            assert_eq!(l.normalizes_input(), claimed);
            let (mut y, mut ys, mut s) = (vec![0.0; 8], vec![0.0; 8], vec![0.0; 9]);
            l.forward(&[], &x, &mut y, &mut s, 1, &mut []);
            l.forward(&[], &xs, &mut ys, &mut s, 1, &mut []);
            let dev = y.iter().zip(&ys).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            if claimed {
                assert!(dev <= 1e-15, "{dev}");
            } else {
                assert!(dev > 1e-9, "{dev}");
            }
        }
    }

    #[test]
    fn the_spec_table_parses_and_bad_values_are_refused() {
        let c: LayerConfig = toml::from_str("type = \"rms-norm\"").unwrap();
        assert_eq!(c, LayerConfig::from(RmsNormConfig::default()));
        let e = toml::from_str::<LayerConfig>("type = \"rms-norm\"\nelementwise_affine = true").unwrap_err();
        assert!(e.to_string().contains("unknown field `elementwise_affine`"), "{e}");
        let e = LayerConfig::from(RmsNormConfig {
            eps: Some(-1.0),
            affine: true,
        })
        .build(&[3], "model.layers[2]")
        .unwrap_err();
        assert!(e.to_string().contains("model.layers[2].eps:"), "{e}");
    }
}
