//! `residual`: a block whose output is added to its input, `y = x + F(x)`, where `F` is a stack
//! of layers (PyTorch: a module `Residual(nn.Sequential)` whose `forward` returns
//! `x + super().forward(x)`, so that its children are named `{i}.{j}`).
//!
//! Every method walks the inner stack: the forward pass keeps the inner outputs and saved values
//! in the block's `saved` (block-major within a chunk: `[out_0 | saved_0 | out_1 | …]`); the
//! backward pass runs the inner backward from `dy` (the gradient of `F`'s output is `dy`) and
//! adds `dy` to the input gradient; the statistics and the R-operator rerun what they need and ask
//! each inner layer for its part. The symmetry catalog looks inside ([`Layer::children`]); nothing
//! crosses the block's boundary.

use super::{BlockSpec, BuildLayer, Child, Fwd, Layer, LayerConfig, LayerFootprint, RFwd};
use crate::core::footprint::F64;
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "residual", layers = [ … ] }`: `x + F(x)`, F the inner layers (any registered kinds,
/// residual blocks included), named `{i}.{j}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResidualConfig {
    /// The inner layers, in order (at least one; together they map the input shape to itself).
    pub layers: Vec<LayerConfig>,
}

impl BuildLayer for ResidualConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        if self.layers.is_empty() {
            return Err(invalid!("{key}.layers: a residual block needs at least one layer"));
        }
        let mut children = vec![];
        let mut shape = inp.to_vec();
        let mut offset = 0usize;
        for (j, d) in self.layers.iter().enumerate() {
            let l = d.build(&shape, &format!("{key}.layers[{j}]"))?;
            shape = l.out_shape().to_vec();
            let np = l.n_params();
            children.push(Child {
                layer: l,
                offset,
                module: j.to_string(),
            });
            offset = offset
                .checked_add(np)
                .ok_or_else(|| invalid!("{key}: the parameter count overflows"))?;
        }
        if shape != inp {
            return Err(invalid!(
                "{key}: a residual block must map its input shape {inp:?} to itself, its layers give {shape:?}"
            ));
        }
        Ok(Arc::new(Residual::new(children, inp.to_vec())))
    }
}

/// A residual block over a stack of layers (see the module docs).
#[derive(Clone, Debug)]
pub struct Residual {
    children: Vec<Child>,
    shape: Vec<usize>,
    n_params: usize,
}

/// Offsets of the per-chunk buffers of each child within a block-major buffer.
struct Carve {
    /// `(start, len)` of each child's outputs, then of its saved values, in `saved`.
    out: Vec<(usize, usize)>,
    saved: Vec<(usize, usize)>,
}

impl Residual {
    /// `y = x + F(x)` for the stack `children` (each with its parameter offset within the block's
    /// and its module name). Shapes are checked by the model builder: the stack maps the block's
    /// input shape to itself.
    pub fn new(children: Vec<Child>, shape: Vec<usize>) -> Self {
        let n_params = children.iter().map(|c| c.layer.n_params()).sum();
        Residual {
            children,
            shape,
            n_params,
        }
    }

    fn carve(&self, b: usize) -> Carve {
        let mut off = 0;
        let (mut out, mut saved) = (vec![], vec![]);
        for c in &self.children {
            let o = b * c.layer.out_dim();
            out.push((off, o));
            off += o;
            let s = b * c.layer.saved_per_sample();
            saved.push((off, s));
            off += s;
        }
        Carve { out, saved }
    }

    fn p<'a>(&self, p: &'a [f64], k: usize) -> &'a [f64] {
        let c = &self.children[k];
        &p[c.offset..c.offset + c.layer.n_params()]
    }

    /// Sizes of the scratch regions: Σ b·out_k (for deltas, R{y} and R{δ} each), b·in (dx of the
    /// first child).
    fn inner_len(&self, b: usize) -> usize {
        self.children.iter().map(|c| b * c.layer.out_dim()).sum()
    }

    /// The inner `δ`s from `dy` (and the first child's input gradient into `dx0` if given), into
    /// `deltas` (block-major like the outputs).
    #[allow(clippy::too_many_arguments)]
    fn inner_backward(
        &self,
        p: &[f64],
        f: Fwd<'_>,
        dy: &[f64],
        deltas: &mut [f64],
        dx0: Option<&mut [f64]>,
        mut grad: Option<&mut [f64]>,
        alpha: f64,
        b: usize,
        scratch: &mut [f64],
    ) {
        let cv = self.carve(b);
        let offs = self.delta_offsets(b);
        let last = self.children.len() - 1;
        deltas[offs[last]..offs[last] + b * self.children[last].layer.out_dim()]
            .copy_from_slice(&dy[..b * self.children[last].layer.out_dim()]);
        let mut dx0 = dx0;
        for k in (0..self.children.len()).rev() {
            let c = &self.children[k];
            let (lo, hi) = deltas.split_at_mut(offs[k]);
            let dyk = &hi[..b * c.layer.out_dim()];
            let dxk: Option<&mut [f64]> = if k > 0 {
                let prev = &self.children[k - 1];
                Some(&mut lo[offs[k - 1]..offs[k - 1] + b * prev.layer.out_dim()])
            } else {
                dx0.as_deref_mut()
            };
            let g = grad
                .as_deref_mut()
                .map(|g| &mut g[c.offset..c.offset + c.layer.n_params()]);
            if dxk.is_none() && (g.is_none() || c.layer.n_params() == 0) {
                continue;
            }
            let fk = self.child_fwd(f, &cv, k, b);
            c.layer.backward(self.p(p, k), fk, dyk, dxk, g, alpha, b, scratch);
        }
    }

    /// The scratch regions: inner δs, inner R{y}s, inner R{δ}s (each Σ b·out_k), the first
    /// child's input gradient and its R (each b·in), and the children's own scratch.
    #[allow(clippy::type_complexity)]
    fn regions<'s>(&self, scratch: &'s mut [f64], b: usize) -> [&'s mut [f64]; 6] {
        let (n, din) = (self.inner_len(b), b * self.in_dim());
        let (deltas, rest) = scratch.split_at_mut(n);
        let (rys, rest) = rest.split_at_mut(n);
        let (rds, rest) = rest.split_at_mut(n);
        let (dx0, rest) = rest.split_at_mut(din);
        let (rdx0, inner) = rest.split_at_mut(din);
        [deltas, rys, rds, dx0, rdx0, inner]
    }

    fn delta_offsets(&self, b: usize) -> Vec<usize> {
        let mut off = 0;
        self.children
            .iter()
            .map(|c| {
                let o = off;
                off += b * c.layer.out_dim();
                o
            })
            .collect()
    }

    fn child_fwd<'a>(&self, f: Fwd<'a>, cv: &Carve, k: usize, _b: usize) -> Fwd<'a> {
        let x = if k == 0 {
            f.x
        } else {
            let (s, l) = cv.out[k - 1];
            &f.saved[s..s + l]
        };
        let (s, l) = cv.out[k];
        let (ss, sl) = cv.saved[k];
        Fwd {
            x,
            y: &f.saved[s..s + l],
            saved: &f.saved[ss..ss + sl],
        }
    }

    /// Inner `R{y}`s into `ry` (block-major), given the block's `R{x}`.
    #[allow(clippy::too_many_arguments)]
    fn inner_rforward(
        &self,
        p: &[f64],
        v: &[f64],
        f: Fwd<'_>,
        rx: Option<&[f64]>,
        ry: &mut [f64],
        b: usize,
        scratch: &mut [f64],
    ) {
        let cv = self.carve(b);
        let offs = self.delta_offsets(b);
        for (k, c) in self.children.iter().enumerate() {
            let (lo, hi) = ry.split_at_mut(offs[k]);
            let rxk = if k == 0 {
                rx
            } else {
                Some(&lo[offs[k - 1]..offs[k - 1] + b * self.children[k - 1].layer.out_dim()])
            };
            let vk = &v[c.offset..c.offset + c.layer.n_params()];
            c.layer.rforward(
                self.p(p, k),
                vk,
                self.child_fwd(f, &cv, k, b),
                rxk,
                &mut hi[..b * c.layer.out_dim()],
                b,
                scratch,
            );
        }
    }
}

impl Layer for Residual {
    fn kind(&self) -> &'static str {
        "residual"
    }
    fn describe(&self) -> String {
        let inner: Vec<String> = self.children.iter().map(|c| c.layer.describe()).collect();
        format!("residual [{}]", inner.join(", "))
    }
    fn in_shape(&self) -> &[usize] {
        &self.shape
    }
    fn out_shape(&self) -> &[usize] {
        &self.shape
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        self.children
            .iter()
            .flat_map(|c| {
                c.layer.blocks().into_iter().map(move |mut bs| {
                    bs.name = format!("{}.{}", c.module, bs.name);
                    bs
                })
            })
            .collect()
    }
    fn n_params(&self) -> usize {
        self.n_params
    }
    fn saved_per_sample(&self) -> usize {
        self.children
            .iter()
            .map(|c| c.layer.out_dim() + c.layer.saved_per_sample())
            .sum()
    }
    fn scratch_len(&self, b: usize) -> usize {
        let inner = self.children.iter().map(|c| c.layer.scratch_len(b)).max().unwrap_or(0);
        3 * self.inner_len(b) + 2 * b * self.in_dim() + inner
    }
    fn children(&self) -> &[Child] {
        &self.children
    }
    /// The default ([`Layer::footprint`]: its children's outputs and saved values are its own
    /// saved values, its scratch theirs and its carving) and the offsets of its children's buffers
    /// that each pass computes (at most 64 bytes per child).
    fn footprint(&self, b: usize) -> LayerFootprint {
        let per = 2 * self.out_dim() as u128 + self.saved_per_sample() as u128;
        LayerFootprint {
            kept: per * b as u128 * F64 + 64 * self.children.len() as u128,
            scratch: self.scratch_len(b) as u128 * F64,
        }
    }
    fn kink_distance(&self, p: &[f64], x: &[f64], b: usize) -> f64 {
        let mut saved = vec![0.0; b * self.saved_per_sample()];
        let mut scratch = vec![0.0; self.scratch_len(b)];
        let mut y = vec![0.0; b * self.out_dim()];
        self.forward(p, x, &mut y, &mut saved, b, &mut scratch);
        let cv = self.carve(b);
        let f = Fwd {
            x,
            y: &y,
            saved: &saved,
        };
        (0..self.children.len())
            .map(|k| {
                self.children[k]
                    .layer
                    .kink_distance(self.p(p, k), self.child_fwd(f, &cv, k, b).x, b)
            })
            .fold(f64::INFINITY, f64::min)
    }

    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], saved: &mut [f64], b: usize, scratch: &mut [f64]) {
        let cv = self.carve(b);
        for (k, c) in self.children.iter().enumerate() {
            let (os, ol) = cv.out[k];
            let (ss, sl) = cv.saved[k];
            let (before, rest) = saved.split_at_mut(os);
            let (outk, rest) = rest.split_at_mut(ol);
            let savedk = &mut rest[ss - os - ol..ss - os - ol + sl];
            let input: &[f64] = if k == 0 {
                x
            } else {
                let (ps, pl) = cv.out[k - 1];
                &before[ps..ps + pl]
            };
            c.layer.forward(self.p(p, k), input, outk, savedk, b, scratch);
        }
        let (s, l) = cv.out[self.children.len() - 1];
        for ((o, a), f) in y[..l].iter_mut().zip(&x[..l]).zip(&saved[s..s + l]) {
            *o = a + f;
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
        let din = b * self.in_dim();
        let [deltas, _, _, dx0, _, inner] = self.regions(scratch, b);
        let want_dx = dx.is_some();
        self.inner_backward(p, f, dy, deltas, want_dx.then_some(&mut *dx0), grad, alpha, b, inner);
        if let Some(dx) = dx {
            for ((o, a), c) in dx[..din].iter_mut().zip(&dy[..din]).zip(&dx0[..din]) {
                *o = a + c;
            }
        }
    }

    fn grad_sq(&self, p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        let [deltas, _, _, _, _, rest] = self.regions(scratch, b);
        self.inner_backward(p, f, dy, deltas, None, None, 1.0, b, rest);
        let cv = self.carve(b);
        let offs = self.delta_offsets(b);
        for (k, c) in self.children.iter().enumerate() {
            if c.layer.n_params() == 0 {
                continue;
            }
            let dk = &deltas[offs[k]..offs[k] + b * c.layer.out_dim()];
            let smk = &mut sm[c.offset..c.offset + c.layer.n_params()];
            c.layer
                .grad_sq(self.p(p, k), self.child_fwd(f, &cv, k, b), dk, b, smk, rest);
        }
    }

    fn grad_quad(&self, p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, d: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        let [deltas, _, _, _, _, rest] = self.regions(scratch, b);
        self.inner_backward(p, f, dy, deltas, None, None, 1.0, b, rest);
        let cv = self.carve(b);
        let offs = self.delta_offsets(b);
        for (k, c) in self.children.iter().enumerate() {
            if c.layer.n_params() == 0 {
                continue;
            }
            let dk = &deltas[offs[k]..offs[k] + b * c.layer.out_dim()];
            let dd = &d[c.offset..c.offset + c.layer.n_params()];
            c.layer
                .grad_quad(self.p(p, k), self.child_fwd(f, &cv, k, b), dk, b, dd, q, rest);
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
        let [_, rys, _, _, _, rest] = self.regions(scratch, b);
        self.inner_rforward(p, v, f, rx, rys, b, rest);
        let last = self.children.len() - 1;
        let off = self.delta_offsets(b)[last];
        let l = b * self.out_dim();
        for (k, o) in ry[..l].iter_mut().enumerate() {
            *o = rys[off + k] + rx.map_or(0.0, |r| r[k]);
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
        let din = b * self.in_dim();
        let [deltas, rys, rds, dx0, first_rdx, inner] = self.regions(scratch, b);
        self.inner_backward(p, r.f, r.dy, deltas, Some(dx0), None, 1.0, b, inner);
        self.inner_rforward(p, v, r.f, r.rx, rys, b, inner);
        let cv = self.carve(b);
        let offs = self.delta_offsets(b);
        let last = self.children.len() - 1;
        let lo_last = b * self.children[last].layer.out_dim();
        rds[offs[last]..offs[last] + lo_last].copy_from_slice(&rdy[..lo_last]);
        // The first child's R{dx} goes to a region of its own; the block adds R{dy} to it.
        for k in (0..self.children.len()).rev() {
            let c = &self.children[k];
            let (lo, hi) = rds.split_at_mut(offs[k]);
            let rdyk = &hi[..b * c.layer.out_dim()];
            let rdxk: Option<&mut [f64]> = if k > 0 {
                Some(&mut lo[offs[k - 1]..offs[k - 1] + b * self.children[k - 1].layer.out_dim()])
            } else if rdx.is_some() {
                Some(&mut first_rdx[..])
            } else {
                None
            };
            if rdxk.is_none() && c.layer.n_params() == 0 {
                continue;
            }
            let rf = RFwd {
                f: self.child_fwd(r.f, &cv, k, b),
                dy: &deltas[offs[k]..offs[k] + b * c.layer.out_dim()],
                dx: if k == 0 {
                    Some(&dx0[..])
                } else {
                    Some(&deltas[offs[k - 1]..offs[k - 1] + b * self.children[k - 1].layer.out_dim()])
                },
                rx: if k == 0 {
                    r.rx
                } else {
                    Some(&rys[offs[k - 1]..offs[k - 1] + b * self.children[k - 1].layer.out_dim()])
                },
                ry: &rys[offs[k]..offs[k] + b * c.layer.out_dim()],
            };
            let vk = &v[c.offset..c.offset + c.layer.n_params()];
            let hvk = &mut hv[c.offset..c.offset + c.layer.n_params()];
            c.layer
                .rbackward(self.p(p, k), vk, rf, rdyk, rdxk, hvk, alpha, b, inner);
        }
        if let Some(rdx) = rdx {
            for ((o, a), c) in rdx[..din].iter_mut().zip(&rdy[..din]).zip(first_rdx.iter()) {
                *o = a + c;
            }
        }
    }
}
