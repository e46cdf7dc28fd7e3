//! Exact Hessian-vector products of the mean loss on a set of samples, by Pearlmutter's
//! R-operator through the stack of layers.
//!
//! For the loss `L(θ) = (1/n) Σ_i ℓ_i` (`ℓ_i = ‖f(x_i) − y_i‖²`, or cross-entropy: the model's
//! [`crate::core::loss::Loss`]) and a direction `v`, the forward pass gives every
//! layer's input, output and saved values, the backward pass its output gradient `δ` (starting from
//! `δ_out = ∂ℓ/∂f`, `2(f − y)` for the mean-squared error). The R-forward pass then propagates
//! `R{y} = d/dε y(θ + εv)` layer by layer ([`Layer::rforward`]), the loss gives
//! `R{δ_out} = H_out R{f}` (`2 R{f}`; for cross-entropy `(diag(p) − ppᵀ) R{f}/T` per position with
//! `p = softmax(f)`), and the R-backward pass propagates
//! `R{δ}` down while each layer adds its block of `Hv = (1/n) Σ_i R{g_i}` ([`Layer::rbackward`]).
//! A chunk of samples is processed at a time (row-major `chunk × width` blocks, GEMMs in the
//! dense layers).
//!
//! The forward quantities (every layer's output, saved values and `δ`) depend only on θ and the
//! samples; when they fit in [`HvpOptions::cache_bytes`] they are computed once when the operator
//! is built and reused by every product (a Lanczos run then costs about 2.5 forward-backward
//! passes per product instead of 3.5).

use super::HessianOp;
use crate::core::footprint::{Footprint, BOOKKEEPING, F64};
use crate::core::layers::{Fwd, RFwd};
use crate::core::loss::{cross_entropy_hess_row, Loss};
use crate::core::models::{Model, Workspace};
use crate::{invalid, Result};
use std::ops::Range;

/// Tuning of the Hessian-vector products (none of it changes the result beyond rounding).
#[derive(Clone, Debug, PartialEq)]
pub struct HvpOptions {
    /// Samples per chunk (the GEMM block height). Default 256.
    pub chunk: usize,
    /// Worker threads (chunks are split evenly and the partial sums added in thread order, so
    /// results are reproducible for a fixed thread count). Default 1.
    pub threads: usize,
    /// Cache the forward pass (every layer's output, saved values and `δ` for every sample) when
    /// it needs at most this many bytes. Default 256 MiB. Set to 0 to recompute it for every
    /// product.
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

/// Per-thread buffers of the R-operator.
#[derive(Clone, Debug)]
struct Lane {
    /// Forward/backward buffers for one chunk (used when the forward pass is not cached).
    fwd: Workspace,
    /// `R{y}` and `R{δ}` of every layer, each `chunk × out_dim`.
    ry: Vec<Vec<f64>>,
    rd: Vec<Vec<f64>>,
    /// Partial `Hv` of this thread (length P).
    acc: Vec<f64>,
}

/// Forward quantities of every sample, row-major `n × width` per layer.
#[derive(Clone, Debug, Default)]
struct Cache {
    n: usize,
    out: Vec<Vec<f64>>,
    saved: Vec<Vec<f64>>,
    delta: Vec<Vec<f64>>,
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
}

impl HvpWorkspace {
    /// Buffers for products of `model` with the given options (`chunk` and `threads` are
    /// clamped to at least 1).
    pub fn new(model: &Model, opts: HvpOptions) -> Self {
        let mut opts = opts;
        opts.chunk = opts.chunk.max(1);
        opts.threads = opts.threads.max(1);
        let p = model.n_params();
        let c = opts.chunk;
        let mk = || {
            model
                .nodes()
                .iter()
                .map(|n| vec![0.0; c * n.layer().out_dim()])
                .collect::<Vec<_>>()
        };
        let lanes = (0..opts.threads)
            .map(|_| Lane {
                fwd: model.workspace(c),
                ry: mk(),
                rd: mk(),
                acc: vec![0.0; p],
            })
            .collect();
        HvpWorkspace {
            opts,
            fingerprint: model.describe(),
            n_params: p,
            lanes,
            cache: Cache::default(),
        }
    }

    /// What a workspace for `model` with `opts` and an [`EmpiricalHessian`] over `n` samples
    /// allocate: per thread ([`HvpOptions::threads`]) a model workspace for chunks of
    /// [`HvpOptions::chunk`] ([`Model::footprint`]), `R{y}` and `R{δ}` of every layer
    /// (`2 · chunk · Σ_l out_dim_l` values) and an accumulator of `P` values; and the cache of
    /// the forward pass, `n · Σ_l (2 out_dim_l + saved_l)` values, when it fits in
    /// [`HvpOptions::cache_bytes`]; and [`BOOKKEEPING`] bytes.
    pub fn footprint(model: &Model, opts: &HvpOptions, n: usize) -> Footprint {
        let (c, threads) = (opts.chunk.max(1) as u128, opts.threads.max(1) as u128);
        let outs: u128 = model.nodes().iter().map(|nd| nd.layer().out_dim() as u128).sum();
        let per_sample: u128 = model
            .nodes()
            .iter()
            .map(|nd| 2 * nd.layer().out_dim() as u128 + nd.layer().saved_per_sample() as u128)
            .sum();
        let mut f = Footprint::new();
        for part in model.footprint(opts.chunk.max(1)).parts() {
            f.add(format!("{} (per thread)", part.0), part.1, threads);
        }
        f.add(
            format!("R-operator buffers and accumulators ({threads} threads, chunks of {c})"),
            threads.saturating_mul(2 * c * outs + model.n_params() as u128),
            F64,
        );
        f.add("the operator's bookkeeping (names, thread ranges)", BOOKKEEPING, 1);
        let cache = (n as u128).saturating_mul(per_sample).saturating_mul(F64);
        if cache <= opts.cache_bytes as u128 {
            f.add(format!("the cached forward pass over {n} samples"), cache, 1);
        }
        f
    }

    /// The options the workspace was built with.
    pub fn options(&self) -> &HvpOptions {
        &self.opts
    }

    pub(crate) fn matches(&self, model: &Model) -> bool {
        self.n_params == model.n_params() && self.fingerprint == model.describe()
    }
}

/// The exact Hessian `H = ∇²L(θ)` of the mean loss `L(θ) = (1/n) Σ_i ℓ_i` (the model's loss:
/// `‖f(x_i) − y_i‖²` with no ½, or cross-entropy; no weight decay) over `n` given samples, as an
/// operator `v ↦ Hv`.
///
/// Building it validates the shapes and, if it fits, caches the forward pass at θ; each
/// [`HessianOp::apply`] then costs about 2.5 forward-backward passes over the samples and
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
    /// (`n × d_y`, [`Model::d_y`]) at θ. Errors if a shape does not match, `n = 0`, or `ws` was built for a
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
        if x.len() < n * model.d_in() || y.len() < n * model.d_y() {
            return Err(invalid!(
                "hessian: {} samples need {}×{} inputs and {}×{} targets, got {} and {} values",
                n,
                n,
                model.d_in(),
                n,
                model.d_y(),
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
        let per_sample: usize = model
            .nodes()
            .iter()
            .map(|nd| 2 * nd.layer().out_dim() + nd.layer().saved_per_sample())
            .sum();
        let bytes = n.saturating_mul(per_sample).saturating_mul(8);
        if bytes <= op.ws.opts.cache_bytes {
            op.fill_cache();
            op.cached = true;
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

    fn fill_cache(&mut self) {
        let (n, m) = (self.n, self.model);
        let nodes = m.nodes();
        let cache = &mut self.ws.cache;
        let grow = |v: &mut Vec<Vec<f64>>, width: &dyn Fn(usize) -> usize| {
            v.resize_with(nodes.len(), Vec::new);
            for (k, buf) in v.iter_mut().enumerate() {
                buf.resize(n * width(k), 0.0);
            }
        };
        grow(&mut cache.out, &|k| nodes[k].layer().out_dim());
        grow(&mut cache.delta, &|k| nodes[k].layer().out_dim());
        grow(&mut cache.saved, &|k| nodes[k].layer().saved_per_sample());
        cache.n = n;
        let ranges = std::mem::take(&mut self.ranges);
        let (theta, x, y) = (self.theta, self.x, self.y);
        let chunk = self.ws.opts.chunk;
        let (dx, dy) = (m.d_in(), m.d_y());
        // Split every cached layer into the threads' row ranges.
        let widths: [Vec<usize>; 3] = [
            nodes.iter().map(|nd| nd.layer().out_dim()).collect(),
            nodes.iter().map(|nd| nd.layer().saved_per_sample()).collect(),
            nodes.iter().map(|nd| nd.layer().out_dim()).collect(),
        ];
        let mut parts: Vec<[Vec<&mut [f64]>; 3]> = ranges.iter().map(|_| [vec![], vec![], vec![]]).collect();
        for (kind, bufs) in [&mut cache.out, &mut cache.saved, &mut cache.delta]
            .into_iter()
            .enumerate()
        {
            for (k, buf) in bufs.iter_mut().enumerate() {
                let mut rest: &mut [f64] = &mut buf[..];
                for (t, r) in ranges.iter().enumerate() {
                    let (head, tail) = rest.split_at_mut(r.len() * widths[kind][k]);
                    parts[t][kind].push(head);
                    rest = tail;
                }
            }
        }
        let work = |lane: &mut Lane, r: Range<usize>, part: [Vec<&mut [f64]>; 3]| {
            let [mut co, mut cs, mut cd] = part;
            let mut i = r.start;
            while i < r.end {
                let b = chunk.min(r.end - i);
                let xc = &x[i * dx..(i + b) * dx];
                let yc = &y[i * dy..(i + b) * dy];
                m.forward_residual(theta, xc, yc, b, &mut lane.fwd);
                m.backward(theta, xc, b, None, &mut lane.fwd);
                let off = i - r.start;
                for k in 0..nodes.len() {
                    let (wo, ws) = (widths[0][k], widths[1][k]);
                    co[k][off * wo..(off + b) * wo].copy_from_slice(&lane.fwd.out[k][..b * wo]);
                    cd[k][off * wo..(off + b) * wo].copy_from_slice(&lane.fwd.delta[k][..b * wo]);
                    // Saved values are copied as the layer's whole `b × saved` block: layers
                    // may lay them out block-major within a chunk, so chunks must be cut the same
                    // way in the products below (they are: same chunk size, same ranges).
                    cs[k][off * ws..(off + b) * ws].copy_from_slice(&lane.fwd.saved[k][..b * ws]);
                }
                i += b;
            }
        };
        run_lanes(&mut self.ws.lanes, &ranges, parts, work);
        self.ranges = ranges;
    }
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

/// Read access to the forward quantities of one chunk of `b` samples.
trait FwdView {
    fn out(&self, k: usize) -> &[f64];
    fn saved(&self, k: usize) -> &[f64];
    fn delta(&self, k: usize) -> &[f64];
}

struct CacheView<'c> {
    cache: &'c Cache,
    model: &'c Model,
    rows: Range<usize>,
}

impl FwdView for CacheView<'_> {
    fn out(&self, k: usize) -> &[f64] {
        let w = self.model.nodes()[k].layer().out_dim();
        &self.cache.out[k][self.rows.start * w..self.rows.end * w]
    }
    fn saved(&self, k: usize) -> &[f64] {
        let w = self.model.nodes()[k].layer().saved_per_sample();
        &self.cache.saved[k][self.rows.start * w..self.rows.end * w]
    }
    fn delta(&self, k: usize) -> &[f64] {
        let w = self.model.nodes()[k].layer().out_dim();
        &self.cache.delta[k][self.rows.start * w..self.rows.end * w]
    }
}

impl FwdView for Workspace {
    fn out(&self, k: usize) -> &[f64] {
        &self.out[k]
    }
    fn saved(&self, k: usize) -> &[f64] {
        &self.saved[k]
    }
    fn delta(&self, k: usize) -> &[f64] {
        &self.delta[k]
    }
}

/// R-operator on one chunk of `b` samples: adds `inv_n · Σ_i (H_i v)` to `acc`.
#[allow(clippy::too_many_arguments)]
fn rop_chunk<F: FwdView + ?Sized>(
    m: &Model,
    theta: &[f64],
    v: &[f64],
    x: &[f64],
    b: usize,
    f: &F,
    ry: &mut [Vec<f64>],
    rd: &mut [Vec<f64>],
    scratch: &mut [f64],
    acc: &mut [f64],
    inv_n: f64,
) {
    let nodes = m.nodes();
    let last = nodes.len() - 1;
    let fwd = |k: usize| Fwd {
        x: if k == 0 { x } else { f.out(k - 1) },
        y: f.out(k),
        saved: f.saved(k),
    };
    // R-forward.
    for (k, nd) in nodes.iter().enumerate() {
        let (lo, hi) = ry.split_at_mut(k);
        let rx = if k == 0 { None } else { Some(&lo[k - 1][..]) };
        let r = nd.range();
        nd.layer()
            .rforward(&theta[r.clone()], &v[r], fwd(k), rx, &mut hi[0], b, scratch);
    }
    // The loss: R{δ_out} = H_out R{f}, with the output Hessian `2I` of the mean-squared error
    // and `(diag(p_t) − p_t p_tᵀ)/T` per position of cross-entropy (the labels drop out).
    {
        let dout = m.d_out();
        match m.loss_kind() {
            Loss::Mse => {
                for (d, r) in rd[last][..b * dout].iter_mut().zip(&ry[last][..b * dout]) {
                    *d = 2.0 * r;
                }
            }
            Loss::CrossEntropy => {
                let k = m.classes();
                let scale = 1.0 / m.d_y() as f64;
                let logits = f.out(last);
                for ((o, r), z) in rd[last][..b * dout]
                    .chunks_exact_mut(k)
                    .zip(ry[last][..b * dout].chunks_exact(k))
                    .zip(logits[..b * dout].chunks_exact(k))
                {
                    cross_entropy_hess_row(z, r, o, scale);
                }
            }
        }
    }
    // R-backward.
    for k in (0..nodes.len()).rev() {
        let nd = &nodes[k];
        let (lo, hi) = rd.split_at_mut(k);
        let rdx = if k == 0 { None } else { Some(&mut lo[k - 1][..]) };
        if rdx.is_none() && nd.range().is_empty() {
            continue;
        }
        let r = nd.range();
        let rf = RFwd {
            f: fwd(k),
            dy: f.delta(k),
            dx: if k == 0 { None } else { Some(f.delta(k - 1)) },
            rx: if k == 0 { None } else { Some(&ry[k - 1][..]) },
            ry: &ry[k],
        };
        nd.layer().rbackward(
            &theta[r.clone()],
            &v[r.clone()],
            rf,
            &hi[0],
            rdx,
            &mut acc[r],
            inv_n,
            b,
            scratch,
        );
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
        let inv_n = 1.0 / self.n as f64;
        let (m, theta, x, y) = (self.model, self.theta, self.x, self.y);
        let chunk = self.ws.opts.chunk;
        let ranges = &self.ranges;
        let cached = self.cached;
        let cache = &self.ws.cache;
        let (dx, dy) = (m.d_in(), m.d_y());
        let work = |lane: &mut Lane, r: Range<usize>, _: ()| {
            lane.acc.fill(0.0);
            let mut i = r.start;
            while i < r.end {
                let b = chunk.min(r.end - i);
                let xc = &x[i * dx..(i + b) * dx];
                let Lane { fwd, ry, rd, acc } = lane;
                if cached {
                    let view = CacheView {
                        cache,
                        model: m,
                        rows: i..i + b,
                    };
                    let mut scratch = std::mem::take(&mut fwd.scratch);
                    rop_chunk(m, theta, v, xc, b, &view, ry, rd, &mut scratch, acc, inv_n);
                    fwd.scratch = scratch;
                } else {
                    m.forward_residual(theta, xc, &y[i * dy..(i + b) * dy], b, fwd);
                    m.backward(theta, xc, b, None, fwd);
                    let mut scratch = std::mem::take(&mut fwd.scratch);
                    rop_chunk(m, theta, v, xc, b, &*fwd, ry, rd, &mut scratch, acc, inv_n);
                    fwd.scratch = scratch;
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
