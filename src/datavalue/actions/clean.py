"""Clean a training set: drop (or down-weight) the lowest-valued fraction, retrain, and report the
test score before and after, with the curve over fractions and a random choice of the same size
as the baseline (Ghorbani & Zou 2019, Sec. 4: removing low-value data improves performance)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
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
)
from datavalue._core.io import csv_text
from datavalue._core.parallel import parallel_map
from datavalue._core.result import ValuationResult, jsonable
from datavalue.actions._common import (
    _check_dataset,
    _check_fraction,
    _count,
    _figure,
    _grid,
    _metric_name,
    _model,
)
from datavalue.data import Dataset
from datavalue.evaluate import point_removal
from datavalue.evaluate._checks import _check_values
from datavalue.valuation.utility import Utility, default_metric

#: How :func:`clean` acts on the lowest-valued rows.
CLEAN_MODES: tuple[str, ...] = ("drop", "weight")


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
        with RunWriter(d, kind="clean", what="The 'clean' output folder", based_on=based_on) as w:
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
