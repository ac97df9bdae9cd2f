"""Debugging a domain mismatch (Koh & Liang 2017, Sec. 5.1): why does the model fail on *this
group* of test examples?

:func:`debug_group` takes a fitted :class:`~datavalue.attribution.InfluenceFunction` and a group
of test examples (rows, or a mask of a larger test set) and answers, for the group's total loss:

- which training examples raise and which lower it: ``influence[i]`` = the predicted change of
  the group's total loss if training example ``i`` were removed (positive = it helps the
  group), one linear solve for the whole group (``summed_influence``);
- which *kinds* of training examples: the influences summed within groups of training rows
  (their label, or any column: a contract type, a site, a source), i.e. the first-order effect
  of removing that whole training group;
- which input features: Koh & Liang's ``I_pert,loss`` summed over the group,
  ``d (sum_t L(z_t)) / d x_i`` for the most harmful training examples (how moving each feature
  of those examples would change the group's loss), averaged over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError

__all__ = ["GroupDebug", "debug_group"]


@dataclass(frozen=True)
class GroupDebug:
    """What :func:`debug_group` found.

    Attributes
    ----------
    influence : ndarray of shape (n_train,)
        Predicted change of the group's total loss if each training example were removed
        (positive = it helps the group; the most negative ones are responsible for its errors).
    groups : DataFrame
        One row per training group: ``group``, ``n``, ``influence`` (sum: the first-order
        change if the whole training group were removed), ``mean``, ``effect`` ("helps" or
        "hurts"); sorted from the most harmful.
    features : DataFrame
        One row per input feature: ``feature``, ``gradient`` (mean over the ``top`` most harmful
        training examples of ``d group loss / d x_f``: positive = raising the feature on those
        examples raises the group's loss), ``abs`` (mean absolute value); sorted by ``abs``.
    harmful : ndarray
        Indices of the training examples the feature gradients were taken over.
    group_loss : float
        The group's total loss now.
    """

    influence: np.ndarray
    groups: pd.DataFrame
    features: pd.DataFrame
    harmful: np.ndarray
    group_loss: float


def debug_group(inf: Any, x_test: Any, y_test: Any, *, mask: Any = None,
                train_groups: Any = None, feature_names: Any = None,
                top: int = 20) -> GroupDebug:
    """Explain the loss of a group of test examples by training examples, training groups and
    input features (see the module docstring).

    Parameters
    ----------
    inf : InfluenceFunction
        Fitted on the training data.
    x_test, y_test : array-like
        Test examples; with ``mask`` (boolean, or row indices) only those rows form the group.
    train_groups : array-like of shape (n_train,) or None
        A group label for every training row (a column of the training table, a source);
        None: the training labels.
    feature_names : sequence of str or None
        Names of the input features (default ``x0, x1, ...``).
    top : int
        How many of the most harmful training examples the feature gradients are averaged over.
    """
    from datavalue.attribution.gradients import mixed_input_gradients

    inf._check_fitted()
    data = inf._prepare(x_test, y_test)
    if mask is not None:
        rows = np.asarray(mask)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        if rows.size == 0 or rows.min() < 0 or rows.max() >= data.n:
            raise InvalidDataError(
                f"'mask' must select at least one of the {data.n} test rows.")
        data = data.subset(rows)
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise InvalidParameterError(f"'top' must be an int >= 1; got {top!r}.")
    n = inf.n_train_
    # One solve for the whole group: u = (H + lambda I)^-1 sum_t grad L(z_t).
    u = inf.solver_.solve(inf._sum_gradients(data)[None])
    influence = np.empty(n, dtype=np.float64)
    for rows, g in inf._train_grads.blocks():
        influence[rows] = (g @ u[0].to(g.dtype)).cpu().numpy() / n
    if train_groups is None:
        train_groups = inf._data.tensors()[1].cpu().numpy()
    labels = np.asarray(train_groups)
    if labels.shape != (n,):
        raise InvalidDataError(
            f"'train_groups' must give one group per training row ({n}); got shape "
            f"{labels.shape}.")
    frame = pd.DataFrame({"group": labels, "influence": influence})
    groups = frame.groupby("group", sort=False)["influence"].agg(["size", "sum", "mean"])
    groups = groups.reset_index().rename(columns={"size": "n", "sum": "influence"})
    groups["effect"] = np.where(groups["influence"] < 0, "hurts", "helps")
    groups = groups.sort_values("influence", kind="stable").reset_index(drop=True)

    harmful = np.argsort(influence, kind="stable")[: min(int(top), n)]
    xs, ys = inf._train_subset(harmful)
    grads = (-mixed_input_gradients(inf.model_, u, xs, ys)[0] / n).cpu().numpy()
    grads = grads.reshape(len(harmful), -1)
    if getattr(inf, "pipeline_input_", None) is not None:
        grads = grads * inf.pipeline_input_.input_factor().reshape(1, -1)
    d = grads.shape[1]
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(d)]
    if len(names) != d:
        raise InvalidDataError(
            f"'feature_names' names {len(names)} features; the inputs have {d}.")
    features = pd.DataFrame({"feature": names, "gradient": grads.mean(0),
                             "abs": np.abs(grads).mean(0)})
    features = features.sort_values("abs", ascending=False, kind="stable").reset_index(drop=True)
    group_loss = float(inf._losses(inf.model_.theta, data).sum())
    return GroupDebug(influence=influence, groups=groups, features=features, harmful=harmful,
                      group_loss=group_loss)
