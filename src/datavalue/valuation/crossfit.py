"""Cross-fitting: value every row with a method that needs validation data.

Methods such as LOO, the Shapley family, KNN-Shapley and DVRL score models on held-out rows,
which then get no value themselves. Cross-fitting splits the rows into ``K`` folds and values
each fold against the others (fold ``k`` is the training set, the other ``K - 1`` folds are
the validation set), so every row is valued exactly once, always against data it was not part
of. A row's value then reflects a training set of about ``n / K`` rows: values of different
folds are on the same scale (equal-sized folds, the same method), but they are not the values
of one training set of ``n`` rows.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import clone

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.result import ValuationResult, jsonable
from datavalue.data.fitdata import check_fit_data, take_rows

__all__ = ["cross_fit"]

#: How a combined run ended: the least finished fold decides.
_STATUS_ORDER = ("failed", "interrupted", "max_time", "max_iterations", "converged", "completed")


def cross_fit(valuator: Any, x: Any, y: Any, *, n_folds: int = 5,
              random_state: int | None = 0) -> ValuationResult:
    """Value every row of ``(x, y)`` by valuing each of ``n_folds`` folds against the others.

    Parameters
    ----------
    valuator : an unfitted valuator whose ``fit`` takes validation data (LOO, TMCShapley,
        KNNShapley, DVRL, ...); it is cloned for every fold.
    x, y : the rows to value (any input a valuator accepts: arrays, DataFrames, ...).
    n_folds : int >= 2
    random_state : seed of the (stratified, for classification) fold assignment.

    Returns
    -------
    ValuationResult
        One value per row of ``x`` in its order, with the rows' ids; ``extra["fold_status"]``
        says how each fold's run ended, ``status`` is the least finished of them.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    start = time.perf_counter()
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise InvalidParameterError(f"'n_folds' must be an int >= 2. Got {n_folds!r}.")
    if getattr(valuator, "checkpoint", None) is not None:
        raise InvalidParameterError(
            "Cross-fitting runs the method once per fold; a 'checkpoint' would be shared by the "
            "folds. Run without one (or value the folds yourself, one checkpoint each)."
        )
    data = check_fit_data(x, y, need_valid=False, owner="cross_fit", allow_missing=True)
    n = data.n_train
    if n < 2 * n_folds:
        raise InvalidParameterError(f"{n} rows are too few for {n_folds} folds.")
    splitter = (StratifiedKFold if data.task == "classification" else KFold)(
        n_splits=int(n_folds), shuffle=True, random_state=random_state)
    values = np.empty(n)
    stderr = np.empty(n)
    counts = np.empty(n, dtype=np.int64)
    statuses: list[str] = []
    y_arr = np.asarray(y) if not hasattr(y, "iloc") else y.to_numpy()
    for rest, fold in (splitter.split(np.zeros(n), data.y_train
                                                    if data.task == "classification" else None)):
        est = clone(valuator)
        est.fit(take_rows(x if not isinstance(x, list) else np.asarray(x), fold), y_arr[fold],
                take_rows(x if not isinstance(x, list) else np.asarray(x), rest), y_arr[rest])
        r = est.result_
        values[fold], stderr[fold], counts[fold] = r.values, r.stderr, r.counts
        statuses.append(r.status)
        method, params, seed = r.method, r.params, r.seed
    status = min(statuses, key=_STATUS_ORDER.index)
    return ValuationResult(
        values=values, stderr=stderr, counts=counts, method=method,
        params={**params, "cross_fit": int(n_folds)}, seed=seed,
        data_fingerprint=data.fingerprint, wall_time=time.perf_counter() - start,
        status=status, ids=data.ids_train,
        extra=jsonable({"fold_status": statuses, "n_folds": int(n_folds),
                        "cross_fit_seed": random_state}),
    )
