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

use super::{features_at_every_position, BlockInit, BlockSpec, Fwd, Layer, Pass, RFwd, Structure, Units};
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};

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
