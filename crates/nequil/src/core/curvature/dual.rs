//! Forward-mode dual numbers and a generic re-implementation of the Net-A / Net-B mean-loss
//! gradient, so that the gradient evaluated at `θ + εv` (with `ε² = 0`) carries `Hv` in its
//! ε-part: an exact Hessian-vector product, no finite differences.

use crate::core::models::ScaleKind;
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
}

/// A dual number `v + d·ε` with `ε² = 0`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
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
}

/// Per-sample scratch of the generic Net-A / Net-B gradient.
#[derive(Clone, Debug, Default)]
pub(crate) struct ScaleScratch<T> {
    z: Vec<T>,
    a: Vec<T>,
    r: Vec<T>,
}

impl<T: Num> ScaleScratch<T> {
    pub(crate) fn new(h: usize, d_out: usize) -> Self {
        ScaleScratch {
            z: vec![T::cst(0.0); h],
            a: vec![T::cst(0.0); h],
            r: vec![T::cst(0.0); d_out],
        }
    }
}

/// The mean-loss gradient of Net-A / Net-B (`models/scale.rs`) over `n` samples, generic in the
/// scalar type, written into `grad` (length P). θ = `[W (h × d_in), U (d_out × h)]`, row-major.
/// Returns the mean loss. Allocation-free.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scale_grad<T: Num>(
    kind: ScaleKind,
    widths: &[usize],
    theta: &[T],
    x: &[f64],
    y: &[f64],
    n: usize,
    grad: &mut [T],
    s: &mut ScaleScratch<T>,
) -> T {
    let (din, h, dout) = (widths[0], widths[1], widths[2]);
    let nwp = din * h;
    let (w, u) = theta.split_at(nwp);
    let zero = T::cst(0.0);
    let sumsq = |v: &[T]| v.iter().fold(zero, |acc, &e| acc + e * e);
    let (nu2, nw2) = (sumsq(u), sumsq(w));
    let (nu, nw) = (nu2.sqrt(), nw2.sqrt());
    let (s_in, s_out) = match kind {
        ScaleKind::NetA => (nu.recip(), nw.recip()),
        ScaleKind::NetB => (nw.recip(), nu.recip()),
    };
    grad.iter_mut().for_each(|g| *g = zero);
    let (gw, gu) = grad.split_at_mut(nwp);
    let (mut rf, mut dz, mut loss) = (zero, zero, zero);
    for i in 0..n {
        let xi = &x[i * din..(i + 1) * din];
        let yi = &y[i * dout..(i + 1) * dout];
        for j in 0..h {
            let row = &w[j * din..(j + 1) * din];
            let mut acc = zero;
            for (wv, xv) in row.iter().zip(xi) {
                acc += wv.scale(*xv);
            }
            let zj = acc * s_in;
            s.z[j] = zj;
            s.a[j] = zj.tanh();
        }
        for o in 0..dout {
            let row = &u[o * h..(o + 1) * h];
            let mut acc = zero;
            for (uv, av) in row.iter().zip(&s.a) {
                acc += *uv * *av;
            }
            let f = acc * s_out;
            let e = f - T::cst(yi[o]);
            loss += e * e;
            let r = e.scale(2.0);
            rf += r * f;
            s.r[o] = r;
            let rs = r * s_out;
            for (g, av) in gu[o * h..(o + 1) * h].iter_mut().zip(&s.a) {
                *g += rs * *av;
            }
        }
        for j in 0..h {
            let mut q = zero;
            for o in 0..dout {
                q += s.r[o] * u[o * h + j];
            }
            let aj = s.a[j];
            let dj = q * s_out * (T::cst(1.0) - aj * aj);
            dz += dj * s.z[j];
            let ds = dj * s_in;
            for (g, xv) in gw[j * din..(j + 1) * din].iter_mut().zip(xi) {
                *g += ds.scale(*xv);
            }
        }
    }
    let inv_n = 1.0 / n as f64;
    let (cu, cw) = match kind {
        ScaleKind::NetA => (
            (zero - dz.scale(inv_n)) * nu2.recip(),
            (zero - rf.scale(inv_n)) * nw2.recip(),
        ),
        ScaleKind::NetB => (
            (zero - rf.scale(inv_n)) * nu2.recip(),
            (zero - dz.scale(inv_n)) * nw2.recip(),
        ),
    };
    for (g, v) in gu.iter_mut().zip(u) {
        *g = g.scale(inv_n) + cu * *v;
    }
    for (g, v) in gw.iter_mut().zip(w) {
        *g = g.scale(inv_n) + cw * *v;
    }
    loss.scale(inv_n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::models::{Init, Model, ScaleNet};
    use crate::core::rng::Rng;

    /// The f64 instance of the generic gradient reproduces the model's own gradient.
    #[test]
    fn generic_gradient_matches_model() {
        for kind in [ScaleKind::NetA, ScaleKind::NetB] {
            let net = ScaleNet::new(kind, 3, 4, 2).unwrap();
            let widths = net.widths().to_vec();
            let model = Model::Scale(net);
            let mut rng = Rng::new(11);
            let theta = model.init(&Init::Xavier, &mut rng).unwrap();
            let n = 7;
            let mut x = vec![0.0; n * 3];
            let mut y = vec![0.0; n * 2];
            rng.fill_normal(&mut x);
            rng.fill_normal(&mut y);
            let mut ws = model.workspace(n);
            let mut g0 = vec![0.0; model.n_params()];
            let l0 = model.loss_grad(&theta, &x, &y, n, &mut g0, &mut ws);
            let mut g1 = vec![0.0; model.n_params()];
            let mut s = ScaleScratch::new(4, 2);
            let l1 = scale_grad(kind, &widths, &theta, &x, &y, n, &mut g1, &mut s);
            assert!((l0 - l1).abs() < 1e-12 * (1.0 + l0.abs()));
            for (a, b) in g0.iter().zip(&g1) {
                assert!((a - b).abs() < 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }
}
