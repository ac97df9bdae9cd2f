"""Utility: the score of a subset, on the edges Monte Carlo methods walk."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, r2_score, roc_auc_score
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

import datavalue as dv
from datavalue import (
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    UnknownNameError,
)


@pytest.fixture(scope="module")
def cancer():
    return dv.load_dataset("breast_cancer", random_state=0)


def _u(ds, model=None, metric="accuracy", **kw):
    return dv.Utility(model or LogisticRegression(max_iter=1000), ds.x_train, ds.y_train,
                      ds.x_valid, ds.y_valid, metric, **kw)


@pytest.mark.parametrize(
    "metric,sk",
    [
        ("accuracy", lambda y, m, x: accuracy_score(y, m.predict(x))),
        ("f1", lambda y, m, x: f1_score(y, m.predict(x))),
        ("roc_auc", lambda y, m, x: roc_auc_score(y, m.predict_proba(x)[:, 1])),
        ("neg_log_loss", lambda y, m, x: -log_loss(y, m.predict_proba(x))),
    ],
)
def test_scores_match_sklearn(cancer, metric, sk):
    u = _u(cancer, metric=metric)
    subset = np.arange(0, cancer.n_train, 3)
    model = LogisticRegression(max_iter=1000).fit(cancer.x_train[subset], cancer.y_train[subset])
    assert u(subset) == pytest.approx(sk(cancer.y_valid, model, cancer.x_valid), abs=1e-12)


def test_regression_metrics():
    ds = dv.load_dataset("diabetes")
    subset = np.arange(50)
    model = LinearRegression().fit(ds.x_train[subset], ds.y_train[subset])
    pred = model.predict(ds.x_valid)
    u = dv.Utility(LinearRegression(), ds.x_train, ds.y_train, ds.x_valid, ds.y_valid, "r2")
    assert u(subset) == pytest.approx(r2_score(ds.y_valid, pred))
    u2 = dv.Utility(LinearRegression(), ds.x_train, ds.y_train, ds.x_valid, ds.y_valid, "neg_mse")
    assert u2(subset) == pytest.approx(-np.mean((ds.y_valid - pred) ** 2))
    assert u.empty_score() == pytest.approx(
        r2_score(ds.y_valid, np.full(ds.n_valid, ds.y_train.mean()))
    )


def test_empty_and_one_class_subsets_score_constant_predictions(cancer):
    u = _u(cancer)
    majority = np.bincount(cancer.y_train).argmax()
    assert u([]) == pytest.approx(np.mean(cancer.y_valid == majority))
    ones = np.flatnonzero(cancer.y_train == 1)[:5]
    assert u(ones) == pytest.approx(np.mean(cancer.y_valid == 1))
    assert u.n_fits == 0  # neither needed a fit
    ll = _u(cancer, metric="neg_log_loss")
    prior = np.bincount(cancer.y_train) / cancer.n_train
    assert ll([]) == pytest.approx(-log_loss(cancer.y_valid, np.tile(prior, (cancer.n_valid, 1))))
    assert _u(cancer, metric="roc_auc")(ones) == 0.5


def test_subset_missing_a_class_gets_full_probability_columns():
    ds = dv.load_dataset("iris", random_state=0)
    u = dv.Utility(LogisticRegression(max_iter=1000), ds.x_train, ds.y_train, ds.x_valid,
                   ds.y_valid, "neg_log_loss")
    two = np.flatnonzero(ds.y_train != 2)
    score = u(two)
    assert np.isfinite(score) and score < np.log(0.5)  # class 2 gets probability ~0


def test_callable_metric_and_decision_function_models(cancer):
    u = _u(cancer, metric=lambda y, p: -np.mean(y != p))
    assert -1 <= u(np.arange(100)) <= 0
    svc = _u(cancer, model=LinearSVC(), metric="roc_auc")
    assert svc(np.arange(cancer.n_train)) > 0.9


def test_model_is_cloned_not_mutated(cancer):
    model = LogisticRegression(max_iter=1000)
    _u(cancer, model=model)(np.arange(100))
    assert not hasattr(model, "coef_")


def test_cache_returns_same_score_without_refitting(cancer):
    u = _u(cancer, cache_size=10)
    subset = np.arange(0, 60, 2)
    a = u(subset)
    b = u(subset[::-1].copy())
    assert a == b and u.n_fits == 1 and u.n_cache_hits == 1


def test_failures_raise_or_are_counted(cancer):
    class Broken(DecisionTreeClassifier):
        def fit(self, X, y, sample_weight=None, check_input=True):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _u(cancer, model=Broken())(np.arange(50))
    u = _u(cancer, model=Broken(), catch_errors=True, default_score=-1.0)
    assert u(np.arange(50)) == -1.0 and u.n_failures == 1


def test_bad_inputs(cancer):
    with pytest.raises(InvalidModelError, match="'model'.*no fit"):
        dv.Utility(object(), cancer.x_train, cancer.y_train, cancer.x_valid, cancer.y_valid)
    with pytest.raises(InvalidModelError, match="instance"):
        dv.Utility(LogisticRegression, cancer.x_train, cancer.y_train, cancer.x_valid,
                   cancer.y_valid)
    with pytest.raises(UnknownNameError, match="accuracy"):
        _u(cancer, metric="acc")
    with pytest.raises(InvalidParameterError, match="regression"):
        _u(cancer, metric="r2")
    with pytest.raises(InvalidDataError, match="x_valid"):
        dv.Utility(LogisticRegression(), cancer.x_train, cancer.y_train, cancer.x_valid[:, :3],
                   cancer.y_valid)
    with pytest.raises(InvalidDataError, match="only one class"):
        dv.Utility(LogisticRegression(), cancer.x_train, np.zeros(cancer.n_train),
                   cancer.x_valid, cancer.y_valid, task="classification")
