"""Loading data sets: scikit-learn's bundled sets and synthetic ones by name, the shared real
data sets, CSV and NPZ files, each split and optionally corrupted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import (
    InvalidParameterError,
    UnknownNameError,
)
from datavalue._core.validation import (
    check_seed,
)
from datavalue.data.corrupt import corrupt_features, corrupt_labels
from datavalue.data.dataset import Dataset, _read_npz

#: Names accepted by :func:`load_dataset` without a path.
BUILTIN_DATASETS: tuple[str, ...] = (
    "breast_cancer",
    "digits",
    "wine",
    "iris",
    "diabetes",
    "classification",
    "regression",
)

# ---------------------------------------------------------------------- built-in sets
def _builtin_arrays(
    name: str, n_samples: int | None, n_features: int | None, random_state: int | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from sklearn import datasets as skd

    if name in ("breast_cancer", "digits", "wine", "iris", "diabetes"):
        bunch = getattr(skd, f"load_{name}")()
        meta: dict[str, Any] = {"feature_names": [str(f) for f in bunch.feature_names]}
        if name == "diabetes":
            meta["task"] = "regression"
        else:
            meta["task"] = "classification"
            meta["class_names"] = [str(c) for c in bunch.target_names]
        if name == "digits":
            meta["image_shape"] = (8, 8)
        return bunch.data, bunch.target, meta
    if name == "classification":
        X, y = skd.make_classification(
            n_samples=n_samples or 1000,
            n_features=n_features or 20,
            n_informative=max(2, (n_features or 20) // 2),
            n_redundant=0,
            random_state=random_state,
        )
        return X, y, {"task": "classification", "class_names": ["0", "1"]}
    if name == "regression":
        X, y = skd.make_regression(
            n_samples=n_samples or 1000,
            n_features=n_features or 20,
            n_informative=max(1, (n_features or 20) // 2),
            noise=10.0,
            random_state=random_state,
        )
        return X, y, {"task": "regression"}
    raise UnknownNameError(name)


def _shared_data_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("DATAVALUE_DATA")
    if env:
        dirs.append(Path(env))
    return dirs


def load_dataset(
    name: str | os.PathLike,
    *,
    noise_rate: float = 0.0,
    noise_kind: str = "labels",
    random_state: int | None = 0,
    n_samples: int | None = None,
    n_features: int | None = None,
    train_size: float | int | None = None,
    valid_size: float | int = 0.2,
    test_size: float | int = 0.2,
    standardize: bool = True,
    target: str | None = None,
    missing: str = "error",
    id_column: str | None = None,
) -> Dataset:
    """Load a built-in data set or a file, split it, standardize it, and optionally corrupt it.

    Parameters
    ----------
    name : str or path
        One of :data:`BUILTIN_DATASETS` (scikit-learn's bundled ``breast_cancer``, ``digits``,
        ``wine``, ``iris``, ``diabetes`` and the seeded synthetic ``classification`` and
        ``regression``), a path to a ``.npz`` or ``.csv`` file, or the name of an ``.npz`` in the
        folder named by the ``DATAVALUE_DATA`` environment variable.
    noise_rate : float in [0, 1)
        Fraction of training rows to corrupt (none by default).
    noise_kind : {"labels", "features"}
        Flip labels (:func:`corrupt_labels`) or add Gaussian noise (:func:`corrupt_features`).
    random_state : int or None
        Seed of the synthetic generator, the split, the subsample and the corruption.
    n_samples : int or None
        Rows to keep (a seeded random subsample for files and built-ins; the size of synthetic
        sets). None keeps everything.
    n_features : int or None
        Features of the synthetic sets.
    train_size, valid_size, test_size : float or int
        See :meth:`Dataset.from_arrays`.
    standardize : bool
        Scale features with training-split statistics (default True: most models and KNN need
        it; the raw values are recoverable with :meth:`Dataset.raw_features`).
    target : str or None
        Target column of a CSV file.
    missing : {"error", "impute"}
        What to do with missing values in a CSV file (see :meth:`Dataset.from_csv`).
    id_column : str or None
        Column of unique row ids of a CSV file (default: ids are line numbers).
    """
    if id_column is not None and not str(name).lower().endswith(".csv"):
        raise InvalidParameterError("'id_column' applies to CSV files only.")
    if not isinstance(noise_rate, int | float) or isinstance(noise_rate, bool) or not (
        0.0 <= noise_rate < 1.0
    ):
        raise InvalidParameterError(
            f"The 'noise_rate' parameter must be a float in [0, 1). Got {noise_rate!r} instead."
        )
    if noise_kind not in ("labels", "features"):
        raise InvalidParameterError(
            f"The 'noise_kind' parameter must be 'labels' or 'features'. Got {noise_kind!r}."
        )
    if n_samples is not None and (not isinstance(n_samples, int | np.integer) or n_samples < 3):
        raise InvalidParameterError(
            f"The 'n_samples' parameter must be an int >= 3 or None. Got {n_samples!r} instead."
        )
    random_state = check_seed(random_state)
    if n_features is not None and (isinstance(n_features, bool) or not isinstance(
            n_features, int | np.integer) or n_features < 2):
        # 0 used to fall back to the default of 20 features ("n_features or 20").
        raise InvalidParameterError(
            f"The 'n_features' parameter must be an int >= 2 or None (the synthetic sets' "
            f"default of 20). Got {n_features!r} instead.")
    split = dict(
        train_size=train_size,
        valid_size=valid_size,
        test_size=test_size,
        random_state=random_state,
        standardize=standardize,
    )
    key = str(name)
    path = Path(key)
    if key in BUILTIN_DATASETS:
        X, y, meta = _builtin_arrays(key, n_samples, n_features, random_state)
        ids = None
        if n_samples is not None and key not in ("classification", "regression"):
            X, y, ids = _subsample(X, y, n_samples, random_state)
        ds = Dataset.from_arrays(
            X,
            y,
            ids=ids,
            task=meta["task"],
            feature_names=meta.get("feature_names"),
            class_names=meta.get("class_names"),
            image_shape=meta.get("image_shape"),
            name=key,
            **split,
        )
    else:
        if not path.suffix:
            for d in _shared_data_dirs():
                if (d / f"{key}.npz").is_file():
                    path = d / f"{key}.npz"
                    break
        if path.suffix.lower() == ".npz" and path.is_file():
            ds = Dataset.from_npz(path, **split) if n_samples is None else _npz_subsampled(
                path, n_samples, split
            )
        elif path.suffix.lower() == ".csv" and path.is_file():
            if target is None:
                raise InvalidParameterError(
                    "A CSV file needs the name of its target column: pass 'target' "
                    "(--target on the command line)."
                )
            ds = Dataset.from_csv(path, target, missing=missing, id_column=id_column, **split)
            if n_samples is not None:
                raise InvalidParameterError("'n_samples' is not supported for CSV files yet.")
        elif path.suffix and not path.exists():
            raise InvalidParameterError(f"The data file {key!r} does not exist.")
        else:
            raise UnknownNameError(
                f"Unknown data set {key!r}: use one of {', '.join(BUILTIN_DATASETS)}, or a path "
                "to a .csv or .npz file."
            )
    if noise_rate > 0:
        if noise_kind == "labels":
            ds = corrupt_labels(ds, noise_rate, random_state=random_state)
        else:
            ds = corrupt_features(ds, noise_rate, random_state=random_state)
    return ds


def _subsample(X: np.ndarray, y: np.ndarray, n: int, random_state: int | None):
    """A seeded subsample of ``n`` rows and their positions in the full data (their ids)."""
    if n >= len(y):
        return X, y, None
    random_state = check_seed(random_state)
    rng = np.random.default_rng(None if random_state is None else random_state + 7919)
    idx = np.sort(rng.choice(len(y), size=n, replace=False))
    return X[idx], y[idx], idx


def _npz_subsampled(path: Path, n_samples: int, split: dict) -> Dataset:
    X, y, names = _read_npz(path)
    X, y, ids = _subsample(X, y, n_samples, split["random_state"])
    meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(
        ".json"
    ).is_file() else {}
    task = meta.get("task")
    task = None if task is None else ("regression" if "regress" in str(task) else "classification")
    class_names = meta.get("classes") if task == "classification" else None
    return Dataset.from_arrays(
        X, y, ids=ids, task=task, feature_names=names, class_names=class_names, name=path.stem,
        **split
    )
