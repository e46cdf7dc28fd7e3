//! Elementary functions for the hot loops: a `tanh` that vectorizes, and slice maps dispatched
//! to the CPU's SIMD path.
//!
//! libm's `tanh` (with the `expm1` it calls) is a scalar function call per element and took about
//! half of a tanh-MLP step (100-256-100, S = 64). Ours is branch-free straight-line code, accurate
//! to a few ulp: the test below bounds its error by 4 ulp (≈ 9·10⁻¹⁶ relative) against the
//! platform's `tanh` over the whole range, on every path. It is used wherever the models evaluate
//! tanh (MLP activations, Net-A/B, the tanh teacher, the dual numbers of the curvature code), so
//! losses, gradients and Hessians stay mutually exact.
//!
//! Its polynomial uses fused multiply-adds on the [`crate::simd`] paths that have them (`avx2`,
//! `avx512`) and separate multiplies and adds on `portable`, so its last bit can differ between
//! `portable` and the others; [`tanh`] and [`tanh_slice`] agree with each other on every path.
//! Loops over many values should call the slice functions ([`tanh_slice`], [`relu_slice`], and for
//! the backward pass [`tanh_backward_slice`], [`relu_backward_slice`]), which run one vectorized
//! loop compiled for the path; [`tanh`] dispatches per call.

use crate::simd::{multiversion, Isa, SimdPath};

/// ln 2 split as in fdlibm: the high part has 11 trailing zero bits, so `k·LN2_HI` is exact for
/// `|k| < 2¹¹`; `LN2_HI + LN2_LO` is ln 2 to about 2⁻¹⁰⁶.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const INV_LN2: f64 = std::f64::consts::LOG2_E;
/// 1.5·2⁵²: adding and subtracting it rounds a double of magnitude < 2⁵¹ to the nearest integer.
const ROUND: f64 = 6_755_399_441_055_744.0;

/// `eʸ − 1` for `0 ≤ y ≤ 45` (the range `tanh` needs), a few ulp: `y = k ln 2 + r` with
/// `|r| ≤ ln 2 / 2` (Cody–Waite), `expm1(r) = r·Σ rⁿ/(n+1)!` to degree 13 (truncation < 2⁻⁵⁶),
/// and `expm1(y) = 2ᵏ expm1(r) + (2ᵏ − 1)`.
#[inline(always)]
fn expm1_pos<const FMA: bool>(y: f64) -> f64 {
    let kr = y * INV_LN2 + ROUND;
    let k = kr - ROUND;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    // Σ_{n=0}^{13} rⁿ/(n+1)! by Horner.
    const C: [f64; 14] = [
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40320.0,
        1.0 / 362880.0,
        1.0 / 3628800.0,
        1.0 / 39916800.0,
        1.0 / 479001600.0,
        1.0 / 6227020800.0,
        1.0 / 87178291200.0,
    ];
    let mut p = C[13];
    for c in C[..13].iter().rev() {
        p = fma::<FMA>(p, r, *c);
    }
    let em = r * p;
    // 2ᵏ from the integer k held in the low bits of kr (k ≤ 65 here).
    let s = f64::from_bits(((kr.to_bits() as i64 - ROUND.to_bits() as i64 + 1023) as u64) << 52);
    fma::<FMA>(s, em, s - 1.0)
}

/// `a·b + c`, fused (one rounding) if `FMA`. Only instantiate `FMA = true` where the FMA
/// instructions are enabled (the `multiversion!` wrappers of the FMA paths); elsewhere `mul_add`
/// would be a library call.
#[inline(always)]
fn fma<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// The body of [`tanh`]: `tanh |x| = e/(e + 2)` with `e = expm1(2|x|)`, the sign restored, `|x|`
/// capped at 22 (where tanh rounds to ±1). NaN in, NaN out.
#[inline(always)]
fn tanh_body<const FMA: bool>(x: f64) -> f64 {
    let a = x.abs();
    // `>` (not `min`) so that NaN passes through.
    let a = if a > 22.0 { 22.0 } else { a };
    let e = expm1_pos::<FMA>(2.0 * a);
    (e / (e + 2.0)).copysign(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn tanh_fma(x: f64) -> f64 {
    tanh_body::<true>(x)
}

/// `tanh x` to a few ulp (4 at most against libm), fused multiply-adds on the SIMD paths that
/// have them (see the module notes). NaN in, NaN out; ±∞ gives ±1. One value: loops should call
/// [`tanh_slice`].
#[inline]
pub fn tanh(x: f64) -> f64 {
    tanh_with(Isa::active(), x)
}

/// [`tanh`] on a given path.
#[inline]
pub(crate) fn tanh_with(isa: Isa, x: f64) -> f64 {
    match isa.path() {
        SimdPath::Portable => tanh_body::<false>(x),
        // SAFETY: an Isa names only paths the CPU supports; avx2 and avx512 include FMA.
        #[cfg(target_arch = "x86_64")]
        _ => unsafe { tanh_fma(x) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => tanh_body::<false>(x),
    }
}

#[inline(always)]
fn tanh_map<const FMA: bool>(out: &mut [f64], z: &[f64]) {
    for (o, v) in out.iter_mut().zip(z) {
        *o = tanh_body::<FMA>(*v);
    }
}

multiversion! {
    /// [`tanh_slice`] on a given path.
    pub(crate) fn tanh_slice_with(out: &mut [f64], z: &[f64]) =
        portable: tanh_map::<false>, fma: tanh_map::<true>;
}

/// `out[i] = tanh(z[i])` ([`tanh`], the same bits) in one loop vectorized for the process's SIMD
/// path. Covers the shorter of the two slices.
#[inline]
pub fn tanh_slice(out: &mut [f64], z: &[f64]) {
    tanh_slice_with(Isa::active(), out, z)
}

#[inline(always)]
fn relu_map(out: &mut [f64], z: &[f64]) {
    for (o, v) in out.iter_mut().zip(z) {
        *o = v.max(0.0);
    }
}

multiversion! {
    /// [`relu_slice`] on a given path.
    pub(crate) fn relu_slice_with(out: &mut [f64], z: &[f64]) = relu_map;
}

/// `out[i] = max(z[i], 0)` (NaN gives 0, as `f64::max` does) in one loop vectorized for the
/// process's SIMD path; the same bits on every path. Covers the shorter of the two slices.
#[inline]
pub fn relu_slice(out: &mut [f64], z: &[f64]) {
    relu_slice_with(Isa::active(), out, z)
}

#[inline(always)]
fn tanh_backward_map(delta: &mut [f64], a: &[f64]) {
    for (d, a) in delta.iter_mut().zip(a) {
        *d *= 1.0 - a * a;
    }
}

multiversion! {
    /// [`tanh_backward_slice`] on a given path.
    pub(crate) fn tanh_backward_slice_with(delta: &mut [f64], a: &[f64]) = tanh_backward_map;
}

/// The chain rule through `a = tanh z`: `delta[i] *= 1 − a[i]²`, in one loop vectorized for the
/// process's SIMD path; the same bits on every path (nothing fused). Covers the shorter of the
/// two slices.
#[inline]
pub fn tanh_backward_slice(delta: &mut [f64], a: &[f64]) {
    tanh_backward_slice_with(Isa::active(), delta, a)
}

#[inline(always)]
fn relu_backward_map(delta: &mut [f64], z: &[f64]) {
    for (d, z) in delta.iter_mut().zip(z) {
        *d *= if *z > 0.0 { 1.0 } else { 0.0 };
    }
}

multiversion! {
    /// [`relu_backward_slice`] on a given path.
    pub(crate) fn relu_backward_slice_with(delta: &mut [f64], z: &[f64]) = relu_backward_map;
}

/// The chain rule through `a = max(z, 0)`: `delta[i] *= 1` where `z[i] > 0`, `*= 0` elsewhere
/// (a multiplication, so a non-finite δ stays visible), in one loop vectorized for the process's
/// SIMD path; the same bits on every path. Covers the shorter of the two slices.
#[inline]
pub fn relu_backward_slice(delta: &mut [f64], z: &[f64]) {
    relu_backward_slice_with(Isa::active(), delta, z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;

    fn ulps(a: f64, b: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        let ulp = f64::EPSILON * b.abs().max(f64::MIN_POSITIVE);
        (a - b).abs() / ulp
    }

    #[test]
    fn tanh_matches_libm_within_4_ulp_on_every_path() {
        for isa in Isa::all() {
            let path = isa.path();
            let mut r = Rng::new(3);
            let mut worst: f64 = 0.0;
            let mut xs = Vec::new();
            for _ in 0..400_000 {
                // Log-uniform magnitudes from 1e-300 to 30 and both signs.
                let m = (10f64).powf(-300.0 + 301.48 * r.uniform());
                xs.push(if r.uniform() < 0.5 { m } else { -m });
                xs.push(60.0 * r.uniform() - 30.0);
                xs.push(2.0 * r.uniform() - 1.0);
            }
            for x in [
                0.0, -0.0, 1e-310, 0.3465, 0.3466, 0.5, 1.0, 18.0, 19.06, 21.9, 22.0, 22.1, 700.0, 1e308,
            ] {
                xs.push(x);
                xs.push(-x);
            }
            let mut got = vec![0.0; xs.len()];
            tanh_slice_with(isa, &mut got, &xs);
            for (&x, &g) in xs.iter().zip(&got) {
                let want = x.tanh();
                let u = ulps(g, want);
                assert!(u <= 4.0, "{path}: tanh({x:e}) = {g:e}, libm {want:e} ({u} ulp)");
                // The scalar function gives the same bits as the slice one.
                assert_eq!(tanh_with(isa, x).to_bits(), g.to_bits(), "{path}: tanh({x:e})");
                worst = worst.max(u);
            }
            let special = [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -0.0];
            let mut out = [0.0; 4];
            tanh_slice_with(isa, &mut out, &special);
            assert_eq!(out[..2], [1.0, -1.0]);
            assert!(out[2].is_nan());
            assert!(out[3] == 0.0 && out[3].is_sign_negative());
            assert_eq!(tanh_with(isa, f64::INFINITY), 1.0);
            assert!(tanh_with(isa, f64::NAN).is_nan());
            eprintln!("{path}: worst tanh error {worst} ulp");
            assert!(worst <= 4.0);
        }
        assert_eq!(tanh(0.5).to_bits(), tanh_with(Isa::active(), 0.5).to_bits());
    }

    #[test]
    fn backward_slices_on_every_path() {
        let z = [-2.0, -0.0, 0.0, 1.5, f64::NAN, 0.3, -1e-300, 3.0, -4.0, 0.7];
        let a: Vec<f64> = z.iter().map(|v| v.tanh()).collect();
        let d0 = [1.0, 2.0, -3.0, 0.5, 1.0, f64::INFINITY, 2.0, -1.0, 0.25, 8.0];
        for isa in Isa::all() {
            let mut d = d0;
            tanh_backward_slice_with(isa, &mut d, &a);
            for i in 0..z.len() {
                let want = d0[i] * (1.0 - a[i] * a[i]);
                assert!(d[i].to_bits() == want.to_bits() || (d[i].is_nan() && want.is_nan()));
            }
            let mut d = d0;
            relu_backward_slice_with(isa, &mut d, &z);
            for i in 0..z.len() {
                let want = d0[i] * if z[i] > 0.0 { 1.0 } else { 0.0 };
                assert_eq!(d[i].to_bits(), want.to_bits(), "{}: relu' at {}", isa.path(), z[i]);
            }
        }
    }

    #[test]
    fn relu_slice_on_every_path() {
        let z = [-2.0, -0.0, 0.0, 1.5, f64::NAN, f64::INFINITY, -1e-300, 3.0, -4.0];
        for isa in Isa::all() {
            let mut out = [7.0; 9];
            relu_slice_with(isa, &mut out, &z);
            for (o, v) in out.iter().zip(&z) {
                // (The sign of a zero result is unspecified, as for `f64::max`.)
                assert_eq!(*o, v.max(0.0), "{}: relu({v})", isa.path());
            }
        }
    }
}
