//! The [`Op`] contract on small graphs: the two-input `add` and a weight shared by two nodes,
//! gradients and Hessian-vector products against central differences.

use super::*;
use crate::core::rng::Rng;

fn normal(n: usize, seed: u64) -> Vec<f64> {
    let mut v = vec![0.0; n];
    Rng::new(seed).fill_normal(&mut v);
    v
}

/// `y = U (W_a x_1 + W_b x_2)` with inputs `x_1, x_2 ∈ ℝ³`, hidden 4, output 2; `tied`: one block
/// `w` read by both first nodes (`W_a = W_b = w`), else two blocks `wa`, `wb`.
fn two_input_graph(tied: bool) -> Graph {
    let mut t = ParamTable::new();
    let (a, b) = if tied { ("w", "w") } else { ("wa", "wb") };
    t.declare(a, &[4, 3]).unwrap();
    if !tied {
        t.declare(b, &[4, 3]).unwrap();
    }
    t.declare("u", &[2, 4]).unwrap();
    let mut g = Graph::new(vec![vec![3], vec![3]], t);
    let n0 = g.push(Arc::new(MatVec::new(a, 3, 4)), vec![Source::Data(0)]).unwrap();
    let n1 = g.push(Arc::new(MatVec::new(b, 3, 4)), vec![Source::Data(1)]).unwrap();
    let s = g
        .push(Arc::new(Add::new(vec![4])), vec![Source::Node(n0), Source::Node(n1)])
        .unwrap();
    g.push(Arc::new(MatVec::new("u", 4, 2)), vec![Source::Node(s)]).unwrap();
    g
}

/// Gradient and `Hv` of `L = Σ_i ½‖y_i‖²` against central differences of `L` and of the
/// gradient. `L` is a polynomial of degree 4 in θ with O(1) coefficients, so with `h = 1e-5` the
/// differences are exact to O(h²) ≈ 1e-10 plus rounding ε·L/h ≈ 1e-10: tolerance 1e-7.
fn check_against_differences(g: &Graph, seed: u64) {
    let b = 3;
    let theta = normal(g.n_params(), seed);
    let v = normal(g.n_params(), seed + 1);
    let (x1, x2) = (normal(b * 3, seed + 2), normal(b * 3, seed + 3));
    let data = [&x1[..], &x2[..]];
    let (_, grad, hv) = g.loss_grad_hvp(&theta, Some(&v), &data, b);
    let hv = hv.unwrap();
    let h = 1e-5;
    let shifted = |k: Option<usize>, s: f64| -> Vec<f64> {
        let mut t = theta.clone();
        match k {
            Some(k) => t[k] += s * h,
            None => t.iter_mut().zip(&v).for_each(|(a, d)| *a += s * h * d),
        }
        t
    };
    for k in 0..g.n_params() {
        let (lp, _, _) = g.loss_grad_hvp(&shifted(Some(k), 1.0), None, &data, b);
        let (lm, _, _) = g.loss_grad_hvp(&shifted(Some(k), -1.0), None, &data, b);
        let fd = (lp - lm) / (2.0 * h);
        assert!(
            (grad[k] - fd).abs() <= 1e-7 * (1.0 + fd.abs()),
            "grad[{k}] {} vs {fd}",
            grad[k]
        );
    }
    let (_, gp, _) = g.loss_grad_hvp(&shifted(None, 1.0), None, &data, b);
    let (_, gm, _) = g.loss_grad_hvp(&shifted(None, -1.0), None, &data, b);
    for k in 0..g.n_params() {
        let fd = (gp[k] - gm[k]) / (2.0 * h);
        assert!(
            (hv[k] - fd).abs() <= 1e-7 * (1.0 + fd.abs()),
            "Hv[{k}] {} vs {fd}",
            hv[k]
        );
    }
}

#[test]
fn add_forward_and_backward_give_the_sum_and_the_same_gradient_to_both_inputs() {
    let add = Add::new(vec![2, 3]);
    assert_eq!(add.in_shapes(), vec![vec![2, 3], vec![2, 3]]);
    let (a, c) = (normal(12, 1), normal(12, 2));
    let mut y = vec![0.0; 12];
    add.forward(&[], &[&a, &c], &mut y, 2);
    assert!(y.iter().enumerate().all(|(k, v)| *v == a[k] + c[k]));
    let dy = normal(12, 3);
    let (mut d1, mut d2) = (vec![0.0; 12], vec![0.0; 12]);
    add.backward(
        &[],
        &[&a, &c],
        &y,
        &dy,
        &mut [Some(&mut d1), Some(&mut d2)],
        &mut [],
        1.0,
        2,
    );
    assert_eq!(d1, dy);
    assert_eq!(d2, dy);
    // One input data (no gradient asked), the other an R-direction.
    let mut ry = vec![0.0; 12];
    add.rforward(&[], &[], &[&a, &c], &[None, Some(&dy)], &mut ry, 2);
    assert_eq!(ry, dy);
}

#[test]
fn a_two_input_graph_matches_central_differences() {
    check_against_differences(&two_input_graph(false), 10);
}

#[test]
fn a_weight_shared_by_two_nodes_gets_the_sum_of_both_uses() {
    let tied = two_input_graph(true);
    let untied = two_input_graph(false);
    assert_eq!(tied.n_params(), 12 + 8);
    check_against_differences(&tied, 20);
    // The tied gradient equals the untied one's two weight gradients summed, at W_a = W_b = w.
    let b = 4;
    let theta = normal(tied.n_params(), 30);
    let v = normal(tied.n_params(), 31);
    let spread = |t: &[f64]| [&t[..12], &t[..12], &t[12..]].concat();
    let (x1, x2) = (normal(b * 3, 32), normal(b * 3, 33));
    let data = [&x1[..], &x2[..]];
    let (lt, gt, ht) = tied.loss_grad_hvp(&theta, Some(&v), &data, b);
    let (lu, gu, hu) = untied.loss_grad_hvp(&spread(&theta), Some(&spread(&v)), &data, b);
    let (ht, hu) = (ht.unwrap(), hu.unwrap());
    assert!((lt - lu).abs() <= 1e-12 * lu.abs());
    // The Hessian of the tied model is S H Sᵀ (S sums the copies), so with the direction spread
    // to both copies its Hv is the untied one summed the same way.
    for (tied_v, untied_v) in [(&gt, &gu), (&ht, &hu)] {
        for k in 0..12 {
            let sum = untied_v[k] + untied_v[12 + k];
            assert!(
                (tied_v[k] - sum).abs() <= 1e-12 * (1.0 + sum.abs()),
                "w[{k}]: {} vs the two uses {sum}",
                tied_v[k]
            );
        }
        for k in 0..8 {
            assert!((tied_v[12 + k] - untied_v[24 + k]).abs() <= 1e-12 * (1.0 + untied_v[24 + k].abs()));
        }
    }
    // Both uses contribute: neither alone is the total.
    assert!((0..12).any(|k| (gt[k] - gu[k]).abs() > 1e-3 && (gt[k] - gu[12 + k]).abs() > 1e-3));
}

#[test]
fn graphs_refuse_mismatched_shapes_unknown_blocks_and_later_nodes() {
    let mut t = ParamTable::new();
    t.declare("w", &[4, 3]).unwrap();
    assert!(t
        .declare("w", &[1])
        .unwrap_err()
        .to_string()
        .contains("two parameter blocks"));
    let mut g = Graph::new(vec![vec![3]], t);
    let e = g
        .push(Arc::new(MatVec::new("v", 3, 4)), vec![Source::Data(0)])
        .unwrap_err();
    assert!(e.to_string().contains("`v`, not in the table"), "{e}");
    let e = g
        .push(Arc::new(MatVec::new("w", 3, 5)), vec![Source::Data(0)])
        .unwrap_err();
    assert!(e.to_string().contains("the table has [4, 3]"), "{e}");
    let e = g
        .push(Arc::new(Add::new(vec![3])), vec![Source::Data(0), Source::Node(0)])
        .unwrap_err();
    assert!(e.to_string().contains("not an earlier node"), "{e}");
    let e = g
        .push(Arc::new(Add::new(vec![4])), vec![Source::Data(0), Source::Data(0)])
        .unwrap_err();
    assert!(e.to_string().contains("has shape [3], it takes [4]"), "{e}");
}
