"""Valuing candidate data before adding it: augmentations, synthetic rows, newly labelled data.

:func:`value_candidates` gives each candidate (an example that is *not* in the training set) a
value against a fixed training set, higher = more useful to add:

- ``"influence"``: the predicted decrease of the validation loss if it were added and the
  model retrained (influence with ``epsilon = +1/n``,
  :meth:`~datavalue.attribution.InfluenceFunction.candidate_influence`);
- ``"influence-newton"``: the same with one Newton step including the candidate's own
  curvature (linear models with one output score);
- ``"data-oob"``: the share of bootstrap models trained on the training set that predict the
  candidate's label (Kwon & Zou 2023, with the candidate as a bootstrap point never drawn);
- ``"knn-shapley"``: its exact KNN-Shapley value on the training set plus it (Jia et al. 2019,
  :func:`~datavalue.valuation.knn_shapley.knn_shapley_candidates`).

:func:`addition_curve` checks a ranking: add the top-k candidates, k random candidates (and
the bottom k), retrain, score on the test set; at fraction 1 all candidates are added.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError, UnknownNameError
from datavalue._core.result import ValuationResult
from datavalue._core.validation import check_ids, check_xy

__all__ = ["CANDIDATE_METHODS", "value_candidates", "addition_curve"]

#: Methods of :func:`value_candidates`.
CANDIDATE_METHODS = ("influence", "influence-newton", "data-oob", "knn-shapley")


def _default_model(y: np.ndarray) -> Any:
    from datavalue._core.validation import infer_task
    from datavalue.valuation.base import default_model

    return default_model(infer_task(y))


def value_candidates(
    x_train: Any, y_train: Any, x_candidates: Any, y_candidates: Any, x_valid: Any = None,
    y_valid: Any = None, *, method: str = "influence", model: Any = None,
    candidate_ids: Any = None, n_neighbors: int = 10, n_estimators: int = 1000,
    damping: float = 0.0, random_state: int = 0, n_jobs: int | None = None,
) -> ValuationResult:
    """Value each candidate example against the training set (see the module docstring).

    Parameters
    ----------
    x_train, y_train : array-like
        The training set the candidates would be added to.
    x_candidates, y_candidates : array-like
        The pool, in the same feature space (for a :class:`~datavalue.Dataset` pass
        ``ds.transform(raw_rows)``).
    x_valid, y_valid : array-like
        Where the loss is measured (influence, KNN-Shapley); Data-OOB needs none.
    method : str
        One of :data:`CANDIDATE_METHODS`.
    model : estimator or None
        Unfitted scikit-learn model: the linear model influence differentiates (default
        ``LogisticRegression`` / ``Ridge``), or Data-OOB's bootstrap model (default a tree).
    candidate_ids : array-like or None
        The candidates' own row ids (default ``0..M-1``); the result is keyed by them.
    n_neighbors, n_estimators, damping, random_state, n_jobs
        Options of KNN-Shapley, Data-OOB and influence.

    Returns
    -------
    ValuationResult
        ``values`` and ``ids`` of the candidates (``method`` is ``"candidates:<method>"``).
    """
    start = time.perf_counter()
    if method not in CANDIDATE_METHODS:
        raise UnknownNameError(
            f"Unknown candidate method {method!r} given as 'method': use one of "
            f"{', '.join(CANDIDATE_METHODS)}.")
    xt, yt = check_xy(x_train, y_train)
    xc, yc = check_xy(x_candidates, y_candidates, x_name="x_candidates", y_name="y_candidates")
    if xc.shape[1] != xt.shape[1]:
        raise InvalidDataError(
            f"'x_candidates' has {xc.shape[1]} features; 'x_train' has {xt.shape[1]}: give the "
            "candidates in the training data's feature space (ds.transform for a Dataset).")
    ids = check_ids(candidate_ids if candidate_ids is not None else np.arange(len(xc)),
                    len(xc), "candidate_ids")
    needs_valid = method != "data-oob"
    if needs_valid:
        if x_valid is None or y_valid is None:
            raise InvalidParameterError(
                f"method={method!r} measures the loss on validation data: give x_valid and "
                "y_valid.")
        xv, yv = check_xy(x_valid, y_valid, x_name="x_valid", y_name="y_valid")
        if xv.shape[1] != xt.shape[1]:
            raise InvalidDataError(
                f"'x_valid' has {xv.shape[1]} features; 'x_train' has {xt.shape[1]}.")
    params = {"method": method, "n_neighbors": n_neighbors, "n_estimators": n_estimators,
              "damping": damping, "random_state": random_state,
              "model": None if model is None else type(model).__name__}
    stderr = None
    if method in ("influence", "influence-newton"):
        from datavalue.attribution.influence import InfluenceFunction

        est = clone(_default_model(yt) if model is None else model).fit(xt, yt)
        inf = InfluenceFunction(est, solver="exact" if xt.shape[1] < 2000 else "cg",
                                damping=damping, progress=False).fit(xt, yt)
        values = inf.candidate_influence(
            xc, yc, xv, yv, order="newton" if method == "influence-newton" else "first")
    elif method == "data-oob":
        from datavalue.valuation.data_oob import DataOOB

        oob = DataOOB(model=model, n_estimators=n_estimators, random_state=random_state,
                      n_jobs=n_jobs, progress=False).fit(xt, yt, candidates=(xc, yc))
        values, stderr = oob.candidate_values_, oob.candidate_stderr_
    else:
        from datavalue.valuation.knn_shapley import knn_shapley_candidates

        values = knn_shapley_candidates(xt, yt, xv, yv, xc, yc, n_neighbors=n_neighbors)
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        from datavalue._core.exceptions import ModelOutputError

        raise ModelOutputError(
            f"{int((~np.isfinite(values)).sum())} candidate values are not finite: the model's "
            "outputs or losses overflowed. No result is reported.")
    from datavalue._core.fingerprint import fingerprint_arrays

    return ValuationResult(
        values=values, stderr=stderr, method=f"candidates:{method}", params=params,
        seed=random_state, data_fingerprint=fingerprint_arrays(xt, yt),
        wall_time=time.perf_counter() - start, status="completed",
        extra={"n_candidates": int(len(xc)), "n_train": int(len(xt))}, ids=ids)


def addition_curve(
    values: Any, x_train: Any, y_train: Any, x_candidates: Any, y_candidates: Any,
    x_test: Any, y_test: Any, *, model: Any = None,
    fractions: Any = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0), n_random: int = 3,
    random_state: int = 0,
) -> pd.DataFrame:
    """Test score of the model retrained on the training set plus a share of the candidates:
    the most valuable first, the least valuable first, and random draws (``n_random`` of them,
    averaged). Fraction 0 is the training set alone, fraction 1 every candidate.

    Returns
    -------
    pandas.DataFrame
        Columns ``order``, ``fraction``, ``n_added``, ``score`` (the model's ``score``:
        accuracy or R^2 on ``(x_test, y_test)``; random: the mean over draws) and
        ``score_sd`` (random only).
    """
    xt, yt = check_xy(x_train, y_train)
    xc, yc = check_xy(x_candidates, y_candidates, x_name="x_candidates", y_name="y_candidates")
    xs, ys = check_xy(x_test, y_test, x_name="x_test", y_name="y_test")
    v = np.asarray(values.values if isinstance(values, ValuationResult) else values,
                   dtype=np.float64)
    if v.shape != (len(xc),) or not np.all(np.isfinite(v)):
        raise InvalidDataError(
            f"'values' must be {len(xc)} finite numbers, one per candidate; got shape {v.shape}.")
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size == 0 or np.any((fr < 0) | (fr > 1)):
        raise InvalidParameterError("'fractions' must be numbers in [0, 1].")
    template = _default_model(yt) if model is None else model

    def score(rows: np.ndarray) -> float:
        m = clone(template).fit(np.vstack([xt, xc[rows]]), np.concatenate([yt, yc[rows]]))
        return float(m.score(xs, ys))

    best = np.argsort(-v, kind="stable")
    rng = np.random.default_rng(random_state)
    draws = [rng.permutation(len(xc)) for _ in range(n_random)]
    out = []
    for f in fr:
        k = int(round(f * len(xc)))
        out.append({"order": "most_valuable_first", "fraction": f, "n_added": k,
                    "score": score(best[:k]), "score_sd": np.nan})
        out.append({"order": "least_valuable_first", "fraction": f, "n_added": k,
                    "score": score(best[::-1][:k]), "score_sd": np.nan})
        rand = [score(d[:k]) for d in draws]
        out.append({"order": "random", "fraction": f, "n_added": k,
                    "score": float(np.mean(rand)),
                    "score_sd": float(np.std(rand, ddof=1)) if n_random > 1 else np.nan})
    return pd.DataFrame(out)
