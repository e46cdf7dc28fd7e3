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
//! Samples are processed one at a time with the unfolded input kept transposed, `X_iᵀ` (`K × P`,
//! gathered through a precomputed index table), so that the output `W X_iᵀ` is already in the
//! layer's `[O, H', W']` layout and no transposes are needed. Output channel `o` is a unit (`W[o]`,
//! `b_o` scale it); a set of whole input channels is absorbed by `W[:, c]` (zero padding stays
//! zero under scaling).

use super::max_pool2d::whole_channels;
use super::{checked_size, chw, BlockInit, BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd, Units};
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "conv2d", out_channels, kernel, stride = 1, padding = 0, bias = true }`:
/// `nn.Conv2d(·, out_channels, kernel, stride, padding, bias)` on `[C, H, W]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Conv2dConfig {
    /// Output channels (≥ 1).
    pub out_channels: usize,
    /// `k` or `[k_h, k_w]` (each ≥ 1).
    pub kernel: KernelSpec,
    /// Stride along both axes (≥ 1; PyTorch's default 1).
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding on every side (PyTorch's default 0).
    #[serde(default)]
    pub padding: usize,
    /// With a bias (PyTorch's default true).
    #[serde(default = "yes")]
    pub bias: bool,
}

/// A convolution kernel size: `3` or `[3, 5]`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum KernelSpec {
    /// Square.
    Square(usize),
    /// `[k_h, k_w]`.
    Rect([usize; 2]),
}

impl KernelSpec {
    /// `(k_h, k_w)`.
    pub fn pair(self) -> (usize, usize) {
        match self {
            KernelSpec::Square(k) => (k, k),
            KernelSpec::Rect([a, b]) => (a, b),
        }
    }
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

impl BuildLayer for Conv2dConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let [c, h, w] = chw(key, "conv2d", inp)?;
        let kernel = self.kernel.pair();
        let (stride, padding) = (self.stride, self.padding);
        for (field, v) in [
            ("out_channels", self.out_channels),
            ("kernel", kernel.0.min(kernel.1)),
            ("stride", stride),
        ] {
            if v == 0 {
                return Err(invalid!("{key}.{field}: must be ≥ 1"));
            }
        }
        let (ph, pw) = (
            checked_size(key, "the padded height", &[h.saturating_add(padding.saturating_mul(2))])?,
            checked_size(key, "the padded width", &[w.saturating_add(padding.saturating_mul(2))])?,
        );
        if ph < kernel.0 || pw < kernel.1 {
            return Err(invalid!(
                "{key}.kernel: {}×{} is larger than the padded input {ph}×{pw}",
                kernel.0,
                kernel.1
            ));
        }
        // The unfold table indexes a sample's values with 32 bits (u32::MAX marks padding).
        if c * h * w >= u32::MAX as usize {
            return Err(invalid!(
                "{key}: a sample of shape [{c}, {h}, {w}] has {} values; conv2d indexes at most {}",
                c * h * w,
                u32::MAX - 1
            ));
        }
        let (ho, wo) = ((ph - kernel.0) / stride + 1, (pw - kernel.1) / stride + 1);
        checked_size(
            key,
            "the unfolded input (C·k_h·k_w × H'·W')",
            &[c, kernel.0, kernel.1, ho, wo, 2],
        )?;
        checked_size(
            key,
            "the weight [O, C, k_h, k_w]",
            &[self.out_channels, c, kernel.0, kernel.1],
        )?;
        checked_size(key, "the output", &[self.out_channels, ho, wo])?;
        Ok(Arc::new(Conv2d::new(
            [c, h, w],
            self.out_channels,
            kernel,
            stride,
            padding,
            self.bias,
        )))
    }
}

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
    /// For entry `(j, p)` of the unfolded input `X_iᵀ` (`K × P`, row j = one (channel, k_y, k_x),
    /// column p = one output position): the input offset within a sample, or `u32::MAX` for
    /// zero padding. Built on first use, so that building a model allocates nothing of the size
    /// of its inputs (a run's memory is checked before it starts; the table is a quarter of the
    /// layer's scratch space, [`Layer::scratch_len`]).
    gather: std::sync::OnceLock<Vec<u32>>,
}

impl Conv2d {
    /// `out_channels` filters of `kernel = (k_h, k_w)` over `[C, H, W]` inputs. The output must
    /// not be empty (checked by the model builder: `H + 2p ≥ k_h`, stride ≥ 1), and a sample's
    /// input must have fewer than 2³² values.
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
        let (ho, wo) = (o(h, kernel.0), o(w, kernel.1));
        Conv2d {
            inp,
            out: [out_channels, ho, wo],
            kh: kernel.0,
            kw: kernel.1,
            stride,
            pad,
            bias,
            gather: std::sync::OnceLock::new(),
        }
    }

    /// The index table of [`Conv2d::im2col`] (see the field `gather`).
    fn gather(&self) -> &[u32] {
        self.gather.get_or_init(|| {
            let [c, h, w] = self.inp;
            let (kh, kw) = (self.kh, self.kw);
            let [_, ho, wo] = self.out;
            let (stride, pad) = (self.stride, self.pad);
            let p = ho * wo;
            let mut gather = vec![u32::MAX; self.k() * p];
            for ch in 0..c {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let j = (ch * kh + ky) * kw + kx;
                        for oy in 0..ho {
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            for ox in 0..wo {
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w {
                                    gather[j * p + oy * wo + ox] = (ch * h * w + iy as usize * w + ix as usize) as u32;
                                }
                            }
                        }
                    }
                }
            }
            gather
        })
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
    /// Unfolds one sample `x` into `cols` (`K × P`).
    fn im2col(&self, x: &[f64], cols: &mut [f64]) {
        for (c, &g) in cols.iter_mut().zip(self.gather()) {
            *c = if g == u32::MAX { 0.0 } else { x[g as usize] };
        }
    }
    /// Adds the folded `cols` (`K × P`) into one sample's `dx`.
    fn col2im(&self, cols: &[f64], dx: &mut [f64]) {
        for (c, &g) in cols.iter().zip(self.gather()) {
            if g != u32::MAX {
                dx[g as usize] += c;
            }
        }
    }
    /// `y = W cols (+ b)` for one sample (`O × P`).
    fn apply(&self, w: &[f64], cols: &[f64], y: &mut [f64], acc: bool) {
        let (o, k, p) = (self.out[0], self.k(), self.p());
        gemm_nn(y, w, cols, o, p, k, acc);
    }
    fn add_bias(&self, bias: &[f64], y: &mut [f64]) {
        let p = self.p();
        for (row, b) in y.chunks_exact_mut(p).zip(bias) {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
    /// The per-sample gradient of one sample into `g` (`[W | b]`), with `cols` scratch (`K × P`):
    /// `G = Δ · colsᵀ` (`Δ`: the sample's `dy`, `O × P`; `cols`: its unfolded input, `K × P`).
    fn sample_grad(&self, x: &[f64], dy: &[f64], g: &mut [f64], cols: &mut [f64]) {
        let (o, k, p) = (self.out[0], self.k(), self.p());
        self.im2col(x, cols);
        gemm_nt(&mut g[..o * k], dy, cols, o, k, p, false);
        if self.bias {
            for ch in 0..o {
                g[o * k + ch] = dy[ch * p..(ch + 1) * p].iter().sum();
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
    /// Two unfolded inputs (`K × P` each) and the statistics' per-sample gradient.
    fn scratch_len(&self, _b: usize) -> usize {
        2 * self.k() * self.p() + self.n_params()
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
        let (din, dout, o, nw) = (self.in_dim(), self.out_dim(), self.out[0], self.nw());
        let cols = &mut scratch[..self.k() * self.p()];
        for i in 0..b {
            let yi = &mut y[i * dout..(i + 1) * dout];
            self.im2col(&x[i * din..(i + 1) * din], cols);
            self.apply(&p[..nw], cols, yi, false);
            if self.bias {
                self.add_bias(&p[nw..nw + o], yi);
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
        let (cols, rest) = scratch.split_at_mut(k * np);
        let dcols = &mut rest[..k * np];
        let mut grad = grad;
        let mut dx = dx;
        if let Some(g) = grad.as_deref_mut() {
            g.fill(0.0);
        }
        for i in 0..b {
            let dyi = &dy[i * dout..(i + 1) * dout];
            if let Some(g) = grad.as_deref_mut() {
                self.im2col(&f.x[i * din..(i + 1) * din], cols);
                gemm_nt(&mut g[..nw], dyi, cols, o, k, np, true);
                if self.bias {
                    for ch in 0..o {
                        g[nw + ch] += dyi[ch * np..(ch + 1) * np].iter().sum::<f64>();
                    }
                }
            }
            if let Some(d) = dx.as_deref_mut() {
                let dxi = &mut d[i * din..(i + 1) * din];
                dxi.fill(0.0);
                gemm_tn(dcols, &p[..nw], dyi, k, np, o, 1.0, false);
                self.col2im(dcols, dxi);
            }
        }
        if let Some(g) = grad {
            g.iter_mut().for_each(|v| *v *= alpha);
        }
    }

    fn grad_sq(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        let (din, dout) = (self.in_dim(), self.out_dim());
        let (cols, rest) = scratch.split_at_mut(self.k() * self.p());
        let g = &mut rest[self.k() * self.p()..self.k() * self.p() + self.n_params()];
        for i in 0..b {
            self.sample_grad(&f.x[i * din..(i + 1) * din], &dy[i * dout..(i + 1) * dout], g, cols);
            for (s, v) in sm.iter_mut().zip(g.iter()) {
                *s += v * v;
            }
        }
    }

    fn grad_quad(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, d: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        let (din, dout) = (self.in_dim(), self.out_dim());
        let (cols, rest) = scratch.split_at_mut(self.k() * self.p());
        let g = &mut rest[self.k() * self.p()..self.k() * self.p() + self.n_params()];
        for (i, qi) in q.iter_mut().enumerate().take(b) {
            self.sample_grad(&f.x[i * din..(i + 1) * din], &dy[i * dout..(i + 1) * dout], g, cols);
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
        let (din, dout, o, nw) = (self.in_dim(), self.out_dim(), self.out[0], self.nw());
        let cols = &mut scratch[..self.k() * self.p()];
        for i in 0..b {
            let ryi = &mut ry[i * dout..(i + 1) * dout];
            self.im2col(&f.x[i * din..(i + 1) * din], cols);
            self.apply(&v[..nw], cols, ryi, false);
            if let Some(rx) = rx {
                self.im2col(&rx[i * din..(i + 1) * din], cols);
                self.apply(&p[..nw], cols, ryi, true);
            }
            if self.bias {
                self.add_bias(&v[nw..nw + o], ryi);
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
        let (cols, rest) = scratch.split_at_mut(k * np);
        let (dcols, rest) = rest.split_at_mut(k * np);
        let gw = &mut rest[..nw];
        let mut rdx = rdx;
        for i in 0..b {
            let (rdyi, dyi) = (&rdy[i * dout..(i + 1) * dout], &r.dy[i * dout..(i + 1) * dout]);
            // Hv_W += α (R{Δ} Xᵀ + Δ R{X}ᵀ), Hv_b += α Σ R{Δ}.
            self.im2col(&r.f.x[i * din..(i + 1) * din], cols);
            gemm_nt(gw, rdyi, cols, o, k, np, false);
            if let Some(rx) = r.rx {
                self.im2col(&rx[i * din..(i + 1) * din], cols);
                gemm_nt(gw, dyi, cols, o, k, np, true);
            }
            for (h, g) in hv[..nw].iter_mut().zip(gw.iter()) {
                *h += alpha * g;
            }
            if self.bias {
                for ch in 0..o {
                    hv[nw + ch] += alpha * rdyi[ch * np..(ch + 1) * np].iter().sum::<f64>();
                }
            }
            // R{dx} = col2im(Wᵀ R{Δ} + Vᵀ Δ).
            if let Some(d) = rdx.as_deref_mut() {
                let di = &mut d[i * din..(i + 1) * din];
                di.fill(0.0);
                gemm_tn(dcols, &p[..nw], rdyi, k, np, o, 1.0, false);
                gemm_tn(dcols, &v[..nw], dyi, k, np, o, 1.0, true);
                self.col2im(dcols, di);
            }
        }
    }
}
