"""Leave-one-out beyond first order: one Newton step on the objective without the example.

Removing ``z_i`` from the mean objective ``F`` leaves ``F_{-i} = F - l_i / n``; one Newton step
from ``theta_hat`` (where ``grad F = 0``) gives

    theta_{-i} ~ theta_hat + (H - h_i / n)^{-1} g_i / n,

with ``g_i``, ``h_i`` the gradient and Hessian of ``l_i``. First-order influence drops ``h_i``.
For a model whose output is one linear score ``eta = w . x + b`` (binary logistic regression,
linear and ridge regression, linear SVMs on the smooth hinge), ``l_i = l(eta_i, y_i)``, so
``g_i = r_i x~_i`` and ``h_i = c_i x~_i x~_i^T`` with ``x~ = [x, 1]``, ``r = dl/deta`` and
``c = d2l/deta2``; Sherman-Morrison gives the step in closed form,

    theta_{-i} - theta_hat = H^{-1} x~_i r_i / (n (1 - c_i x~_i^T H^{-1} x~_i / n)),

the first-order step divided by ``1 - leverage_i`` (the classical leave-one-out identity of
linear regression, exact there; Cook & Weisberg 1982; for GLMs, Pregibon 1981). The test losses
are then evaluated *at* the new parameters, not linearised. It matters when an example has high
leverage: few examples per parameter (features >= examples), outliers in input space.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidParameterError

__all__ = ["check_newton", "hessian_factor", "newton_deltas", "newton_losses",
           "newton_self_losses"]

_SINGLE_SCORE = ("LogisticRegression", "LinearRegression", "Ridge", "LinearSVC", "SVC")


def check_newton(inf: Any) -> None:
    """A clear error unless ``inf`` (a fitted InfluenceFunction) allows ``order="newton"``."""
    model = inf.model_
    if model.kind not in _SINGLE_SCORE:
        raise InvalidParameterError(
            "order='newton' is available for scikit-learn linear models with one output score "
            f"({', '.join(_SINGLE_SCORE)}; binary for classifiers); this model is "
            f"{model.kind}. Use order='first'.")
    weight = model.params.get("weight")
    if weight is None or weight.shape[0] != 1:
        raise InvalidParameterError(
            "order='newton' needs a model with one output score (a binary classifier or a "
            f"regressor); this {model.kind} has {0 if weight is None else weight.shape[0]} "
            "output rows (multinomial). Use order='first'.")
    if inf.operator_.dense is None or inf.n_params_ > 20_000:
        raise InvalidParameterError(
            f"order='newton' needs the dense Hessian ({inf.n_params_} parameters); use a model "
            "with at most 20,000 parameters.")


def _score_derivatives(model: Any, x: Any, y: Any) -> tuple[Any, Any, Any]:
    """``(eta, r = dl/deta, c = d2l/deta2)`` per example, by autograd on the model's loss."""
    import torch

    eta = model.forward(model.params, x).detach().requires_grad_(True)
    losses = model.loss(eta, y)
    (r,) = torch.autograd.grad(losses.sum(), eta, create_graph=True)
    (c,) = torch.autograd.grad(r.sum(), eta)
    return eta.detach().reshape(-1), r.detach().reshape(-1), c.detach().reshape(-1)


def hessian_factor(inf: Any) -> Any:
    """LU factors of the damped dense Hessian, computed once per call of the scores (every
    batch of training rows solves against the same matrix)."""
    import torch

    check_newton(inf)
    model = inf.model_
    h = inf.operator_.dense() + float(inf.damping) * torch.eye(
        inf.n_params_, dtype=model.dtype, device=model.device)
    return torch.linalg.lu_factor(h)


def _with_ones(model: Any, x: Any) -> Any:
    """``x~ = [x, 1]`` (the flat order: weights, then the intercept if the model has one)."""
    import torch

    ones = [torch.ones(len(x), 1, dtype=model.dtype, device=model.device)] \
        if "bias" in model.params else []
    return torch.cat([x.to(model.dtype), *ones], dim=1)


def newton_deltas(inf: Any, rows: np.ndarray, factor: Any) -> Any:
    """``theta_{-i} - theta_hat`` for the training rows ``rows``, shape ``(len(rows), p)``, in
    the flat parameter order; ``factor`` from :func:`hessian_factor`."""
    import torch

    model = inf.model_
    n = inf.n_train_
    xs, ys = inf._train_subset(rows)
    _, r, c = _score_derivatives(model, xs, ys)
    xt = _with_ones(model, xs)
    solved = torch.linalg.lu_solve(*factor, xt.T).T  # H^{-1} x~_i, (m, p)
    leverage = c * (solved * xt).sum(1) / n
    if bool((leverage >= 1 - 1e-12).any()):
        worst = int(torch.argmax(leverage))
        raise InvalidParameterError(
            f"Training row {int(rows[worst])} has leverage {float(leverage[worst]):.3f} >= 1: "
            "without it the objective has no minimum near theta_hat (the model interpolates "
            "it alone). Add damping or regularisation.")
    return solved * (r / (n * (1 - leverage)))[:, None]


def newton_self_losses(inf: Any, rows: np.ndarray, deltas: Any) -> np.ndarray:
    """``L(z_i; theta_hat + delta_i) - L(z_i; theta_hat)`` for each training row ``i`` of
    ``rows`` with its own delta (the diagonal of :func:`newton_losses`)."""
    model = inf.model_
    xs, ys = inf._train_subset(rows)
    eta0 = model.forward(model.params, xs).detach().reshape(-1)
    eta = eta0 + (_with_ones(model, xs) * deltas).sum(1)
    new = model.loss(eta[:, None], ys).reshape(-1)
    base = model.loss(eta0[:, None], ys).reshape(-1)
    return (new - base).cpu().numpy().astype(np.float64)


def newton_losses(inf: Any, x: Any, y: Any, deltas: Any) -> np.ndarray:
    """``L(z_t; theta_hat + delta_i) - L(z_t; theta_hat)`` for every test point ``t`` and
    every delta ``i``, shape ``(n_test, n_deltas)``: losses evaluated at the new parameters."""

    model = inf.model_
    eta0 = model.forward(model.params, x).detach().reshape(-1)
    eta = eta0[:, None] + _with_ones(model, x) @ deltas.T  # (n_test, n_deltas)
    base = model.loss(eta0[:, None], y).reshape(-1)
    t, m = eta.shape
    new = model.loss(eta.reshape(-1, 1), y.repeat_interleave(m)).reshape(t, m)
    return (new - base[:, None]).cpu().numpy().astype(np.float64)
