"""The NumPy API against the command-line tool on the same inputs: identical numbers.

Both front ends call the same library functions on the same f64 values, so the comparisons are
exact (==) except where a number goes through text: the command's JSON and CSV print shortest
round-trip decimals, which read back to the same bits, so those are exact too.
"""

import json
import math

import numpy as np
import pytest

import nequil
from conftest import read_csv, read_safetensors, teacher_data, write_safetensors


def test_model_from_dict_toml_and_file_agree(mlp_case):
    model, _, _, _, tmp = mlp_case
    from_file = nequil.Model(tmp / "model.toml")
    assert from_file.spec == model.spec
    assert from_file.layout == model.layout == {
        "layers.0.weight": (12, 6), "layers.0.bias": (12,), "layers.1.weight": (8, 12),
        "layers.1.bias": (8,), "layers.2.weight": (2, 8), "layers.2.bias": (2,),
    }
    assert model.n_params == 6 * 12 + 12 + 12 * 8 + 8 + 8 * 2 + 2
    assert (model.d_in, model.d_out) == (6, 2)
    # A whole run spec as a dict: its model table is used.
    assert nequil.Model({"model": {"kind": "mlp", "widths": [6, 12, 8, 2], "bias": True}, "seed": 1}).spec == model.spec


def test_symmetries_and_generators(mlp_case):
    model = mlp_case[0]
    syms = model.symmetries(generators=True)
    names = [s["name"] for s in syms]
    # One rescaling per hidden neuron (12 + 8) and one layer pair per hidden layer.
    assert names[:20] == [f"neuron.0.{k}" for k in range(12)] + [f"neuron.1.{k}" for k in range(8)]
    assert set(names[20:]) == {"layer_pair.0", "layer_pair.1"}
    s = syms[3]
    assert s["kind"] == "neuron_rescaling" and s["layer"] == "0" and s["neuron"] == 3
    a = model.unflatten(s["generator"])
    # A = +1 on neuron 3's incoming row and bias, -1 on its outgoing column, 0 elsewhere.
    assert np.all(a["layers.0.weight"][3] == 1) and a["layers.0.bias"][3] == 1
    assert np.all(a["layers.1.weight"][:, 3] == -1)
    assert np.count_nonzero(s["generator"]) == 6 + 1 + 8
    assert "generator" not in model.symmetries()[0]


def test_flatten_unflatten_round_trip(mlp_case):
    model, params = mlp_case[:2]
    theta = model.flatten(params)
    assert theta.shape == (model.n_params,)
    back = model.unflatten(theta)
    assert all(np.array_equal(back[k], params[k]) for k in params)


def test_init_matches_the_commands_run(mlp_case, cli):
    model, _, _, _, tmp = mlp_case
    spec = tmp / "spec.toml"
    spec.write_text(
        '[model]\nkind = "mlp"\nwidths = [6, 12, 8, 2]\nbias = true\n'
        "[data]\ntarget = \"linear\"\n[train]\nlr = 0.01\nsteps = 0\n"
    )
    seed = 0
    cli("run", spec, "--out", tmp / "run", "--quiet")
    final = read_safetensors(tmp / "run" / "final.safetensors")
    ours = model.init(seed=seed)
    assert all(np.array_equal(final[k], ours[k]) for k in ours)


def test_equilibrium_equals_the_command(mlp_case, cli):
    model, params, x, y, tmp = mlp_case
    write_safetensors(tmp / "w.safetensors", params)
    for discrete, wd in ((False, 0.0), (True, 1e-3)):
        args = ["equilibrium", "--model", tmp / "model.toml", "--weights", tmp / "w.safetensors",
                "--x", tmp / "x.npy", "--y", tmp / "y.npy", "--lr", 0.05, "--batch-size", 8,
                "--weight-decay", wd, "--json", "--out", tmp / "reb.safetensors"]
        if discrete:
            args.append("--discrete")
        theirs = json.loads(cli(*args).stdout)
        eq = nequil.equilibrium(model, params, x, y, lr=0.05, batch_size=8, weight_decay=wd, discrete=discrete)
        ours = dict(eq.report)
        # The file names and the summary's "; wrote …" are the command's own.
        for k in ("weights", "out", "summary"):
            theirs.pop(k)
            ours.pop(k, None)
        assert ours == theirs
        reb = read_safetensors(tmp / "reb.safetensors")
        assert all(np.array_equal(reb[k], eq.rebalanced[k]) for k in reb)
        # The table is the command's table.
        table_args = [a for a in args if a not in ("--json", "--out", tmp / "reb.safetensors")]
        table = cli(*table_args).stdout
        assert str(eq) == table
        # Rows as list of dicts and as dict of arrays.
        assert len(eq.rows) == len(theirs["rows"])
        cols = eq.columns
        assert cols["tr_a_sigma"].dtype == np.float64
        assert np.array_equal(cols["tr_a_sigma"], [r["tr_a_sigma"] for r in theirs["rows"]])
        assert list(cols["name"]) == [r["name"] for r in theirs["rows"]]
        assert cols["applied"].dtype == bool


def test_noise_stats_equal_the_command(mlp_case, cli):
    model, params, x, y, tmp = mlp_case
    write_safetensors(tmp / "w.safetensors", params)
    out = cli("equilibrium", "--model", tmp / "model.toml", "--weights", tmp / "w.safetensors",
              "--x", tmp / "x.npy", "--y", tmp / "y.npy", "--lr", 0.05, "--batch-size", 8,
              "--stats", tmp / "stats.safetensors", "--json").stdout
    report = json.loads(out)
    st = read_safetensors(tmp / "stats.safetensors")
    ns = nequil.noise_stats(model, params, x, y)
    for k in params:
        assert np.array_equal(ns.mean[k], st[f"mean.{k}"])
        assert np.array_equal(ns.variance[k], st[f"var.{k}"])
    assert ns.loss == report["loss_before"]
    assert ns.n == x.shape[0]
    for ours, theirs in zip(ns.rows, report["rows"]):
        assert ours["name"] == theirs["name"]
        assert ours["C"] == theirs["c"]
        for k in ("tr_a_sigma", "tr_a_sigma_pos", "tr_a_sigma_neg"):
            assert ours[k] == theirs[k]
        # The split adds up (the parts come from the same sums).
        assert math.isclose(ours["tr_a_sigma_pos"] + ours["tr_a_sigma_neg"], ours["tr_a_sigma"], rel_tol=1e-12, abs_tol=1e-300)
    # Σ_p A_p Var_p for a diagonal generator, from the variances directly.
    sym = model.symmetries(generators=True)[5]
    var = model.flatten(ns.variance)
    assert math.isclose(float(sym["generator"] @ var), ns.tr_a_sigma[sym["name"]], rel_tol=1e-12)


def test_run_equals_the_command(tmp_path, cli):
    x, y = teacher_data(64, 4, 1, seed=2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    text = """seed = 5
[model]
kind = "mlp"
widths = [4, 8, 1]
bias = true
[data]
source = "npy"
mode = "fixed"
x_path = "x.npy"
y_path = "y.npy"
[train]
lr = 0.05
batch_size = 4
steps = 300
[probes]
every = 50
[probes.charges]
symmetries = ["neuron.0.*", "layer_pair.0"]
"""
    (tmp_path / "spec.toml").write_text(text)
    cli("run", tmp_path / "spec.toml", "--out", tmp_path / "cli", "--quiet")
    theirs = read_csv(tmp_path / "cli" / "metrics.csv")
    res = nequil.run(tmp_path / "spec.toml", out=tmp_path / "py")
    assert res.status == "ok" and res.error is None
    assert res.columns == list(theirs)
    for c in res.columns:
        assert np.array_equal(res.metrics[c], theirs[c], equal_nan=True), c
    final = read_safetensors(tmp_path / "cli" / "final.safetensors")
    assert all(np.array_equal(res.params[k], final[k]) for k in final)
    # The run directory written from Python is the command's, byte for byte.
    for f in ("metrics.csv", "spec.toml", "summary.json", "final.safetensors"):
        assert (tmp_path / "py" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes(), f
    # The same spec as a dict (paths relative to the current directory).
    spec = {
        "seed": 5,
        "model": {"kind": "mlp", "widths": [4, 8, 1], "bias": True},
        "data": {"source": "npy", "mode": "fixed", "x_path": str(tmp_path / "x.npy"), "y_path": str(tmp_path / "y.npy")},
        "train": {"lr": 0.05, "batch_size": 4, "steps": 300},
        "probes": {"every": 50, "charges": {"symmetries": ["neuron.0.*", "layer_pair.0"]}},
    }
    res2 = nequil.run(spec)
    for c in res.columns:
        assert np.array_equal(res2.metrics[c], res.metrics[c], equal_nan=True), c


def test_hessian_against_the_commands_probe(tmp_path, cli):
    """nequil run's [probes.hessian] at step 0 (the initial weights, exact trace on the data) and
    the Hessian operator at the same weights and data."""
    x, y = teacher_data(48, 3, 2, seed=4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "spec.toml").write_text("""seed = 2
[model]
kind = "mlp"
widths = [3, 6, 2]
activation = "tanh"
bias = true
[data]
source = "npy"
mode = "fixed"
x_path = "x.npy"
y_path = "y.npy"
[train]
lr = 0.01
steps = 1
[probes]
every = 1
[probes.hessian]
data = "eval"
""")
    cli("run", tmp_path / "spec.toml", "--out", tmp_path / "run", "--quiet")
    m = read_csv(tmp_path / "run" / "metrics.csv")
    model = nequil.Model(tmp_path / "spec.toml")
    h = nequil.hessian(model, model.init(seed=2), x, y)
    assert h.trace() == m["hess_trace"][0]
    # λ_max: Lanczos converged to tol·‖H‖ (tol = 1e-6) on both sides; the dense spectrum decides.
    top = h.top_eigenvalues(1)[0]
    dense = h.eigenvalues()
    scale = np.abs(dense).max()
    assert abs(top - dense[-1]) <= 1e-6 * scale
    assert abs(m["lambda_max"][0] - dense[-1]) <= 1e-6 * scale
    # Hv is linear and symmetric: uᵀ(Hv) = vᵀ(Hu).
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=h.dim), rng.normal(size=h.dim)
    hu, hv = h.hvp(u), h.hvp(v)
    assert math.isclose(u @ hv, v @ hu, rel_tol=1e-10)
    # Trace from the dense eigenvalues (sum of P products vs eigendecomposition: rounding only).
    assert math.isclose(dense.sum(), h.trace(), rel_tol=1e-10)
    # State-dict form of hvp.
    hv_dict = h.hvp(model.unflatten(v))
    assert np.array_equal(model.flatten(hv_dict), hv)


def test_forward_matches_an_independent_numpy_mlp(mlp_case):
    model, params, x, _, _ = mlp_case
    h = x
    for l in range(3):
        h = h @ params[f"layers.{l}.weight"].T + params[f"layers.{l}.bias"]
        if l < 2:
            h = np.maximum(h, 0)
    out = model.forward(params, x)
    assert np.allclose(out, h, rtol=1e-12, atol=1e-14)


def test_float32_is_accepted_and_converted(mlp_case):
    model, params, x, y, _ = mlp_case
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    a = nequil.noise_stats(model, p32, x.astype(np.float32), y.astype(np.float32))
    b = nequil.noise_stats(model, {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()},
                           x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64))
    assert a.loss == b.loss


def test_experiments_listed():
    names = [e["name"] for e in nequil.experiments()]
    assert len(names) >= 5 and len(set(names)) == len(names)


def test_reproduce_full_resumes_and_fresh_reruns(tmp_path):
    # law-of-balance at the full size takes about a second. A second call loads every run from
    # its record (the files are left as they were) and returns the same checks; fresh=True
    # deletes the records and runs everything again (every record is a new file).
    def call(**kw):
        [s] = nequil.reproduce("law-of-balance", out=tmp_path, full=True, jobs=2, **kw)
        s.pop("seconds")
        return s

    first = call()
    runs = tmp_path / "law-of-balance" / "runs"

    def stamp():
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in runs.glob("*.json")}
    before = stamp()
    assert len(before) > 1
    assert call() == first
    assert stamp() == before
    assert call(fresh=True) == first
    after = stamp()
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in before)


def test_simd_path_is_one_of_the_supported():
    s = nequil.simd()
    assert s["active"] in s["supported"] and "portable" in s["supported"]
