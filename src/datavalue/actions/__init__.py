"""Act on data values: clean a training set, and fix its mislabeled examples.

- :func:`clean` drops (or down-weights) the lowest-valued fraction of the training set, retrains
  the model and reports the test score before and after, with the curve over fractions and a
  random choice of the same size as the baseline.
- :func:`fix` is the label-fixing experiment of Koh & Liang (2017, Sec. 5.4): a person reviews
  training examples in some order — by self-influence, by data value, by training loss, at
  random — and restores the true label of every flipped one found. It reports the fraction of
  flipped labels found against the fraction checked, and the test score after fixing them.

References
----------
P. W. Koh and P. Liang. Understanding black-box predictions via influence functions. ICML 2017,
Sec. 5.4 ("Fixing mislabeled examples").
A. Ghorbani and J. Zou. Data Shapley: Equitable valuation of data for machine learning. ICML 2019
(removing low-value data improves performance, Sec. 4).
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from datavalue._core.validation import check_estimator_like
from datavalue.data import Dataset
from datavalue.evaluate import _check_values, point_removal
from datavalue.valuation.utility import Utility, default_metric

__all__ = [
    "clean",
    "fix",
    "CleanResult",
    "FixResult",
    "CLEAN_MODES",
    "FIX_RANKINGS",
    "original_labels",
    "training_loss",
    "self_influence",
    "plot_clean",
    "plot_fix",
]

#: How :func:`clean` acts on the lowest-valued rows.
CLEAN_MODES: tuple[str, ...] = ("drop", "weight")
#: Review orders of :func:`fix` besides data values (``values={method: values}``).
FIX_RANKINGS: tuple[str, ...] = ("self-influence", "loss", "random")


# ---------------------------------------------------------------------------- helpers
def _check_dataset(dataset: Any, *, need_test: bool = True) -> Dataset:
    if not isinstance(dataset, Dataset):
        raise InvalidParameterError(
            "The 'dataset' parameter must be a datavalue.Dataset (from dv.load_dataset or "
            f"Dataset.from_arrays). Got {type(dataset).__name__}."
        )
    if need_test and dataset.n_test == 0:
        raise InvalidDataError(
            "The dataset has no test split to measure the model on; make one (test_size > 0)."
        )
    return dataset


def _check_fraction(value: Any, name: str, *, high_open: bool = True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value and (
        value < 1.0 if high_open else value <= 1.0
    )
    if not ok:
        where = "[0, 1)" if high_open else "[0, 1]"
        raise InvalidParameterError(
            f"The '{name}' parameter must be a fraction of the training set in {where}. "
            f"Got {value!r}."
        )
    return float(value)


def _grid(fractions: Any, default: np.ndarray, name: str, *, include: Iterable[float] = (),
          high_open: bool = True) -> np.ndarray:
    raw = default if fractions is None else np.atleast_1d(np.asarray(fractions, dtype=object))
    grid = [_check_fraction(float(f) if isinstance(f, numbers.Real) else f, name,
                            high_open=high_open) for f in raw]
    # Rounded so that 0.1 and linspace's 0.10000000000000002 are one point of the grid.
    return np.unique(np.round(np.array([0.0, *grid, *include], dtype=np.float64), 10))


def _count(fraction: float, n: int) -> int:
    """Rows in a fraction of the training set, rounded half up as in :mod:`datavalue.evaluate`."""
    return int(np.floor(fraction * n + 0.5))


def _model(model: Any, dataset: Dataset) -> Any:
    if model is None:
        from datavalue.valuation.base import default_model

        return default_model(dataset.task)
    check_estimator_like(model, "model")
    return model


def _metric_name(metric: Any, task: str) -> str:
    if metric is None:
        return default_metric(task)
    return metric if isinstance(metric, str) else getattr(metric, "__name__", "score")


def _figure(ncols: int, size: tuple[float, float]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(1, ncols)


# ---------------------------------------------------------------------------- clean
@dataclass
class CleanResult:
    """What :func:`clean` returns.

    Attributes
    ----------
    dataset : Dataset
        The cleaned data set: without the flagged training rows ("drop"), or all of them
        ("weight", with ``sample_weight``). Validation and test splits are unchanged;
        ``noisy_indices`` refer to the new training split.
    sample_weight : numpy.ndarray or None
        "weight" mode: the weight of every training row of ``dataset`` (``weight`` for the
        flagged ones, 1 for the others).
    kept : numpy.ndarray
        Indices (into the original training split) of the rows of ``dataset.x_train``.
    flagged : numpy.ndarray
        Indices (into the original training split) of the dropped / down-weighted rows, lowest
        value first.
    score_before, score_after : float
        Test score of the model trained on all rows, and on the cleaned data.
    curve : pandas.DataFrame
        Test score against the fraction cleaned: ``order`` ("least_valuable_first" = by value,
        "random" = the same number of rows at random), ``fraction``, ``n_points`` (rows
        cleaned), ``score``.
    n_noisy_flagged : int or None
        How many of the flagged rows were corrupted on purpose (None if none are known).
    selection : pandas.DataFrame or None
        With ``fraction="auto"``: the score each candidate fraction got where it was chosen
        (``on`` = "validation" or "cross-validation"); None when the fraction was given.
    """

    dataset: Dataset
    sample_weight: np.ndarray | None
    kept: np.ndarray
    flagged: np.ndarray
    values: np.ndarray
    fraction: float
    mode: str
    weight: float
    metric: str
    score_before: float
    score_after: float
    curve: pd.DataFrame
    n_noisy_flagged: int | None
    method: str = ""
    selection: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The numbers, JSON-compatible."""
        return jsonable({
            "method": self.method, "mode": self.mode, "fraction": self.fraction,
            "weight": self.weight if self.mode == "weight" else None, "metric": self.metric,
            "n_flagged": int(self.flagged.size), "n_noisy_flagged": self.n_noisy_flagged,
            "score_before": self.score_before, "score_after": self.score_after,
            "n_train_before": int(self.values.size), "n_train_after": self.dataset.n_train,
            "flagged": self.flagged.tolist(),
            "chosen_on": None if self.selection is None else str(self.selection["on"].iloc[0]),
            "selection": None if self.selection is None else
            self.selection[["fraction", "score"]].to_dict(orient="records"),
            **self.extra,
        })

    def save(self, directory: str | os.PathLike, *,
             based_on: dict[str, Any] | None = None, source: Any = None) -> dict[str, Path]:
        """Write ``cleaned_dataset.npz`` (:meth:`Dataset.load` reads it), ``cleaned_train.csv``,
        ``clean_curve.csv``, ``clean.json`` and ``clean.png``.

        ``cleaned_train.csv`` holds the kept training rows. With ``source`` (the user's own
        table, a DataFrame indexed by the row ids) they are written in the user's columns and
        format, as read (plus ``sample_weight`` in "weight" mode); otherwise as the encoded
        features in the data's original units, with the row ``id``, label and value.
        """
        from datavalue._core.folder import RunWriter

        d = Path(directory)
        ds = self.dataset
        names = {"dataset": "cleaned_dataset.npz", "train_csv": "cleaned_train.csv",
                 "curve": "clean_curve.csv", "summary": "clean.json", "figure": "clean.png"}
        if source is not None:
            missing = [i for i in ds.ids_train if i not in source.index]
            if missing:
                raise InvalidDataError(
                    f"The source table lacks rows with ids {missing[:5]} of the cleaned data."
                )
            frame = source.loc[list(ds.ids_train)].copy()
        else:
            frame = pd.DataFrame(_raw(ds, ds.x_train), columns=list(ds.feature_names))
            frame.insert(0, "id", ds.ids_train)
            frame["label"] = [ds.label_name(v.item()) for v in ds.y_train]
            frame["value"] = self.values[self.kept]
        with RunWriter(d, what="The 'clean' output folder", based_on=based_on) as w:
            ds.save(w.path(names["dataset"]))
            if self.sample_weight is not None:
                frame["sample_weight"] = self.sample_weight
                np.save(w.path("sample_weight.npy"), self.sample_weight)
                names["sample_weight"] = "sample_weight.npy"
            w.write_text(names["train_csv"], csv_text(frame))
            w.write_text(names["curve"], csv_text(self.curve))
            w.write_text(names["summary"], json.dumps(self.summary(), indent=2) + "\n")
            plot_clean(self).savefig(w.path(names["figure"]), dpi=110)
        files = {k: d / v for k, v in names.items()}
        return files


def _raw(ds: Dataset, x: np.ndarray) -> np.ndarray:
    """Features in the data's original units, with the round-off of undoing the
    standardization (1e-16 for a pixel that was 0) set back to 0."""
    raw = np.array(ds.raw_features(x), dtype=np.float64)
    if ds.feature_mean is not None and ds.feature_scale is not None:
        tol = 1e-9 * np.maximum(np.abs(ds.feature_mean), ds.feature_scale)
        raw[np.abs(raw) < tol] = 0.0
    return raw


def _values_and_name(values: Any, n: int, n_name: str) -> tuple[np.ndarray, str]:
    name = values.method if isinstance(values, ValuationResult) else ""
    return _check_values(values, n=n, n_name=n_name), name


def _weighted_score(utility: Utility, model: Any, weights: np.ndarray) -> float:
    fitted = clone(model).fit(utility.x_train, utility.y_train, sample_weight=weights)
    return utility.score_model(fitted)


def clean(
    dataset: Dataset,
    values: Any,
    *,
    fraction: float | str = "auto",
    mode: str = "drop",
    weight: float = 0.1,
    model: Any = None,
    metric: Any = None,
    fractions: Iterable[float] | None = None,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    progress: bool | None = None,
) -> CleanResult:
    """Drop (or down-weight) the lowest-valued training rows, retrain, and measure.

    Removing low-value data should help when it is low-value because it is wrong (Ghorbani &
    Zou 2019, Sec. 4): the test score of the model retrained without the lowest-valued
    ``fraction`` is compared with the score on all rows, and with removing as many rows at
    random.

    Parameters
    ----------
    dataset : Dataset
        The data the values are for; the model is scored on its test split.
    values : array-like of shape (n_train,) or ValuationResult
        Higher = more helpful; ties are broken by index.
    fraction : "auto" or float in [0, 1)
        Fraction of the training rows to clean (rounded half up to a number of rows). "auto"
        (the default) chooses it among ``fractions`` — "clean nothing" (0) included, and
        preferred on ties — by the score of the retrained model on the *validation* split, or,
        when there is none, by 5-fold cross-validation on the training rows in which each held-out
        fold is scored on all of its rows (the cleaned-away ones too, so dropping hard rows
        cannot flatter the score). The test split is never used to choose: its scores before
        and after are the check.
    mode : {"drop", "weight"}
        "drop" removes them; "weight" keeps them with ``sample_weight = weight`` (the model's
        ``fit`` must accept ``sample_weight``).
    weight : float in [0, 1]
        Weight of the flagged rows in "weight" mode.
    model : estimator or None
        Retrained from scratch on each variant (default: logistic / ridge regression).
    metric : str, callable or None
        Test score (default accuracy / r2).
    fractions : list of float or None
        The curve's grid (``fraction`` and 0 are always added). Default 0, 0.05, ..., 0.3.
    random_state : int or None
        Seed of the random baseline.
    n_jobs, progress : as in :func:`datavalue.evaluate.point_removal`.

    Returns
    -------
    CleanResult
    """
    ds = _check_dataset(dataset)
    v, method = _values_and_name(values, ds.n_train, "dataset.n_train")
    auto = isinstance(fraction, str) and fraction == "auto"
    if not auto:
        fraction = round(_check_fraction(fraction, "fraction"), 10)
    if mode not in CLEAN_MODES:
        raise InvalidParameterError(
            f"The 'mode' parameter must be one of {', '.join(map(repr, CLEAN_MODES))}. "
            f"Got {mode!r} instead."
        )
    weight = _check_fraction(weight, "weight", high_open=False)
    model = _model(model, ds)
    if mode == "weight":
        from sklearn.utils.validation import has_fit_parameter

        if not has_fit_parameter(model, "sample_weight"):
            raise InvalidModelError(
                f"The 'model' ({type(model).__name__}) does not accept sample_weight in fit, "
                "which mode='weight' needs; use mode='drop' or another model."
            )
    n = ds.n_train
    order = np.argsort(v, kind="stable")
    selection = None
    if auto:
        grid = _grid(fractions, np.linspace(0.0, 0.3, 7), "fractions")
        selection = _choose_fraction(ds, order, grid, mode, weight, _model(model, ds), metric,
                                     random_state, n_jobs, progress)
        best = selection["score"].max()
        # The smallest fraction within rounding of the best: cleaning must earn its rows.
        fraction = float(selection.loc[selection["score"] >= best - 1e-12, "fraction"].min())
    grid = _grid(fractions, np.linspace(0.0, 0.3, 7), "fractions", include=[fraction])
    flagged = order[: _count(fraction, n)]
    if mode == "drop":
        curve = point_removal(v, ds, model, metric=metric, fractions=grid,
                              orders=("least_valuable_first",), include_random=True,
                              random_state=random_state, n_jobs=n_jobs, progress=progress)
        curve = curve.drop(columns="n_remaining")
    else:
        utility = Utility(model, ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                          metric if metric is not None else default_metric(ds.task),
                          task=ds.task)
        rankings = {"least_valuable_first": order,
                    "random": np.random.default_rng(random_state).permutation(n)}
        rows, tasks = [], []
        for name, ranking in rankings.items():
            for f in grid:
                w = np.ones(n)
                w[ranking[: _count(f, n)]] = weight
                rows.append((name, float(f), _count(f, n)))
                tasks.append((utility, model, w))
        scores = parallel_map(_weighted_score, tasks, n_jobs=n_jobs, progress=progress,
                              desc="clean", unit="fit")
        curve = pd.DataFrame(rows, columns=["order", "fraction", "n_points"])
        curve["score"] = np.asarray(scores, dtype=np.float64)
    by_value = curve[curve["order"] == "least_valuable_first"].set_index("fraction")["score"]
    score_before, score_after = float(by_value.loc[0.0]), float(by_value.loc[fraction])

    if mode == "drop":
        kept = np.setdiff1d(np.arange(n), flagged)
        noisy = np.searchsorted(kept, np.intersect1d(ds.noisy_indices, kept))
        cleaned = replace(ds, x_train=ds.x_train[kept], y_train=ds.y_train[kept],
                          ids_train=ds.ids_train[kept], noisy_indices=noisy)
        sample_weight = None
    else:
        kept = np.arange(n)
        cleaned = ds
        sample_weight = np.ones(n)
        sample_weight[flagged] = weight
    known = len(ds.noisy_indices) > 0
    return CleanResult(
        dataset=cleaned, sample_weight=sample_weight, kept=kept, flagged=flagged, values=v,
        fraction=fraction, mode=mode, weight=weight, metric=_metric_name(metric, ds.task),
        score_before=score_before, score_after=score_after, curve=curve,
        n_noisy_flagged=int(ds.noise_mask[flagged].sum()) if known else None, method=method,
        selection=selection,
    )


def _choose_fraction(ds: Dataset, order: np.ndarray, grid: np.ndarray, mode: str,
                     weight: float, model: Any, metric: Any, random_state: int | None,
                     n_jobs: int | None, progress: bool | None) -> pd.DataFrame:
    """The selection score of every candidate fraction (see :func:`clean`, ``fraction``)."""
    n = ds.n_train
    metric = metric if metric is not None else default_metric(ds.task)
    if ds.n_valid:
        folds = [(np.arange(n), ds.x_valid, ds.y_valid)]
        on = "validation"
    else:
        from sklearn.model_selection import KFold, StratifiedKFold

        splitter = (StratifiedKFold if ds.task == "classification" else KFold)(
            n_splits=5, shuffle=True, random_state=random_state)
        folds = [(train, ds.x_train[held], ds.y_train[held]) for train, held in
                 splitter.split(ds.x_train, ds.y_train if ds.task == "classification" else None)]
        on = "cross-validation"
    tasks = []
    for f in grid:
        flagged = order[: _count(f, n)]
        for rows, xv, yv in folds:
            tasks.append((ds, rows, flagged, xv, yv, mode, weight, model, metric))
    scores = parallel_map(_fold_score, tasks, n_jobs=n_jobs, progress=progress,
                          desc="choose fraction", unit="fit")
    per = np.asarray(scores, dtype=np.float64).reshape(len(grid), len(folds)).mean(axis=1)
    return pd.DataFrame({"fraction": grid, "score": per, "on": on})


def _fold_score(ds: Dataset, rows: np.ndarray, flagged: np.ndarray, xv: np.ndarray,
                yv: np.ndarray, mode: str, weight: float, model: Any, metric: Any) -> float:
    """Score on (xv, yv) of the model trained on the training ``rows``, with the ``flagged``
    ones among them dropped or down-weighted."""
    is_flagged = np.isin(rows, flagged)
    if mode == "drop":
        keep = rows[~is_flagged]
        fitted = clone(model).fit(ds.x_train[keep], ds.y_train[keep])
    else:
        w = np.where(is_flagged, weight, 1.0)
        fitted = clone(model).fit(ds.x_train[rows], ds.y_train[rows], sample_weight=w)
    utility = Utility(model, ds.x_train[rows], ds.y_train[rows], xv, yv, metric, task=ds.task)
    return utility.score_model(fitted)


def plot_clean(result: CleanResult):
    """Test score against the fraction cleaned, by value and at random; the chosen fraction
    marked. Returns a :class:`matplotlib.figure.Figure`."""
    fig, ax = _figure(1, (6.4, 4.0))
    verb = "dropped" if result.mode == "drop" else f"down-weighted to {result.weight:g}"
    labels = {"least_valuable_first": "lowest values first", "random": "random rows"}
    styles = {"least_valuable_first": dict(color="tab:blue", marker="o"),
              "random": dict(color="0.45", ls="--", marker=".")}
    for order, g in result.curve.groupby("order", sort=False):
        g = g.sort_values("fraction")
        ax.plot(g["fraction"], g["score"], label=labels.get(order, order),
                **styles.get(order, {}))
    ax.axvline(result.fraction, color="tab:red", lw=1, ls=":")
    ax.annotate(f"{result.score_before:.3f} → {result.score_after:.3f}",
                (result.fraction, result.score_after), textcoords="offset points",
                xytext=(6, -14), color="tab:red")
    ax.set_xlabel(f"Fraction of training rows {verb}")
    ax.set_ylabel(f"Test {result.metric}")
    ax.set_title(f"Cleaning by {result.method or 'value'}")
    ax.legend()
    return fig


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
        with RunWriter(d, what="The 'fix' output folder", based_on=based_on) as w:
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
