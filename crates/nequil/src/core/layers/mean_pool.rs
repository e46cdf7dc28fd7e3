//! `mean-pool`: the mean over a sequence, `[T, d] → [d]`, `y_j = (1/T) Σ_t x_tj`. No parameters; a
//! linear map, so its R-operator is itself.

use super::{features_at_every_position, BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "mean-pool" }`: the mean over a sequence, `x.mean(dim=1)` in PyTorch (no keys).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MeanPoolConfig {}

impl BuildLayer for MeanPoolConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        match inp {
            [t, d] => Ok(Arc::new(MeanPool::new(*t, *d))),
            _ => Err(invalid!(
                "{key}: mean-pool needs sequences of shape [T, d], got {inp:?}"
            )),
        }
    }
}

/// The mean over the first axis of `[T, d]`.
#[derive(Clone, Debug)]
pub struct MeanPool {
    inp: [usize; 2],
    out: [usize; 1],
}

impl MeanPool {
    /// Averages `[t, d]` over `t`.
    pub fn new(t: usize, d: usize) -> Self {
        MeanPool { inp: [t, d], out: [d] }
    }
    fn apply(&self, x: &[f64], y: &mut [f64], b: usize) {
        let [t, d] = self.inp;
        let inv = 1.0 / t as f64;
        for i in 0..b {
            let yi = &mut y[i * d..(i + 1) * d];
            yi.fill(0.0);
            for row in x[i * t * d..(i + 1) * t * d].chunks_exact(d) {
                for (a, v) in yi.iter_mut().zip(row) {
                    *a += v;
                }
            }
            yi.iter_mut().for_each(|v| *v *= inv);
        }
    }
    fn spread(&self, dy: &[f64], dx: &mut [f64], b: usize) {
        let [t, d] = self.inp;
        let inv = 1.0 / t as f64;
        for i in 0..b {
            let di = &dy[i * d..(i + 1) * d];
            for row in dx[i * t * d..(i + 1) * t * d].chunks_exact_mut(d) {
                for (a, v) in row.iter_mut().zip(di) {
                    *a = v * inv;
                }
            }
        }
    }
}

impl Layer for MeanPool {
    fn kind(&self) -> &'static str {
        "mean-pool"
    }
    fn describe(&self) -> String {
        format!("mean over {} positions of {}", self.inp[0], self.inp[1])
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
        match features_at_every_position(positions, self.inp[1], self.inp[0]) {
            Some(f) => Pass::Through(f),
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
            None => ry[..b * self.out[0]].fill(0.0),
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
