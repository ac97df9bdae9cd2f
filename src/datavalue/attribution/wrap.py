"""Wrapping a trained model for attribution: a torch module (with its loss, weight decay and a
choice of parameters) or a fitted scikit-learn linear model (its own objective), as one
:class:`~datavalue.attribution.model.InfluenceModel`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from datavalue._core.exceptions import InvalidModelError, InvalidParameterError
from datavalue.attribution.model import InfluenceModel, check_device
from datavalue.attribution.sklearn_models import _wrap_sklearn
from datavalue.attribution.torch_models import _wrap_torch

__all__ = ["wrap_model"]


def wrap_model(
    model: Any,
    loss: Callable | None = None,
    *,
    x_train: Any = None,
    y_train: Any = None,
    n_train: int | None = None,
    params: Any = None,
    weight_decay: float = 0.0,
    temperature: float = 0.1,
    dtype: torch.dtype = torch.float64,
    device: Any = None,
) -> InfluenceModel:
    """Wrap a fitted scikit-learn linear model or a trained torch module.

    Parameters
    ----------
    model : estimator or torch.nn.Module
        See :data:`SUPPORTED_ESTIMATORS`. A module is copied (to ``dtype``, in eval mode); the
        caller's module is never modified.
    loss : callable or None
        For a module: ``(outputs, targets) -> loss`` (per-example or reduced; it is evaluated one
        example at a time). Must be None for scikit-learn estimators (their own loss is used).
    x_train, y_train : array-like, optional
        Training data; needed to refit hinge-loss SVMs on the smooth hinge.
    n_train : int
        Training set size ``n`` (scales the regulariser of scikit-learn objectives).
    params : None, list of str or list of nn.Module
        For a module: the parameters influence is taken with respect to (default: all with
        ``requires_grad``); names of parameters or submodules, or submodules.
    weight_decay : float
        For a module: L2 term ``(weight_decay / 2) ||theta||^2`` of the mean objective.
    temperature : float
        Smooth-hinge temperature ``t`` for hinge-loss SVMs.

    Notes
    -----
    The objectives taken over, as mean objectives (scikit-learn's divided by ``C n`` or ``n``):

    - ``LogisticRegression``: log-loss + ``||W||^2 / (2 C n)``; the intercept is not penalised,
      except with ``solver="liblinear"`` (a constant feature ``intercept_scaling`` whose weight is
      penalised: ``b^2 / (2 C n s^2)``). Multinomial models use K softmax rows (centred, plus a
      gauge term, see :class:`_L2`). ``class_weight``, l1 and elastic-net penalties raise.
      Sample weights given to ``fit`` cannot be seen on a fitted estimator: do not use them.
    - ``LinearRegression``: squared residuals ``(y - f(x))^2``; ``Ridge``: plus
      ``alpha ||w||^2 / n`` (intercept not penalised).
    - ``LinearSVC`` (liblinear, intercept penalised like above) and ``SVC(kernel="linear")``
      (libsvm, intercept not penalised), binary only: ``loss="squared_hinge"`` (LinearSVC's
      default) is differentiable once and taken over as is (Hessian almost everywhere); the hinge
      is replaced by the smooth hinge of temperature ``t`` and the smoothed objective refitted
      (:func:`fit_smooth_hinge_svm`, warm-started from the estimator), so ``theta_hat`` is a
      stationary point and predictions compare to retraining with the same smoothed loss.
      Smaller ``t`` is closer to the hinge but makes first-order predictions less accurate
      (on digits 1-vs-7, Pearson with retraining 0.99 at t = 0.1, 0.88 at 0.01, 0.79 at 0.001).
    """
    device = check_device(device)
    if isinstance(model, nn.Module):
        return _wrap_torch(model, loss, params, weight_decay, dtype, device)
    if loss is not None:
        raise InvalidParameterError(
            "The 'loss' parameter must be None for a scikit-learn estimator: its own loss and "
            f"regularisation are used. Got {loss!r}."
        )
    if params is not None:
        raise InvalidParameterError(
            "The 'params' parameter selects parameters of a torch module; a scikit-learn linear "
            "model always uses all of coef_ and intercept_. Leave it None."
        )
    if weight_decay:
        raise InvalidParameterError(
            "The 'weight_decay' parameter applies to torch modules; a scikit-learn estimator's "
            "own regularisation (C, alpha) is used. Leave it 0."
        )
    if isinstance(model, type):
        raise InvalidModelError(
            f"'model' must be a fitted estimator instance, got the class {model.__name__}."
        )
    if n_train is None:
        if x_train is None:
            raise InvalidParameterError("wrap_model needs 'n_train' or the training data.")
        n_train = len(x_train)
    return _wrap_sklearn(
        model, x_train, y_train, n_train=n_train, temperature=temperature, dtype=dtype,
        device=device,
    )
