"""(E)K-FAC on convolutional layers (the KFC expansion of patches, Grosse & Martens 2016)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import datavalue as dv


def _train(net, x, y, wd, steps=200):
    opt = torch.optim.LBFGS(net.parameters(), max_iter=steps, tolerance_grad=1e-10,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y) + 0.5 * wd * sum(
            (p ** 2).sum() for p in net.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return net


def test_a_conv_covering_its_input_equals_the_same_linear_layer():
    """A Conv2d whose kernel covers the whole input has one output position: it is a Linear
    layer on the flattened input (same channel-major order as the patches), so (E)K-FAC must
    give the same influence for both, to rounding."""
    torch.manual_seed(0)
    x = torch.randn(40, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (40,))
    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 4), torch.nn.Flatten(), torch.nn.Tanh(),
                               torch.nn.Linear(3, 2)).double()
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32, 3), torch.nn.Tanh(),
                              torch.nn.Linear(3, 2)).double()
    with torch.no_grad():
        lin[1].weight.copy_(conv[0].weight.reshape(3, -1))
        lin[1].bias.copy_(conv[0].bias)
        lin[3].load_state_dict(conv[3].state_dict())
    for solver in ("ekfac", "kfac"):
        scores = [dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver=solver,
                                       damping=1e-3).fit(x, y).influence(x[:4], y[:4])
                  for net in (conv, lin)]
        np.testing.assert_allclose(scores[0], scores[1], rtol=1e-8, atol=1e-12)


@pytest.fixture(scope="module")
def small_cnn():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:300] / 16.0, dtype=torch.float64).reshape(-1, 1, 8, 8)
    y = torch.tensor(y[:300])
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(6 * 2 * 2, 10)).double()
    return _train(net, x, y, wd=1e-2), x, y


def test_ekfac_tracks_exact_gauss_newton_influence_on_a_trained_cnn(small_cnn):
    """Two conv layers and a linear one (about 500 parameters): EK-FAC against the exact
    (dense) Gauss-Newton influence, same damping. Measured Pearson 0.92; bar 0.9."""
    net, x, y = small_cnn
    kw = dict(weight_decay=1e-2, damping=1e-3, hessian="gauss-newton")
    exact = dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="exact", **kw)
    ekfac = dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="ekfac", **kw)
    a = exact.fit(x, y).influence(x[:20], y[:20])
    b = ekfac.fit(x, y).influence(x[:20], y[:20])
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    print(f"EK-FAC vs exact GGN on the CNN: Pearson {r:.4f}")
    assert r >= 0.9, r


def test_grouped_convolutions_are_refused_clearly():
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, groups=2), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 2 * 2, 2)).double()
    x = torch.randn(10, 2, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    with pytest.raises(dv.DatavalueError, match="nn.Linear or nn.Conv2d layer"):
        dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="ekfac",
                             damping=0.1).fit(x, y)


def test_default_settings_work_on_a_trained_cnn(small_cnn):
    """The defaults (solver "cg", hessian "auto") with damping 0.01 on a trained CNN: the
    Gauss-Newton matrix is positive semi-definite, so CG cannot meet negative curvature (with
    the exact Hessian it can). Scores match the exact Gauss-Newton solve."""
    net, x, y = small_cnn
    inf = dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), weight_decay=1e-2,
                               damping=0.01).fit(x, y)
    assert inf.hessian_ == "gauss-newton"
    ref = dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="exact",
                               hessian="gauss-newton", weight_decay=1e-2, damping=0.01).fit(x, y)
    a, b = inf.influence(x[:5], y[:5]), ref.influence(x[:5], y[:5])
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999  # CG's default rtol
    from sklearn.linear_model import LogisticRegression

    xs, ys = x.reshape(300, -1).numpy(), y.numpy()
    lr = LogisticRegression(max_iter=2000).fit(xs, ys)
    assert dv.InfluenceFunction(lr).fit(xs, ys).hessian_ == "exact"
