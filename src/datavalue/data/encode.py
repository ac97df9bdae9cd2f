"""Tables to numbers: the table encoder of :class:`~datavalue.data.Dataset` (one-hot levels,
imputation, fitted on the training rows only) and its small helpers."""

from __future__ import annotations

from typing import Any

import numpy as np

from datavalue._core.exceptions import (
    InvalidDataError,
    InvalidParameterError,
)

_SPLITS = ("train", "valid", "test")


def _check_codes(y: np.ndarray, name: str, task: str, class_names: Any) -> np.ndarray:
    """Targets of a Dataset: class codes 0..K-1 (int64) or floats. Never truncated."""
    if task == "regression":
        try:
            return np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidDataError(f"'{name}' must hold numbers for regression.") from exc
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        shown = y[:3].tolist()
        raise InvalidDataError(
            f"'{name}' of a classification Dataset must hold class codes 0..K-1; got {shown}... "
            "Labels are never truncated or guessed: build the Dataset with "
            "Dataset.from_arrays(X, y), which encodes any labels (strings, ints, bools)."
        )
    codes = y.astype(np.int64)
    if codes.size and codes.min() < 0:
        raise InvalidDataError(f"'{name}' holds negative class codes ({codes.min()}).")
    if class_names is not None and codes.size and codes.max() >= len(class_names):
        raise InvalidDataError(
            f"'{name}' holds class code {codes.max()}, but 'class_names' names "
            f"{len(class_names)} classes (codes 0..{len(class_names) - 1}). Encode the labels as "
            "codes 0..K-1, or use Dataset.from_arrays(X, y)."
        )
    return codes


def _is_frame(x: Any) -> bool:
    return type(x).__module__.startswith("pandas") and hasattr(x, "columns")


def _as_table(X: Any, feature_names: Any) -> Any:
    """``X`` as a DataFrame if it is a table (a DataFrame, or an array holding text), else
    None (numbers go the array way)."""
    import pandas as pd

    if _is_frame(X):
        return X
    if hasattr(X, "tocsr"):
        return None
    arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if arr.ndim == 2 and arr.dtype.kind in "OUS":
        try:
            arr.astype(np.float64)
        except (TypeError, ValueError):
            cols = list(feature_names) if feature_names is not None else [
                f"x{i}" for i in range(arr.shape[1])]
            return pd.DataFrame(arr, columns=cols)
    return None


def _encode(preprocessor: Any, frame: Any) -> np.ndarray:
    import warnings

    if len(frame) == 0:  # an empty split (valid_size=0): scikit-learn refuses zero rows
        return np.zeros((0, len(preprocessor.get_feature_names_out())))

    with warnings.catch_warnings():
        # Unknown levels of validation/test rows are encoded as the dropped (most frequent)
        # level, on purpose; scikit-learn warns about each.
        warnings.filterwarnings("ignore", message=".*unknown categor.*")
        return np.asarray(preprocessor.transform(frame), dtype=np.float64)


def _fit_table_encoder(frame: Any, train_rows: np.ndarray, *, categorical: Any, missing: str,
                       ids: np.ndarray) -> tuple[Any, list[str]]:
    """A ColumnTransformer for the table's columns, in their order, fitted on the training rows
    only (the medians, most frequent levels and categories of validation and test rows never
    leak into the training features)."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    if frame.shape[1] == 0:
        raise InvalidDataError("The table has no feature columns.")
    if categorical == "auto":
        cat_cols = [c for c in frame.columns if not (
            pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    else:
        cat_cols = list(categorical)
        unknown = [c for c in cat_cols if c not in frame.columns]
        if unknown:
            raise InvalidParameterError(f"The 'categorical' columns {unknown} are not in the "
                                        "table.")
    na = frame.isna().to_numpy().any(axis=1)
    if na.any() and missing == "error":
        rows = ids[np.flatnonzero(na)]
        shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
        cols = [str(c) for c in frame.columns if frame[c].isna().any()]
        raise InvalidDataError(
            f"The table has missing values in {int(na.sum())} row(s) (ids {shown}; columns "
            f"{', '.join(cols[:5])}). Pass missing='impute' (--impute on the command line) to "
            "fill them with statistics of the training rows."
        )
    train = frame.iloc[train_rows]
    parts = []
    for c in frame.columns:
        if c in cat_cols:
            text = train[c].dropna().astype(str)
            if text.empty:
                raise InvalidDataError(f"The column {c!r} has no value in the training rows.")
            top = text.value_counts().index[0]  # most frequent training level: dropped
            enc = OneHotEncoder(drop=[top], handle_unknown="ignore", sparse_output=False,
                                feature_name_combiner=_level_name)
            steps = [SimpleImputer(strategy="constant", fill_value=top, missing_values=np.nan)
                     if frame[c].isna().any() else None,
                     FunctionTransformer(_as_text, feature_names_out="one-to-one"), enc]
            parts.append((str(c), make_pipeline(*[t for t in steps if t is not None]), [c]))
        else:
            steps = [SimpleImputer(strategy="median")] if frame[c].isna().any() else []
            parts.append((str(c), make_pipeline(*steps, FunctionTransformer(
                feature_names_out="one-to-one")), [c]))
    ct = ColumnTransformer(parts, verbose_feature_names_out=False, sparse_threshold=0.0)
    ct.fit(train)
    names = [str(n) for n in ct.get_feature_names_out()]
    if not names:
        raise InvalidDataError("The table has no feature left after encoding.")
    return ct, names


def _level_name(feature: str, level: Any) -> str:
    return f"{feature}={level}"


def _as_text(x: Any) -> Any:
    """Categories compared as text (a column mixing 1 and "1" has one level "1")."""
    return np.asarray(x).astype(str)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a
