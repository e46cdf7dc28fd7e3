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

use super::dual::{as_duals, Dual, Num};
use super::{BlockInit, BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd, Units};
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

    fn dual_len(&self, b: usize) -> usize {
        let (t, d) = self.dims();
        2 * (2 * self.n_params() + b * t * (5 * d + 1))
    }

    /// The dual buffers (θ, x, x̂, rstd, y, dy, dx, grad) with the forward pass at `(p + εv, x + ε rx)`.
    #[allow(clippy::type_complexity)]
    fn dual_forward<'s>(
        &self,
        p: &[f64],
        v: &[f64],
        x: &[f64],
        rx: Option<&[f64]>,
        b: usize,
        scratch: &'s mut [f64],
    ) -> [&'s mut [Dual]; 8] {
        let (t, d) = self.dims();
        let (np, n) = (self.n_params(), b * t * d);
        let s = as_duals(&mut scratch[..self.dual_len(b)]);
        let (th, s) = s.split_at_mut(np);
        let (xd, s) = s.split_at_mut(n);
        let (xh, s) = s.split_at_mut(n);
        let (rs, s) = s.split_at_mut(b * t);
        let (yd, s) = s.split_at_mut(n);
        let (dyd, s) = s.split_at_mut(n);
        let (dxd, s) = s.split_at_mut(n);
        let gd = &mut s[..np];
        for ((a, pv), vv) in th.iter_mut().zip(p).zip(v) {
            *a = Dual { v: *pv, d: *vv };
        }
        for (k, a) in xd.iter_mut().enumerate() {
            *a = Dual {
                v: x[k],
                d: rx.map_or(0.0, |r| r[k]),
            };
        }
        self.forward_num(th, xd, yd, xh, rs, b * t);
        [th, xd, xh, rs, yd, dyd, dxd, gd]
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
        if !self.affine {
            return vec![];
        }
        vec![BlockSpec {
            name: "weight".into(),
            shape: vec![self.dims().1],
            init: BlockInit::Ones,
        }]
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
        let (t, d) = self.dims();
        t * (d + 1)
    }
    fn scratch_len(&self, b: usize) -> usize {
        self.dual_len(b).max(self.n_params())
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

    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let (t, d) = self.dims();
        let per = t * (d + 1);
        for i in 0..b {
            let (xh, rs) = saved[i * per..(i + 1) * per].split_at_mut(t * d);
            self.forward_num(
                p,
                &x[i * t * d..(i + 1) * t * d],
                &mut y[i * t * d..(i + 1) * t * d],
                xh,
                rs,
                t,
            );
        }
    }

    fn backward(
        &self,
        p: &[f64],
        f: Fwd<'_>,
        dy: &[f64],
        dx: Option<&mut [f64]>,
        grad: Option<&mut [f64]>,
        alpha: f64,
        b: usize,
        scratch: &mut [f64],
    ) {
        let (t, d) = self.dims();
        let per = t * (d + 1);
        let np = self.n_params();
        let mut dx = dx;
        let mut grad = grad;
        if let Some(g) = grad.as_deref_mut() {
            g.fill(0.0);
        }
        let gs = &mut scratch[..np];
        for i in 0..b {
            let (xh, rs) = f.saved[i * per..(i + 1) * per].split_at(t * d);
            let dyi = &dy[i * t * d..(i + 1) * t * d];
            let dxi = dx.as_deref_mut().map(|v| &mut v[i * t * d..(i + 1) * t * d]);
            let want = grad.is_some() && np > 0;
            self.backward_num(p, xh, rs, dyi, dxi, want.then_some(&mut *gs), alpha, t);
            if let (Some(g), true) = (grad.as_deref_mut(), want) {
                for (a, v) in g.iter_mut().zip(gs.iter()) {
                    *a += v;
                }
            }
        }
    }

    fn rforward(
        &self,
        p: &[f64],
        v: &[f64],
        f: Fwd<'_>,
        rx: Option<&[f64]>,
        ry: &mut [f64],
        b: usize,
        scratch: &mut [f64],
    ) {
        let [_, _, _, _, yd, ..] = self.dual_forward(p, v, f.x, rx, b, scratch);
        for (r, a) in ry.iter_mut().zip(yd.iter()) {
            *r = a.d;
        }
    }

    fn rbackward(
        &self,
        p: &[f64],
        v: &[f64],
        r: RFwd<'_>,
        rdy: &[f64],
        rdx: Option<&mut [f64]>,
        hv: &mut [f64],
        alpha: f64,
        b: usize,
        scratch: &mut [f64],
    ) {
        let (t, _) = self.dims();
        let [th, _xd, xh, rs, _yd, dyd, dxd, gd] = self.dual_forward(p, v, r.f.x, r.rx, b, scratch);
        for (k, a) in dyd.iter_mut().enumerate() {
            *a = Dual { v: r.dy[k], d: rdy[k] };
        }
        let want_dx = rdx.is_some();
        let np = self.n_params();
        self.backward_num(
            th,
            xh,
            rs,
            dyd,
            want_dx.then_some(&mut *dxd),
            (np > 0).then_some(&mut *gd),
            alpha,
            b * t,
        );
        if np > 0 {
            for (h, g) in hv.iter_mut().zip(gd.iter()) {
                *h += g.d;
            }
        }
        if let Some(rdx) = rdx {
            for (o, a) in rdx.iter_mut().zip(dxd.iter()) {
                *o = a.d;
            }
        }
    }
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
