//! Dense linear algebra on row-major `f64` slices.
//!
//! Hot loops call the three product shapes below with preallocated outputs. Small products run in
//! plain loops (at the sizes of the paper's toy problems the call overhead of a tuned GEMM
//! dominates); larger ones go through `faer`'s matmul. Matrix functions used by the theory
//! (symmetric eigendecomposition, SVD, SPD square roots) are thin wrappers around `faer`.

use crate::{Error, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// Products with `m·n·k` below this run in plain loops.
const SMALL: usize = 32 * 32 * 32;

#[inline]
fn accum(acc: bool) -> Accum {
    if acc {
        Accum::Add
    } else {
        Accum::Replace
    }
}

/// Dot product with four independent accumulators (so the compiler can keep several FMAs in
/// flight and use SIMD); the summation order is fixed, so results are deterministic.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        s[0] += x[0] * y[0];
        s[1] += x[1] * y[1];
        s[2] += x[2] * y[2];
        s[3] += x[3] * y[3];
    }
    let mut t = (s[0] + s[2]) + (s[1] + s[3]);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        t += x * y;
    }
    t
}

/// `C (m×n) [+]= A (m×k) · Bᵀ` where `B` is `n×k`. All row-major.
pub fn gemm_nt(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
    debug_assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= n * k);
    if m * n * k < SMALL {
        for i in 0..m {
            let ar = &a[i * k..(i + 1) * k];
            let cr = &mut c[i * n..(i + 1) * n];
            for (j, cj) in cr.iter_mut().enumerate() {
                let s = dot(ar, &b[j * k..(j + 1) * k]);
                if acc {
                    *cj += s
                } else {
                    *cj = s
                }
            }
        }
        return;
    }
    let cm = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    let am = MatRef::from_row_major_slice(&a[..m * k], m, k);
    let bm = MatRef::from_row_major_slice(&b[..n * k], n, k);
    matmul(cm, accum(acc), am, bm.transpose(), 1.0, Par::Seq);
}

/// `C (m×n) [+]= A (m×k) · B (k×n)`. All row-major.
pub fn gemm_nn(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
    debug_assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m * n * k < SMALL {
        for i in 0..m {
            let cr = &mut c[i * n..(i + 1) * n];
            if !acc {
                cr.fill(0.0);
            }
            for p in 0..k {
                let aip = a[i * k + p];
                let br = &b[p * n..(p + 1) * n];
                for (cj, bj) in cr.iter_mut().zip(br) {
                    *cj += aip * bj;
                }
            }
        }
        return;
    }
    let cm = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    let am = MatRef::from_row_major_slice(&a[..m * k], m, k);
    let bm = MatRef::from_row_major_slice(&b[..k * n], k, n);
    matmul(cm, accum(acc), am, bm, 1.0, Par::Seq);
}

/// `C (m×n) [+]= α · Aᵀ · B` where `A` is `k×m` and `B` is `k×n`. All row-major.
#[allow(clippy::too_many_arguments)]
pub fn gemm_tn(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, alpha: f64, acc: bool) {
    debug_assert!(c.len() >= m * n && a.len() >= k * m && b.len() >= k * n);
    if m * n * k < SMALL {
        if !acc {
            c[..m * n].fill(0.0);
        }
        for p in 0..k {
            let ar = &a[p * m..(p + 1) * m];
            let br = &b[p * n..(p + 1) * n];
            for (i, &ai) in ar.iter().enumerate() {
                let s = alpha * ai;
                let cr = &mut c[i * n..(i + 1) * n];
                for (cj, bj) in cr.iter_mut().zip(br) {
                    *cj += s * bj;
                }
            }
        }
        return;
    }
    let cm = MatMut::from_row_major_slice_mut(&mut c[..m * n], m, n);
    let am = MatRef::from_row_major_slice(&a[..k * m], k, m);
    let bm = MatRef::from_row_major_slice(&b[..k * n], k, n);
    matmul(cm, accum(acc), am.transpose(), bm, alpha, Par::Seq);
}

/// A dense row-major matrix, used by the theory (closed forms, covariances), not in hot loops.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row-major entries, `rows × cols`.
    pub data: Vec<f64>,
}

impl Dense {
    /// The `rows × cols` zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Dense {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    /// The `n × n` identity.
    pub fn eye(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }
    /// A diagonal matrix.
    pub fn diag(d: &[f64]) -> Self {
        let n = d.len();
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = d[i];
        }
        m
    }
    /// From a row-major slice; the length must be `rows·cols`.
    pub fn from_slice(rows: usize, cols: usize, data: &[f64]) -> Self {
        assert_eq!(data.len(), rows * cols, "Dense::from_slice: wrong length");
        Dense {
            rows,
            cols,
            data: data.to_vec(),
        }
    }
    /// Entry `(i, j)`.
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }
    /// Mutable entry `(i, j)`.
    #[inline]
    pub fn at_mut(&mut self, i: usize, j: usize) -> &mut f64 {
        &mut self.data[i * self.cols + j]
    }
    /// The transpose.
    pub fn t(&self) -> Dense {
        let mut out = Dense::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                out.data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        out
    }
    /// The product `self · other`.
    pub fn mul(&self, other: &Dense) -> Dense {
        assert_eq!(self.cols, other.rows, "Dense::mul: shape mismatch");
        let mut out = Dense::zeros(self.rows, other.cols);
        gemm_nn(
            &mut out.data,
            &self.data,
            &other.data,
            self.rows,
            other.cols,
            self.cols,
            false,
        );
        out
    }
    /// `self + s · other`.
    pub fn add_scaled(&self, s: f64, other: &Dense) -> Dense {
        assert_eq!((self.rows, self.cols), (other.rows, other.cols));
        let data = self.data.iter().zip(&other.data).map(|(a, b)| a + s * b).collect();
        Dense {
            rows: self.rows,
            cols: self.cols,
            data,
        }
    }
    /// `s · self`.
    pub fn scale(&self, s: f64) -> Dense {
        Dense {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|a| s * a).collect(),
        }
    }
    /// The trace (square matrices).
    pub fn trace(&self) -> f64 {
        (0..self.rows.min(self.cols)).map(|i| self.at(i, i)).sum()
    }
    /// The squared Frobenius norm.
    pub fn frob2(&self) -> f64 {
        self.data.iter().map(|v| v * v).sum()
    }
    /// `(self + selfᵀ)/2`, for square matrices.
    pub fn sym(&self) -> Dense {
        self.add_scaled(1.0, &self.t()).scale(0.5)
    }
    fn to_faer(&self) -> Mat<f64> {
        Mat::from_fn(self.rows, self.cols, |i, j| self.at(i, j))
    }
    fn from_faer(m: MatRef<'_, f64>) -> Dense {
        let mut out = Dense::zeros(m.nrows(), m.ncols());
        for i in 0..m.nrows() {
            for j in 0..m.ncols() {
                out.data[i * m.ncols() + j] = m[(i, j)];
            }
        }
        out
    }
}

/// Eigendecomposition of a symmetric matrix: eigenvalues ascending, eigenvectors as the columns of
/// the returned matrix (`A = V diag(λ) Vᵀ`). Only the lower triangle's symmetric part is trusted;
/// the input is symmetrised first.
pub fn sym_eigen(a: &Dense) -> Result<(Vec<f64>, Dense)> {
    if a.rows != a.cols {
        return Err(Error::Invalid(format!(
            "sym_eigen: matrix is {}×{}, not square",
            a.rows, a.cols
        )));
    }
    let s = a.sym().to_faer();
    let evd = s
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| Error::Numerical(format!("symmetric eigendecomposition failed: {e:?}")))?;
    let n = a.rows;
    let vals: Vec<f64> = (0..n).map(|i| evd.S()[i]).collect();
    Ok((vals, Dense::from_faer(evd.U())))
}

/// `V f(Λ) Vᵀ` for a symmetric matrix `A = V Λ Vᵀ`.
pub fn sym_fn(a: &Dense, f: impl Fn(f64) -> f64) -> Result<Dense> {
    let (vals, v) = sym_eigen(a)?;
    let n = a.rows;
    let mut vf = v.clone();
    for i in 0..n {
        for (j, &l) in vals.iter().enumerate() {
            *vf.at_mut(i, j) *= f(l);
        }
    }
    Ok(vf.mul(&v.t()))
}

/// Thin SVD `A = L diag(s) Rᵀ`: returns `(L (m×k), s (k), R (n×k))` with `k = min(m, n)` and `s`
/// non-increasing.
pub fn svd(a: &Dense) -> Result<(Dense, Vec<f64>, Dense)> {
    let m = a.to_faer();
    let svd = m
        .thin_svd()
        .map_err(|e| Error::Numerical(format!("SVD failed: {e:?}")))?;
    let k = a.rows.min(a.cols);
    let s: Vec<f64> = (0..k).map(|i| svd.S()[i]).collect();
    Ok((Dense::from_faer(svd.U()), s, Dense::from_faer(svd.V())))
}

/// Cholesky factor `L` (lower triangular, `A = L Lᵀ`) of a symmetric positive-definite matrix.
pub fn cholesky(a: &Dense) -> Result<Dense> {
    let n = a.rows;
    if a.cols != n {
        return Err(Error::Invalid("cholesky: matrix not square".into()));
    }
    let mut l = Dense::zeros(n, n);
    for j in 0..n {
        let mut d = a.at(j, j);
        for k in 0..j {
            d -= l.at(j, k) * l.at(j, k);
        }
        if d.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !d.is_finite() {
            return Err(Error::Numerical(format!(
                "matrix is not positive definite (pivot {j} is {d})"
            )));
        }
        let d = d.sqrt();
        *l.at_mut(j, j) = d;
        for i in j + 1..n {
            let mut s = a.at(i, j);
            for k in 0..j {
                s -= l.at(i, k) * l.at(j, k);
            }
            *l.at_mut(i, j) = s / d;
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn naive(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn products_match_naive_small_and_large() {
        let mut r = Rng::new(1);
        for &(m, n, k) in &[(3, 4, 5), (40, 50, 60), (1, 7, 1), (64, 1, 33)] {
            let mut a = vec![0.0; m * k];
            let mut b = vec![0.0; k * n];
            r.fill_normal(&mut a);
            r.fill_normal(&mut b);
            let want = naive(&a, &b, m, n, k);
            let mut c = vec![1.0; m * n];
            gemm_nn(&mut c, &a, &b, m, n, k, false);
            let bt = Dense::from_slice(k, n, &b).t();
            let mut c2 = vec![0.0; m * n];
            gemm_nt(&mut c2, &a, &bt.data, m, n, k, false);
            let at = Dense::from_slice(m, k, &a).t();
            let mut c3 = vec![0.5; m * n];
            gemm_tn(&mut c3, &at.data, &b, m, n, k, 2.0, true);
            for i in 0..m * n {
                let tol = 1e-12 * (1.0 + want[i].abs());
                assert!((c[i] - want[i]).abs() < tol);
                assert!((c2[i] - want[i]).abs() < tol);
                assert!((c3[i] - (0.5 + 2.0 * want[i])).abs() < 2.0 * tol);
            }
        }
    }

    #[test]
    fn eigen_svd_cholesky_reconstruct() {
        let mut r = Rng::new(2);
        let n = 6;
        let mut g = Dense::zeros(n, n);
        r.fill_normal(&mut g.data);
        let spd = g.mul(&g.t()).add_scaled(1.0, &Dense::eye(n));
        let (vals, v) = sym_eigen(&spd).unwrap();
        let rec = v.mul(&Dense::diag(&vals)).mul(&v.t());
        for i in 0..n * n {
            assert!((rec.data[i] - spd.data[i]).abs() < 1e-10);
        }
        let root = sym_fn(&spd, f64::sqrt).unwrap();
        let sq = root.mul(&root);
        for i in 0..n * n {
            assert!((sq.data[i] - spd.data[i]).abs() < 1e-10);
        }
        let l = cholesky(&spd).unwrap();
        let llt = l.mul(&l.t());
        for i in 0..n * n {
            assert!((llt.data[i] - spd.data[i]).abs() < 1e-10);
        }
        let mut a = Dense::zeros(4, 7);
        r.fill_normal(&mut a.data);
        let (u, s, w) = svd(&a).unwrap();
        let rec = u.mul(&Dense::diag(&s)).mul(&w.t());
        for i in 0..a.data.len() {
            assert!((rec.data[i] - a.data[i]).abs() < 1e-10);
        }
        assert!(cholesky(&Dense::diag(&[1.0, -1.0])).is_err());
    }
}
