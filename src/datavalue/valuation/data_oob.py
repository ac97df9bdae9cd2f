"""Data-OOB: the out-of-bag estimate as a data value (Kwon & Zou, ICML 2023).

Fit ``B`` models on bootstrap samples of the training set. The value of point ``i`` is the mean
score of the models that did *not* see it (Kwon & Zou 2023, Section 3, definition of psi):

    psi_i = sum_b 1(w_bi = 0) T(y_i, f_b(x_i)) / sum_b 1(w_bi = 0),

where ``w_bi`` is how many times ``i`` was drawn into bootstrap ``b`` and ``T`` is correctness
``1[f_b(x_i) = y_i]`` (classification) or the negative squared error ``-(f_b(x_i) - y_i)^2``
(regression). No validation data is needed: each model is tested on the ~37% of points it left
out, so a mislabeled point, which the other points' models get "wrong", has a low value.

Cost: ``B`` model fits plus one prediction per model on its out-of-bag rows, nothing per point.
"""

from __future__ import annotations

import numbers
import time
import warnings
from typing import Any, ClassVar

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.tree import BaseDecisionTree, DecisionTreeClassifier, DecisionTreeRegressor

from datavalue._core.exceptions import (
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    ModelOutputError,
)
from datavalue._core.parallel import progress_bar, spawn_seeds, watched
from datavalue._core.validation import (
    N_JOBS,
    PREPROCESSOR,
    Interval,
    Options,
    check_estimator_like,
    rescale_if_extreme,
)
from datavalue.data.fitdata import imputes as _imputes
from datavalue.data.fitdata import model_allows_nan, take_rows
from datavalue.valuation.base import FitData, Valuator

__all__ = ["DataOOB"]

# Models are fitted in this many chunks at most. The split depends on ``n_estimators`` only (not
# on ``n_jobs``), so the per-point sums are added in the same order for any number of workers
# and the values are bit-for-bit identical.
_MAX_CHUNKS = 64


# --------------------------------------------------------------------------- helpers
def _bootstrap(seed: int, n: int, n_draws: int) -> tuple[np.ndarray, np.ndarray]:
    """In-bag indices of one bootstrap (``n_draws`` draws with replacement from ``range(n)``,
    by ``numpy.random.default_rng(seed)``) and how many times each point was drawn."""
    in_bag = np.random.default_rng(seed).integers(0, n, size=n_draws)
    return in_bag, np.bincount(in_bag, minlength=n)


def _weights_equal_copies(estimator: Any) -> bool:
    """Whether fitting ``estimator`` with ``sample_weight = counts`` gives the same model as
    fitting it on the bootstrap's rows with repeats.

    True for scikit-learn decision trees whose stopping rules count weight, not rows
    (``min_samples_split=2``, ``min_samples_leaf=1``, no ``class_weight``, which would be
    computed from the whole target): they split on the same values with the same weighted
    impurities. Bit-for-bit for classification (integer weighted counts); for regression with
    non-integer targets, a tie between equally good splits may be broken by rounding either way.
    Skipping the repeated rows is what scikit-learn's forests do, and it is faster: the tree
    sorts ~63% of the rows instead of all of them.
    """
    return (
        isinstance(estimator, BaseDecisionTree)
        and isinstance(estimator.min_samples_split, numbers.Integral)
        and estimator.min_samples_split <= 2
        and isinstance(estimator.min_samples_leaf, numbers.Integral)
        and estimator.min_samples_leaf == 1
        and getattr(estimator, "class_weight", None) is None
    )


def _random_state_keys(template: Any) -> list[str]:
    """Names of every ``random_state`` parameter of ``template``, nested ones too (e.g. in a
    pipeline): all are set to the bootstrap's seed, as scikit-learn's bagging does."""
    return [
        k
        for k in template.get_params(deep=True)
        if k == "random_state" or k.endswith("__random_state")
    ]


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    # Trees skip their per-call validation on float32 input (converted once up front).
    if isinstance(model, BaseDecisionTree) and x.dtype == np.float32:
        return model.predict(x, check_input=False)
    pred = np.asarray(model.predict(x))
    if pred.shape[:1] != (x.shape[0],):
        raise ModelOutputError(
            f"{type(model).__name__} returned predictions of shape {pred.shape} for "
            f"{x.shape[0]} rows; a model must predict one value per row."
        )
    return pred


def _check_float32_range(x: np.ndarray) -> None:
    big = float(np.max(np.abs(x))) if x.size else 0.0
    if big > np.finfo(np.float32).max:
        raise InvalidDataError(
            f"'x_train' has values up to {big:.3g}, beyond the float32 range that fitted "
            "scikit-learn trees predict in; rescale the features (and refit the ensemble)."
        )


def _scores(pred: np.ndarray, y: np.ndarray, classification: bool) -> np.ndarray:
    """T(y, f(x)): correctness (classification) or negative squared error (regression)."""
    if classification:
        return (np.asarray(pred).ravel() == y).astype(np.float64)
    return -np.square(np.asarray(pred, dtype=np.float64).ravel() - y)


def _fit_chunk(
    template: Any,
    x: np.ndarray,
    y: np.ndarray,
    seeds: list[int],
    n_draws: int,
    classification: bool,
    count_weights: bool,
    x_extra: np.ndarray | None = None,
    y_extra: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Fit one model per seed on its bootstrap, score it on its out-of-bag rows, and return the
    per-point sum of scores, sum of squared scores and number of out-of-bag models (and, with
    ``x_extra``, the sums of scores on those rows, which no bootstrap draws: every model is
    out of bag for them).

    Only these length-n arrays leave the worker, never the models.
    """
    n = x.shape[0]
    total = np.zeros(n)
    total_sq = np.zeros(n)
    count = np.zeros(n, dtype=np.int64)
    is_tree = isinstance(template, BaseDecisionTree)
    seed_keys = _random_state_keys(template)
    extra = None if x_extra is None else np.zeros(x_extra.shape[0])
    extra_sq = None if x_extra is None else np.zeros(x_extra.shape[0])
    for seed in seeds:
        in_bag, multiplicity = _bootstrap(seed, n, n_draws)
        oob = np.flatnonzero(multiplicity == 0)
        if oob.size == 0:  # this model would value nobody: skip the fit
            continue
        model = clone(template)
        if seed_keys:
            model.set_params(**dict.fromkeys(seed_keys, seed))
        y_bag = None if count_weights else y[in_bag]
        if count_weights:
            model.fit(x, y, sample_weight=multiplicity.astype(np.float64), check_input=False)
            pred = _predict(model, take_rows(x, oob))
        elif classification and np.all(y_bag == y_bag[0]):
            # One class drawn (tiny or very imbalanced data): most classifiers refuse to fit;
            # a model of one class predicts that class.
            pred = np.full(oob.size, y_bag[0])
            model = None
        else:
            if is_tree:
                model.fit(x[in_bag], y_bag, check_input=False)
            else:
                model.fit(take_rows(x, in_bag), y_bag)
            pred = _predict(model, take_rows(x, oob))
        if extra is not None:
            pred_extra = (np.full(x_extra.shape[0], y_bag[0]) if model is None
                          else _predict(model, x_extra))
            score_extra = _scores(pred_extra, y_extra, classification)
            extra += score_extra
            extra_sq += score_extra * score_extra
        score = _scores(pred, y[oob], classification)
        # ``oob`` has no repeats, so plain fancy-index accumulation is exact.
        total[oob] += score
        total_sq[oob] += score * score
        count[oob] += 1
    if extra is not None:
        return total, total_sq, count, extra, extra_sq
    return total, total_sq, count


def _score_fitted_ensemble(
    ensemble: Any, data: FitData, progress: bool | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-point sums of scores, squared scores and out-of-bag counts of an already fitted
    bagging ensemble, from its members and their public ``estimators_samples_``."""
    name = type(ensemble).__name__
    if not hasattr(ensemble, "estimators_samples_"):
        raise InvalidModelError(
            f"'model' is a fitted {name}, which does not record its members' bootstrap "
            "samples (no 'estimators_samples_'). Data-OOB can reuse a fitted BaggingClassifier, "
            "BaggingRegressor, RandomForest* or ExtraTrees* (bootstrap=True); otherwise pass an "
            "unfitted estimator, e.g. sklearn.base.clone(estimator)."
        )
    if getattr(ensemble, "n_outputs_", 1) != 1:
        raise InvalidModelError(
            f"'model' was fitted on {ensemble.n_outputs_} outputs; Data-OOB values points "
            "of a single target."
        )
    n, d = data.x_train.shape
    n_fitted = getattr(ensemble, "n_features_in_", d)
    if n_fitted != d:
        raise InvalidDataError(
            f"'x_train' has {d} features but the fitted 'model' ({name}) was fitted on "
            f"{n_fitted}: pass the training data it was fitted on."
        )
    # ``_n_samples`` is private; it is checked when present, the index range below always.
    n_rows = getattr(ensemble, "_n_samples", None)
    if isinstance(n_rows, numbers.Integral) and n_rows != n:
        raise InvalidDataError(
            f"'x_train' has {n} rows but the fitted 'model' ({name}) was fitted on "
            f"{n_rows}: pass the training data it was fitted on, in the same order."
        )
    members = list(ensemble.estimators_)
    samples = list(ensemble.estimators_samples_)
    features = getattr(ensemble, "estimators_features_", None)
    features = [None] * len(members) if features is None else list(features)
    if not len(members) == len(samples) == len(features):
        raise InvalidModelError(
            f"'model' ({name}) has {len(members)} members but {len(samples)} bootstrap "
            "samples; was it modified after fitting?"
        )

    classification = data.task == "classification"
    y = data.y_train
    if classification:
        # Members of a fitted bagging classifier or forest predict class codes 0..K-1 of the
        # ensemble's ``classes_``: express our labels in the same codes.
        position = {c: k for k, c in enumerate(np.asarray(ensemble.classes_).tolist())}
        labels = data.classes[y]
        unknown = sorted({lab for lab in labels.tolist() if lab not in position}, key=str)
        if unknown:
            raise InvalidDataError(
                f"'y_train' contains label(s) {unknown[:5]} that the fitted 'model' "
                f"({name}) was not trained on (its classes_ are "
                f"{np.asarray(ensemble.classes_)[:10].tolist()}); pass the labels it was fitted on."
            )
        y = np.array([position[lab] for lab in labels.tolist()], dtype=np.int64)

    # Fitted trees predict float32 input without re-validating it.
    if any(isinstance(m, BaseDecisionTree) for m in members):
        _check_float32_range(data.x_train)
        x = np.ascontiguousarray(data.x_train, dtype=np.float32)
    else:
        x = data.x_train
    total = np.zeros(n)
    total_sq = np.zeros(n)
    count = np.zeros(n, dtype=np.int64)
    with progress_bar(len(members), "Data-OOB", progress, unit="model") as bar:
        for b, (member, in_bag, feats) in enumerate(zip(members, samples, features, strict=True)):
            in_bag = np.asarray(in_bag)
            if in_bag.dtype == bool:  # a mask, as some scikit-learn versions returned
                in_bag = np.flatnonzero(in_bag)
            if in_bag.size and (in_bag.min() < 0 or in_bag.max() >= n):
                raise InvalidDataError(
                    f"Member {b} of the fitted 'model' ({name}) was trained on row "
                    f"{int(in_bag.max())}, but 'x_train' has only {n} rows: pass the training "
                    "data it was fitted on."
                )
            oob = np.flatnonzero(np.bincount(in_bag, minlength=n) == 0)
            if oob.size:
                x_oob = take_rows(x, oob)
                if feats is not None:
                    from sklearn.utils import _safe_indexing

                    x_oob = _safe_indexing(x_oob, np.asarray(feats), axis=1)
                score = _scores(_predict(member, x_oob), y[oob], classification)
                total[oob] += score
                total_sq[oob] += score * score
                count[oob] += 1
            bar.update(1)
    if not count.any():
        raise InvalidModelError(
            f"No training point is out of bag for any member of the fitted 'model' "
            f"({name}): was it fitted with bootstrap=False? Refit it with bootstrap=True."
        )
    return total, total_sq, count


# --------------------------------------------------------------------------- the method
class DataOOB(Valuator):
    """Data-OOB: each point's value is the out-of-bag score of the bootstrap models that did
    not train on it (Kwon & Zou, "Data-OOB: Out-of-bag Estimate as a Simple and Efficient Data
    Value", ICML 2023, Section 3).

    Parameters
    ----------
    n_estimators : int, default 1000
        Number of bootstrap models ``B``.
    model : estimator or None
        The weak learner (any scikit-learn estimator or ``Pipeline``), cloned for every bootstrap (its ``random_state`` parameters are set to
        the bootstrap's seed). None: a full-depth ``DecisionTreeClassifier`` or
        ``DecisionTreeRegressor``, as in the paper.

        An already **fitted** bagging ensemble (``BaggingClassifier``, ``BaggingRegressor``,
        ``RandomForestClassifier``, ``RandomForestRegressor``, ExtraTrees with
        ``bootstrap=True``; recognised by its ``estimators_``) is not refitted: its members and
        their bootstrap samples (``estimators_samples_``, ``estimators_features_``) are reused,
        and ``fit`` must get the same training data it was fitted on. ``n_estimators``,
        ``max_samples`` must then keep their defaults (an error says so otherwise), and
        ``random_state`` and ``n_jobs`` have nothing to do. To fit fresh copies of a fitted model
        instead, pass ``sklearn.base.clone(model)``.
    max_samples : float in (0, 1], default 1.0
        Bootstrap size as a fraction of ``n``: ``max(1, int(max_samples * n))`` draws with
        replacement.
    task : {"classification", "regression"} or None
        None: from the estimator (classifier or regressor), else inferred from ``y_train``.
    preprocessor : "auto", None or transformer
        Used only without a ``model`` of yours: the default trees split on the features, so they must be numbers: "auto" (the default) imputes, scales and one-hot
        encodes data that are not already a finite numeric array (a DataFrame with text
        columns, missing values, a sparse matrix) with a ``ColumnTransformer`` fitted on the
        training rows only (:func:`datavalue.data.fitdata.default_preprocessor`); numeric arrays are
        used as given. None: no preprocessing (non-numeric data is an error). Or any
        scikit-learn transformer, fitted on the training rows.
    random_state : int or None, default 0
        Seed. Bootstrap ``b`` uses ``seeds[b]`` from ``spawn_seeds(random_state, n_estimators)``
        both for its indices (``numpy.random.default_rng(seeds[b]).integers(0, n, size)``) and
        as the model's ``random_state``.
    n_jobs : int or None
        joblib workers. Values are identical for every value of ``n_jobs``.
    progress : bool or None
        Progress bar (None: only on a terminal).

    Attributes
    ----------
    values_ : numpy.ndarray of shape (n_train,)
        Mean out-of-bag accuracy (classification, in [0, 1]) or negative squared error
        (regression, <= 0) of each point. Higher = more helpful; mislabeled points score low.
    result_ : ValuationResult
        ``stderr`` is the standard error of the mean of each point's out-of-bag scores (NaN with
        fewer than two), ``counts`` the number of out-of-bag models; ``extra`` holds
        ``n_estimators``, ``n_bootstrap`` (draws per bootstrap), ``mean_oob_count``,
        ``fraction_never_oob`` and ``fitted_ensemble``.

    Notes
    -----
    A point that no model left out (likely only with few estimators: probability about
    ``0.63 ** n_estimators``) has no out-of-bag score. It gets the mean value of the other
    points, count 0 and stderr NaN, and a warning says how many there were.

    For the default trees the bootstrap is passed as ``sample_weight`` (how many times each row
    was drawn) instead of copying the drawn rows, as scikit-learn's forests do: the same tree,
    faster. Other estimators are fitted on the drawn rows. A bootstrap containing one class
    only gives a model that predicts that class.

    Validation data, if given to ``fit``, is checked and ignored: Data-OOB needs none.

    Examples
    --------
    >>> import datavalue as dv
    >>> ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)
    >>> oob = dv.DataOOB(n_estimators=200, random_state=0).fit(ds.x_train, ds.y_train)
    >>> suspects = oob.result_.ranking(ascending=True)[:20]   # lowest values first
    """

    method_name: ClassVar[str] = "data-oob"
    needs_validation: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "n_estimators": [Interval(int, 1, None)],
        "model": ["any"],  # checked in fit, with InvalidModelError
        "preprocessor": PREPROCESSOR,
        "max_samples": [Interval(float, 0, 1, closed="right")],
        "task": [Options({"classification", "regression"}), None],
        "random_state": ["random_state"],
        "n_jobs": N_JOBS,
        "progress": ["boolean", None],
    }

    def __init__(
        self,
        n_estimators: int = 1000,
        model: Any = None,
        *,
        max_samples: float = 1.0,
        preprocessor: Any = "auto",
        task: str | None = None,
        random_state: int | None = 0,
        n_jobs: int | None = None,
        progress: bool | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.model = model
        self.max_samples = max_samples
        self.preprocessor = preprocessor
        self.task = task
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.progress = progress

    # ------------------------------------------------------------------ fit
    def fit(self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None, *,
            candidates: Any = None) -> DataOOB:
        """Compute the Data-OOB value of every training point.

        Parameters
        ----------
        x_train : array-like of shape (n_train, n_features)
        y_train : array-like of shape (n_train,)
        x_valid, y_valid : array-like, optional
            Accepted for a uniform interface with the other methods, and ignored.
        candidates : (x, y) or None
            Examples that are not in the training set (augmentations, new rows) to value with
            the same bootstrap models: bootstrap points that are never drawn, so every model is
            out of bag for them. Their values (mean score of the models on their label) go to
            ``candidate_values_`` and ``candidate_stderr_``, on the training values' scale.

        Returns
        -------
        self
        """
        start = time.perf_counter()
        self._validate_params()
        estimator = self.model
        if estimator is not None:
            check_estimator_like(estimator, "model")
        fitted = estimator is not None and hasattr(estimator, "estimators_")
        if estimator is not None and not fitted:
            try:
                clone(estimator)
            except TypeError as exc:
                raise InvalidModelError(
                    f"'model' ({type(estimator).__name__}) cannot be copied with "
                    f"sklearn.base.clone, which every bootstrap needs: {exc} Implement "
                    "get_params/set_params (e.g. subclass sklearn.base.BaseEstimator)."
                ) from exc
        data = self._check_data(
            x_train, y_train, x_valid, y_valid, need_valid=False, task=self._task_of(estimator),
            model=estimator,
            allow_missing=model_allows_nan(estimator) if estimator is not None else _imputes(
                self.preprocessor),
        )
        if estimator is None:  # the default trees need numbers; a model of the user's does not
            data = data.numeric(self.preprocessor, owner="DataOOB's default trees")
        classification = data.task == "classification"
        n = data.n_train
        x_extra = y_extra = None
        if candidates is not None:
            x_extra, y_extra = self._check_candidates(candidates, data, estimator)

        if fitted:
            if self.n_estimators != 1000 or self.max_samples != 1.0:
                raise InvalidParameterError(
                    "'model' is a fitted ensemble, whose members and bootstrap samples are "
                    "reused: 'n_estimators' and 'max_samples' cannot apply to it (got "
                    f"{self.n_estimators} and {self.max_samples}). Leave them at their defaults, "
                    "or pass sklearn.base.clone(model) to fit fresh bootstraps."
                )
            total, total_sq, count = _score_fitted_ensemble(estimator, data, self.progress)
            n_models, n_draws = len(estimator.estimators_), None
        else:
            if estimator is None:
                estimator = DecisionTreeClassifier() if classification else DecisionTreeRegressor()
            count_weights = _weights_equal_copies(estimator)
            # Trees work in float32: convert once here, not once per fit and predict. A column
            # beyond float32's range (or so small it would round to 0) is first scaled by a
            # power of two: a tree's splits, hence its predictions, do not change under a
            # positive scaling of a column, and a power of two keeps the scaling exact.
            is_tree = isinstance(estimator, BaseDecisionTree)
            if is_tree:
                scaled = rescale_if_extreme(data.x_train, *(() if x_extra is None
                                                            else (x_extra,)), axis=0)
                x = np.ascontiguousarray(scaled[0], dtype=np.float32)
                if x_extra is not None:
                    x_extra = np.ascontiguousarray(scaled[1], dtype=np.float32)
            else:
                x = data.x_train
            n_models = self.n_estimators
            n_draws = max(1, int(self.max_samples * n))
            seeds = spawn_seeds(self.random_state, n_models)
            chunks = np.array_split(np.arange(n_models), min(n_models, _MAX_CHUNKS))
            tasks = (
                delayed(watched(_fit_chunk))(
                    estimator,
                    x,
                    data.y_train,
                    [seeds[b] for b in chunk],
                    n_draws,
                    classification,
                    count_weights,
                    x_extra,
                    y_extra,
                )
                for chunk in chunks
            )
            # Trees fit without the GIL, so threads run them in parallel without copying the
            # data to worker processes (scikit-learn's forests do the same). ``prefer`` is only
            # a hint: a backend chosen with joblib.parallel_config (e.g. Ray) takes precedence.
            prefer = "threads" if isinstance(estimator, BaseDecisionTree) else "processes"
            total = np.zeros(n)
            total_sq = np.zeros(n)
            count = np.zeros(n, dtype=np.int64)
            extra = extra_sq = None if x_extra is None else np.zeros(len(x_extra))
            if x_extra is not None:
                extra_sq = np.zeros(len(x_extra))
            with progress_bar(n_models, "Data-OOB", self.progress, unit="model") as bar:
                parallel = Parallel(n_jobs=self.n_jobs, prefer=prefer, return_as="generator")
                # Results arrive in chunk order, so the sums are the same for any n_jobs.
                for chunk, part in zip(chunks, parallel(tasks), strict=True):
                    total += part[0]
                    total_sq += part[1]
                    count += part[2]
                    if extra is not None:
                        extra += part[3]
                        extra_sq += part[4]
                    bar.update(len(chunk))
            if extra is not None:
                k = float(n_models)
                self.candidate_values_ = extra / k
                var = np.maximum(extra_sq - extra * self.candidate_values_, 0.0) / max(k - 1, 1)
                self.candidate_stderr_ = np.sqrt(var / k)

        values, stderr = self._summarise(total, total_sq, count)
        never = int(np.sum(count == 0))
        self._make_result(
            values,
            data,
            start,
            stderr=stderr,
            counts=count,
            extra={
                "n_estimators": n_models,
                "n_bootstrap": n_draws,
                "mean_oob_count": float(count.mean()),
                "fraction_never_oob": never / n,
                "fitted_ensemble": fitted,
            },
        )
        return self

    # ------------------------------------------------------------------ pieces of fit
    def _check_candidates(self, candidates: Any, data: Any, estimator: Any
                          ) -> tuple[np.ndarray, np.ndarray]:
        from datavalue._core.validation import check_xy

        if estimator is not None and hasattr(estimator, "estimators_"):
            raise InvalidParameterError(
                "'candidates' need models fitted here; 'model' is an already fitted ensemble.")
        if not isinstance(candidates, tuple | list) or len(candidates) != 2:
            raise InvalidParameterError(
                "'candidates' must be a pair (x_candidates, y_candidates).")
        xc, yc = check_xy(candidates[0], candidates[1], x_name="x_candidates",
                          y_name="y_candidates")
        if xc.shape[1] != data.x_train.shape[1]:
            raise InvalidDataError(
                f"'x_candidates' has {xc.shape[1]} features; the training data has "
                f"{data.x_train.shape[1]} (after encoding). Give numeric candidates in the "
                "training data's feature space.")
        if data.task == "classification":
            known = np.isin(yc, data.classes)
            if not known.all():
                raise InvalidDataError(
                    f"'y_candidates' has labels absent from 'y_train': "
                    f"{np.unique(yc[~known])[:5].tolist()}.")
            yc = np.searchsorted(data.classes, yc)
        return xc, yc

    def _task_of(self, estimator: Any) -> str | None:
        """The task set by ``task`` or implied by the estimator; they must agree."""
        implied = None
        if estimator is not None:
            if is_classifier(estimator):
                implied = "classification"
            elif is_regressor(estimator):
                implied = "regression"
        if self.task is not None and implied is not None and self.task != implied:
            raise InvalidParameterError(
                f"The 'task' parameter is {self.task!r} but 'model' "
                f"({type(estimator).__name__}) is a {'classifier' if implied == 'classification' else 'regressor'}."
                " Pass a matching estimator or leave task=None."
            )
        if implied is None and hasattr(estimator, "estimators_"):
            raise InvalidModelError(
                f"'model' is a fitted {type(estimator).__name__}, neither a classifier nor "
                "a regressor; Data-OOB reuses fitted bagging classifiers and regressors only."
            )
        return self.task or implied

    def _summarise(
        self, total: np.ndarray, total_sq: np.ndarray, count: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-point mean and standard error of the out-of-bag scores; points never out of bag
        get the mean of the others (see the class Notes)."""
        seen = count > 0
        if not seen.any():
            raise InvalidParameterError(
                f"No training point was out of bag for any of the {self.n_estimators} "
                "bootstrap models: increase 'n_estimators' or lower 'max_samples'."
            )
        k = count[seen].astype(np.float64)
        mean = total[seen] / k
        values = np.empty(count.shape[0])
        values[seen] = mean
        values[~seen] = mean.mean()
        stderr = np.full(count.shape[0], np.nan)
        # Sample variance from the sums (ddof=1); clipped at 0 against rounding.
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.maximum(total_sq[seen] - total[seen] * mean, 0.0) / (k - 1)
            stderr[seen] = np.where(k > 1, np.sqrt(var / k), np.nan)
        never = int((~seen).sum())
        if never:
            warnings.warn(
                f"{never} of {count.shape[0]} training points were never out of bag; they get "
                "the mean value of the others (count 0). Increase 'n_estimators' to value them.",
                UserWarning,
                stacklevel=3,
            )
        return values, stderr
