//! A small, portable, seeded random number generator and a fast normal sampler.
//!
//! Runs must be bit-for-bit reproducible from their seed on any build of the same version, so the
//! generator is implemented here (xoshiro256++, seeded through SplitMix64) rather than taken from a
//! crate whose stream may change between versions. Normals use the Marsaglia polar method, which
//! produces two independent `N(0, 1)` draws per accepted pair and needs only `ln` and `sqrt`.

/// xoshiro256++ generator (Blackman & Vigna). Period 2²⁵⁶ − 1; passes BigCrush.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
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
        Rng { s, spare: None }
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

    /// A standard normal draw `N(0, 1)`.
    #[inline]
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * s.ln() / s).sqrt();
                self.spare = Some(v * f);
                return u * f;
            }
        }
    }

    /// Fills `out` with independent standard normals.
    #[inline]
    pub fn fill_normal(&mut self, out: &mut [f64]) {
        for o in out.iter_mut() {
            *o = self.normal();
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
