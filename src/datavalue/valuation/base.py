"""The contract every valuation method follows (scikit-learn's estimator contract).

``__init__`` stores its keyword arguments and nothing else; ``fit`` validates parameters and data
once, does the work, sets ``values_`` (float64, one per training example, higher = more helpful)
and ``result_`` (:class:`~datavalue.ValuationResult`), and returns ``self``.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from datavalue._core.exceptions import ModelOutputError
from datavalue._core.result import ValuationResult
from datavalue._core.validation import check_estimator_like, validate_params
from datavalue.data.fitdata import FitData, check_fit_data, model_allows_nan

__all__ = ["Valuator", "FitData", "default_model", "FitFailures"]  # FitData: see fitdata.py


class FitFailures:
    """Failed and successful model fits of a utility, counted across worker processes.

    A worker's utility is a copy: its counters never reach the parent. Each task therefore
    measures what its own calls added (:meth:`during`) and returns it; the parent adds them up.
    """

    def __init__(self, failed: int = 0, fitted: int = 0, first_error: str | None = None):
        self.failed, self.fitted, self.first_error = int(failed), int(fitted), first_error

    @classmethod
    def of(cls, game: Any) -> FitFailures:
        return cls(getattr(game, "n_failures", 0), getattr(game, "n_fits", 0),
                   getattr(game, "first_error", None))

    def since(self, before: FitFailures) -> FitFailures:
        return FitFailures(self.failed - before.failed, self.fitted - before.fitted,
                           self.first_error)

    def __add__(self, other: FitFailures) -> FitFailures:
        return FitFailures(self.failed + other.failed, self.fitted + other.fitted,
                           self.first_error or other.first_error)

    def check(self, owner: str) -> dict[str, Any]:
        """Raise if every fit failed (the values would be the default score's noise); else the
        counts for the result's ``extra``."""
        if self.failed and not self.fitted:
            raise ModelOutputError(
                f"{owner}: every one of the {self.failed} model fits failed (catch_errors=True "
                f"scored them all with default_score), so the values mean nothing. First error: "
                f"{self.first_error}"
            )
        return {"n_failed_fits": self.failed}


def default_model(task: str, data: FitData | None = None) -> Any:
    """Logistic regression for classification, ridge regression for regression; for ``data``
    that are not finite numbers (text categories, missing values, sparse), preceded by the
    default preprocessing (:func:`datavalue.data.fitdata.default_preprocessor`), so a DataFrame is
    valued as it comes instead of failing deep inside scikit-learn."""
    from sklearn.linear_model import LogisticRegression, Ridge

    model = LogisticRegression(max_iter=1000) if task == "classification" else Ridge()
    if data is not None and not data.is_numeric:
        from sklearn.pipeline import make_pipeline

        from datavalue.data.fitdata import default_preprocessor

        return make_pipeline(default_preprocessor(data.x_train), model)
    return model


class Valuator(BaseEstimator):
    """Base class of valuation methods.

    Subclasses set ``method_name`` (the key in ``datavalue.METHODS``),
    ``_parameter_constraints`` and implement ``fit``.
    """

    method_name: ClassVar[str] = "valuator"
    #: Whether ``fit`` needs validation data (the rows it scores models on get no value).
    needs_validation: ClassVar[bool] = True
    _parameter_constraints: ClassVar[dict[str, list]] = {}

    # ------------------------------------------------------------------ helpers for fit
    def _validate_params(self) -> None:
        validate_params(type(self).__name__, self.get_params(deep=False), self._parameter_constraints)

    def _check_data(
        self,
        x_train: Any,
        y_train: Any,
        x_valid: Any = None,
        y_valid: Any = None,
        *,
        need_valid: bool = True,
        task: str | None = None,
        model: Any = None,
        allow_missing: bool | None = None,
    ) -> FitData:
        """Validate the data once at the boundary (:func:`datavalue.data.fitdata.check_fit_data`).

        Missing feature values are accepted when ``model`` accepts them (its ``allow_nan``
        tag) or ``allow_missing`` says a preprocessor will impute them."""
        if allow_missing is None:
            allow_missing = model_allows_nan(model)
        return check_fit_data(
            x_train, y_train, x_valid, y_valid,
            task=task or getattr(self, "task", None), need_valid=need_valid,
            owner=type(self).__name__, allow_missing=allow_missing,
        )

    @staticmethod
    def _check_model(model: Any, name: str = "model") -> None:
        check_estimator_like(model, name)

    def _make_result(
        self,
        values: np.ndarray,
        data: FitData,
        start_time: float,
        *,
        stderr: np.ndarray | None = None,
        counts: np.ndarray | None = None,
        status: str = "completed",
        extra: dict[str, Any] | None = None,
    ) -> ValuationResult:
        """Store ``values_`` and ``result_`` on self and return the result."""
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            raise ModelOutputError(
                f"{type(self).__name__} produced {bad} NaN or infinite value(s) of "
                f"{values.size}: the model's predictions or scores were not finite (e.g. a "
                "regression model that diverged, or a metric that is undefined on this data). "
                "No result is reported."
            )
        self.values_ = values
        self.result_ = ValuationResult(
            values=values,
            stderr=np.zeros_like(values) if stderr is None else stderr,
            counts=counts,
            method=self.method_name,
            params=self.get_params(deep=False),
            seed=getattr(self, "random_state", None),
            data_fingerprint=data.fingerprint,
            wall_time=time.perf_counter() - start_time,
            status=status,
            extra=extra or {},
            ids=data.ids_train,
        )
        return self.result_
