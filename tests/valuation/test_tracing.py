"""The TracIn and TRAK valuators: values = summed attributions (or minus self-attributions) of
the tracers they fit, on scikit-learn and torch models."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import datavalue as dv
from datavalue import InvalidParameterError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def digits():
    return dv.load_dataset("digits", noise_rate=0.1, n_samples=700, random_state=0)


def test_validation_values_are_the_summed_tracin_scores(digits):
    ds = digits
    v = dv.TracInValuation().fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    model = LogisticRegression(max_iter=1000).fit(ds.x_train, ds.y_train)
    scores = dv.GradDot(model).fit(ds.x_train, ds.y_train).influence(ds.x_valid, ds.y_valid)
    np.testing.assert_allclose(v.values_, scores.sum(0), rtol=1e-8, atol=1e-10)


def test_self_values_find_flipped_labels(digits):
    # measured AUC: TracIn 0.98, TRAK (10 models on random halves) 0.97; 10% flipped.
    ds = digits
    flipped = np.isin(np.arange(ds.n_train), ds.noisy_indices)
    tracin = dv.TracInValuation(target="self").fit(ds.x_train, ds.y_train)
    trak = dv.TRAKValuation(target="self", n_models=10).fit(ds.x_train, ds.y_train)
    assert roc_auc_score(flipped, -tracin.values_) > 0.95
    assert roc_auc_score(flipped, -trak.values_) > 0.9
    assert trak.tracer_.n_models_ == 10 and trak.result_.extra["n_models"] == 10


def test_trak_valuator_ensembles_models_on_random_halves(digits):
    ds = digits
    v = dv.TRAKValuation(n_models=3, proj_dim=None, random_state=4).fit(
        ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    coefs = [m.source.coef_ for m in v.tracer_.models_]
    assert not np.allclose(coefs[0], coefs[1])  # different halves -> different members
    again = dv.TRAKValuation(n_models=3, proj_dim=None, random_state=4).fit(
        ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    np.testing.assert_array_equal(v.values_, again.values_)


def _train(module, x, y):
    opt = torch.optim.Adam(module.parameters(), lr=0.05)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(xt), yt).backward()
        opt.step()
    return module


def test_torch_module_trained_by_train_fn(digits):
    ds = digits
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    kw = dict(loss=torch.nn.CrossEntropyLoss(), train_fn=_train)
    v = dv.TracInValuation(net, proj_dim=128, **kw).fit(
        ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
    assert v.values_.shape == (ds.n_train,) and np.all(np.isfinite(v.values_))
    t = dv.TRAKValuation(net, n_models=2, subset_fraction=1.0, proj_dim=64, target="self",
                         **kw).fit(ds.x_train, ds.y_train)
    flipped = np.isin(np.arange(ds.n_train), ds.noisy_indices)
    assert roc_auc_score(flipped, -t.values_) > 0.8
    with pytest.raises(InvalidParameterError, match="train_fn"):
        dv.TRAKValuation(net, n_models=2, loss=torch.nn.CrossEntropyLoss()).fit(
            ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)


def test_trak_valuator_rejects_regression():
    ds = dv.load_dataset("diabetes", random_state=0)
    with pytest.raises(InvalidParameterError, match="regression"):
        dv.TRAKValuation(n_models=1).fit(ds.x_train, ds.y_train, ds.x_valid, ds.y_valid)
