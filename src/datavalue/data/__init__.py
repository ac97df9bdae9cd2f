"""Data sets: an immutable train/valid/test split, loaders, and corruption with a record of it.

A :class:`Dataset` holds three splits (train, valid, test) of one data set, the task, the names
of features and classes, and ``noisy_indices``: the rows of the training split that were
corrupted on purpose (empty if none). Every function here returns a new ``Dataset``; nothing
mutates the caller's arrays (they are copied and made read-only).
"""

from __future__ import annotations

from datavalue.data.corrupt import corrupt_features, corrupt_labels
from datavalue.data.dataset import Dataset
from datavalue.data.loaders import BUILTIN_DATASETS, load_dataset

__all__ = [
    "Dataset",
    "load_dataset",
    "corrupt_labels",
    "corrupt_features",
    "BUILTIN_DATASETS",
]
