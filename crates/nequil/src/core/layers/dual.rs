//! Forward-mode dual numbers `v + d·ε` (`ε² = 0`). A layer whose forward and backward passes are
//! written once, generic in [`Num`], gets its R-operator exactly by running them on duals: the
//! gradient at `θ + εv` carries `Hv` in its ε-part (no finite differences).

use std::ops::{Add, AddAssign, Mul, Sub};

/// The scalar operations the generic gradient needs.
pub(crate) trait Num: Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + AddAssign {
    /// A constant.
    fn cst(c: f64) -> Self;
    /// `self · c` for a plain number `c`.
    fn scale(self, c: f64) -> Self;
    /// `1 / self`.
    fn recip(self) -> Self;
    /// `tanh(self)`.
    fn tanh(self) -> Self;
    /// `√self`.
    fn sqrt(self) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// The value (the real part of a dual number).
    fn val(self) -> f64;
}

impl Num for f64 {
    #[inline]
    fn cst(c: f64) -> Self {
        c
    }
    #[inline]
    fn scale(self, c: f64) -> Self {
        self * c
    }
    #[inline]
    fn recip(self) -> Self {
        1.0 / self
    }
    #[inline]
    fn tanh(self) -> Self {
        crate::core::math::tanh(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline]
    fn val(self) -> f64 {
        self
    }
}

/// A dual number `v + d·ε` with `ε² = 0`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub(crate) struct Dual {
    /// Value.
    pub v: f64,
    /// Tangent (ε-part).
    pub d: f64,
}

impl Add for Dual {
    type Output = Dual;
    #[inline]
    fn add(self, o: Dual) -> Dual {
        Dual {
            v: self.v + o.v,
            d: self.d + o.d,
        }
    }
}
impl Sub for Dual {
    type Output = Dual;
    #[inline]
    fn sub(self, o: Dual) -> Dual {
        Dual {
            v: self.v - o.v,
            d: self.d - o.d,
        }
    }
}
impl Mul for Dual {
    type Output = Dual;
    #[inline]
    fn mul(self, o: Dual) -> Dual {
        Dual {
            v: self.v * o.v,
            d: self.d * o.v + self.v * o.d,
        }
    }
}
impl AddAssign for Dual {
    #[inline]
    fn add_assign(&mut self, o: Dual) {
        self.v += o.v;
        self.d += o.d;
    }
}

impl Num for Dual {
    #[inline]
    fn cst(c: f64) -> Self {
        Dual { v: c, d: 0.0 }
    }
    #[inline]
    fn scale(self, c: f64) -> Self {
        Dual {
            v: self.v * c,
            d: self.d * c,
        }
    }
    #[inline]
    fn recip(self) -> Self {
        let r = 1.0 / self.v;
        Dual {
            v: r,
            d: -self.d * r * r,
        }
    }
    #[inline]
    fn tanh(self) -> Self {
        let t = crate::core::math::tanh(self.v);
        Dual {
            v: t,
            d: self.d * (1.0 - t * t),
        }
    }
    #[inline]
    fn sqrt(self) -> Self {
        let s = self.v.sqrt();
        Dual {
            v: s,
            d: self.d * 0.5 / s,
        }
    }
    #[inline]
    fn exp(self) -> Self {
        let e = self.v.exp();
        Dual { v: e, d: self.d * e }
    }
    #[inline]
    fn val(self) -> f64 {
        self.v
    }
}

/// Views `2k` scratch values as `k` dual numbers.
pub(crate) fn as_duals(s: &mut [f64]) -> &mut [Dual] {
    let k = s.len() / 2;
    // SAFETY: `Dual` is `#[repr(C)]` with two `f64` fields, so it has the size of two `f64` and
    // the alignment of one; the first `2k` values of `s` are valid, initialized `f64`s, every bit
    // pattern of which is a valid `Dual`, and the returned slice borrows `s` mutably.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<Dual>(), k) }
}
