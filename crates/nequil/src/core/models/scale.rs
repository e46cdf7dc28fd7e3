//! The scale-invariant two-layer tanh nets of the paper's Fig. 7 (Appendix A.1).
//!
//! With `W ∈ ℝ^{h×d_in}` (rows `w_j`, named `layers.0.weight`) and `U ∈ ℝ^{d_out×h}` (columns `u_j`,
//! named `layers.1.weight`), and Frobenius norms `‖U‖`, `‖W‖`:
//!
//! * **Net-A**: `f(x) = U tanh(W x / ‖U‖) / ‖W‖`, invariant under the global rescaling θ → cθ
//!   (generator `A = I`).
//! * **Net-B**: `f(x) = U tanh(W x / ‖W‖) / ‖U‖`, invariant under rescaling `U` and `W` separately
//!   (generators `A = diag(0, I_U)` and `A = diag(I_W, 0)`).

use super::Workspace;
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};
use crate::core::params::Layout;
use crate::{invalid, Result};

/// Which of the two scale-invariant nets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleKind {
    /// Globally scale invariant.
    NetA,
    /// Layer-wise scale invariant.
    NetB,
}

/// Net-A or Net-B with widths `[d_in, h, d_out]`.
#[derive(Clone, Debug)]
pub struct ScaleNet {
    kind: ScaleKind,
    widths: Vec<usize>,
    layout: Layout,
}

impl ScaleNet {
    /// A new net; all widths must be positive.
    pub fn new(kind: ScaleKind, d_in: usize, hidden: usize, d_out: usize) -> Result<Self> {
        if d_in == 0 || hidden == 0 || d_out == 0 {
            return Err(invalid!(
                "model.widths: widths must be positive, got [{d_in}, {hidden}, {d_out}]"
            ));
        }
        let mut layout = Layout::new();
        layout.push("layers.0.weight", vec![hidden, d_in]);
        layout.push("layers.1.weight", vec![d_out, hidden]);
        Ok(ScaleNet {
            kind,
            widths: vec![d_in, hidden, d_out],
            layout,
        })
    }
    /// Which net.
    pub fn kind(&self) -> ScaleKind {
        self.kind
    }
    /// Parameter layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    /// Widths `[d_in, h, d_out]`.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }
    pub(crate) fn describe(&self) -> String {
        let name = match self.kind {
            ScaleKind::NetA => "Net-A (global scale invariance)",
            ScaleKind::NetB => "Net-B (layer-wise scale invariance)",
        };
        format!("{name}, widths {:?}", self.widths)
    }

    fn split<'a>(&self, theta: &'a [f64]) -> (&'a [f64], &'a [f64]) {
        let nw = self.widths[0] * self.widths[1];
        (&theta[..nw], &theta[nw..])
    }

    /// Returns (‖U‖, ‖W‖, input scale, output scale).
    fn scales(&self, theta: &[f64]) -> (f64, f64, f64, f64) {
        let (w, u) = self.split(theta);
        let nu = u.iter().map(|v| v * v).sum::<f64>().sqrt();
        let nw = w.iter().map(|v| v * v).sum::<f64>().sqrt();
        match self.kind {
            ScaleKind::NetA => (nu, nw, 1.0 / nu, 1.0 / nw),
            ScaleKind::NetB => (nu, nw, 1.0 / nw, 1.0 / nu),
        }
    }

    pub(crate) fn forward(&self, theta: &[f64], x: &[f64], b: usize, ws: &mut Workspace) {
        let [din, h, dout] = [self.widths[0], self.widths[1], self.widths[2]];
        let (w, u) = self.split(theta);
        let (_, _, s_in, s_out) = self.scales(theta);
        let z = &mut ws.z[0];
        gemm_nt(z, x, w, b, h, din, false);
        for v in &mut z[..b * h] {
            *v *= s_in;
        }
        for (a, zv) in ws.a[0][..b * h].iter_mut().zip(&z[..b * h]) {
            *a = crate::core::math::tanh(*zv);
        }
        let (a0, a1) = ws.a.split_at_mut(1);
        let f = &mut a1[0];
        gemm_nt(f, &a0[0], u, b, dout, h, false);
        for v in &mut f[..b * dout] {
            *v *= s_out;
        }
        // Keep z_out consistent for callers that read pre-activations.
        ws.z[1][..b * dout].copy_from_slice(&f[..b * dout]);
    }

    pub(crate) fn loss_grad(
        &self,
        theta: &[f64],
        x: &[f64],
        y: &[f64],
        b: usize,
        grad: &mut [f64],
        ws: &mut Workspace,
    ) -> f64 {
        let [din, h, dout] = [self.widths[0], self.widths[1], self.widths[2]];
        self.forward(theta, x, b, ws);
        let (w, u) = self.split(theta);
        let (nu, nw, s_in, s_out) = self.scales(theta);
        let mut loss = 0.0;
        // R = 2(f − y), and Σ_i R_i·f_i.
        let mut rf = 0.0;
        {
            let (f, r) = (&ws.a[1], &mut ws.delta[1]);
            for ((rv, fv), yv) in r[..b * dout].iter_mut().zip(&f[..b * dout]).zip(&y[..b * dout]) {
                let e = fv - yv;
                loss += e * e;
                *rv = 2.0 * e;
                rf += 2.0 * e * fv;
            }
        }
        // δ = (R U · s_out) ⊙ (1 − h²), and Σ_i δ_i·z_i.
        let mut dz = 0.0;
        {
            let (lo, hi) = ws.delta.split_at_mut(1);
            let dh = &mut lo[0];
            gemm_nn(dh, &hi[0], u, b, h, dout, false);
            for ((dv, av), zv) in dh[..b * h].iter_mut().zip(&ws.a[0][..b * h]).zip(&ws.z[0][..b * h]) {
                *dv *= s_out * (1.0 - av * av);
                dz += *dv * zv;
            }
        }
        let inv_b = 1.0 / b as f64;
        let (gw, gu) = grad.split_at_mut(din * h);
        // Direct terms.
        gemm_tn(gu, &ws.delta[1], &ws.a[0], dout, h, b, inv_b * s_out, false);
        gemm_tn(gw, &ws.delta[0], x, h, din, b, inv_b * s_in, false);
        // Norm terms: the norm in the input scale and the norm in the output scale.
        let (cu, cw) = match self.kind {
            // s_in = 1/‖U‖: ∂/∂U −(Σδ·z/‖U‖²) U ; s_out = 1/‖W‖: ∂/∂W −(ΣR·f/‖W‖²) W.
            ScaleKind::NetA => (-dz * inv_b / (nu * nu), -rf * inv_b / (nw * nw)),
            // s_out = 1/‖U‖: ∂/∂U −(ΣR·f/‖U‖²) U ; s_in = 1/‖W‖: ∂/∂W −(Σδ·z/‖W‖²) W.
            ScaleKind::NetB => (-rf * inv_b / (nu * nu), -dz * inv_b / (nw * nw)),
        };
        for (g, v) in gu.iter_mut().zip(u) {
            *g += cu * v;
        }
        for (g, v) in gw.iter_mut().zip(w) {
            *g += cw * v;
        }
        loss * inv_b
    }
}
