//! A test helper for layers with parameters: the backward pass and the R-operator of any
//! [`Layer`] against central differences of its forward and backward passes, and its per-sample
//! statistics against one backward pass per sample.

use super::{Fwd, Layer, RFwd};
use crate::core::rng::Rng;

/// Runs forward and backward (α = 1) at `(p, x)` with `dy`: `(y, saved, dx, g)`.
fn passes(l: &dyn Layer, p: &[f64], x: &[f64], dy: &[f64], b: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut scratch = vec![0.0; l.scratch_len(b)];
    let mut y = vec![0.0; b * l.out_dim()];
    let mut saved = vec![0.0; b * l.saved_per_sample()];
    l.forward(p, x, &mut y, &mut saved, b, &mut scratch);
    let (mut dx, mut g) = (vec![0.0; b * l.in_dim()], vec![0.0; l.n_params()]);
    let f = Fwd {
        x,
        y: &y,
        saved: &saved,
    };
    l.backward(p, f, dy, Some(&mut dx), Some(&mut g), 1.0, b, &mut scratch);
    (y, saved, dx, g)
}

/// Checks `l` at parameters `p` and inputs `x` (`b` samples) along random directions (seeded):
/// the gradient `(dx, g)` against the central difference of `Σ dy · y`, and `R{y}`, `R{dx}` and
/// `R{g}` against central differences of `y`, `dx` and `g` along `(v, rx, rdy)`, each to
/// `tol · (1 + |value|)` with step `h`; and `grad_sq`, `grad_quad` against a per-sample loop of
/// backward passes (to 1e-12 relative: the same sums). The caller derives `tol` from `h`.
pub(crate) fn check(l: &dyn Layer, p: &[f64], x: &[f64], b: usize, h: f64, tol: f64) {
    let (n_in, n_out, np) = (b * l.in_dim(), b * l.out_dim(), l.n_params());
    let mut rng = Rng::new(99);
    let mut draw = |n: usize| {
        let mut v = vec![0.0; n];
        rng.fill_normal(&mut v);
        v
    };
    let (dy, v, rx, rdy, dd) = (draw(n_out), draw(np), draw(n_in), draw(n_out), draw(np));
    let (y, saved, dx, g) = passes(l, p, x, &dy, b);
    let shift = |a: &[f64], d: &[f64], s: f64| -> Vec<f64> { a.iter().zip(d).map(|(a, d)| a + s * h * d).collect() };
    let at = |s: f64| passes(l, &shift(p, &v, s), &shift(x, &rx, s), &shift(&dy, &rdy, s), b);
    let ((yp, _, dxp, gp), (ym, _, dxm, gm)) = (at(1.0), at(-1.0));
    let cd = |a: &[f64], m: &[f64]| -> Vec<f64> { a.iter().zip(m).map(|(a, m)| (a - m) / (2.0 * h)).collect() };
    let fd: f64 = dy.iter().zip(cd(&yp, &ym)).map(|(a, b)| a * b).sum();
    let an: f64 =
        dx.iter().zip(&rx).map(|(a, r)| a * r).sum::<f64>() + g.iter().zip(&v).map(|(a, r)| a * r).sum::<f64>();
    assert!(
        (fd - an).abs() <= tol * (1.0 + an.abs()),
        "{}: gradient {an} vs {fd}",
        l.kind()
    );
    let f = Fwd {
        x,
        y: &y,
        saved: &saved,
    };
    let mut scratch = vec![0.0; l.scratch_len(b)];
    let mut ry = vec![0.0; n_out];
    l.rforward(p, &v, f, Some(&rx), &mut ry, b, &mut scratch);
    let r = RFwd {
        f,
        dy: &dy,
        dx: Some(&dx),
        rx: Some(&rx),
        ry: &ry,
    };
    let (mut rdx, mut hv) = (vec![0.0; n_in], vec![1.0; np]);
    l.rbackward(p, &v, r, &rdy, Some(&mut rdx), &mut hv, 1.0, b, &mut scratch);
    hv.iter_mut().for_each(|a| *a -= 1.0); // rbackward adds
    for (name, an, fd) in [
        ("R{y}", ry, cd(&yp, &ym)),
        ("R{dx}", rdx, cd(&dxp, &dxm)),
        ("R{g}", hv, cd(&gp, &gm)),
    ] {
        assert_eq!(an.len(), fd.len());
        for (k, (a, e)) in an.iter().zip(&fd).enumerate() {
            assert!(
                (a - e).abs() <= tol * (1.0 + e.abs()),
                "{}: {name}[{k}] {a} vs {e}",
                l.kind()
            );
        }
    }
    // Per-sample statistics against one backward pass per sample.
    let (mut sm, mut q) = (vec![0.0; np], vec![0.0; b]);
    l.grad_sq(p, f, &dy, b, &mut sm, &mut scratch);
    l.grad_quad(p, f, &dy, b, &dd, &mut q, &mut scratch);
    let (di, dout, ds) = (l.in_dim(), l.out_dim(), l.saved_per_sample());
    let (mut sm_e, mut q_e) = (vec![0.0; np], vec![0.0; b]);
    for i in 0..b {
        let fi = Fwd {
            x: &x[i * di..(i + 1) * di],
            y: &y[i * dout..(i + 1) * dout],
            saved: &saved[i * ds..(i + 1) * ds],
        };
        let mut gi = vec![0.0; np];
        let mut s1 = vec![0.0; l.scratch_len(1)];
        l.backward(
            p,
            fi,
            &dy[i * dout..(i + 1) * dout],
            None,
            Some(&mut gi),
            1.0,
            1,
            &mut s1,
        );
        for j in 0..np {
            sm_e[j] += gi[j] * gi[j];
            q_e[i] += gi[j] * gi[j] * dd[j];
        }
    }
    for (a, e) in sm.iter().zip(&sm_e).chain(q.iter().zip(&q_e)) {
        assert!(
            (a - e).abs() <= 1e-12 * (1.0 + e.abs()),
            "{}: statistics {a} vs {e}",
            l.kind()
        );
    }
}
