"""Fix mislabeled examples (Koh & Liang 2017, Sec. 5.4): a person reviews training examples in
some order (self-influence, data value, training loss, random) and restores the true label of
every flipped one found; reported: the share of flipped labels found against the share checked,
and the test score after fixing them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from datavalue._core.exceptions import (
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    UnknownNameError,
)
from datavalue._core.io import csv_text
from datavalue._core.parallel import parallel_map
from datavalue._core.result import ValuationResult, jsonable
from datavalue.actions._common import (
    _check_dataset,
    _count,
    _figure,
    _grid,
    _metric_name,
    _model,
)
from datavalue.data import Dataset
from datavalue.evaluate._checks import _check_values
from datavalue.valuation.utility import Utility, default_metric

#: Review orders of :func:`fix` besides data values (``values={method: values}``).
FIX_RANKINGS: tuple[str, ...] = ("self-influence", "loss", "random")

# ---------------------------------------------------------------------------- fix
def original_labels(dataset: Dataset, clean: Dataset | Any) -> np.ndarray:
    """The true training targets of a corrupted ``dataset``, checked against it.

    ``clean`` is the same data loaded without corruption (``dv.load_dataset(...,
    noise_rate=0)`` with the same options and ``random_state``: the split and the subsample do
    not depend on the noise, so the rows are the same) or an array of targets. The features
    must be identical and the targets may differ only at ``dataset.noisy_indices``.
    """
    ds = _check_dataset(dataset, need_test=False)
    if isinstance(clean, Dataset):
        if clean.n_train != ds.n_train or not np.array_equal(clean.x_train, ds.x_train):
            raise InvalidDataError(
                "'true_labels' is not the clean version of 'dataset': their training features "
                "differ. Load it with the same options and random_state and noise_rate=0."
            )
        y = np.asarray(clean.y_train)
    else:
        y = np.asarray(clean)
        if y.shape != (ds.n_train,):
            raise InvalidDataError(
                f"'true_labels' must have one target per training row, shape ({ds.n_train},); "
                f"got {y.shape}."
            )
        y = y.astype(ds.y_train.dtype)
    changed = np.flatnonzero(y != ds.y_train)
    stray = np.setdiff1d(changed, ds.noisy_indices)
    if stray.size:
        raise InvalidDataError(
            f"'true_labels' differs from the training targets at {stray.size} row(s) that are "
            f"not in dataset.noisy_indices (e.g. {stray[:5].tolist()}): it is not the clean "
            "version of this data set."
        )
    return y


def training_loss(model: Any, x: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Loss of each training example under a fitted model: ``-log p(y_i | x_i)``
    (classification) or the squared error (regression)."""
    if task == "regression":
        return (np.asarray(model.predict(x), dtype=np.float64) - y) ** 2
    if hasattr(model, "predict_proba"):
        p = np.asarray(model.predict_proba(x), dtype=np.float64)
    else:
        d = np.asarray(model.decision_function(x), dtype=np.float64)
        d = np.column_stack([-d, d]) if d.ndim == 1 else d
        e = np.exp(d - d.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    col = np.searchsorted(np.asarray(model.classes_), y)
    return -np.log(np.clip(p[np.arange(len(y)), col], 1e-15, 1.0))


def self_influence(model: Any, x: np.ndarray, y: np.ndarray,
                   options: Mapping[str, Any] | None = None) -> np.ndarray:
    """Self-influence of each training example under a fitted model (Koh & Liang 2017, Sec. 5.4):
    ``dv.InfluenceFunction(model).fit(x, y).self_influence()``, larger = check first.

    ``options`` go to :class:`~datavalue.attribution.InfluenceFunction` (default
    ``solver="exact"``: linear models have few parameters).
    """
    opts = {"solver": "exact", "progress": False, **dict(options or {})}
    try:
        from datavalue.attribution import InfluenceFunction

        inf = InfluenceFunction(model, **opts).fit(x, y)
    except ImportError as exc:  # datavalue.attribution or PyTorch (imported lazily by fit)
        raise InvalidParameterError(
            "The 'self-influence' ranking needs datavalue.attribution and PyTorch "
            f"(pip install 'datavalue[torch]'), which could not be imported ({exc}); drop it "
            "from 'rankings'."
        ) from exc
    except InvalidModelError as exc:
        raise InvalidModelError(
            f"The 'self-influence' ranking cannot use this model: {exc} Use a linear model "
            "(e.g. model='logreg') or drop 'self-influence' from 'rankings'."
        ) from exc
    return np.asarray(inf.self_influence(), dtype=np.float64)


@dataclass
class FixResult:
    """What :func:`fix` returns.

    Attributes
    ----------
    curve : pandas.DataFrame
        One row per (ranking, fraction checked): ``ranking``, ``fraction_checked``,
        ``n_checked``, ``n_found`` (flipped labels among the checked rows), ``fraction_found``
        (of all flipped labels), ``score`` (test score after restoring the true labels of the
        ones found).
    orders : dict
        ``ranking -> training indices in review order``.
    priorities : dict
        ``ranking -> the number each ranking sorts by`` (higher = reviewed first: minus the
        value, the self-influence, the training loss; the position for "random").
    flipped : numpy.ndarray
        Training rows whose target differs from the true one.
    """

    curve: pd.DataFrame
    orders: dict[str, np.ndarray]
    priorities: dict[str, np.ndarray]
    flipped: np.ndarray
    metric: str
    score_noisy: float
    score_clean: float
    n_train: int

    def summary(self, at: float = 0.1) -> dict[str, Any]:
        """For each ranking: the fraction of flipped labels found and the test score after
        checking the first ``at`` of the training set (the closest fraction of the grid)."""
        fracs = np.unique(self.curve["fraction_checked"])
        f = float(fracs[np.argmin(np.abs(fracs - at))])
        rows = self.curve[self.curve["fraction_checked"] == f]
        return jsonable({
            "metric": self.metric, "n_flipped": int(self.flipped.size),
            "score_noisy": self.score_noisy, "score_all_fixed": self.score_clean,
            "fraction_checked": f,
            "rankings": {r.ranking: {"fraction_found": r.fraction_found, "score": r.score}
                         for r in rows.itertuples()},
        })

    def review_table(self, dataset: Dataset, ranking: str | None = None,
                     k: int | None = None) -> pd.DataFrame:
        """The review list: ``ranking``, ``position`` (1 = check first), ``index``, ``label``,
        ``flipped`` and ``priority``, for one ranking (or all), the first ``k`` rows of each."""
        names = list(self.orders) if ranking is None else [ranking]
        frames = []
        mask = np.zeros(dataset.n_train, dtype=bool)
        mask[self.flipped] = True
        for name in names:
            if name not in self.orders:
                raise UnknownNameError(
                    f"Unknown ranking {name!r}: this result has {', '.join(self.orders)}."
                )
            idx = self.orders[name][:k]
            frames.append(pd.DataFrame({
                "ranking": name, "position": np.arange(1, idx.size + 1),
                "id": dataset.ids_train[idx], "index": idx,
                "label": [dataset.label_name(dataset.y_train[i].item()) for i in idx],
                "flipped": mask[idx], "priority": self.priorities[name][idx],
            }))
        return pd.concat(frames, ignore_index=True)

    def save(self, directory: str | os.PathLike, dataset: Dataset, *,
             based_on: dict[str, Any] | None = None) -> dict[str, Path]:
        """Write ``fix_curve.csv``, ``review.csv`` (every ranking's full review order),
        ``fix.json`` and ``fix.png``."""
        from datavalue._core.folder import RunWriter

        d = Path(directory)
        names = {"curve": "fix_curve.csv", "review": "review.csv", "summary": "fix.json",
                 "figure": "fix.png"}
        with RunWriter(d, kind="fix", what="The 'fix' output folder", based_on=based_on) as w:
            w.write_text(names["curve"], csv_text(self.curve))
            w.write_text(names["review"], csv_text(self.review_table(dataset)))
            w.write_text(names["summary"], json.dumps(self.summary(), indent=2) + "\n")
            plot_fix(self).savefig(w.path(names["figure"]), dpi=110)
        files = {k: d / v for k, v in names.items()}
        return files


def _score_labels(model: Any, ds: Dataset, y: np.ndarray, metric: Any) -> float:
    utility = Utility(model, ds.x_train, y, ds.x_test, ds.y_test, metric, task=ds.task)
    return utility(np.arange(ds.n_train))


def fix(
    dataset: Dataset,
    true_labels: Dataset | Any,
    *,
    values: Mapping[str, Any] | ValuationResult | None = None,
    rankings: Sequence[str] = FIX_RANKINGS,
    model: Any = None,
    metric: Any = None,
    fractions: Iterable[float] | None = None,
    influence_options: Mapping[str, Any] | None = None,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> FixResult:
    """Review training labels in ranked order and fix the flipped ones (Koh & Liang 2017, 5.4).

    A reviewer checks the first ``fraction`` of the training rows in each order and restores
    the true label of every flipped one found; the model is retrained on the fixed labels and
    scored on the test split. Orders: by data value (lowest first; one per entry of
    ``values``), by self-influence ``grad L_i^T H^{-1} grad L_i / n`` of the model trained on
    the noisy labels (largest first), by that model's training loss (largest first), and at
    random.

    Parameters
    ----------
    dataset : Dataset
        The corrupted data (``noisy_indices`` set).
    true_labels : Dataset or array-like of shape (n_train,)
        The uncorrupted data set (the same loader call with ``noise_rate=0``) or the true
        training targets; checked with :func:`original_labels`.
    values : dict, ValuationResult or None
        ``{name: values}`` (arrays or ValuationResults) to rank by, or one ValuationResult
        (named by its method).
    rankings : sequence of str
        Any of :data:`FIX_RANKINGS`.
    model : estimator or None
        Trained on the noisy labels for the self-influence and loss rankings, and retrained
        after each fix (default: logistic / ridge regression). Self-influence needs a model
        :class:`~datavalue.attribution.InfluenceFunction` supports (linear models).
    metric : str, callable or None
        Test score (default accuracy / r2).
    fractions : list of float or None
        Fractions of the training set checked, in [0, 1]. Default 0, 0.025, ..., 0.5.
    influence_options : dict or None
        Options of the :class:`~datavalue.attribution.InfluenceFunction` (default exact solver).
    random_state : int or None
        Seed of the random order.
    n_jobs, progress : parallel fits and their progress bar.

    Returns
    -------
    FixResult
    """
    ds = _check_dataset(dataset)
    y_true = original_labels(ds, true_labels)
    names = [rankings] if isinstance(rankings, str) else list(rankings)
    for r in names:
        if r not in FIX_RANKINGS:
            raise UnknownNameError(
                f"Unknown ranking {r!r} in 'rankings': use any of {', '.join(FIX_RANKINGS)} "
                "(data values are passed as 'values')."
            )
    if isinstance(values, ValuationResult):
        values = {values.method: values}
    if values is not None and not isinstance(values, Mapping):
        raise InvalidParameterError(
            "The 'values' parameter must be a dict {name: values} or a ValuationResult."
        )
    value_map = {str(k): _check_values(v, f"values[{k!r}]", n=ds.n_train,
                                       n_name="dataset.n_train")
                 for k, v in (values or {}).items()}
    clash = set(value_map) & set(names)
    if clash:
        raise InvalidParameterError(f"'values' uses the ranking names {sorted(clash)}.")
    if not value_map and not names:
        raise InvalidParameterError("Nothing to rank by: give 'values' or 'rankings'.")
    model = _model(model, ds)
    grid = _grid(fractions, np.linspace(0.0, 0.5, 21), "fractions", high_open=False)
    metric = default_metric(ds.task) if metric is None else metric
    n = ds.n_train

    priorities: dict[str, np.ndarray] = {k: -v for k, v in value_map.items()}
    if "self-influence" in names or "loss" in names:
        fitted = clone(model).fit(ds.x_train, ds.y_train)
        if "self-influence" in names:
            priorities["self-influence"] = self_influence(fitted, ds.x_train, ds.y_train,
                                                          influence_options)
        if "loss" in names:
            priorities["loss"] = training_loss(fitted, ds.x_train, ds.y_train, ds.task)
    if "random" in names:
        perm = np.random.default_rng(random_state).permutation(n)
        priorities["random"] = np.empty(n)
        priorities["random"][perm] = -np.arange(n, dtype=np.float64)
    order_names = [*value_map, *[r for r in FIX_RANKINGS if r in names]]
    orders = {k: np.argsort(-priorities[k], kind="stable") for k in order_names}

    flipped = np.flatnonzero(y_true != ds.y_train)
    is_flipped = np.zeros(n, dtype=bool)
    is_flipped[flipped] = True
    rows, tasks, slot = [], [], {}
    for name in order_names:
        for f in grid:
            checked = orders[name][: _count(f, n)]
            found = np.sort(checked[is_flipped[checked]])
            key = found.tobytes()  # the same fixed set is fitted once
            if key not in slot:
                y = np.array(ds.y_train, copy=True)
                y[found] = y_true[found]
                slot[key] = len(tasks)
                tasks.append((model, ds, y, metric))
            rows.append((name, float(f), int(checked.size), int(found.size), slot[key]))
    all_fixed = np.sort(flipped).tobytes()
    if all_fixed not in slot:
        slot[all_fixed] = len(tasks)
        tasks.append((model, ds, y_true, metric))
    scores = parallel_map(_score_labels, tasks, n_jobs=n_jobs, progress=progress, desc="fix",
                          unit="fit")
    curve = pd.DataFrame(rows, columns=["ranking", "fraction_checked", "n_checked", "n_found",
                                        "task"])
    curve["fraction_found"] = curve["n_found"] / max(flipped.size, 1)
    curve["score"] = [float(scores[t]) for t in curve.pop("task")]
    return FixResult(
        curve=curve, orders=orders, priorities=priorities, flipped=flipped,
        metric=_metric_name(metric, ds.task), score_noisy=float(scores[slot[b""]]),
        score_clean=float(scores[slot[all_fixed]]), n_train=n,
    )


def plot_fix(result: FixResult):
    """Koh & Liang (2017), Fig. 6: fraction of flipped labels found (left) and test score after
    fixing them (right) against the fraction of training data checked. Returns a
    :class:`matplotlib.figure.Figure`."""
    fig, (left, right) = _figure(2, (11.0, 4.2))
    n_flipped = max(result.flipped.size, 1)
    for i, (name, g) in enumerate(result.curve.groupby("ranking", sort=False)):
        style = dict(color="0.45", ls="--", marker=".") if name == "random" else dict(
            color=f"C{i % 10}", marker="o", ms=3)
        left.plot(g["fraction_checked"], g["fraction_found"], label=name, **style)
        right.plot(g["fraction_checked"], g["score"], label=name, **style)
    x = np.linspace(0.0, float(result.curve["fraction_checked"].max()), 201)
    left.plot(x, np.minimum(x * result.n_train / n_flipped, 1.0), color="k", lw=1, ls=":",
              label="optimal")
    right.axhline(result.score_clean, color="k", lw=1, ls=":", label="all labels fixed")
    left.set_xlabel("Fraction of training data checked")
    left.set_ylabel("Fraction of flipped labels found")
    left.set_ylim(0, 1.02)
    left.set_title("Finding flipped labels")
    right.set_xlabel("Fraction of training data checked")
    right.set_ylabel(f"Test {result.metric} after fixing")
    right.set_title("Test score after fixing the ones found")
    left.legend(loc="lower right")
    right.legend(loc="lower right")
    return fig
