//! `layer-norm`: normalization over the last axis (PyTorch `nn.LayerNorm(d, eps,
//! elementwise_affine)`): per position, `x̂ = (x − μ)/√(σ² + ε)` with the mean μ and the biased
//! variance σ² of the `d` values, and `y = γ ⊙ x̂ + β` with an affine `weight` γ and `bias` β
//! (each `[d]`, initialized to 1 and 0) when affine.
//!
//! Backward: `dx̂ = γ ⊙ dy`, `dx = (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) / √(σ² + ε)`,
//! `g_γ = Σ_t dy ⊙ x̂`, `g_β = Σ_t dy` (summed over positions: the per-sample statistics form them
//! one sample at a time). The R-operator runs the same passes, written once generic in the scalar
//! type, on dual numbers.
//!
//! Symmetries: with `ε = 0` the output does not change when the whole input is scaled by `c > 0`,
//! so the parameters that produce the input are scale invariant (the catalog's `scale.{label}`).
//! With `ε > 0` (PyTorch's default 1e-5) that holds only approximately and is not claimed. The
//! affine features are units: scaling `γ_j, β_j` by `c` scales output feature `j`.

use super::dual::Num;
use super::norm_common::{self, RowNorm};
use super::{BlockSpec, BuildLayer, Layer, Pass, Units};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "layer-norm", eps = 1e-5, affine = true }`: `nn.LayerNorm(d, eps,
/// elementwise_affine)` over the last axis (`d` is the input's last size). The defaults are
/// PyTorch's.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LayerNormConfig {
    /// ε, finite and ≥ 0 (1e-5; 0 makes the scale invariance exact).
    pub eps: f64,
    /// Learnable `weight` and `bias` (true).
    pub affine: bool,
}

impl Default for LayerNormConfig {
    fn default() -> Self {
        LayerNormConfig {
            eps: 1e-5,
            affine: true,
        }
    }
}

impl BuildLayer for LayerNormConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let eps = self.eps;
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(invalid!("{key}.eps: must be finite and ≥ 0, got {eps}"));
        }
        let Some(&last) = inp.last() else {
            return Err(invalid!("{key}: layer-norm needs a non-empty input shape"));
        };
        if eps == 0.0 && last == 1 {
            return Err(invalid!(
                "{key}.eps: layer-norm with eps = 0 over a last axis of size 1 divides 0 by 0 (the centred \
                 input is 0); give eps > 0 or normalize more than one feature"
            ));
        }
        Ok(Arc::new(LayerNorm::new(inp.to_vec(), eps, self.affine)))
    }
}

/// Layer normalization over the last axis (see the module docs).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    shape: Vec<usize>,
    eps: f64,
    affine: bool,
}

impl LayerNorm {
    /// Normalizes the last axis of per-sample tensors of shape `shape` (non-empty).
    pub fn new(shape: Vec<usize>, eps: f64, affine: bool) -> Self {
        LayerNorm { shape, eps, affine }
    }
}

impl RowNorm for LayerNorm {
    /// `(positions, d)`.
    fn dims(&self) -> (usize, usize) {
        let d = *self.shape.last().expect("non-empty shape");
        (self.shape[..self.shape.len() - 1].iter().product(), d)
    }

    /// Forward on `rows` rows of `d` values: `y`, `x̂`, `1/√(σ² + ε)` per row.
    fn forward_num<T: Num>(&self, p: &[T], x: &[T], y: &mut [T], xhat: &mut [T], rstd: &mut [T], rows: usize) {
        let (_, d) = self.dims();
        let inv_d = 1.0 / d as f64;
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
                y[r * d + j] = if self.affine { h * p[j] + p[d + j] } else { h };
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
                    g[d + j] += dy[r * d + j];
                }
            }
            g.iter_mut().for_each(|v| *v = v.scale(alpha));
        }
        if let Some(dx) = dx {
            for r in 0..rows {
                let (mut m1, mut m2) = (T::cst(0.0), T::cst(0.0));
                for j in 0..d {
                    let dh = if self.affine {
                        dy[r * d + j] * p[j]
                    } else {
                        dy[r * d + j]
                    };
                    m1 += dh;
                    m2 += dh * xhat[r * d + j];
                }
                let (m1, m2) = (m1.scale(inv_d), m2.scale(inv_d));
                for j in 0..d {
                    let dh = if self.affine {
                        dy[r * d + j] * p[j]
                    } else {
                        dy[r * d + j]
                    };
                    dx[r * d + j] = (dh - m1 - xhat[r * d + j] * m2) * rstd[r];
                }
            }
        }
    }
}

impl Layer for LayerNorm {
    fn kind(&self) -> &'static str {
        "layer-norm"
    }
    fn describe(&self) -> String {
        format!(
            "layer-norm over the last axis of {:?}, eps {}{}",
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
        norm_common::affine_blocks(self.affine, self.dims().1, true)
    }
    fn n_params(&self) -> usize {
        if self.affine {
            2 * self.dims().1
        } else {
            0
        }
    }
    /// `[x̂ (T·d) | 1/√(σ² + ε) (T)]` per sample.
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
            params: (0..d).map(|j| vec![j, d + j]).collect(),
            positions: (0..d).map(|j| (0..t).map(|p| p * d + j).collect()).collect(),
        })
    }
    fn pass(&self, _positions: &[usize]) -> Pass {
        Pass::Block
    }

    norm_common::row_norm_passes!();
}
