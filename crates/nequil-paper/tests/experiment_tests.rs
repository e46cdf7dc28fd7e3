//! Every experiment of `nequil reproduce` at its quick size: each check of the paper's claims
//! (theory against simulation, SGD against GD) must pass, and the outcome must carry a figure
//! and logs. The checks are the assertions: each states its claim, theory, measurement and a
//! tolerance derived from the run.

use nequil_paper::experiments::{catalog, Ctx, Group, PanelKind};

fn run(name: &str) {
    let e = catalog()
        .into_iter()
        .find(|e| e.name == name)
        .expect("experiment exists");
    let ctx = Ctx::new(false, 1);
    let o = e.run(&ctx).unwrap_or_else(|err| panic!("{name} failed: {err}"));
    assert!(!o.checks.is_empty(), "{name} has no checks");
    let failed: Vec<String> = o
        .checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| {
            format!(
                "{} (theory {}, measured {}, tolerance {})",
                c.claim, c.theory, c.measured, c.tolerance
            )
        })
        .collect();
    assert!(failed.is_empty(), "{name}: failed checks:\n{}", failed.join("\n"));
    assert!(!o.figure.panels.is_empty(), "{name} has no figure");
    for p in &o.figure.panels {
        if let PanelKind::Xy { series, .. } = &p.kind {
            assert!(
                series.iter().any(|s| s.x.len() == s.y.len() && !s.x.is_empty()),
                "{name}: empty panel {}",
                p.title
            );
        }
    }
    assert!(!o.logs.is_empty(), "{name} has no logs");
    let (done, total) = ctx.progress();
    assert!(
        done > 0 && done <= total + total / 10,
        "{name}: progress {done}/{total}"
    );
}

#[test]
fn fig1_scale_invariance() {
    run("fig1-scale-invariance");
}
#[test]
fn fig2_matrix_factorization() {
    run("fig2-matrix-factorization");
}
#[test]
fn fig3_norm_balance() {
    run("fig3-norm-balance");
}
#[test]
fn fig4_warmup() {
    run("fig4-warmup");
}
#[test]
fn fig5_deep_linear() {
    run("fig5-deep-linear");
}
#[test]
fn fig6_representations() {
    run("fig6-representations");
}
#[test]
fn fig7_net_a_net_b() {
    run("fig7-net-a-net-b");
}
#[test]
fn fig8_convergence() {
    run("fig8-convergence");
}
#[test]
fn law_of_balance() {
    run("law-of-balance");
}

#[test]
fn beyond_optimizers() {
    run("beyond-optimizers");
}
#[test]
fn rebalanced_init() {
    run("rebalanced-init");
}
#[test]
fn beyond_cnn() {
    run("beyond-cnn");
}
#[test]
fn beyond_layernorm() {
    run("beyond-layernorm");
}
#[test]
fn beyond_transformer() {
    run("beyond-transformer");
}

#[test]
fn catalog_names_are_unique_and_described() {
    let c = catalog();
    let mut names: Vec<&str> = c.iter().map(|e| e.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), c.len());
    assert!(c.iter().all(|e| !e.title.is_empty() && !e.claim.is_empty()));
    // The paper's experiments first, then those beyond it, each group in one run.
    let groups: Vec<Group> = c.iter().map(|e| e.group).collect();
    let first_beyond = groups.iter().position(|g| *g == Group::Beyond).expect("a beyond group");
    assert!(groups[..first_beyond].iter().all(|g| *g == Group::Paper));
    assert!(groups[first_beyond..].iter().all(|g| *g == Group::Beyond));
    assert!(c[first_beyond..].iter().all(|e| e.title.starts_with("Beyond")));
    assert!(c[..first_beyond].iter().all(|e| !e.title.starts_with("Beyond")));
}

fn paper_plan(name: &str) -> nequil_paper::experiments::Plan {
    let e = catalog()
        .into_iter()
        .find(|e| e.name == name)
        .expect("experiment exists");
    (e.plan)(&Ctx::paper(2)).unwrap_or_else(|err| panic!("{name}: {err}"))
}

/// `--paper` runs Figs. 3 and 8 at the paper's d = 100 and S = 100, Fig. 8's default at the
/// paper's η (0.1 for the output-averaged loss = 0.001 here), and a width-2000 run beside its
/// width-100 twin; the plans hold those settings (nothing runs).
#[test]
fn paper_tier_runs_the_papers_sizes() {
    let p8 = paper_plan("fig8-convergence");
    let default = p8
        .runs()
        .iter()
        .find(|r| r.name == "d=100/eta=0.001/S=100/seed=0")
        .expect("the paper's default setting");
    assert_eq!(default.spec.model.widths, vec![100, 100, 100]);
    assert_eq!(default.spec.train.batch_size, 100);
    assert_eq!(default.spec.train.lr, Some(0.001));
    let wide = p8
        .runs()
        .iter()
        .find(|r| r.spec.model.widths == vec![100, 2000, 100])
        .expect("a width-2000 run");
    let twin = p8
        .runs()
        .iter()
        .find(|r| {
            r.spec.model.widths == vec![100, 100, 100]
                && r.spec.train.lr == wide.spec.train.lr
                && r.spec.train.batch_size == wide.spec.train.batch_size
        })
        .expect("its width-100 twin");
    assert_eq!(twin.spec.seed, wide.spec.seed);
    assert_eq!(twin.spec.probes.every, wide.spec.probes.every);
    let p3 = paper_plan("fig3-norm-balance");
    assert!(p3.runs().len() >= 5 * 7);
    for r in p3.runs() {
        assert_eq!(r.spec.model.widths, vec![100, 100, 100], "{}", r.name);
        assert!(r.theta0.is_some(), "{}: starts on the product", r.name);
    }
    assert!(p3.runs().iter().all(|r| r.spec.train.batch_size == 100));
}

/// The whole `--paper` tier is planned to fit 2 hours on 2 cores by the plans' own estimate (a
/// design bound: the estimate is rough, and the report shows measured times).
#[test]
fn paper_tier_is_planned_within_two_hours_on_two_cores() {
    let total: f64 = catalog()
        .iter()
        .map(|e| (e.plan)(&Ctx::paper(2)).expect("plan").estimated_seconds(2))
        .sum();
    assert!(total <= 7200.0, "estimated {total} s");
}
