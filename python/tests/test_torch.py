"""The PyTorch side: models from stacks, the round trip through the equilibrium, and the monitor
against `nequil run`'s charge columns on the same trajectory. Skipped without torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import nequil  # noqa: E402
import nequil.torch as nt  # noqa: E402
from conftest import read_csv, teacher_data  # noqa: E402


@pytest.fixture(autouse=True)
def f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # tiny nets: threads only contend
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 3),
    )


def transformer():
    return nn.Sequential(
        nt.Residual(nn.LayerNorm(8), nt.SelfAttention(8, 2, causal=True)),
        nt.Residual(nn.LayerNorm(8), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8)),
        nt.MeanPool(),
        nn.Linear(8, 2),
    )


def with_running_stats(net):
    """``net`` in eval mode, its batch norms given running statistics and affine maps away from
    PyTorch's initial values (so that a wrong formula shows)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return net.eval()


def test_from_torch_gives_the_examples_model_tables():
    """The stacks of examples/torch_layers.py map to the [model] tables written there by hand."""
    m = nequil.Model.from_torch(cnn(), input_shape=[1, 8, 8])
    ref = nequil.Model({"kind": "sequential", "input": [1, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1}, {"type": "relu"},
        {"type": "max-pool2d", "kernel": 2},
        {"type": "conv2d", "out_channels": 6, "kernel": 3, "padding": 1}, {"type": "relu"},
        {"type": "avg-pool2d", "kernel": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 3},
    ]})
    assert m.spec == ref.spec
    t = nequil.Model.from_torch(transformer(), input_shape=[6, 8])
    ref = nequil.Model({"kind": "sequential", "input": [6, 8], "layers": [
        {"type": "residual", "layers": [{"type": "layer-norm"}, {"type": "self-attention", "heads": 2, "causal": True}]},
        {"type": "residual", "layers": [{"type": "layer-norm"}, {"type": "linear", "out_features": 16},
                                        {"type": "relu"}, {"type": "linear", "out_features": 8}]},
        {"type": "mean-pool"}, {"type": "linear", "out_features": 2},
    ]})
    assert t.spec == ref.spec


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 8), nn.LeakyReLU(0.1), nn.Linear(8, 2)), (5,)),
    (lambda: nn.ModuleList([nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2)]), (5,)),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.Sigmoid(), nn.Linear(6, 2)), (5,)),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.GELU(), nn.Linear(6, 2)), (5,)),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.GELU(approximate="tanh"), nn.Linear(6, 2)), (5,)),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.Softplus(beta=2.0, threshold=1.0), nn.Linear(6, 2)), (5,)),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.Hardswish(), nn.Linear(6, 2)), (5,)),
    (cnn, (1, 8, 8)),
    (transformer, (6, 8)),
    (lambda: with_running_stats(nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 2))), (2, 5, 5)),
    (lambda: with_running_stats(nn.Sequential(
        nn.Linear(5, 4), nn.BatchNorm1d(4, eps=1e-3), nn.ReLU(), nn.Linear(4, 2))), (5,)),
    (lambda: with_running_stats(nn.Sequential(
        nn.BatchNorm1d(3, affine=False), nn.Flatten(), nn.Linear(21, 2))), (3, 7)),
    (lambda: nn.Sequential(
        nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2), nn.ReLU(),
        nn.Conv2d(6, 6, (3, 2), padding=(2, 1), groups=6), nn.Flatten(), nn.Linear(6 * 7 * 6, 2)), (4, 5, 5)),
    (lambda: with_running_stats(nn.Sequential(
        nn.Conv1d(3, 6, 3, padding="same", dilation=2), nn.BatchNorm1d(6), nn.GELU(),
        nn.Conv1d(6, 6, 4, stride=2, padding=1, groups=6), nn.AdaptiveAvgPool1d(4), nn.Flatten(),
        nn.Linear(6 * 4, 2))), (3, 12)),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d((2, 3)), nn.Flatten(),
                           nn.Linear(3 * 2 * 3, 2)), (2, 7, 6)),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)), (2, 5, 5)),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.RMSNorm(6), nn.ReLU(), nn.Linear(6, 2)), (5,)),
    (lambda: nn.Sequential(nn.Linear(5, 6), nn.RMSNorm(6, eps=1e-3, elementwise_affine=False), nn.Linear(6, 2)), (5,)),
    (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(),
                           nn.Linear(4 * 5 * 5, 2)), (2, 5, 5)),
    (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(4, 4, eps=1e-3, affine=False), nn.Flatten(),
                           nn.Linear(4 * 3 * 3, 2)), (2, 5, 5)),
])
def test_same_outputs_and_names_as_the_module(make, shape):
    net = make()
    model = nequil.Model.from_torch(net, input_shape=list(shape))
    params = state(net)  # with a batch norm's buffers: checked against the spec, not read into θ
    assert model.layout == {k: tuple(v.shape) for k, v in net.named_parameters()}
    x = torch.randn(20, *shape)
    with torch.no_grad():
        if isinstance(net, nn.ModuleList):
            ref = x
            for layer in net:
                ref = layer(ref)
        else:
            ref = net(x)
    out = model.forward(params, x)
    scale = ref.abs().max().item()
    assert np.abs(out - ref.numpy().reshape(20, -1)).max() <= 1e-12 * scale


def test_activation_arguments_are_carried_over():
    m = nequil.Model.from_torch(nn.Sequential(
        nn.Linear(3, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 4), nn.Softplus(beta=2.0, threshold=5.0),
        nn.Linear(4, 2), nn.Hardswish(),
    ))
    ref = nequil.Model({"kind": "sequential", "input": [3], "layers": [
        {"type": "linear", "out_features": 4}, {"type": "gelu", "approximate": "tanh"},
        {"type": "linear", "out_features": 4}, {"type": "softplus", "beta": 2.0, "threshold": 5.0},
        {"type": "linear", "out_features": 2}, {"type": "hardswish"},
    ]})
    assert m.spec == ref.spec


def test_unsupported_modules_are_named():
    with pytest.raises(ValueError, match=r"unsupported module `1`: torch.nn.modules.activation.Mish"):
        nequil.Model.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Mish(), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match=r"unsupported module `0`: .*MultiheadAttention.*nequil.torch.SelfAttention"):
        nequil.Model.from_torch(nn.Sequential(nn.MultiheadAttention(4, 2)), input_shape=[3, 4])
    with pytest.raises(ValueError, match=r"unsupported module `1.0`: .*BatchNorm1d"):
        nequil.Model.from_torch(nn.Sequential(nn.Linear(2, 4), nt.Residual(nn.BatchNorm1d(4))))
    with pytest.raises(ValueError, match=r"unsupported module `1`: .*BatchNorm2d \(in training mode.*module.eval\(\)"):
        nequil.Model.from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), input_shape=[1, 5, 5])
    with pytest.raises(ValueError, match=r"without running statistics"):
        nequil.Model.from_torch(nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4, track_running_stats=False).eval()))
    with pytest.raises(ValueError, match=r"dropout with p = 0.5"):
        nequil.Model.from_torch(nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5)))
    with pytest.raises(ValueError, match=r"padding_mode 'reflect'"):
        nequil.Model.from_torch(nn.Sequential(nn.Conv2d(2, 2, 3, padding_mode="reflect")), input_shape=[2, 5, 5])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

    with pytest.raises(ValueError, match=r"expected an nn.Sequential or nn.ModuleList .* got .*Net"):
        nequil.Model.from_torch(Net())
    with pytest.raises(ValueError, match=r"give input_shape"):
        nequil.Model.from_torch(nn.Sequential(nn.Conv2d(1, 2, 3)))


def train(net, x, y, steps, lr, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        opt.zero_grad()
        ((net(x[idx]) - y[idx]) ** 2).sum(-1).mean().backward()
        opt.step()


@pytest.mark.parametrize("make,shape,d_out", [
    (lambda: nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 2)), (6,), 2),
    (cnn, (1, 8, 8), 3),
])
def test_round_trip_outputs_unchanged_after_rebalancing(make, shape, d_out):
    net = make()
    x = torch.randn(128, *shape)
    with torch.no_grad():
        y = make()(x) + 0.3 * torch.randn(128, d_out)
    train(net, x, y, steps=150, lr=0.02, batch=8)
    with torch.no_grad():
        f0 = net(x).clone()
    model = nequil.Model.from_torch(net, input_shape=list(shape))
    eq = nequil.equilibrium(model, net, x, y, lr=0.02, batch_size=8)
    assert eq.totals["applied"] > 0
    assert eq.totals["imbalance_after"] <= 1e-8 * eq.totals["imbalance_before"]
    net.load_state_dict({k: torch.from_numpy(v) for k, v in eq.rebalanced.items()})
    with torch.no_grad():
        f1 = net(x)
    # The rescalings leave the function unchanged up to rounding: e^{λ}·e^{-λ} products of a few
    # ulps in each of a few layers (the acceptance bound is 1e-12 of the output scale).
    assert (f1 - f0).abs().max().item() <= 1e-12 * f0.abs().max().item()


def test_monitor_records_equal_nequil_runs_charge_columns(tmp_path):
    """The same trajectory twice: `nequil.run` records [probes.charges] every 50 steps; a run of s
    steps ends at the trajectory's step-s weights (the batches are drawn in order from the seed),
    so loading those into a torch module and calling monitor.step(s) replays the row."""
    x, y = teacher_data(96, 4, 1, seed=3)
    spec = {
        "seed": 7,
        "model": {"kind": "mlp", "widths": [4, 10, 1], "bias": True},
        "data": {"source": "npy", "mode": "fixed", "x_path": str(tmp_path / "x.npy"), "y_path": str(tmp_path / "y.npy")},
        "train": {"lr": 0.05, "batch_size": 4, "steps": 200, "weight_decay": 1e-3},
        "probes": {"every": 50, "charges": {}},
    }
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    full = nequil.run(spec)
    mlp = nequil.Model(spec)

    class MLP(nn.Module):  # activations in forward: not a stack, so the model is given
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 10), nn.Linear(10, 1)])

        def forward(self, v):
            return self.layers[1](torch.relu(self.layers[0](v)))

    net = MLP()
    mon = nt.Monitor(net, x, y, lr=0.05, batch_size=4, weight_decay=1e-3, every=50, model=mlp)
    for s in (0, 50, 100, 150, 200):
        p = nequil.run(dict(spec, train=dict(spec["train"], steps=s), probes={"every": 50})).params if s else mlp.init(7)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in p.items()})
        before = state(net)
        mon.step(s)
        assert all(np.array_equal(before[k], v) for k, v in state(net).items())  # never changes it
        assert mon.step(s + 1) is None  # off the schedule
    h = mon.history
    assert list(h["step"]) == list(full.metrics["step"]) == [0, 50, 100, 150, 200]
    cols = [c for c in mon.columns if "/" in c]
    assert cols == [c for c in full.columns if "/" in c and not c.startswith("norm2")]
    assert len(cols) == 5 * (10 + 1)  # 10 neurons + the layer pair, five columns each
    for c in cols:
        assert np.array_equal(h[c], full.metrics[c]), c
    # t: the run adds η once per step, the monitor multiplies η·step; 200 additions round to
    # within 200 ulp of the product.
    assert np.allclose(h["t"], full.metrics["t"], rtol=200 * np.finfo(float).eps, atol=0)
    mon.to_csv(tmp_path / "monitor.csv")
    back = read_csv(tmp_path / "monitor.csv")
    for c in mon.columns:
        assert np.array_equal(back[c], h[c]), c


def test_monitor_in_a_loop_leaves_training_unchanged():
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    twin = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    twin.load_state_dict(net.state_dict())
    x = torch.randn(64, 3)
    y = x[:, :1] ** 2
    mon = nt.Monitor(net, x, y, lr=0.05, batch_size=4, every=10)
    for m, monitored in ((net, True), (twin, False)):
        g = torch.Generator().manual_seed(1)
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        for step in range(1, 41):
            idx = torch.randint(0, 64, (4,), generator=g)
            opt.zero_grad()
            ((m(x[idx]) - y[idx]) ** 2).sum(-1).mean().backward()
            opt.step()
            if monitored:
                mon.step(step)
    for (k, a), b in zip(net.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), k
    assert len(mon.history["step"]) == 4


def test_monitor_bad_inputs():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.randn(16, 3)
    y = torch.randn(16, 1)
    with pytest.raises(ValueError, match=r"x_probe: inputs have shape \[16, 2\]"):
        nt.Monitor(net, x[:, :2], y, lr=0.1, batch_size=2)
    with pytest.raises(ValueError, match=r"lr: the learning rate must be finite and > 0"):
        nt.Monitor(net, x, y, lr=0.0, batch_size=2)
    with pytest.raises(ValueError, match=r"every: an integer ≥ 1"):
        nt.Monitor(net, x, y, lr=0.1, batch_size=2, every=0)
    with pytest.raises(ValueError, match=r"probes.charges.symmetries: no catalog symmetry matches \"neuron.7.\*\""):
        nt.Monitor(net, x, y, lr=0.1, batch_size=2, symmetries=["neuron.7.*"])
    mon = nt.Monitor(net, x, y, lr=0.1, batch_size=2)
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"params: non-finite value \(NaN\) at flat index 0 at step 3"):
        mon.step(3)
