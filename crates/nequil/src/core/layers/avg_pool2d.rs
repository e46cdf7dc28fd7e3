//! `avg-pool2d`: the mean over `k × k` windows with stride `s` of each channel, `[C, H, W] →
//! [C, H', W']` (PyTorch's `nn.AvgPool2d(k, s)`, no padding). No parameters; a linear map, so its
//! R-operator is itself. Channel rescalings pass through.

use super::max_pool2d::{pool_window, pooled, whole_channels};
use super::{BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "avg-pool2d", kernel, stride = kernel }`: `nn.AvgPool2d(kernel, stride)` on
/// `[C, H, W]`, no padding.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AvgPool2dConfig {
    /// Window size (≥ 1, at most the input's height and width).
    pub kernel: usize,
    /// Stride (≥ 1; PyTorch's default: the kernel size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
}

impl BuildLayer for AvgPool2dConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let (chw, k, s) = pool_window(key, "avg-pool2d", inp, self.kernel, self.stride)?;
        Ok(Arc::new(AvgPool2d::new(chw, k, s)))
    }
}

/// Average pooling over `k × k` windows with stride `s`.
#[derive(Clone, Debug)]
pub struct AvgPool2d {
    inp: [usize; 3],
    out: [usize; 3],
    k: usize,
    s: usize,
}

impl AvgPool2d {
    /// Pools `[c, h, w]` inputs; `k ≤ h, w` and `s ≥ 1` are checked by the model builder.
    pub fn new(inp: [usize; 3], k: usize, s: usize) -> Self {
        let [c, h, w] = inp;
        AvgPool2d {
            inp,
            out: [c, pooled(h, k, s), pooled(w, k, s)],
            k,
            s,
        }
    }
    fn apply(&self, x: &[f64], y: &mut [f64], b: usize) {
        let [c, h, w] = self.inp;
        let [_, ho, wo] = self.out;
        let (din, dout) = (c * h * w, c * ho * wo);
        let inv = 1.0 / (self.k * self.k) as f64;
        for i in 0..b {
            for ch in 0..c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut s = 0.0;
                        for ky in 0..self.k {
                            let row = i * din + ch * h * w + (oy * self.s + ky) * w + ox * self.s;
                            s += x[row..row + self.k].iter().sum::<f64>();
                        }
                        y[i * dout + ch * ho * wo + oy * wo + ox] = s * inv;
                    }
                }
            }
        }
    }
    fn spread(&self, dy: &[f64], dx: &mut [f64], b: usize) {
        let [c, h, w] = self.inp;
        let [_, ho, wo] = self.out;
        let (din, dout) = (c * h * w, c * ho * wo);
        let inv = 1.0 / (self.k * self.k) as f64;
        dx[..b * din].fill(0.0);
        for i in 0..b {
            for ch in 0..c {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let g = dy[i * dout + ch * ho * wo + oy * wo + ox] * inv;
                        for ky in 0..self.k {
                            let row = i * din + ch * h * w + (oy * self.s + ky) * w + ox * self.s;
                            dx[row..row + self.k].iter_mut().for_each(|v| *v += g);
                        }
                    }
                }
            }
        }
    }
}

impl Layer for AvgPool2d {
    fn kind(&self) -> &'static str {
        "avg-pool2d"
    }
    fn describe(&self) -> String {
        format!(
            "avg-pool {}×{} stride {} {:?} → {:?}",
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
    fn pass(&self, positions: &[usize]) -> Pass {
        match whole_channels(positions, self.inp, self.out) {
            Some(p) => Pass::Through(p),
            None => Pass::Block,
        }
    }
    fn forward(&self, _p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        self.apply(x, y, b);
    }
    fn backward(
        &self,
        _p: &[f64],
        _f: Fwd<'_>,
        dy: &[f64],
        dx: Option<&mut [f64]>,
        _grad: Option<&mut [f64]>,
        _alpha: f64,
        b: usize,
        _scratch: &mut [f64],
    ) {
        if let Some(dx) = dx {
            self.spread(dy, dx, b);
        }
    }
    fn grad_sq(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _sm: &mut [f64], _s: &mut [f64]) {}
    fn grad_quad(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _d: &[f64], _q: &mut [f64], _s: &mut [f64]) {}
    fn rforward(
        &self,
        _p: &[f64],
        _v: &[f64],
        _f: Fwd<'_>,
        rx: Option<&[f64]>,
        ry: &mut [f64],
        b: usize,
        _s: &mut [f64],
    ) {
        match rx {
            Some(rx) => self.apply(rx, ry, b),
            None => ry[..b * self.out_dim()].fill(0.0),
        }
    }
    fn rbackward(
        &self,
        _p: &[f64],
        _v: &[f64],
        _r: RFwd<'_>,
        rdy: &[f64],
        rdx: Option<&mut [f64]>,
        _hv: &mut [f64],
        _alpha: f64,
        b: usize,
        _s: &mut [f64],
    ) {
        if let Some(rdx) = rdx {
            self.spread(rdy, rdx, b);
        }
    }
}
