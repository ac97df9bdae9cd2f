"""Training-set attacks (Koh & Liang 2017, Sec. 5.2): move a few training inputs, imperceptibly,
so that the retrained model gets one test example wrong.

``I_pert,loss(z_i, z_test) = d L(z_test; theta_hat) / d x_i`` says how the *retrained* model's
test loss changes when training input ``x_i`` moves
(:meth:`~datavalue.attribution.InfluenceFunction.perturbation_influence`). The attack picks the
``n_train`` training examples whose perturbation gradients have the largest L1 norm (the
first-order gain of a sign step), then repeats: one signed-gradient step of size ``step`` on
each, projection onto the L-infinity box of radius ``epsilon`` around its original input (and
the valid input range), re-fit of the model on the modified training set (an exact re-fit for
scikit-learn models; a warm start through ``refit`` for torch modules, e.g. :func:`warm_refit`),
a new influence computation, until the test prediction flips or ``max_steps`` are spent.

:func:`random_perturbation` is the baseline the paper's claim is measured against: the same
number of random training rows, each moved by random signs of the full box size.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError, ModelOutputError

__all__ = ["AttackResult", "training_set_attack", "random_perturbation", "warm_refit"]


@dataclass(frozen=True)
class AttackResult:
    """The outcome of :func:`training_set_attack` (or :func:`random_perturbation`).

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
        Steps taken (re-fits of the model).
    seconds : float
        Wall time of the attack, re-fits included.
    refit_seconds : float
        The part of it spent re-fitting the model (the attack's unavoidable work).
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
    seconds: float = 0.0
    refit_seconds: float = 0.0
    model: Any = None


def warm_refit(loss: Callable, *, weight_decay: float = 0.0, max_iter: int = 100,
               tolerance: float = 1e-9) -> Callable:
    """A warm-started re-fit for torch modules: ``refit(module, x, y)`` copies ``module`` and
    minimizes ``mean(loss) + weight_decay / 2 * ||theta||^2`` over the whole training set by
    L-BFGS from its current parameters.

    After a small change of a few training inputs the old optimum is close to the new one, so a
    few quasi-Newton iterations land on it, where training from scratch would not (a network
    has many optima, and the attack follows one); the
    influence of that objective is computed with ``damping=weight_decay`` (its Hessian is the
    loss Hessian plus ``weight_decay * I``).

    Parameters
    ----------
    loss : callable
        ``(outputs, targets) -> (b,)`` per-example losses, e.g.
        ``nn.CrossEntropyLoss(reduction="none")``.
    weight_decay : float
    max_iter : int
        L-BFGS iterations per re-fit.
    tolerance : float
        Stop when the gradient's largest entry is below this.
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise InvalidParameterError(f"'max_iter' must be an int >= 1; got {max_iter!r}.")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, int | float | np.number) \
            or not np.isfinite(weight_decay) or weight_decay < 0:
        raise InvalidParameterError(
            f"'weight_decay' must be a non-negative number; got {weight_decay!r}.")

    def refit(module: Any, x: np.ndarray, y: np.ndarray) -> Any:
        import torch

        fitted = copy.deepcopy(module).train()
        params = [p for p in fitted.parameters() if p.requires_grad]
        dtype = params[0].dtype
        xt = torch.as_tensor(np.array(x), dtype=dtype)  # a copy: torch refuses read-only arrays
        yt = torch.as_tensor(np.array(y))
        opt = torch.optim.LBFGS(params, max_iter=max_iter, tolerance_grad=tolerance,
                                tolerance_change=tolerance * 1e-3,
                                line_search_fn="strong_wolfe")

        def closure() -> Any:
            opt.zero_grad()
            value = loss(fitted(xt), yt).mean()
            if weight_decay:
                value = value + 0.5 * weight_decay * sum((p * p).sum() for p in params)
            value.backward()
            return value

        opt.step(closure)
        return fitted.eval()

    return refit


def _fit(model: Any, refit: Any, x: np.ndarray, y: np.ndarray) -> Any:
    if refit is not None:
        return refit(model, x, y)
    from sklearn.base import clone

    return clone(model).fit(x, y)


def _predict(model: Any, x: np.ndarray, torch_model: bool) -> Any:
    if not torch_model:
        return model.predict(x)[0]
    import torch

    with torch.no_grad():
        dtype = next(model.parameters()).dtype
        out = model(torch.as_tensor(np.array(x), dtype=dtype)).reshape(len(x), -1)
    return int(out[0].argmax()) if out.shape[1] > 1 else int(out[0, 0] > 0)


class _Setup:
    """The arguments both attacks share, checked once."""

    def __init__(self, model: Any, x_train: Any, y_train: Any, x_target: Any, y_target: Any,
                 n_train: int, epsilon: Any, bounds: Any, refit: Any, loss: Any) -> None:
        from datavalue._core.validation import check_xy, is_torch_module

        self.torch_model = is_torch_module(model)
        if self.torch_model and (loss is None or refit is None):
            raise InvalidParameterError(
                "A torch module needs 'loss' and 'refit(model, x, y) -> model' (a warm-started "
                "re-fit, e.g. datavalue.attribution.warm_refit(loss)) to be attacked.")
        if not self.torch_model and (loss is not None or refit is not None):
            raise InvalidParameterError(
                "'loss' and 'refit' apply to torch modules; a scikit-learn model is re-fitted "
                "with its own fit.")
        if not self.torch_model and not hasattr(model, "predict"):
            raise InvalidParameterError(
                f"'model' must be a fitted scikit-learn classifier or a torch module; got "
                f"{type(model).__name__}.")
        x, y = check_xy(x_train, y_train)
        d = x.shape[1]
        xt = np.array(x_target, dtype=np.float64)  # writable: torch refuses read-only arrays
        if xt.size != d:
            raise InvalidDataError(
                f"'x_target' must be one example with {d} features (like 'x_train'); got "
                f"shape {xt.shape}.")
        xt = xt.reshape(1, d)
        if not np.all(np.isfinite(xt)):
            raise InvalidDataError("'x_target' has NaN or infinite values.")
        yt = np.asarray(y_target).reshape(-1)
        if yt.size != 1:
            raise InvalidDataError(f"'y_target' must be one label; got {yt.size} values.")
        if isinstance(n_train, bool) or not isinstance(n_train, int | np.integer) or n_train < 1:
            raise InvalidParameterError(f"'n_train' must be an int >= 1; got {n_train!r}.")
        if n_train > len(x):
            raise InvalidParameterError(
                f"'n_train' is {n_train}, more than the {len(x)} training examples.")
        self.epsilon = _per_feature(epsilon, "epsilon", d, movable=True)
        if bounds is None:
            low, high = np.full(d, -np.inf), np.full(d, np.inf)
        else:
            try:
                low, high = bounds
            except (TypeError, ValueError):
                raise InvalidParameterError(
                    "'bounds' must be a pair (low, high) of numbers or per-feature arrays."
                ) from None
            low = _per_feature(low, "bounds[0]", d, finite=False)
            high = _per_feature(high, "bounds[1]", d, finite=False)
            if np.any(low > high):
                raise InvalidParameterError("'bounds' has a low above its high.")
            if np.any(x < low - 1e-12) or np.any(x > high + 1e-12):
                raise InvalidDataError(
                    "'x_train' has values outside 'bounds': give the valid range of the "
                    "features the model sees (after any scaling).")
        self.low, self.high = low, high
        self.model, self.x, self.y, self.xt, self.yt = model, x, y, xt, yt
        self.refit, self.loss, self.n_train = refit, loss, int(n_train)
        self.refit_seconds = 0.0
        self.prediction = _predict(model, xt, self.torch_model)
        if self.prediction != yt[0]:
            raise InvalidDataError(
                f"The model already misclassifies the target (predicts {self.prediction!r}, "
                f"label {yt[0]!r}): there is no prediction to flip; choose a correctly "
                "classified 'x_target'.")

    def box(self, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.maximum(x0 - self.epsilon, self.low), np.minimum(x0 + self.epsilon, self.high)

    def fit(self, fitted: Any, current: np.ndarray) -> Any:
        t0 = time.perf_counter()
        out = _fit(fitted if self.torch_model else self.model, self.refit, current, self.y)
        self.refit_seconds += time.perf_counter() - t0
        return out

    def predict(self, fitted: Any) -> Any:
        return _predict(fitted, self.xt, self.torch_model)


def _per_feature(value: Any, name: str, d: int, *, movable: bool = False,
                 finite: bool = True) -> np.ndarray:
    """One number per feature; ``movable``: non-negative and not all zero (a zero keeps that
    feature fixed, e.g. a one-hot column)."""
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (d,)).copy()
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"'{name}' must be a number or one number per feature ({d}); got "
            f"{np.shape(value)}.") from None
    if np.any(np.isnan(arr)) or (finite and not np.all(np.isfinite(arr))) or (
            movable and (np.any(arr < 0) or not np.any(arr > 0))):
        raise InvalidParameterError(
            f"'{name}' must be {'non-negative ' if movable else ''}"
            f"{'finite ' if finite else ''}number(s){', not all 0' if movable else ''}; got "
            f"{value!r}.")
    return arr


def _result(s: _Setup, idx: np.ndarray, x0: np.ndarray, current: np.ndarray, losses: list,
            preds: list, steps: int, t0: float, fitted: Any) -> AttackResult:
    return AttackResult(
        train_indices=idx, x_original=x0, x_perturbed=current[idx].copy(),
        perturbation=float(np.abs(current[idx] - x0).max()) if idx.size else 0.0,
        test_loss=losses, predictions=preds, flipped=bool(preds[-1] != s.yt[0]), steps=steps,
        seconds=time.perf_counter() - t0, refit_seconds=s.refit_seconds, model=fitted)


def training_set_attack(
    model: Any, x_train: Any, y_train: Any, x_target: Any, y_target: Any, *,
    n_train: int = 1, epsilon: Any = 0.5, step: Any = None,
    max_steps: int = 50, bounds: Any = None, indices: Any = None, refit: Any = None,
    loss: Any = None, damping: float = 0.0, solver: str = "exact", hessian: str = "exact",
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
        One test example the model classifies correctly (``(d,)`` or ``(1, d)``) and its label.
    n_train : int
        How many training examples to move.
    epsilon : float or array of shape (d,)
        L-infinity radius around each original input, in the units of the features the model
        sees (one per feature when they are standardized: e.g. 2 grey levels / the scale); 0
        keeps a feature fixed (one-hot columns of a category).
    step : float, array of shape (d,) or None
        Size of each signed-gradient step (default ``epsilon / 10``).
    max_steps : int
    bounds : (low, high) or None
        Valid range of the inputs (numbers or per-feature arrays), e.g. the pixel range.
    indices : array-like or None
        Attack these training rows instead of choosing them by ``I_pert,loss``.
    refit : callable or None
        ``refit(model, x, y) -> model`` for torch modules (e.g. :func:`warm_refit`); scikit-learn
        models are cloned and fitted.
    loss, damping, solver, hessian
        As in :class:`~datavalue.attribution.InfluenceFunction` (damping for non-convex models; with
        :func:`warm_refit`, its ``weight_decay``). The curvature is the exact Hessian by
        default, not InfluenceFunction's Gauss-Newton default for torch modules: the re-fit
        minimizes the true objective, and on a tanh network the Gauss-Newton gradient of the
        retrained loss was 10% off central differences of re-fits (the exact one: 0.01%).
        Where the exact Hessian plus damping is indefinite (a larger network not at a strict
        minimum; conjugate gradients then stop with a clear error), pass
        ``hessian="gauss-newton"``: the step's direction stays right, its size is estimated.

    Returns
    -------
    AttackResult
    """
    from datavalue.attribution.influence import InfluenceFunction

    t0 = time.perf_counter()
    s = _Setup(model, x_train, y_train, x_target, y_target, n_train, epsilon, bounds, refit,
               loss)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or \
            max_steps < 1:
        raise InvalidParameterError(f"'max_steps' must be an int >= 1; got {max_steps!r}.")
    step = s.epsilon / 10 if step is None else _per_feature(step, "step", s.x.shape[1],
                                                             movable=True)

    def influence_of(current_model: Any, current_x: np.ndarray) -> InfluenceFunction:
        return InfluenceFunction(current_model, loss, solver=solver, damping=damping,
                                 hessian=hessian, progress=False).fit(current_x, s.y)

    inf = influence_of(model, s.x)
    if indices is None:
        grads = inf.perturbation_influence(s.xt, s.yt, np.arange(len(s.x)))[0]  # (n, d)
        idx = np.argsort(-np.abs(grads).sum(1), kind="stable")[: s.n_train]
    else:
        idx = inf._indices(indices, "indices")
    x0 = s.x[idx].copy()
    lo, hi = s.box(x0)
    current = s.x.copy()
    fitted = model
    losses = [float(inf.losses(s.xt, s.yt)[0])]
    preds = [s.prediction]
    steps = 0
    while preds[-1] == s.yt[0] and steps < max_steps:
        g = inf.perturbation_influence(s.xt, s.yt, idx)[0]
        current[idx] = np.clip(current[idx] + step * np.sign(g), lo, hi)
        fitted = s.fit(fitted, current)
        steps += 1
        try:
            inf = influence_of(fitted, current)
            losses.append(float(inf.losses(s.xt, s.yt)[0]))
            if not np.isfinite(losses[-1]):
                raise ModelOutputError(f"the loss on the target is {losses[-1]}")
        except ModelOutputError as exc:
            raise ModelOutputError(
                f"After step {steps} the re-fit diverged ('refit' or the model's fit): {exc} "
                "No result is reported.") from exc
        preds.append(s.predict(fitted))
    return _result(s, idx, x0, current, losses, preds, steps, t0, fitted)


def random_perturbation(
    model: Any, x_train: Any, y_train: Any, x_target: Any, y_target: Any, *,
    n_train: int = 1, epsilon: Any = 0.5, bounds: Any = None, random_state: Any = None,
    refit: Any = None, loss: Any = None,
) -> AttackResult:
    """The baseline of :func:`training_set_attack`: ``n_train`` random training rows, each
    input value moved by ``+-epsilon`` with a random sign (clipped to ``bounds``), one re-fit.

    The test loss before and after is measured with ``loss`` for torch modules and the
    classifier's log-loss otherwise. Parameters as in :func:`training_set_attack`;
    ``random_state`` seeds the rows and signs.
    """
    t0 = time.perf_counter()
    s = _Setup(model, x_train, y_train, x_target, y_target, n_train, epsilon, bounds, refit,
               loss)
    rng = np.random.default_rng(random_state)
    idx = np.sort(rng.choice(len(s.x), s.n_train, replace=False))
    x0 = s.x[idx].copy()
    lo, hi = s.box(x0)
    current = s.x.copy()
    current[idx] = np.clip(x0 + s.epsilon * rng.choice([-1.0, 1.0], size=x0.shape), lo, hi)
    fitted = s.fit(model, current)
    losses = [_target_loss(s, model), _target_loss(s, fitted)]
    return _result(s, idx, x0, current, losses, [s.prediction, s.predict(fitted)], 1, t0, fitted)


def _target_loss(s: _Setup, fitted: Any) -> float:
    if s.torch_model:
        import torch

        with torch.no_grad():
            dtype = next(fitted.parameters()).dtype
            out = fitted(torch.as_tensor(s.xt, dtype=dtype))
            return float(s.loss(out, torch.as_tensor(s.yt)).reshape(-1)[0])
    proba = fitted.predict_proba(s.xt)[0]
    col = int(np.searchsorted(fitted.classes_, s.yt[0]))
    return float(-np.log(max(proba[col], 1e-300)))
