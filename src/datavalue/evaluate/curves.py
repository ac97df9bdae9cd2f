"""Point removal and addition: retraining without (or with only) the most valuable rows first
(Ghorbani & Zou 2019, Figs. 2-3; OpenDataVal's ``remove_high_low``)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.parallel import parallel_map
from datavalue._core.validation import check_estimator_like
from datavalue.data import Dataset
from datavalue.evaluate._checks import (
    _check_fractions,
    _check_int,
    _check_orders,
    _check_values,
)
from datavalue.valuation.utility import Utility, default_metric


# ---------------------------------------------------------------------------- curves
def _score_subset(utility: Utility, indices: np.ndarray) -> float:
    return utility(indices)


def _ranking(values: np.ndarray, order: str, random_state: int | None) -> np.ndarray:
    """Training indices in the order they are removed/added (ties broken by index)."""
    if order == "most_valuable_first":
        return np.argsort(-values, kind="stable")
    if order == "least_valuable_first":
        return np.argsort(values, kind="stable")
    return np.random.default_rng(random_state).permutation(values.size)


def _curve(experiment: str, values: Any, dataset: Any, model: Any, metric: Any,
           fractions: Any, orders: Any, include_random: Any, random_state: Any,
           n_jobs: Any, progress: Any, split: str) -> pd.DataFrame:
    addition = experiment == "point_addition"
    if not isinstance(dataset, Dataset):
        raise InvalidParameterError(
            "The 'dataset' parameter must be a datavalue.Dataset (from dv.load_dataset or "
            f"Dataset.from_arrays). Got {type(dataset).__name__}."
        )
    n = dataset.n_train
    v = _check_values(values, n=n, n_name="dataset.n_train")
    default = np.linspace(0.05, 0.5, 10) if addition else np.linspace(0.0, 0.5, 11)
    fracs = _check_fractions(default if fractions is None else fractions, addition=addition)
    names = _check_orders(orders, include_random)
    if random_state is not None:
        _check_int(random_state, "random_state", 0)
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0
    ):
        raise InvalidParameterError(
            f"The 'n_jobs' parameter must be a non-zero int or None. Got {n_jobs!r}."
        )
    if split not in ("test", "valid"):
        raise InvalidParameterError(
            f"The 'split' parameter must be 'test' or 'valid'. Got {split!r} instead."
        )
    x_eval, y_eval = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
    if x_eval.shape[0] == 0:
        raise InvalidDataError(
            f"The dataset has no {split} split to score on; make one (test_size > 0) or pass "
            f"split={'valid' if split == 'test' else 'test'!r}."
        )
    if model is None:
        from datavalue.valuation.base import default_model

        model = default_model(dataset.task)
    check_estimator_like(model, "model")
    metric = default_metric(dataset.task) if metric is None else metric
    utility = Utility(model, dataset.x_train, dataset.y_train, x_eval, y_eval, metric,
                      task=dataset.task)
    # Round half up: n_points = floor(fraction * n + 1/2).
    counts = np.floor(fracs * n + 0.5).astype(np.int64)
    rows, subsets, slot = [], [], {}
    for name in names:
        ranking = _ranking(v, name, random_state)
        for f, m in zip(fracs, counts, strict=True):
            subset = ranking[:m] if addition else ranking[m:]
            key = np.sort(subset).tobytes()  # the same subset is fitted once
            if key not in slot:
                slot[key] = len(subsets)
                subsets.append(subset)
            rows.append((name, float(f), int(m), n - int(m), slot[key]))
    scores = parallel_map(_score_subset, [(utility, s) for s in subsets], n_jobs=n_jobs,
                          progress=progress, desc=experiment.replace("_", " "), unit="fit")
    frame = pd.DataFrame(rows, columns=["order", "fraction", "n_points", "n_remaining", "task"])
    tasks = frame.pop("task")
    frame["score"] = [float(scores[t]) for t in tasks]
    if addition:
        frame = frame.drop(columns="n_remaining")
        if dataset.task == "classification":
            # A model trained on one class predicts it everywhere: say so next to its score,
            # so a low point of the curve is not mistaken for a bad ranking.
            frame["n_classes"] = [int(np.unique(dataset.y_train[subsets[t]]).size)
                                  for t in tasks]
    frame.attrs.update(experiment=experiment, n_train=n, split=split,
                       metric=metric if isinstance(metric, str) else getattr(
                           metric, "__name__", "score"))
    return frame


def point_removal(
    values: Any,
    dataset: Dataset,
    model: Any = None,
    *,
    metric: str | Callable | None = None,
    fractions: Iterable[float] | None = None,
    orders: Sequence[str] = ("most_valuable_first", "least_valuable_first"),
    include_random: bool = True,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    progress: bool | None = None,
    split: str = "test",
) -> pd.DataFrame:
    """Test score after removing training points in order of value.

    Ghorbani & Zou (2019, Fig. 2): remove the most (or least) valuable points, retrain on the
    rest, score on held-out data. Good values make the score fall fastest when the most valuable
    points go first, and hold (or rise, when the data has corrupted points) when the least
    valuable go first. OpenDataVal (Jiang et al. 2023) reports the same curves.

    Parameters
    ----------
    values : array-like of shape (n_train,) or ValuationResult
        Data values of ``dataset``'s training split, higher = more helpful.
    dataset : Dataset
        The data the values are for; models are scored on its test split.
    model : estimator or None
        Retrained from scratch (a clone) on every subset. Default
        :func:`datavalue.valuation.base.default_model` (logistic / ridge regression).
    metric : str, callable or None
        See :data:`datavalue.METRICS`; default accuracy (classification) or r2 (regression).
    fractions : array-like of float or None
        Fractions of the training set to remove, in [0, 1), sorted ascending;
        ``n_points = floor(fraction * n_train + 1/2)``. Default ``np.linspace(0, 0.5, 11)``.
    orders : sequence of str
        Any of :data:`ORDERS`. Ties in value are broken by index.
    include_random : bool
        Also run the "random" order (a permutation seeded by ``random_state``), the baseline.
    random_state : int or None
        Seed of the random order.
    n_jobs : int or None
        Parallel fits (joblib); the frame is identical for any value (given a deterministic
        model: seed its random_state).
    progress : bool or None
        Progress bar (None: only on a terminal).
    split : {"test", "valid"}
        Split to score on.

    Returns
    -------
    pandas.DataFrame
        One row per (order, fraction): ``order``, ``fraction``, ``n_points`` (removed),
        ``n_remaining``, ``score``. ``frame.attrs`` records the metric, split and n_train.
    """
    return _curve("point_removal", values, dataset, model, metric, fractions, orders,
                  include_random, random_state, n_jobs, progress, split)


def point_addition(
    values: Any,
    dataset: Dataset,
    model: Any = None,
    *,
    metric: str | Callable | None = None,
    fractions: Iterable[float] | None = None,
    orders: Sequence[str] = ("most_valuable_first", "least_valuable_first"),
    include_random: bool = True,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    progress: bool | None = None,
    split: str = "test",
) -> pd.DataFrame:
    """Test score of a model trained on the first points in order of value.

    Ghorbani & Zou (2019, Fig. 2, "adding"): starting from an empty training set, add the most
    (or least) valuable points, retrain, score on held-out data. Good values make the score
    rise fastest when the most valuable points come first. A subset with a single class (or
    none) scores as the constant prediction (see :class:`datavalue.Utility`).

    Parameters
    ----------
    values : array-like of shape (n_train,) or ValuationResult
        Data values of ``dataset``'s training split, higher = more helpful.
    dataset : Dataset
        The data the values are for; models are scored on its test split.
    model : estimator or None
        Retrained from scratch (a clone) on every subset. Default
        :func:`datavalue.valuation.base.default_model` (logistic / ridge regression).
    metric : str, callable or None
        See :data:`datavalue.METRICS`; default accuracy (classification) or r2 (regression).
    fractions : array-like of float or None
        Fractions of the training set to add, in [0, 1] (0: the empty set), sorted ascending;
        ``n_points = floor(fraction * n_train + 1/2)``. Default ``np.linspace(0.05, 0.5, 10)``.
    orders : sequence of str
        Any of :data:`ORDERS`. Ties in value are broken by index.
    include_random : bool
        Also run the "random" order (a permutation seeded by ``random_state``), the baseline.
    random_state : int or None
        Seed of the random order.
    n_jobs : int or None
        Parallel fits (joblib); the frame is identical for any value (given a deterministic
        model: seed its random_state).
    progress : bool or None
        Progress bar (None: only on a terminal).
    split : {"test", "valid"}
        Split to score on.

    Returns
    -------
    pandas.DataFrame
        One row per (order, fraction): ``order``, ``fraction``, ``n_points`` (added),
        ``n_classes`` (classification: classes among the points added; with one, the model
        predicts that class everywhere),
        ``score``. ``frame.attrs`` records the metric, split and n_train.
    """
    return _curve("point_addition", values, dataset, model, metric, fractions, orders,
                  include_random, random_state, n_jobs, progress, split)


def summarize_curve(frame: pd.DataFrame) -> dict[str, float]:
    """Mean score over the fractions of each order of a removal or addition curve.

    The normalised area under each curve, one number per order to compare methods: for
    removal, good values give a *low* number for ``most_valuable_first`` and a high one for
    ``least_valuable_first`` (Ghorbani & Zou 2019; OpenDataVal reports the same curves).

    Returns
    -------
    dict
        ``{order: mean score}`` in the order the frame lists them.
    """
    if not isinstance(frame, pd.DataFrame) or not {"order", "fraction", "score"} <= set(frame):
        raise InvalidDataError(
            "'frame' must be the DataFrame returned by point_removal or point_addition (columns "
            "order, fraction, score)."
        )
    if "method" in frame and frame["method"].nunique() > 1:
        raise InvalidDataError(
            "'frame' holds several methods; summarize each one separately, e.g. "
            "{m: summarize_curve(g) for m, g in frame.groupby('method')}."
        )
    if frame.empty or not np.isfinite(frame["score"].to_numpy(dtype=float)).all():
        raise InvalidDataError("'frame' is empty or has non-finite scores.")
    means = frame.groupby("order", sort=False)["score"].mean()
    return {str(k): float(m) for k, m in means.items()}
