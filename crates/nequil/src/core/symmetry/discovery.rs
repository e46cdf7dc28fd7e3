//! Discovery of diagonal symmetries from data.
//!
//! A diagonal generator `A = diag(a)` is an exponential symmetry iff `θᵀA∇ℓ(θ, z) =
//! Σ_p a_p θ_p ∂_pℓ(θ, z) = 0` for every θ and every sample z. Stacking the rows `(θ ⊙ ∇ℓ_i)ᵀ` over
//! random θ (drawn until the rank saturates) and the given samples gives a matrix `M` whose null space is (an estimate of)
//! the space of diagonal symmetries. It is computed by an SVD of the row-normalised `M`; the
//! singular values and the gap between the smallest retained one and the largest null one are
//! reported, so a person can judge the verdict. The null space is then split into independent
//! groups by support (connected components of the non-zero pattern of its projector `NNᵀ`), and
//! each group gets a sparse basis: the reduced row echelon form (each vector is 1 on a pivot
//! coordinate where the others vanish, pivots taken first on coordinates that only one generator
//! touches), then support reduction: `v_i ← v_i − c v_j` while that shrinks `v_i`'s support, and
//! (for groups of dimension ≤ 200) `v_i ← v_i − Σ_j c_j v_j` with `c` an ℓ₁ regression of `v_i` on
//! the others (iteratively reweighted least squares, then an exact solve on the zero set found).
//! Each replacement keeps a basis. This recovers the neuron rescalings even where no coordinate
//! is exclusive to a neuron (the middle layer of a net with three hidden layers and no biases). Each vector is scaled to max-abs 1 with its first entry positive,
//! so a neuron rescaling comes out as exactly `+1` on its incoming weights (and bias) and `−1` on
//! its outgoing weights. Neurons of one hidden layer have disjoint supports (one group each);
//! neurons of adjacent hidden layers share the weights between them, so a deeper net gives one
//! group holding one sparse vector per neuron.
//!
//! Only *diagonal* generators are found. A deep linear net also has the non-diagonal double
//! rotations; their diagonal members (`B` diagonal) are sums of neuron rescalings, and so is each
//! layer-pair rescaling, so the diagonal space is exactly spanned by one rescaling per hidden neuron.

use crate::core::linalg::{svd, sym_eigen, Dense};
use crate::core::models::{Init, Model};
use crate::core::rng::Rng;
use crate::core::stats::per_sample_grads;
use crate::{invalid, Result};
use serde::Serialize;

/// Options for [`discover_diagonal`].
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoverOptions {
    /// Draw at least this many random parameter vectors θ.
    pub min_theta: usize,
    /// Draw at most this many.
    pub max_theta: usize,
    /// Stop once the rank of `M` has not grown for this many consecutive draws (each draw adds
    /// at most as many independent rows as the per-sample gradients span at one θ: only
    /// `d_in·d_out` for a linear net, whose gradients are linear in `r xᵀ`).
    pub patience: usize,
    /// A singular value `s_j ≤ tol · s_max` counts as zero.
    pub tol: f64,
    /// Each θ is a Xavier draw plus `perturb · N(0, 1)` on every entry (biases included), so that
    /// zero biases do not create accidental structure.
    pub perturb: f64,
    /// Entries of the null-space projector below this count as zero when grouping by support.
    pub group_tol: f64,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            min_theta: 2,
            max_theta: 200,
            patience: 2,
            tol: 1e-8,
            perturb: 0.1,
            group_tol: 1e-7,
        }
    }
}

/// A group of discovered generators sharing a support.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiscoveredGroup {
    /// The indices of θ the group acts on.
    pub support: Vec<usize>,
    /// A sparse basis of the group's generators, each a full-length diagonal (length P), scaled
    /// to max-abs 1 with its first non-zero entry positive.
    pub diagonals: Vec<Vec<f64>>,
}

/// The result of [`discover_diagonal`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Discovery {
    /// Number of rows of `M` (non-zero per-sample rows over all θ).
    pub rows: usize,
    /// Number of parameter vectors θ drawn.
    pub n_theta: usize,
    /// Singular values of the row-normalised `M`, divided by the largest, non-increasing.
    pub singular_values: Vec<f64>,
    /// Dimension of the null space (number of independent diagonal symmetries found).
    pub null_dim: usize,
    /// `(smallest retained singular value) / (largest null one)`; `None` if either set is empty.
    pub gap: Option<f64>,
    /// The tolerance used.
    pub tol: f64,
    /// The null space, grouped by support.
    pub groups: Vec<DiscoveredGroup>,
}

impl Discovery {
    /// All discovered generators, as full-length diagonals.
    pub fn diagonals(&self) -> Vec<Vec<f64>> {
        self.groups.iter().flat_map(|g| g.diagonals.iter().cloned()).collect()
    }
}

/// Finds the diagonal exponential symmetries of `model` numerically, from the `n` samples
/// `(x, y)` and random parameter vectors drawn from `rng` until the rank of `M` saturates (see
/// [`DiscoverOptions`] and the module docs).
pub fn discover_diagonal(
    model: &Model,
    x: &[f64],
    y: &[f64],
    n: usize,
    opts: &DiscoverOptions,
    rng: &mut Rng,
) -> Result<Discovery> {
    let p = model.n_params();
    let (dx, dy) = (model.d_in(), model.d_y());
    if x.len() < n * dx || y.len() < n * dy {
        return Err(invalid!(
            "discover: {n} samples need {} inputs and {} targets",
            n * dx,
            n * dy
        ));
    }
    if x[..n * dx].iter().chain(&y[..n * dy]).any(|v| !v.is_finite()) {
        return Err(invalid!("discover: data contain non-finite values"));
    }
    if n == 0 || opts.min_theta == 0 || opts.max_theta < opts.min_theta {
        return Err(invalid!("discover: need samples and 1 ≤ min_theta ≤ max_theta"));
    }
    // `acc` holds a compressed copy of M (diag(s)·Vᵀ from its SVD, same MᵀM) plus new rows.
    let mut acc: Vec<f64> = vec![];
    let mut total_rows = 0;
    let (mut rank, mut still, mut draws) = (usize::MAX, 0, 0);
    let mut last: Option<(Vec<f64>, Dense)> = None;
    while draws < opts.max_theta {
        draws += 1;
        let mut theta = model.init(&Init::Xavier, rng)?;
        for v in theta.iter_mut() {
            *v += opts.perturb * rng.normal();
        }
        let g = per_sample_grads(model, &theta, x, y, n);
        for i in 0..n {
            let gi = &g.data[i * p..(i + 1) * p];
            let row: Vec<f64> = gi.iter().zip(&theta).map(|(a, b)| a * b).collect();
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 && norm.is_finite() {
                acc.extend(row.iter().map(|v| v / norm));
                total_rows += 1;
            }
        }
        let mut m = acc.len() / p;
        if m == 0 {
            continue;
        }
        if m < p {
            acc.resize(p * p, 0.0);
            m = p;
        }
        let (_, s, r) = svd(&Dense::from_slice(m, p, &acc))?;
        let smax = s.first().copied().unwrap_or(0.0);
        let new_rank = s.iter().filter(|v| **v > opts.tol * smax).count();
        // Compress: keep diag(s) Rᵀ (p × p).
        acc = vec![0.0; p * p];
        for j in 0..s.len() {
            for c in 0..p {
                acc[j * p + c] = s[j] * r.at(c, j);
            }
        }
        still = if new_rank == rank { still + 1 } else { 0 };
        rank = new_rank;
        last = Some((s, r));
        if draws >= opts.min_theta && still >= opts.patience {
            break;
        }
    }
    let (s, r) = last.ok_or_else(|| invalid!("discover: all per-sample rows vanish"))?;
    let smax = s.first().copied().unwrap_or(0.0);
    if smax.is_nan() || smax <= 0.0 {
        return Err(invalid!("discover: all per-sample rows vanish"));
    }
    let rel: Vec<f64> = s.iter().map(|v| v / smax).collect();
    let null: Vec<usize> = (0..rel.len()).filter(|&j| rel[j] <= opts.tol).collect();
    let kept_min = rel
        .iter()
        .copied()
        .filter(|v| *v > opts.tol)
        .fold(f64::INFINITY, f64::min);
    let null_max = null.iter().map(|&j| rel[j]).fold(f64::NEG_INFINITY, f64::max);
    let gap = if null.is_empty() || !kept_min.is_finite() {
        None
    } else if null_max > 0.0 {
        Some(kept_min / null_max)
    } else {
        Some(f64::INFINITY)
    };
    let groups = group_null_space(&r, &null, p, opts.group_tol)?;
    Ok(Discovery {
        rows: total_rows,
        n_theta: draws,
        singular_values: rel,
        null_dim: null.len(),
        gap,
        tol: opts.tol,
        groups,
    })
}

/// Splits the span of the columns `cols` of `r` (P × k) into groups by support.
fn group_null_space(r: &Dense, cols: &[usize], p: usize, tol: f64) -> Result<Vec<DiscoveredGroup>> {
    if cols.is_empty() {
        return Ok(vec![]);
    }
    // Projector Π = N Nᵀ.
    let mut nmat = Dense::zeros(p, cols.len());
    for i in 0..p {
        for (c, &j) in cols.iter().enumerate() {
            *nmat.at_mut(i, c) = r.at(i, j);
        }
    }
    let pi = nmat.mul(&nmat.t());
    // Union-find over indices with a non-negligible diagonal.
    let active: Vec<bool> = (0..p).map(|i| pi.at(i, i) > tol).collect();
    let mut parent: Vec<usize> = (0..p).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..p {
        if !active[i] {
            continue;
        }
        for j in i + 1..p {
            if active[j] && pi.at(i, j).abs() > tol {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut comps: Vec<Vec<usize>> = vec![];
    let mut root_of = vec![usize::MAX; p];
    for i in 0..p {
        if !active[i] {
            continue;
        }
        let rt = find(&mut parent, i);
        if root_of[rt] == usize::MAX {
            root_of[rt] = comps.len();
            comps.push(vec![]);
        }
        comps[root_of[rt]].push(i);
    }
    let mut out = vec![];
    for support in comps {
        let k = support.len();
        let mut sub = Dense::zeros(k, k);
        for (a, &i) in support.iter().enumerate() {
            for (b, &j) in support.iter().enumerate() {
                *sub.at_mut(a, b) = pi.at(i, j);
            }
        }
        let dim = (sub.trace().round().max(1.0) as usize).min(k);
        let (_, vecs) = sym_eigen(&sub)?;
        // Rows: an orthonormal basis of the group's subspace, on the support coordinates.
        let mut rows: Vec<Vec<f64>> = (0..dim)
            .map(|c| (0..k).map(|a| vecs.at(a, k - 1 - c)).collect())
            .collect();
        let order = pivot_order(&rows);
        rref(&mut rows, &order);
        sparsify(&mut rows);
        if rows.len() > 1 && rows.len() <= L1_MAX_DIM {
            l1_sparsify(&mut rows);
        }
        let diagonals = rows
            .into_iter()
            .map(|mut v| {
                let mx = v.iter().fold(0.0f64, |m, e| m.max(e.abs()));
                let first = v.iter().copied().find(|e| e.abs() > ZERO * mx).unwrap_or(1.0);
                let s = first.signum() / mx;
                v.iter_mut()
                    .for_each(|e| *e = if e.abs() <= ZERO * mx { 0.0 } else { *e * s });
                let mut full = vec![0.0; p];
                for (a, &i) in support.iter().enumerate() {
                    full[i] = v[a];
                }
                full
            })
            .collect();
        out.push(DiscoveredGroup { support, diagonals });
    }
    Ok(out)
}

/// Entries below `ZERO × max|v|` count as zero in supports.
const ZERO: f64 = 1e-8;

fn support_size(v: &[f64]) -> usize {
    let mx = v.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    v.iter().filter(|e| e.abs() > ZERO * mx).count()
}

/// Coordinates ordered by the size of their parallel class (coordinates whose values are
/// proportional across the whole subspace), largest first, then by index. A coordinate that only
/// one basis generator touches (a neuron's incoming weights, its bias) has a large class; one
/// shared by two generators (a weight between two hidden layers) is alone in its class. Pivoting
/// on the former first makes the fundamental circuits the generators themselves.
fn pivot_order(rows: &[Vec<f64>]) -> Vec<usize> {
    let n = rows.first().map_or(0, |r| r.len());
    let unit: Vec<Option<Vec<f64>>> = (0..n)
        .map(|c| {
            let col: Vec<f64> = rows.iter().map(|r| r[c]).collect();
            let nrm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            if nrm <= 1e-9 {
                return None;
            }
            let first = col.iter().copied().find(|v| v.abs() > 1e-6 * nrm).unwrap_or(1.0);
            let s = first.signum() / nrm;
            Some(col.iter().map(|v| v * s).collect())
        })
        .collect();
    let mut class = vec![0usize; n];
    for a in 0..n {
        if let Some(ua) = &unit[a] {
            class[a] = (0..n)
                .filter(|&b| {
                    unit[b]
                        .as_ref()
                        .is_some_and(|ub| ua.iter().zip(ub).all(|(x, y)| (x - y).abs() < 1e-7))
                })
                .count();
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| class[b].cmp(&class[a]).then(a.cmp(&b)));
    order
}

/// Reduced row echelon form with partial pivoting, columns visited in `order`: each row gets a
/// pivot coordinate where it is 1 and every other row is 0 (a fundamental circuit of the span).
fn rref(rows: &mut [Vec<f64>], order: &[usize]) {
    let k = rows.len();
    let mut r = 0;
    for &col in order {
        if r == k {
            break;
        }
        let (piv, mag) = (r..k)
            .map(|i| (i, rows[i][col].abs()))
            .fold((r, -1.0), |b, c| if c.1 > b.1 { c } else { b });
        if mag <= 1e-6 {
            continue;
        }
        rows.swap(r, piv);
        let pv = rows[r][col];
        rows[r].iter_mut().for_each(|e| *e /= pv);
        let pr = rows[r].clone();
        for (i, row) in rows.iter_mut().enumerate() {
            if i != r && row[col] != 0.0 {
                let f = row[col];
                row.iter_mut().zip(&pr).for_each(|(e, p)| *e -= f * p);
                row[col] = 0.0;
            }
        }
        r += 1;
    }
}

/// Greedy support reduction: replace `v_i` by `v_i − c v_j` whenever that has a strictly smaller
/// support (with `c` cancelling one shared coordinate), until no replacement helps.
fn sparsify(rows: &mut [Vec<f64>]) {
    let k = rows.len();
    for _ in 0..4 * k + 4 {
        let mut changed = false;
        for i in 0..k {
            for j in 0..k {
                if i == j {
                    continue;
                }
                let base = support_size(&rows[i]);
                let mx = rows[j].iter().fold(0.0f64, |m, e| m.max(e.abs()));
                let mut ratios: Vec<f64> = vec![];
                for (a, b) in rows[i].iter().zip(&rows[j]) {
                    if b.abs() > ZERO * mx && a.abs() > 0.0 {
                        let c = a / b;
                        if !ratios.iter().any(|r| (r - c).abs() <= 1e-9 * c.abs()) {
                            ratios.push(c);
                        }
                    }
                }
                let mut best: Option<(usize, Vec<f64>)> = None;
                for c in ratios {
                    let cand: Vec<f64> = rows[i].iter().zip(&rows[j]).map(|(a, b)| a - c * b).collect();
                    let sz = support_size(&cand);
                    if sz > 0 && sz < best.as_ref().map_or(base, |b| b.0) {
                        best = Some((sz, cand));
                    }
                }
                if let Some((_, cand)) = best {
                    rows[i] = cand;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
}

/// Groups above this dimension skip the ℓ₁ step (its cost grows as `dim³ · support`).
const L1_MAX_DIM: usize = 200;

/// Solves the symmetric positive (semi-)definite system `a c = b` with a tiny ridge.
fn solve_spd(mut a: Dense, b: &[f64]) -> Option<Vec<f64>> {
    let n = a.rows;
    let ridge = 1e-13 * (a.trace() / n.max(1) as f64).max(f64::MIN_POSITIVE);
    for i in 0..n {
        *a.at_mut(i, i) += ridge;
    }
    let l = crate::core::linalg::cholesky(&a).ok()?;
    let mut z = b.to_vec();
    for i in 0..n {
        let mut s = z[i];
        for k in 0..i {
            s -= l.at(i, k) * z[k];
        }
        z[i] = s / l.at(i, i);
    }
    for i in (0..n).rev() {
        let mut s = z[i];
        for k in i + 1..n {
            s -= l.at(k, i) * z[k];
        }
        z[i] = s / l.at(i, i);
    }
    Some(z)
}

/// Weighted least squares: `c = argmin Σ_p w_p (v_p − Σ_j c_j o_j[p])²`, and the residual.
fn weighted_fit(v: &[f64], others: &[&Vec<f64>], w: &[f64]) -> Option<Vec<f64>> {
    let k = others.len();
    let mut a = Dense::zeros(k, k);
    let mut b = vec![0.0; k];
    for p in 0..v.len() {
        if w[p] == 0.0 {
            continue;
        }
        for i in 0..k {
            let oi = others[i][p] * w[p];
            if oi == 0.0 {
                continue;
            }
            b[i] += oi * v[p];
            for j in 0..k {
                *a.at_mut(i, j) += oi * others[j][p];
            }
        }
    }
    let c = solve_spd(a, &b)?;
    Some(
        v.iter()
            .enumerate()
            .map(|(p, vp)| vp - c.iter().zip(others).map(|(cj, o)| cj * o[p]).sum::<f64>())
            .collect(),
    )
}

/// ℓ₁ support reduction (see the module docs).
fn l1_sparsify(rows: &mut [Vec<f64>]) {
    let k = rows.len();
    for _ in 0..k + 2 {
        let mut changed = false;
        for i in 0..k {
            let v = rows[i].clone();
            let others: Vec<&Vec<f64>> = rows
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, r)| r)
                .collect();
            let scale = v.iter().fold(0.0f64, |m, e| m.max(e.abs()));
            let mut w = vec![1.0; v.len()];
            let mut r = v.clone();
            for it in 0..80 {
                let delta = scale * (0.5f64).powi(it).max(1e-10);
                for (wp, rp) in w.iter_mut().zip(&r) {
                    *wp = 1.0 / rp.abs().max(delta);
                }
                match weighted_fit(&v, &others, &w) {
                    Some(nr) => r = nr,
                    None => break,
                }
            }
            // Polish: exact zeros on the zero set the ℓ₁ fit found.
            let rmax = r.iter().fold(0.0f64, |m, e| m.max(e.abs()));
            let zw: Vec<f64> = r
                .iter()
                .map(|e| if e.abs() <= 1e-6 * rmax { 1.0 } else { 0.0 })
                .collect();
            if let Some(pr) = weighted_fit(&v, &others, &zw) {
                if support_size(&pr) < support_size(&v) {
                    rows[i] = pr;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
}
