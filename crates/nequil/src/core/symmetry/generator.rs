//! Generators `A` of exponential symmetries, acting on the flat parameter vector θ.
//!
//! A generator is a symmetric `P × P` matrix `A` (book `theory/symmetries.md#exponential-symmetry`, Definition 4.1): the symmetry is
//! `ℓ(θ, z) = ℓ(e^{λA}θ, z)` for all λ, its infinitesimal form is `∇ℓ(θ, z)ᵀ A θ = 0`, and its
//! Noether charge is `C(θ) = θᵀAθ` (no factor ½; `∇C = 2Aθ`). Three storage forms:
//!
//! * [`Generator::Diagonal`]: `A = diag(a)` (rescalings, scale invariance);
//! * [`Generator::BlockSparse`]: a direct sum of small dense symmetric blocks on disjoint index
//!   sets (double rotations: one copy of `B` per column of `W_l`, one of `−B` per row of `W_{l+1}`);
//! * [`Generator::Dense`]: a full symmetric matrix (small models only).
//!
//! The exact action `e^{λA}θ` is element-wise for diagonal generators and goes through the
//! eigendecomposition of each block (or of the whole matrix) otherwise.

use crate::core::linalg::{sym_eigen, Dense};
use crate::core::models::Model;
use crate::{invalid, Result};

/// One symmetric block of a [`BlockSparse`] generator: the matrix `mats[mat]` acts on the entries
/// of θ at `indices` (in that order).
#[derive(Clone, Debug, PartialEq)]
pub struct SymBlock {
    /// Indices into θ, distinct, and disjoint from every other block's.
    pub indices: Vec<usize>,
    /// Which of the generator's matrices acts on these indices.
    pub mat: usize,
}

/// A block-diagonal symmetric generator (after a permutation of θ's coordinates): small dense
/// symmetric matrices acting on disjoint index sets; zero elsewhere. Matrices can be shared by many
/// blocks (a double rotation uses one `B` for every column of `W_l`), and each distinct matrix is
/// eigendecomposed once, at construction.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockSparse {
    dim: usize,
    mats: Vec<Dense>,
    eig: Vec<(Vec<f64>, Dense)>,
    blocks: Vec<SymBlock>,
}

impl BlockSparse {
    /// A block-sparse generator on `ℝ^dim`. Every matrix must be square and symmetric (to 1e-12
    /// relative), every block's index count must match its matrix, and no index may appear twice.
    pub fn new(dim: usize, mats: Vec<Dense>, blocks: Vec<SymBlock>) -> Result<Self> {
        for (m, a) in mats.iter().enumerate() {
            check_symmetric(a, &format!("block matrix {m}"))?;
        }
        let mut seen = vec![false; dim];
        for (b, blk) in blocks.iter().enumerate() {
            let a = mats
                .get(blk.mat)
                .ok_or_else(|| invalid!("block {b}: matrix {} does not exist", blk.mat))?;
            if a.rows != blk.indices.len() {
                return Err(invalid!(
                    "block {b}: {} indices for a {}×{} matrix",
                    blk.indices.len(),
                    a.rows,
                    a.cols
                ));
            }
            for &i in &blk.indices {
                if i >= dim {
                    return Err(invalid!("block {b}: index {i} out of range (P = {dim})"));
                }
                if seen[i] {
                    return Err(invalid!("block {b}: index {i} belongs to two blocks"));
                }
                seen[i] = true;
            }
        }
        let eig = mats.iter().map(sym_eigen).collect::<Result<Vec<_>>>()?;
        Ok(BlockSparse { dim, mats, eig, blocks })
    }
    /// The dimension P of θ.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The distinct block matrices.
    pub fn mats(&self) -> &[Dense] {
        &self.mats
    }
    /// The blocks.
    pub fn blocks(&self) -> &[SymBlock] {
        &self.blocks
    }
}

fn check_symmetric(a: &Dense, what: &str) -> Result<()> {
    if a.rows != a.cols {
        return Err(invalid!("{what}: {}×{} is not square", a.rows, a.cols));
    }
    let scale = a.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 0..a.rows {
        for j in 0..i {
            if (a.at(i, j) - a.at(j, i)).abs() > 1e-12 * scale {
                return Err(invalid!("{what}: not symmetric at ({i}, {j})"));
            }
        }
    }
    if a.data.iter().any(|v| !v.is_finite()) {
        return Err(invalid!("{what}: has non-finite entries"));
    }
    Ok(())
}

/// One eigenpair `(μ, n)` of a generator with `μ ≠ 0`, stored sparsely: `n` is zero outside
/// `indices`, and `values` are its entries there (`‖n‖ = 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct EigenPair {
    /// The eigenvalue μ (non-zero).
    pub mu: f64,
    /// Support of the unit eigenvector.
    pub indices: Vec<usize>,
    /// Entries of the eigenvector on its support.
    pub values: Vec<f64>,
}

impl EigenPair {
    /// The projection `nᵀv`.
    #[inline]
    pub fn project(&self, v: &[f64]) -> f64 {
        self.indices.iter().zip(&self.values).map(|(&i, &e)| e * v[i]).sum()
    }
}

/// The generator `A` of an exponential symmetry, acting on the flat θ (length P).
#[derive(Clone, Debug, PartialEq)]
pub enum Generator {
    /// `A = diag(a)`.
    Diagonal(Vec<f64>),
    /// A direct sum of small symmetric blocks on disjoint index sets.
    BlockSparse(BlockSparse),
    /// A dense symmetric `P × P` matrix.
    Dense(Dense),
}

impl Generator {
    /// A diagonal generator; entries must be finite.
    pub fn diagonal(a: Vec<f64>) -> Result<Self> {
        if a.iter().any(|v| !v.is_finite()) {
            return Err(invalid!("generator: diagonal has non-finite entries"));
        }
        Ok(Generator::Diagonal(a))
    }
    /// A dense generator; must be square and symmetric (to 1e-12 relative).
    pub fn dense(a: Dense) -> Result<Self> {
        check_symmetric(&a, "generator")?;
        Ok(Generator::Dense(a))
    }

    /// The dimension P.
    pub fn dim(&self) -> usize {
        match self {
            Generator::Diagonal(a) => a.len(),
            Generator::BlockSparse(b) => b.dim,
            Generator::Dense(a) => a.rows,
        }
    }

    /// The diagonal, if the generator is stored as diagonal.
    pub fn as_diagonal(&self) -> Option<&[f64]> {
        match self {
            Generator::Diagonal(a) => Some(a),
            _ => None,
        }
    }

    /// `A v`, written into `out` (length P).
    pub fn apply_into(&self, v: &[f64], out: &mut [f64]) {
        assert_eq!(v.len(), self.dim(), "generator: vector has the wrong length");
        match self {
            Generator::Diagonal(a) => {
                for ((o, ai), vi) in out.iter_mut().zip(a).zip(v) {
                    *o = ai * vi;
                }
            }
            Generator::BlockSparse(b) => {
                out.fill(0.0);
                for blk in &b.blocks {
                    let m = &b.mats[blk.mat];
                    for (r, &i) in blk.indices.iter().enumerate() {
                        out[i] = blk.indices.iter().enumerate().map(|(c, &j)| m.at(r, c) * v[j]).sum();
                    }
                }
            }
            Generator::Dense(a) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = a.data[i * a.cols..(i + 1) * a.cols]
                        .iter()
                        .zip(v)
                        .map(|(x, y)| x * y)
                        .sum();
                }
            }
        }
    }

    /// `A v`.
    pub fn apply(&self, v: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        self.apply_into(v, &mut out);
        out
    }

    /// The bilinear form `uᵀ A v`.
    pub fn bilinear(&self, u: &[f64], v: &[f64]) -> f64 {
        match self {
            Generator::Diagonal(a) => a.iter().zip(u).zip(v).map(|((ai, x), y)| ai * x * y).sum(),
            Generator::BlockSparse(b) => b
                .blocks
                .iter()
                .map(|blk| {
                    let m = &b.mats[blk.mat];
                    let mut s = 0.0;
                    for (r, &i) in blk.indices.iter().enumerate() {
                        for (c, &j) in blk.indices.iter().enumerate() {
                            s += u[i] * m.at(r, c) * v[j];
                        }
                    }
                    s
                })
                .sum(),
            Generator::Dense(_) => u.iter().zip(self.apply(v)).map(|(x, y)| x * y).sum(),
        }
    }

    /// The quadratic form `gᵀ A g` (e.g. the per-step charge increment `η² ĝᵀAĝ`).
    pub fn quad(&self, g: &[f64]) -> f64 {
        self.bilinear(g, g)
    }

    /// The Noether charge `C(θ) = θᵀAθ` (book `theory/symmetries.md#noether-charge`; no ½).
    pub fn charge(&self, theta: &[f64]) -> f64 {
        self.quad(theta)
    }

    /// The split `(gᵀA₊g, gᵀA₋g)` into the positive and negative spectral parts of `A`
    /// (`A = A₊ + A₋`, so the two add up to `gᵀAg`; the second is ≤ 0).
    pub fn quad_split(&self, g: &[f64]) -> (f64, f64) {
        match self {
            Generator::Diagonal(a) => {
                let (mut p, mut n) = (0.0, 0.0);
                for (ai, gi) in a.iter().zip(g) {
                    let t = ai * gi * gi;
                    if *ai > 0.0 {
                        p += t
                    } else {
                        n += t
                    }
                }
                (p, n)
            }
            _ => {
                let (mut p, mut n) = (0.0, 0.0);
                for e in self.spectrum() {
                    let t = e.mu * e.project(g).powi(2);
                    if e.mu > 0.0 {
                        p += t
                    } else {
                        n += t
                    }
                }
                (p, n)
            }
        }
    }

    /// The indices of θ on which `A` acts (its non-zero rows).
    pub fn support(&self) -> Vec<usize> {
        match self {
            Generator::Diagonal(a) => (0..a.len()).filter(|&i| a[i] != 0.0).collect(),
            Generator::BlockSparse(b) => {
                let mut s: Vec<usize> = b
                    .blocks
                    .iter()
                    .filter(|blk| b.mats[blk.mat].data.iter().any(|v| *v != 0.0))
                    .flat_map(|blk| blk.indices.iter().copied())
                    .collect();
                s.sort_unstable();
                s
            }
            Generator::Dense(a) => (0..a.rows)
                .filter(|&i| a.data[i * a.cols..(i + 1) * a.cols].iter().any(|v| *v != 0.0))
                .collect(),
        }
    }

    /// The eigenpairs of `A` with non-zero eigenvalue (eigenvalues below `1e-12·max|μ|` of a
    /// computed eigendecomposition count as zero). Diagonal generators give one pair per non-zero
    /// entry, block-sparse ones the pairs of each block (supported on the block), dense ones dense
    /// eigenvectors.
    pub fn spectrum(&self) -> Vec<EigenPair> {
        match self {
            Generator::Diagonal(a) => a
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0.0)
                .map(|(i, &v)| EigenPair {
                    mu: v,
                    indices: vec![i],
                    values: vec![1.0],
                })
                .collect(),
            Generator::BlockSparse(b) => {
                let mut out = vec![];
                for blk in &b.blocks {
                    let (vals, vecs) = &b.eig[blk.mat];
                    push_pairs(vals, vecs, &blk.indices, &mut out);
                }
                out
            }
            Generator::Dense(a) => {
                let (vals, vecs) = sym_eigen(a).expect("generator: eigendecomposition of a checked symmetric matrix");
                let idx: Vec<usize> = (0..a.rows).collect();
                let mut out = vec![];
                push_pairs(&vals, &vecs, &idx, &mut out);
                out
            }
        }
    }

    /// The exact action `e^{λA} θ` (book `theory/symmetries.md#exponential-map`). Element-wise for diagonal generators;
    /// through the eigendecomposition `A = Σ μ n nᵀ` otherwise (`e^{λA}θ = θ + Σ (e^{λμ} − 1)(nᵀθ) n`).
    /// Overflows to ±∞ for large `|λμ|`, as the true action does.
    pub fn exp_apply(&self, lambda: f64, theta: &[f64]) -> Vec<f64> {
        assert_eq!(theta.len(), self.dim(), "generator: θ has the wrong length");
        match self {
            Generator::Diagonal(a) => a
                .iter()
                .zip(theta)
                .map(|(ai, t)| if *ai == 0.0 { *t } else { (lambda * ai).exp() * t })
                .collect(),
            _ => {
                let mut out = theta.to_vec();
                for e in self.spectrum() {
                    let f = (lambda * e.mu).exp_m1() * e.project(theta);
                    for (&i, &v) in e.indices.iter().zip(&e.values) {
                        out[i] += f * v;
                    }
                }
                out
            }
        }
    }

    /// The dense `P × P` matrix (for tests and small models).
    pub fn to_dense(&self) -> Dense {
        let n = self.dim();
        match self {
            Generator::Diagonal(a) => Dense::diag(a),
            Generator::Dense(a) => a.clone(),
            Generator::BlockSparse(b) => {
                let mut d = Dense::zeros(n, n);
                for blk in &b.blocks {
                    let m = &b.mats[blk.mat];
                    for (r, &i) in blk.indices.iter().enumerate() {
                        for (c, &j) in blk.indices.iter().enumerate() {
                            *d.at_mut(i, j) = m.at(r, c);
                        }
                    }
                }
                d
            }
        }
    }
}

fn push_pairs(vals: &[f64], vecs: &Dense, indices: &[usize], out: &mut Vec<EigenPair>) {
    let scale = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, &mu) in vals.iter().enumerate() {
        if mu.abs() <= 1e-12 * scale || mu == 0.0 {
            continue;
        }
        let values: Vec<f64> = (0..vecs.rows).map(|r| vecs.at(r, k)).collect();
        out.push(EigenPair {
            mu,
            indices: indices.to_vec(),
            values,
        });
    }
}

/// The outcome of checking a generator against a model on data ([`verify`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Verification {
    /// `max_i |θᵀA∇ℓ_i| / (‖Aθ‖ ‖∇ℓ_i‖)`: the cosine between `Aθ` and each per-sample gradient
    /// (0 for an exact symmetry). Samples with `∇ℓ_i = 0` are skipped.
    pub max_orthogonality: f64,
    /// `max_{λ, i} |ℓ_i(e^{λA}θ) − ℓ_i(θ)|` over the λ grid and the samples.
    pub max_loss_change: f64,
    /// The same, relative: `max |Δℓ_i| / max(|ℓ_i(θ)|, 1e-300)` taken over samples and λ.
    pub max_rel_loss_change: f64,
    /// The λ values tried.
    pub lambdas: Vec<f64>,
    /// The tolerance the verdict used.
    pub tol: f64,
    /// Whether both the orthogonality and the relative loss change are below `tol`.
    pub holds: bool,
}

/// Checks numerically that `A` generates a symmetry of `model`'s per-sample loss on the `n`
/// samples `(x, y)`: every per-sample gradient is orthogonal to `Aθ`, and every per-sample loss is
/// unchanged along the orbit `e^{λA}θ` for each λ in `lambdas`. The verdict uses `tol` (e.g. 1e-8)
/// on the cosine and on the relative loss change.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    model: &Model,
    theta: &[f64],
    gen: &Generator,
    x: &[f64],
    y: &[f64],
    n: usize,
    lambdas: &[f64],
    tol: f64,
) -> Result<Verification> {
    let p = model.n_params();
    if gen.dim() != p || theta.len() != p {
        return Err(invalid!(
            "verify: generator has dimension {}, θ has {}, the model has {p} parameters",
            gen.dim(),
            theta.len()
        ));
    }
    let (dx, dy) = (model.d_in(), model.d_y());
    if x.len() < n * dx || y.len() < n * dy {
        return Err(invalid!(
            "verify: {n} samples need {} inputs and {} targets",
            n * dx,
            n * dy
        ));
    }
    let at = gen.apply(theta);
    let at_norm = at.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut ws = model.workspace(1);
    let mut g = vec![0.0; p];
    let mut orth = 0.0f64;
    let mut l0 = vec![0.0; n];
    for i in 0..n {
        let (xi, yi) = (&x[i * dx..(i + 1) * dx], &y[i * dy..(i + 1) * dy]);
        l0[i] = model.loss_grad(theta, xi, yi, 1, &mut g, &mut ws);
        let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        if gn > 0.0 && at_norm > 0.0 {
            let d: f64 = at.iter().zip(&g).map(|(a, b)| a * b).sum();
            let c = d.abs() / (at_norm * gn);
            orth = if c.is_nan() { f64::INFINITY } else { orth.max(c) };
        } else if gn.is_nan() {
            orth = f64::INFINITY;
        }
    }
    let (mut dl, mut rl) = (0.0f64, 0.0f64);
    for &lam in lambdas {
        let t = gen.exp_apply(lam, theta);
        for i in 0..n {
            let li = model.loss(&t, &x[i * dx..(i + 1) * dx], &y[i * dy..(i + 1) * dy], 1, &mut ws);
            let d = (li - l0[i]).abs();
            let d = if d.is_nan() { f64::INFINITY } else { d };
            dl = dl.max(d);
            rl = rl.max(d / l0[i].abs().max(1e-300));
        }
    }
    let holds = orth <= tol && rl <= tol;
    Ok(Verification {
        max_orthogonality: orth,
        max_loss_change: dl,
        max_rel_loss_change: rl,
        lambdas: lambdas.to_vec(),
        tol,
        holds,
    })
}
