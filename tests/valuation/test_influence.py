"""InfluenceValuation and SelfInfluenceValuation with a torch module: trained by the user's
function on the training split, or already trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

import datavalue as dv
from datavalue import InvalidParameterError


def _train(net, x, y):
    torch.manual_seed(0)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=500, tolerance_grad=1e-9,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss = loss + 0.5 * 1e-2 * sum((p ** 2).sum() for p in net.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return net


@pytest.fixture(scope="module")
def data():
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    return x[:150], y[:150], x[150:220], y[150:220]


def test_a_torch_module_is_trained_and_valued(data):
    x, y, xv, yv = data
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(30, 2))
    before = [p.detach().clone() for p in net.parameters()]
    val = dv.InfluenceValuation(net, loss=torch.nn.CrossEntropyLoss(), train_fn=_train,
                                weight_decay=1e-2).fit(x, y, xv, yv)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    # the same numbers as InfluenceFunction on the module the valuator trained
    ref = dv.InfluenceFunction(val.influence_.model, torch.nn.CrossEntropyLoss(),
                               solver="exact", weight_decay=1e-2).fit(x, y)
    np.testing.assert_allclose(val.values_, ref.summed_influence(xv, yv), rtol=1e-8)
    assert val.influence_.gradient_norm_ < 1e-4  # LBFGS reached a stationary point
    # an already trained module (no train_fn) gives the same values
    trained = _train(torch.nn.Sequential(torch.nn.Linear(30, 2)), x, y)
    again = dv.SelfInfluenceValuation(trained, loss=torch.nn.CrossEntropyLoss(),
                                      weight_decay=1e-2).fit(x, y)
    assert again.values_.shape == (150,)


def test_torch_options_are_checked(data):
    x, y, xv, yv = data
    net = torch.nn.Linear(30, 2)
    with pytest.raises(InvalidParameterError, match="needs 'loss'"):
        dv.InfluenceValuation(net).fit(x, y, xv, yv)
    with pytest.raises(InvalidParameterError, match="'train_fn' must return"):
        dv.InfluenceValuation(net, loss=torch.nn.CrossEntropyLoss(),
                              train_fn=lambda m, a, b: None).fit(x, y, xv, yv)
    with pytest.raises(InvalidParameterError, match="'loss' applies to a torch module"):
        dv.InfluenceValuation(loss=torch.nn.CrossEntropyLoss()).fit(x, y, xv, yv)
