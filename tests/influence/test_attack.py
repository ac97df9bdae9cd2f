"""Training-set attacks: the step follows the finite-difference gradient of the retrained test
loss, stays in its box, re-fits exactly, and beats random perturbations of the same size."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

import datavalue as dv
from datavalue.exceptions import InvalidParameterError
from datavalue.influence.attack import training_set_attack

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ones_sevens():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    keep = np.isin(y, [1, 7])
    x, y = x[keep] / 16.0, (y[keep] == 7).astype(int)
    return x[:200], y[:200], x[200:], y[200:]


def _loss(model, x, y):
    return float(-np.log(model.predict_proba(x)[0, y[0]]))


def test_perturbation_gradient_equals_finite_differences_of_retraining(ones_sevens):
    # d L(test; retrained) / d x_i[f] by central differences with exact re-fits (h = 1e-4,
    # tol 1e-12): first-order influence agrees to 2% on the largest components.
    x, y, xs, ys = ones_sevens
    model = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(x, y)
    inf = dv.InfluenceFunction(model, solver="exact").fit(x, y)
    t = np.argmin(np.abs(model.decision_function(xs)))  # a test point near the boundary
    g = inf.perturbation_influence(xs[[t]], ys[[t]], [3])[0, 0]
    feats = np.argsort(-np.abs(g))[:6]
    h = 1e-4
    fd = []
    for f in feats:
        vals = []
        for sgn in (1, -1):
            xp = x.copy()
            xp[3, f] += sgn * h
            vals.append(_loss(clone(model).fit(xp, y), xs[[t]], ys[[t]]))
        fd.append((vals[0] - vals[1]) / (2 * h))
    np.testing.assert_allclose(g[feats], fd, rtol=0.02)


def test_attack_stays_in_its_box_refits_exactly_and_beats_random(ones_sevens):
    x, y, xs, ys = ones_sevens
    model = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
    margins = np.abs(model.decision_function(xs))
    correct = model.predict(xs) == ys
    t = int(np.flatnonzero(correct)[np.argmin(margins[correct])])
    kw = dict(n_train=5, epsilon=0.25, step=0.05, max_steps=20, bounds=(0.0, 1.0))
    res = training_set_attack(model, x, y, xs[t], ys[t], **kw)
    delta = res.x_perturbed - res.x_original
    assert np.all(np.abs(delta) <= 0.25 + 1e-12)
    assert np.all((res.x_perturbed >= 0) & (res.x_perturbed <= 1))
    assert res.perturbation <= 0.25 + 1e-12 and len(res.test_loss) == res.steps + 1
    modified = x.copy()
    modified[res.train_indices] = res.x_perturbed
    np.testing.assert_array_equal(res.model.coef_, clone(model).fit(modified, y).coef_)
    assert res.flipped and res.predictions[-1] != ys[t]
    assert res.test_loss[-1] > res.test_loss[0]
    # the same number of random rows, random signs of the same size: the test loss moves less
    rng = np.random.default_rng(0)
    rows = rng.choice(len(x), 5, replace=False)
    noise = x.copy()
    noise[rows] = np.clip(x[rows] + 0.25 * rng.choice([-1, 1], size=x[rows].shape), 0, 1)
    random_loss = _loss(clone(model).fit(noise, y), xs[[t]], ys[[t]])
    assert res.test_loss[-1] > random_loss


def test_attack_rejects_bad_settings(ones_sevens):
    x, y, xs, ys = ones_sevens
    model = LogisticRegression(max_iter=5000).fit(x, y)
    with pytest.raises(InvalidParameterError, match="epsilon"):
        training_set_attack(model, x, y, xs[0], ys[0], epsilon=0)
    with pytest.raises(InvalidParameterError, match="n_train"):
        training_set_attack(model, x, y, xs[0], ys[0], n_train=0)
    with pytest.raises(InvalidParameterError, match="refit"):
        training_set_attack(model, x, y, xs[0], ys[0], refit=lambda m, a, b: m)
