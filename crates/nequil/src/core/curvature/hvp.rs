//! Exact Hessian-vector products of the mean loss on a set of samples.
//!
//! * [`Mlp`]: Pearlmutter's R-operator. With `a_0 = x`, `z_{l+1} = W_l a_l + b_l`,
//!   `a_{l+1} = φ(z_{l+1})` (hidden) and `f = z_D`, and per-sample output gradients
//!   `δ_D = 2(f − y)`, `δ_l = φ'(z_l) ⊙ W_lᵀ δ_{l+1}`, the directional derivatives along `v = (V_l, c_l)`
//!   are, per sample,
//!   `Rz_{l+1} = V_l a_l + W_l Ra_l + c_l`, `Ra_l = φ'(z_l) ⊙ Rz_l`, `Rδ_D = 2 Rf`,
//!   `Rδ_l = φ'(z_l) ⊙ (W_lᵀ Rδ_{l+1} + V_lᵀ δ_{l+1}) + φ''(z_l) ⊙ Rz_l ⊙ W_lᵀ δ_{l+1}`,
//!   and `(Hv)_{W_l} = (1/n) Σ_i (Rδ_{l+1} a_lᵀ + δ_{l+1} Ra_lᵀ)`, `(Hv)_{b_l} = (1/n) Σ_i Rδ_{l+1}`.
//!   A chunk of samples is processed with GEMMs (row-major `chunk × width` blocks). `φ''` is 0 for
//!   identity, ReLU and leaky ReLU (the Hessian where it exists; kinks have measure zero),
//!   `−2 tanh z (1 − tanh² z)` for tanh and `s(1 − s)(2 + z(1 − 2s))`, `s = sigmoid z`, for swish.
//! * [`ScaleNet`]: the gradient of Net-A / Net-B re-implemented generically and evaluated on dual
//!   numbers at `θ + εv`; its ε-part is `Hv`, exactly.
//!
//! The forward quantities `z`, `a`, `δ` depend only on θ and the samples; when they fit in
//! [`HvpOptions::cache_bytes`] they are computed once when the operator is built and reused by
//! every product (a Lanczos run then costs about 2.5 forward-backward passes per product instead of
//! 3.5).

use super::dual::{scale_grad, Dual, ScaleScratch};
use super::HessianOp;
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};
use crate::core::models::{Activation, Mlp, Model, ScaleNet, Workspace};
use crate::{invalid, Result};
use std::ops::Range;

/// Tuning of the Hessian-vector products (none of it changes the result beyond rounding).
#[derive(Clone, Debug, PartialEq)]
pub struct HvpOptions {
    /// Samples per chunk (the GEMM block height). Default 256.
    pub chunk: usize,
    /// Worker threads for MLP products (chunks are split evenly and the partial sums added in
    /// thread order, so results are reproducible for a fixed thread count). Default 1. Net-A and
    /// Net-B products always run on one thread.
    pub threads: usize,
    /// Cache the forward pass (`z`, `a`, `δ` of every sample) when it needs at most this many
    /// bytes. Default 256 MiB. Set to 0 to recompute it for every product.
    pub cache_bytes: usize,
}

impl Default for HvpOptions {
    fn default() -> Self {
        HvpOptions {
            chunk: 256,
            threads: 1,
            cache_bytes: 256 << 20,
        }
    }
}

/// Per-thread buffers of the MLP R-operator.
#[derive(Clone, Debug)]
struct Lane {
    /// Forward/backward buffers for one chunk (used when the forward pass is not cached).
    fwd: Workspace,
    /// `Rz_l`, `Ra_l`, `Rδ_l` of layers `1..=D`, each `chunk × width`.
    rz: Vec<Vec<f64>>,
    ra: Vec<Vec<f64>>,
    rd: Vec<Vec<f64>>,
    /// `chunk × max width` scratch (swish only).
    tmp: Vec<f64>,
    /// Partial `Hv` of this thread (length P).
    acc: Vec<f64>,
}

/// Forward quantities of every sample, row-major `n × width` per layer.
#[derive(Clone, Debug, Default)]
struct Cache {
    n: usize,
    z: Vec<Vec<f64>>,
    a: Vec<Vec<f64>>,
    d: Vec<Vec<f64>>,
}

/// Preallocated buffers for Hessian-vector products of one model. Create once (per model shape)
/// and reuse across operators and probes; products themselves never allocate.
#[derive(Clone, Debug)]
pub struct HvpWorkspace {
    opts: HvpOptions,
    fingerprint: String,
    n_params: usize,
    lanes: Vec<Lane>,
    cache: Cache,
    /// Dual-number buffers for Net-A / Net-B.
    dual_theta: Vec<Dual>,
    dual_grad: Vec<Dual>,
    dual_scratch: ScaleScratch<Dual>,
}

impl HvpWorkspace {
    /// Buffers for products of `model` with the given options (`chunk` and `threads` are
    /// clamped to at least 1).
    pub fn new(model: &Model, opts: HvpOptions) -> Self {
        let mut opts = opts;
        opts.chunk = opts.chunk.max(1);
        opts.threads = opts.threads.max(1);
        let p = model.n_params();
        let w = model.widths();
        let maxw = *w.iter().max().expect("widths");
        let (lanes, dual_theta, dual_grad, dual_scratch) = match model {
            Model::Mlp(_) => {
                let c = opts.chunk;
                let mk = || w[1..].iter().map(|&wi| vec![0.0; c * wi]).collect::<Vec<_>>();
                let lanes = (0..opts.threads)
                    .map(|_| Lane {
                        fwd: model.workspace(c),
                        rz: mk(),
                        ra: mk(),
                        rd: mk(),
                        tmp: vec![0.0; c * maxw],
                        acc: vec![0.0; p],
                    })
                    .collect();
                (lanes, vec![], vec![], ScaleScratch::default())
            }
            Model::Scale(_) => (
                vec![],
                vec![Dual::default(); p],
                vec![Dual::default(); p],
                ScaleScratch::new(w[1], w[2]),
            ),
        };
        HvpWorkspace {
            opts,
            fingerprint: model.describe(),
            n_params: p,
            lanes,
            cache: Cache::default(),
            dual_theta,
            dual_grad,
            dual_scratch,
        }
    }

    /// The options the workspace was built with.
    pub fn options(&self) -> &HvpOptions {
        &self.opts
    }

    pub(crate) fn matches(&self, model: &Model) -> bool {
        self.n_params == model.n_params() && self.fingerprint == model.describe()
    }
}

/// The exact Hessian `H = ∇²L(θ)` of the mean loss `L(θ) = (1/n) Σ_i ‖f(x_i) − y_i‖²` (no ½, no
/// weight decay) over `n` given samples, as an operator `v ↦ Hv`.
///
/// Building it validates the shapes and, if it fits, caches the forward pass at θ; each
/// [`HessianOp::apply`] then costs about 2.5 forward-backward passes over the samples (MLP) and
/// allocates nothing.
pub struct EmpiricalHessian<'a> {
    model: &'a Model,
    theta: &'a [f64],
    x: &'a [f64],
    y: &'a [f64],
    n: usize,
    ws: &'a mut HvpWorkspace,
    cached: bool,
    /// Sample ranges of the worker threads.
    ranges: Vec<Range<usize>>,
}

impl<'a> EmpiricalHessian<'a> {
    /// The Hessian of the mean loss over the `n` samples `x` (`n × d_in`, row-major) and `y`
    /// (`n × d_out`) at θ. Errors if a shape does not match, `n = 0`, or `ws` was built for a
    /// different model.
    pub fn new(
        model: &'a Model,
        theta: &'a [f64],
        x: &'a [f64],
        y: &'a [f64],
        n: usize,
        ws: &'a mut HvpWorkspace,
    ) -> Result<Self> {
        let p = model.n_params();
        if theta.len() != p {
            return Err(invalid!(
                "hessian: θ has {} entries, the model has {p} parameters",
                theta.len()
            ));
        }
        if n == 0 {
            return Err(invalid!("hessian: need at least one sample"));
        }
        if x.len() < n * model.d_in() || y.len() < n * model.d_out() {
            return Err(invalid!(
                "hessian: {n} samples need {}×{} inputs and {}×{} targets, got {} and {} values",
                n,
                model.d_in(),
                n,
                model.d_out(),
                x.len(),
                y.len()
            ));
        }
        if !ws.matches(model) {
            return Err(invalid!(
                "hessian: the workspace was built for `{}`, not `{}`",
                ws.fingerprint,
                model.describe()
            ));
        }
        let ranges = thread_ranges(n, ws.opts.chunk, ws.lanes.len().max(1));
        let mut op = EmpiricalHessian {
            model,
            theta,
            x,
            y,
            n,
            ws,
            cached: false,
            ranges,
        };
        if let Model::Mlp(m) = model {
            let w = m.widths();
            let d = m.depth();
            let hidden: usize = w[1..d].iter().sum();
            let bytes = n
                .saturating_mul(2 * hidden + w[1..].iter().sum::<usize>())
                .saturating_mul(8);
            if bytes <= op.ws.opts.cache_bytes {
                op.fill_cache(m);
                op.cached = true;
            }
        }
        Ok(op)
    }

    /// Number of samples n.
    pub fn n_samples(&self) -> usize {
        self.n
    }

    /// Whether the forward pass at θ is cached (see [`HvpOptions::cache_bytes`]).
    pub fn is_cached(&self) -> bool {
        self.cached
    }

    fn fill_cache(&mut self, m: &Mlp) {
        let (n, d) = (self.n, m.depth());
        let w = m.widths().to_vec();
        let cache = &mut self.ws.cache;
        let grow = |v: &mut Vec<Vec<f64>>, layers: usize| {
            v.resize_with(layers, Vec::new);
            for (l, buf) in v.iter_mut().enumerate() {
                buf.resize(n * w[l + 1], 0.0);
            }
        };
        grow(&mut cache.z, d - 1);
        grow(&mut cache.a, d - 1);
        grow(&mut cache.d, d);
        cache.n = n;
        let ranges = std::mem::take(&mut self.ranges);
        let (theta, x, y) = (self.theta, self.x, self.y);
        let chunk = self.ws.opts.chunk;
        // Split every cached layer into the threads' row ranges.
        let mut parts: Vec<[Vec<&mut [f64]>; 3]> = ranges.iter().map(|_| [vec![], vec![], vec![]]).collect();
        for (k, bufs) in [&mut cache.z, &mut cache.a, &mut cache.d].into_iter().enumerate() {
            for (l, buf) in bufs.iter_mut().enumerate() {
                let mut rest: &mut [f64] = &mut buf[..];
                for (t, r) in ranges.iter().enumerate() {
                    let (head, tail) = rest.split_at_mut(r.len() * w[l + 1]);
                    parts[t][k].push(head);
                    rest = tail;
                }
            }
        }
        let work = |lane: &mut Lane, r: Range<usize>, part: [Vec<&mut [f64]>; 3]| {
            let [mut cz, mut ca, mut cd] = part;
            let mut i = r.start;
            while i < r.end {
                let b = chunk.min(r.end - i);
                let xc = &x[i * w[0]..(i + b) * w[0]];
                let yc = &y[i * w[d]..(i + b) * w[d]];
                forward_backward(m, theta, xc, yc, b, &mut lane.fwd);
                let off = i - r.start;
                for l in 0..d {
                    let wl = w[l + 1];
                    let dst = off * wl..(off + b) * wl;
                    if l + 1 < d {
                        // Identity layers leave z unwritten (a = z) and nothing reads it for them.
                        if m.activation() != Activation::Identity {
                            cz[l][dst.clone()].copy_from_slice(&lane.fwd.z[l][..b * wl]);
                        }
                        ca[l][dst.clone()].copy_from_slice(&lane.fwd.a[l][..b * wl]);
                    }
                    cd[l][dst].copy_from_slice(&lane.fwd.delta[l][..b * wl]);
                }
                i += b;
            }
        };
        run_lanes(&mut self.ws.lanes, &ranges, parts, work);
        self.ranges = ranges;
    }
}

/// Forward pass, `δ_D = 2(f − y)` and the backward pass for δ (no gradient), into `ws`.
fn forward_backward(m: &Mlp, theta: &[f64], x: &[f64], y: &[f64], b: usize, ws: &mut Workspace) {
    m.forward(theta, x, b, ws);
    let d = m.depth();
    let dout = m.widths()[d];
    {
        let (f, delta) = (&ws.a[d - 1], &mut ws.delta[d - 1]);
        for ((dv, fv), yv) in delta[..b * dout].iter_mut().zip(&f[..b * dout]).zip(&y[..b * dout]) {
            *dv = 2.0 * (fv - yv);
        }
    }
    m.backward(theta, x, b, None, ws);
}

/// Sample ranges of the threads: whole chunks, split as evenly as possible.
fn thread_ranges(n: usize, chunk: usize, threads: usize) -> Vec<Range<usize>> {
    let nc = n.div_ceil(chunk);
    (0..threads)
        .map(|t| {
            let (c0, c1) = (t * nc / threads, (t + 1) * nc / threads);
            (c0 * chunk).min(n)..(c1 * chunk).min(n)
        })
        .collect()
}

/// Runs `work` on every lane with its range and payload, on scoped threads when there are several.
fn run_lanes<P: Send>(
    lanes: &mut [Lane],
    ranges: &[Range<usize>],
    payloads: impl IntoIterator<Item = P>,
    work: impl Fn(&mut Lane, Range<usize>, P) + Sync,
) {
    let mut payloads = payloads.into_iter();
    if lanes.len() == 1 {
        let p = payloads.next().expect("one payload per lane");
        work(&mut lanes[0], ranges[0].clone(), p);
        return;
    }
    let work = &work;
    std::thread::scope(|s| {
        for ((lane, r), p) in lanes.iter_mut().zip(ranges).zip(payloads) {
            if !r.is_empty() {
                let r = r.clone();
                s.spawn(move || work(lane, r, p));
            }
        }
    });
}

/// Read access to the forward quantities of one chunk.
trait Fwd {
    /// Pre-activations of hidden layer `l` (`0 ≤ l < D − 1`).
    fn z(&self, l: usize) -> &[f64];
    /// Activations of hidden layer `l`.
    fn a(&self, l: usize) -> &[f64];
    /// Per-sample `δ` of layer `l` (`0 ≤ l < D`).
    fn d(&self, l: usize) -> &[f64];
}

struct CacheView<'c> {
    cache: &'c Cache,
    widths: &'c [usize],
    rows: Range<usize>,
}

impl Fwd for CacheView<'_> {
    fn z(&self, l: usize) -> &[f64] {
        let w = self.widths[l + 1];
        &self.cache.z[l][self.rows.start * w..self.rows.end * w]
    }
    fn a(&self, l: usize) -> &[f64] {
        let w = self.widths[l + 1];
        &self.cache.a[l][self.rows.start * w..self.rows.end * w]
    }
    fn d(&self, l: usize) -> &[f64] {
        let w = self.widths[l + 1];
        &self.cache.d[l][self.rows.start * w..self.rows.end * w]
    }
}

impl Fwd for Workspace {
    fn z(&self, l: usize) -> &[f64] {
        &self.z[l]
    }
    fn a(&self, l: usize) -> &[f64] {
        &self.a[l]
    }
    fn d(&self, l: usize) -> &[f64] {
        &self.delta[l]
    }
}

/// `φ''(z)` given `z` and `a = φ(z)`.
#[inline]
fn second_deriv(act: Activation, z: f64, a: f64) -> f64 {
    match act {
        Activation::Tanh => -2.0 * a * (1.0 - a * a),
        Activation::Swish => {
            let s = 1.0 / (1.0 + (-z).exp());
            s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
        }
        Activation::Identity | Activation::Relu | Activation::LeakyRelu(_) => 0.0,
    }
}

/// R-operator on one chunk of `b` samples: adds `inv_n · Σ_i (H_i v)` to `acc`.
#[allow(clippy::too_many_arguments)]
fn rop_chunk<F: Fwd + ?Sized>(
    m: &Mlp,
    theta: &[f64],
    v: &[f64],
    x: &[f64],
    b: usize,
    f: &F,
    lane_rz: &mut [Vec<f64>],
    lane_ra: &mut [Vec<f64>],
    lane_rd: &mut [Vec<f64>],
    tmp: &mut [f64],
    acc: &mut [f64],
    inv_n: f64,
) {
    let w = m.widths();
    let d = m.depth();
    let act = m.activation();
    // R-forward.
    for l in 0..d {
        let (din, dout) = (w[l], w[l + 1]);
        let wo = m.weight_offset(l);
        let vw = &v[wo..wo + din * dout];
        let ww = &theta[wo..wo + din * dout];
        let rz = &mut lane_rz[l];
        if l == 0 {
            gemm_nt(rz, x, vw, b, dout, din, false);
        } else {
            gemm_nt(rz, f.a(l - 1), vw, b, dout, din, false);
            gemm_nt(rz, &lane_ra[l - 1], ww, b, dout, din, true);
        }
        if let Some(bo) = m.bias_offset(l) {
            let vb = &v[bo..bo + dout];
            for row in rz[..b * dout].chunks_exact_mut(dout) {
                for (r, c) in row.iter_mut().zip(vb) {
                    *r += c;
                }
            }
        }
        if l + 1 < d {
            let ra = &mut lane_ra[l];
            if act == Activation::Identity {
                ra[..b * dout].copy_from_slice(&rz[..b * dout]);
            } else {
                let (z, a) = (f.z(l), f.a(l));
                for k in 0..b * dout {
                    ra[k] = act.deriv(z[k], a[k]) * rz[k];
                }
            }
        }
    }
    // R-backward.
    {
        let dout = w[d];
        let (rd, rz) = (&mut lane_rd[d - 1], &lane_rz[d - 1]);
        for k in 0..b * dout {
            rd[k] = 2.0 * rz[k];
        }
    }
    for l in (0..d).rev() {
        let (din, dout) = (w[l], w[l + 1]);
        let wo = m.weight_offset(l);
        let (lo, hi) = lane_rd.split_at_mut(l);
        let rd = &hi[0];
        let gw = &mut acc[wo..wo + din * dout];
        if l == 0 {
            gemm_tn(gw, rd, x, dout, din, b, inv_n, true);
        } else {
            gemm_tn(gw, rd, f.a(l - 1), dout, din, b, inv_n, true);
            gemm_tn(gw, f.d(l), &lane_ra[l - 1], dout, din, b, inv_n, true);
        }
        if let Some(bo) = m.bias_offset(l) {
            let gb = &mut acc[bo..bo + dout];
            for row in rd[..b * dout].chunks_exact(dout) {
                for (g, r) in gb.iter_mut().zip(row) {
                    *g += inv_n * r;
                }
            }
        }
        if l == 0 {
            break;
        }
        let ww = &theta[wo..wo + din * dout];
        let vw = &v[wo..wo + din * dout];
        let rdp = &mut lo[l - 1];
        // t = Rδ_{l+1} W_l + δ_{l+1} V_l (rows are samples).
        gemm_nn(rdp, rd, ww, b, din, dout, false);
        gemm_nn(rdp, f.d(l), vw, b, din, dout, true);
        let (z, a, rz) = (f.z(l - 1), f.a(l - 1), &lane_rz[l - 1]);
        match act {
            Activation::Identity => {}
            Activation::Relu | Activation::LeakyRelu(_) => {
                for k in 0..b * din {
                    rdp[k] *= act.deriv(z[k], a[k]);
                }
            }
            Activation::Tanh => {
                // φ''(z) W_lᵀδ_{l+1} = −2a (1 − a²) W_lᵀδ_{l+1} = −2a δ_l.
                let dl = f.d(l - 1);
                for k in 0..b * din {
                    rdp[k] = (1.0 - a[k] * a[k]) * rdp[k] - 2.0 * a[k] * rz[k] * dl[k];
                }
            }
            Activation::Swish => {
                gemm_nn(tmp, f.d(l), ww, b, din, dout, false);
                for k in 0..b * din {
                    rdp[k] = act.deriv(z[k], a[k]) * rdp[k] + second_deriv(act, z[k], a[k]) * rz[k] * tmp[k];
                }
            }
        }
    }
}

impl HessianOp for EmpiricalHessian<'_> {
    fn dim(&self) -> usize {
        self.ws.n_params
    }

    fn apply(&mut self, v: &[f64], out: &mut [f64]) {
        let p = self.ws.n_params;
        assert!(
            v.len() == p && out.len() == p,
            "hessian: vectors must have length P = {p}"
        );
        let n = self.n;
        let inv_n = 1.0 / n as f64;
        match self.model {
            Model::Mlp(m) => {
                let (theta, x, y) = (self.theta, self.x, self.y);
                let chunk = self.ws.opts.chunk;
                let ranges = &self.ranges;
                let cached = self.cached;
                let cache = &self.ws.cache;
                let w = m.widths();
                let (dx, dy) = (w[0], w[m.depth()]);
                let work = |lane: &mut Lane, r: Range<usize>, _: ()| {
                    lane.acc.fill(0.0);
                    let mut i = r.start;
                    while i < r.end {
                        let b = chunk.min(r.end - i);
                        let xc = &x[i * dx..(i + b) * dx];
                        let Lane {
                            fwd,
                            rz,
                            ra,
                            rd,
                            tmp,
                            acc,
                        } = lane;
                        if cached {
                            let view = CacheView {
                                cache,
                                widths: w,
                                rows: i..i + b,
                            };
                            rop_chunk(m, theta, v, xc, b, &view, rz, ra, rd, tmp, acc, inv_n);
                        } else {
                            forward_backward(m, theta, xc, &y[i * dy..(i + b) * dy], b, fwd);
                            rop_chunk(m, theta, v, xc, b, &*fwd, rz, ra, rd, tmp, acc, inv_n);
                        }
                        i += b;
                    }
                };
                run_lanes(&mut self.ws.lanes, ranges, std::iter::repeat(()), work);
                out.fill(0.0);
                for (lane, r) in self.ws.lanes.iter().zip(ranges) {
                    if !r.is_empty() {
                        for (o, a) in out.iter_mut().zip(&lane.acc) {
                            *o += a;
                        }
                    }
                }
            }
            Model::Scale(s) => {
                let ws = &mut *self.ws;
                for ((t, th), vi) in ws.dual_theta.iter_mut().zip(self.theta).zip(v) {
                    *t = Dual { v: *th, d: *vi };
                }
                scale_net_grad(
                    s,
                    &ws.dual_theta,
                    self.x,
                    self.y,
                    n,
                    &mut ws.dual_grad,
                    &mut ws.dual_scratch,
                );
                for (o, g) in out.iter_mut().zip(&ws.dual_grad) {
                    *o = g.d;
                }
            }
        }
    }
}

fn scale_net_grad(
    s: &ScaleNet,
    theta: &[Dual],
    x: &[f64],
    y: &[f64],
    n: usize,
    g: &mut [Dual],
    sc: &mut ScaleScratch<Dual>,
) {
    scale_grad(s.kind(), s.widths(), theta, x, y, n, g, sc);
}

/// One exact Hessian-vector product `Hv` of the mean loss over `n` samples, written into `out`
/// (a convenience that allocates a fresh [`HvpWorkspace`]; reuse an [`EmpiricalHessian`] for
/// repeated products).
pub fn hvp(model: &Model, theta: &[f64], x: &[f64], y: &[f64], n: usize, v: &[f64], out: &mut [f64]) -> Result<()> {
    let p = model.n_params();
    if v.len() != p || out.len() != p {
        return Err(invalid!(
            "hvp: v and out must have length P = {p}, got {} and {}",
            v.len(),
            out.len()
        ));
    }
    let mut ws = HvpWorkspace::new(
        model,
        HvpOptions {
            cache_bytes: 0,
            ..HvpOptions::default()
        },
    );
    let mut op = EmpiricalHessian::new(model, theta, x, y, n, &mut ws)?;
    op.apply(v, out);
    Ok(())
}
