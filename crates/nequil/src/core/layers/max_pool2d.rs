//! `max-pool2d`: the maximum over `k × k` windows with stride `s` of each channel, `[C, H, W] →
//! [C, H', W']` with `H' = ⌊(H − k)/s⌋ + 1` (PyTorch's `nn.MaxPool2d(k, s)`, no padding). No
//! parameters. The forward pass keeps the index of each window's maximum (the first one on a tie,
//! as PyTorch); the backward pass routes `dy` there, and so do the R-operator's passes. The
//! maximum commutes with scaling a whole channel by `c > 0`, so channel rescalings pass through.

use super::{chw, BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "max-pool2d", kernel, stride = kernel }`: `nn.MaxPool2d(kernel, stride)` on
/// `[C, H, W]`, no padding.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MaxPool2dConfig {
    /// Window size (≥ 1, at most the input's height and width).
    pub kernel: usize,
    /// Stride (≥ 1; PyTorch's default: the kernel size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
}

/// The input `[C, H, W]`, window and stride of a pooling layer `kind` configured with `kernel`
/// and `stride` (default: the kernel), or an error naming `key` and the field at fault.
pub(crate) fn pool_window(
    key: &str,
    kind: &str,
    inp: &[usize],
    kernel: usize,
    stride: Option<usize>,
) -> Result<([usize; 3], usize, usize)> {
    let [c, h, w] = chw(key, kind, inp)?;
    let stride = stride.unwrap_or(kernel);
    for (field, v) in [("kernel", kernel), ("stride", stride)] {
        if v == 0 {
            return Err(invalid!("{key}.{field}: must be ≥ 1"));
        }
    }
    if kernel > h || kernel > w {
        return Err(invalid!("{key}.kernel: {kernel} is larger than the input {h}×{w}"));
    }
    Ok(([c, h, w], kernel, stride))
}

impl BuildLayer for MaxPool2dConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let (chw, k, s) = pool_window(key, "max-pool2d", inp, self.kernel, self.stride)?;
        Ok(Arc::new(MaxPool2d::new(chw, k, s)))
    }
}

/// Max pooling over `k × k` windows with stride `s`.
#[derive(Clone, Debug)]
pub struct MaxPool2d {
    inp: [usize; 3],
    out: [usize; 3],
    k: usize,
    s: usize,
}

impl MaxPool2d {
    /// Pools `[c, h, w]` inputs; `k ≤ h, w` and `s ≥ 1` are checked by the model builder.
    pub fn new(inp: [usize; 3], k: usize, s: usize) -> Self {
        let [c, h, w] = inp;
        MaxPool2d {
            inp,
            out: [c, pooled(h, k, s), pooled(w, k, s)],
            k,
            s,
        }
    }
}

impl MaxPool2d {
    /// The smallest gap, over every window of the `b` samples `x`, between the window's maximum
    /// and its runner-up: how far the inputs are from a tie, where the pooling is not
    /// differentiable (for finite-difference checks).
    pub fn min_gap(&self, x: &[f64], b: usize) -> f64 {
        let [c, h, w] = self.inp;
        let [_, ho, wo] = self.out;
        let din = c * h * w;
        let mut gap = f64::INFINITY;
        for i in 0..b {
            for ch in 0..c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let (mut m1, mut m2) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
                        for ky in 0..self.k {
                            for kx in 0..self.k {
                                let v = x[i * din + ch * h * w + (oy * self.s + ky) * w + ox * self.s + kx];
                                if v > m1 {
                                    m2 = m1;
                                    m1 = v;
                                } else if v > m2 {
                                    m2 = v;
                                }
                            }
                        }
                        gap = gap.min(m1 - m2);
                    }
                }
            }
        }
        gap
    }
}

/// Output size of a window of `k` with stride `s` over `n` (0 when `k > n`).
pub(crate) fn pooled(n: usize, k: usize, s: usize) -> usize {
    if k > n || s == 0 {
        0
    } else {
        (n - k) / s + 1
    }
}

/// The output positions of the channels whose every input position is in `positions`, if the
/// set is exactly whole channels.
pub(crate) fn whole_channels(positions: &[usize], inp: [usize; 3], out: [usize; 3]) -> Option<Vec<usize>> {
    let hw = inp[1] * inp[2];
    let mut chans: Vec<usize> = positions.iter().map(|p| p / hw).collect();
    chans.sort_unstable();
    chans.dedup();
    if positions.len() != chans.len() * hw {
        return None;
    }
    let ohw = out[1] * out[2];
    Some(chans.iter().flat_map(|c| c * ohw..(c + 1) * ohw).collect())
}

impl Layer for MaxPool2d {
    fn kind(&self) -> &'static str {
        "max-pool2d"
    }
    fn describe(&self) -> String {
        format!(
            "max-pool {}×{} stride {} {:?} → {:?}",
            self.k, self.k, self.s, self.inp, self.out
        )
    }
    fn in_shape(&self) -> &[usize] {
        &self.inp
    }
    fn out_shape(&self) -> &[usize] {
        &self.out
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        Vec::new()
    }
    fn n_params(&self) -> usize {
        0
    }
    /// The index (within the sample's input) of each output's maximum.
    fn saved_per_sample(&self) -> usize {
        self.out_dim()
    }
    fn pass(&self, positions: &[usize]) -> Pass {
        match whole_channels(positions, self.inp, self.out) {
            Some(p) => Pass::Through(p),
            None => Pass::Block,
        }
    }
    fn kink_distance(&self, _p: &[f64], x: &[f64], b: usize) -> f64 {
        self.min_gap(x, b)
    }
    fn forward(&self, _p: &[f64], x: &[f64], y: &mut [f64], saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let [c, h, w] = self.inp;
        let [_, ho, wo] = self.out;
        let (din, dout) = (c * h * w, c * ho * wo);
        for i in 0..b {
            let xi = &x[i * din..(i + 1) * din];
            for ch in 0..c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut best = f64::NEG_INFINITY;
                        let mut at = ch * h * w + oy * self.s * w + ox * self.s;
                        for ky in 0..self.k {
                            let row = ch * h * w + (oy * self.s + ky) * w + ox * self.s;
                            for kx in 0..self.k {
                                let v = xi[row + kx];
                                // `>` keeps the first maximum; NaN propagates through `at`'s value.
                                if v > best || v.is_nan() && !best.is_nan() {
                                    best = v;
                                    at = row + kx;
                                }
                            }
                        }
                        let o = i * dout + ch * ho * wo + oy * wo + ox;
                        y[o] = xi[at];
                        saved[o] = at as f64;
                    }
                }
            }
        }
    }
    fn backward(
        &self,
        _p: &[f64],
        f: Fwd<'_>,
        dy: &[f64],
        dx: Option<&mut [f64]>,
        _grad: Option<&mut [f64]>,
        _alpha: f64,
        b: usize,
        _scratch: &mut [f64],
    ) {
        if let Some(dx) = dx {
            route(dy, dx, f.saved, b, self.in_dim(), self.out_dim());
        }
    }
    fn grad_sq(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _sm: &mut [f64], _s: &mut [f64]) {}
    fn grad_quad(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _d: &[f64], _q: &mut [f64], _s: &mut [f64]) {}
    fn rforward(
        &self,
        _p: &[f64],
        _v: &[f64],
        f: Fwd<'_>,
        rx: Option<&[f64]>,
        ry: &mut [f64],
        b: usize,
        _s: &mut [f64],
    ) {
        let (din, dout) = (self.in_dim(), self.out_dim());
        for i in 0..b {
            for o in 0..dout {
                ry[i * dout + o] = rx.map_or(0.0, |r| r[i * din + f.saved[i * dout + o] as usize]);
            }
        }
    }
    fn rbackward(
        &self,
        _p: &[f64],
        _v: &[f64],
        r: RFwd<'_>,
        rdy: &[f64],
        rdx: Option<&mut [f64]>,
        _hv: &mut [f64],
        _alpha: f64,
        b: usize,
        _s: &mut [f64],
    ) {
        if let Some(rdx) = rdx {
            route(rdy, rdx, r.f.saved, b, self.in_dim(), self.out_dim());
        }
    }
}

/// `dx = 0`, then `dx[argmax] += dy` per sample.
fn route(dy: &[f64], dx: &mut [f64], at: &[f64], b: usize, din: usize, dout: usize) {
    dx[..b * din].fill(0.0);
    for i in 0..b {
        for o in 0..dout {
            dx[i * din + at[i * dout + o] as usize] += dy[i * dout + o];
        }
    }
}
