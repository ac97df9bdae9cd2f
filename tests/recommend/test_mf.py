"""Matrix factorization: closed-form gradient and Hessian against torch.func and finite
differences; a fit that reaches a stationary point; recommendations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

import datavalue as dv
from datavalue import InvalidParameterError
from datavalue.recommend import MFLayout, MFProblem

from .conftest import tiny_ratings


def _autograd_objective(layout: MFLayout, r: dv.Ratings, reg: float, reg_bias: float):
    u, i = torch.from_numpy(r.user.copy()), torch.from_numpy(r.item.copy())
    y = torch.from_numpy(r.rating.copy())

    def f(theta):
        mu, bu, bi, p, q = layout.split(theta)
        e = y - (mu + bu[u] + bi[i] + (p[u] * q[i]).sum(1))
        return (e * e).sum() + reg * ((p * p).sum() + (q * q).sum()) \
            + reg_bias * ((bu * bu).sum() + (bi * bi).sum())

    return f


def test_gradient_and_hessian_match_torch_func():
    r = tiny_ratings()
    lay = MFLayout(r.n_users, r.n_items, 3)
    prob = MFProblem(lay, r.user, r.item, r.rating, reg=0.7, reg_bias=0.3)
    f = _autograd_objective(lay, r, 0.7, 0.3)
    theta = torch.randn(lay.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert prob.value(theta) == pytest.approx(float(f(theta)), rel=1e-12)
    assert torch.allclose(prob.gradient(theta), torch.func.grad(f)(theta), atol=1e-10)
    h = torch.func.hessian(f)(theta)
    eye = torch.eye(lay.size, dtype=torch.float64)
    h_ours = torch.stack([prob.hvp(theta, e) for e in eye])
    assert torch.allclose(h_ours, h, atol=1e-10)
    # Gauss-Newton part: the Hessian without the residual term 2 e d2r_hat
    jac = torch.func.jacrev(lambda t: layout_pred(lay, r, t))(theta)
    gn = 2 * jac.T @ jac + 2 * torch.diag(prob.lam)
    gn_ours = torch.stack([prob.hvp(theta, e, gauss_newton=True) for e in eye])
    assert torch.allclose(gn_ours, gn, atol=1e-10)


def layout_pred(lay, r, theta):
    mu, bu, bi, p, q = lay.split(theta)
    u, i = torch.from_numpy(r.user.copy()), torch.from_numpy(r.item.copy())
    return mu + bu[u] + bi[i] + (p[u] * q[i]).sum(1)


def test_gradient_matches_finite_differences():
    r = tiny_ratings(seed=2)
    lay = MFLayout(r.n_users, r.n_items, 2)
    prob = MFProblem(lay, r.user, r.item, r.rating, reg=1.0, reg_bias=1.0)
    theta = 0.3 * torch.randn(lay.size, dtype=torch.float64,
                              generator=torch.Generator().manual_seed(1))
    g = prob.gradient(theta)
    h = 1e-6  # central differences: error O(h^2) ~ 1e-12, rounding ~ 1e-10 / h
    for j in range(0, lay.size, 5):
        e = torch.zeros(lay.size, dtype=torch.float64)
        e[j] = h
        fd = (prob.value(theta + e) - prob.value(theta - e)) / (2 * h)
        assert fd == pytest.approx(float(g[j]), abs=1e-6)


def test_fit_reaches_a_stationary_point_and_predicts(small_model, small_split):
    train, test = small_split
    m = small_model
    assert m.fit_info_["gradient_max"] < 1e-10  # the tolerance asked for
    g = m.problem(train).gradient(m.theta_)
    assert float(g.abs().max()) < 1e-10
    # better than predicting each movie's mean (a sanity bound, not a tuned number)
    assert m.rmse(test) < 1.05
    uid = train.user_ids[train.user[0]]
    iid = train.item_ids[train.item[0]]
    manual = (m.global_mean_ + m.user_bias_[train.user[0]] + m.item_bias_[train.item[0]]
              + m.user_factors_[train.user[0]] @ m.item_factors_[train.item[0]])
    assert m.predict(uid, iid) == pytest.approx(manual, rel=1e-12)


def test_fit_is_deterministic_and_warm_start_agrees(small_model, small_split):
    train, _ = small_split
    again = dv.MatrixFactorization(n_factors=6, reg=10.0, tol=1e-10).fit(train)
    assert torch.equal(again.theta_, small_model.theta_)
    warm = dv.MatrixFactorization(n_factors=6, reg=10.0, tol=1e-10).fit(
        train, init=small_model.theta_)
    assert warm.fit_info_["newton_steps"] == 0


def test_recommend_skips_rated_items_and_returns_titles(small_model, small_split):
    train, _ = small_split
    uid = train.user_ids[train.user[0]]
    recs = small_model.recommend(uid, k=10)
    assert len(recs) == 10 and list(recs.columns) == ["item_id", "title", "predicted", "score"]
    rated = set(train.item_ids[train.item[train.user == train.user[0]]].tolist())
    assert not rated & set(recs["item_id"].tolist())
    assert (np.diff(recs["score"]) <= 0).all()
    assert recs["predicted"].between(0.5, 5.0).all()


def test_bad_parameters_and_ids():
    r = tiny_ratings()
    with pytest.raises(InvalidParameterError, match="'reg'"):
        dv.MatrixFactorization(reg=0).fit(r)
    with pytest.raises(InvalidParameterError, match="'n_factors'"):
        dv.MatrixFactorization(n_factors=0).fit(r)
    with pytest.raises(InvalidParameterError, match="'random_state'"):
        dv.MatrixFactorization(random_state=-1).fit(r)
    with pytest.raises(InvalidParameterError, match="Ratings"):
        dv.MatrixFactorization().fit(np.zeros((3, 3)))
    with pytest.raises(NotFittedError):
        dv.MatrixFactorization().predict("u0", "m0")
    m = dv.MatrixFactorization(n_factors=2, reg=1.0).fit(r)
    with pytest.raises(InvalidParameterError, match="'item' is 'nope'"):
        m.predict("u0", "nope")
    with pytest.raises(InvalidParameterError, match="'k'"):
        m.recommend("u0", k=0)
