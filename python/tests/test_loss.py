"""Cross-entropy from Python: `loss=` on models and functions, integer labels, and the per-sample
statistics and Hessian against PyTorch's `F.cross_entropy` through `torch.func` (f64). The torch
comparisons are skipped without torch; the rest needs only NumPy."""

import numpy as np
import pytest

import nequil


def classifier(loss="cross-entropy"):
    return nequil.Model({"kind": "mlp", "widths": [4, 7, 3], "activation": "tanh", "bias": True}, loss=loss)


def labelled(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, size=n)


def test_loss_keyword_and_labels():
    m = classifier()
    assert (m.loss, m.d_out, m.d_y) == ("cross-entropy", 3, 1)
    assert classifier("mse").loss == "mse"
    assert nequil.Model({"kind": "mlp", "widths": [4, 3], "loss": "cross-entropy"}).loss == "cross-entropy"
    assert m.with_loss("mse").d_y == 3
    p = m.init(1)
    x, y = labelled()
    st = nequil.noise_stats(m, p, x, y)
    # The loss is the mean cross-entropy of the model's own logits (the direct formula on logits
    # of order one: equal to 1e-13 relative).
    f = m.forward(p, x)
    direct = np.mean(np.log(np.exp(f).sum(axis=1)) - f[np.arange(len(y)), y])
    assert abs(st.loss - direct) <= 1e-13 * direct
    # Float labels that are integers are the same labels.
    assert nequil.noise_stats(m, p, x, y.astype(np.float64)).loss == st.loss
    # The equilibrium keeps the loss.
    eq = nequil.equilibrium(m, p, x, y, lr=0.05, batch_size=4)
    assert abs(eq.loss_after - eq.loss_before) <= 1e-10 * eq.loss_before


@pytest.mark.parametrize(
    "labels, needle",
    [(np.array([0, 1, 3]), "out of range"), (np.array([0.0, 0.5, 1.0]), "not an integer"), (np.array([0, -1, 1]), "out of range")],
)
def test_bad_labels_name_the_sample(labels, needle):
    m = classifier()
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=needle) as e:
        nequil.noise_stats(m, m.init(0), x, labels)
    assert "y:" in str(e.value) and "sample" in str(e.value)


def test_unknown_loss_is_an_error():
    with pytest.raises(ValueError, match="loss.*hinge"):
        classifier("hinge")
    with pytest.raises(ValueError, match="at least 2 logits"):
        nequil.Model({"kind": "mlp", "widths": [4, 1]}, loss="cross-entropy")
    # Integer targets are labels, not MSE targets.
    with pytest.raises(ValueError, match="dtype"):
        nequil.noise_stats(classifier("mse"), classifier("mse").init(0), *labelled())


def test_statistics_and_hessian_match_torch_func():
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.func import functional_call, grad, hessian, vmap

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    m = nequil.Model.from_torch(net, loss="cross-entropy")
    x, y = labelled(n=32, seed=2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    params = {k: v.detach() for k, v in net.named_parameters()}

    def sample_loss(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(net, p, (xi[None],)), yi[None])

    g = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, xt, yt)
    st = nequil.noise_stats(m, net, x, y)
    for name in params:
        gi = g[name].reshape(len(y), -1).numpy()
        mean, var = gi.mean(axis=0), gi.var(axis=0)  # weight 1/n, as nequil's Σ
        # Two exact computations of the same sums in a different order: 1e-12 of the scale.
        np.testing.assert_allclose(st.mean[name].ravel(), mean, rtol=0, atol=1e-12 * (1 + np.abs(mean).max()))
        np.testing.assert_allclose(st.variance[name].ravel(), var, rtol=0, atol=1e-12 * (1 + np.abs(var).max()))
    # The exact Hessian (softmax curvature included) against torch's dense Hessian of the mean loss.
    names = list(params)
    flat = torch.cat([params[k].reshape(-1) for k in names])
    shapes = [params[k].shape for k in names]

    def mean_loss(theta):
        out, i = {}, 0
        for k, s in zip(names, shapes):
            out[k] = theta[i:i + s.numel()].reshape(s)
            i += s.numel()
        return nn.functional.cross_entropy(functional_call(net, out, (xt,)), yt)

    h_torch = hessian(mean_loss)(flat).numpy()
    h = nequil.hessian(m, net, x, y)
    v = np.random.default_rng(3).normal(size=flat.numel())
    hv = h.hvp(v)
    hv = np.concatenate([np.asarray(hv[k]).ravel() for k in names]) if isinstance(hv, dict) else np.asarray(hv)
    np.testing.assert_allclose(hv, h_torch @ v, rtol=0, atol=1e-12 * np.abs(h_torch @ v).max())


def test_monitor_records_cross_entropy_charges():
    torch = pytest.importorskip("torch")
    from torch import nn

    import nequil.torch as nt

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x, y = labelled(n=16, seed=4)
    mon = nt.Monitor(net, x, y, lr=0.1, batch_size=4, loss="cross-entropy")
    assert mon.model.loss == "cross-entropy"
    row = mon.step(0)
    # The charge columns of the rescalings, and their noise imbalance against noise_stats's.
    st = nequil.noise_stats(mon.model, net, x, y)
    for r in st.rows:
        assert row[f"{r['name']}/tr_a_sigma"] == pytest.approx(r["tr_a_sigma"], rel=1e-12, abs=1e-15)
