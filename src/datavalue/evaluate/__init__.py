"""Evaluation: do the values mean anything?

The experiments of the data valuation literature, as plain functions of the values (higher =
more helpful), each returning plain numbers or a tidy :class:`pandas.DataFrame`:

- :func:`noisy_detection` and :func:`inspection_curve`: corrupted training points should get
  the lowest values (Ghorbani & Zou 2019, Sec. 4.2; Kwon & Zou 2023, Sec. 5; OpenDataVal,
  Jiang et al. 2023).
- :func:`point_removal` and :func:`point_addition`: retraining without the most valuable points
  should hurt the model most, training on them first should help most (Ghorbani & Zou 2019,
  Figs. 2-3; OpenDataVal's ``remove_high_low``); :func:`summarize_curve` turns a curve into one
  number per order.
- :func:`loo_agreement`: correlation with leave-one-out values by actual retraining.
- :func:`lds` and :func:`loo_correlation`: how well an attribution matrix (influence, TRAK,
  TracIn, or a value vector) predicts models actually retrained on random subsets (the linear
  datamodeling score, Park et al. 2023) or without single examples (ground truth from
  :mod:`datavalue.evaluate.retrain`, cached on disk and resumable).

Figures (:func:`plot_values`, :func:`plot_noisy_detection`, :func:`plot_point_removal`,
:func:`plot_point_addition`) return :class:`matplotlib.figure.Figure` objects built without
pyplot: nothing is shown and no global state is touched; save them with ``fig.savefig(path)``.

References
----------
A. Ghorbani and J. Zou. Data Shapley: Equitable valuation of data for machine learning. ICML 2019.
Y. Kwon and J. Zou. Data-OOB: Out-of-bag estimate as a simple and efficient data value. ICML 2023.
K. F. Jiang, W. Liang, J. Zou and Y. Kwon. OpenDataVal: a unified benchmark for data valuation.
NeurIPS 2023 Datasets and Benchmarks.
S. M. Park, K. Georgiev, A. Ilyas, G. Leclerc and A. Madry. TRAK: Attributing model behavior at
scale. ICML 2023 (Sec. 2.2, the linear datamodeling score).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError, UnknownNameError
from datavalue._core.parallel import parallel_map
from datavalue._core.result import ValuationResult
from datavalue._core.validation import check_estimator_like, check_seed
from datavalue.data import Dataset
from datavalue.valuation.utility import Utility, default_metric

__all__ = [
    "ORDERS",
    "noisy_detection",
    "kmeans_low_cluster",
    "inspection_curve",
    "point_removal",
    "point_addition",
    "summarize_curve",
    "loo_agreement",
    "lds",
    "loo_correlation",
    "plot_values",
    "plot_noisy_detection",
    "plot_point_removal",
    "plot_point_addition",
]

#: Orders accepted by :func:`point_removal` and :func:`point_addition`.
ORDERS: tuple[str, ...] = ("most_valuable_first", "least_valuable_first", "random")

_ORDER_LABELS = {
    "most_valuable_first": "most valuable first",
    "least_valuable_first": "least valuable first",
    "random": "in random order",
}
_ORDER_STYLES = {
    "most_valuable_first": dict(color="tab:red", marker="o"),
    "least_valuable_first": dict(color="tab:blue", marker="s"),
    "random": dict(color="0.45", marker="", linestyle="--"),
}
_METHOD_LINESTYLES = {"most_valuable_first": "-", "least_valuable_first": "--", "random": ":"}


# ---------------------------------------------------------------------------- validation
def _check_values(values: Any, name: str = "values", *, n: int | None = None,
                  n_name: str = "") -> np.ndarray:
    """``values`` as a 1-D finite float64 array (of length ``n`` if given)."""
    if isinstance(values, ValuationResult):
        values = values.values
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"'{name}' must be an array of numbers: {exc}") from exc
    if arr.ndim != 1:
        raise InvalidDataError(
            f"'{name}' must be a 1-D array with one value per training point; got shape "
            f"{arr.shape}."
        )
    if arr.size == 0:
        raise InvalidDataError(f"'{name}' is empty.")
    if n is not None and arr.size != n:
        raise InvalidDataError(
            f"'{name}' has {arr.size} entries but {n_name} is {n}; pass one value per "
            "training point, in the order of the training split."
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if bad.size > 10 else "")
        raise InvalidDataError(
            f"'{name}' contains {bad.size} NaN or infinite value(s), at index {shown}."
        )
    return arr


def _check_noisy(noisy_indices: Any, n: int, name: str = "noisy_indices", *,
                 need_both: bool = True) -> np.ndarray:
    """Boolean mask over ``n`` points from indices (or from a boolean mask of length ``n``).

    With ``need_both``, at least one point must be noisy and at least one clean.
    """
    arr = np.asarray(noisy_indices)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InvalidDataError(
                f"'{name}' is a boolean mask of shape {arr.shape}; it must have one entry per "
                f"training point, shape ({n},)."
            )
        mask = arr.copy()
    else:
        if arr.ndim != 1:
            raise InvalidDataError(
                f"'{name}' must be a 1-D array of indices; got shape {arr.shape}."
            )
        if arr.size and arr.dtype.kind not in "iu":
            raise InvalidDataError(
                f"'{name}' must hold integer indices into the training split; got dtype "
                f"{arr.dtype}."
            )
        idx = arr.astype(np.int64)
        out = idx[(idx < 0) | (idx >= n)]
        if out.size:
            raise InvalidDataError(
                f"'{name}' must index the training split (0..{n - 1}); got {out[:5].tolist()}."
            )
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise InvalidDataError(
                f"'{name}' contains duplicate indices: {uniq[counts > 1][:5].tolist()}."
            )
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
    if need_both and not mask.any():
        raise InvalidDataError(
            f"'{name}' is empty: detection metrics (AUC, F1) are undefined without corrupted "
            "points. Corrupt some first, e.g. dv.load_dataset(..., noise_rate=0.1)."
        )
    if need_both and mask.all():
        raise InvalidDataError(
            f"'{name}' marks all {n} points as corrupted: detection metrics are undefined "
            "without clean points."
        )
    return mask


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
        high is not None and value > high
    ):
        rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidParameterError(f"The '{name}' parameter must be an int {rng}. Got {value!r}.")
    return int(value)


def _check_fractions(fractions: Any, *, addition: bool) -> np.ndarray:
    try:
        f = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"'fractions' must be a list of numbers: {exc}") from exc
    if f.ndim == 0:
        f = f.reshape(1)
    # Adding 0 points (the constant prediction) and all of them are both defined; removing all
    # of them is not a removal curve.
    where = "[0, 1]" if addition else "[0, 1)"
    ok = (f >= 0) & (f <= 1) if addition else (f >= 0) & (f < 1)
    if f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)) or not ok.all():
        raise InvalidParameterError(
            f"The 'fractions' parameter must be a non-empty list of fractions in {where} of the "
            f"training set to {'add' if addition else 'remove'}. Got {fractions!r}."
        )
    if np.unique(f).size != f.size:
        raise InvalidParameterError(f"The 'fractions' parameter has duplicates: {f.tolist()}.")
    return np.sort(f)


def _check_orders(orders: Any, include_random: Any) -> list[str]:
    if not isinstance(include_random, bool | np.bool_):
        raise InvalidParameterError(
            f"The 'include_random' parameter must be a bool. Got {include_random!r}."
        )
    names = [orders] if isinstance(orders, str) else list(orders)
    for o in names:
        if o not in ORDERS:
            raise UnknownNameError(
                f"Unknown order {o!r} in 'orders': use {', '.join(map(repr, ORDERS))}."
            )
    if not names:
        raise InvalidParameterError("The 'orders' parameter must name at least one order.")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"The 'orders' parameter has duplicates: {names}.")
    if include_random and "random" not in names:
        names.append("random")
    return names


# ---------------------------------------------------------------------------- detection
def _low_cluster(v: np.ndarray) -> np.ndarray:
    """Exact 1-D 2-means of validated values: mask of the cluster with the lower mean."""
    order = np.argsort(v, kind="stable")
    s = v[order] - v.mean()  # centring keeps the cumulative sums well conditioned
    n = s.size
    mask = np.zeros(n, dtype=bool)
    # Optimal 1-D k-means clusters are contiguous in sorted order, so the best 2-means is the
    # split i (low = s[:i]) minimising the within-cluster sum of squares, i.e. maximising the
    # between-cluster sum c_i^2 / i + (S - c_i)^2 / (n - i). Equal values are never separated.
    i = np.arange(1, n)
    if i.size == 0:
        return mask
    c = np.cumsum(s)[:-1]
    between = c**2 / i + (c[-1] + s[-1] - c) ** 2 / (n - i)
    between[~(s[1:] > s[:-1])] = -np.inf
    if not np.isfinite(between).any():  # all values equal: nothing stands out
        return mask
    mask[order[: i[int(np.argmax(between))]]] = True
    return mask


def kmeans_low_cluster(values: Any) -> np.ndarray:
    """Which points fall in the low-value cluster of a 2-means clustering of the values.

    The rule behind the detection F1 score of Kwon & Zou (2023) and OpenDataVal (Jiang et al.
    2023): cluster the values into two groups with k-means and flag the group with the lower
    centre as corrupted. Kwon & Zou run ``sklearn.cluster.KMeans(n_clusters=2,
    random_state=0)`` on the values and flag ``labels_ == argmin(cluster_centers_)``; OpenDataVal
    (``experiment/util.py: oned_twonn_clustering``) computes the exact optimum by scanning the
    splits of the sorted values. We compute the same exact optimum (no seed, no local minima):
    the split of the sorted values that minimises the within-cluster sum of squares, never
    separating equal values. Lloyd's algorithm returns this partition when it finds the global
    optimum; it can stop at a local one (for scikit-learn's ``KMeans(n_init=10)`` in about one
    of eight random two-component mixtures we tried), so Kwon & Zou's F1 can differ slightly.

    Parameters
    ----------
    values : array-like of shape (n_train,)

    Returns
    -------
    numpy.ndarray of bool, shape (n_train,)
        True for the low cluster. All False if every value is equal (no split exists).
    """
    return _low_cluster(_check_values(values))


def noisy_detection(values: Any, noisy_indices: Any, *, k: int | None = None) -> dict[str, Any]:
    """How well low values single out corrupted training points.

    Parameters
    ----------
    values : array-like of shape (n_train,) or ValuationResult
        Data values, higher = more helpful; low values are read as "suspicious".
    noisy_indices : array-like of int, or bool mask of shape (n_train,)
        The training points that were corrupted (``Dataset.noisy_indices``). At least one point
        must be corrupted and one clean.
    k : int or None
        Number of lowest-valued points flagged for ``precision_at_k``/``recall_at_k``
        (default: the number of corrupted points, so precision = recall).

    Returns
    -------
    dict
        - ``auc``: ROC-AUC of the score ``-values`` with the corrupted points as positives
          (1 = every corrupted point below every clean one, 0.5 = random, ties count half).
        - ``average_precision``: area under the precision-recall curve of the same score.
        - ``f1_kmeans``: F1 score of the low-value cluster of a 2-means clustering of the values
          (:func:`kmeans_low_cluster`) as a detector — the metric of Kwon & Zou (2023) and
          OpenDataVal (Jiang et al. 2023); ``precision_kmeans``, ``recall_kmeans`` and
          ``n_flagged_kmeans`` go with it.
        - ``precision_at_k``, ``recall_at_k``, ``k``: flag the ``k`` lowest values (ties broken by
          index) — the recall of Kwon & Zou (2023) with ``k = n_noisy``.
        - ``n_noisy``, ``n_train``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    v = _check_values(values)
    mask = _check_noisy(noisy_indices, v.size)
    n, n_noisy = v.size, int(mask.sum())
    k = n_noisy if k is None else _check_int(k, "k", 1, n)
    hits = int(mask[np.argsort(v, kind="stable")[:k]].sum())
    low = _low_cluster(v)
    tp, fp, fn = int((low & mask).sum()), int((low & ~mask).sum()), int((~low & mask).sum())
    return {
        "auc": float(roc_auc_score(mask, -v)),
        "average_precision": float(average_precision_score(mask, -v)),
        "f1_kmeans": 2 * tp / (2 * tp + fp + fn),
        "precision_kmeans": tp / (tp + fp) if tp + fp else 0.0,
        "recall_kmeans": tp / n_noisy,
        "n_flagged_kmeans": tp + fp,
        "precision_at_k": hits / k,
        "recall_at_k": hits / n_noisy,
        "k": k,
        "n_noisy": n_noisy,
        "n_train": n,
    }


def inspection_curve(values: Any, noisy_indices: Any) -> pd.DataFrame:
    """Fraction of corrupted points found when inspecting points in order of increasing value.

    The "corrupted data discovery" curve of Ghorbani & Zou (2019, Fig. 3) and OpenDataVal's
    ``discover_corrupted_sample``, at every number of inspected points (ties broken by index).

    Returns
    -------
    pandas.DataFrame with n_train + 1 rows
        ``n_inspected`` (0..n), ``fraction_inspected``, ``n_found``, ``fraction_found``,
        ``optimal`` (every inspected point corrupted until all are found) and ``random``
        (expected fraction found inspecting at random, = ``fraction_inspected``).
    """
    v = _check_values(values)
    mask = _check_noisy(noisy_indices, v.size)
    n, n_noisy = v.size, int(mask.sum())
    inspected = np.arange(n + 1)
    found = np.concatenate([[0], np.cumsum(mask[np.argsort(v, kind="stable")])])
    return pd.DataFrame({
        "n_inspected": inspected,
        "fraction_inspected": inspected / n,
        "n_found": found,
        "fraction_found": found / n_noisy,
        "optimal": np.minimum(inspected / n_noisy, 1.0),
        "random": inspected / n,
    })


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


# ---------------------------------------------------------------------------- LOO agreement
def loo_agreement(values: Any, reference: Any) -> dict[str, float]:
    """Correlation of values with reference values, e.g. leave-one-out by actual retraining.

    Parameters
    ----------
    values, reference : array-like of shape (n_train,) or ValuationResult

    Returns
    -------
    dict
        ``pearson``, ``spearman``, ``kendall`` (tau-b) and ``n``. A correlation with a
        constant array is undefined and reported as NaN (LOO with accuracy is often all zeros:
        use ``metric="neg_log_loss"``).
    """
    from scipy import stats

    v = _check_values(values)
    r = _check_values(reference, "reference", n=v.size, n_name="the length of 'values'")
    if v.size < 2:
        raise InvalidDataError("Correlations need at least two values.")
    if np.ptp(v) == 0 or np.ptp(r) == 0:
        nan = float("nan")
        return {"pearson": nan, "spearman": nan, "kendall": nan, "n": int(v.size)}
    return {
        "pearson": float(stats.pearsonr(v, r)[0]),
        "spearman": float(stats.spearmanr(v, r)[0]),
        "kendall": float(stats.kendalltau(v, r)[0]),
        "n": int(v.size),
    }


# ---------------------------------------------------------------------------- attributions
def _check_scores(scores: Any) -> np.ndarray:
    """An attribution matrix ``(n_test, n_train)`` (a 1-D value vector becomes one row)."""
    if isinstance(scores, ValuationResult):
        scores = scores.values
    arr = np.asarray(scores, dtype=np.float64) if not hasattr(scores, "detach") else \
        scores.detach().cpu().numpy().astype(np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InvalidDataError(
            "'scores' must be an attribution matrix (n_test, n_train) or a value vector "
            f"(n_train,) with n_train >= 2; got shape {np.shape(scores)}.")
    if not np.all(np.isfinite(arr)):
        raise InvalidDataError(
            f"'scores' contains {int((~np.isfinite(arr)).sum())} NaN or infinite values.")
    return arr


def _aligned_outputs(scores: np.ndarray, outputs: np.ndarray, goal: str) -> np.ndarray:
    """Test outputs as "goodness" (``-loss`` for a loss), one column per row of ``scores``: a
    value vector (one row) is compared with the mean output over the test examples."""
    good = outputs if goal == "maximize" else -outputs
    if scores.shape[0] == 1 and good.shape[1] != 1:
        return good.mean(1, keepdims=True)
    if good.shape[1] != scores.shape[0]:
        raise InvalidDataError(
            f"'scores' has {scores.shape[0]} rows (test examples) but the retrained models "
            f"give {good.shape[1]} outputs; they must be the same test examples.")
    return good


def _rank_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks along axis 0 (ties share their mean rank, as Spearman's rho wants)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=0)


def _columnwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``a`` with the same column of ``b`` (NaN where
    either is constant)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1.0), np.nan)


def lds(scores: Any, retrain: Any, *, alpha: float = 0.5, n_subsets: int = 100,
        n_seeds: int = 1, random_state: int = 0, goal: str | None = None,
        cache: str | os.PathLike | None = None, n_jobs: int | None = None,
        backend: str | None = None, ray_address: str | None = None,
        progress: bool | None = None) -> dict[str, Any]:
    """Linear datamodeling score (Park et al. 2023, Sec. 2.2, Eq. 4): how well the sums of the
    attribution scores over random training subsets rank the outputs of models actually
    retrained on those subsets.

    For each test example ``t``: the Spearman correlation over subsets ``S_j`` between
    ``sum_{i in S_j} scores[t, i]`` and the retrained model's output on ``t`` (its "goodness":
    ``-loss`` for a loss, the margin itself), then the mean over test examples. 1 for an
    attribution that is exactly an additive model of the outputs; about 0 for random scores.

    Parameters
    ----------
    scores : array-like of shape (n_test, n_train), or (n_train,)
        Positive = helpful (every attribution of datavalue). A value vector is one row,
        compared with the mean output over the test examples.
    retrain : Retrain, callable or SubsetOutputs
        A :class:`~datavalue.evaluate.retrain.Retrain` (or ``(train_indices, seed) -> (n_test,)``
        outputs with ``goal``), run by :func:`~datavalue.evaluate.retrain.subset_outputs` with the
        options below; or ground truth already computed (the options are then not used).
    alpha : float
        Fraction of the training set in each subset (0.5, as in TRAK and dattri).
    n_subsets : int
        Number of random subsets (100).
    n_seeds : int
        Retrainings per subset, outputs averaged (reduces the training noise of networks).
    random_state : int
        Seed of the subsets and of the retrainings.
    goal : {"minimize", "maximize"} or None
        For a plain callable: whether its output is a loss or a score.
    cache : path or None
        A ``.npz`` file keeping the retrained outputs: resumed after an interruption, reused by
        later calls (e.g. for another score matrix), refused if made with other settings.
    n_jobs, backend, ray_address, progress
        Parallel retraining (joblib; ``backend="ray"`` for a Ray cluster at ``ray_address``,
        e.g. ``"127.0.0.1:6379"``).

    Returns
    -------
    dict
        ``lds`` (mean over test examples with a defined correlation), ``per_test``
        (``(n_test,)``, NaN where the outputs or the predictions are constant), ``n_subsets``,
        ``alpha``, ``n_seeds``.
    """
    from datavalue.evaluate.retrain import SubsetOutputs, subset_outputs

    arr = _check_scores(scores)
    truth = retrain if isinstance(retrain, SubsetOutputs) else subset_outputs(
        retrain, arr.shape[1], alpha=alpha, n_subsets=n_subsets, n_seeds=n_seeds,
        random_state=random_state, goal=goal, cache=cache, n_jobs=n_jobs, backend=backend,
        ray_address=ray_address, progress=progress)
    if truth.masks.shape[1] != arr.shape[1]:
        raise InvalidDataError(
            f"'scores' has {arr.shape[1]} columns (training examples) but the subsets are of "
            f"{truth.masks.shape[1]} training examples.")
    good = _aligned_outputs(arr, truth.outputs, truth.goal)
    predicted = truth.masks.astype(np.float64) @ arr.T  # (m, n_test)
    per_test = _columnwise_corr(_rank_rows(predicted), _rank_rows(good))
    defined = per_test[np.isfinite(per_test)]
    return {"lds": float(defined.mean()) if defined.size else float("nan"),
            "per_test": per_test, "n_subsets": int(truth.masks.shape[0]),
            "alpha": float(truth.alpha), "n_seeds": int(truth.n_seeds)}


def loo_correlation(scores: Any, retrain: Any, *, train_indices: Any = None,
                    n_points: int = 100, n_seeds: int = 1, random_state: int = 0,
                    goal: str | None = None, cache: str | os.PathLike | None = None,
                    n_jobs: int | None = None, backend: str | None = None,
                    ray_address: str | None = None,
                    progress: bool | None = None) -> dict[str, Any]:
    """Agreement of attribution scores with actual leave-one-out retraining.

    The actual effect of removing training row ``i`` on test example ``t`` is the change of
    its output's goodness: ``loss(t; without i) - loss(t; all)`` for a loss, ``margin(t;
    all) - margin(t; without i)`` for a margin (positive = ``i`` helped ``t``, the sign of
    every attribution). Reported: the Pearson correlation over the removed rows for each test
    example and its mean (as dattri reports it), and over all (test, row) pairs at once.

    Parameters
    ----------
    scores : array-like of shape (n_test, n_train), or (n_train,)
        A value vector is compared with the change of the mean output over the test examples.
    retrain : Retrain, callable or LOOOutputs
        As in :func:`lds` (ground truth from :func:`~datavalue.evaluate.retrain.loo_outputs`).
    train_indices : array-like of int or None
        The rows removed one at a time; None: ``n_points`` rows drawn with ``random_state``
        (all rows if there are fewer).
    n_points, n_seeds, random_state, goal, cache, n_jobs, backend, ray_address, progress
        As in :func:`lds`; ``n_seeds`` retrainings of every model with the same seeds.

    Returns
    -------
    dict
        ``pearson`` (mean over test examples), ``per_test``, ``overall`` (all pairs),
        ``spearman_overall``, ``train_indices``, ``actual`` (``(n_test, n_removed)`` changes).
    """
    from scipy import stats

    from datavalue.evaluate.retrain import LOOOutputs, loo_outputs

    arr = _check_scores(scores)
    n = arr.shape[1]
    if isinstance(retrain, LOOOutputs):
        truth = retrain
    else:
        if train_indices is None:
            n_points = _check_int(n_points, "n_points", 2)
            rng = np.random.default_rng(check_seed(random_state))
            train_indices = np.sort(rng.choice(n, min(n_points, n), replace=False))
        truth = loo_outputs(retrain, train_indices, n, n_seeds=n_seeds,
                            random_state=random_state, goal=goal, cache=cache, n_jobs=n_jobs,
                            backend=backend, ray_address=ray_address, progress=progress)
    removed = truth.removed
    if truth.n_train is not None and truth.n_train != n:
        raise InvalidDataError(
            f"'scores' has {n} columns (training examples) but the leave-one-out retraining "
            f"had {truth.n_train} training rows: give one score per training row.")
    if removed.max() >= n:
        raise InvalidDataError(
            f"The removed rows go up to {int(removed.max())}; 'scores' has {n} columns.")
    change = truth.outputs - truth.full[None, :]  # (r, n_test)
    actual = _aligned_outputs(arr, -change, truth.goal).T  # goodness lost by removal
    predicted = arr[:, removed]
    per_test = _columnwise_corr(predicted.T, actual.T)
    defined = per_test[np.isfinite(per_test)]
    flat_p, flat_a = predicted.ravel(), actual.ravel()
    constant = np.ptp(flat_p) == 0 or np.ptp(flat_a) == 0
    return {"pearson": float(defined.mean()) if defined.size else float("nan"),
            "per_test": per_test,
            "overall": float("nan") if constant else float(stats.pearsonr(flat_p, flat_a)[0]),
            "spearman_overall": float("nan") if constant
            else float(stats.spearmanr(flat_p, flat_a)[0]),
            "train_indices": removed, "actual": actual}


# ---------------------------------------------------------------------------- figures
def _axes(ax: Any, ncols: int = 1, figsize: tuple[float, float] = (6.0, 4.0)):
    if ax is not None:
        first = ax[0] if ncols > 1 else ax
        return first.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(1, ncols)


def plot_values(values: Any, noisy_indices: Any = None, *, ax: Any = None, bins: int = 30):
    """Histogram of the values; corrupted and clean points apart if ``noisy_indices`` is given.

    Returns
    -------
    matplotlib.figure.Figure
    """
    v = _check_values(values)
    bins = _check_int(bins, "bins", 1)
    fig, ax = _axes(ax)
    edges = np.histogram_bin_edges(v, bins=bins)
    if noisy_indices is None:
        ax.hist(v, bins=edges, color="tab:blue", alpha=0.8, label=f"all points (n={v.size})")
    else:
        mask = _check_noisy(noisy_indices, v.size, need_both=False)
        ax.hist(v[~mask], bins=edges, color="tab:blue", alpha=0.6,
                label=f"clean (n={int((~mask).sum())})")
        ax.hist(v[mask], bins=edges, color="tab:red", alpha=0.6,
                label=f"corrupted (n={int(mask.sum())})")
    ax.set_xlabel("Data value (higher = more helpful)")
    ax.set_ylabel("Number of training points")
    ax.set_title("Distribution of data values")
    ax.legend()
    return fig


def plot_noisy_detection(values: Any, noisy_indices: Any, *, ax: Any = None):
    """Values of corrupted vs clean points, and the corrupted-data discovery curve.

    Left: histograms (:func:`plot_values`). Right: fraction of corrupted points found when
    inspecting points by increasing value (:func:`inspection_curve`), with the optimal curve and
    the random-inspection diagonal (Ghorbani & Zou 2019, Fig. 3).

    Parameters
    ----------
    ax : pair of matplotlib Axes or None
        Where to draw (a new 1x2 figure if None).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is not None and (isinstance(ax, str) or not hasattr(ax, "__len__") or len(ax) != 2):
        raise InvalidParameterError("'ax' must be a pair of matplotlib Axes or None.")
    curve = inspection_curve(values, noisy_indices)
    scores = noisy_detection(values, noisy_indices)
    fig, (left, right) = _axes(ax, 2, (11.0, 4.2))
    plot_values(values, noisy_indices, ax=left)
    x = curve["fraction_inspected"]
    right.plot(x, curve["fraction_found"], color="tab:red", lw=2,
               label=f"by increasing value (AUC {scores['auc']:.3f})")
    right.plot(x, curve["optimal"], color="k", ls="--", lw=1, label="optimal")
    right.plot(x, curve["random"], color="0.5", ls=":", lw=1.5, label="random inspection")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.02)
    right.set_xlabel("Fraction of training data inspected (lowest values first)")
    right.set_ylabel("Fraction of corrupted points found")
    right.set_title(f"Finding corrupted points (k-means F1 {scores['f1_kmeans']:.3f})")
    right.legend(loc="lower right")
    return fig


def _plot_curve(frame: pd.DataFrame, ax: Any, verb: str, title: str | None):
    if not isinstance(frame, pd.DataFrame) or not {"order", "fraction", "score"} <= set(frame):
        raise InvalidDataError(
            f"'frame' must be the DataFrame returned by "
            f"point_{'removal' if verb == 'removed' else 'addition'} (columns order, fraction, "
            "score)."
        )
    fig, ax = _axes(ax)
    by_method = "method" in frame
    methods = list(dict.fromkeys(frame["method"])) if by_method else []
    for key, g in frame.groupby(["method", "order"] if by_method else ["order"], sort=False):
        method, order = key if by_method else (None, key[0])
        label = f"{'Remove' if verb == 'removed' else 'Add'} {_ORDER_LABELS.get(order, order)}"
        if method is None:
            style = _ORDER_STYLES.get(order, {})
        else:  # colour = method, line style = order
            label = f"{method}: {label}"
            style = dict(color=f"C{methods.index(method) % 10}",
                         linestyle=_METHOD_LINESTYLES.get(order, "-"), marker=".")
        g = g.sort_values("fraction")
        ax.plot(g["fraction"], g["score"], label=label, **style)
    metric = frame.attrs.get("metric", "score")
    split = frame.attrs.get("split", "test")
    ax.set_xlabel(f"Fraction of training data {verb}")
    ax.set_ylabel(f"{split.capitalize()} {metric}")
    ax.set_title(title or ("Point removal" if verb == "removed" else "Point addition"))
    ax.legend()
    return fig


def plot_point_removal(frame: pd.DataFrame, *, ax: Any = None, title: str | None = None):
    """Score vs fraction removed, one line per order (and per method if the frame has a
    ``method`` column). Returns the :class:`matplotlib.figure.Figure`."""
    return _plot_curve(frame, ax, "removed", title)


def plot_point_addition(frame: pd.DataFrame, *, ax: Any = None, title: str | None = None):
    """Score vs fraction added, one line per order (and per method if the frame has a
    ``method`` column). Returns the :class:`matplotlib.figure.Figure`."""
    return _plot_curve(frame, ax, "added", title)
