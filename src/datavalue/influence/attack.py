"""Training-set attacks (Koh & Liang 2017, Sec. 5.2): move a few training inputs, imperceptibly,
so that the retrained model gets one test example wrong.

``I_pert,loss(z_i, z_test) = d L(z_test; theta_hat) / d x_i`` says how the *retrained* model's
test loss changes when training input ``x_i`` moves
(:meth:`~datavalue.influence.InfluenceFunction.perturbation_influence`). The attack picks the
``n_train`` training examples whose perturbation gradients have the largest L1 norm (the
first-order gain of a sign step), then repeats: one signed-gradient step of size ``step`` on
each, projection onto the L-infinity box of radius ``epsilon`` around its original input (and
the valid input range), re-fit of the model on the modified training set (an exact re-fit for
scikit-learn models; a warm start through ``refit`` for torch modules), a new influence
computation, until the test prediction flips or ``max_steps`` are spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import InvalidDataError, InvalidParameterError

__all__ = ["AttackResult", "training_set_attack"]


@dataclass(frozen=True)
class AttackResult:
    """The outcome of :func:`training_set_attack`.

    Attributes
    ----------
    train_indices : ndarray
        The attacked training rows.
    x_original, x_perturbed : ndarray
        Their inputs before and after (rows of ``x_train``).
    perturbation : float
        Largest absolute change of any input value (``<= epsilon``).
    test_loss : list of float
        The target's loss under the model re-fitted after each step (first: before any step).
    predictions : list
        The target's predicted label after each step (first: before).
    flipped : bool
        Whether the prediction changed from the true label.
    steps : int
    model : estimator or module
        The model re-fitted on the perturbed training set.
    """

    train_indices: np.ndarray
    x_original: np.ndarray
    x_perturbed: np.ndarray
    perturbation: float
    test_loss: list[float] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    flipped: bool = False
    steps: int = 0
    model: Any = None


def _fit(model: Any, refit: Any, x: np.ndarray, y: np.ndarray) -> Any:
    if refit is not None:
        return refit(model, x, y)
    from sklearn.base import clone

    return clone(model).fit(x, y)


def training_set_attack(
    model: Any, x_train: Any, y_train: Any, x_target: Any, y_target: Any, *,
    n_train: int = 1, epsilon: float = 0.5, step: float | None = None,
    max_steps: int = 50, bounds: Any = None, indices: Any = None, refit: Any = None,
    loss: Any = None, damping: float = 0.0, solver: str = "exact",
) -> AttackResult:
    """Perturb ``n_train`` training inputs within ``epsilon`` (L-infinity) to flip the
    prediction on one target example (see the module docstring).

    Parameters
    ----------
    model : estimator or torch.nn.Module
        A fitted scikit-learn linear classifier (re-fitted exactly after every step, with its
        own parameters), or a trained torch module with ``loss`` and ``refit``.
    x_train, y_train : array-like
        The training set the model was fitted on.
    x_target, y_target : array-like
        One test example (``x_target`` of shape ``(d,)`` or ``(1, d)``) and its true label.
    n_train : int
        How many training examples to move.
    epsilon : float
        L-infinity radius around each original input (in the features' units).
    step : float or None
        Size of each signed-gradient step (default ``epsilon / 10``).
    max_steps : int
    bounds : (low, high) or None
        Valid range of the inputs (scalars or per-feature arrays), e.g. the pixel range.
    indices : array-like or None
        Attack these training rows instead of choosing them by ``I_pert,loss``.
    refit : callable or None
        ``refit(model, x, y) -> model`` for torch modules (e.g. a few epochs warm-started from
        ``model``'s parameters); scikit-learn models are cloned and fitted.
    loss, damping, solver
        As in :class:`~datavalue.influence.InfluenceFunction` (damping for non-convex models).
    """
    from .._validation import check_xy, is_torch_module
    from .influence import InfluenceFunction

    torch_model = is_torch_module(model)
    if torch_model and (loss is None or refit is None):
        raise InvalidParameterError(
            "A torch module needs 'loss' and 'refit(model, x, y) -> model' (a warm-started "
            "re-fit) to be attacked.")
    if not torch_model and (loss is not None or refit is not None):
        raise InvalidParameterError(
            "'loss' and 'refit' apply to torch modules; a scikit-learn model is re-fitted with "
            "its own fit.")
    x, y = check_xy(x_train, y_train)
    xt = np.asarray(x_target, dtype=np.float64).reshape(1, -1)
    yt = np.asarray(y_target).reshape(1)
    if xt.shape[1] != x.shape[1]:
        raise InvalidDataError(
            f"'x_target' has {xt.shape[1]} features; 'x_train' has {x.shape[1]}.")
    for name, value, low in (("n_train", n_train, 1), ("max_steps", max_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InvalidParameterError(f"'{name}' must be an int >= {low}; got {value!r}.")
    if not np.isfinite(epsilon) or epsilon <= 0:
        raise InvalidParameterError(f"'epsilon' must be a positive number; got {epsilon!r}.")
    step = float(epsilon) / 10 if step is None else float(step)
    if not np.isfinite(step) or step <= 0:
        raise InvalidParameterError(f"'step' must be a positive number; got {step!r}.")
    low = np.full(x.shape[1], -np.inf) if bounds is None else np.broadcast_to(
        np.asarray(bounds[0], dtype=np.float64), (x.shape[1],))
    high = np.full(x.shape[1], np.inf) if bounds is None else np.broadcast_to(
        np.asarray(bounds[1], dtype=np.float64), (x.shape[1],))

    def influence_of(current_model: Any, current_x: np.ndarray) -> InfluenceFunction:
        return InfluenceFunction(current_model, loss, solver=solver, damping=damping,
                                 progress=False).fit(current_x, y)

    def predict(m: Any) -> Any:
        if torch_model:
            import torch

            with torch.no_grad():
                dtype = next(m.parameters()).dtype
                return int(m(torch.as_tensor(xt, dtype=dtype)).argmax(1)[0])
        return m.predict(xt)[0]

    inf = influence_of(model, x)
    if indices is None:
        grads = inf.perturbation_influence(xt, yt, np.arange(len(x)))[0]  # (n, d)
        idx = np.argsort(-np.abs(grads).sum(1), kind="stable")[: min(n_train, len(x))]
    else:
        idx = inf._indices(indices, "indices")
    x0 = x[idx].copy()
    lo = np.maximum(x0 - epsilon, low)
    hi = np.minimum(x0 + epsilon, high)
    current = x.copy()
    fitted = model
    losses = [float(inf.losses(xt, yt)[0])]
    preds = [predict(fitted)]
    flipped = preds[0] != yt[0]
    steps = 0
    while not flipped and steps < max_steps:
        g = inf.perturbation_influence(xt, yt, idx)[0]
        current[idx] = np.clip(current[idx] + step * np.sign(g), lo, hi)
        fitted = _fit(fitted if torch_model else model, refit, current, y)
        inf = influence_of(fitted, current)
        steps += 1
        losses.append(float(inf.losses(xt, yt)[0]))
        preds.append(predict(fitted))
        flipped = preds[-1] != yt[0]
    return AttackResult(
        train_indices=idx, x_original=x0, x_perturbed=current[idx].copy(),
        perturbation=float(np.abs(current[idx] - x0).max()) if idx.size else 0.0,
        test_loss=losses, predictions=preds, flipped=bool(flipped), steps=steps, model=fitted)
