//! `batch-norm`: batch normalization in evaluation mode (PyTorch `nn.BatchNorm1d`/`2d`/`3d` after
//! `module.eval()`): per channel `c` (axis 0 of the per-sample input `[C, …]`),
//! `y = γ_c (x − μ_c)/√(σ²_c + ε) + β_c`, where the running mean `μ` and running variance `σ²`
//! are fixed buffers and `γ` (`weight`), `β` (`bias`), each `[C]` and initialized to 1 and 0, are
//! the learnable parameters when `affine`.
//!
//! **Buffers.** `μ` and `σ²` are not parameters: they are not part of θ, have no gradient and are
//! never trained. They live in the layer's spec (`running_mean`, `running_var`, PyTorch's fresh
//! values 0 and 1 by default) and so in `model.toml`; `nequil.Model.from_torch` copies them from
//! the module's buffers. Training mode (normalizing by the statistics of the batch, which couples
//! the samples of a batch) is refused.
//!
//! With the per-channel constants `r_c = 1/√(σ²_c + ε)` and `x̂ = (x − μ_c) r_c`, the layer is
//! an affine map per channel, bilinear in `(θ, x)`: backward `dx = γ_c r_c dy`,
//! `g_γ_c = Σ_positions dy ⊙ x̂`, `g_β_c = Σ_positions dy`; R-operator
//! `R{y} = γ_c r_c R{x} + v_γ_c x̂ + v_β_c`, `R{dx} = r_c (γ_c R{dy} + v_γ_c dy)`,
//! `R{g_γ_c} = Σ (R{dy} x̂ + dy r_c R{x})`, `R{g_β_c} = Σ R{dy}`.
//!
//! Symmetries are an affine layer's, not a normalization's (the output scales with the input: no
//! scale invariance). Its channels are units: scaling `γ_c, β_c` by `c > 0` scales output channel
//! `c` exactly. A rescaling of whole input channels is taken in by `γ` (scaling `γ_c` by `1/c`
//! restores the output) when those channels' running means are exactly 0, and passes through
//! unchanged when the layer is not affine; with `μ_c ≠ 0` the shift `γ_c r_c μ_c` would have to
//! change too, which no scaling of parameters does, so the rescaling is blocked.

use super::{BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd, Units};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "batch-norm", eps = 1e-5, affine = true, running_mean = [...], running_var = [...] }`:
/// `nn.BatchNorm1d`/`2d`/`3d(C, eps, affine)` in evaluation mode on per-sample inputs `[C]`,
/// `[C, L]`, `[C, H, W]` or `[C, D, H, W]` (`C` is the input's first size). The defaults are
/// PyTorch's.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BatchNormConfig {
    /// ε, finite and ≥ 0 (1e-5), added to the running variance.
    pub eps: f64,
    /// Learnable `weight` γ and `bias` β (true).
    pub affine: bool,
    /// The running mean μ, `C` finite values (a fixed buffer, not trained; default all 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_mean: Option<Vec<f64>>,
    /// The running variance σ², `C` finite values ≥ 0 with `σ²_c + ε > 0` (a fixed buffer, not
    /// trained; default all 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_var: Option<Vec<f64>>,
    /// Training mode (false). `true` is refused: normalizing by the batch's statistics is not
    /// supported yet.
    pub training: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            affine: true,
            running_mean: None,
            running_var: None,
            training: false,
        }
    }
}

impl BuildLayer for BatchNormConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        if self.training {
            return Err(invalid!(
                "{key}.training: batch-norm in training mode normalizes by the statistics of each batch, \
                 which couples the samples of a batch; only evaluation mode (fixed running statistics) is \
                 supported, training mode is future work (in PyTorch: module.eval())"
            ));
        }
        let eps = self.eps;
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(invalid!("{key}.eps: must be finite and ≥ 0, got {eps}"));
        }
        if inp.is_empty() || inp.len() > 4 {
            return Err(invalid!(
                "{key}: batch-norm needs per-sample inputs [C], [C, L], [C, H, W] or [C, D, H, W], got {inp:?}"
            ));
        }
        let c = inp[0];
        let take = |field: &str, v: &Option<Vec<f64>>, default: f64| -> Result<Vec<f64>> {
            match v {
                None => Ok(vec![default; c]),
                Some(v) if v.len() != c => Err(invalid!(
                    "{key}.{field}: {} values for {c} channels (the input's first size)",
                    v.len()
                )),
                Some(v) => match v.iter().position(|a| !a.is_finite()) {
                    Some(j) => Err(invalid!("{key}.{field}[{j}]: must be finite, got {}", v[j])),
                    None => Ok(v.clone()),
                },
            }
        };
        let mean = take("running_mean", &self.running_mean, 0.0)?;
        let var = take("running_var", &self.running_var, 1.0)?;
        for (j, v) in var.iter().enumerate() {
            if *v < 0.0 || *v + eps <= 0.0 {
                return Err(invalid!(
                    "{key}.running_var[{j}]: must be ≥ 0 with running_var + eps > 0, got {v} (eps {eps})"
                ));
            }
        }
        Ok(Arc::new(BatchNorm::new(inp.to_vec(), &mean, &var, eps, self.affine)))
    }
}

/// Batch normalization in evaluation mode (see the module docs).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    shape: Vec<usize>,
    eps: f64,
    affine: bool,
    /// μ per channel.
    mean: Vec<f64>,
    /// σ² per channel.
    var: Vec<f64>,
    /// `r_c = 1/√(σ²_c + ε)` per channel.
    rstd: Vec<f64>,
}

impl BatchNorm {
    /// Normalizes per-sample inputs of shape `shape` (`[C, …]`, non-empty) with the running
    /// statistics `mean` and `var` (`C` values each, `var + eps > 0`).
    pub fn new(shape: Vec<usize>, mean: &[f64], var: &[f64], eps: f64, affine: bool) -> Self {
        BatchNorm {
            shape,
            eps,
            affine,
            mean: mean.to_vec(),
            var: var.to_vec(),
            rstd: var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect(),
        }
    }
    /// `(C, positions per channel)`.
    fn dims(&self) -> (usize, usize) {
        (self.shape[0], self.shape[1..].iter().product())
    }
    /// `γ_c r_c` (or `r_c` without affine).
    fn slope(&self, p: &[f64], c: usize) -> f64 {
        if self.affine {
            p[c] * self.rstd[c]
        } else {
            self.rstd[c]
        }
    }
    /// Per-channel `(Σ dy ⊙ x̂, Σ dy)` of one sample into `g` (`[γ | β]`).
    fn sample_grad(&self, x: &[f64], dy: &[f64], g: &mut [f64]) {
        let (nc, pos) = self.dims();
        for c in 0..nc {
            let (mu, r) = (self.mean[c], self.rstd[c]);
            let (mut sg, mut sb) = (0.0, 0.0);
            for k in c * pos..(c + 1) * pos {
                sg += dy[k] * (x[k] - mu) * r;
                sb += dy[k];
            }
            g[c] = sg;
            g[nc + c] = sb;
        }
    }
}

impl Layer for BatchNorm {
    fn kind(&self) -> &'static str {
        "batch-norm"
    }
    fn describe(&self) -> String {
        format!(
            "batch-norm (eval) over the {} channels of {:?}, eps {}{}",
            self.shape[0],
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
        super::norm_common::affine_blocks(self.affine, self.shape[0], true)
    }
    fn n_params(&self) -> usize {
        if self.affine {
            2 * self.shape[0]
        } else {
            0
        }
    }
    /// The `2C` per-sample sums of [`Layer::grad_sq`] and [`Layer::grad_quad`].
    fn scratch_len(&self, _b: usize) -> usize {
        self.n_params()
    }
    /// `running_mean` and `running_var` (the spec's values) and `num_batches_tracked` (unused).
    fn buffers(&self) -> Vec<(String, Option<Vec<f64>>)> {
        vec![
            ("running_mean".into(), Some(self.mean.clone())),
            ("running_var".into(), Some(self.var.clone())),
            ("num_batches_tracked".into(), None),
        ]
    }
    fn units(&self) -> Option<Units> {
        let (nc, pos) = self.dims();
        self.affine.then(|| Units {
            noun: "channel",
            params: (0..nc).map(|c| vec![c, nc + c]).collect(),
            positions: (0..nc).map(|c| (c * pos..(c + 1) * pos).collect()).collect(),
        })
    }
    fn pass(&self, positions: &[usize]) -> Pass {
        let (nc, pos) = self.dims();
        let mut chans: Vec<usize> = positions.iter().map(|p| p / pos).collect();
        chans.sort_unstable();
        chans.dedup();
        let mut given = positions.to_vec();
        given.sort_unstable();
        given.dedup();
        let whole = chans.iter().all(|&c| c < nc) && given.len() == positions.len() && given.len() == chans.len() * pos;
        if !whole || chans.iter().any(|&c| self.mean[c] != 0.0) {
            return Pass::Block;
        }
        if self.affine {
            Pass::Absorb(chans)
        } else {
            Pass::Through(given)
        }
    }

    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let (nc, pos) = self.dims();
        let d = nc * pos;
        for i in 0..b {
            for c in 0..nc {
                let (a, mu) = (self.slope(p, c), self.mean[c]);
                let beta = if self.affine { p[nc + c] } else { 0.0 };
                for k in i * d + c * pos..i * d + (c + 1) * pos {
                    y[k] = a * (x[k] - mu) + beta;
                }
            }
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
        _scratch: &mut [f64],
    ) {
        let (nc, pos) = self.dims();
        let d = nc * pos;
        if let Some(dx) = dx {
            for i in 0..b {
                for c in 0..nc {
                    let a = self.slope(p, c);
                    for k in i * d + c * pos..i * d + (c + 1) * pos {
                        dx[k] = a * dy[k];
                    }
                }
            }
        }
        if let (Some(g), true) = (grad, self.affine) {
            g.fill(0.0);
            for i in 0..b {
                for c in 0..nc {
                    let (mu, r) = (self.mean[c], self.rstd[c]);
                    for k in i * d + c * pos..i * d + (c + 1) * pos {
                        g[c] += dy[k] * (f.x[k] - mu) * r;
                        g[nc + c] += dy[k];
                    }
                }
            }
            g.iter_mut().for_each(|v| *v *= alpha);
        }
    }

    /// Closed form per sample: the `2C` per-channel sums of one sample at a time (in scratch).
    fn grad_sq(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        if !self.affine {
            return;
        }
        let d = self.in_dim();
        let g = &mut scratch[..self.n_params()];
        for i in 0..b {
            self.sample_grad(&f.x[i * d..(i + 1) * d], &dy[i * d..(i + 1) * d], g);
            for (s, v) in sm.iter_mut().zip(g.iter()) {
                *s += v * v;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn grad_quad(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, dd: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        if !self.affine {
            return;
        }
        let d = self.in_dim();
        let g = &mut scratch[..self.n_params()];
        for (i, qi) in q.iter_mut().enumerate().take(b) {
            self.sample_grad(&f.x[i * d..(i + 1) * d], &dy[i * d..(i + 1) * d], g);
            *qi += g.iter().zip(dd).map(|(v, e)| v * v * e).sum::<f64>();
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
        _scratch: &mut [f64],
    ) {
        let (nc, pos) = self.dims();
        let d = nc * pos;
        for i in 0..b {
            for c in 0..nc {
                let (a, mu, r) = (self.slope(p, c), self.mean[c], self.rstd[c]);
                for k in i * d + c * pos..i * d + (c + 1) * pos {
                    let mut s = rx.map_or(0.0, |rx| a * rx[k]);
                    if self.affine {
                        s += v[c] * (f.x[k] - mu) * r + v[nc + c];
                    }
                    ry[k] = s;
                }
            }
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
        _scratch: &mut [f64],
    ) {
        let (nc, pos) = self.dims();
        let d = nc * pos;
        if let Some(rdx) = rdx {
            for i in 0..b {
                for c in 0..nc {
                    let (a, rs) = (self.slope(p, c), self.rstd[c]);
                    let va = if self.affine { v[c] * rs } else { 0.0 };
                    for k in i * d + c * pos..i * d + (c + 1) * pos {
                        rdx[k] = a * rdy[k] + va * r.dy[k];
                    }
                }
            }
        }
        if self.affine {
            for i in 0..b {
                for c in 0..nc {
                    let (mu, rs) = (self.mean[c], self.rstd[c]);
                    let (mut sg, mut sb) = (0.0, 0.0);
                    for k in i * d + c * pos..i * d + (c + 1) * pos {
                        sg += rdy[k] * (r.f.x[k] - mu) * rs + r.rx.map_or(0.0, |rx| r.dy[k] * rs * rx[k]);
                        sb += rdy[k];
                    }
                    hv[c] += alpha * sg;
                    hv[nc + c] += alpha * sb;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::LayerConfig;
    use crate::core::rng::Rng;

    const SHAPE: [usize; 3] = [3, 2, 2];
    const MEAN: [f64; 3] = [0.5, -1.0, 0.0];
    const VAR: [f64; 3] = [2.0, 0.25, 1.5];

    fn config(affine: bool) -> LayerConfig {
        LayerConfig::from(BatchNormConfig {
            eps: 1e-3,
            affine,
            running_mean: Some(MEAN.to_vec()),
            running_var: Some(VAR.to_vec()),
            training: false,
        })
    }

    fn layer(affine: bool) -> Arc<dyn Layer> {
        config(affine).build(&SHAPE, "model.layers[0]").unwrap()
    }

    fn normal(n: usize, seed: u64) -> Vec<f64> {
        let mut v = vec![0.0; n];
        Rng::new(seed).fill_normal(&mut v);
        v
    }

    /// PyTorch's formula written out, per element: `γ_c (x − μ_c)/√(σ²_c + ε) + β_c`.
    fn naive(p: &[f64], x: &[f64], b: usize, affine: bool) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for i in 0..b {
            for c in 0..3 {
                for k in 0..4 {
                    let j = i * 12 + c * 4 + k;
                    let h = (x[j] - MEAN[c]) / (VAR[c] + 1e-3).sqrt();
                    y[j] = if affine { p[c] * h + p[3 + c] } else { h };
                }
            }
        }
        y
    }

    fn forward(l: &dyn Layer, p: &[f64], x: &[f64], b: usize) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        l.forward(p, x, &mut y, &mut [], b, &mut vec![0.0; l.scratch_len(b)]);
        y
    }

    #[test]
    fn forward_is_pytorchs_eval_formula() {
        for affine in [true, false] {
            let l = layer(affine);
            let b = 2;
            let (p, x) = (normal(l.n_params(), 1), normal(b * 12, 2));
            let (y, e) = (forward(&*l, &p, &x, b), naive(&p, &x, b, affine));
            for (a, e) in y.iter().zip(&e) {
                // The same operations in another order: a few roundings of values ≤ 10.
                assert!((a - e).abs() <= 1e-14 * (1.0 + e.abs()), "{a} vs {e}");
            }
        }
        // PyTorch's fresh buffers (μ = 0, σ² = 1) and eps 1e-5 by default: y = x/√(1 + 1e-5).
        let l = LayerConfig::from(BatchNormConfig::default()).build(&[2], "k").unwrap();
        let y = forward(&*l, &[1.0, 1.0, 0.0, 0.0], &[2.0, -3.0], 1);
        assert_eq!(y, vec![2.0 / (1.0f64 + 1e-5).sqrt(), -3.0 / (1.0f64 + 1e-5).sqrt()]);
    }

    /// The layer is bilinear in `(θ, x)`: along a direction `(v, rx)` the output is a quadratic in
    /// the step `h`, so central differences have no truncation error and only rounding
    /// (`ε · |y| / h ≈ 1e-16 · 10 / 1e-3 = 1e-12`): checked to 1e-9.
    #[test]
    fn backward_and_r_operator_match_central_differences() {
        for affine in [true, false] {
            let l = layer(affine);
            let (b, n, np) = (3, 36, l.n_params());
            let (p, x, dy) = (normal(np, 3), normal(n, 4), normal(n, 5));
            let (v, rx, rdy) = (normal(np, 6), normal(n, 7), normal(n, 8));
            let y = forward(&*l, &p, &x, b);
            let f = Fwd {
                x: &x,
                y: &y,
                saved: &[],
            };
            let (mut dx, mut g) = (vec![0.0; n], vec![0.0; np]);
            l.backward(&p, f, &dy, Some(&mut dx), Some(&mut g), 0.5, b, &mut []);
            let h = 1e-3;
            let shift =
                |a: &[f64], d: &[f64], s: f64| -> Vec<f64> { a.iter().zip(d).map(|(a, d)| a + s * h * d).collect() };
            let at = |s: f64| {
                let (ps, xs, dys) = (shift(&p, &v, s), shift(&x, &rx, s), shift(&dy, &rdy, s));
                let ys = forward(&*l, &ps, &xs, b);
                let (mut dxs, mut gs) = (vec![0.0; n], vec![0.0; np]);
                let fs = Fwd {
                    x: &xs,
                    y: &ys,
                    saved: &[],
                };
                l.backward(&ps, fs, &dys, Some(&mut dxs), Some(&mut gs), 0.5, b, &mut []);
                (ys, dxs, gs)
            };
            let ((yp, dxp, gp), (ym, dxm, gm)) = (at(1.0), at(-1.0));
            let cd = |a: &[f64], m: &[f64]| -> Vec<f64> { a.iter().zip(m).map(|(a, m)| (a - m) / (2.0 * h)).collect() };
            // Gradient: d/dh Σ dy · y(θ + hv, x + h rx) = dx · rx + (g/α) · v.
            let fd: f64 = dy.iter().zip(cd(&yp, &ym)).map(|(a, b)| a * b).sum();
            let an: f64 = dx.iter().zip(&rx).map(|(a, r)| a * r).sum::<f64>()
                + g.iter().zip(&v).map(|(a, r)| a * r / 0.5).sum::<f64>();
            assert!(
                (fd - an).abs() <= 1e-9 * (1.0 + an.abs()),
                "affine {affine}: {an} vs {fd}"
            );
            let mut ry = vec![0.0; n];
            l.rforward(&p, &v, f, Some(&rx), &mut ry, b, &mut []);
            let r = RFwd {
                f,
                dy: &dy,
                dx: Some(&dx),
                rx: Some(&rx),
                ry: &ry,
            };
            let (mut rdx, mut hv) = (vec![0.0; n], vec![1.0; np]);
            l.rbackward(&p, &v, r, &rdy, Some(&mut rdx), &mut hv, 0.5, b, &mut []);
            for (name, an, fd) in [
                ("R{y}", ry.clone(), cd(&yp, &ym)),
                ("R{dx}", rdx.clone(), cd(&dxp, &dxm)),
                // hv started at 1: rbackward adds.
                ("R{g}", hv.iter().map(|a| a - 1.0).collect(), cd(&gp, &gm)),
            ] {
                assert_eq!(an.len(), fd.len());
                for (k, (a, e)) in an.iter().zip(&fd).enumerate() {
                    assert!(
                        (a - e).abs() <= 1e-9 * (1.0 + e.abs()),
                        "affine {affine}: {name}[{k}] {a} vs {e}"
                    );
                }
            }
        }
    }

    /// The closed-form per-sample statistics against one backward pass per sample.
    #[test]
    fn per_sample_statistics_match_a_naive_loop() {
        let l = layer(true);
        let (b, np) = (4, 6);
        let (p, x, dy, dd) = (normal(np, 9), normal(b * 12, 10), normal(b * 12, 11), normal(np, 12));
        let y = forward(&*l, &p, &x, b);
        let f = Fwd {
            x: &x,
            y: &y,
            saved: &[],
        };
        let (mut sm, mut q) = (vec![0.0; np], vec![0.0; b]);
        let mut scratch = vec![0.0; l.scratch_len(b)];
        l.grad_sq(&p, f, &dy, b, &mut sm, &mut scratch);
        l.grad_quad(&p, f, &dy, b, &dd, &mut q, &mut scratch);
        let (mut sm_e, mut q_e) = (vec![0.0; np], vec![0.0; b]);
        for i in 0..b {
            let mut g = vec![0.0; np];
            let fi = Fwd {
                x: &x[i * 12..(i + 1) * 12],
                y: &y[i * 12..(i + 1) * 12],
                saved: &[],
            };
            l.backward(&p, fi, &dy[i * 12..(i + 1) * 12], None, Some(&mut g), 1.0, 1, &mut []);
            for j in 0..np {
                sm_e[j] += g[j] * g[j];
                q_e[i] += g[j] * g[j] * dd[j];
            }
        }
        // The same sums in the same order: equal to rounding.
        for (a, e) in sm.iter().zip(&sm_e).chain(q.iter().zip(&q_e)) {
            assert!((a - e).abs() <= 1e-12 * (1.0 + e.abs()), "{a} vs {e}");
        }
    }

    /// Scaling `γ_c, β_c` by `c` scales output channel `c` and nothing else; a rescaling of
    /// whole input channels is absorbed by γ where μ = 0 (channel 2), blocked elsewhere.
    #[test]
    fn channel_units_and_what_a_rescaled_input_does() {
        let l = layer(true);
        let (p, x) = (normal(6, 13), normal(12, 14));
        let y = forward(&*l, &p, &x, 1);
        let u = l.units().unwrap();
        assert_eq!(u.params[1], vec![1, 4]);
        assert_eq!(u.positions[1], vec![4, 5, 6, 7]);
        let mut ps = p.clone();
        for &j in &u.params[1] {
            ps[j] *= 2.5;
        }
        let ys = forward(&*l, &ps, &x, 1);
        for k in 0..12 {
            let e = if (4..8).contains(&k) { 2.5 * y[k] } else { y[k] };
            assert!((ys[k] - e).abs() <= 1e-15 * (1.0 + e.abs()), "{k}: {} vs {e}", ys[k]);
        }
        assert_eq!(l.pass(&[8, 9, 10, 11]), Pass::Absorb(vec![2]));
        assert_eq!(l.pass(&[0, 1, 2, 3]), Pass::Block);
        assert_eq!(l.pass(&[8, 9, 10]), Pass::Block);
        // Absorbed exactly: x_2 · 3 with γ_2 / 3.
        let (mut xs, mut ps) = (x.clone(), p.clone());
        xs[8..12].iter_mut().for_each(|v| *v *= 3.0);
        ps[2] /= 3.0;
        let ys = forward(&*l, &ps, &xs, 1);
        for k in 0..12 {
            assert!((ys[k] - y[k]).abs() <= 1e-15 * (1.0 + y[k].abs()), "{k}");
        }
        assert!(!l.normalizes_input());
        let plain = layer(false);
        assert_eq!(plain.pass(&[8, 9, 10, 11]), Pass::Through(vec![8, 9, 10, 11]));
        assert!(plain.units().is_none());
    }

    #[test]
    fn the_spec_table_parses_and_bad_values_are_refused_naming_the_field() {
        let c: LayerConfig = toml::from_str("type = \"batch-norm\"").unwrap();
        assert_eq!(c, LayerConfig::from(BatchNormConfig::default()));
        assert_eq!(c.kind(), "batch-norm");
        let e = toml::from_str::<LayerConfig>("type = \"batch-norm\"\nmomentum = 0.1").unwrap_err();
        assert!(e.to_string().contains("unknown field `momentum`"), "{e}");
        let key = "model.layers[1]";
        let refused =
            |c: BatchNormConfig, shape: &[usize]| LayerConfig::from(c).build(shape, key).unwrap_err().to_string();
        let e = refused(
            BatchNormConfig {
                training: true,
                ..Default::default()
            },
            &[3],
        );
        assert!(
            e.contains("model.layers[1].training:") && e.contains("future work"),
            "{e}"
        );
        let e = refused(
            BatchNormConfig {
                running_mean: Some(vec![0.0; 2]),
                ..Default::default()
            },
            &[3, 4],
        );
        assert!(
            e.contains("model.layers[1].running_mean: 2 values for 3 channels"),
            "{e}"
        );
        let e = refused(
            BatchNormConfig {
                running_var: Some(vec![1.0, -1.0]),
                ..Default::default()
            },
            &[2],
        );
        assert!(e.contains("model.layers[1].running_var[1]:"), "{e}");
        let e = refused(
            BatchNormConfig {
                eps: 0.0,
                running_var: Some(vec![1.0, 0.0]),
                ..Default::default()
            },
            &[2],
        );
        assert!(e.contains("model.layers[1].running_var[1]:"), "{e}");
        let e = refused(
            BatchNormConfig {
                running_mean: Some(vec![f64::NAN, 0.0]),
                ..Default::default()
            },
            &[2],
        );
        assert!(e.contains("model.layers[1].running_mean[0]: must be finite"), "{e}");
        let e = refused(
            BatchNormConfig {
                eps: -1.0,
                ..Default::default()
            },
            &[2],
        );
        assert!(e.contains("model.layers[1].eps:"), "{e}");
        let e = refused(BatchNormConfig::default(), &[1, 2, 3, 4, 5]);
        assert!(e.contains("model.layers[1]: batch-norm needs"), "{e}");
    }
}
