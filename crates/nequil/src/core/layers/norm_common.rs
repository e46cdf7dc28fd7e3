//! The passes every row normalization shares (`layer-norm`, `rms-norm`, `group-norm`): each
//! per-sample tensor is `T` rows of `d` values normalized one by one, and the layer supplies only
//! its math through [`RowNorm`] — the forward pass `(y, x̂, 1/√(· + ε))` on rows and the backward
//! pass from `x̂`, `1/√(· + ε)` and `dy`, both written once, generic in the scalar type.
//!
//! From those, this module implements the [`Layer`] passes once for all of them: the forward and
//! backward loops over the samples (the backward forms each sample's gradient from scratch and sums
//! them, so the per-sample statistics see the same numbers), and the R-operator, which runs the
//! same two passes on dual numbers at `(θ + εv, x + ε R{x})`: the ε-parts of `y` and of the
//! gradient are `R{y}` and `Hv` exactly.
//!
//! The saved layout per sample is `[x̂ (T·d) | 1/√(· + ε) (T)]`.

use super::dual::{as_duals, Dual, Num};
use super::{BlockInit, BlockSpec, Fwd, Layer, RFwd};

/// The math of a normalization over rows of a per-sample tensor (see the module docs).
pub(crate) trait RowNorm: Layer {
    /// `(T, d)`: the rows of a per-sample tensor and the values per row.
    fn dims(&self) -> (usize, usize);

    /// Forward on `rows` rows of `d` values (the rows of consecutive samples follow each other):
    /// `y`, `x̂` and the reciprocal scale (`1/√(σ² + ε)` or its like) per row.
    fn forward_num<T: Num>(&self, p: &[T], x: &[T], y: &mut [T], xhat: &mut [T], rstd: &mut [T], rows: usize);

    /// Backward on `rows` rows: `dx` (if given) from `dy`; `grad` (if given) is overwritten with
    /// `alpha Σ g` over the rows.
    #[allow(clippy::too_many_arguments)]
    fn backward_num<T: Num>(
        &self,
        p: &[T],
        xhat: &[T],
        rstd: &[T],
        dy: &[T],
        dx: Option<&mut [T]>,
        grad: Option<&mut [T]>,
        alpha: f64,
        rows: usize,
    );
}

/// A normalization's affine blocks over `n` features or channels: `weight` γ (`[n]`, ones) and,
/// if `bias`, `bias` β (`[n]`, zeros); none without `affine`.
pub(crate) fn affine_blocks(affine: bool, n: usize, bias: bool) -> Vec<BlockSpec> {
    if !affine {
        return vec![];
    }
    let mut v = vec![BlockSpec {
        name: "weight".into(),
        shape: vec![n],
        init: BlockInit::Ones,
    }];
    if bias {
        v.push(BlockSpec {
            name: "bias".into(),
            shape: vec![n],
            init: BlockInit::Zeros,
        });
    }
    v
}

/// `T · (d + 1)`: `[x̂ | 1/√(· + ε)]` per sample.
pub(crate) fn saved_per_sample<N: RowNorm>(n: &N) -> usize {
    let (t, d) = n.dims();
    t * (d + 1)
}

/// The f64 slots the dual buffers take for `b` samples.
fn dual_len<N: RowNorm>(n: &N, b: usize) -> usize {
    let (t, d) = n.dims();
    2 * (2 * n.n_params() + b * t * (5 * d + 1))
}

/// Scratch for `b` samples: the dual buffers, or one sample's gradient.
pub(crate) fn scratch_len<N: RowNorm>(n: &N, b: usize) -> usize {
    dual_len(n, b).max(n.n_params())
}

/// [`Layer::forward`]: [`RowNorm::forward_num`] sample by sample.
pub(crate) fn forward<N: RowNorm>(n: &N, p: &[f64], x: &[f64], y: &mut [f64], saved: &mut [f64], b: usize) {
    let (t, d) = n.dims();
    let per = t * (d + 1);
    for i in 0..b {
        let (xh, rs) = saved[i * per..(i + 1) * per].split_at_mut(t * d);
        n.forward_num(
            p,
            &x[i * t * d..(i + 1) * t * d],
            &mut y[i * t * d..(i + 1) * t * d],
            xh,
            rs,
            t,
        );
    }
}

/// [`Layer::backward`]: [`RowNorm::backward_num`] sample by sample, each sample's gradient formed
/// in `scratch` and added to `grad`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<N: RowNorm>(
    n: &N,
    p: &[f64],
    f: Fwd<'_>,
    dy: &[f64],
    dx: Option<&mut [f64]>,
    grad: Option<&mut [f64]>,
    alpha: f64,
    b: usize,
    scratch: &mut [f64],
) {
    let (t, d) = n.dims();
    let per = t * (d + 1);
    let np = n.n_params();
    let mut dx = dx;
    let mut grad = grad;
    if let Some(g) = grad.as_deref_mut() {
        g.fill(0.0);
    }
    let gs = &mut scratch[..np];
    for i in 0..b {
        let (xh, rs) = f.saved[i * per..(i + 1) * per].split_at(t * d);
        let dyi = &dy[i * t * d..(i + 1) * t * d];
        let dxi = dx.as_deref_mut().map(|v| &mut v[i * t * d..(i + 1) * t * d]);
        let want = grad.is_some() && np > 0;
        n.backward_num(p, xh, rs, dyi, dxi, want.then_some(&mut *gs), alpha, t);
        if let (Some(g), true) = (grad.as_deref_mut(), want) {
            for (a, v) in g.iter_mut().zip(gs.iter()) {
                *a += v;
            }
        }
    }
}

/// The dual buffers (θ, x, x̂, rstd, y, dy, dx, grad) with the forward pass at `(p + εv, x + ε rx)`.
#[allow(clippy::type_complexity)]
fn dual_forward<'s, N: RowNorm>(
    n: &N,
    p: &[f64],
    v: &[f64],
    x: &[f64],
    rx: Option<&[f64]>,
    b: usize,
    scratch: &'s mut [f64],
) -> [&'s mut [Dual]; 8] {
    let (t, d) = n.dims();
    let (np, len) = (n.n_params(), b * t * d);
    let s = as_duals(&mut scratch[..dual_len(n, b)]);
    let (th, s) = s.split_at_mut(np);
    let (xd, s) = s.split_at_mut(len);
    let (xh, s) = s.split_at_mut(len);
    let (rs, s) = s.split_at_mut(b * t);
    let (yd, s) = s.split_at_mut(len);
    let (dyd, s) = s.split_at_mut(len);
    let (dxd, s) = s.split_at_mut(len);
    let gd = &mut s[..np];
    for ((a, pv), vv) in th.iter_mut().zip(p).zip(v) {
        *a = Dual { v: *pv, d: *vv };
    }
    for (k, a) in xd.iter_mut().enumerate() {
        *a = Dual {
            v: x[k],
            d: rx.map_or(0.0, |r| r[k]),
        };
    }
    n.forward_num(th, xd, yd, xh, rs, b * t);
    [th, xd, xh, rs, yd, dyd, dxd, gd]
}

/// [`Layer::rforward`]: `R{y}`, the ε-part of the forward pass on dual numbers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rforward<N: RowNorm>(
    n: &N,
    p: &[f64],
    v: &[f64],
    f: Fwd<'_>,
    rx: Option<&[f64]>,
    ry: &mut [f64],
    b: usize,
    scratch: &mut [f64],
) {
    let [_, _, _, _, yd, ..] = dual_forward(n, p, v, f.x, rx, b, scratch);
    for (r, a) in ry.iter_mut().zip(yd.iter()) {
        *r = a.d;
    }
}

/// [`Layer::rbackward`]: the backward pass on dual numbers; `hv += ` the ε-part of the gradient,
/// `rdx` (if given) `=` the ε-part of `dx`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rbackward<N: RowNorm>(
    n: &N,
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
    let (t, _) = n.dims();
    let [th, _xd, xh, rs, _yd, dyd, dxd, gd] = dual_forward(n, p, v, r.f.x, r.rx, b, scratch);
    for (k, a) in dyd.iter_mut().enumerate() {
        *a = Dual { v: r.dy[k], d: rdy[k] };
    }
    let want_dx = rdx.is_some();
    let np = n.n_params();
    n.backward_num(
        th,
        xh,
        rs,
        dyd,
        want_dx.then_some(&mut *dxd),
        (np > 0).then_some(&mut *gd),
        alpha,
        b * t,
    );
    if np > 0 {
        for (h, g) in hv.iter_mut().zip(gd.iter()) {
            *h += g.d;
        }
    }
    if let Some(rdx) = rdx {
        for (o, a) in rdx.iter_mut().zip(dxd.iter()) {
            *o = a.d;
        }
    }
}

/// The four passes of [`Layer`] (`forward`, `backward`, `rforward`, `rbackward`) and
/// `scratch_len` for a [`RowNorm`], written inside its `impl Layer` block: each calls the function
/// of the same name above.
macro_rules! row_norm_passes {
    () => {
        fn scratch_len(&self, b: usize) -> usize {
            $crate::core::layers::norm_common::scratch_len(self, b)
        }

        fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
            $crate::core::layers::norm_common::forward(self, p, x, y, saved, b);
        }

        fn backward(
            &self,
            p: &[f64],
            f: $crate::core::layers::Fwd<'_>,
            dy: &[f64],
            dx: Option<&mut [f64]>,
            grad: Option<&mut [f64]>,
            alpha: f64,
            b: usize,
            scratch: &mut [f64],
        ) {
            $crate::core::layers::norm_common::backward(self, p, f, dy, dx, grad, alpha, b, scratch);
        }

        fn rforward(
            &self,
            p: &[f64],
            v: &[f64],
            f: $crate::core::layers::Fwd<'_>,
            rx: Option<&[f64]>,
            ry: &mut [f64],
            b: usize,
            scratch: &mut [f64],
        ) {
            $crate::core::layers::norm_common::rforward(self, p, v, f, rx, ry, b, scratch);
        }

        fn rbackward(
            &self,
            p: &[f64],
            v: &[f64],
            r: $crate::core::layers::RFwd<'_>,
            rdy: &[f64],
            rdx: Option<&mut [f64]>,
            hv: &mut [f64],
            alpha: f64,
            b: usize,
            scratch: &mut [f64],
        ) {
            $crate::core::layers::norm_common::rbackward(self, p, v, r, rdy, rdx, hv, alpha, b, scratch);
        }
    };
}
pub(crate) use row_norm_passes;
