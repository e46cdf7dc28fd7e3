//! `net-a`, `net-b`: the scale-invariant two-layer tanh nets of the paper's Fig. 7 (Appendix A.1),
//! as one layer with two weight blocks.
//!
//! With `W ∈ ℝ^{h×d_in}` (rows `w_j`, block `0.weight`) and `U ∈ ℝ^{d_out×h}` (columns `u_j`,
//! block `1.weight`), and Frobenius norms `‖U‖`, `‖W‖`:
//!
//! * **Net-A**: `f(x) = U tanh(W x / ‖U‖) / ‖W‖`, invariant under the global rescaling θ → cθ
//!   (generator `A = I`).
//! * **Net-B**: `f(x) = U tanh(W x / ‖W‖) / ‖U‖`, invariant under rescaling `U` and `W` separately
//!   (generators `A = diag(I_W, 0)` and `A = diag(0, I_U)`).
//!
//! With `z = s_in W x`, `a = tanh z`, `f = s_out U a` (Net-A: `s_in = 1/‖U‖`, `s_out = 1/‖W‖`;
//! Net-B: `s_in = 1/‖W‖`, `s_out = 1/‖U‖`), `δ = ∂ℓ/∂f` and `δ_z = s_out (1 − a²) ⊙ Uᵀδ`, the
//! gradient has direct terms `s_out δ aᵀ` (U) and `s_in δ_z xᵀ` (W) plus norm terms: the scale
//! `s = 1/‖M‖` of a block M adds `−(Σ δ·f) M/‖M‖²` when it is `s_out` and `−(Σ δ_z·z) M/‖M‖²` when it
//! is `s_in`.
//!
//! The per-sample statistics run one backward pass per sample (the norm terms couple every entry).
//! The R-operator runs the same forward and backward passes, written once generic in the scalar
//! type, on dual numbers.

use super::dual::{as_duals, Dual, Num};
use super::{BlockInit, BlockSpec, Fwd, Intrinsic, Layer, RFwd};
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};

/// Which of the two scale-invariant nets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleKind {
    /// Globally scale invariant.
    NetA,
    /// Layer-wise scale invariant.
    NetB,
}

/// Net-A or Net-B with widths `[d_in, h, d_out]` (see the module docs).
#[derive(Clone, Debug)]
pub struct ScaleNet {
    kind: ScaleKind,
    din: [usize; 1],
    h: usize,
    dout: [usize; 1],
}

impl ScaleNet {
    /// A net with widths `[d_in, h, d_out]` (positive; checked by the model builder).
    pub fn new(kind: ScaleKind, d_in: usize, hidden: usize, d_out: usize) -> Self {
        ScaleNet {
            kind,
            din: [d_in],
            h: hidden,
            dout: [d_out],
        }
    }
    /// Which net.
    pub fn kind(&self) -> ScaleKind {
        self.kind
    }
    /// Widths `[d_in, h, d_out]`.
    pub fn widths(&self) -> [usize; 3] {
        [self.din[0], self.h, self.dout[0]]
    }
    fn nw(&self) -> usize {
        self.din[0] * self.h
    }
    /// (s_in, s_out, ‖U‖², ‖W‖²) for parameters of any scalar type.
    fn scales<T: Num>(&self, p: &[T]) -> (T, T, T, T) {
        let (w, u) = p.split_at(self.nw());
        let sumsq = |v: &[T]| v.iter().fold(T::cst(0.0), |acc, &e| acc + e * e);
        let (nu2, nw2) = (sumsq(u), sumsq(w));
        let (nu, nw) = (nu2.sqrt(), nw2.sqrt());
        let (s_in, s_out) = match self.kind {
            ScaleKind::NetA => (nu.recip(), nw.recip()),
            ScaleKind::NetB => (nw.recip(), nu.recip()),
        };
        (s_in, s_out, nu2, nw2)
    }

    /// Forward pass in any scalar type, plain loops: `z`, `a` (`b × h`) and `y` (`b × d_out`).
    #[allow(clippy::too_many_arguments)]
    fn forward_num<T: Num>(&self, p: &[T], x: &[T], z: &mut [T], a: &mut [T], y: &mut [T], b: usize) {
        let [din, h, dout] = self.widths();
        let (w, u) = p.split_at(self.nw());
        let (s_in, s_out, _, _) = self.scales(p);
        let zero = T::cst(0.0);
        for i in 0..b {
            let xi = &x[i * din..(i + 1) * din];
            for j in 0..h {
                let mut acc = zero;
                for (wv, xv) in w[j * din..(j + 1) * din].iter().zip(xi) {
                    acc += *wv * *xv;
                }
                let zj = acc * s_in;
                z[i * h + j] = zj;
                a[i * h + j] = zj.tanh();
            }
            let ai = &a[i * h..(i + 1) * h];
            for o in 0..dout {
                let mut acc = zero;
                for (uv, av) in u[o * h..(o + 1) * h].iter().zip(ai) {
                    acc += *uv * *av;
                }
                y[i * dout + o] = acc * s_out;
            }
        }
    }

    /// Backward pass in any scalar type, plain loops; `grad` is overwritten with `alpha Σ_i g_i`.
    #[allow(clippy::too_many_arguments)]
    fn backward_num<T: Num>(
        &self,
        p: &[T],
        x: &[T],
        (z, a, y): (&[T], &[T], &[T]),
        dy: &[T],
        dx: Option<&mut [T]>,
        grad: &mut [T],
        alpha: f64,
        b: usize,
        dh: &mut [T],
    ) {
        let [din, h, dout] = self.widths();
        let nwp = self.nw();
        let (w, u) = p.split_at(nwp);
        let (s_in, s_out, nu2, nw2) = self.scales(p);
        let zero = T::cst(0.0);
        let mut rf = zero;
        for (d, f) in dy[..b * dout].iter().zip(&y[..b * dout]) {
            rf += *d * *f;
        }
        let mut dz = zero;
        for i in 0..b {
            for j in 0..h {
                let mut q = zero;
                for o in 0..dout {
                    q += dy[i * dout + o] * u[o * h + j];
                }
                let aj = a[i * h + j];
                let dj = q * s_out * (T::cst(1.0) - aj * aj);
                dh[i * h + j] = dj;
                dz += dj * z[i * h + j];
            }
        }
        grad.iter_mut().for_each(|g| *g = zero);
        let (gw, gu) = grad.split_at_mut(nwp);
        for i in 0..b {
            for o in 0..dout {
                let ds = dy[i * dout + o] * s_out;
                for (g, av) in gu[o * h..(o + 1) * h].iter_mut().zip(&a[i * h..(i + 1) * h]) {
                    *g += ds * *av;
                }
            }
            for j in 0..h {
                let ds = dh[i * h + j] * s_in;
                for (g, xv) in gw[j * din..(j + 1) * din].iter_mut().zip(&x[i * din..(i + 1) * din]) {
                    *g += ds * *xv;
                }
            }
        }
        let (cu, cw) = match self.kind {
            ScaleKind::NetA => (
                (zero - dz.scale(alpha)) * nu2.recip(),
                (zero - rf.scale(alpha)) * nw2.recip(),
            ),
            ScaleKind::NetB => (
                (zero - rf.scale(alpha)) * nu2.recip(),
                (zero - dz.scale(alpha)) * nw2.recip(),
            ),
        };
        for (g, v) in gu.iter_mut().zip(u) {
            *g = g.scale(alpha) + cu * *v;
        }
        for (g, v) in gw.iter_mut().zip(w) {
            *g = g.scale(alpha) + cw * *v;
        }
        if let Some(dx) = dx {
            for i in 0..b {
                for k in 0..din {
                    let mut acc = zero;
                    for j in 0..h {
                        acc += dh[i * h + j] * w[j * din + k];
                    }
                    dx[i * din + k] = acc * s_in;
                }
            }
        }
    }

    /// The dual-number buffers of the R-operator for a chunk of `b` samples, carved from scratch:
    /// θ, x, z, a, y, dy, dx, grad, dh.
    fn dual_len(&self, b: usize) -> usize {
        let [din, h, dout] = self.widths();
        2 * (2 * self.n_params() + b * (2 * din + 3 * h + 2 * dout))
    }

    /// Runs the forward pass on duals `(p + εv, x + ε rx)` into the dual buffers; returns them.
    #[allow(clippy::type_complexity)]
    fn dual_forward<'s>(
        &self,
        p: &[f64],
        v: &[f64],
        x: &[f64],
        rx: Option<&[f64]>,
        b: usize,
        scratch: &'s mut [f64],
    ) -> [&'s mut [Dual]; 9] {
        let [din, h, dout] = self.widths();
        let np = self.n_params();
        let d = as_duals(&mut scratch[..self.dual_len(b)]);
        let (th, d) = d.split_at_mut(np);
        let (xd, d) = d.split_at_mut(b * din);
        let (zd, d) = d.split_at_mut(b * h);
        let (ad, d) = d.split_at_mut(b * h);
        let (yd, d) = d.split_at_mut(b * dout);
        let (dyd, d) = d.split_at_mut(b * dout);
        let (dxd, d) = d.split_at_mut(b * din);
        let (gd, dh) = d.split_at_mut(np);
        for ((t, pv), vv) in th.iter_mut().zip(p).zip(v) {
            *t = Dual { v: *pv, d: *vv };
        }
        for (k, t) in xd.iter_mut().enumerate() {
            *t = Dual {
                v: x[k],
                d: rx.map_or(0.0, |r| r[k]),
            };
        }
        self.forward_num(th, xd, zd, ad, yd, b);
        [th, xd, zd, ad, yd, dyd, dxd, gd, dh]
    }
}

impl Layer for ScaleNet {
    fn kind(&self) -> &'static str {
        match self.kind {
            ScaleKind::NetA => "net-a",
            ScaleKind::NetB => "net-b",
        }
    }
    fn describe(&self) -> String {
        let name = match self.kind {
            ScaleKind::NetA => "Net-A (global scale invariance)",
            ScaleKind::NetB => "Net-B (layer-wise scale invariance)",
        };
        format!("{name}, widths {:?}", self.widths())
    }
    fn in_shape(&self) -> &[usize] {
        &self.din
    }
    fn out_shape(&self) -> &[usize] {
        &self.dout
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        let [din, h, dout] = self.widths();
        vec![
            BlockSpec {
                name: "0.weight".into(),
                shape: vec![h, din],
                init: BlockInit::Weight {
                    fan_in: din,
                    fan_out: h,
                },
            },
            BlockSpec {
                name: "1.weight".into(),
                shape: vec![dout, h],
                init: BlockInit::Weight {
                    fan_in: h,
                    fan_out: dout,
                },
            },
        ]
    }
    fn n_params(&self) -> usize {
        let [din, h, dout] = self.widths();
        h * (din + dout)
    }
    /// `[z (b × h) | a (b × h)]` (block-major, not sample-major: the statistics below copy one
    /// sample's rows out).
    fn saved_per_sample(&self) -> usize {
        2 * self.h
    }
    fn scratch_len(&self, b: usize) -> usize {
        // backward: δ_z (b × h); statistics: g (P), one sample's saved (2h) and δ_z (h);
        // R-operator: the dual buffers.
        (b * self.h).max(self.n_params() + 3 * self.h).max(self.dual_len(b))
    }
    fn intrinsic_symmetries(&self) -> Vec<Intrinsic> {
        match self.kind {
            ScaleKind::NetA => vec![Intrinsic::Scale { blocks: vec![0, 1] }],
            ScaleKind::NetB => vec![
                Intrinsic::Scale { blocks: vec![0] },
                Intrinsic::Scale { blocks: vec![1] },
            ],
        }
    }

    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let [din, h, dout] = self.widths();
        let (w, u) = p.split_at(self.nw());
        let (s_in, s_out, _, _) = self.scales(p);
        let (z, a) = saved.split_at_mut(b * h);
        gemm_nt(z, x, w, b, h, din, false);
        for v in &mut z[..b * h] {
            *v *= s_in;
        }
        crate::core::math::tanh_slice(&mut a[..b * h], &z[..b * h]);
        gemm_nt(y, a, u, b, dout, h, false);
        for v in &mut y[..b * dout] {
            *v *= s_out;
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
        let [din, h, dout] = self.widths();
        let (w, u) = p.split_at(self.nw());
        let (s_in, s_out, nu2, nw2) = self.scales(p);
        let (z, a) = f.saved.split_at(b * h);
        // Σ_i δ_i·f_i.
        let rf: f64 = dy[..b * dout].iter().zip(&f.y[..b * dout]).map(|(d, v)| d * v).sum();
        // δ_z = (δ U · s_out) ⊙ (1 − a²), and Σ_i δ_z·z.
        let dh = &mut scratch[..b * h];
        gemm_nn(dh, dy, u, b, h, dout, false);
        let mut dz = 0.0;
        for ((dv, av), zv) in dh.iter_mut().zip(&a[..b * h]).zip(&z[..b * h]) {
            *dv *= s_out * (1.0 - av * av);
            dz += *dv * zv;
        }
        if let Some(grad) = grad {
            let (gw, gu) = grad.split_at_mut(self.nw());
            gemm_tn(gu, dy, a, dout, h, b, alpha * s_out, false);
            gemm_tn(gw, dh, f.x, h, din, b, alpha * s_in, false);
            let (nu, nw) = (nu2.sqrt(), nw2.sqrt());
            let (cu, cw) = match self.kind {
                ScaleKind::NetA => (-dz * alpha / (nu * nu), -rf * alpha / (nw * nw)),
                ScaleKind::NetB => (-rf * alpha / (nu * nu), -dz * alpha / (nw * nw)),
            };
            for (g, v) in gu.iter_mut().zip(u) {
                *g += cu * v;
            }
            for (g, v) in gw.iter_mut().zip(w) {
                *g += cw * v;
            }
        }
        if let Some(dx) = dx {
            gemm_nn(dx, dh, w, b, din, h, false);
            for v in &mut dx[..b * din] {
                *v *= s_in;
            }
        }
    }

    fn grad_sq(&self, p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        let (np, h) = (self.n_params(), self.h);
        let (din, dout) = (self.din[0], self.dout[0]);
        let (g, rest) = scratch.split_at_mut(np);
        let (sv, rest) = rest.split_at_mut(2 * h);
        for i in 0..b {
            sv[..h].copy_from_slice(&f.saved[i * h..(i + 1) * h]);
            sv[h..].copy_from_slice(&f.saved[b * h + i * h..b * h + (i + 1) * h]);
            let fi = Fwd {
                x: &f.x[i * din..(i + 1) * din],
                y: &f.y[i * dout..(i + 1) * dout],
                saved: sv,
            };
            self.backward(p, fi, &dy[i * dout..(i + 1) * dout], None, Some(g), 1.0, 1, rest);
            for (s, v) in sm.iter_mut().zip(g.iter()) {
                *s += v * v;
            }
        }
    }

    fn grad_quad(&self, p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, d: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        let (np, h) = (self.n_params(), self.h);
        let (din, dout) = (self.din[0], self.dout[0]);
        let (g, rest) = scratch.split_at_mut(np);
        let (sv, rest) = rest.split_at_mut(2 * h);
        for (i, qi) in q.iter_mut().enumerate().take(b) {
            sv[..h].copy_from_slice(&f.saved[i * h..(i + 1) * h]);
            sv[h..].copy_from_slice(&f.saved[b * h + i * h..b * h + (i + 1) * h]);
            let fi = Fwd {
                x: &f.x[i * din..(i + 1) * din],
                y: &f.y[i * dout..(i + 1) * dout],
                saved: sv,
            };
            self.backward(p, fi, &dy[i * dout..(i + 1) * dout], None, Some(g), 1.0, 1, rest);
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
        let [_, _, _, _, yd, ..] = self.dual_forward(p, v, f.x, rx, b, scratch);
        for (r, t) in ry[..b * self.dout[0]].iter_mut().zip(yd.iter()) {
            *r = t.d;
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
        let [th, xd, zd, ad, yd, dyd, dxd, gd, dh] = self.dual_forward(p, v, r.f.x, r.rx, b, scratch);
        for (k, t) in dyd.iter_mut().enumerate() {
            *t = Dual { v: r.dy[k], d: rdy[k] };
        }
        let want_dx = rdx.is_some();
        self.backward_num(
            th,
            xd,
            (zd, ad, yd),
            dyd,
            want_dx.then_some(&mut *dxd),
            gd,
            alpha,
            b,
            dh,
        );
        for (h, g) in hv.iter_mut().zip(gd.iter()) {
            *h += g.d;
        }
        if let Some(rdx) = rdx {
            for (o, t) in rdx[..b * self.din[0]].iter_mut().zip(dxd.iter()) {
                *o = t.d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;

    /// The generic (plain-loop) passes on `f64` agree with the GEMM passes, for both nets.
    #[test]
    fn generic_passes_match_gemm_passes() {
        for kind in [ScaleKind::NetA, ScaleKind::NetB] {
            let net = ScaleNet::new(kind, 3, 4, 2);
            let (b, np) = (5, net.n_params());
            let mut rng = Rng::new(11);
            let mut p = vec![0.0; np];
            let mut x = vec![0.0; b * 3];
            let mut dy = vec![0.0; b * 2];
            rng.fill_normal(&mut p);
            rng.fill_normal(&mut x);
            rng.fill_normal(&mut dy);
            let mut y0 = vec![0.0; b * 2];
            let mut saved = vec![0.0; b * 8];
            net.forward(&p, &x, &mut y0, &mut saved, b, &mut []);
            let mut scratch = vec![0.0; net.scratch_len(b)];
            let mut g0 = vec![0.0; np];
            let mut dx0 = vec![0.0; b * 3];
            let f = Fwd {
                x: &x,
                y: &y0,
                saved: &saved,
            };
            net.backward(&p, f, &dy, Some(&mut dx0), Some(&mut g0), 0.5, b, &mut scratch);
            let (mut z, mut a, mut y1) = (vec![0.0; b * 4], vec![0.0; b * 4], vec![0.0; b * 2]);
            net.forward_num(&p, &x, &mut z, &mut a, &mut y1, b);
            let (mut g1, mut dx1, mut dh) = (vec![0.0; np], vec![0.0; b * 3], vec![0.0; b * 4]);
            net.backward_num(&p, &x, (&z, &a, &y1), &dy, Some(&mut dx1), &mut g1, 0.5, b, &mut dh);
            for (u, v) in y0.iter().chain(&g0).chain(&dx0).zip(y1.iter().chain(&g1).chain(&dx1)) {
                assert!((u - v).abs() < 1e-13 * (1.0 + u.abs()), "{u} vs {v}");
            }
        }
    }
}
