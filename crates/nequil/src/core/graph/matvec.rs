//! `matvec`: `y = W x` with the weight `W` (`[out, in]`, row-major) a **named** block of the
//! graph's parameter table, so that several nodes can read one weight (tied embeddings).
//!
//! Backward `dx = Wᵀ dy`, and `Σ_i dy_i x_iᵀ` is **added** to the block's gradient (each use adds
//! its share). R-operator: `R{y} = V x + W R{x}`, `R{dx} = Wᵀ R{dy} + Vᵀ dy`, and
//! `Σ_i (R{dy_i} x_iᵀ + dy_i R{x_i}ᵀ)` is added to the block's `Hv`.

use super::{Op, ParamUse};

/// `y = W x` with `W` the table's block `weight` (`[out, inp]`).
#[derive(Clone, Debug)]
pub struct MatVec {
    weight: String,
    inp: usize,
    out: usize,
}

impl MatVec {
    /// `y = W x`, `W` the block named `weight` of shape `[out, inp]`.
    pub fn new(weight: &str, inp: usize, out: usize) -> Self {
        MatVec {
            weight: weight.to_string(),
            inp,
            out,
        }
    }
}

/// `y_i = A x_i` for `b` rows, `A` `[out, inp]`; `acc`: add instead of overwrite.
fn apply(a: &[f64], x: &[f64], y: &mut [f64], inp: usize, out: usize, b: usize, acc: bool) {
    for (xr, yr) in x.chunks_exact(inp).zip(y.chunks_exact_mut(out)).take(b) {
        for (k, yv) in yr.iter_mut().enumerate() {
            let s: f64 = a[k * inp..(k + 1) * inp].iter().zip(xr).map(|(w, v)| w * v).sum();
            *yv = if acc { *yv + s } else { s };
        }
    }
}

/// `x_i = Aᵀ y_i` for `b` rows; `acc`: add instead of overwrite.
fn apply_t(a: &[f64], y: &[f64], x: &mut [f64], inp: usize, out: usize, b: usize, acc: bool) {
    for (yr, xr) in y.chunks_exact(out).zip(x.chunks_exact_mut(inp)).take(b) {
        if !acc {
            xr.fill(0.0);
        }
        for (k, g) in yr.iter().enumerate() {
            for (xv, w) in xr.iter_mut().zip(&a[k * inp..(k + 1) * inp]) {
                *xv += g * w;
            }
        }
    }
}

/// `g += alpha Σ_i d_i x_iᵀ`.
fn outer_add(g: &mut [f64], d: &[f64], x: &[f64], inp: usize, out: usize, b: usize, alpha: f64) {
    for (dr, xr) in d.chunks_exact(out).zip(x.chunks_exact(inp)).take(b) {
        for (k, dv) in dr.iter().enumerate() {
            for (gv, xv) in g[k * inp..(k + 1) * inp].iter_mut().zip(xr) {
                *gv += alpha * dv * xv;
            }
        }
    }
}

impl Op for MatVec {
    fn name(&self) -> &'static str {
        "matvec"
    }
    fn in_shapes(&self) -> Vec<Vec<usize>> {
        vec![vec![self.inp]]
    }
    fn out_shape(&self) -> Vec<usize> {
        vec![self.out]
    }
    fn params(&self) -> Vec<ParamUse> {
        vec![ParamUse {
            name: self.weight.clone(),
            shape: vec![self.out, self.inp],
        }]
    }
    fn forward(&self, p: &[&[f64]], xs: &[&[f64]], y: &mut [f64], b: usize) {
        apply(p[0], xs[0], y, self.inp, self.out, b, false);
    }
    fn backward(
        &self,
        p: &[&[f64]],
        xs: &[&[f64]],
        _y: &[f64],
        dy: &[f64],
        dxs: &mut [Option<&mut [f64]>],
        grads: &mut [&mut [f64]],
        alpha: f64,
        b: usize,
    ) {
        if let Some(dx) = dxs[0].as_deref_mut() {
            apply_t(p[0], dy, dx, self.inp, self.out, b, false);
        }
        outer_add(grads[0], dy, xs[0], self.inp, self.out, b, alpha);
    }
    fn rforward(&self, p: &[&[f64]], v: &[&[f64]], xs: &[&[f64]], rxs: &[Option<&[f64]>], ry: &mut [f64], b: usize) {
        apply(v[0], xs[0], ry, self.inp, self.out, b, false);
        if let Some(rx) = rxs[0] {
            apply(p[0], rx, ry, self.inp, self.out, b, true);
        }
    }
    fn rbackward(
        &self,
        p: &[&[f64]],
        v: &[&[f64]],
        xs: &[&[f64]],
        dy: &[f64],
        rxs: &[Option<&[f64]>],
        rdy: &[f64],
        rdxs: &mut [Option<&mut [f64]>],
        hv: &mut [&mut [f64]],
        alpha: f64,
        b: usize,
    ) {
        if let Some(rdx) = rdxs[0].as_deref_mut() {
            apply_t(p[0], rdy, rdx, self.inp, self.out, b, false);
            apply_t(v[0], dy, rdx, self.inp, self.out, b, true);
        }
        outer_add(hv[0], rdy, xs[0], self.inp, self.out, b, alpha);
        if let Some(rx) = rxs[0] {
            outer_add(hv[0], dy, rx, self.inp, self.out, b, alpha);
        }
    }
}
