//! `linear`: a dense layer `y = W x + b` (PyTorch `nn.Linear`): weight `[out, in]`, optional
//! bias `[out]`, applied to the last axis of the input (a vector `[in]`, or a sequence
//! `[T, in]`, one position at a time, as PyTorch does).
//!
//! Per sample and position, `g_W = δ xᵀ` and `g_b = δ` with `δ = ∂ℓ/∂y`. For vector inputs, over a
//! chunk:
//! * the mean gradient is one GEMM, `(1/b) δᵀX`;
//! * the per-parameter second moment is one GEMM of the element-wise squares, `(δ⊙δ)ᵀ(X⊙X)`;
//! * the quadratic form `g_iᵀ D g_i` for a diagonal `D` is `Σ_j δ_ij² [(x_i⊙x_i)ᵀ D_Wᵀ]_j + Σ_j δ_ij² D_b,j`.
//!
//! For sequences the per-sample gradient sums over positions, `G_i = Δ_iᵀ X_i` (`Δ_i`: `T × out`),
//! so the statistics form `G_i` one sample at a time (one small GEMM each; never a batch × P
//! matrix).
//!
//! R-operator: `R{y} = V x + W R{x} + c` for the direction `(V, c)`; backward
//! `R{dx} = R{δ} W + δ V`, and the parameter block of `Hv` is `Σ_i (R{δ_i} x_iᵀ + δ_i R{x_i}ᵀ)` for
//! `W` and `Σ_i R{δ_i}` for `b`.

use super::{
    checked_size, features_at_every_position, BlockInit, BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd, Structure,
    Units,
};
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};
use crate::core::scalar::Scalar;
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "linear", out_features, bias = true }`: `nn.Linear(·, out_features, bias)` on the
/// last axis (`in_features` is the input's last size).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {
    /// Output features (≥ 1).
    pub out_features: usize,
    /// With a bias (PyTorch's default true).
    #[serde(default = "yes")]
    pub bias: bool,
}

fn yes() -> bool {
    true
}

impl BuildLayer for LinearConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        if self.out_features == 0 {
            return Err(invalid!("{key}.out_features: must be ≥ 1"));
        }
        let Some((&last, lead)) = inp.split_last() else {
            return Err(invalid!("{key}: linear needs a non-empty input shape"));
        };
        checked_size(
            key,
            "the weight [out_features, in_features]",
            &[self.out_features, last],
        )?;
        checked_size(key, "the output", &[lead, &[self.out_features]].concat())?;
        Ok(Arc::new(Linear::on_shape(inp, self.out_features, self.bias)))
    }
}

/// A dense layer with `inp` inputs and `out` outputs on the last axis.
#[derive(Clone, Debug)]
pub struct Linear {
    inp: Vec<usize>,
    out: Vec<usize>,
    bias: bool,
    /// Positions per sample (the product of the leading axes).
    t: usize,
}

impl Linear {
    /// `y = W x (+ b)` on vectors, `W ∈ ℝ^{out×inp}`.
    pub fn new(inp: usize, out: usize, bias: bool) -> Self {
        Self::on_shape(&[inp], out, bias)
    }
    /// The same map applied to the last axis of per-sample inputs of shape `in_shape`
    /// (`[…, inp]`); the output has shape `[…, out]`. `in_shape` must not be empty.
    pub fn on_shape(in_shape: &[usize], out: usize, bias: bool) -> Self {
        let mut o = in_shape.to_vec();
        *o.last_mut().expect("a non-empty input shape") = out;
        Linear {
            t: in_shape[..in_shape.len() - 1].iter().product(),
            inp: in_shape.to_vec(),
            out: o,
            bias,
        }
    }
    /// Whether the layer has a bias.
    pub fn has_bias(&self) -> bool {
        self.bias
    }
    /// (inputs, outputs) per position.
    fn dims(&self) -> (usize, usize) {
        (*self.inp.last().expect("shape"), *self.out.last().expect("shape"))
    }
    /// The per-sample gradient `G_i` of sample `i` into `g` (`[W | b]`), for sequence inputs.
    fn sample_grad(&self, f: Fwd<'_>, dy: &[f64], i: usize, g: &mut [f64]) {
        let (din, dout) = self.dims();
        let t = self.t;
        let (xi, di) = (
            &f.x[i * t * din..(i + 1) * t * din],
            &dy[i * t * dout..(i + 1) * t * dout],
        );
        gemm_tn(&mut g[..dout * din], di, xi, dout, din, t, 1.0, false);
        if self.bias {
            let gb = &mut g[dout * din..dout * din + dout];
            gb.fill(0.0);
            for row in di.chunks_exact(dout) {
                for (a, v) in gb.iter_mut().zip(row) {
                    *a += v;
                }
            }
        }
    }
}

/// The layer's map at any precision ([`Scalar`]: `f32` or `f64`). Plain loops, sums accumulated
/// in `S` in index order; the `f64` [`Layer`] methods run the same arithmetic through GEMM.
impl Linear {
    /// [`Layer::forward`] in the scalar type `S`: `y = W x + b` at every position of `b` samples
    /// (`x`: `b × in_dim`, `y`: `b × out_dim`, `p` = `[W | b]` row-major, `W` `[out, in]`). Each
    /// output is a dot product of `in` terms, so its rounding error is at most about
    /// `(in + 1) · ε_S / 2` times `Σ_j |W_kj x_j| + |b_k|`.
    pub fn forward_as<S: Scalar>(&self, p: &[S], x: &[S], y: &mut [S], b: usize) {
        let (din, dout) = self.dims();
        let nw = din * dout;
        for (xr, yr) in x[..b * self.t * din]
            .chunks_exact(din)
            .zip(y[..b * self.t * dout].chunks_exact_mut(dout))
        {
            for (k, yv) in yr.iter_mut().enumerate() {
                let mut acc = if self.bias { p[nw + k] } else { S::ZERO };
                for (w, xv) in p[k * din..(k + 1) * din].iter().zip(xr) {
                    acc += *w * *xv;
                }
                *yv = acc;
            }
        }
    }

    /// [`Layer::backward`] in the scalar type `S`: from `dy` (`b × out_dim`), writes
    /// `dx = δ W` (if asked) and **overwrites** `grad` (if given) with `alpha · Σ_i g_i`,
    /// `g_W = Σ_t δ_t x_tᵀ`, `g_b = Σ_t δ_t`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_as<S: Scalar>(
        &self,
        p: &[S],
        x: &[S],
        dy: &[S],
        dx: Option<&mut [S]>,
        grad: Option<&mut [S]>,
        alpha: S,
        b: usize,
    ) {
        let (din, dout) = self.dims();
        let (nw, rows) = (din * dout, b * self.t);
        if let Some(dx) = dx {
            for (dxr, dyr) in dx[..rows * din].chunks_exact_mut(din).zip(dy.chunks_exact(dout)) {
                for (j, d) in dxr.iter_mut().enumerate() {
                    let mut acc = S::ZERO;
                    for (k, g) in dyr.iter().enumerate() {
                        acc += *g * p[k * din + j];
                    }
                    *d = acc;
                }
            }
        }
        if let Some(g) = grad {
            let g = &mut g[..nw + if self.bias { dout } else { 0 }];
            g.fill(S::ZERO);
            for (xr, dyr) in x[..rows * din].chunks_exact(din).zip(dy.chunks_exact(dout)) {
                for (k, d) in dyr.iter().enumerate() {
                    for (gw, xv) in g[k * din..(k + 1) * din].iter_mut().zip(xr) {
                        *gw += *d * *xv;
                    }
                    if self.bias {
                        g[nw + k] += *d;
                    }
                }
            }
            g.iter_mut().for_each(|v| *v = alpha * *v);
        }
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }
    fn describe(&self) -> String {
        let (din, dout) = self.dims();
        format!(
            "linear {din} → {dout}{}{}",
            if self.bias { ", bias" } else { "" },
            if self.t > 1 {
                format!(", at {} positions", self.t)
            } else {
                String::new()
            }
        )
    }
    fn in_shape(&self) -> &[usize] {
        &self.inp
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        let (din, dout) = self.dims();
        let mut v = vec![BlockSpec {
            name: "weight".into(),
            shape: vec![dout, din],
            init: BlockInit::Weight {
                fan_in: din,
                fan_out: dout,
            },
        }];
        if self.bias {
            v.push(BlockSpec {
                name: "bias".into(),
                shape: vec![dout],
                init: BlockInit::Zeros,
            });
        }
        v
    }
    fn n_params(&self) -> usize {
        let (din, dout) = self.dims();
        din * dout + if self.bias { dout } else { 0 }
    }
    fn scratch_len(&self, b: usize) -> usize {
        let (din, dout) = self.dims();
        if self.t == 1 {
            b * (din + dout)
        } else {
            self.n_params()
        }
    }
    fn structure(&self) -> Structure {
        let (din, dout) = self.dims();
        Structure::Dense {
            out: dout,
            inp: din,
            bias: self.bias,
            positions: self.t,
        }
    }
    fn units(&self) -> Option<Units> {
        let (din, dout) = self.dims();
        Some(Units {
            noun: "neuron",
            params: (0..dout)
                .map(|k| {
                    let mut v: Vec<usize> = (k * din..(k + 1) * din).collect();
                    if self.bias {
                        v.push(dout * din + k);
                    }
                    v
                })
                .collect(),
            positions: (0..dout).map(|k| (0..self.t).map(|p| p * dout + k).collect()).collect(),
        })
    }
    fn pass(&self, positions: &[usize]) -> Pass {
        let (din, dout) = self.dims();
        match features_at_every_position(positions, din, self.t) {
            Some(cols) => Pass::Absorb(cols.iter().flat_map(|&j| (0..dout).map(move |o| o * din + j)).collect()),
            None => Pass::Block,
        }
    }

    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let (din, dout) = self.dims();
        let b = b * self.t;
        gemm_nt(y, x, &p[..din * dout], b, dout, din, false);
        if self.bias {
            let bias = &p[din * dout..din * dout + dout];
            for row in y[..b * dout].chunks_exact_mut(dout) {
                for (v, bb) in row.iter_mut().zip(bias) {
                    *v += bb;
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
        let (din, dout) = self.dims();
        let b = b * self.t;
        let nw = din * dout;
        if let Some(g) = grad {
            gemm_tn(&mut g[..nw], dy, f.x, dout, din, b, alpha, false);
            if self.bias {
                let gb = &mut g[nw..nw + dout];
                gb.fill(0.0);
                for row in dy[..b * dout].chunks_exact(dout) {
                    for (gv, dv) in gb.iter_mut().zip(row) {
                        *gv += dv;
                    }
                }
                gb.iter_mut().for_each(|v| *v *= alpha);
            }
        }
        if let Some(dx) = dx {
            gemm_nn(dx, dy, &p[..nw], b, din, dout, false);
        }
    }

    fn grad_sq(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        let (din, dout) = self.dims();
        if self.t > 1 {
            let g = &mut scratch[..self.n_params()];
            for i in 0..b {
                self.sample_grad(f, dy, i, g);
                for (s, v) in sm.iter_mut().zip(g.iter()) {
                    *s += v * v;
                }
            }
            return;
        }
        let (sd, sa) = scratch.split_at_mut(b * dout);
        for (s, d) in sd[..b * dout].iter_mut().zip(&dy[..b * dout]) {
            *s = d * d;
        }
        for (s, a) in sa[..b * din].iter_mut().zip(&f.x[..b * din]) {
            *s = a * a;
        }
        gemm_tn(&mut sm[..dout * din], sd, sa, dout, din, b, 1.0, true);
        if self.bias {
            let nw = din * dout;
            for row in sd[..b * dout].chunks_exact(dout) {
                for (s, v) in sm[nw..nw + dout].iter_mut().zip(row) {
                    *s += v;
                }
            }
        }
    }

    fn grad_quad(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, d: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        let (din, dout) = self.dims();
        if self.t > 1 {
            let g = &mut scratch[..self.n_params()];
            for (i, qi) in q.iter_mut().enumerate().take(b) {
                self.sample_grad(f, dy, i, g);
                *qi += g.iter().zip(d).map(|(v, e)| v * v * e).sum::<f64>();
            }
            return;
        }
        let nw = din * dout;
        let (t, sa) = scratch.split_at_mut(b * dout);
        for (s, a) in sa[..b * din].iter_mut().zip(&f.x[..b * din]) {
            *s = a * a;
        }
        gemm_nt(t, sa, &d[..nw], b, dout, din, false);
        let bias = self.bias.then(|| &d[nw..nw + dout]);
        for (i, qi) in q.iter_mut().enumerate().take(b) {
            let drow = &dy[i * dout..(i + 1) * dout];
            let trow = &t[i * dout..(i + 1) * dout];
            let mut s: f64 = drow.iter().zip(trow).map(|(d, tv)| d * d * tv).sum();
            if let Some(bd) = bias {
                s += drow.iter().zip(bd).map(|(d, e)| d * d * e).sum::<f64>();
            }
            *qi += s;
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
        let (din, dout) = self.dims();
        let b = b * self.t;
        let nw = din * dout;
        gemm_nt(ry, f.x, &v[..nw], b, dout, din, false);
        if let Some(rx) = rx {
            gemm_nt(ry, rx, &p[..nw], b, dout, din, true);
        }
        if self.bias {
            let vb = &v[nw..nw + dout];
            for row in ry[..b * dout].chunks_exact_mut(dout) {
                for (r, c) in row.iter_mut().zip(vb) {
                    *r += c;
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
        let (din, dout) = self.dims();
        let b = b * self.t;
        let nw = din * dout;
        let gw = &mut hv[..nw];
        gemm_tn(gw, rdy, r.f.x, dout, din, b, alpha, true);
        if let Some(rx) = r.rx {
            gemm_tn(gw, r.dy, rx, dout, din, b, alpha, true);
        }
        if self.bias {
            let gb = &mut hv[nw..nw + dout];
            for row in rdy[..b * dout].chunks_exact(dout) {
                for (g, rv) in gb.iter_mut().zip(row) {
                    *g += alpha * rv;
                }
            }
        }
        if let Some(rdx) = rdx {
            // R{dx} = R{δ} W + δ V (rows are samples).
            gemm_nn(rdx, rdy, &p[..nw], b, din, dout, false);
            gemm_nn(rdx, r.dy, &v[..nw], b, din, dout, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;
    use crate::core::scalar::convert;

    fn normal(n: usize, seed: u64) -> Vec<f64> {
        let mut v = vec![0.0; n];
        Rng::new(seed).fill_normal(&mut v);
        v
    }

    fn abs(v: &[f64]) -> Vec<f64> {
        v.iter().map(|x| x.abs()).collect()
    }

    /// One linear layer (fan-in 16, on sequences of 3 positions) at f32 against the same layer at
    /// f64 (the engine's GEMM path): forward, input gradient and parameter gradient.
    ///
    /// Tolerance: each f32 value is a sum of `m` products of f32-rounded operands, so its error is
    /// at most `(m + 2) · ε_f32` (ε_f32 = 2⁻²³: two roundings of the operands, one per addition,
    /// each at most ε/2, with room to spare) times the sum of the terms' absolute values — that
    /// scale is the same kernel run on absolute values. With `m` ≤ 16 (fan-in), 5 (fan-out) and
    /// b·T = 12 (samples × positions), the bound is at most 18 ε_f32 ≈ 2.1e-6 relative, inside
    /// 1e-5. The generic kernel at f64 must match the GEMM path to `(m + 2) · ε_f64`.
    #[test]
    fn linear_at_f32_matches_f64_to_f32_accuracy() {
        let (fan_in, fan_out, t, b) = (16, 5, 3, 4);
        let cfg = LinearConfig {
            out_features: fan_out,
            bias: true,
        };
        let built = cfg.build(&[t, fan_in], "model.layers[0]").unwrap();
        let l = Linear::on_shape(&[t, fan_in], fan_out, true);
        assert_eq!(built.blocks(), l.blocks());
        let np = l.n_params();
        let p: Vec<f64> = normal(np, 1).iter().map(|v| v / (fan_in as f64).sqrt()).collect();
        let x = normal(b * t * fan_in, 2);
        let dy = normal(b * t * fan_out, 3);
        let (n_out, n_in) = (b * t * fan_out, b * t * fan_in);
        let alpha = 0.25;

        // f64 through the engine (GEMM).
        let mut y64 = vec![0.0; n_out];
        built.forward(&p, &x, &mut y64, &mut [], b, &mut vec![0.0; built.scratch_len(b)]);
        let mut dx64 = vec![0.0; n_in];
        let mut g64 = vec![0.0; np];
        let f = Fwd {
            x: &x,
            y: &y64,
            saved: &[],
        };
        built.backward(
            &p,
            f,
            &dy,
            Some(&mut dx64),
            Some(&mut g64),
            alpha,
            b,
            &mut vec![0.0; built.scratch_len(b)],
        );

        // Scales: the same sums over absolute values.
        let mut y_abs = vec![0.0; n_out];
        l.forward_as::<f64>(&abs(&p), &abs(&x), &mut y_abs, b);
        let (mut dx_abs, mut g_abs) = (vec![0.0; n_in], vec![0.0; np]);
        l.backward_as::<f64>(
            &abs(&p),
            &abs(&x),
            &abs(&dy),
            Some(&mut dx_abs),
            Some(&mut g_abs),
            alpha,
            b,
        );

        fn check<S: Scalar>(what: &str, got: &[S], want: &[f64], scale: &[f64], terms: usize) {
            let tol = (terms + 2) as f64 * S::EPSILON;
            if S::NAME == "f32" {
                assert!(tol <= 1e-5, "{what}: the derived f32 bound {tol:e} exceeds 1e-5");
            }
            for (k, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
                let err = (g.to_f64() - w).abs();
                assert!(
                    err <= tol * s,
                    "{what}[{k}] at {}: {} vs f64 {w}, error {err:e} > {tol:e} × {s}",
                    S::NAME,
                    g.to_f64()
                );
            }
        }

        fn run<S: Scalar>(
            l: &Linear,
            (p, x, dy, alpha, b): (&[f64], &[f64], &[f64], f64, usize),
        ) -> (Vec<S>, Vec<S>, Vec<S>) {
            let (ps, xs, dys) = (convert::<S>(p), convert::<S>(x), convert::<S>(dy));
            let mut y = vec![S::ZERO; dy.len()];
            l.forward_as(&ps, &xs, &mut y, b);
            let (mut dx, mut g) = (vec![S::ZERO; x.len()], vec![S::ZERO; p.len()]);
            l.backward_as(&ps, &xs, &dys, Some(&mut dx), Some(&mut g), S::from_f64(alpha), b);
            (y, dx, g)
        }

        let args = (&p[..], &x[..], &dy[..], alpha, b);
        let (y32, dx32, g32) = run::<f32>(&l, args);
        check("y", &y32, &y64, &y_abs, fan_in + 1);
        check("dx", &dx32, &dx64, &dx_abs, fan_out);
        check("grad", &g32, &g64, &g_abs, b * t + 1);
        let (y, dx, g) = run::<f64>(&l, args);
        check("y", &y, &y64, &y_abs, fan_in + 1);
        check("dx", &dx, &dx64, &dx_abs, fan_out);
        check("grad", &g, &g64, &g_abs, b * t + 1);
        // And the f32 results are f32, not f64 in disguise: some differ from the f64 ones.
        assert!(y32.iter().zip(&y64).any(|(a, b)| (*a as f64) != *b));
    }
}
