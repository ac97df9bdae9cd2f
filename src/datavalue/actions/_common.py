"""Checks and small helpers shared by clean and fix."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from datavalue._core.exceptions import (
    InvalidDataError,
    InvalidParameterError,
)
from datavalue._core.validation import check_estimator_like
from datavalue.data import Dataset
from datavalue.valuation.utility import default_metric


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
