//! Elementary functions for the hot loops: a `tanh` that vectorizes, slice maps dispatched
//! to the CPU's SIMD path, and the error function ([`erf`], [`erfc`]; GELU's `Φ`).
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

// ---------------------------------------------------------------------------------------------
// The error function.
//
// `erf x = (2/√π) ∫₀ˣ e^{−t²} dt` and `erfc x = 1 − erf x`, to a few ulp in double precision
// (the test bounds the relative error by 10⁻¹⁵ at 200 points from 0 to 26.5 against 40-digit
// references, and checks the symmetries). For `|x| < 1/2`: the Taylor series of `erf`. For
// `x ≥ 1/2`: `erfc x = e^{−x²} g(x)` with `g` smooth and slowly varying, interpolated by Chebyshev
// series on `[1/2, 1]`, `[1, 2]`, `[2, 4]`, `[4, 8]` and, for `x ≥ 8`, as `h(1/x²)/x` (the
// coefficients were computed at 40 digits from Chebyshev interpolation at the Chebyshev points;
// each series's truncation error is below 10⁻¹⁷ relative). `e^{−x²}` takes `x²` as an exact sum
// `hi + lo` (Dekker's product), so that the large exponent loses nothing to the rounding of `x²`.
// Negative arguments by `erf(−x) = −erf x` and `erfc(−x) = 2 − erfc x`.
// ---------------------------------------------------------------------------------------------

/// Chebyshev coefficients of `g(x) = e^{x²} erfc x` on `[1/2, 1]` (variable `t = 4x − 3`).
const ERFC_C1: [f64; 14] = [
    0.5142540300448141,
    -0.09353436157631646,
    0.007349543567965961,
    -0.0005170287683170955,
    3.327489181039832e-05,
    -1.9877609419315706e-06,
    1.1137198399251981e-07,
    -5.898649609389129e-09,
    2.9712990142852805e-10,
    -1.430488185776242e-11,
    6.608616284222898e-13,
    -2.939555278237893e-14,
    1.2624996910923745e-15,
    -5.240060859272093e-17,
];
/// Chebyshev coefficients of `g(x) = e^{x²} erfc x` on `[1, 2]` (variable `t = 2x − 3`).
const ERFC_C2: [f64; 17] = [
    0.331427281639452,
    -0.0850021377067432,
    0.009951127341466115,
    -0.0010810888102208325,
    0.0001102324363119495,
    -1.0636830518218601e-05,
    9.775012680479055e-07,
    -8.597922867888315e-08,
    7.2677084117248425e-09,
    -5.923543840592542e-10,
    4.6683928572294154e-11,
    -3.5661277015677288e-12,
    2.645877951906767e-13,
    -1.9101658667347927e-14,
    1.3439764866689656e-15,
    -9.22862586358592e-17,
    6.166538925305747e-18,
];
/// Chebyshev coefficients of `g(x) = e^{x²} erfc x` on `[2, 4]` (variable `t = x − 3`).
const ERFC_C3: [f64; 19] = [
    0.1874295690262241,
    -0.05794652883669097,
    0.008595247387396534,
    -0.0012284613640242594,
    0.00016974366686180488,
    -2.2738329337044562e-05,
    2.959844378804878e-06,
    -3.7513575581379714e-07,
    4.6372828761738244e-08,
    -5.599455392564088e-09,
    6.613160896679916e-10,
    -7.648271522199816e-11,
    8.6709043258765e-12,
    -9.645456274371989e-13,
    1.0536827958274151e-13,
    -1.1312630791525853e-14,
    1.1945168599792162e-15,
    -1.2411859700371542e-16,
    1.2575168967414823e-17,
];
/// Chebyshev coefficients of `g(x) = e^{x²} erfc x` on `[4, 8]` (variable `t = x/2 − 3`).
const ERFC_C4: [f64; 21] = [
    0.09799557556862198,
    -0.03261716242283879,
    0.005354444513048941,
    -0.0008675085617618387,
    0.0001387834577332989,
    -2.1933248302183236e-05,
    3.425716824410705e-06,
    -5.289955530513349e-07,
    8.079076527537946e-08,
    -1.2207511691612988e-08,
    1.8255151508559988e-09,
    -2.7024969193563974e-10,
    3.9617523035370546e-11,
    -5.7526190432001634e-12,
    8.275752891376922e-13,
    -1.1798167744005172e-13,
    1.6671816834115386e-14,
    -2.3356284858639493e-15,
    3.2446002710824344e-16,
    -4.468901482994143e-17,
    5.998323769100549e-18,
];
/// Chebyshev coefficients of `h(s) = x·g(x)` as a function of `s = 1/x² ∈ [0, 1/64]` (`x ≥ 8`,
/// variable `t = 128 s − 1`); `h(0) = 1/√π`.
const ERFC_TAIL: [f64; 10] = [
    0.5620232535497205,
    -0.002154013397999809,
    1.2201568452414311e-05,
    -1.1354857606087159e-07,
    1.4587616832425226e-09,
    -2.3767849239084605e-11,
    4.670311262343325e-13,
    -1.0705011190578531e-14,
    2.7953626725767493e-16,
    -8.160890983679291e-18,
];
/// Taylor coefficients of `erf x = x Σ aₙ x²ⁿ`, `aₙ = (2/√π)(−1)ⁿ/(n!(2n+1))`, to `n = 14`
/// (for `|x| < 1/2` the first omitted term is below 10⁻¹⁹ relative).
const ERF_TAYLOR: [f64; 15] = [
    std::f64::consts::FRAC_2_SQRT_PI,
    -0.37612638903183754,
    0.11283791670955126,
    -0.026866170645131252,
    0.005223977625442188,
    -0.0008548327023450853,
    0.00012055332981789664,
    -1.492565035840625e-05,
    1.6462114365889248e-06,
    -1.6365844691234924e-07,
    1.4807192815879218e-08,
    -1.2290555301717928e-09,
    9.422759064650411e-11,
    -6.7113668551641105e-12,
    4.4632242632864775e-13,
];

/// `Σ cⱼ Tⱼ(t)` by Clenshaw's recurrence (`t ∈ [−1, 1]`).
#[inline(always)]
fn clenshaw(c: &[f64], t: f64) -> f64 {
    let (mut b1, mut b2) = (0.0, 0.0);
    for &cj in c[1..].iter().rev() {
        let b0 = 2.0 * t * b1 - b2 + cj;
        b2 = b1;
        b1 = b0;
    }
    t * b1 - b2 + c[0]
}

/// `e^{−x²}` for `0 ≤ x < 2²⁷`, with `x² = hi + lo` exactly (Dekker's split of `x` into two
/// 26-bit halves) and `e^{−lo} ≈ 1 − lo` (`|lo| ≤ 2⁻⁵³ hi`).
#[inline(always)]
fn exp_neg_sq(x: f64) -> f64 {
    let hi = x * x;
    let c = 134_217_729.0 * x; // 2²⁷ + 1
    let xh = c - (c - x);
    let xl = x - xh;
    let lo = ((xh * xh - hi) + 2.0 * xh * xl) + xl * xl;
    (-hi).exp() * (1.0 - lo)
}

/// `erfc x` for `x ≥ 1/2` (or `+∞`).
#[inline(always)]
fn erfc_from_half(x: f64) -> f64 {
    if x >= 27.5 {
        // erfc(27.5) < 10⁻³³⁰: below the smallest subnormal.
        return 0.0;
    }
    let g = if x < 1.0 {
        clenshaw(&ERFC_C1, 4.0 * x - 3.0)
    } else if x < 2.0 {
        clenshaw(&ERFC_C2, 2.0 * x - 3.0)
    } else if x < 4.0 {
        clenshaw(&ERFC_C3, x - 3.0)
    } else if x < 8.0 {
        clenshaw(&ERFC_C4, 0.5 * x - 3.0)
    } else {
        clenshaw(&ERFC_TAIL, 128.0 / (x * x) - 1.0) / x
    };
    exp_neg_sq(x) * g
}

/// `erf x` for `|x| < 1/2`, by its Taylor series.
#[inline(always)]
fn erf_small(x: f64) -> f64 {
    let z = x * x;
    let mut p = ERF_TAYLOR[ERF_TAYLOR.len() - 1];
    for a in ERF_TAYLOR[..ERF_TAYLOR.len() - 1].iter().rev() {
        p = p * z + a;
    }
    x * p
}

/// The error function `erf x = (2/√π) ∫₀ˣ e^{−t²} dt`, relative error below 10⁻¹⁵ (a few ulp).
/// Odd (`erf(−x) = −erf x` exactly); `erf(±∞) = ±1`; NaN in, NaN out.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    if a < 0.5 {
        erf_small(x)
    } else if a.is_nan() {
        x
    } else {
        (1.0 - erfc_from_half(a)).copysign(x)
    }
}

/// The complementary error function `erfc x = 1 − erf x`, computed without the cancellation of
/// `1 − erf x`: relative error below 10⁻¹⁵ wherever the result is a normal number (`x < 26.5`),
/// so `erfc 5 ≈ 1.54·10⁻¹²` keeps all its digits. `erfc(−∞) = 2`, `erfc(+∞) = 0`; NaN in, NaN out.
pub fn erfc(x: f64) -> f64 {
    if x.abs() < 0.5 {
        1.0 - erf_small(x)
    } else if x.is_nan() {
        x
    } else if x > 0.0 {
        erfc_from_half(x)
    } else {
        2.0 - erfc_from_half(-x)
    }
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
    /// `(x, erf x, erfc x)` at 40 digits (mpmath), rounded to double.
    #[rustfmt::skip]
    const ERF_TABLE: [(f64, f64, f64); 209] = [
        (0.137, 0.15362621367822615, 0.8463737863217738),
        (0.274, 0.3016098560204796, 0.6983901439795204),
        (0.41100000000000003, 0.43892248316570687, 0.5610775168342931),
        (0.548, 0.5616538594711392, 0.4383461405288608),
        (0.685, 0.66732321897498, 0.33267678102501996),
        (0.8220000000000001, 0.7549608964648019, 0.24503910353519806),
        (0.9590000000000001, 0.824974256844509, 0.175025743155491),
        (1.096, 0.8788532189581235, 0.1211467810418765),
        (1.233, 0.9187930023690725, 0.08120699763092758),
        (1.37, 0.947312398035252, 0.052687601964748),
        (1.5070000000000001, 0.9669289646082262, 0.033071035391773834),
        (1.6440000000000001, 0.9799262803302469, 0.02007371966975317),
        (1.7810000000000001, 0.9882215833933181, 0.011778416606681896),
        (1.9180000000000001, 0.9933214483689883, 0.00667855163101167),
        (2.055, 0.9963416284501565, 0.0036583715498434604),
        (2.192, 0.9980645069150158, 0.0019354930849842258),
        (2.329, 0.9990112322165244, 0.0009887677834756017),
        (2.466, 0.999512351080692, 0.00048764891930799174),
        (2.603, 0.9997678592721578, 0.00023214072784215583),
        (2.74, 0.9998933512859194, 0.00010664871408061173),
        (2.8770000000000002, 0.9999527222911869, 4.727770881306663e-05),
        (3.0140000000000002, 0.9999797792906459, 2.0220709354135164e-05),
        (3.1510000000000002, 0.9999916569710878, 8.34302891219867e-06),
        (3.2880000000000003, 0.9999966795904287, 3.320409571345514e-06),
        (3.4250000000000003, 0.9999987254478377, 1.2745521622090619e-06),
        (3.5620000000000003, 0.9999995281727942, 4.718272056967296e-07),
        (3.6990000000000003, 0.9999998315649234, 1.684350765761342e-07),
        (3.8360000000000003, 0.9999999420205444, 5.7979455549870306e-08),
        (3.9730000000000003, 0.9999999807567541, 1.9243245861183967e-08),
        (4.11, 0.9999999938423056, 6.157694402920384e-09),
        (4.247, 0.9999999981003712, 1.8996287606507044e-09),
        (4.384, 0.9999999994350536, 5.649464754164414e-10),
        (4.521000000000001, 0.9999999998380381, 1.6196186423932338e-10),
        (4.658, 0.9999999999552425, 4.475748348506641e-11),
        (4.795, 0.999999999988078, 1.1921968319695855e-11),
        (4.932, 0.9999999999969391, 3.0608565024906517e-12),
        (5.069000000000001, 0.9999999999992426, 7.574171997065369e-13),
        (5.206, 0.9999999999998194, 1.8063841408099269e-13),
        (5.343, 0.9999999999999585, 4.1519715825271446e-14),
        (5.48, 0.9999999999999908, 9.197195205848413e-15),
        (5.617000000000001, 0.999999999999998, 1.9633670222340122e-15),
        (5.7540000000000004, 0.9999999999999996, 4.0390727642443247e-16),
        (5.891, 0.9999999999999999, 8.007292530319146e-17),
        (6.0280000000000005, 1.0, 1.5296917314844002e-17),
        (6.165000000000001, 1.0, 2.8159653808335394e-18),
        (6.3020000000000005, 1.0, 4.995136659267931e-19),
        (6.439, 1.0, 8.537999232320939e-20),
        (6.5760000000000005, 1.0, 1.4061964206538856e-20),
        (6.713000000000001, 1.0, 2.231566834343782e-21),
        (6.8500000000000005, 1.0, 3.412252278899654e-22),
        (6.987, 1.0, 5.027283188000633e-23),
        (7.1240000000000006, 1.0, 7.136422466185449e-24),
        (7.261000000000001, 1.0, 9.76061220449531e-25),
        (7.398000000000001, 1.0, 1.2862265984974157e-25),
        (7.535, 1.0, 1.6330396496655787e-26),
        (7.672000000000001, 1.0, 1.9976064863815642e-27),
        (7.809000000000001, 1.0, 2.354249627013434e-28),
        (7.946000000000001, 1.0, 2.673129884420069e-29),
        (8.083, 1.0, 2.9242090932766404e-30),
        (8.22, 1.0, 3.0818651100556137e-31),
        (8.357000000000001, 1.0, 3.1291896533615805e-32),
        (8.494, 1.0, 3.060973656802334e-33),
        (8.631, 1.0, 2.8846511522051373e-34),
        (8.768, 1.0, 2.6189651555327943e-35),
        (8.905000000000001, 1.0, 2.290686767293895e-36),
        (9.042000000000002, 1.0, 1.9301819633347035e-37),
        (9.179, 1.0, 1.5668393871795592e-38),
        (9.316, 1.0, 1.2252977417246698e-39),
        (9.453000000000001, 1.0, 9.230964294262672e-41),
        (9.59, 1.0, 6.699436317639909e-42),
        (9.727, 1.0, 4.683955729530809e-43),
        (9.864, 1.0, 3.154774316084819e-44),
        (10.001000000000001, 1.0, 2.046928016354973e-45),
        (10.138000000000002, 1.0, 1.279420937502829e-46),
        (10.275, 1.0, 7.70369145774453e-48),
        (10.412, 1.0, 4.468449599951633e-49),
        (10.549000000000001, 1.0, 2.496809982950223e-50),
        (10.686, 1.0, 1.3439494221691383e-51),
        (10.823, 1.0, 6.968629739749128e-53),
        (10.96, 1.0, 3.48078484844119e-54),
        (11.097000000000001, 1.0, 1.67482967974468e-55),
        (11.234000000000002, 1.0, 7.762939625783657e-57),
        (11.371, 1.0, 3.466109901244675e-58),
        (11.508000000000001, 1.0, 1.4907936412097805e-59),
        (11.645000000000001, 1.0, 6.176612980569746e-61),
        (11.782, 1.0, 2.465128286342565e-62),
        (11.919, 1.0, 9.477277685002328e-64),
        (12.056000000000001, 1.0, 3.5097917130140725e-65),
        (12.193000000000001, 1.0, 1.2520783203281644e-66),
        (12.330000000000002, 1.0, 4.3026186585908415e-68),
        (12.467, 1.0, 1.424243546009661e-69),
        (12.604000000000001, 1.0, 4.541345872727653e-71),
        (12.741000000000001, 1.0, 1.3948667491653874e-72),
        (12.878, 1.0, 4.126935001064387e-74),
        (13.015, 1.0, 1.1761650645063596e-75),
        (13.152000000000001, 1.0, 3.228893105818471e-77),
        (13.289000000000001, 1.0, 8.53852475568952e-79),
        (13.426000000000002, 1.0, 2.1749779747963446e-80),
        (13.563, 1.0, 5.336651283099519e-82),
        (13.700000000000001, 1.0, 1.2613158337408133e-83),
        (13.837000000000002, 1.0, 2.8715678082166e-85),
        (13.974, 1.0, 6.297289814612575e-87),
        (14.111, 1.0, 1.330230362905516e-88),
        (14.248000000000001, 1.0, 2.7066856467104056e-90),
        (14.385000000000002, 1.0, 5.305005155779613e-92),
        (14.522000000000002, 1.0, 1.0015441257183807e-93),
        (14.659, 1.0, 1.8213354220314147e-95),
        (14.796000000000001, 1.0, 3.1903964153787334e-97),
        (14.933000000000002, 1.0, 5.383113683968807e-99),
        (15.07, 1.0, 8.748950929170191e-101),
        (15.207, 1.0, 1.369655328417389e-102),
        (15.344000000000001, 1.0, 2.0653747167700323e-104),
        (15.481000000000002, 1.0, 2.999977962626772e-106),
        (15.618000000000002, 1.0, 4.1972836616118296e-108),
        (15.755, 1.0, 5.656516332991924e-110),
        (15.892000000000001, 1.0, 7.342765752327032e-112),
        (16.029, 1.0, 9.181204368825135e-114),
        (16.166, 1.0, 1.105779289910385e-115),
        (16.303, 1.0, 1.2828194665661956e-117),
        (16.44, 1.0, 1.4334759591988038e-119),
        (16.577, 1.0, 1.5429170219155793e-121),
        (16.714000000000002, 1.0, 1.599637311414342e-123),
        (16.851000000000003, 1.0, 1.5974482765881352e-125),
        (16.988, 1.0, 1.5365898023541699e-127),
        (17.125, 1.0, 1.4236869307494582e-129),
        (17.262, 1.0, 1.2705624584907345e-131),
        (17.399, 1.0, 1.0921997633646339e-133),
        (17.536, 1.0, 9.043410707471851e-136),
        (17.673000000000002, 1.0, 7.212505181042197e-138),
        (17.810000000000002, 1.0, 5.540683292377652e-140),
        (17.947000000000003, 1.0, 4.099807137504385e-142),
        (18.084000000000003, 1.0, 2.922039327347006e-144),
        (18.221, 1.0, 2.0059995905528845e-146),
        (18.358, 1.0, 1.3264699329865784e-148),
        (18.495, 1.0, 8.448612839417714e-151),
        (18.632, 1.0, 5.183158443311725e-153),
        (18.769000000000002, 1.0, 3.062839894540241e-155),
        (18.906000000000002, 1.0, 1.743309529491361e-157),
        (19.043000000000003, 1.0, 9.557510480667072e-160),
        (19.18, 1.0, 5.047017493114345e-162),
        (19.317, 1.0, 2.5671087711553973e-164),
        (19.454, 1.0, 1.2576878240507583e-166),
        (19.591, 1.0, 5.934993747799918e-169),
        (19.728, 1.0, 2.697653730462392e-171),
        (19.865000000000002, 1.0, 1.181055697052735e-173),
        (20.002000000000002, 1.0, 4.980495012823471e-176),
        (20.139000000000003, 1.0, 2.0229833919367628e-178),
        (20.276000000000003, 1.0, 7.914610193390424e-181),
        (20.413, 1.0, 2.9825235454351936e-183),
        (20.55, 1.0, 1.0825678077356827e-185),
        (20.687, 1.0, 3.7848001842232534e-188),
        (20.824, 1.0, 1.2745215207409212e-190),
        (20.961000000000002, 1.0, 4.133971827906315e-193),
        (21.098000000000003, 1.0, 1.2915277245310741e-195),
        (21.235000000000003, 1.0, 3.886472492365192e-198),
        (21.372, 1.0, 1.126478415885012e-200),
        (21.509, 1.0, 3.144889098016254e-203),
        (21.646, 1.0, 8.456735652293824e-206),
        (21.783, 1.0, 2.1903570554988477e-208),
        (21.92, 1.0, 5.464388917755207e-211),
        (22.057000000000002, 1.0, 1.313054043468394e-213),
        (22.194000000000003, 1.0, 3.03904903242167e-216),
        (22.331000000000003, 1.0, 6.774959684750028e-219),
        (22.468000000000004, 1.0, 1.4547535504037508e-221),
        (22.605, 1.0, 3.0087468068781373e-224),
        (22.742, 1.0, 5.993702353545226e-227),
        (22.879, 1.0, 1.150052921782441e-229),
        (23.016000000000002, 1.0, 2.125462352650862e-232),
        (23.153000000000002, 1.0, 3.783569911447223e-235),
        (23.290000000000003, 1.0, 6.487280622111392e-238),
        (23.427000000000003, 1.0, 1.0713614251672788e-240),
        (23.564, 1.0, 1.7042038874461972e-243),
        (23.701, 1.0, 2.6110738374169317e-246),
        (23.838, 1.0, 3.853262914717041e-249),
        (23.975, 1.0, 5.477089723702824e-252),
        (24.112000000000002, 1.0, 7.4986421677599855e-255),
        (24.249000000000002, 1.0, 9.8884177727487e-258),
        (24.386000000000003, 1.0, 1.2559785700797238e-260),
        (24.523000000000003, 1.0, 1.5365572447152211e-263),
        (24.660000000000004, 1.0, 1.8106153627703483e-266),
        (24.797, 1.0, 2.0550124140614314e-269),
        (24.934, 1.0, 2.246535804660473e-272),
        (25.071, 1.0, 2.3654988531022368e-275),
        (25.208000000000002, 1.0, 2.399067678337965e-278),
        (25.345000000000002, 1.0, 2.3435405854807867e-281),
        (25.482000000000003, 1.0, 2.205020049999021e-284),
        (25.619000000000003, 1.0, 1.998308594291781e-287),
        (25.756, 1.0, 1.7443048425276214e-290),
        (25.893, 1.0, 1.4665332132723685e-293),
        (26.03, 1.0, 1.1876021564627288e-296),
        (26.167, 1.0, 9.263166775404729e-300),
        (26.304000000000002, 1.0, 6.959167596346418e-303),
        (26.441000000000003, 1.0, 5.035751516581553e-306),
        (26.578000000000003, 1.0, 3.509783695293704e-309),
        (26.715000000000003, 1.0, 2.356163134513e-312),
        (26.852000000000004, 1.0, 1.52348853e-315),
        (26.989, 1.0, 9.48814e-319),
        (27.126, 1.0, 5.7e-322),
        (27.263, 1.0, 0.0),
        (1e-10, 1.1283791670955126e-10, 0.999999999887162),
        (0.001, 0.0011283787909692365, 0.9988716212090307),
        (0.4999999, 0.5204997899347843, 0.47950021006521576),
        (0.5, 0.5204998778130465, 0.4795001221869535),
        (1.0, 0.8427007929497149, 0.15729920705028513),
        (2.0, 0.9953222650189527, 0.004677734981047266),
        (4.0, 0.9999999845827421, 1.541725790028002e-08),
        (8.0, 1.0, 1.1224297172982926e-29),
        (7.9999999, 1.0, 1.1224315270065424e-29),
        (26.5, 1.0, 2.2109076642637343e-307),
    ];

    #[test]
    fn erf_and_erfc_match_references_to_1e_15_relative() {
        let rel = |a: f64, b: f64| if a == b { 0.0 } else { (a - b).abs() / b.abs() };
        let mut worst: f64 = 0.0;
        for &(x, e, c) in ERF_TABLE.iter() {
            for (what, got, want) in [("erf", erf(x), e), ("erfc", erfc(x), c)] {
                let r = rel(got, want);
                assert!(r <= 1e-15, "{what}({x}) = {got:e}, reference {want:e} (relative {r:e})");
                worst = worst.max(r);
            }
            // Symmetries: erf is odd, erfc(−x) = 2 − erfc x.
            assert_eq!(erf(-x).to_bits(), (-erf(x)).to_bits(), "erf(-{x})");
            let r = rel(erfc(-x), 2.0 - c);
            assert!(r <= 1e-15, "erfc(-{x}) = {:e}, reference {:e}", erfc(-x), 2.0 - c);
        }
        eprintln!("worst relative error of erf/erfc: {worst:e}");
        // Known values.
        for (got, want) in [
            (erf(0.5), 0.5204998778130465),
            (erf(1.0), 0.8427007929497149),
            (erf(2.0), 0.9953222650189527),
            (erfc(3.0), 2.209049699858544e-05),
            (erfc(5.0), 1.537_459_794_428_035e-12),
        ] {
            assert!(rel(got, want) <= 1e-15, "{got:e} vs {want:e}");
        }
        // Tiny arguments: erf x = (2/√π) x to the last bit's neighbourhood.
        let x = 1e-300;
        assert!(rel(erf(x), std::f64::consts::FRAC_2_SQRT_PI * x) <= 1e-15);
        assert!(erf(-0.0) == 0.0 && erf(-0.0).is_sign_negative());
        // Continuity across the pieces' boundaries (1/2, 1, 2, 4, 8): the values at `b` and at the
        // double below differ by the true change (`|erfc'| δ = (2/√π) e^{−b²} δ`) within 1e-15.
        for b in [0.5f64, 1.0, 2.0, 4.0, 8.0] {
            let lo = f64::from_bits(b.to_bits() - 1);
            let change = std::f64::consts::FRAC_2_SQRT_PI * (-b * b).exp() * (b - lo);
            let (ce, ee) = (erfc(lo) - erfc(b), erf(b) - erf(lo));
            assert!(
                (ce - change).abs() <= 1e-15 * erfc(b),
                "erfc jumps at {b}: {ce:e} vs {change:e}"
            );
            assert!(
                (ee - change).abs() <= 1e-15 * erf(b),
                "erf jumps at {b}: {ee:e} vs {change:e}"
            );
        }
        // Limits and NaN.
        assert_eq!((erf(f64::INFINITY), erf(f64::NEG_INFINITY)), (1.0, -1.0));
        assert_eq!((erfc(f64::INFINITY), erfc(f64::NEG_INFINITY)), (0.0, 2.0));
        assert_eq!((erfc(30.0), erf(30.0)), (0.0, 1.0));
        assert!(erf(f64::NAN).is_nan() && erfc(f64::NAN).is_nan());
    }
}
