//! The scalar type a kernel computes in: `f64` (every result the library states today) or `f32`
//! (half the memory and twice the SIMD width, at a stated accuracy).
//!
//! A kernel written once, generic in [`Scalar`], runs at either precision; the engine stays `f64`
//! for now, and the first generic kernels are [`crate::core::layers::Linear::forward_as`] and
//! [`crate::core::layers::Linear::backward_as`]. Sums over samples and equilibrium solves are to
//! stay in `f64` when the engine grows an `f32` path (the paper's exact identities are `f64`
//! claims).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

/// A floating-point scalar: the arithmetic a kernel needs, its unit roundoff, and conversions to
/// and from `f64`.
pub trait Scalar:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// The machine epsilon (the gap between 1 and the next number; a rounding's relative error is
    /// at most half of it): 2⁻⁵² for `f64`, 2⁻²³ for `f32`.
    const EPSILON: f64;
    /// The type's name (`f32`, `f64`).
    const NAME: &'static str;
    /// The nearest value to `v`.
    fn from_f64(v: f64) -> Self;
    /// The value as `f64` (exact).
    fn to_f64(self) -> f64;
}

impl Scalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const EPSILON: f64 = f64::EPSILON;
    const NAME: &'static str = "f64";
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

impl Scalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const EPSILON: f64 = f32::EPSILON as f64;
    const NAME: &'static str = "f32";
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// `v` converted element by element (rounded to nearest).
pub fn convert<S: Scalar>(v: &[f64]) -> Vec<S> {
    v.iter().map(|&x| S::from_f64(x)).collect()
}
