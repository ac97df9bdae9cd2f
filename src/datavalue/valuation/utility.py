"""Utility: the score of a model trained on a subset of the training data.

``Utility(model, x_train, y_train, x_valid, y_valid, metric)`` is the function
v(S) = metric(y_valid, clone(model).fit(x_train[S], y_train[S]).predict(x_valid)) that every
retraining-based method (leave-one-out, Data Shapley and its relatives) values points with.

It is defined everywhere a Monte Carlo method walks:

- on the empty set, and on subsets with a single class (where most classifiers refuse to fit),
  the score is that of the best constant prediction: the only class present (with probability 1),
  or, for the empty set, the majority class / class frequencies / mean target of the full training
  set (the prior the model would fall back to with no data);
- a model that raises inside ``fit`` raises by default; with ``catch_errors=True`` it scores
  ``default_score`` and the failure is counted in ``n_failures``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from datavalue._core.exceptions import (
    InvalidDataError,
    InvalidParameterError,
    ModelOutputError,
    UnknownNameError,
)
from datavalue._core.validation import check_estimator_like
from datavalue.data.fitdata import FitData, check_fit_data, model_allows_nan, take_rows

__all__ = ["Utility", "METRICS", "METRIC_NAMES", "resolve_metric", "is_metric_name"]

_CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc", "neg_log_loss")
_REGRESSION_METRICS = ("r2", "neg_mse")
#: Names accepted as ``metric``.
METRICS: tuple[str, ...] = _CLASSIFICATION_METRICS + _REGRESSION_METRICS

_EPS = 1e-15


def _accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(y == pred))


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    average = "binary" if max(y.max(initial=0), pred.max(initial=0)) <= 1 else "macro"
    return float(f1_score(y, pred, average=average, zero_division=0.0))


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return 0.5
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    present = np.unique(y)
    p = proba[:, present]
    p = p / np.clip(p.sum(axis=1, keepdims=True), _EPS, None)
    yy = np.searchsorted(present, y)
    return float(roc_auc_score(yy, p, multi_class="ovr")) if len(present) > 2 else float(
        roc_auc_score(yy, p[:, 1])
    )


def _neg_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    p = np.clip(proba[np.arange(len(y)), y], _EPS, 1.0)
    return float(np.mean(np.log(p)))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)


def _neg_mse(y: np.ndarray, pred: np.ndarray) -> float:
    return -float(np.mean((y - pred) ** 2))


# name -> (function, what it consumes: "label" | "proba" | "value", task)
_METRIC_TABLE: dict[str, tuple[Callable, str, str]] = {
    "accuracy": (_accuracy, "label", "classification"),
    "f1": (_f1, "label", "classification"),
    "roc_auc": (_roc_auc, "proba", "classification"),
    "neg_log_loss": (_neg_log_loss, "proba", "classification"),
    "r2": (_r2, "value", "regression"),
    "neg_mse": (_neg_mse, "value", "regression"),
}


def _sklearn_scorer_names() -> list[str]:
    from sklearn.metrics import get_scorer_names

    return list(get_scorer_names())


def is_metric_name(name: Any) -> bool:
    """Whether ``name`` is a built-in metric or a scikit-learn scorer name."""
    return isinstance(name, str) and (name in _METRIC_TABLE or name in _sklearn_scorer_names())


def is_scorer(obj: Any) -> bool:
    """A scikit-learn scorer object (``make_scorer``, ``get_scorer``): called as
    ``scorer(estimator, X, y)``, unlike a metric ``metric(y_true, y_pred)``."""
    from sklearn.metrics._scorer import _BaseScorer

    return isinstance(obj, _BaseScorer)


class MetricNames:
    """The 'metric' constraint: a built-in name or any name ``sklearn.metrics.get_scorer``
    knows (checked when validated: the list depends on the installed scikit-learn)."""

    def accepts(self, value: Any) -> bool:
        return is_metric_name(value)

    def __str__(self) -> str:
        return f"one of {', '.join(METRICS)} or a scikit-learn scorer name"

    def hint(self, value: Any) -> str:
        import difflib

        if not isinstance(value, str):
            return ""
        close = difflib.get_close_matches(value, [*METRICS, *_sklearn_scorer_names()], n=1)
        return f"(Did you mean {close[0]!r}?)" if close else ""


METRIC_NAMES = MetricNames()


def resolve_metric(metric: str | Callable, task: str) -> tuple[Callable, str]:
    """Return ``(function, kind)`` for a metric.

    - a built-in name (:data:`METRICS`): the fast path, ``fn(y_true, prediction)`` with kind
      "label", "proba" or "value";
    - any other name ``sklearn.metrics.get_scorer`` knows (``balanced_accuracy``,
      ``neg_mean_absolute_error``, ...), or a scorer object: kind "scorer",
      ``fn(estimator, X, y)``;
    - any other callable: ``metric(y_true, y_pred)`` on predicted labels (classification) or
      values (regression), higher = better.
    """
    if is_scorer(metric):
        return metric, "scorer"
    if callable(metric):
        return metric, "label" if task == "classification" else "value"
    if isinstance(metric, str) and metric not in _METRIC_TABLE and is_metric_name(metric):
        from sklearn.metrics import get_scorer

        return get_scorer(metric), "scorer"
    if not isinstance(metric, str) or metric not in _METRIC_TABLE:
        import difflib

        close = difflib.get_close_matches(str(metric), [*METRICS, *_sklearn_scorer_names()], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"Unknown metric {metric!r} given as 'metric'.{hint} Use one of {', '.join(METRICS)}, "
            "any name sklearn.metrics.get_scorer knows, a scorer object, or a callable "
            "metric(y_true, y_pred) where higher is better."
        )
    fn, kind, metric_task = _METRIC_TABLE[metric]
    if metric_task != task:
        raise InvalidParameterError(
            f"The metric {metric!r} is for {metric_task}, but the task is {task}; use one of "
            f"{', '.join(_CLASSIFICATION_METRICS if task == 'classification' else _REGRESSION_METRICS)}."
        )
    return fn, kind


class _ConstantModel:
    """The best constant prediction (see :meth:`Utility._constant_score`) as a fitted
    estimator, so that any scikit-learn scorer can score it."""

    def __init__(self, utility: Utility, label: int | None) -> None:
        self.task = utility.task
        if utility.task == "regression":
            self.value = float(utility.y_train.mean())
            return
        k = utility.n_classes
        self.classes_ = np.arange(k)
        if label is None:
            self.freq = np.bincount(utility.y_train, minlength=k) / utility.n_train
            self.label = int(np.argmax(self.freq))
        else:
            self.freq = np.zeros(k)
            self.freq[label] = 1.0
            self.label = label

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, RegressorTags, Tags, TargetTags

        if self.task == "regression":
            return Tags(estimator_type="regressor", target_tags=TargetTags(required=True),
                        regressor_tags=RegressorTags())
        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())

    def predict(self, x: Any) -> np.ndarray:
        n = x.shape[0]
        if self.task == "regression":
            return np.full(n, self.value)
        return np.full(n, self.label, dtype=np.int64)

    def predict_proba(self, x: Any) -> np.ndarray:
        return np.tile(self.freq, (x.shape[0], 1))

    def decision_function(self, x: Any) -> np.ndarray:
        p = self.predict_proba(x)
        return p[:, 1] if p.shape[1] == 2 else p


def _warm_start_key(model: Any) -> str | None:
    """The parameter that turns on warm starts: ``warm_start`` itself, or that of a Pipeline's
    final step (``logisticregression__warm_start``)."""
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    if "warm_start" in params:
        return "warm_start"
    steps = getattr(model, "steps", None)
    if steps:
        key = f"{steps[-1][0]}__warm_start"
        if key in params:
            return key
    return None


def default_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "r2"


def _explain_fit_error(exc: Exception, size: int, n_train: int, model: Any) -> Exception | None:
    """A clear error for the third-party failures a user meets on the way into a valuation
    (None: pass the original on). Subsets are the cause of the first: a subset may lack a
    category that the validation rows have."""
    text = str(exc)
    name = type(model).__name__
    if "unknown categor" in text.lower():
        return ModelOutputError(
            f"{name} trained on a subset of {size} of the {n_train} training rows failed: "
            f"{type(exc).__name__}: {text}. Valuation trains on subsets, which may lack a "
            "category that the validation rows have: encode with "
            "OneHotEncoder(handle_unknown='ignore') (or 'infrequent_if_exist').")
    if "could not convert string to float" in text:
        return InvalidDataError(
            f"{name} needs numeric features but 'x_train' holds text ({type(exc).__name__}: "
            f"{text}). Leave 'model' out (the default model encodes text categories), or pass "
            "a Pipeline that encodes them (ColumnTransformer with OneHotEncoder).")
    return None


class Utility:
    """Score of ``model`` trained on a subset of the training data, on the validation data.

    Parameters
    ----------
    model : estimator
        Any scikit-learn compatible classifier or regressor; it is cloned for every call and
        never modified.
    x_train, y_train, x_valid, y_valid : array-like
        Training and validation data. Classification labels may be any values; they are encoded
        as ``0..K-1`` over the union of the training and validation labels.
    metric : str or callable
        One of :data:`METRICS` or ``metric(y_true, y_pred) -> float`` (higher = better).
    task : {"classification", "regression"} or None
        Inferred from ``y_train`` if None.
    catch_errors : bool
        If True, a model that fails to fit scores ``default_score`` instead of raising.
    default_score : float
        Score of a failed fit when ``catch_errors`` is True.
    cache_size : int
        Number of recent subsets whose scores are remembered (0 = no cache). Monte Carlo walks
        revisit subsets rarely, so the cache is off by default.
    warm_start : bool
        For estimators with a ``warm_start`` parameter (LogisticRegression, SGD, MLP, ...): keep
        one model between calls and start each fit from the previous solution, until
        :meth:`reset_warm_start`. Permutation walks fit nested subsets, so this saves most of
        the solver's iterations; scores then depend on the solver's tolerance along the path.

    Notes
    -----
    Inputs are validated once, here; calls do no checking (a Monte Carlo run calls the utility
    10^4-10^6 times).
    """

    def __init__(
        self,
        model: Any,
        x_train: Any,
        y_train: Any,
        x_valid: Any,
        y_valid: Any,
        metric: str | Callable = "accuracy",
        *,
        task: str | None = None,
        catch_errors: bool = False,
        default_score: float = 0.0,
        cache_size: int = 0,
        warm_start: bool = False,
    ) -> None:
        check_estimator_like(model, "model")
        data = check_fit_data(x_train, y_train, x_valid, y_valid, task=task, owner="Utility",
                              allow_missing=model_allows_nan(model))
        self._setup(model, data, metric, catch_errors, default_score, cache_size, warm_start)

    @classmethod
    def from_data(cls, model: Any, data: FitData, metric: str | Callable = "accuracy", *,
                  catch_errors: bool = False, default_score: float = 0.0, cache_size: int = 0,
                  warm_start: bool = False) -> Utility:
        """A utility on data already validated (:func:`datavalue.data.fitdata.check_fit_data`):
        what valuators use, so the data are checked and encoded once."""
        check_estimator_like(model, "model")
        if data.x_valid is None:
            raise InvalidDataError("A Utility needs validation data ('x_valid', 'y_valid').")
        self = cls.__new__(cls)
        self._setup(model, data, metric, catch_errors, default_score, cache_size, warm_start)
        return self

    def _setup(self, model: Any, data: FitData, metric: Any, catch_errors: bool,
               default_score: float, cache_size: int, warm_start: bool) -> None:
        task = data.task
        self.task = task
        self.model = model
        self.data = data
        self.x_train, self.x_valid = data.x_train, data.x_valid
        self.y_train, self.y_valid = data.y_train, data.y_valid
        self.classes_ = data.classes
        if task == "classification" and len(np.unique(self.y_train)) < 2:
            raise InvalidDataError(
                "'y_train' contains only one class; a classification utility needs at least two."
            )
        self.metric = metric
        self._score_fn, self._kind = resolve_metric(metric, task)
        if self._kind == "proba" and not (
            hasattr(model, "predict_proba") or hasattr(model, "decision_function")
        ):
            raise InvalidParameterError(
                f"The metric {metric!r} needs predicted probabilities, but "
                f"{type(model).__name__} has neither predict_proba nor decision_function."
            )
        self.catch_errors = bool(catch_errors)
        self.default_score = float(default_score)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self.n_calls = 0
        self.n_fits = 0
        self.n_failures = 0
        self.first_error: str | None = None
        self.n_cache_hits = 0
        self._empty_score: float | None = None
        self._warm_key = _warm_start_key(model) if warm_start else None
        if warm_start and self._warm_key is None:
            raise InvalidParameterError(
                f"warm_start=True needs a model with a 'warm_start' parameter (LogisticRegression, "
                f"SGDClassifier, MLPClassifier, ... or a Pipeline ending in one); "
                f"{type(model).__name__} has none."
            )
        self.warm_start = self._warm_key is not None
        self._warm_model: Any = None

    # ------------------------------------------------------------------ public
    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_players(self) -> int:
        """The players of the game v are the training points."""
        return self.n_train

    def reset_warm_start(self) -> None:
        """Forget the warm-start model: the next fit starts from scratch."""
        self._warm_model = None

    @property
    def n_classes(self) -> int:
        return 0 if self.classes_ is None else len(self.classes_)

    def __call__(self, indices: Sequence[int] | np.ndarray) -> float:
        """Score of the model trained on ``x_train[indices]``."""
        idx = np.asarray(indices, dtype=np.intp)
        self.n_calls += 1
        if self.cache_size:
            key = np.sort(idx).tobytes()
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.n_cache_hits += 1
                return hit
            score = self._score_subset(idx)
            self._cache[key] = score
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return score
        return self._score_subset(idx)

    def full_score(self) -> float:
        """v(N): the score on the whole training set."""
        return self(np.arange(self.n_train))

    def empty_score(self) -> float:
        """v(∅): the score of the prior constant prediction."""
        if self._empty_score is None:
            self._empty_score = self._constant_score(None)
        return self._empty_score

    def check_learns(self) -> None:
        """Raise :class:`ModelOutputError` when the model learns nothing from these features:
        trained on every training row, its continuous outputs (probabilities, decision values
        or predictions) are the same for every validation row. Then every subset scores alike
        and values computed from this utility are noise around one number (features whose
        products overflow, a fit that stops at its starting point). One extra fit, next to the
        hundreds a valuation makes."""
        try:
            model = clone(self.model).fit(self.x_train, self.y_train)
            for name in ("predict_proba", "decision_function", "predict"):
                if hasattr(model, name):
                    out = np.asarray(getattr(model, name)(self.x_valid))
                    break
            out = out.astype(np.float64).reshape(len(out), -1)
        except Exception:  # failures are reported by the valuation's own fits, by name
            return
        if len(out) != int(self.x_valid.shape[0]):
            return  # wrong-length predictions: the first utility call names them
        if len(out) >= 2 and np.ptp(out, axis=0).max() == 0:
            scale = ""
            if isinstance(self.x_train, np.ndarray) and self.x_train.dtype.kind == "f":
                scale = (f" The features' largest magnitude is "
                         f"{float(np.max(np.abs(self.x_train))):.3g}: rescale them if it is "
                         "far from 1.")
            raise ModelOutputError(
                f"{type(self.model).__name__} trained on all {self.n_train} training rows gives "
                f"the same output for every one of the {len(out)} validation rows: it learns "
                f"nothing from these features, so no subset scores differently and the values "
                f"would mean nothing.{scale} Check the model (convergence, regularisation) or "
                "use another one.")

    def fit_model(self, indices: Sequence[int] | np.ndarray) -> Any:
        """A fresh clone of the model fitted on ``x_train[indices]`` (raises on one class)."""
        idx = np.asarray(indices, dtype=np.intp)
        model = clone(self.model)
        model.fit(take_rows(self.x_train, idx), self.y_train[idx])
        return model

    def score_model(self, model: Any, x: np.ndarray | None = None, y: np.ndarray | None = None) -> float:
        """Score a fitted model on the validation data (or on ``x``, ``y`` if given)."""
        x = self.x_valid if x is None else x
        y = self.y_valid if y is None else y
        if self._kind == "scorer":
            return float(self._score_fn(model, x, y))
        return self._score_fn(y, self._predict(model, x))

    # ------------------------------------------------------------------ internals
    def _score_subset(self, idx: np.ndarray) -> float:
        if idx.size == 0:
            return self.empty_score()
        if self.task == "classification":
            labels = self.y_train[idx]
            first = labels[0]
            if np.all(labels == first):
                return self._constant_score(int(first))
        try:
            if self.warm_start:
                if self._warm_model is None:
                    self._warm_model = clone(self.model).set_params(**{self._warm_key: True})
                model = self._warm_model
            else:
                model = clone(self.model)
            model.fit(take_rows(self.x_train, idx), self.y_train[idx])
            self.n_fits += 1
            score = (float(self._score_fn(model, self.x_valid, self.y_valid))
                     if self._kind == "scorer"
                     else self._score_fn(self.y_valid, self._predict(model, self.x_valid)))
            if not np.isfinite(score):
                raise ModelOutputError(
                    f"The metric {self.metric!r} of {type(self.model).__name__} trained on "
                    f"{idx.size} training examples is {score} (not finite)."
                )
            return score
        except Exception as exc:
            if not self.catch_errors:
                explained = _explain_fit_error(exc, idx.size, self.n_train, self.model)
                if explained is None:
                    raise
                raise explained from exc
            self.n_failures += 1
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"
            return self.default_score

    def _predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        """Predictions of ``model`` on ``x``, checked: one per row, finite (cheap next to a
        fit, and a NaN prediction would otherwise become a silently NaN value)."""
        p = self._predict_unchecked(model, x)
        if p.shape[:1] != (x.shape[0],):
            raise ModelOutputError(
                f"{type(model).__name__} returned predictions of shape {p.shape} for "
                f"{x.shape[0]} rows; a model must predict one value per row."
            )
        if p.dtype.kind in "fc" and not np.isfinite(p).all():
            raise ModelOutputError(
                f"{type(model).__name__} predicted {int((~np.isfinite(p)).sum())} NaN or "
                "infinite value(s); data values cannot be computed from them. Check the model "
                "(scaling, regularisation) or use another one."
            )
        return p

    def _predict_unchecked(self, model: Any, x: np.ndarray) -> np.ndarray:
        if self._kind == "label" or self._kind == "value":
            return np.asarray(model.predict(x))
        # Probabilities over *all* classes: a model fitted on a subset knows only some of them.
        k = self.n_classes
        if hasattr(model, "predict_proba"):
            p = np.asarray(model.predict_proba(x))
        else:
            d = np.asarray(model.decision_function(x))
            if d.ndim == 1:
                d = np.column_stack([-d, d])
            e = np.exp(d - d.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
        cols = np.asarray(model.classes_, dtype=np.int64)
        if p.shape[1] == k and np.array_equal(cols, np.arange(k)):
            return p
        full = np.zeros((x.shape[0], k))
        full[:, cols] = p
        return full

    def _constant_score(self, label: int | None) -> float:
        """Score of a constant prediction: ``label`` with certainty, or the training prior."""
        n_valid = self.x_valid.shape[0]
        if self._kind == "scorer":
            return float(self._score_fn(_ConstantModel(self, label), self.x_valid, self.y_valid))
        if self.task == "regression":
            return self._score_fn(self.y_valid, np.full(n_valid, float(self.y_train.mean())))
        if label is None:
            freq = np.bincount(self.y_train, minlength=self.n_classes) / self.n_train
            label = int(np.argmax(freq))
        else:
            freq = np.zeros(self.n_classes)
            freq[label] = 1.0
        if self._kind == "label":
            return self._score_fn(self.y_valid, np.full(n_valid, label, dtype=np.int64))
        return self._score_fn(self.y_valid, np.tile(freq, (n_valid, 1)))

    def __repr__(self) -> str:
        return (
            f"Utility(model={self.model!r}, metric={self.metric!r}, n_train={self.n_train}, "
            f"n_valid={self.x_valid.shape[0]})"
        )
