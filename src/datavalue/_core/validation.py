"""Input checks, run once at the public boundary (``fit``, loaders, the CLI).

A small version of scikit-learn's declarative parameter validation: each estimator lists its
parameters' constraints in ``_parameter_constraints`` and :func:`validate_params` checks them,
with one message shape for every failure.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidModelError, InvalidParameterError

__all__ = [
    "Interval",
    "Options",
    "validate_params",
    "check_features",
    "check_target",
    "check_xy",
    "check_estimator_like",
    "infer_task",
    "N_JOBS",
    "PREPROCESSOR",
    "check_ids",
    "check_seed",
    "check_magnitude",
    "check_table_infinite",
    "available_memory",
]

#: The constraint of every ``n_jobs`` parameter: joblib's convention (None, -1 = all cores,
#: positive counts; 0 is meaningless).
N_JOBS: list = []


@dataclass(frozen=True)
class Interval:
    """A numeric interval constraint, e.g. ``Interval(int, 1, None)`` for positive integers."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if self.kind is float and not isinstance(value, numbers.Real):
            return False
        if isinstance(value, numbers.Real) and not np.isfinite(value):
            return False
        lo_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        hi_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        return bool(lo_ok and hi_ok)

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        lo = "-inf" if self.low is None else self.low
        hi = "inf" if self.high is None else self.high
        return f"{'an int' if self.kind is int else 'a float'} in {left}{lo}, {hi}{right}"


@dataclass(frozen=True)
class Options:
    """A constraint to one of a fixed set of values (usually strings)."""

    values: frozenset

    def __init__(self, values: Iterable[Any]):
        object.__setattr__(self, "values", frozenset(values))

    def accepts(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:
            return False

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in sorted(self.values, key=str))


N_JOBS.extend([None, Interval(int, 1, None), Interval(int, None, -1)])

#: The constraint of every ``preprocessor`` parameter (see :meth:`datavalue.data.fitdata.FitData.numeric`).
PREPROCESSOR: list = [Options({"auto"}), None, "transformer"]


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a torch module, without importing torch when it is not loaded."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _accepts(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, Interval | Options) or hasattr(constraint, "accepts"):
        return constraint.accepts(value)
    if constraint == "callable":
        return callable(value)
    if constraint == "estimator":
        return hasattr(value, "fit")
    if constraint == "transformer":
        return hasattr(value, "fit") and hasattr(value, "transform")
    if constraint == "boolean":
        return isinstance(value, bool | np.bool_)
    if constraint == "random_state":
        return value is None or (
            isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
        )
    if constraint == "any":
        return True
    if constraint == "torch-module":
        return is_torch_module(value)
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    raise TypeError(f"unknown constraint {constraint!r}")


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__}"
    return {
        "callable": "a callable",
        "estimator": "an estimator with a fit method",
        "transformer": "a scikit-learn transformer (fit and transform)",
        "boolean": "a bool",
        "random_state": "a non-negative int seed or None",
        "any": "anything",
        "torch-module": "a torch.nn.Module",
    }.get(constraint, str(constraint)) if isinstance(constraint, str) else str(constraint)


def validate_params(owner: str, params: dict[str, Any], constraints: dict[str, list]) -> None:
    """Check ``params`` against ``constraints``; raise :class:`InvalidParameterError` on the first
    violation, naming the parameter, what it must be, and what was received."""
    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if not any(_accepts(c, value) for c in allowed):
            must = " or ".join(_describe(c) for c in allowed)
            hints = [c.hint(value) for c in allowed if hasattr(c, "hint")]
            must += "".join(f" {h}" for h in hints if h)
            # A wrong model is a model error (TypeError), whatever else the parameter allows.
            error = InvalidModelError if "estimator" in allowed else InvalidParameterError
            raise error(
                f"The '{name}' parameter of {owner} must be {must}. Got {value!r} instead."
            )


def check_features(x: Any, name: str = "x_train", *, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a 2-D float64 array, rejecting 1-D input, object data, complex numbers,
    NaN and inf."""
    if hasattr(x, "tocsr") and hasattr(x, "nnz"):  # scipy.sparse, without importing scipy
        raise InvalidDataError(
            f"'{name}' is a scipy sparse matrix ({x.shape[0]} x {x.shape[1]}); this method "
            f"needs a dense array: pass {name}.toarray()."
        )
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InvalidDataError(f"'{name}' could not be converted to an array: {exc}") from exc
    if arr.ndim != 2:
        hint = (
            f" Reshape it with {name}.reshape(-1, 1) if it is one feature, or "
            f"{name}.reshape(1, -1) if it is one sample."
            if arr.ndim == 1
            else ""
        )
        raise InvalidDataError(
            f"'{name}' must be a 2-D array of shape (n_samples, n_features); got an array with "
            f"shape {arr.shape}.{hint}"
        )
    if arr.shape[0] == 0 and not allow_empty:
        raise InvalidDataError(f"'{name}' has no rows; at least one sample is required.")
    if arr.shape[1] == 0:
        raise InvalidDataError(f"'{name}' has no columns; at least one feature is required.")
    if arr.dtype.kind == "c" or (arr.dtype.kind == "O" and any(
            isinstance(v, complex | np.complexfloating) for v in arr.ravel()[:1000])):
        raise InvalidDataError(
            f"'{name}' holds complex numbers; data values need real features (split real and "
            "imaginary parts into two columns if both matter)."
        )
    try:
        arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(
            f"'{name}' must be numeric; got dtype {arr.dtype}. Encode categorical columns "
            "first (Dataset.from_csv does this)."
        ) from exc
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))
        rows = sorted({int(r) for r in bad[:, 0]})
        shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
        raise InvalidDataError(
            f"'{name}' contains {len(bad)} NaN or infinite value(s), in row(s) {shown}. "
            "Remove or impute them first."
        )
    return arr


def check_target(
    y: Any, name: str = "y_train", *, n_samples: int | None = None, x_name: str = "x_train"
) -> np.ndarray:
    """Return ``y`` as a 1-D array of finite labels/targets, of length ``n_samples`` if given."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise InvalidDataError(
            f"'{name}' must be a 1-D array of shape (n_samples,); got shape {arr.shape}."
        )
    if n_samples is not None and arr.shape[0] != n_samples:
        raise InvalidDataError(
            f"'{name}' has {arr.shape[0]} entries but '{x_name}' has {n_samples} rows; "
            "they must have the same length."
        )
    if arr.dtype.kind == "c":
        raise InvalidDataError(f"'{name}' holds complex numbers; targets must be real labels "
                               "or values.")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        rows = np.flatnonzero(~np.isfinite(arr))
        shown = ", ".join(map(str, rows[:10])) + (" ..." if len(rows) > 10 else "")
        raise InvalidDataError(
            f"'{name}' contains {len(rows)} NaN or infinite value(s), at index {shown}."
        )
    if arr.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in arr):
            raise InvalidDataError(f"'{name}' contains missing values (None/NaN).")
    return arr


def infer_task(y: np.ndarray) -> str:
    """'classification' for integer, bool or string labels; 'regression' for non-integral floats."""
    if y.dtype.kind in "biuUSO":
        return "classification"
    # Integral floats with few distinct values are labels that went through a float column.
    if y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0) and len(np.unique(y)) <= 20:
        return "classification"
    return "regression"


def check_xy(
    x: Any,
    y: Any,
    *,
    x_name: str = "x_train",
    y_name: str = "y_train",
    task: str | None = None,
    min_classes: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a feature matrix and its targets together.

    For classification, at least ``min_classes`` distinct labels must be present.
    """
    xa = check_features(x, x_name)
    ya = check_target(y, y_name, n_samples=xa.shape[0], x_name=x_name)
    if task == "classification" and min_classes > 1:
        n_classes = len(np.unique(ya))
        if n_classes < min_classes:
            raise InvalidDataError(
                f"'{y_name}' contains only {n_classes} class(es) ({np.unique(ya)[:5].tolist()}); "
                f"classification needs at least {min_classes}."
            )
    return xa, ya


def check_estimator_like(
    model: Any, name: str = "model", *, methods: Sequence[str] = ("fit", "predict")
) -> None:
    """Raise :class:`InvalidModelError` unless ``model`` has every method in ``methods``."""
    if isinstance(model, type):
        raise InvalidModelError(
            f"'{name}' must be an estimator instance, got the class {model.__name__}; "
            f"write {model.__name__}() instead."
        )
    missing = [m for m in methods if not callable(getattr(model, m, None))]
    if missing:
        raise InvalidModelError(
            f"'{name}' must be a scikit-learn compatible estimator with "
            f"{', '.join(m + '()' for m in methods)}; {type(model).__name__} has no "
            f"{', '.join(m + '()' for m in missing)}."
        )


def check_callable(value: Any, name: str) -> Callable:
    if not callable(value):
        raise InvalidParameterError(f"'{name}' must be callable; got {type(value).__name__}.")
    return value


def power_of_two_exponent(max_abs: np.ndarray | float) -> np.ndarray:
    """The exponent ``e`` with ``max_abs * 2**-e`` in [0.5, 1) (0 where ``max_abs`` is 0).

    Multiplying by a power of two is exact in floating point (barring overflow/underflow), so
    data rescaled by ``np.ldexp(x, -e)`` gives bit-for-bit the results of the unscaled data
    wherever those did not overflow or underflow — and correct results where they did
    (features of size 1e200, whose squares overflow, or 1e-200, whose squares vanish).
    """
    m = np.asarray(max_abs, dtype=np.float64)
    _, e = np.frexp(np.where(np.isfinite(m) & (m > 0), m, 1.0))
    return np.where(m > 0, e, 0).astype(np.int64)


def rescale_if_extreme(*arrays: np.ndarray, axis: int | None = None,
                       limit: int = 64) -> tuple[np.ndarray, ...]:
    """Rescale ``arrays`` by a common power of two (per column with ``axis=0``) when their
    largest magnitude is outside [2**-limit, 2**limit]; return them unchanged otherwise."""
    m = np.max([np.max(np.abs(a), axis=axis) for a in arrays], axis=0)
    e = power_of_two_exponent(m)
    if np.all(np.abs(e) <= limit):
        return arrays
    return tuple(np.ldexp(a, -e) for a in arrays)


def check_ids(ids: Any, n: int, name: str = "ids", *, unique: bool = True) -> np.ndarray:
    """Row ids as an int64 array (integers, integral floats, bools) or a unicode array
    (anything else, as text), of shape ``(n,)`` and, if ``unique``, without repeats."""
    a = np.asarray(ids)
    if a.shape != (n,):
        raise InvalidDataError(f"'{name}' must have one id per row ({n}); got shape {a.shape}.")
    if a.dtype.kind in "iub":
        a = a.astype(np.int64)
    elif a.dtype.kind == "f":
        if not np.all(np.mod(a, 1) == 0):
            raise InvalidDataError(f"'{name}' must be integers or strings.")
        a = a.astype(np.int64)
    else:
        a = np.asarray([str(v) for v in a.tolist()], dtype=str)
    if unique and len(np.unique(a)) != n:
        raise InvalidDataError(f"'{name}' must be unique: each identifies one row.")
    return a


def check_seed(value: Any, name: str = "random_state") -> int | None:
    """A seed as given: None or a non-negative int (numpy's ``SeedSequence`` refuses anything
    else with a message that does not name the argument)."""
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                         and value >= 0):
        return None if value is None else int(value)
    raise InvalidParameterError(
        f"The '{name}' parameter must be a non-negative int seed or None. Got {value!r} instead.")


#: Largest feature magnitude a method that multiplies features together accepts: beyond it
#: squares (Hessians, variances, kernels) overflow float64 (whose largest square root is
#: about 1.3e154), and a model silently learns nothing or returns NaN.
MAX_MAGNITUDE = 1e150


def check_magnitude(x: np.ndarray, name: str, owner: str) -> None:
    """Refuse finite features so large that products of them overflow, naming the argument,
    the size found and the fix."""
    if x.dtype.kind != "f" or x.size == 0:
        return
    largest = float(np.max(np.abs(x)))
    if largest > MAX_MAGNITUDE:
        raise InvalidDataError(
            f"'{name}' holds values up to {largest:.3g}: {owner} multiplies features together "
            f"and products of values beyond {MAX_MAGNITUDE:.0e} overflow float64, so the model "
            "would learn nothing (LogisticRegression stops at its first iteration) and the "
            "values would all be equal. Rescale the features first (e.g. divide each column by "
            "its largest absolute value).")


def check_table_infinite(table: Any, name: str) -> None:
    """Refuse infinite cells of a DataFrame's numeric columns, naming the column and the rows
    by the table's index (missing values are a separate matter, imputed or refused by the
    caller; an infinite value is never a missing one, and once standardized it turns its whole
    column into NaN)."""
    for col in table.columns:
        values = table[col]
        if values.dtype.kind != "f":
            continue
        bad = np.isinf(values.to_numpy())
        if bad.any():
            rows = [str(r) for r in table.index[bad][:10]]
            raise InvalidDataError(
                f"Column {col!r} of '{name}' holds {int(bad.sum())} infinite value(s), in "
                f"row(s) {', '.join(rows)}{' ...' if bad.sum() > 10 else ''}. Replace them "
                "(with NaN to impute, or a finite number) first.")


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate without swapping (Linux's
    ``MemAvailable``, capped by a cgroup limit), or None where that cannot be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit() and int(text) < 1 << 60:
                with open(path.replace("max", "current").replace("limit_in_bytes",
                                                                 "usage_in_bytes")) as f:
                    found.append(int(text) - int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return min(found) if found else None
