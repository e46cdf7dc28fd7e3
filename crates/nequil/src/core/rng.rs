//! A small, portable, seeded random number generator and a fast normal sampler.
//!
//! Runs must be bit-for-bit reproducible from their seed on any build of the same version, so the
//! generator is implemented here (xoshiro256++, seeded through SplitMix64) rather than taken from a
//! crate whose stream may change between versions. Normals use a 128-layer ziggurat, which needs
//! one 64-bit draw and a comparison for ~99% of samples.

/// xoshiro256++ generator (Blackman & Vigna). Period 2²⁵⁶ − 1; passes BigCrush.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from `seed` through SplitMix64 (any seed, including 0, is valid).
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// An independent stream derived from this seed and a stream label (e.g. "init", "data").
    pub fn derive(seed: u64, label: &str) -> Self {
        // FNV-1a of the label, mixed with the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in label.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng::new(seed ^ h.rotate_left(17))
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform draw from `[0, 1)` with 53 bits of precision.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform index in `0..n` (Lemire's multiply-shift with rejection; unbiased). `n > 0`.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        let n = n as u64;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let lo = m as u64;
            if lo >= n || lo >= n.wrapping_neg() % n {
                return (m >> 64) as usize;
            }
        }
    }

    /// A standard normal draw `N(0, 1)` (128-layer ziggurat of Marsaglia & Tsang, in Doornik's
    /// ZIGNOR form; exact, not an approximation: rejected points fall back to the density).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        self.normal_with(zig())
    }

    /// [`Rng::normal`] with the ziggurat tables already at hand (loops fetch them once).
    #[inline(always)]
    fn normal_with(&mut self, z: &Ziggurat) -> f64 {
        loop {
            let bits = self.next_u64();
            let i = (bits & 0x7F) as usize;
            let u = 2.0 * ((bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)) - 1.0;
            if u.abs() < z.ratio[i] {
                return u * z.x[i];
            }
            if let Some(v) = self.normal_slow(u, i, z) {
                return v;
            }
        }
    }

    #[cold]
    fn normal_slow(&mut self, u: f64, i: usize, z: &Ziggurat) -> Option<f64> {
        if i == 0 {
            // The tail beyond R, by Marsaglia's exponential rejection.
            loop {
                let x = -(1.0 - self.uniform()).ln() / ZIG_R;
                let y = -(1.0 - self.uniform()).ln();
                if 2.0 * y > x * x {
                    return Some(if u < 0.0 { -(x + ZIG_R) } else { x + ZIG_R });
                }
            }
        }
        let x = u * z.x[i];
        let f0 = (-0.5 * (z.x[i] * z.x[i] - x * x)).exp();
        let f1 = (-0.5 * (z.x[i + 1] * z.x[i + 1] - x * x)).exp();
        if f1 + self.uniform() * (f0 - f1) < 1.0 {
            Some(x)
        } else {
            None
        }
    }

    /// Fills `out` with independent standard normals.
    #[inline]
    pub fn fill_normal(&mut self, out: &mut [f64]) {
        let z = zig();
        for o in out.iter_mut() {
            *o = self.normal_with(z);
        }
    }

    /// `out[i] = add[i] + scale[i] · zᵢ` with independent standard normals `zᵢ` drawn in order (the
    /// same draws as [`Rng::fill_normal`]). The three slices must have equal lengths.
    #[inline]
    pub fn fill_normal_scaled(&mut self, out: &mut [f64], scale: &[f64], add: Option<&[f64]>) {
        debug_assert!(scale.len() == out.len() && add.is_none_or(|a| a.len() == out.len()));
        let z = zig();
        match add {
            None => {
                for (o, s) in out.iter_mut().zip(scale) {
                    *o = s * self.normal_with(z);
                }
            }
            Some(a) => {
                for ((o, s), a) in out.iter_mut().zip(scale).zip(a) {
                    *o = a + s * self.normal_with(z);
                }
            }
        }
    }

    /// A uniformly random permutation of `0..n` written into `out` (Fisher–Yates).
    pub fn shuffle(&mut self, out: &mut [usize]) {
        for i in (1..out.len()).rev() {
            let j = self.below(i + 1);
            out.swap(i, j);
        }
    }
}

const ZIG_R: f64 = 3.442_619_855_899;
const ZIG_V: f64 = 9.912_563_035_262_17e-3;

struct Ziggurat {
    x: [f64; 129],
    ratio: [f64; 128],
}

fn zig() -> &'static Ziggurat {
    static Z: std::sync::OnceLock<Ziggurat> = std::sync::OnceLock::new();
    Z.get_or_init(|| {
        let mut x = [0.0; 129];
        let mut f = (-0.5 * ZIG_R * ZIG_R).exp();
        x[0] = ZIG_V / f;
        x[1] = ZIG_R;
        for i in 2..128 {
            x[i] = (-2.0 * (ZIG_V / x[i - 1] + f).ln()).sqrt();
            f = (-0.5 * x[i] * x[i]).exp();
        }
        x[128] = 0.0;
        let mut ratio = [0.0; 128];
        for i in 0..128 {
            ratio[i] = x[i + 1] / x[i];
        }
        Ziggurat { x, ratio }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let (mut m1, mut m2, mut m4) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let z = r.normal();
            m1 += z;
            m2 += z * z;
            m4 += z * z * z * z;
        }
        let nf = n as f64;
        // Standard errors: mean 1/sqrt(n), second moment sqrt(2/n), fourth sqrt(96/n).
        assert!((m1 / nf).abs() < 5.0 / nf.sqrt());
        assert!((m2 / nf - 1.0).abs() < 5.0 * (2.0 / nf).sqrt());
        assert!((m4 / nf - 3.0).abs() < 5.0 * (96.0 / nf).sqrt());
    }

    #[test]
    fn normal_cdf_matches() {
        // Empirical CDF at several points, including the ziggurat's tail beyond R = 3.44.
        let mut r = Rng::new(11);
        let n = 2_000_000;
        let pts = [-3.6, -2.0, -1.0, -0.3, 0.0, 0.5, 1.5, 3.0, 3.6];
        let cdf = [
            1.591e-4, 0.022750, 0.158655, 0.382089, 0.5, 0.691462, 0.933193, 0.998650, 0.999841,
        ];
        let mut counts = [0usize; 9];
        for _ in 0..n {
            let z = r.normal();
            for (c, p) in counts.iter_mut().zip(pts) {
                if z <= p {
                    *c += 1;
                }
            }
        }
        for i in 0..pts.len() {
            let p = counts[i] as f64 / n as f64;
            let se = (cdf[i] * (1.0 - cdf[i]) / n as f64).sqrt();
            assert!(
                (p - cdf[i]).abs() < 5.0 * se + 1e-6,
                "P(z ≤ {}) = {p}, expected {}",
                pts[i],
                cdf[i]
            );
        }
    }

    #[test]
    fn below_is_in_range_and_uniform() {
        let mut r = Rng::new(3);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[r.below(7)] += 1;
        }
        for c in counts {
            // Binomial(70000, 1/7): sd ≈ 92.6.
            assert!((c as f64 - 10_000.0).abs() < 5.0 * 92.6);
        }
    }

    #[test]
    fn reproducible() {
        let mut a = Rng::derive(5, "data");
        let mut b = Rng::derive(5, "data");
        let mut c = Rng::derive(5, "init");
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }
}
