"""The data set: an immutable train/valid/test split with the user's row ids, the task, the
names of features and classes, and the training rows corrupted on purpose (``noisy_indices``).
Nothing mutates the caller's arrays (they are copied and made read-only)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import (
    DatavalueError,
    InvalidDataError,
    InvalidParameterError,
)
from datavalue._core.fingerprint import fingerprint_arrays
from datavalue._core.validation import (
    check_features,
    check_ids,
    check_seed,
    check_table_infinite,
    check_target,
    infer_task,
    power_of_two_exponent,
)
from datavalue.data.encode import (
    _SPLITS,
    _as_table,
    _check_codes,
    _encode,
    _fit_table_encoder,
    _frozen,
)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/valid/test split of one data set, immutable.

    Attributes
    ----------
    x_train, y_train, x_valid, y_valid, x_test, y_test : numpy.ndarray
        Features (float64, 2-D) and targets (int64 class codes ``0..K-1`` for classification,
        float64 for regression) of each split. Read-only.
    task : {"classification", "regression"}
    feature_names : tuple of str
    class_names : tuple of str or None
        Original label of each class code (classification only).
    noisy_indices : numpy.ndarray
        Sorted indices into the *training* split that were corrupted (labels or features).
    name : str
        Where the data came from (a built-in name or a file name).
    feature_mean, feature_scale : numpy.ndarray or None
        If the features were standardized, ``x_raw = x * feature_scale + feature_mean``.
    image_shape : tuple of int or None
        Shape of one example as an image (``(8, 8)`` for digits), for reports.
    ids_train, ids_valid, ids_test : numpy.ndarray
        The user's id of every row (a DataFrame's index, a CSV's id column or line number;
        default: the row's position in the data before splitting). Unique over all splits.
        Results of valuing ``x_train`` carry ``ids_train``.
    preprocessor : scikit-learn transformer or None
        For tables with text columns or missing values: the ``ColumnTransformer`` that turned
        the user's columns into ``x_*``, fitted on the training rows only (not the validation or
        test rows). :meth:`transform` applies it (and the standardization) to new rows. Kept in
        memory only: a loaded data set has none.
    source_columns : tuple of str
        The user's feature columns (before encoding), when the data came from a table.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str = "classification"
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] | None = None
    noisy_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    name: str = "arrays"
    feature_mean: np.ndarray | None = None
    feature_scale: np.ndarray | None = None
    image_shape: tuple[int, ...] | None = None
    ids_train: np.ndarray | None = None
    ids_valid: np.ndarray | None = None
    ids_test: np.ndarray | None = None
    preprocessor: Any = None
    source_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise InvalidParameterError(
                f"The 'task' of a Dataset must be 'classification' or 'regression'. "
                f"Got {self.task!r} instead."
            )
        d = None
        for split in _SPLITS:
            x = check_features(getattr(self, f"x_{split}"), f"x_{split}", allow_empty=split != "train")
            y = check_target(
                getattr(self, f"y_{split}"), f"y_{split}", n_samples=x.shape[0], x_name=f"x_{split}"
            )
            if d is not None and x.shape[1] != d:
                raise InvalidDataError(
                    f"'x_{split}' has {x.shape[1]} features but 'x_train' has {d}."
                )
            d = x.shape[1]
            y = _check_codes(y, f"y_{split}", self.task, self.class_names)
            object.__setattr__(self, f"x_{split}", _frozen(x))
            object.__setattr__(self, f"y_{split}", _frozen(y))
        offset = 0
        seen: list[np.ndarray] = []
        for split in _SPLITS:
            n_split = getattr(self, f"x_{split}").shape[0]
            ids = getattr(self, f"ids_{split}")
            ids = (np.arange(offset, offset + n_split, dtype=np.int64) if ids is None
                   else check_ids(ids, n_split, f"ids_{split}", unique=False))
            offset += n_split
            seen.append(ids)
            object.__setattr__(self, f"ids_{split}", _frozen(ids))
        every = np.concatenate([a.astype(str) if any(b.dtype.kind == "U" for b in seen) else a
                                for a in seen])
        if len(np.unique(every)) != len(every):
            raise InvalidDataError("Row ids must be unique over the train, valid and test splits.")
        object.__setattr__(self, "source_columns", tuple(str(c) for c in self.source_columns))
        names = tuple(str(n) for n in self.feature_names) or tuple(f"x{i}" for i in range(d))
        if len(names) != d:
            raise InvalidDataError(
                f"'feature_names' has {len(names)} names but the data has {d} features."
            )
        object.__setattr__(self, "feature_names", names)
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        noisy = np.unique(np.asarray(self.noisy_indices, dtype=np.int64))
        if noisy.size and (noisy[0] < 0 or noisy[-1] >= self.n_train):
            raise InvalidDataError(
                f"'noisy_indices' must index the training split (0..{self.n_train - 1})."
            )
        object.__setattr__(self, "noisy_indices", _frozen(noisy))
        for attr in ("feature_mean", "feature_scale"):
            v = getattr(self, attr)
            if v is not None:
                object.__setattr__(self, attr, _frozen(np.asarray(v, dtype=np.float64)))

    # ------------------------------------------------------------------ properties
    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_valid(self) -> int:
        return int(self.x_valid.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def is_image(self) -> bool:
        """Whether the rows are images (``image_shape`` of 2 or 3 axes covering every
        feature), drawn as pictures rather than feature rows."""
        shape = self.image_shape
        return (shape is not None and int(np.prod(shape)) == self.n_features
                and len(shape) in (2, 3))

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int | None:
        """Number of classes (over all splits), or None for regression."""
        if self.task != "classification":
            return None
        if self.class_names is not None:
            return len(self.class_names)
        ys = np.concatenate([self.y_train, self.y_valid, self.y_test])
        return int(ys.max()) + 1

    @property
    def noise_mask(self) -> np.ndarray:
        """Boolean mask over the training split, True where a row was corrupted."""
        mask = np.zeros(self.n_train, dtype=bool)
        mask[self.noisy_indices] = True
        return mask

    def fingerprint(self) -> str:
        """Hash of the training split (the same as a valuator computes from ``x_train``,
        ``y_train``), so a saved result can be matched to the data it values."""
        return fingerprint_arrays(self.x_train, self.y_train)

    def describe(self) -> str:
        """A one-line summary: name, task, sizes, classes and noise."""
        classes = f", {self.n_classes} classes" if self.task == "classification" else ""
        noise = (
            f", {len(self.noisy_indices)} corrupted training rows"
            if len(self.noisy_indices)
            else ""
        )
        return (
            f"{self.name}: {self.task}, {self.n_features} features{classes}; "
            f"train {self.n_train} / valid {self.n_valid} / test {self.n_test}{noise}"
        )

    def __repr__(self) -> str:
        return f"Dataset({self.describe()})"

    def raw_features(self, x: np.ndarray) -> np.ndarray:
        """Undo standardization (if any) so values are in the data's original units."""
        if self.feature_mean is None or self.feature_scale is None:
            return np.asarray(x)
        return np.asarray(x) * self.feature_scale + self.feature_mean

    def label_name(self, code: int | float) -> str:
        """Human-readable name of a class code (or the number itself for regression)."""
        if self.class_names is not None and self.task == "classification":
            return self.class_names[int(code)]
        return f"{code:g}" if isinstance(code, float) else str(code)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        X: Any,
        y: Any,
        *,
        train_size: float | int | None = None,
        valid_size: float | int = 0.2,
        test_size: float | int = 0.2,
        random_state: int | None = 0,
        stratify: bool = True,
        standardize: bool = False,
        task: str | None = None,
        feature_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        name: str = "arrays",
        image_shape: tuple[int, ...] | None = None,
        ids: Any = None,
        missing: str = "error",
        categorical: Sequence[str] | str = "auto",
    ) -> Dataset:
        """Split arrays or a table into train/valid/test.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or pandas DataFrame
            Numbers, or a table with text columns and missing values: its columns are encoded
            by a ``ColumnTransformer`` fitted on the training rows only (numeric columns kept,
            missing values imputed with the training median if ``missing="impute"``; text and
            categorical columns one-hot encoded without their most frequent training level,
            unknown levels of other rows encoded as that level, missing ones imputed with it).
            The fitted transformer is kept as :attr:`preprocessor`; :meth:`transform` applies
            it to new rows.
        y : array-like of shape (n_samples,)
            Class labels (any hashable values; they are encoded as ``0..K-1`` and the originals
            kept in ``class_names``) or real-valued regression targets.
        train_size, valid_size, test_size : float or int
            Fractions of all rows (float in (0, 1)) or absolute counts (int). ``train_size=None``
            takes every row that is not valid or test; otherwise the remaining rows are dropped.
        random_state : int or None
            Seed of the shuffle.
        stratify : bool
            Keep class proportions in every split (classification only).
        standardize : bool
            Scale features to zero mean and unit variance using statistics of the training split
            only (the transformation is kept in ``feature_mean``/``feature_scale``).
        task : {"classification", "regression"} or None
            Inferred from ``y`` if None.
        ids : array-like or None
            The id of every row, unique (default: the DataFrame's index, else 0..n-1).
        missing : {"error", "impute"}
            Missing values in a table: an error naming the rows, or imputed (see ``X``).
        categorical : "auto" or list of column names
            Table columns to one-hot encode ("auto": every non-numeric column).
        """
        table = _as_table(X, feature_names)
        if missing not in ("error", "impute"):
            raise InvalidParameterError(
                f"The 'missing' parameter must be 'error' or 'impute'. Got {missing!r} instead."
            )
        if table is not None:
            n_rows = len(table)
            if n_rows == 0:
                raise InvalidDataError(
                    "'X' has no rows (a CSV with only its header line?); at least one sample "
                    "is required.")
            check_table_infinite(table, "X")
            row_ids = np.asarray(table.index) if ids is None else np.asarray(ids)
            Xa = None
        else:
            Xa = check_features(X, "X")
            n_rows = Xa.shape[0]
            row_ids = np.arange(n_rows, dtype=np.int64) if ids is None else np.asarray(ids)
        row_ids = check_ids(row_ids, n_rows, "ids")  # a DataFrame's index, or given
        ya = check_target(y, "y", n_samples=n_rows, x_name="X")
        task = task or infer_task(ya)
        if task not in ("classification", "regression"):
            raise InvalidParameterError(
                f"The 'task' parameter must be 'classification' or 'regression'. Got {task!r}."
            )
        if task == "classification":
            classes, codes = np.unique(ya, return_inverse=True)
            if len(classes) < 2:
                raise InvalidDataError(
                    f"'y' contains only one class ({classes.tolist()}); classification needs "
                    "at least two."
                )
            if class_names is None:
                class_names = [str(c) for c in classes]
            elif len(class_names) < len(classes):
                raise InvalidDataError(
                    f"'class_names' has {len(class_names)} names but 'y' has {len(classes)} "
                    "classes."
                )
            ya = codes.astype(np.int64)
        else:
            ya = ya.astype(np.float64)
            class_names = None
        idx = _split_indices(
            ya if (stratify and task == "classification") else None,
            n_rows,
            train_size,
            valid_size,
            test_size,
            random_state,
        )
        preprocessor = None
        source_columns: tuple[str, ...] = ()
        if table is not None:
            preprocessor, feature_names = _fit_table_encoder(
                table, idx[0], categorical=categorical, missing=missing, ids=row_ids)
            source_columns = tuple(str(c) for c in table.columns)
            parts = {s: (_encode(preprocessor, table.iloc[i]), ya[i])
                     for s, i in zip(_SPLITS, idx, strict=True)}
        else:
            parts = {s: (Xa[i], ya[i]) for s, i in zip(_SPLITS, idx, strict=True)}
        mean = scale = None
        if standardize:
            x = parts["train"][0]
            # Mean and std of each column divided by a power of two near its largest value:
            # exact for ordinary data (the same bits as x.mean(), x.std()), and no overflow
            # for columns of size 1e300, whose squares would be infinite.
            e = power_of_two_exponent(np.max(np.abs(x), axis=0)) if x.size else 0
            xs = np.ldexp(x, -e)
            mean = np.ldexp(xs.mean(axis=0), e)
            scale = np.ldexp(xs.std(axis=0), e)
            # A column constant up to rounding (std tiny relative to its magnitude) is left
            # unscaled; dividing by its rounding noise would blow it up to ~1e17.
            tiny = (scale == 0) | (scale <= 1e-12 * np.abs(mean))
            scale = np.where(tiny, 1.0, scale)
            parts = {s: ((x - mean) / scale, yy) for s, (x, yy) in parts.items()}
        return cls(
            x_train=parts["train"][0],
            y_train=parts["train"][1],
            x_valid=parts["valid"][0],
            y_valid=parts["valid"][1],
            x_test=parts["test"][0],
            y_test=parts["test"][1],
            task=task,
            feature_names=tuple(feature_names) if feature_names is not None else (),
            class_names=tuple(class_names) if class_names is not None else None,
            name=name,
            feature_mean=mean,
            feature_scale=scale,
            image_shape=image_shape,
            ids_train=row_ids[idx[0]],
            ids_valid=row_ids[idx[1]],
            ids_test=row_ids[idx[2]],
            preprocessor=preprocessor,
            source_columns=source_columns,
        )

    def transform(self, X: Any) -> np.ndarray:
        """New rows in this data set's feature space: encoded by :attr:`preprocessor` (fitted on
        the training rows) and standardized like ``x_train``."""
        table = _as_table(X, self.source_columns or None) if self.source_columns else None
        if self.source_columns:
            if self.preprocessor is None:
                raise InvalidParameterError(
                    "This data set has no fitted preprocessor (a Dataset loaded from disk keeps "
                    "the encoded features only); build it again from the table to transform "
                    "new rows."
                )
            missing_cols = [c for c in self.source_columns if c not in table.columns]
            if missing_cols:
                raise InvalidDataError(f"The new rows lack the columns {missing_cols}.")
            x = _encode(self.preprocessor, table[list(self.source_columns)])
        else:
            x = check_features(X, "X")
            if x.shape[1] != self.n_features:
                raise InvalidDataError(
                    f"The new rows have {x.shape[1]} features; this data set has "
                    f"{self.n_features}."
                )
        if self.feature_mean is not None and self.feature_scale is not None:
            x = (x - self.feature_mean) / self.feature_scale
        return x

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        target: str,
        *,
        id_column: str | None = None,
        categorical: Sequence[str] | str = "auto",
        missing: str = "error",
        **split_kwargs: Any,
    ) -> Dataset:
        """Load a CSV file with a header row.

        Parameters
        ----------
        path : path to the CSV file.
        target : name of the target column.
        id_column : name of a column of unique row ids (customer numbers, ...), or None.
            Every result keeps them; without one, a row's id is its line number in the file
            (the header is line 1, so the first data row is line 2).
        categorical : "auto" or list of column names
            Columns to one-hot encode (dropping the most frequent training level, so an
            intercept and the encoded columns are not collinear). "auto" takes every non-numeric
            column.
        missing : {"error", "impute"}
            "error" rejects missing feature values, naming the rows; "impute" fills numeric
            columns with the training median and categorical ones with the most frequent
            training level (statistics of the training rows only). A missing target is always
            an error.
        **split_kwargs : passed to :meth:`from_arrays`.
        """
        import pandas as pd

        if missing not in ("error", "impute"):
            raise InvalidParameterError(
                f"The 'missing' parameter must be 'error' or 'impute'. Got {missing!r} instead."
            )
        p = Path(path)
        if not p.is_file():
            raise InvalidParameterError(f"The CSV file {str(p)!r} given as 'path' does not exist.")
        frame = pd.read_csv(p)
        for col, what in ((target, "'target'"), (id_column, "'id_column'")):
            if col is not None and col not in frame.columns:
                raise InvalidParameterError(
                    f"The {what} column {col!r} is not in {p.name}; its columns are "
                    f"{', '.join(map(str, frame.columns))}."
                )
        if id_column == target:
            raise InvalidParameterError("The id column cannot be the target column.")
        if id_column is not None:
            ids = frame[id_column]
            if ids.isna().any() or not ids.is_unique:
                dup = ids[ids.duplicated()].head(3).tolist()
                raise InvalidDataError(
                    f"The id column {id_column!r} of {p.name} must hold a unique value on every "
                    f"row (missing or repeated: {dup})."
                )
            ids = ids.to_numpy()
            frame = frame.drop(columns=[id_column])
        else:
            ids = np.arange(2, len(frame) + 2, dtype=np.int64)  # line numbers in the file
        if frame[target].isna().any():
            rows = ids[np.flatnonzero(frame[target].isna().to_numpy())]
            raise InvalidDataError(
                f"{p.name} has missing values in the target column {target!r}, in row(s) "
                f"{', '.join(map(str, rows[:10]))}{' ...' if len(rows) > 10 else ''} (ids"
                f"{' = line numbers' if id_column is None else ''}); drop those rows."
            )
        y = frame[target].to_numpy()
        feats = frame.drop(columns=[target])
        if feats.shape[1] == 0:
            raise InvalidDataError(f"{p.name} has no feature columns besides {target!r}.")
        split_kwargs.setdefault("name", p.name)
        try:
            return cls.from_arrays(feats, y, ids=ids, missing=missing, categorical=categorical,
                                   **split_kwargs)
        except InvalidDataError as exc:
            if "missing values" in str(exc):
                raise InvalidDataError(f"{p.name}: {exc}"
                                       + (" (ids are line numbers)" if id_column is None else "")
                                       ) from exc
            raise

    @classmethod
    def from_npz(cls, path: str | os.PathLike, **split_kwargs: Any) -> Dataset:
        """Load an ``.npz`` with arrays ``X`` and ``y`` (and optionally ``feature_names``), plus
        an optional JSON sidecar of the same name (``classes``, ``task``), the format of the
        shared data sets."""
        p = Path(path)
        X, y, names = _read_npz(p)
        meta: dict[str, Any] = {}
        sidecar = p.with_suffix(".json")
        if sidecar.is_file():
            meta = json.loads(sidecar.read_text())
        task = meta.get("task")
        if task is not None:
            task = "regression" if "regress" in str(task) else "classification"
        split_kwargs.setdefault("task", task)
        if split_kwargs["task"] == "classification" and "classes" in meta:
            split_kwargs.setdefault("class_names", [str(c) for c in meta["classes"]])
        split_kwargs.setdefault("name", p.stem)
        if p.stem == "digits" and X.shape[1] == 64:
            split_kwargs.setdefault("image_shape", (8, 8))
        return cls.from_arrays(X, y, feature_names=names, **split_kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the data set to one ``.npz`` (arrays + JSON metadata), atomically (inside a
        datavalue run folder, as a file of the run; see :mod:`datavalue._core.folder`)."""
        import io

        from datavalue._core.folder import RunWriter, is_run_folder
        from datavalue._core.io import atomic_write_bytes

        meta = {
            "task": self.task,
            "feature_names": list(self.feature_names),
            "class_names": None if self.class_names is None else list(self.class_names),
            "name": self.name,
            "image_shape": None if self.image_shape is None else list(self.image_shape),
            "source_columns": list(self.source_columns),
        }
        arrays = {f"{k}_{s}": getattr(self, f"{k}_{s}") for s in _SPLITS for k in ("x", "y")}
        arrays["noisy_indices"] = self.noisy_indices
        for split in _SPLITS:
            arrays[f"ids_{split}"] = getattr(self, f"ids_{split}")
        if self.feature_mean is not None:
            arrays["feature_mean"] = self.feature_mean
            arrays["feature_scale"] = self.feature_scale
        arrays["meta"] = np.array(json.dumps(meta))
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        p = Path(path)
        if is_run_folder(p.parent):
            # Inside a run folder the file is added through its manifest, so the run stays
            # readable (see datavalue._core.folder).
            with RunWriter(p.parent, kind="dataset") as w:
                w.write_bytes(p.name, buf.getvalue())
            return p
        return atomic_write_bytes(p, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike | io.BytesIO) -> Dataset:
        """Read a data set written by :meth:`save` (a path or the file's bytes in a BytesIO)."""
        import zipfile

        where = "the data set" if isinstance(path, io.BytesIO) else repr(str(path))
        try:
            with np.load(path if isinstance(path, io.BytesIO) else Path(path),
                         allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                kw = {k: f[k] for k in f.files if k != "meta"}
            return cls(
                **kw,
                task=meta["task"],
                feature_names=tuple(meta["feature_names"]),
                class_names=None if meta["class_names"] is None else tuple(meta["class_names"]),
                name=meta["name"],
                image_shape=None if meta["image_shape"] is None else tuple(meta["image_shape"]),
                source_columns=tuple(meta.get("source_columns", ())),
            )
        except FileNotFoundError:
            raise
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile,
                json.JSONDecodeError) as exc:
            if isinstance(exc, DatavalueError):
                raise
            raise InvalidDataError(
                f"{where} is not a data set written by datavalue (Dataset.save): "
                f"{type(exc).__name__}: {exc}"
            ) from exc



# ---------------------------------------------------------------------- splitting
def _resolve_count(size: float | int | None, n: int, name: str) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int | float | np.integer | np.floating):
        raise InvalidParameterError(f"The '{name}' parameter must be a float or int. Got {size!r}.")
    if isinstance(size, float | np.floating):
        if not 0.0 <= size < 1.0:
            raise InvalidParameterError(
                f"The '{name}' parameter must be a fraction in [0, 1) or a count. Got {size!r}."
            )
        return int(round(size * n))
    if size < 0 or size > n:
        raise InvalidParameterError(
            f"The '{name}' parameter must be a count in [0, {n}]. Got {size!r}."
        )
    return int(size)


def _split_indices(
    y_strat: np.ndarray | None,
    n: int,
    train_size: float | int | None,
    valid_size: float | int,
    test_size: float | int,
    random_state: int | None,
) -> list[np.ndarray]:
    """Indices of train, valid and test; stratified by ``y_strat`` if given."""
    n_valid = _resolve_count(valid_size, n, "valid_size")
    n_test = _resolve_count(test_size, n, "test_size")
    n_train = _resolve_count(train_size, n, "train_size")
    if n_train is None:
        n_train = n - n_valid - n_test
    if n_train < 1 or n_train + n_valid + n_test > n:
        raise InvalidParameterError(
            f"Split sizes train={n_train}, valid={n_valid}, test={n_test} do not fit in "
            f"{n} rows; lower 'valid_size'/'test_size'/'train_size'."
        )
    rng = np.random.default_rng(check_seed(random_state))
    sizes = np.array([n_train, n_valid, n_test])
    if y_strat is None:
        perm = rng.permutation(n)
        bounds = np.cumsum(sizes)
        return [np.sort(perm[a:b]) for a, b in zip(np.r_[0, bounds[:-1]], bounds, strict=True)]
    # Stratified: deal each class's shuffled rows into the three splits in proportion, with
    # largest-remainder rounding so the split sizes are exactly the requested counts.
    classes, counts = np.unique(y_strat, return_counts=True)
    share = counts[:, None] * sizes[None, :] / n  # expected rows of each class in each split
    alloc = np.floor(share).astype(int)
    alloc = np.minimum(alloc, counts[:, None])
    for j in range(3):
        deficit = sizes[j] - alloc[:, j].sum()
        order = np.argsort(-(share[:, j] - alloc[:, j]), kind="stable")
        for c in order:
            if deficit <= 0:
                break
            if alloc[c].sum() < counts[c]:
                alloc[c, j] += 1
                deficit -= 1
    out: list[list[np.ndarray]] = [[], [], []]
    for ci, c in enumerate(classes):
        rows = rng.permutation(np.flatnonzero(y_strat == c))
        start = 0
        for j in range(3):
            out[j].append(rows[start : start + alloc[ci, j]])
            start += alloc[ci, j]
    return [np.sort(np.concatenate(parts)) for parts in out]


def _read_npz(p: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Arrays X, y and feature names of an NPZ file, with clear errors for bad files."""
    import zipfile

    if not p.is_file():
        raise InvalidParameterError(f"The NPZ file {str(p)!r} does not exist.")
    if not zipfile.is_zipfile(p):
        raise InvalidDataError(f"{str(p)!r} is not an NPZ archive (numpy.savez format).")
    try:
        with np.load(p, allow_pickle=False) as f:
            if "X" not in f or "y" not in f:
                raise InvalidDataError(
                    f"{p.name} must contain arrays 'X' and 'y'; it has {sorted(f.files)}."
                )
            X, y = f["X"], f["y"]
            names = [str(n) for n in f["feature_names"]] if "feature_names" in f else None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InvalidDataError(
                f"{str(p)!r} holds an object array (a pickled Python object, e.g. a sparse "
                "matrix); datavalue reads only numeric arrays from NPZ files: save X as a dense "
                "2-D array (X.toarray()) and y as a 1-D array."
            ) from exc
        raise InvalidDataError(f"{str(p)!r} could not be read as an NPZ archive: {exc}") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidDataError(f"{str(p)!r} could not be read as an NPZ archive: {exc}") from exc
    if X.ndim != 2 or not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        raise InvalidDataError(
            f"In {str(p)!r}, 'X' must be a 2-D array (rows x features) and 'y' a 1-D array "
            f"(one target per row); got shapes {X.shape} and {y.shape}."
        )
    return X, y, names
