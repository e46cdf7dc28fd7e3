//! `conv2d`: a 2-D convolution (PyTorch `nn.Conv2d(C, O, k, stride, padding)`), `[C, H, W] →
//! [O, H', W']` with `H' = ⌊(H + 2p − k_h)/s⌋ + 1`; weight `[O, C, k_h, k_w]`, optional bias `[O]`;
//! zero padding.
//!
//! With the input unfolded into `X_i` (`P × K`: one row per output position, `K = C k_h k_w`
//! columns, im2col) and the output gradient `Δ_i` arranged `P × O`, the layer is `Y_i = X_i Wᵀ + b`,
//! so:
//! * the mean gradient is `(1/b) Σ_i Δ_iᵀ X_i` (one GEMM over the chunk's rows);
//! * the per-sample gradient sums over positions, `G_i = Δ_iᵀ X_i` (`O × K`): the statistics form
//!   it one sample at a time (one small GEMM each; never a batch × P matrix) and accumulate its
//!   squares or its quadratic form;
//! * the R-operator: `R{Y} = X Vᵀ + R{X} Wᵀ + c`, `R{dX} = col2im(R{Δ} W + Δ V)`, and the weight
//!   block of `Hv` is `Σ_i (R{Δ_i}ᵀ X_i + Δ_iᵀ R{X_i})`.
//!
//! Chunks are processed in sub-batches of at most [`SUB`] samples, which bounds the unfolded
//! buffers. Output channel `o` is a unit (`W[o]`, `b_o` scale it); a set of whole input channels
//! is absorbed by `W[:, c]` (zero padding stays zero under scaling).

use super::max_pool2d::whole_channels;
use super::{BlockInit, BlockSpec, Fwd, Layer, Pass, RFwd, Units};
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};

/// Samples unfolded at a time.
pub const SUB: usize = 32;

/// A 2-D convolution (see the module docs).
#[derive(Clone, Debug)]
pub struct Conv2d {
    inp: [usize; 3],
    out: [usize; 3],
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    bias: bool,
}

impl Conv2d {
    /// `out_channels` filters of `kernel = (k_h, k_w)` over `[C, H, W]` inputs. The output must
    /// not be empty (checked by the model builder: `H + 2p ≥ k_h`, stride ≥ 1).
    pub fn new(
        inp: [usize; 3],
        out_channels: usize,
        kernel: (usize, usize),
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> Self {
        let [_, h, w] = inp;
        let o = |n: usize, k: usize| {
            if n + 2 * pad < k || stride == 0 {
                0
            } else {
                (n + 2 * pad - k) / stride + 1
            }
        };
        Conv2d {
            inp,
            out: [out_channels, o(h, kernel.0), o(w, kernel.1)],
            kh: kernel.0,
            kw: kernel.1,
            stride,
            pad,
            bias,
        }
    }
    fn k(&self) -> usize {
        self.inp[0] * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.out[1] * self.out[2]
    }
    fn nw(&self) -> usize {
        self.out[0] * self.k()
    }
    /// Unfolds samples `x` (`bs` of them) into `cols` (`bs·P × K`).
    fn im2col(&self, x: &[f64], cols: &mut [f64], bs: usize) {
        let [c, h, w] = self.inp;
        let [_, ho, wo] = self.out;
        let (k, din) = (self.k(), c * h * w);
        for i in 0..bs {
            let xi = &x[i * din..(i + 1) * din];
            for oy in 0..ho {
                for ox in 0..wo {
                    let row = &mut cols[((i * ho + oy) * wo + ox) * k..((i * ho + oy) * wo + ox + 1) * k];
                    let mut j = 0;
                    for ch in 0..c {
                        for ky in 0..self.kh {
                            let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                            for kx in 0..self.kw {
                                let ix = (ox * self.stride + kx) as isize - self.pad as isize;
                                row[j] = if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w {
                                    xi[ch * h * w + iy as usize * w + ix as usize]
                                } else {
                                    0.0
                                };
                                j += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    /// Adds the folded `cols` (`bs·P × K`) into `dx` (`bs` samples).
    fn col2im(&self, cols: &[f64], dx: &mut [f64], bs: usize) {
        let [c, h, w] = self.inp;
        let [_, ho, wo] = self.out;
        let (k, din) = (self.k(), c * h * w);
        for i in 0..bs {
            let dxi = &mut dx[i * din..(i + 1) * din];
            for oy in 0..ho {
                for ox in 0..wo {
                    let row = &cols[((i * ho + oy) * wo + ox) * k..((i * ho + oy) * wo + ox + 1) * k];
                    let mut j = 0;
                    for ch in 0..c {
                        for ky in 0..self.kh {
                            let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                            for kx in 0..self.kw {
                                let ix = (ox * self.stride + kx) as isize - self.pad as isize;
                                if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w {
                                    dxi[ch * h * w + iy as usize * w + ix as usize] += row[j];
                                }
                                j += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    /// `[bs, O, P]` (channel-major, the layer's output layout) → `[bs·P, O]` rows.
    fn out_to_rows(&self, y: &[f64], rows: &mut [f64], bs: usize) {
        let (o, p) = (self.out[0], self.p());
        for i in 0..bs {
            for ch in 0..o {
                for q in 0..p {
                    rows[(i * p + q) * o + ch] = y[(i * o + ch) * p + q];
                }
            }
        }
    }
    /// `[bs·P, O]` rows → `[bs, O, P]`, plus the bias (if given).
    fn rows_to_out(&self, rows: &[f64], y: &mut [f64], bs: usize, bias: Option<&[f64]>) {
        let (o, p) = (self.out[0], self.p());
        for i in 0..bs {
            for ch in 0..o {
                let add = bias.map_or(0.0, |b| b[ch]);
                for q in 0..p {
                    y[(i * o + ch) * p + q] = rows[(i * p + q) * o + ch] + add;
                }
            }
        }
    }
    /// Scratch of the sub-batch buffers: two unfolded inputs and two row blocks.
    fn sub_len(&self, bs: usize) -> usize {
        bs * self.p() * (2 * self.k() + 2 * self.out[0])
    }
    /// The per-sample gradient of sample `i` into `g` (`[W | b]`), with `cols`/`rows` scratch.
    #[allow(clippy::too_many_arguments)]
    fn sample_grad(&self, x: &[f64], dy: &[f64], i: usize, g: &mut [f64], cols: &mut [f64], rows: &mut [f64]) {
        let (din, dout, o, k, p) = (self.in_dim(), self.out_dim(), self.out[0], self.k(), self.p());
        self.im2col(&x[i * din..(i + 1) * din], cols, 1);
        self.out_to_rows(&dy[i * dout..(i + 1) * dout], rows, 1);
        gemm_tn(&mut g[..o * k], rows, cols, o, k, p, 1.0, false);
        if self.bias {
            for ch in 0..o {
                g[o * k + ch] = dy[i * dout + ch * p..i * dout + (ch + 1) * p].iter().sum();
            }
        }
    }
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }
    fn describe(&self) -> String {
        format!(
            "conv2d {:?} → {:?}, kernel {}×{}, stride {}, padding {}{}",
            self.inp,
            self.out,
            self.kh,
            self.kw,
            self.stride,
            self.pad,
            if self.bias { ", bias" } else { "" }
        )
    }
    fn in_shape(&self) -> &[usize] {
        &self.inp
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        let (o, k) = (self.out[0], self.k());
        let mut v = vec![BlockSpec {
            name: "weight".into(),
            shape: vec![o, self.inp[0], self.kh, self.kw],
            init: BlockInit::Weight {
                fan_in: k,
                fan_out: o * self.kh * self.kw,
            },
        }];
        if self.bias {
            v.push(BlockSpec {
                name: "bias".into(),
                shape: vec![o],
                init: BlockInit::Zeros,
            });
        }
        v
    }
    fn n_params(&self) -> usize {
        self.nw() + if self.bias { self.out[0] } else { 0 }
    }
    fn scratch_len(&self, b: usize) -> usize {
        self.sub_len(b.min(SUB))
            .max(self.n_params() + self.p() * (self.k() + self.out[0]))
    }
    fn units(&self) -> Option<Units> {
        let (o, k, p) = (self.out[0], self.k(), self.p());
        Some(Units {
            noun: "channel",
            params: (0..o)
                .map(|c| {
                    let mut v: Vec<usize> = (c * k..(c + 1) * k).collect();
                    if self.bias {
                        v.push(o * k + c);
                    }
                    v
                })
                .collect(),
            positions: (0..o).map(|c| (c * p..(c + 1) * p).collect()).collect(),
        })
    }
    fn pass(&self, positions: &[usize]) -> Pass {
        let hw = self.inp[1] * self.inp[2];
        // Whole input channels only (the output positions of `whole_channels` are not needed).
        if whole_channels(positions, self.inp, self.inp).is_none() {
            return Pass::Block;
        }
        let mut chans: Vec<usize> = positions.iter().map(|p| p / hw).collect();
        chans.sort_unstable();
        chans.dedup();
        let (k, kk) = (self.k(), self.kh * self.kw);
        Pass::Absorb(
            (0..self.out[0])
                .flat_map(|o| chans.iter().flat_map(move |c| o * k + c * kk..o * k + (c + 1) * kk))
                .collect(),
        )
    }

    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, scratch: &mut [f64]) {
        let (din, dout, o, k, np) = (self.in_dim(), self.out_dim(), self.out[0], self.k(), self.p());
        let bias = self.bias.then(|| &p[self.nw()..self.nw() + o]);
        let mut i0 = 0;
        while i0 < b {
            let bs = SUB.min(b - i0);
            let (cols, rest) = scratch.split_at_mut(bs * np * k);
            let rows = &mut rest[..bs * np * o];
            self.im2col(&x[i0 * din..(i0 + bs) * din], cols, bs);
            gemm_nt(rows, cols, &p[..self.nw()], bs * np, o, k, false);
            self.rows_to_out(rows, &mut y[i0 * dout..(i0 + bs) * dout], bs, bias);
            i0 += bs;
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
        let (din, dout, o, k, np, nw) = (
            self.in_dim(),
            self.out_dim(),
            self.out[0],
            self.k(),
            self.p(),
            self.nw(),
        );
        let mut grad = grad;
        let mut dx = dx;
        if let Some(g) = grad.as_deref_mut() {
            g.fill(0.0);
        }
        if let Some(d) = dx.as_deref_mut() {
            d[..b * din].fill(0.0);
        }
        let mut i0 = 0;
        while i0 < b {
            let bs = SUB.min(b - i0);
            let (cols, rest) = scratch.split_at_mut(bs * np * k);
            let (rows, rest) = rest.split_at_mut(bs * np * o);
            let dcols = &mut rest[..bs * np * k];
            let dyb = &dy[i0 * dout..(i0 + bs) * dout];
            self.out_to_rows(dyb, rows, bs);
            if let Some(g) = grad.as_deref_mut() {
                self.im2col(&f.x[i0 * din..(i0 + bs) * din], cols, bs);
                gemm_tn(&mut g[..nw], rows, cols, o, k, bs * np, alpha, true);
                if self.bias {
                    for i in 0..bs {
                        for ch in 0..o {
                            g[nw + ch] += alpha * dyb[(i * o + ch) * np..(i * o + ch + 1) * np].iter().sum::<f64>();
                        }
                    }
                }
            }
            if let Some(d) = dx.as_deref_mut() {
                gemm_nn(dcols, rows, &p[..nw], bs * np, k, o, false);
                self.col2im(dcols, &mut d[i0 * din..(i0 + bs) * din], bs);
            }
            i0 += bs;
        }
    }

    fn grad_sq(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        let (g, rest) = scratch.split_at_mut(self.n_params());
        let (cols, rows) = rest.split_at_mut(self.p() * self.k());
        for i in 0..b {
            self.sample_grad(f.x, dy, i, g, cols, rows);
            for (s, v) in sm.iter_mut().zip(g.iter()) {
                *s += v * v;
            }
        }
    }

    fn grad_quad(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, d: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        let (g, rest) = scratch.split_at_mut(self.n_params());
        let (cols, rows) = rest.split_at_mut(self.p() * self.k());
        for (i, qi) in q.iter_mut().enumerate().take(b) {
            self.sample_grad(f.x, dy, i, g, cols, rows);
            *qi += g.iter().zip(d).map(|(v, e)| v * v * e).sum::<f64>();
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
        let (din, dout, o, k, np, nw) = (
            self.in_dim(),
            self.out_dim(),
            self.out[0],
            self.k(),
            self.p(),
            self.nw(),
        );
        let c = self.bias.then(|| &v[nw..nw + o]);
        let mut i0 = 0;
        while i0 < b {
            let bs = SUB.min(b - i0);
            let (cols, rest) = scratch.split_at_mut(bs * np * k);
            let rows = &mut rest[..bs * np * o];
            self.im2col(&f.x[i0 * din..(i0 + bs) * din], cols, bs);
            gemm_nt(rows, cols, &v[..nw], bs * np, o, k, false);
            if let Some(rx) = rx {
                self.im2col(&rx[i0 * din..(i0 + bs) * din], cols, bs);
                gemm_nt(rows, cols, &p[..nw], bs * np, o, k, true);
            }
            self.rows_to_out(rows, &mut ry[i0 * dout..(i0 + bs) * dout], bs, c);
            i0 += bs;
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
        let (din, dout, o, k, np, nw) = (
            self.in_dim(),
            self.out_dim(),
            self.out[0],
            self.k(),
            self.p(),
            self.nw(),
        );
        let mut rdx = rdx;
        if let Some(d) = rdx.as_deref_mut() {
            d[..b * din].fill(0.0);
        }
        let mut i0 = 0;
        while i0 < b {
            let bs = SUB.min(b - i0);
            let (cols, rest) = scratch.split_at_mut(bs * np * k);
            let (rrows, rest) = rest.split_at_mut(bs * np * o);
            let (drows, rest) = rest.split_at_mut(bs * np * o);
            let dcols = &mut rest[..bs * np * k];
            let rdyb = &rdy[i0 * dout..(i0 + bs) * dout];
            self.out_to_rows(rdyb, rrows, bs);
            self.out_to_rows(&r.dy[i0 * dout..(i0 + bs) * dout], drows, bs);
            self.im2col(&r.f.x[i0 * din..(i0 + bs) * din], cols, bs);
            gemm_tn(&mut hv[..nw], rrows, cols, o, k, bs * np, alpha, true);
            if let Some(rx) = r.rx {
                self.im2col(&rx[i0 * din..(i0 + bs) * din], cols, bs);
                gemm_tn(&mut hv[..nw], drows, cols, o, k, bs * np, alpha, true);
            }
            if self.bias {
                for i in 0..bs {
                    for ch in 0..o {
                        hv[nw + ch] += alpha * rdyb[(i * o + ch) * np..(i * o + ch + 1) * np].iter().sum::<f64>();
                    }
                }
            }
            if let Some(d) = rdx.as_deref_mut() {
                gemm_nn(dcols, rrows, &p[..nw], bs * np, k, o, false);
                gemm_nn(dcols, drows, &v[..nw], bs * np, k, o, true);
                self.col2im(dcols, &mut d[i0 * din..(i0 + bs) * din], bs);
            }
            i0 += bs;
        }
    }
}
