"""Corruption with a record of it: flipped labels and noisy features, each returning a new
:class:`~datavalue.data.Dataset` whose ``noisy_indices`` say which training rows changed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from datavalue._core.exceptions import (
    InvalidDataError,
    InvalidParameterError,
)
from datavalue._core.validation import (
    check_seed,
)
from datavalue.data.dataset import Dataset


# ---------------------------------------------------------------------- corruption
def _check_dataset_arg(dataset: Any, func: str) -> None:
    if not isinstance(dataset, Dataset):
        hint = (" Build one with Dataset.from_arrays(X, y, ...)."
                if isinstance(dataset, tuple | list) else "")
        raise InvalidParameterError(
            f"{func} corrupts a datavalue Dataset (it records which rows were corrupted); got "
            f"{type(dataset).__name__}.{hint}"
        )


def _check_rate(rate: Any, name: str = "rate") -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.floating) or not (
        0.0 <= float(rate) <= 1.0
    ):
        raise InvalidParameterError(
            f"The '{name}' parameter must be a float in [0, 1]. Got {rate!r} instead."
        )
    return float(rate)


def corrupt_labels(
    dataset: Dataset, rate: float = 0.1, *, random_state: int | None = 0, scale: float = 1.0
) -> Dataset:
    """Corrupt the labels of a fraction of the training split.

    Classification: each chosen row's label is replaced by a *different* class drawn uniformly
    (the protocol of Ghorbani & Zou 2019 and OpenDataVal). Regression: the chosen targets get
    Gaussian noise with standard deviation ``scale * std(y_train)``.

    Validation and test splits are never touched. Returns a new :class:`Dataset` whose
    ``noisy_indices`` is the union of the old record and the rows corrupted here.
    """
    _check_dataset_arg(dataset, "corrupt_labels")
    rate = _check_rate(rate)
    if not isinstance(dataset, Dataset):
        raise InvalidParameterError(
            f"The 'dataset' parameter must be a Dataset. Got {type(dataset).__name__}."
        )
    n = dataset.n_train
    k = int(round(rate * n))
    rng = np.random.default_rng(check_seed(random_state))
    idx = np.sort(rng.choice(n, size=k, replace=False))
    y = np.array(dataset.y_train, copy=True)
    if dataset.task == "classification":
        n_classes = dataset.n_classes or int(y.max()) + 1
        if n_classes < 2:
            raise InvalidDataError("Label flipping needs at least two classes.")
        # Adding an offset in 1..K-1 modulo K draws uniformly among the *other* classes.
        offset = rng.integers(1, n_classes, size=k)
        y[idx] = (y[idx] + offset) % n_classes
    else:
        y[idx] = y[idx] + rng.normal(0.0, scale * float(np.std(dataset.y_train)), size=k)
    noisy = np.union1d(dataset.noisy_indices, idx)
    return replace(dataset, y_train=y, noisy_indices=noisy)


def corrupt_features(
    dataset: Dataset, rate: float = 0.1, *, scale: float = 1.0, random_state: int | None = 0
) -> Dataset:
    """Add Gaussian noise (standard deviation ``scale`` times each feature's training standard
    deviation) to the features of a fraction of the training rows. Returns a new Dataset with
    those rows added to ``noisy_indices``."""
    _check_dataset_arg(dataset, "corrupt_features")
    rate = _check_rate(rate)
    if not isinstance(scale, int | float) or scale <= 0:
        raise InvalidParameterError(f"The 'scale' parameter must be positive. Got {scale!r}.")
    n = dataset.n_train
    k = int(round(rate * n))
    rng = np.random.default_rng(check_seed(random_state))
    idx = np.sort(rng.choice(n, size=k, replace=False))
    x = np.array(dataset.x_train, copy=True)
    std = x.std(axis=0)
    x[idx] += rng.normal(size=(k, x.shape[1])) * (scale * np.where(std > 0, std, 1.0))
    noisy = np.union1d(dataset.noisy_indices, idx)
    return replace(dataset, x_train=x, noisy_indices=noisy)
