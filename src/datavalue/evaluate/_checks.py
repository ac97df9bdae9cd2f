"""Checks shared by the evaluation functions (values, corrupted rows, fractions, orders)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError, UnknownNameError
from datavalue._core.result import ValuationResult

#: Orders accepted by :func:`point_removal` and :func:`point_addition`.
ORDERS: tuple[str, ...] = ("most_valuable_first", "least_valuable_first", "random")

_ORDER_LABELS = {
    "most_valuable_first": "most valuable first",
    "least_valuable_first": "least valuable first",
    "random": "in random order",
}
_ORDER_STYLES = {
    "most_valuable_first": dict(color="tab:red", marker="o"),
    "least_valuable_first": dict(color="tab:blue", marker="s"),
    "random": dict(color="0.45", marker="", linestyle="--"),
}
_METHOD_LINESTYLES = {"most_valuable_first": "-", "least_valuable_first": "--", "random": ":"}


# ---------------------------------------------------------------------------- validation
def _check_values(values: Any, name: str = "values", *, n: int | None = None,
                  n_name: str = "") -> np.ndarray:
    """``values`` as a 1-D finite float64 array (of length ``n`` if given)."""
    if isinstance(values, ValuationResult):
        values = values.values
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"'{name}' must be an array of numbers: {exc}") from exc
    if arr.ndim != 1:
        raise InvalidDataError(
            f"'{name}' must be a 1-D array with one value per training point; got shape "
            f"{arr.shape}."
        )
    if arr.size == 0:
        raise InvalidDataError(f"'{name}' is empty.")
    if n is not None and arr.size != n:
        raise InvalidDataError(
            f"'{name}' has {arr.size} entries but {n_name} is {n}; pass one value per "
            "training point, in the order of the training split."
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if bad.size > 10 else "")
        raise InvalidDataError(
            f"'{name}' contains {bad.size} NaN or infinite value(s), at index {shown}."
        )
    return arr


def _check_noisy(noisy_indices: Any, n: int, name: str = "noisy_indices", *,
                 need_both: bool = True) -> np.ndarray:
    """Boolean mask over ``n`` points from indices (or from a boolean mask of length ``n``).

    With ``need_both``, at least one point must be noisy and at least one clean.
    """
    arr = np.asarray(noisy_indices)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise InvalidDataError(
                f"'{name}' is a boolean mask of shape {arr.shape}; it must have one entry per "
                f"training point, shape ({n},)."
            )
        mask = arr.copy()
    else:
        if arr.ndim != 1:
            raise InvalidDataError(
                f"'{name}' must be a 1-D array of indices; got shape {arr.shape}."
            )
        if arr.size and arr.dtype.kind not in "iu":
            raise InvalidDataError(
                f"'{name}' must hold integer indices into the training split; got dtype "
                f"{arr.dtype}."
            )
        idx = arr.astype(np.int64)
        out = idx[(idx < 0) | (idx >= n)]
        if out.size:
            raise InvalidDataError(
                f"'{name}' must index the training split (0..{n - 1}); got {out[:5].tolist()}."
            )
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise InvalidDataError(
                f"'{name}' contains duplicate indices: {uniq[counts > 1][:5].tolist()}."
            )
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
    if need_both and not mask.any():
        raise InvalidDataError(
            f"'{name}' is empty: detection metrics (AUC, F1) are undefined without corrupted "
            "points. Corrupt some first, e.g. dv.load_dataset(..., noise_rate=0.1)."
        )
    if need_both and mask.all():
        raise InvalidDataError(
            f"'{name}' marks all {n} points as corrupted: detection metrics are undefined "
            "without clean points."
        )
    return mask


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
        high is not None and value > high
    ):
        rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidParameterError(f"The '{name}' parameter must be an int {rng}. Got {value!r}.")
    return int(value)


def _check_fractions(fractions: Any, *, addition: bool) -> np.ndarray:
    try:
        f = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"'fractions' must be a list of numbers: {exc}") from exc
    if f.ndim == 0:
        f = f.reshape(1)
    # Adding 0 points (the constant prediction) and all of them are both defined; removing all
    # of them is not a removal curve.
    where = "[0, 1]" if addition else "[0, 1)"
    ok = (f >= 0) & (f <= 1) if addition else (f >= 0) & (f < 1)
    if f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)) or not ok.all():
        raise InvalidParameterError(
            f"The 'fractions' parameter must be a non-empty list of fractions in {where} of the "
            f"training set to {'add' if addition else 'remove'}. Got {fractions!r}."
        )
    if np.unique(f).size != f.size:
        raise InvalidParameterError(f"The 'fractions' parameter has duplicates: {f.tolist()}.")
    return np.sort(f)


def _check_orders(orders: Any, include_random: Any) -> list[str]:
    if not isinstance(include_random, bool | np.bool_):
        raise InvalidParameterError(
            f"The 'include_random' parameter must be a bool. Got {include_random!r}."
        )
    names = [orders] if isinstance(orders, str) else list(orders)
    for o in names:
        if o not in ORDERS:
            raise UnknownNameError(
                f"Unknown order {o!r} in 'orders': use {', '.join(map(repr, ORDERS))}."
            )
    if not names:
        raise InvalidParameterError("The 'orders' parameter must name at least one order.")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"The 'orders' parameter has duplicates: {names}.")
    if include_random and "random" not in names:
        names.append("random")
    return names
