"""The boundary: bad input is a Python exception with the command's message, never a crash; the GIL
is released while the library computes; no panic crosses into Python."""

import threading
import time

import numpy as np
import pytest

import nequil
from conftest import teacher_data


@pytest.fixture
def small():
    model = nequil.Model({"kind": "mlp", "widths": [3, 5, 2], "bias": True})
    params = model.init(seed=0)
    x, y = teacher_data(32, 3, 2)
    return model, params, x, y


def test_bad_shapes_name_the_argument(small):
    model, params, x, y = small
    with pytest.raises(ValueError, match=r"x: inputs have shape \[32, 4\], the model .* expects \[n, 3\]"):
        nequil.noise_stats(model, params, np.zeros((32, 4)), y)
    with pytest.raises(ValueError, match=r"y: targets have shape \[31, 2\].*expects \[32, 2\]"):
        nequil.equilibrium(model, params, x, y[:31], lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match=r"x: inputs: no samples"):
        nequil.hessian(model, params, np.zeros((0, 3)), np.zeros((0, 2)))
    bad = dict(params)
    bad["layers.0.weight"] = np.zeros((5, 4))
    with pytest.raises(ValueError, match=r"params: tensor `layers.0.weight` has shape \[5, 4\], expected \[5, 3\]"):
        nequil.noise_stats(model, bad, x, y)
    missing = {k: v for k, v in params.items() if k != "layers.1.bias"}
    with pytest.raises(ValueError, match=r"missing tensor `layers.1.bias`"):
        nequil.noise_stats(model, missing, x, y)
    extra = dict(params, extra=np.zeros(3))
    with pytest.raises(ValueError, match=r"unexpected tensor `extra`"):
        nequil.noise_stats(model, extra, x, y)


def test_nans_are_refused_with_their_position(small):
    model, params, x, y = small
    x = x.copy()
    x[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"x: inputs: non-finite value \(NaN\) at sample 7, feature 1"):
        nequil.equilibrium(model, params, x, y, lr=0.1, batch_size=4)
    p = {k: v.copy() for k, v in params.items()}
    p["layers.1.weight"][0, 2] = np.inf
    with pytest.raises(ValueError, match=r"tensor `layers.1.weight` has a non-finite value \(inf\) at flat index 2"):
        nequil.noise_stats(model, p, small[2], y)


def test_bad_settings_carry_the_commands_messages(small):
    model, params, x, y = small
    with pytest.raises(ValueError, match=r"lr: the learning rate must be finite and > 0, got -0.1"):
        nequil.equilibrium(model, params, x, y, lr=-0.1, batch_size=4)
    with pytest.raises(ValueError, match=r"batch_size: must be ≥ 1"):
        nequil.equilibrium(model, params, x, y, lr=0.1, batch_size=0)
    with pytest.raises(ValueError, match=r"weight_decay: must be finite and ≥ 0"):
        nequil.equilibrium(model, params, x, y, lr=0.1, batch_size=4, weight_decay=float("nan"))
    with pytest.raises(ValueError, match=r"batch_size: an integer"):
        nequil.equilibrium(model, params, x, y, lr=0.1, batch_size=2.5)


def test_bad_dtypes_and_types(small):
    model, params, x, y = small
    with pytest.raises(ValueError, match=r"x: an array of dtype int64"):
        nequil.noise_stats(model, params, x.astype(np.int64), y)
    with pytest.raises(TypeError, match=r"params: expected a state dict"):
        nequil.noise_stats(model, [1, 2, 3], x, y)
    with pytest.raises(TypeError):
        nequil.Model(42)


def test_bad_specs_name_the_key():
    with pytest.raises(ValueError, match=r"model.kind: unknown variant `mpl`"):
        nequil.Model({"kind": "mpl", "widths": [2, 2]})
    with pytest.raises(ValueError, match=r"unknown field `widht`"):
        nequil.Model({"kind": "mlp", "widht": [2, 2]})
    with pytest.raises(ValueError, match=r"model.widths\[1\]: widths must be positive"):
        nequil.Model({"kind": "mlp", "widths": [2, 0, 1]})
    with pytest.raises(ValueError, match=r"activation: None has no TOML form"):
        nequil.Model({"kind": "mlp", "widths": [2, 2], "activation": None})
    with pytest.raises(ValueError, match=r"train.lr: required"):
        nequil.run({"model": {"kind": "linear", "widths": [2, 2]}, "data": {}, "train": {"steps": 10}})
    with pytest.raises(ValueError, match=r"model.layers\[1\]"):
        nequil.Model({"kind": "sequential", "input": [1, 4, 4], "layers": [
            {"type": "conv2d", "out_channels": 2, "kernel": 3},
            {"type": "max-pool2d", "kernel": 5},
        ]})


def test_missing_files_are_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot read model file .*nope.toml: No such file"):
        nequil.Model(tmp_path / "nope.toml")
    with pytest.raises(FileNotFoundError, match=r"cannot read spec .*nope.toml"):
        nequil.run(tmp_path / "nope.toml")
    (tmp_path / "s.toml").write_text(
        '[model]\nkind = "mlp"\nwidths = [2, 1]\n[data]\nsource = "npy"\nmode = "fixed"\n'
        'x_path = "x.npy"\ny_path = "y.npy"\n[train]\nlr = 0.1\nsteps = 5\n'
    )
    with pytest.raises(FileNotFoundError, match=r"x.npy"):
        nequil.run(tmp_path / "s.toml")


def test_a_model_too_large_for_memory_is_refused_before_allocating():
    with pytest.raises(ValueError, match=r"model.widths \[200000, 200000, 200000, 1\]: the model has \d+ parameters[;:] .* needs at least .* of memory"):
        nequil.Model({"kind": "mlp", "widths": [200000, 200000, 200000, 1]})
    with pytest.raises(ValueError, match=r"needs at least .* of memory"):
        nequil.run({"model": {"kind": "linear", "widths": [300000, 300000, 300000]}, "data": {}, "train": {"lr": 0.1, "steps": 1}})


def test_probes_too_large_for_memory_are_refused_on_sequential_models():
    # A double rotation tracked over a hidden layer of 200 000: 16 matrices of 200 000 × 200 000
    # (5 TB), counted from the model's layers (a sequential model has no model.widths).
    layers = [
        {"type": "linear", "out_features": 200000, "bias": False},
        {"type": "linear", "out_features": 2, "bias": False},
    ]
    spec = {
        "model": {"kind": "sequential", "input": [2], "layers": layers},
        "data": {},
        "train": {"lr": 0.1, "steps": 1},
        "probes": {"charges": {"symmetries": [], "families": ["all"]}},
    }
    with pytest.raises(
        ValueError,
        match=r"model\.input \[2\]: the model has 800000 parameters: training needs at least .* of memory "
        r"\(probes\.charges\.families: rotation\.0: 16 matrices of 200000 × 200000",
    ):
        nequil.run(spec)


def test_no_panic_crosses_into_python():
    with pytest.raises(RuntimeError, match=r"internal error in nequil\._panic_for_tests \(a bug in nequil"):
        nequil._core._panic_for_tests()
    # The module still works afterwards.
    assert nequil.Model({"kind": "linear", "widths": [2, 2]}).n_params == 4


def test_divergence_is_a_status_not_an_exception():
    res = nequil.run({
        "model": {"kind": "linear", "widths": [2, 2, 2]}, "data": {},
        "train": {"lr": 50.0, "batch_size": 1, "steps": 2000}, "probes": {"every": 1},
    })
    assert res.status == "diverged" and "diverged" in res.error
    assert res.summary["steps_done"] < 2000


def test_the_gil_is_released_while_computing():
    """A Python thread keeps counting while another thread trains in nequil: with the GIL held it
    could not run at all until the call returned."""
    spec = {
        "model": {"kind": "mlp", "widths": [16, 64, 64, 1], "bias": True}, "data": {"target": "linear"},
        "train": {"lr": 0.001, "batch_size": 8, "steps": 60000}, "probes": {"log_points": 2},
    }
    done = threading.Event()
    spans = []

    def work():
        t0 = time.perf_counter()
        nequil.run(spec)
        spans.append(time.perf_counter() - t0)
        done.set()

    th = threading.Thread(target=work)
    counts = 0
    th.start()
    time.sleep(0.05)  # let the call start
    while not done.is_set():
        counts += 1
        time.sleep(0)
    th.join()
    assert spans[0] > 0.2, f"the run took {spans[0]:.3f} s: too short to tell"
    # Counting ran through the call: thousands of iterations (about one per microsecond when free).
    assert counts > 1000, counts
