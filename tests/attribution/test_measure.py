"""Influence on a measured quantity other than the loss (a logit, a margin, a regression
output): ``influence(..., measure=f)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import datavalue as dv
from datavalue import InvalidParameterError

from ._nets import autograd_scores, trained_tanh_net


@pytest.fixture(scope="module")
def setup():
    return trained_tanh_net(70, 4, 5, (1.0, 0.5), 300)


def _inf(net, **kw):
    return dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="exact",
                                weight_decay=1e-2, damping=1e-3, **kw)


def logit1(out, y):
    return out[:, 1]


def test_a_logit_measure_matches_autograd(setup):
    # (1/n) grad f(z_t)^T (H + lambda I)^{-1} grad L(z_i) with grad f by plain autograd, one test
    # point at a time: agreement to rounding.
    net, x, y = setup
    inf = _inf(net).fit(x, y)
    rows = autograd_scores(inf, x, y, lambda out, _: out[1])
    np.testing.assert_allclose(inf.influence(x[:3], y[:3], measure=logit1), rows,
                               rtol=1e-9, atol=1e-15)
    top = inf.top_k(x[:3], y[:3], k=4, measure=logit1)
    np.testing.assert_array_equal(top.helpful, np.argsort(-rows, 1, kind="stable")[:, :4])


def test_the_measure_predicts_retraining_of_a_regression_output():
    # Ridge regression: the prediction at a test point after removing each training point,
    # actually refitted, against the first-order measure influence (Pearson >= 0.99 over all
    # pairs; ridge is quadratic, so only the leverage term separates them; measured 0.998).
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = x @ rng.normal(size=5) + 0.3 * rng.normal(size=60)
    model = Ridge(alpha=1.0).fit(x, y)
    inf = dv.InfluenceFunction(model).fit(x, y)
    xt = rng.normal(size=(4, 5))
    yt = np.zeros(4)  # unused by the measure
    predicted = inf.influence(xt, yt, measure=lambda out, _: out[:, 0])
    base = model.predict(xt)
    actual = np.array([Ridge(alpha=1.0).fit(np.delete(x, i, 0), np.delete(y, i)).predict(xt)
                       - base for i in range(60)]).T
    r = np.corrcoef(predicted.ravel(), actual.ravel())[0, 1]
    assert r >= 0.99, r


def test_bad_measures_are_named(setup):
    net, x, y = setup
    inf = _inf(net).fit(x, y)
    with pytest.raises(InvalidParameterError, match="'measure' must be a callable"):
        inf.influence(x[:2], y[:2], measure="logit")
    with pytest.raises(InvalidParameterError, match="one value per example"):
        inf.influence(x[:2], y[:2], measure=lambda out, _: out)
    with pytest.raises(InvalidParameterError, match="order='first' only"):
        inf.influence(x[:2], y[:2], measure=logit1, order="newton")


def test_stored_measure_scores_are_kept_apart_from_loss_scores(setup, tmp_path):
    net, x, y = setup
    inf = _inf(net, store=tmp_path / "s").fit(x, y)
    loss = inf.influence(x[:2], y[:2])
    logit = inf.influence(x[:2], y[:2], measure=logit1)
    again = _inf(net, store=tmp_path / "s").fit(x, y)
    np.testing.assert_array_equal(again.influence(x[:2], y[:2], measure=logit1), logit)
    np.testing.assert_array_equal(again.influence(x[:2], y[:2]), loss)
    assert not np.allclose(loss, logit)
