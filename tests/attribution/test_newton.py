"""Newton-step (leverage-corrected) leave-one-out influence against actual retraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge

import datavalue as dv
from datavalue import InvalidParameterError


@pytest.fixture(scope="module")
def wide():
    """More features (200) than examples (120): every example has high leverage."""
    rng = np.random.default_rng(0)
    n, p = 120, 200
    x = rng.normal(size=(n, p))
    w = 3 * rng.normal(size=p) / np.sqrt(p)
    y = (x @ w + 0.5 * rng.normal(size=n) > 0).astype(int)
    xt = rng.normal(size=(3, p))
    return x, y, xt, (xt @ w > 0).astype(int)


def _fit(x, y):
    return LogisticRegression(C=1.0, max_iter=10_000, tol=1e-12).fit(x, y)


def test_newton_step_matches_retraining_where_first_order_does_not(wide):
    """Pearson with actual leave-one-out (120 refits, 3 test points): measured 0.9998 for the
    Newton step and 0.946 for first order; required >= 0.99 and (to show the case is hard)
    first order < 0.97."""
    x, y, xt, yt = wide
    model = _fit(x, y)
    inf = dv.InfluenceFunction(model, solver="exact").fit(x, y)
    first = inf.influence(xt, yt)
    newton = inf.influence(xt, yt, order="newton")
    base = -np.log(model.predict_proba(xt)[np.arange(3), yt])
    actual = np.empty_like(first)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        refit = _fit(x[keep], y[keep])
        actual[:, i] = -np.log(refit.predict_proba(xt)[np.arange(3), yt]) - base
    r_first = np.corrcoef(first.ravel(), actual.ravel())[0, 1]
    r_newton = np.corrcoef(newton.ravel(), actual.ravel())[0, 1]
    assert r_newton >= 0.99 and r_first < 0.97, (r_newton, r_first)
    np.testing.assert_array_equal(inf.influence(xt, yt), first)  # the default is unchanged
    top = inf.top_k(xt, yt, k=5, order="newton")
    np.testing.assert_array_equal(top.helpful, np.argsort(-newton, axis=1, kind="stable")[:, :5])


def test_newton_step_is_exact_for_ridge():
    """A quadratic objective: one Newton step lands on the retrained optimum, so scores equal
    the actual loss changes to rounding."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 60)), rng.normal(size=40)
    xt, yt = rng.normal(size=(2, 60)), rng.normal(size=2)
    model = Ridge(alpha=2.0).fit(x, y)
    inf = dv.InfluenceFunction(model, solver="exact").fit(x, y)
    scores = inf.influence(xt, yt, order="newton")
    self_scores = inf.self_influence(order="newton")
    for i in (0, 7, 33):
        keep = np.arange(40) != i
        refit = Ridge(alpha=2.0).fit(x[keep], y[keep])
        actual = (yt - refit.predict(xt)) ** 2 - (yt - model.predict(xt)) ** 2
        np.testing.assert_allclose(scores[:, i], actual, rtol=1e-6, atol=1e-9)
        own = (y[i] - refit.predict(x[i:i + 1])[0]) ** 2 - (y[i] - model.predict(x[i:i + 1])[0]) ** 2
        assert self_scores[i] == pytest.approx(own, rel=1e-6)


def test_newton_order_is_refused_where_it_does_not_apply(wide):
    x, y, xt, yt = wide
    y3 = y + (x[:, 0] > 1)  # three classes: a multinomial model
    multi = LogisticRegression(max_iter=5000).fit(x, y3)
    inf = dv.InfluenceFunction(multi, solver="exact").fit(x, y3)
    with pytest.raises(InvalidParameterError, match="one output score"):
        inf.influence(xt, y3[:3], order="newton")
    with pytest.raises(InvalidParameterError, match="'order'"):
        inf.influence(xt, y3[:3], order="second")
    net = torch.nn.Sequential(torch.nn.Linear(200, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    tinf = dv.InfluenceFunction(net, torch.nn.CrossEntropyLoss(), solver="exact",
                                damping=0.1).fit(x[:20].astype(np.float32), y[:20])
    with pytest.raises(InvalidParameterError, match="order='newton'"):
        tinf.self_influence(order="newton")
