//! `flatten`: reshapes a per-sample tensor (`[C, H, W]`, `[T, d]`, …) into a vector, as PyTorch's
//! `nn.Flatten()` does (row-major, so the values and their order do not change). No parameters;
//! a linear map, so its R-operator is itself.

use super::{BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "flatten" }`: `nn.Flatten()` (no keys).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {}

impl BuildLayer for FlattenConfig {
    fn build(&self, inp: &[usize], _key: &str) -> Result<Arc<dyn Layer>> {
        Ok(Arc::new(Flatten::new(inp.to_vec())))
    }
}

/// Flattens a per-sample tensor of shape `shape` into `[∏ shape]`.
#[derive(Clone, Debug)]
pub struct Flatten {
    shape: Vec<usize>,
    out: [usize; 1],
}

impl Flatten {
    /// Flattens tensors of the given per-sample shape.
    pub fn new(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Flatten { shape, out: [n] }
    }
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }
    fn describe(&self) -> String {
        format!("flatten {:?} → [{}]", self.shape, self.out[0])
    }
    fn in_shape(&self) -> &[usize] {
        &self.shape
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
        Pass::Through(positions.to_vec())
    }
    fn forward(&self, _p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let n = b * self.out[0];
        y[..n].copy_from_slice(&x[..n]);
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
            let n = b * self.out[0];
            dx[..n].copy_from_slice(&dy[..n]);
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
        let n = b * self.out[0];
        match rx {
            Some(rx) => ry[..n].copy_from_slice(&rx[..n]),
            None => ry[..n].fill(0.0),
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
            let n = b * self.out[0];
            rdx[..n].copy_from_slice(&rdy[..n]);
        }
    }
}
