//! Checks shared by the tests of the parameter-free element-wise kinds (`gelu`, `softplus`,
//! `hardswish`): the input gradient and the R-operator against central differences.

use super::{Fwd, Layer, RFwd};
use crate::core::rng::Rng;

/// Checks `dx = φ'(x) ⊙ dy`, `R{y}` and `R{dx}` of the element-wise layer `l` at the inputs `x`
/// (`b` samples) against central differences of the forward and backward passes along a random
/// input direction `rx` (with `dy` moved along `rdy` too, so that `R{dy} = rdy`), element by
/// element.
///
/// With step `h`, a central difference of a function whose third derivative along the direction
/// is bounded by `M₃` errs by at most `h² M₃ / 6` (truncation) plus about `ε |value| / h`
/// (rounding). Each element's tolerance is that bound with `M₃ ≤ m3 · s³`, where `s` bounds
/// the sizes of the directions at that element and `m3` bounds the layer's derivatives up to the
/// fourth order on the tested inputs (the caller states it), times a safety factor of 4. The steps
/// must not cross a kink: checked against [`Layer::kink_distance`].
pub(crate) fn check_against_central_differences(l: &dyn Layer, x: &[f64], b: usize, m3: f64, seed: u64) {
    let n = b * l.out_dim();
    assert_eq!(x.len(), n);
    let mut rng = Rng::new(seed);
    let (mut dy, mut rx, mut rdy) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    rng.fill_normal(&mut dy);
    rng.fill_normal(&mut rx);
    rng.fill_normal(&mut rdy);
    let h = 1e-5;
    let reach = h * rx.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(l.kink_distance(&[], x, b) > 2.0 * reach, "the steps would cross a kink");
    let mut y = vec![0.0; n];
    l.forward(&[], x, &mut y, &mut [], b, &mut []);
    let f = Fwd { x, y: &y, saved: &[] };
    let mut dx = vec![0.0; n];
    l.backward(&[], f, &dy, Some(&mut dx), None, 1.0, b, &mut []);
    let at = |s: f64| {
        let xs: Vec<f64> = x.iter().zip(&rx).map(|(a, r)| a + s * h * r).collect();
        let dys: Vec<f64> = dy.iter().zip(&rdy).map(|(a, r)| a + s * h * r).collect();
        let mut ys = vec![0.0; n];
        l.forward(&[], &xs, &mut ys, &mut [], b, &mut []);
        let mut dxs = vec![0.0; n];
        let fs = Fwd {
            x: &xs,
            y: &ys,
            saved: &[],
        };
        l.backward(&[], fs, &dys, Some(&mut dxs), None, 1.0, b, &mut []);
        (ys, dxs)
    };
    let ((yp, dxp), (ym, dxm)) = (at(1.0), at(-1.0));
    let mut ry = vec![0.0; n];
    l.rforward(&[], &[], f, Some(&rx), &mut ry, b, &mut []);
    let r = RFwd {
        f,
        dy: &dy,
        dx: Some(&dx),
        rx: Some(&rx),
        ry: &ry,
    };
    let mut rdx = vec![0.0; n];
    l.rbackward(&[], &[], r, &rdy, Some(&mut rdx), &mut [], 1.0, b, &mut []);
    for k in 0..n {
        let s = 1.0 + rx[k].abs() + dy[k].abs() + rdy[k].abs();
        let size = 1.0 + x[k].abs() + y[k].abs() + dx[k].abs() * s;
        let tol = 4.0 * (h * h * m3 * s * s * s / 6.0 + f64::EPSILON * size * s / h);
        let (fy, fdx) = ((yp[k] - ym[k]) / (2.0 * h), (dxp[k] - dxm[k]) / (2.0 * h));
        // dx along rx: φ'(x) dy rx, from the differences of y.
        assert!(
            (dx[k] * rx[k] - dy[k] * fy).abs() <= tol,
            "dx[{k}]·rx {} vs differences {} (tolerance {tol:e})",
            dx[k] * rx[k],
            dy[k] * fy
        );
        assert!(
            (ry[k] - fy).abs() <= tol,
            "R{{y}}[{k}] {} vs {fy} (tolerance {tol:e})",
            ry[k]
        );
        assert!(
            (rdx[k] - fdx).abs() <= tol,
            "R{{dx}}[{k}] {} vs {fdx} (tolerance {tol:e})",
            rdx[k]
        );
    }
}
