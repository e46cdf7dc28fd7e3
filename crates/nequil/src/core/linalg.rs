//! Dense linear algebra on row-major `f64` slices.
//!
//! Hot loops call the three product shapes below with preallocated outputs. Small products run in
//! register-tiled kernels of our own (at the sizes of the paper's toy problems the set-up cost of a
//! tuned GEMM dominates), chosen at run time by [`crate::simd`]: on the `avx512` path AVX-512
//! kernels with masked tails and fused multiply-adds; on the `portable` and `avx2` paths plain
//! loops (compiled with AVX2 enabled on the `avx2` path; they never fuse or reorder, so the two
//! paths give the same bits). Larger products go through `faer`'s matmul, which picks its own
//! kernels from the CPU (AVX-512, AVX2+FMA or generic) whatever the path. Matrix functions used by
//! the theory (symmetric eigendecomposition, SVD, SPD square roots) are thin wrappers around
//! `faer`.

use crate::core::parallel::{blocks, current_threads, run_tasks, PAR_MIN};
use crate::simd::{clean_upper, multiversion, Isa};
use crate::{Error, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use std::sync::Mutex;

/// Products with `m·n·k` below this run in our own kernels.
const SMALL: usize = 32 * 32 * 32;

#[inline]
fn accum(acc: bool) -> Accum {
    if acc {
        Accum::Add
    } else {
        Accum::Replace
    }
}

/// The body of [`dot`]: four independent accumulators, a fixed summation order.
#[inline(always)]
fn dot_body(a: &[f64], b: &[f64]) -> f64 {
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

multiversion! {
    /// [`dot`] on a given path.
    pub(crate) fn dot_with(a: &[f64], b: &[f64]) -> f64 = dot_body;
}

/// Dot product with four independent accumulators (so that several multiply-adds are in flight and
/// SIMD applies); the summation order is fixed and nothing is fused, so the result is the same on
/// every [`crate::simd`] path. Extra entries of the longer slice are ignored.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    dot_with(Isa::active(), a, b)
}

/// `C (m×n) [+]= A (m×k) · Bᵀ` where `B` is `n×k`. All row-major.
pub fn gemm_nt(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
    gemm_nt_with(Isa::active(), c, a, b, m, n, k, acc)
}

/// [`gemm_nt`] with the small-product kernel of a given path.
#[inline]
pub(crate) fn gemm_nt_with(isa: Isa, c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= n * k,
        "gemm_nt: buffers too short"
    );
    if m * n * k < SMALL {
        #[cfg(target_arch = "x86_64")]
        if isa.path() == crate::simd::SimdPath::Avx512 {
            // SAFETY: the Isa certifies AVX-512F (with AVX2 and FMA); the lengths are checked above.
            unsafe { avx512::nt(c, a, b, m, n, k, acc) };
            return;
        }
        portable::nt(isa, c, a, b, m, n, k, acc);
        return;
    }
    let am = MatRef::from_row_major_slice(&a[..m * k], m, k);
    let bm = MatRef::from_row_major_slice(&b[..n * k], n, k);
    large(&mut c[..m * n], m, n, am, bm.transpose(), 1.0, acc);
}

/// `C (m×n) [+]= A (m×k) · B (k×n)`. All row-major.
pub fn gemm_nn(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
    gemm_nn_with(Isa::active(), c, a, b, m, n, k, acc)
}

/// [`gemm_nn`] with the small-product kernel of a given path.
#[inline]
pub(crate) fn gemm_nn_with(isa: Isa, c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "gemm_nn: buffers too short"
    );
    if m * n * k < SMALL {
        #[cfg(target_arch = "x86_64")]
        if isa.path() == crate::simd::SimdPath::Avx512 {
            // SAFETY: the Isa certifies AVX-512F (with AVX2 and FMA); the lengths are checked above.
            unsafe { avx512::nn(c, a, b, m, n, k, acc) };
            return;
        }
        portable::nn(isa, c, a, b, m, n, k, acc);
        return;
    }
    let am = MatRef::from_row_major_slice(&a[..m * k], m, k);
    let bm = MatRef::from_row_major_slice(&b[..k * n], k, n);
    large(&mut c[..m * n], m, n, am, bm, 1.0, acc);
}

/// `C (m×n) [+]= α · Aᵀ · B` where `A` is `k×m` and `B` is `k×n`. All row-major.
#[allow(clippy::too_many_arguments)]
pub fn gemm_tn(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, alpha: f64, acc: bool) {
    gemm_tn_with(Isa::active(), c, a, b, m, n, k, alpha, acc)
}

/// [`gemm_tn`] with the small-product kernel of a given path.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_tn_with(
    isa: Isa,
    c: &mut [f64],
    a: &[f64],
    b: &[f64],
    m: usize,
    n: usize,
    k: usize,
    alpha: f64,
    acc: bool,
) {
    assert!(
        c.len() >= m * n && a.len() >= k * m && b.len() >= k * n,
        "gemm_tn: buffers too short"
    );
    if m * n * k < SMALL {
        #[cfg(target_arch = "x86_64")]
        if isa.path() == crate::simd::SimdPath::Avx512 {
            // SAFETY: the Isa certifies AVX-512F (with AVX2 and FMA); the lengths are checked above.
            unsafe { avx512::tn(c, a, b, m, n, k, alpha, acc) };
            return;
        }
        portable::tn(isa, c, a, b, m, n, k, alpha, acc);
        return;
    }
    let am = MatRef::from_row_major_slice(&a[..k * m], k, m);
    let bm = MatRef::from_row_major_slice(&b[..k * n], k, n);
    large(&mut c[..m * n], m, n, am.transpose(), bm, alpha, acc);
}

/// `C (m×n, row-major) [+]= α · lhs (m×k) · rhs (k×n)` by `faer` on one thread, or, inside
/// [`crate::core::parallel::with_threads`] and for `m·n·k ≥` [`PAR_MIN`], on blocks of whole rows
/// of C (multiples of 8, the widest register tile `faer` uses along our rows) or, with fewer than
/// 32 rows, of whole columns (multiples of 48, its widest tile along our columns, at least 96 so
/// that its kernel choice for more than 48 columns is kept), up to two blocks per thread, each
/// computed by whichever thread claims it. Each block is
/// the same product restricted to some outputs, with the same `k` blocking (`faer` cuts `k` in
/// blocks of 512 whatever the shape), so every entry gets the same floating-point operations as
/// in the whole product; `tests::threaded_products_are_bit_identical` checks it. Blocks are kept
/// above `faer`'s own small-product threshold (16³), below which it uses other kernels.
fn large(c: &mut [f64], m: usize, n: usize, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>, alpha: f64, acc: bool) {
    let k = lhs.ncols();
    let threads = current_threads();
    if threads > 1 && m >= 2 && n >= 2 && m * n * k >= PAR_MIN {
        let by_rows = m >= 32;
        // Two blocks per thread, claimed dynamically: a thread that the system does not schedule
        // for a while leaves its blocks to the others.
        let cuts = if by_rows {
            blocks(m, 2 * threads, 8, 16)
        } else {
            blocks(n, 2 * threads, 48, 96)
        };
        let smallest = cuts.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(0);
        let other = if by_rows { n } else { m };
        if cuts.len() > 2 && smallest * other * k > 16 * 16 * 16 {
            let mut parts = Vec::with_capacity(cuts.len() - 1);
            let mut rest = MatMut::from_row_major_slice_mut(c, m, n);
            for w in cuts.windows(2).rev() {
                let (head, tail) = if by_rows {
                    rest.split_at_row_mut(w[0])
                } else {
                    rest.split_at_col_mut(w[0])
                };
                parts.push(Mutex::new(Some(tail)));
                rest = head;
            }
            parts.reverse();
            run_tasks(parts.len(), &|t| {
                let (s, e) = (cuts[t], cuts[t + 1]);
                let dst = parts[t]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .expect("each block is taken once");
                if by_rows {
                    matmul(dst, accum(acc), lhs.subrows(s, e - s), rhs, alpha, Par::Seq);
                } else {
                    matmul(dst, accum(acc), lhs, rhs.subcols(s, e - s), alpha, Par::Seq);
                }
                clean_upper();
            });
            return;
        }
    }
    matmul(
        MatMut::from_row_major_slice_mut(c, m, n),
        accum(acc),
        lhs,
        rhs,
        alpha,
        Par::Seq,
    );
    clean_upper();
}

/// The small-product kernels in plain Rust, for the `portable` and `avx2` paths (and compiled for
/// `avx512` too, so that the tests check them there). Same contracts as the `gemm_*` functions;
/// the callers check the buffer lengths.
pub(crate) mod portable {
    use super::dot_body;
    use crate::simd::multiversion;

    #[inline(always)]
    fn nt_body(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
        for i in 0..m {
            let ar = &a[i * k..(i + 1) * k];
            let cr = &mut c[i * n..(i + 1) * n];
            for (j, cj) in cr.iter_mut().enumerate() {
                let s = dot_body(ar, &b[j * k..(j + 1) * k]);
                *cj = if acc { *cj + s } else { s };
            }
        }
    }

    #[inline(always)]
    fn nn_body(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
        for i in 0..m {
            let cr = &mut c[i * n..(i + 1) * n];
            if !acc {
                cr.fill(0.0);
            }
            for p in 0..k {
                let aip = a[i * k + p];
                for (cj, bj) in cr.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                    *cj += aip * bj;
                }
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn tn_body(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, alpha: f64, acc: bool) {
        if !acc {
            c[..m * n].fill(0.0);
        }
        for p in 0..k {
            let br = &b[p * n..(p + 1) * n];
            for (i, &ai) in a[p * m..(p + 1) * m].iter().enumerate() {
                let s = alpha * ai;
                for (cj, bj) in c[i * n..(i + 1) * n].iter_mut().zip(br) {
                    *cj += s * bj;
                }
            }
        }
    }

    multiversion! {
        /// `C (m×n) [+]= A·Bᵀ` by dot products.
        pub(crate) fn nt(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) = nt_body;
    }
    multiversion! {
        /// `C (m×n) [+]= A·B` row by row.
        pub(crate) fn nn(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) = nn_body;
    }
    multiversion! {
        /// `C (m×n) [+]= α AᵀB` by rank-one updates.
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn tn(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, alpha: f64, acc: bool) = tn_body;
    }
}

/// AVX-512 kernels for small products: 8-lane registers, masked loads and stores for the tails,
/// fused multiply-adds. Callers check the buffer lengths (the `gemm_*` asserts), which makes every
/// pointer offset below in bounds, and that the CPU has AVX-512F (an `Isa` of the `avx512` path).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Mask of the first `r` lanes (`r < 8`).
    #[inline(always)]
    fn mask(r: usize) -> __mmask8 {
        ((1u32 << r) - 1) as __mmask8
    }

    /// The eight horizontal sums `[Σ v0, …, Σ v7]` in one register (a fixed addition tree:
    /// pairs within 128-bit lanes, then lanes).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn hsum8(v: [__m512d; 8]) -> __m512d {
        let pair = |x: __m512d, y: __m512d| _mm512_add_pd(_mm512_unpacklo_pd(x, y), _mm512_unpackhi_pd(x, y));
        let lanes = |x: __m512d, y: __m512d| {
            _mm512_add_pd(
                _mm512_shuffle_f64x2::<0b10_00_10_00>(x, y),
                _mm512_shuffle_f64x2::<0b11_01_11_01>(x, y),
            )
        };
        let b0 = lanes(pair(v[0], v[1]), pair(v[2], v[3]));
        let b1 = lanes(pair(v[4], v[5]), pair(v[6], v[7]));
        lanes(b0, b1)
    }

    /// `C[i, j] (+)= Σ_p A[i, p] B[j, p]`: dot products along rows, eight rows of B at a time so that
    /// each loaded chunk of A's row feeds eight accumulators, whose sums land in one register and
    /// one store. A last partial group repeats its last row and masks the store.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `c`, `a`, `b` must hold m·n, m·k and n·k entries.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn nt(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
        if k == 0 {
            if !acc {
                c[..m * n].fill(0.0);
            }
            return;
        }
        let kf = k - k % 8;
        let mt = mask(k - kf);
        // SAFETY: row pointers are clamped to row n − 1 of b, so every load is below n·k in b and
        // m·k in a; the masked loads touch only the first k − kf lanes past kf; stores are masked
        // to the j < n columns of row i of c (m·n entries). Lengths are the caller's contract.
        unsafe {
            let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
            for i in 0..m {
                let ar = ap.add(i * k);
                let cr = cp.add(i * n);
                let mut j = 0;
                while j < n {
                    let base = bp.add(j * k);
                    let rows: [*const f64; 8] = if j + 8 <= n {
                        std::array::from_fn(|q| base.add(q * k))
                    } else {
                        std::array::from_fn(|q| bp.add((j + q).min(n - 1) * k))
                    };
                    let mut s = [_mm512_setzero_pd(); 8];
                    let mut p = 0;
                    while p < kf {
                        let av = _mm512_loadu_pd(ar.add(p));
                        for q in 0..8 {
                            s[q] = _mm512_fmadd_pd(av, _mm512_loadu_pd(rows[q].add(p)), s[q]);
                        }
                        p += 8;
                    }
                    if kf < k {
                        let av = _mm512_maskz_loadu_pd(mt, ar.add(kf));
                        for q in 0..8 {
                            s[q] = _mm512_fmadd_pd(av, _mm512_maskz_loadu_pd(mt, rows[q].add(kf)), s[q]);
                        }
                    }
                    let out = if j + 8 <= n { 0xFF } else { mask(n - j) };
                    let mut r = hsum8(s);
                    if acc {
                        r = _mm512_add_pd(r, _mm512_maskz_loadu_pd(out, cr.add(j)));
                    }
                    _mm512_mask_storeu_pd(cr.add(j), out, r);
                    j += 8;
                }
            }
        }
    }

    /// `C (m×n) (+)= α Σ_p coef(i, p) · B[p, :]` row by row (B is `k×n` row-major): 32 columns at a
    /// time in four registers held over the whole sum, then 8, then a masked tail.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `c` must be valid for m·n writes, `b` for k·n reads, and
    /// `coef(i, p)` valid for i < m, p < k.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const ACC: bool, const K1: bool>(
        c: *mut f64,
        b: *const f64,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        coef: impl Fn(usize, usize) -> f64,
    ) {
        let nf = n - n % 8;
        let mt = mask(n - nf);
        // With K1 (k = 1, the outer products of a batch of one) the sums below have one term and
        // compile to straight-line code.
        let k = if K1 { 1 } else { k };
        // SAFETY: every offset below is < k·n in b and < m·n in c (the caller's contract).
        unsafe {
            let av = _mm512_set1_pd(alpha);
            let store = |o: *mut f64, v: __m512d, m: __mmask8| {
                let v = if ACC {
                    _mm512_fmadd_pd(av, v, _mm512_maskz_loadu_pd(m, o))
                } else {
                    _mm512_mul_pd(av, v)
                };
                _mm512_mask_storeu_pd(o, m, v);
            };
            for i in 0..m {
                let cr = c.add(i * n);
                let mut j = 0;
                while j + 32 <= n {
                    let mut t = [_mm512_setzero_pd(); 4];
                    for p in 0..k {
                        let s = _mm512_set1_pd(coef(i, p));
                        let br = b.add(p * n + j);
                        for q in 0..4 {
                            t[q] = _mm512_fmadd_pd(s, _mm512_loadu_pd(br.add(8 * q)), t[q]);
                        }
                    }
                    for q in 0..4 {
                        store(cr.add(j + 8 * q), t[q], 0xFF);
                    }
                    j += 32;
                }
                while j < nf {
                    let mut t = _mm512_setzero_pd();
                    for p in 0..k {
                        t = _mm512_fmadd_pd(_mm512_set1_pd(coef(i, p)), _mm512_loadu_pd(b.add(p * n + j)), t);
                    }
                    store(cr.add(j), t, 0xFF);
                    j += 8;
                }
                if nf < n {
                    let mut t = _mm512_setzero_pd();
                    for p in 0..k {
                        t = _mm512_fmadd_pd(
                            _mm512_set1_pd(coef(i, p)),
                            _mm512_maskz_loadu_pd(mt, b.add(p * n + nf)),
                            t,
                        );
                    }
                    store(cr.add(nf), t, mt);
                }
            }
        }
    }

    /// `C (+)= A·B`: row i of C is Σ_p A[i, p] · B[p, :].
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `c`, `a`, `b` must hold m·n, m·k and k·n entries.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn nn(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, acc: bool) {
        let (cp, bp) = (c.as_mut_ptr(), b.as_ptr());
        // SAFETY: a has m·k entries (the caller's contract) and rows() asks for i < m, p < k.
        let coef = |i: usize, p: usize| unsafe { *a.get_unchecked(i * k + p) };
        // SAFETY: the CPU has AVX-512F, c has m·n entries and b has k·n (the caller's contract).
        unsafe {
            match (acc, k == 1) {
                (true, true) => rows::<true, true>(cp, bp, m, n, k, 1.0, coef),
                (true, false) => rows::<true, false>(cp, bp, m, n, k, 1.0, coef),
                (false, true) => rows::<false, true>(cp, bp, m, n, k, 1.0, coef),
                (false, false) => rows::<false, false>(cp, bp, m, n, k, 1.0, coef),
            }
        }
    }

    /// `C (+)= α AᵀB`: row i of C is α Σ_p A[p, i] · B[p, :].
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `c`, `a`, `b` must hold m·n, k·m and k·n entries.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn tn(c: &mut [f64], a: &[f64], b: &[f64], m: usize, n: usize, k: usize, alpha: f64, acc: bool) {
        let (cp, bp) = (c.as_mut_ptr(), b.as_ptr());
        // SAFETY: a has k·m entries (the caller's contract) and rows() asks for i < m, p < k.
        let coef = |i: usize, p: usize| unsafe { *a.get_unchecked(p * m + i) };
        // SAFETY: the CPU has AVX-512F, c has m·n entries and b has k·n (the caller's contract).
        unsafe {
            match (acc, k == 1) {
                (true, true) => rows::<true, true>(cp, bp, m, n, k, alpha, coef),
                (true, false) => rows::<true, false>(cp, bp, m, n, k, alpha, coef),
                (false, true) => rows::<false, true>(cp, bp, m, n, k, alpha, coef),
                (false, false) => rows::<false, false>(cp, bp, m, n, k, alpha, coef),
            }
        }
    }
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
    let evd = s.self_adjoint_eigen(faer::Side::Lower);
    clean_upper();
    let evd = evd.map_err(|e| Error::Numerical(format!("symmetric eigendecomposition failed: {e:?}")))?;
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
    let svd = m.thin_svd();
    clean_upper();
    let svd = svd.map_err(|e| Error::Numerical(format!("SVD failed: {e:?}")))?;
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
    use crate::core::rng::Rng;
    use crate::simd::SimdPath;

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
        let isas = Isa::all();
        let mut r = Rng::new(1);
        for &(m, n, k) in &[
            (3, 4, 5),
            (40, 50, 60),
            (1, 7, 1),
            (64, 1, 33),
            (1, 20, 10),
            (1, 10, 20),
            (10, 20, 1),
            (20, 10, 1),
            (5, 9, 17),
            (7, 16, 8),
            (3, 37, 9),
            (2, 3, 0),
            (9, 70, 3),
            (33, 8, 31),
        ] {
            let mut a = vec![0.0; m * k];
            let mut b = vec![0.0; k * n];
            r.fill_normal(&mut a);
            r.fill_normal(&mut b);
            let want = naive(&a, &b, m, n, k);
            let bt = Dense::from_slice(k, n, &b).t();
            let at = Dense::from_slice(m, k, &a).t();
            // Per path: [nn, nt, tn (α = 2, accumulating), nn acc, nt acc, and the portable
            // kernels compiled for the path].
            let mut by_path: Vec<Vec<Vec<f64>>> = vec![];
            for &isa in &isas {
                let path = isa.path();
                let mut c = vec![1.0; m * n];
                gemm_nn_with(isa, &mut c, &a, &b, m, n, k, false);
                let mut c2 = vec![0.0; m * n];
                gemm_nt_with(isa, &mut c2, &a, &bt.data, m, n, k, false);
                let mut c3 = vec![0.5; m * n];
                gemm_tn_with(isa, &mut c3, &at.data, &b, m, n, k, 2.0, true);
                let mut c4 = vec![0.25; m * n];
                gemm_nn_with(isa, &mut c4, &a, &b, m, n, k, true);
                let mut c5 = vec![0.25; m * n];
                gemm_nt_with(isa, &mut c5, &a, &bt.data, m, n, k, true);
                let mut p1 = vec![1.0; m * n];
                portable::nn(isa, &mut p1, &a, &b, m, n, k, false);
                let mut p2 = vec![0.0; m * n];
                portable::nt(isa, &mut p2, &a, &bt.data, m, n, k, false);
                let mut p3 = vec![0.5; m * n];
                portable::tn(isa, &mut p3, &at.data, &b, m, n, k, 2.0, true);
                for i in 0..m * n {
                    let tol = 1e-12 * (1.0 + want[i].abs());
                    let at = |what: &str| format!("{path}: {what} {m}×{n}×{k}");
                    assert!((c[i] - want[i]).abs() < tol, "{}", at("nn"));
                    assert!((c2[i] - want[i]).abs() < tol, "{}", at("nt"));
                    assert!((c3[i] - (0.5 + 2.0 * want[i])).abs() < 2.0 * tol, "{}", at("tn"));
                    assert!((c4[i] - (0.25 + want[i])).abs() < tol, "{}", at("nn acc"));
                    assert!((c5[i] - (0.25 + want[i])).abs() < tol, "{}", at("nt acc"));
                    assert!((p1[i] - want[i]).abs() < tol, "{}", at("portable nn"));
                    assert!((p2[i] - want[i]).abs() < tol, "{}", at("portable nt"));
                    assert!(
                        (p3[i] - (0.5 + 2.0 * want[i])).abs() < 2.0 * tol,
                        "{}",
                        at("portable tn")
                    );
                }
                by_path.push(vec![c, c2, c3, c4, c5, p1, p2, p3]);
            }
            // The portable kernels give the same bits on every path (no fusing, no reordering), and
            // so does everything on the avx2 path.
            for (isa, res) in isas.iter().zip(&by_path).skip(1) {
                assert_eq!(
                    res[5..],
                    by_path[0][5..],
                    "{}: portable kernels {m}×{n}×{k}",
                    isa.path()
                );
                if isa.path() == SimdPath::Avx2 {
                    assert_eq!(res, &by_path[0], "avx2 {m}×{n}×{k}");
                }
            }
        }
    }

    #[test]
    fn threaded_products_are_bit_identical() {
        use crate::core::parallel::with_threads;
        let mut r = Rng::new(9);
        // Shapes above the split threshold: row splits (m ≥ 16) and column splits (m < 16), tails
        // off the tiles, k across faer's 512-deep blocks, k = 1 (its rank-one path), and the
        // paper-scale step (100 samples, width 2000).
        for &(m, n, k) in &[
            (100, 2000, 100),
            (2000, 100, 100),
            (100, 100, 2000),
            (37, 301, 611),
            (16, 1030, 9),
            (9, 1000, 40),
            (3, 200, 300),
            (5, 97, 700),
            (1500, 130, 1),
            (257, 784, 64),
            (10, 256, 1000),
        ] {
            let mut a = vec![0.0; m * k];
            let mut b = vec![0.0; k * n];
            let mut c0 = vec![0.0; m * n];
            r.fill_normal(&mut a);
            r.fill_normal(&mut b);
            r.fill_normal(&mut c0);
            let bt = Dense::from_slice(k, n, &b).t();
            let at = Dense::from_slice(m, k, &a).t();
            let all = || {
                let mut out = vec![];
                for acc in [false, true] {
                    let mut c = c0.clone();
                    gemm_nn(&mut c, &a, &b, m, n, k, acc);
                    out.push(c);
                    let mut c = c0.clone();
                    gemm_nt(&mut c, &a, &bt.data, m, n, k, acc);
                    out.push(c);
                    let mut c = c0.clone();
                    gemm_tn(&mut c, &at.data, &b, m, n, k, 0.75, acc);
                    out.push(c);
                }
                out
            };
            let one = all();
            for threads in [2, 3] {
                let many = with_threads(threads, all);
                for (x, y) in one.iter().zip(&many) {
                    let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
                    assert!(same, "{m}×{n}×{k} with {threads} threads");
                }
            }
        }
    }

    #[test]
    fn dot_on_every_path() {
        let mut r = Rng::new(4);
        for n in [0usize, 1, 3, 4, 5, 17, 1000] {
            let mut a = vec![0.0; n + 2];
            let mut b = vec![0.0; n];
            r.fill_normal(&mut a);
            r.fill_normal(&mut b);
            let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let first = dot_with(Isa::all()[0], &a, &b);
            for isa in Isa::all() {
                let got = dot_with(isa, &a, &b);
                assert!((got - want).abs() <= 1e-12 * (1.0 + want.abs()), "{} n={n}", isa.path());
                assert_eq!(got.to_bits(), first.to_bits(), "{} n={n}", isa.path());
            }
            assert_eq!(dot(&a, &b).to_bits(), first.to_bits());
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
