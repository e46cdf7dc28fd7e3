//! `self-attention`: multi-head self-attention in PyTorch's `nn.MultiheadAttention(E, H,
//! bias, batch_first=True)` layout, applied as `attn(x, x, x)` to a sequence `[T, E]`, with an
//! optional causal mask. Parameters: `in_proj_weight` `[3E, E]` (rows: queries, keys, values),
//! `in_proj_bias` `[3E]`, `out_proj.weight` `[E, E]`, `out_proj.bias` `[E]`.
//!
//! With `d = E/H` and, per head h, `Q_h, K_h, V_h` the head's columns of `X W_inᵀ + b_in`:
//! `S_h = Q_h K_hᵀ / √d` (entries above the diagonal removed when causal), `A_h = softmax_rows(S_h)`,
//! `O_h = A_h V_h`, and `Y = O W_oᵀ + b_o` with `O = [O_1 … O_H]`.
//!
//! Backward: `dO = dY W_o`, `dA = dO_h V_hᵀ`, `dV_h = A_hᵀ dO_h`, `dS = A ⊙ (dA − rowsum(dA ⊙ A))`,
//! `dQ_h = dS K_h /√d`, `dK_h = dSᵀ Q_h /√d`, `dX = dQKV W_in`; the weight gradients are
//! `dYᵀ O` and `dQKVᵀ X`, summed over positions. The per-sample statistics run the backward one
//! sample at a time (never a batch × P matrix). The R-operator runs the passes, written once
//! generic in the scalar type, on dual numbers.
//!
//! Symmetries (per head, exact): the logits are unchanged under `W_q,h → B W_q,h`,
//! `W_k,h → B⁻ᵀ W_k,h` (biases alike), and the output under `W_v,h → B W_v,h`,
//! `W_o,h → W_o,h B⁻¹`, for any invertible B; with `B = e^{λM}`, M symmetric, these are the double
//! rotations `qk.{label}.{h}` and `vo.{label}.{h}`. The output features are units (`W_o` rows and
//! `b_o`), the input enters linearly through the columns of `W_in` (so a unit before the layer is
//! absorbed there), and the key bias does not affect the output at all (softmax ignores a shift
//! shared by every key): it is inert.

use super::dual::{as_duals, Dual, Num};
use super::{
    checked_size, features_at_every_position, BlockInit, BlockSpec, BuildLayer, Fwd, Intrinsic, Layer, Pass, RFwd,
    Units,
};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "self-attention", heads, causal = false, bias = true }`:
/// `nn.MultiheadAttention(E, heads, bias, batch_first=True)` applied as `attn(x, x, x)` on
/// `[T, E]` (`E` is the input's last size).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SelfAttentionConfig {
    /// Number of heads (≥ 1, dividing E).
    pub heads: usize,
    /// A causal mask (default false).
    #[serde(default)]
    pub causal: bool,
    /// `in_proj_bias` and `out_proj.bias` (PyTorch's default true).
    #[serde(default = "yes")]
    pub bias: bool,
}

fn yes() -> bool {
    true
}

impl BuildLayer for SelfAttentionConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let &[t, e] = inp else {
            return Err(invalid!(
                "{key}: self-attention needs sequences of shape [T, E], got {inp:?}"
            ));
        };
        let heads = self.heads;
        if heads == 0 || e % heads != 0 {
            return Err(invalid!("{key}.heads: {heads} must be ≥ 1 and divide E = {e}"));
        }
        checked_size(key, "the attention maps [H, T, T]", &[heads, t, t])?;
        checked_size(key, "the projections [4·E, E]", &[4, e, e])?;
        checked_size(key, "the queries, keys and values [T, 3·E]", &[t, 3, e])?;
        Ok(Arc::new(SelfAttention::new(t, e, heads, self.causal, self.bias)))
    }
}
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};

/// Multi-head self-attention (see the module docs).
#[derive(Clone, Debug)]
pub struct SelfAttention {
    shape: [usize; 2],
    heads: usize,
    causal: bool,
    bias: bool,
}

impl SelfAttention {
    /// Attention over `[t, e]` sequences with `heads` heads (`e` divisible by `heads`; checked by
    /// the model builder).
    pub fn new(t: usize, e: usize, heads: usize, causal: bool, bias: bool) -> Self {
        SelfAttention {
            shape: [t, e],
            heads,
            causal,
            bias,
        }
    }
    fn te(&self) -> (usize, usize, usize) {
        let [t, e] = self.shape;
        (t, e, e / self.heads)
    }
    /// Offsets of `in_proj_bias`, `out_proj.weight`, `out_proj.bias`.
    fn offs(&self) -> (usize, usize, usize) {
        let (_, e, _) = self.te();
        let bi = 3 * e * e;
        let wo = bi + if self.bias { 3 * e } else { 0 };
        (bi, wo, wo + e * e)
    }
    /// Saved values of a chunk, block-major: `[QKV (b·T·3E) | A (b·H·T·T) | O (b·T·E)]`.
    fn saved_split(&self, b: usize) -> (usize, usize, usize) {
        let (t, e, _) = self.te();
        (b * t * 3 * e, b * self.heads * t * t, b * t * e)
    }

    /// Softmax attention of one sample: `A` (`H × T × T`) and `O` (`T × E`) from `QKV` (`T × 3E`).
    fn core<N: Num>(&self, qkv: &[N], a: &mut [N], o: &mut [N]) {
        let (t, e, d) = self.te();
        let scale = 1.0 / (d as f64).sqrt();
        let zero = N::cst(0.0);
        for h in 0..self.heads {
            let ah = &mut a[h * t * t..(h + 1) * t * t];
            for r in 0..t {
                let q = &qkv[r * 3 * e + h * d..r * 3 * e + (h + 1) * d];
                let last = if self.causal { r + 1 } else { t };
                let mut m = f64::NEG_INFINITY;
                for c in 0..last {
                    let k = &qkv[c * 3 * e + e + h * d..c * 3 * e + e + (h + 1) * d];
                    let mut s = zero;
                    for (qv, kv) in q.iter().zip(k) {
                        s += *qv * *kv;
                    }
                    let s = s.scale(scale);
                    m = m.max(s.val());
                    ah[r * t + c] = s;
                }
                let mut z = zero;
                for c in 0..t {
                    if c < last {
                        let ex = (ah[r * t + c] - N::cst(m)).exp();
                        ah[r * t + c] = ex;
                        z += ex;
                    } else {
                        ah[r * t + c] = zero;
                    }
                }
                let zi = z.recip();
                for c in 0..last {
                    ah[r * t + c] = ah[r * t + c] * zi;
                }
            }
            for r in 0..t {
                for j in 0..d {
                    let mut s = zero;
                    for c in 0..t {
                        s += ah[r * t + c] * qkv[c * 3 * e + 2 * e + h * d + j];
                    }
                    o[r * e + h * d + j] = s;
                }
            }
        }
    }

    /// Backward through the softmax attention of one sample: `dQKV` (`T × 3E`, overwritten) from
    /// `dO` (`T × E`). `ds` is a `T × T` scratch.
    fn core_back<N: Num>(&self, qkv: &[N], a: &[N], d_o: &[N], dqkv: &mut [N], ds: &mut [N]) {
        let (t, e, d) = self.te();
        let scale = 1.0 / (d as f64).sqrt();
        let zero = N::cst(0.0);
        dqkv.iter_mut().for_each(|v| *v = zero);
        for h in 0..self.heads {
            let ah = &a[h * t * t..(h + 1) * t * t];
            // dA = dO_h V_hᵀ, then dS = A ⊙ (dA − rowsum(dA ⊙ A)).
            for r in 0..t {
                let mut dot = zero;
                for c in 0..t {
                    let mut s = zero;
                    for j in 0..d {
                        s += d_o[r * e + h * d + j] * qkv[c * 3 * e + 2 * e + h * d + j];
                    }
                    ds[r * t + c] = s;
                    dot += s * ah[r * t + c];
                }
                for c in 0..t {
                    ds[r * t + c] = ah[r * t + c] * (ds[r * t + c] - dot);
                }
            }
            for r in 0..t {
                for c in 0..t {
                    let (arc, dsrc) = (ah[r * t + c], ds[r * t + c].scale(scale));
                    for j in 0..d {
                        // dV_h[c] += A[r, c] dO_h[r]; dQ_h[r] += dS[r, c] K_h[c] /√d; dK_h[c] += dS[r, c] Q_h[r] /√d.
                        dqkv[c * 3 * e + 2 * e + h * d + j] += arc * d_o[r * e + h * d + j];
                        dqkv[r * 3 * e + h * d + j] += dsrc * qkv[c * 3 * e + e + h * d + j];
                        dqkv[c * 3 * e + e + h * d + j] += dsrc * qkv[r * 3 * e + h * d + j];
                    }
                }
            }
        }
    }

    /// `y = x wᵀ (+ bias)` on `rows` rows, in any scalar type (plain loops).
    fn proj<N: Num>(y: &mut [N], x: &[N], w: &[N], bias: Option<&[N]>, rows: usize, out: usize, inp: usize) {
        for r in 0..rows {
            for o in 0..out {
                let mut s = bias.map_or(N::cst(0.0), |b| b[o]);
                for k in 0..inp {
                    s += x[r * inp + k] * w[o * inp + k];
                }
                y[r * out + o] = s;
            }
        }
    }

    /// The whole forward pass in any scalar type (plain loops): `qkv`, `a`, `o`, `y` of `b` samples.
    #[allow(clippy::too_many_arguments)]
    fn forward_num<N: Num>(&self, p: &[N], x: &[N], qkv: &mut [N], a: &mut [N], o: &mut [N], y: &mut [N], b: usize) {
        let (t, e, _) = self.te();
        let (bi, wo, bo) = self.offs();
        let bias_in = self.bias.then(|| &p[bi..bi + 3 * e]);
        let bias_out = self.bias.then(|| &p[bo..bo + e]);
        Self::proj(qkv, x, &p[..3 * e * e], bias_in, b * t, 3 * e, e);
        let hs = self.heads * t * t;
        for i in 0..b {
            self.core(
                &qkv[i * t * 3 * e..(i + 1) * t * 3 * e],
                &mut a[i * hs..(i + 1) * hs],
                &mut o[i * t * e..(i + 1) * t * e],
            );
        }
        Self::proj(y, o, &p[wo..wo + e * e], bias_out, b * t, e, e);
    }

    /// The whole backward pass in any scalar type (plain loops); `grad` overwritten with
    /// `alpha Σ g`. Scratch: `d_o` (`b·T·E`), `dqkv` (`b·T·3E`), `ds` (`T·T`).
    #[allow(clippy::too_many_arguments)]
    fn backward_num<N: Num>(
        &self,
        p: &[N],
        x: &[N],
        (qkv, a, o): (&[N], &[N], &[N]),
        dy: &[N],
        dx: Option<&mut [N]>,
        grad: Option<&mut [N]>,
        alpha: f64,
        b: usize,
        (d_o, dqkv, ds): (&mut [N], &mut [N], &mut [N]),
    ) {
        let (t, e, _) = self.te();
        let (bi, wo, bo) = self.offs();
        let zero = N::cst(0.0);
        let rows = b * t;
        // dO = dY W_o.
        for r in 0..rows {
            for k in 0..e {
                let mut s = zero;
                for j in 0..e {
                    s += dy[r * e + j] * p[wo + j * e + k];
                }
                d_o[r * e + k] = s;
            }
        }
        let hs = self.heads * t * t;
        for i in 0..b {
            self.core_back(
                &qkv[i * t * 3 * e..(i + 1) * t * 3 * e],
                &a[i * hs..(i + 1) * hs],
                &d_o[i * t * e..(i + 1) * t * e],
                &mut dqkv[i * t * 3 * e..(i + 1) * t * 3 * e],
                ds,
            );
        }
        if let Some(g) = grad {
            g.iter_mut().for_each(|v| *v = zero);
            for r in 0..rows {
                for o3 in 0..3 * e {
                    let dv = dqkv[r * 3 * e + o3];
                    for k in 0..e {
                        g[o3 * e + k] += dv * x[r * e + k];
                    }
                    if self.bias {
                        g[bi + o3] += dv;
                    }
                }
                for j in 0..e {
                    let dv = dy[r * e + j];
                    for k in 0..e {
                        g[wo + j * e + k] += dv * o[r * e + k];
                    }
                    if self.bias {
                        g[bo + j] += dv;
                    }
                }
            }
            g.iter_mut().for_each(|v| *v = v.scale(alpha));
        }
        if let Some(dx) = dx {
            for r in 0..rows {
                for k in 0..e {
                    let mut s = zero;
                    for o3 in 0..3 * e {
                        s += dqkv[r * 3 * e + o3] * p[o3 * e + k];
                    }
                    dx[r * e + k] = s;
                }
            }
        }
    }

    /// Backward of samples `i0..i0 + bs` of a chunk of `b` (block-major saved values) with GEMMs.
    #[allow(clippy::too_many_arguments)]
    fn backward_range(
        &self,
        p: &[f64],
        f: Fwd<'_>,
        dy: &[f64],
        dx: Option<&mut [f64]>,
        grad: Option<&mut [f64]>,
        alpha: f64,
        (b, i0, bs): (usize, usize, usize),
        scratch: &mut [f64],
    ) {
        let (t, e, _) = self.te();
        let (bi, wo, bo) = self.offs();
        let (nq, na, _) = self.saved_split(b);
        let hs = self.heads * t * t;
        let qkv = &f.saved[i0 * t * 3 * e..(i0 + bs) * t * 3 * e];
        let a = &f.saved[nq + i0 * hs..nq + (i0 + bs) * hs];
        let o = &f.saved[nq + na + i0 * t * e..nq + na + (i0 + bs) * t * e];
        let (x, dy) = (&f.x[i0 * t * e..(i0 + bs) * t * e], &dy[i0 * t * e..(i0 + bs) * t * e]);
        let rows = bs * t;
        let (d_o, rest) = scratch.split_at_mut(rows * e);
        let (dqkv, rest) = rest.split_at_mut(rows * 3 * e);
        let ds = &mut rest[..t * t];
        gemm_nn(d_o, dy, &p[wo..wo + e * e], rows, e, e, false);
        for i in 0..bs {
            self.core_back(
                &qkv[i * t * 3 * e..(i + 1) * t * 3 * e],
                &a[i * hs..(i + 1) * hs],
                &d_o[i * t * e..(i + 1) * t * e],
                &mut dqkv[i * t * 3 * e..(i + 1) * t * 3 * e],
                ds,
            );
        }
        if let Some(g) = grad {
            gemm_tn(&mut g[..3 * e * e], dqkv, x, 3 * e, e, rows, alpha, false);
            gemm_tn(&mut g[wo..wo + e * e], dy, o, e, e, rows, alpha, false);
            if self.bias {
                let (gb, go) = (bi..bi + 3 * e, bo..bo + e);
                g[gb.clone()].fill(0.0);
                g[go.clone()].fill(0.0);
                for r in 0..rows {
                    for (a, v) in g[gb.clone()].iter_mut().zip(&dqkv[r * 3 * e..(r + 1) * 3 * e]) {
                        *a += v;
                    }
                    for (a, v) in g[go.clone()].iter_mut().zip(&dy[r * e..(r + 1) * e]) {
                        *a += v;
                    }
                }
                g[gb].iter_mut().for_each(|v| *v *= alpha);
                g[go].iter_mut().for_each(|v| *v *= alpha);
            }
        }
        if let Some(dx) = dx {
            gemm_nn(
                &mut dx[i0 * t * e..(i0 + bs) * t * e],
                dqkv,
                &p[..3 * e * e],
                rows,
                e,
                3 * e,
                false,
            );
        }
    }

    fn back_len(&self, bs: usize) -> usize {
        let (t, e, _) = self.te();
        bs * t * 4 * e + t * t
    }

    fn dual_len(&self, b: usize) -> usize {
        let (t, e, _) = self.te();
        let (nq, na, no) = self.saved_split(b);
        // θ, grad; x, dx, y, dy; qkv, a, o; d_o, dqkv, ds.
        2 * (2 * self.n_params() + 4 * b * t * e + nq + na + no + b * t * e + nq + t * t)
    }

    /// Dual buffers and the dual forward pass at `(p + εv, x + ε rx)`.
    #[allow(clippy::type_complexity)]
    fn dual_forward<'s>(
        &self,
        p: &[f64],
        v: &[f64],
        x: &[f64],
        rx: Option<&[f64]>,
        b: usize,
        scratch: &'s mut [f64],
    ) -> [&'s mut [Dual]; 12] {
        let (t, e, _) = self.te();
        let (nq, na, no) = self.saved_split(b);
        let (np, n) = (self.n_params(), b * t * e);
        let s = as_duals(&mut scratch[..self.dual_len(b)]);
        let (th, s) = s.split_at_mut(np);
        let (gd, s) = s.split_at_mut(np);
        let (xd, s) = s.split_at_mut(n);
        let (dxd, s) = s.split_at_mut(n);
        let (yd, s) = s.split_at_mut(n);
        let (dyd, s) = s.split_at_mut(n);
        let (qkv, s) = s.split_at_mut(nq);
        let (a, s) = s.split_at_mut(na);
        let (o, s) = s.split_at_mut(no);
        let (d_o, s) = s.split_at_mut(n);
        let (dqkv, s) = s.split_at_mut(nq);
        let ds = &mut s[..t * t];
        for ((z, pv), vv) in th.iter_mut().zip(p).zip(v) {
            *z = Dual { v: *pv, d: *vv };
        }
        for (k, z) in xd.iter_mut().enumerate() {
            *z = Dual {
                v: x[k],
                d: rx.map_or(0.0, |r| r[k]),
            };
        }
        self.forward_num(th, xd, qkv, a, o, yd, b);
        [th, gd, xd, dxd, yd, dyd, qkv, a, o, d_o, dqkv, ds]
    }
}

impl Layer for SelfAttention {
    fn kind(&self) -> &'static str {
        "self-attention"
    }
    fn describe(&self) -> String {
        let (t, e, _) = self.te();
        format!(
            "self-attention over [{t}, {e}], {} heads{}{}",
            self.heads,
            if self.causal { ", causal" } else { "" },
            if self.bias { ", bias" } else { "" }
        )
    }
    fn in_shape(&self) -> &[usize] {
        &self.shape
    }
    fn out_shape(&self) -> &[usize] {
        &self.shape
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        let (_, e, _) = self.te();
        let mut v = vec![BlockSpec {
            name: "in_proj_weight".into(),
            shape: vec![3 * e, e],
            init: BlockInit::Weight {
                fan_in: e,
                fan_out: 3 * e,
            },
        }];
        if self.bias {
            v.push(BlockSpec {
                name: "in_proj_bias".into(),
                shape: vec![3 * e],
                init: BlockInit::Zeros,
            });
        }
        v.push(BlockSpec {
            name: "out_proj.weight".into(),
            shape: vec![e, e],
            init: BlockInit::Weight { fan_in: e, fan_out: e },
        });
        if self.bias {
            v.push(BlockSpec {
                name: "out_proj.bias".into(),
                shape: vec![e],
                init: BlockInit::Zeros,
            });
        }
        v
    }
    fn n_params(&self) -> usize {
        let (_, e, _) = self.te();
        4 * e * e + if self.bias { 4 * e } else { 0 }
    }
    /// Block-major within a chunk: `[QKV | A | O]` (the statistics take one sample's rows).
    fn saved_per_sample(&self) -> usize {
        let (nq, na, no) = self.saved_split(1);
        nq + na + no
    }
    fn scratch_len(&self, b: usize) -> usize {
        self.back_len(b)
            .max(self.n_params() + self.back_len(1))
            .max(self.dual_len(b))
    }
    fn units(&self) -> Option<Units> {
        let (t, e, _) = self.te();
        let (_, wo, bo) = self.offs();
        Some(Units {
            noun: "feature",
            params: (0..e)
                .map(|k| {
                    let mut v: Vec<usize> = (wo + k * e..wo + (k + 1) * e).collect();
                    if self.bias {
                        v.push(bo + k);
                    }
                    v
                })
                .collect(),
            positions: (0..e).map(|k| (0..t).map(|p| p * e + k).collect()).collect(),
        })
    }
    fn pass(&self, positions: &[usize]) -> Pass {
        let (t, e, _) = self.te();
        match features_at_every_position(positions, e, t) {
            Some(cols) => Pass::Absorb(cols.iter().flat_map(|&j| (0..3 * e).map(move |r| r * e + j)).collect()),
            None => Pass::Block,
        }
    }
    fn inert_params(&self) -> Vec<usize> {
        let (_, e, _) = self.te();
        let (bi, _, _) = self.offs();
        if self.bias {
            (bi + e..bi + 2 * e).collect()
        } else {
            vec![]
        }
    }
    fn intrinsic_symmetries(&self) -> Vec<Intrinsic> {
        let (_, e, d) = self.te();
        let (bi, wo, _) = self.offs();
        let mut v = vec![];
        for h in 0..self.heads {
            let rows = |base: usize| -> Vec<Vec<usize>> {
                let mut vs: Vec<Vec<usize>> = (0..e)
                    .map(|j| (0..d).map(|m| (base + h * d + m) * e + j).collect())
                    .collect();
                if self.bias {
                    vs.push((0..d).map(|m| bi + base + h * d + m).collect());
                }
                vs
            };
            v.push(Intrinsic::Rotation {
                name: "qk",
                tag: h.to_string(),
                plus: rows(0),
                minus: rows(e),
            });
            v.push(Intrinsic::Rotation {
                name: "vo",
                tag: h.to_string(),
                plus: rows(2 * e),
                minus: (0..e)
                    .map(|r| (0..d).map(|m| wo + r * e + h * d + m).collect())
                    .collect(),
            });
        }
        v
    }

    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        let (t, e, _) = self.te();
        let (bi, wo, bo) = self.offs();
        let (nq, na, _) = self.saved_split(b);
        let (qkv, rest) = saved.split_at_mut(nq);
        let (a, o) = rest.split_at_mut(na);
        let rows = b * t;
        gemm_nt(qkv, x, &p[..3 * e * e], rows, 3 * e, e, false);
        if self.bias {
            for row in qkv[..rows * 3 * e].chunks_exact_mut(3 * e) {
                for (v, c) in row.iter_mut().zip(&p[bi..bi + 3 * e]) {
                    *v += c;
                }
            }
        }
        let hs = self.heads * t * t;
        for i in 0..b {
            self.core(
                &qkv[i * t * 3 * e..(i + 1) * t * 3 * e],
                &mut a[i * hs..(i + 1) * hs],
                &mut o[i * t * e..(i + 1) * t * e],
            );
        }
        gemm_nt(y, o, &p[wo..wo + e * e], rows, e, e, false);
        if self.bias {
            for row in y[..rows * e].chunks_exact_mut(e) {
                for (v, c) in row.iter_mut().zip(&p[bo..bo + e]) {
                    *v += c;
                }
            }
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
        self.backward_range(p, f, dy, dx, grad, alpha, (b, 0, b), scratch);
    }

    fn grad_sq(&self, p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        let (g, rest) = scratch.split_at_mut(self.n_params());
        for i in 0..b {
            self.backward_range(p, f, dy, None, Some(g), 1.0, (b, i, 1), rest);
            for (s, v) in sm.iter_mut().zip(g.iter()) {
                *s += v * v;
            }
        }
    }

    fn grad_quad(&self, p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, d: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        let (g, rest) = scratch.split_at_mut(self.n_params());
        for (i, qi) in q.iter_mut().enumerate().take(b) {
            self.backward_range(p, f, dy, None, Some(g), 1.0, (b, i, 1), rest);
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
        for (r, z) in ry.iter_mut().zip(yd.iter()) {
            *r = z.d;
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
        let [th, gd, xd, dxd, _yd, dyd, qkv, a, o, d_o, dqkv, ds] = self.dual_forward(p, v, r.f.x, r.rx, b, scratch);
        for (k, z) in dyd.iter_mut().enumerate() {
            *z = Dual { v: r.dy[k], d: rdy[k] };
        }
        let want_dx = rdx.is_some();
        self.backward_num(
            th,
            xd,
            (qkv, a, o),
            dyd,
            want_dx.then_some(&mut *dxd),
            Some(&mut *gd),
            alpha,
            b,
            (d_o, dqkv, ds),
        );
        for (h, g) in hv.iter_mut().zip(gd.iter()) {
            *h += g.d;
        }
        if let Some(rdx) = rdx {
            for (o, z) in rdx.iter_mut().zip(dxd.iter()) {
                *o = z.d;
            }
        }
    }
}
