//! `group-norm`: group normalization (PyTorch `nn.GroupNorm(num_groups, C, eps, affine)`) of
//! per-sample inputs `[C, …]`: the `C` channels are split into `G = num_groups` groups of `C/G`
//! consecutive channels; per group, `x̂ = (x − μ)/√(σ² + ε)` with the mean μ and the biased
//! variance σ² of all its values (its channels at every position), and `y_c = γ_c x̂_c + β_c`
//! with a per-channel affine `weight` γ and `bias` β (each `[C]`, initialized to 1 and 0) when
//! affine. One group is GroupNorm over `[C, …]`; `G = C` is InstanceNorm with an affine map.
//!
//! Backward (per group): `dx̂ = γ_c dy`, `dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) / √(σ² + ε)`,
//! `g_γ_c = Σ dy ⊙ x̂`, `g_β_c = Σ dy` over channel `c`'s positions. The R-operator runs the same
//! passes, written once generic in the scalar type, on dual numbers.
//!
//! Symmetries: with `ε = 0` the output does not change when the whole input is scaled by `c > 0`,
//! so the parameters that produce the input are scale invariant (the catalog's `scale.{label}`;
//! each group alone is invariant too, which the catalog does not list). With `ε > 0` (PyTorch's
//! default 1e-5) that holds only approximately and is not claimed. The affine channels are units:
//! scaling `γ_c, β_c` by `c` scales output channel `c`.

use super::dual::Num;
use super::norm_common::{self, RowNorm};
use super::{BlockSpec, BuildLayer, Layer, Pass, Units};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "group-norm", num_groups, eps = 1e-5, affine = true }`: `nn.GroupNorm(num_groups,
/// C, eps, affine)` on per-sample inputs `[C, …]` (`C` is the input's first size). The defaults
/// are PyTorch's.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupNormConfig {
    /// The number of groups G (≥ 1, dividing C).
    pub num_groups: usize,
    /// ε, finite and ≥ 0 (1e-5; 0 makes the scale invariance exact).
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Learnable per-channel `weight` and `bias` (true).
    #[serde(default = "default_affine")]
    pub affine: bool,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_affine() -> bool {
    true
}

impl BuildLayer for GroupNormConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let eps = self.eps;
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(invalid!("{key}.eps: must be finite and ≥ 0, got {eps}"));
        }
        let Some(&c) = inp.first() else {
            return Err(invalid!("{key}: group-norm needs per-sample inputs [C, …], got []"));
        };
        let g = self.num_groups;
        if g == 0 || !c.is_multiple_of(g) {
            return Err(invalid!(
                "{key}.num_groups: {g} must be ≥ 1 and divide the {c} channels (the input's first size)"
            ));
        }
        let m: usize = inp.iter().product::<usize>() / g;
        if eps == 0.0 && m == 1 {
            return Err(invalid!(
                "{key}.eps: group-norm with eps = 0 over groups of one value divides 0 by 0 (the centred \
                 input is 0); give eps > 0 or fewer groups"
            ));
        }
        Ok(Arc::new(GroupNorm::new(inp.to_vec(), g, eps, self.affine)))
    }
}

/// Group normalization (see the module docs).
#[derive(Clone, Debug)]
pub struct GroupNorm {
    shape: Vec<usize>,
    groups: usize,
    eps: f64,
    affine: bool,
}

impl GroupNorm {
    /// Normalizes per-sample tensors of shape `shape` (`[C, …]`) in `groups` groups of channels
    /// (`groups` divides `C`).
    pub fn new(shape: Vec<usize>, groups: usize, eps: f64, affine: bool) -> Self {
        GroupNorm {
            shape,
            groups,
            eps,
            affine,
        }
    }
    /// `(C, positions per channel)`.
    fn channels(&self) -> (usize, usize) {
        (self.shape[0], self.shape[1..].iter().product())
    }
    /// The channel of value `j` of row `r`.
    #[inline]
    fn channel(&self, r: usize, j: usize) -> usize {
        let (g, pos) = (self.groups, self.channels().1);
        (r % g) * (self.shape[0] / g) + j / pos
    }
}

impl RowNorm for GroupNorm {
    /// `(groups, values per group)`: rows of the per-sample tensor, normalized one by one.
    fn dims(&self) -> (usize, usize) {
        (self.groups, self.shape.iter().product::<usize>() / self.groups)
    }

    /// Forward on `rows` rows of `d` values: `y`, `x̂`, `1/√(σ² + ε)` per row.
    fn forward_num<T: Num>(&self, p: &[T], x: &[T], y: &mut [T], xhat: &mut [T], rstd: &mut [T], rows: usize) {
        let (_, d) = self.dims();
        let inv_d = 1.0 / d as f64;
        let nc = self.shape[0];
        for r in 0..rows {
            let xr = &x[r * d..(r + 1) * d];
            let mut mu = T::cst(0.0);
            for v in xr {
                mu += *v;
            }
            let mu = mu.scale(inv_d);
            let mut var = T::cst(0.0);
            for v in xr {
                let c = *v - mu;
                var += c * c;
            }
            let rs = (var.scale(inv_d) + T::cst(self.eps)).sqrt().recip();
            rstd[r] = rs;
            for j in 0..d {
                let h = (xr[j] - mu) * rs;
                xhat[r * d + j] = h;
                let c = self.channel(r, j);
                y[r * d + j] = if self.affine { h * p[c] + p[nc + c] } else { h };
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
        let nc = self.shape[0];
        if let Some(g) = grad {
            let zero = T::cst(0.0);
            g.iter_mut().for_each(|v| *v = zero);
            for r in 0..rows {
                for j in 0..d {
                    let c = self.channel(r, j);
                    g[c] += dy[r * d + j] * xhat[r * d + j];
                    g[nc + c] += dy[r * d + j];
                }
            }
            g.iter_mut().for_each(|v| *v = v.scale(alpha));
        }
        if let Some(dx) = dx {
            for r in 0..rows {
                let (mut m1, mut m2) = (T::cst(0.0), T::cst(0.0));
                for j in 0..d {
                    let dh = if self.affine {
                        dy[r * d + j] * p[self.channel(r, j)]
                    } else {
                        dy[r * d + j]
                    };
                    m1 += dh;
                    m2 += dh * xhat[r * d + j];
                }
                let (m1, m2) = (m1.scale(inv_d), m2.scale(inv_d));
                for j in 0..d {
                    let dh = if self.affine {
                        dy[r * d + j] * p[self.channel(r, j)]
                    } else {
                        dy[r * d + j]
                    };
                    dx[r * d + j] = (dh - m1 - xhat[r * d + j] * m2) * rstd[r];
                }
            }
        }
    }
}

impl Layer for GroupNorm {
    fn kind(&self) -> &'static str {
        "group-norm"
    }
    fn describe(&self) -> String {
        format!(
            "group-norm of {:?} in {} groups, eps {}{}",
            self.shape,
            self.groups,
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
        norm_common::affine_blocks(self.affine, self.shape[0], true)
    }
    fn n_params(&self) -> usize {
        if self.affine {
            2 * self.shape[0]
        } else {
            0
        }
    }
    /// `[x̂ (G·m) | 1/√(σ² + ε) (G)]` per sample (`m` values per group).
    fn saved_per_sample(&self) -> usize {
        norm_common::saved_per_sample(self)
    }
    fn normalizes_input(&self) -> bool {
        self.eps == 0.0
    }
    fn units(&self) -> Option<Units> {
        let (nc, pos) = self.channels();
        self.affine.then(|| Units {
            noun: "channel",
            params: (0..nc).map(|c| vec![c, nc + c]).collect(),
            positions: (0..nc).map(|c| (c * pos..(c + 1) * pos).collect()).collect(),
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

    fn layer(groups: usize, eps: f64, affine: bool, shape: &[usize]) -> Arc<dyn Layer> {
        LayerConfig::from(GroupNormConfig {
            num_groups: groups,
            eps,
            affine,
        })
        .build(shape, "model.layers[0]")
        .unwrap()
    }

    /// PyTorch's formula written out on `[4, 3]` (4 channels, 3 positions) in 2 groups: each
    /// group's 6 values normalized by their mean and biased variance, then `γ_c ·  + β_c`.
    #[test]
    fn forward_is_pytorchs_formula() {
        let l = layer(2, 1e-5, true, &[4, 3]);
        let (b, p, x) = (2, normal(8, 1), normal(24, 2));
        let mut y = vec![0.0; 24];
        l.forward(&p, &x, &mut y, &mut vec![0.0; b * l.saved_per_sample()], b, &mut []);
        for i in 0..b {
            for g in 0..2 {
                let vals = &x[i * 12 + g * 6..i * 12 + (g + 1) * 6];
                let mu = vals.iter().sum::<f64>() / 6.0;
                let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / 6.0;
                for k in 0..6 {
                    let c = 2 * g + k / 3;
                    let e = p[c] * (vals[k] - mu) / (var + 1e-5).sqrt() + p[4 + c];
                    let a = y[i * 12 + g * 6 + k];
                    // A few roundings of values of order 1.
                    assert!((a - e).abs() <= 1e-14 * (1.0 + e.abs()), "{a} vs {e}");
                }
            }
        }
    }

    /// Central differences with step `h = 1e-5` on inputs of variance of order 1: truncation
    /// `h² · |f'''| ≈ 1e-10 · O(10)`, rounding `ε/h ≈ 1e-11`: checked to 1e-7.
    #[test]
    fn backward_r_operator_and_statistics_match_differences_and_a_per_sample_loop() {
        for (g, eps, affine, shape) in [
            (2, 1e-5, true, vec![4, 3]),
            (1, 0.0, true, vec![4, 2, 2]),
            (4, 1e-3, false, vec![4, 3]),
            (3, 1e-5, true, vec![6]),
        ] {
            let l = layer(g, eps, affine, &shape);
            let b = 3;
            let (p, x) = (normal(l.n_params(), 3), normal(b * l.in_dim(), 4));
            fd_check::check(&*l, &p, &x, b, 1e-5, 1e-7);
        }
    }

    #[test]
    fn the_spec_table_parses_and_bad_values_are_refused_naming_the_field() {
        let c: LayerConfig = toml::from_str("type = \"group-norm\"\nnum_groups = 2").unwrap();
        assert_eq!(
            c,
            LayerConfig::from(GroupNormConfig {
                num_groups: 2,
                eps: 1e-5,
                affine: true
            })
        );
        let e = toml::from_str::<LayerConfig>("type = \"group-norm\"").unwrap_err();
        assert!(e.to_string().contains("missing field `num_groups`"), "{e}");
        let e = toml::from_str::<LayerConfig>("type = \"group-norm\"\nnum_groups = 2\nnum_channels = 4").unwrap_err();
        assert!(e.to_string().contains("unknown field `num_channels`"), "{e}");
        let build = |g: usize, eps: f64, shape: &[usize]| {
            LayerConfig::from(GroupNormConfig {
                num_groups: g,
                eps,
                affine: true,
            })
            .build(shape, "model.layers[1]")
            .unwrap_err()
            .to_string()
        };
        let e = build(3, 1e-5, &[4, 2]);
        assert!(
            e.contains("model.layers[1].num_groups: 3 must be ≥ 1 and divide the 4 channels"),
            "{e}"
        );
        assert!(build(0, 1e-5, &[4]).contains("model.layers[1].num_groups:"));
        assert!(build(4, 0.0, &[4]).contains("model.layers[1].eps:"));
        assert!(build(2, f64::NAN, &[4]).contains("model.layers[1].eps:"));
    }
}
