//! Elementary functions for the hot loops: a `tanh` that the compiler can vectorize.
//!
//! libm's `tanh` (with the `expm1` it calls) is a scalar function call per element and took about
//! half of a tanh-MLP step (100-256-100, S = 64). [`tanh`] is branch-free straight-line code (the
//! loops that apply it compile to AVX-512/AVX2 instructions), accurate to a few ulp: the test below
//! bounds its error by 4 ulp (≈ 9·10⁻¹⁶ relative) against the platform's `tanh` over the whole
//! range. It is used wherever the models evaluate tanh (MLP activations, Net-A/B, the tanh teacher,
//! the dual numbers of the curvature code), so losses, gradients and Hessians stay mutually exact.

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
fn expm1_pos(y: f64) -> f64 {
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
        p = fma(p, r, *c);
    }
    let em = r * p;
    // 2ᵏ from the integer k held in the low bits of kr (k ≤ 65 here).
    let s = f64::from_bits(((kr.to_bits() as i64 - ROUND.to_bits() as i64 + 1023) as u64) << 52);
    fma(s, em, s - 1.0)
}

#[inline(always)]
fn fma(a: f64, b: f64, c: f64) -> f64 {
    #[cfg(target_feature = "fma")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        a * b + c
    }
}

/// `tanh x` to a few ulp, branch-free so that loops over it vectorize: `tanh |x| = e/(e + 2)` with
/// `e = expm1(2|x|)`, the sign restored, `|x|` capped at 22 (where tanh rounds to ±1). NaN in,
/// NaN out.
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    // `>` (not `min`) so that NaN passes through.
    let a = if a > 22.0 { 22.0 } else { a };
    let e = expm1_pos(2.0 * a);
    (e / (e + 2.0)).copysign(x)
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
    fn tanh_matches_libm_within_4_ulp() {
        let mut r = Rng::new(3);
        let mut worst: f64 = 0.0;
        let mut check = |x: f64| {
            let (got, want) = (tanh(x), x.tanh());
            let u = ulps(got, want);
            assert!(u <= 4.0, "tanh({x:e}) = {got:e}, libm {want:e} ({u} ulp)");
            worst = worst.max(u);
        };
        for _ in 0..400_000 {
            // Log-uniform magnitudes from 1e-300 to 30 and both signs.
            let m = (10f64).powf(-300.0 + 301.48 * r.uniform());
            check(if r.uniform() < 0.5 { m } else { -m });
            check(60.0 * r.uniform() - 30.0);
            check(2.0 * r.uniform() - 1.0);
        }
        for x in [
            0.0, -0.0, 1e-310, 0.3465, 0.3466, 0.5, 1.0, 18.0, 19.06, 21.9, 22.0, 22.1, 700.0, 1e308,
        ] {
            check(x);
            check(-x);
        }
        assert_eq!(tanh(f64::INFINITY), 1.0);
        assert_eq!(tanh(f64::NEG_INFINITY), -1.0);
        assert!(tanh(f64::NAN).is_nan());
        assert!(tanh(-0.0).is_sign_negative());
        eprintln!("worst tanh error: {worst} ulp");
        assert!(worst <= 4.0);
    }
}
