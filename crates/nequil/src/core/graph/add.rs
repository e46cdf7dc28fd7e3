//! `add`: the element-wise sum of two inputs of one shape, `y = x_1 + x_2` (a residual
//! connection's join; PyTorch `a + b`). No parameters; linear, so its R-operator is itself:
//! `R{y} = R{x_1} + R{x_2}`, `dx_1 = dx_2 = dy`, `R{dx_1} = R{dx_2} = R{dy}`.

use super::Op;

/// `y = x_1 + x_2` on per-sample tensors of shape `shape`.
#[derive(Clone, Debug)]
pub struct Add {
    shape: Vec<usize>,
}

impl Add {
    /// The sum of two inputs of per-sample shape `shape`.
    pub fn new(shape: Vec<usize>) -> Self {
        Add { shape }
    }
    fn n(&self, b: usize) -> usize {
        b * self.shape.iter().product::<usize>()
    }
}

impl Op for Add {
    fn name(&self) -> &'static str {
        "add"
    }
    fn in_shapes(&self) -> Vec<Vec<usize>> {
        vec![self.shape.clone(), self.shape.clone()]
    }
    fn out_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn forward(&self, _p: &[&[f64]], xs: &[&[f64]], y: &mut [f64], b: usize) {
        let n = self.n(b);
        for ((o, a), c) in y[..n].iter_mut().zip(&xs[0][..n]).zip(&xs[1][..n]) {
            *o = a + c;
        }
    }
    fn backward(
        &self,
        _p: &[&[f64]],
        _xs: &[&[f64]],
        _y: &[f64],
        dy: &[f64],
        dxs: &mut [Option<&mut [f64]>],
        _grads: &mut [&mut [f64]],
        _alpha: f64,
        b: usize,
    ) {
        let n = self.n(b);
        for dx in dxs.iter_mut().flatten() {
            dx[..n].copy_from_slice(&dy[..n]);
        }
    }
    fn rforward(&self, _p: &[&[f64]], _v: &[&[f64]], _xs: &[&[f64]], rxs: &[Option<&[f64]>], ry: &mut [f64], b: usize) {
        let n = self.n(b);
        ry[..n].fill(0.0);
        for rx in rxs.iter().flatten() {
            ry[..n].iter_mut().zip(&rx[..n]).for_each(|(o, r)| *o += r);
        }
    }
    fn rbackward(
        &self,
        _p: &[&[f64]],
        _v: &[&[f64]],
        _xs: &[&[f64]],
        _dy: &[f64],
        _rxs: &[Option<&[f64]>],
        rdy: &[f64],
        rdxs: &mut [Option<&mut [f64]>],
        _hv: &mut [&mut [f64]],
        _alpha: f64,
        b: usize,
    ) {
        let n = self.n(b);
        for rdx in rdxs.iter_mut().flatten() {
            rdx[..n].copy_from_slice(&rdy[..n]);
        }
    }
}
