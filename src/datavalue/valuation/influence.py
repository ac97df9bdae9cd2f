"""Data values from influence functions: the influence of each training example on the total
validation loss (:class:`InfluenceValuation`) or on its own loss (:class:`SelfInfluenceValuation`),
computed by :class:`~datavalue.attribution.InfluenceFunction` on the model the valuator fits.

They live with the other valuators (the registry imports them from here); the influence package
does not import the valuation package, so neither imports the other in a cycle. Like the
influence package, this module imports :mod:`torch` only when a value is computed.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.validation import Interval, Options, is_torch_module
from datavalue.attribution.influence import InfluenceFunction
from datavalue.valuation.base import Valuator, default_model

__all__ = ["InfluenceValuation", "SelfInfluenceValuation"]


class _InfluenceValuator(Valuator):
    """Shared parameters and fitting of the influence-based valuators."""

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "model": ["estimator", "torch-module", None],
        "loss": ["callable", None],
        "train_fn": ["callable", None],
        "weight_decay": [Interval(float, 0, None)],
        "solver": [str],
        "damping": [Interval(float, 0, None)],
        "hessian": [Options({"auto", "exact", "gauss-newton"})],
        "temperature": [Interval(float, 0, None, closed="neither")],
        "batch_size": [Interval(int, 1, None)],
        "solver_options": [dict, None],
    }

    def __init__(
        self,
        model: Any = None,
        *,
        loss: Any = None,
        train_fn: Any = None,
        weight_decay: float = 0.0,
        solver: str = "exact",
        damping: float = 0.0,
        hessian: str = "auto",
        temperature: float = 0.1,
        batch_size: int = 256,
        solver_options: dict | None = None,
    ) -> None:
        self.model = model
        self.loss = loss
        self.train_fn = train_fn
        self.weight_decay = weight_decay
        self.solver = solver
        self.damping = damping
        self.hessian = hessian
        self.temperature = temperature
        self.batch_size = batch_size
        self.solver_options = solver_options

    def _fit_torch(self, data) -> InfluenceFunction:
        import copy

        if self.loss is None:
            raise InvalidParameterError(
                f"{type(self).__name__} with a torch module needs 'loss', a callable "
                "(outputs, targets) -> loss such as torch.nn.CrossEntropyLoss().")
        module = self.model
        if self.train_fn is not None:
            # Trained here on the training split, like every valuator's model; the caller's
            # module is left as it was.
            module = self.train_fn(copy.deepcopy(self.model), data.x_train, data.y_train)
            if module is None or not is_torch_module(module):
                raise InvalidParameterError(
                    "'train_fn' must return the trained torch module; it returned "
                    f"{type(module).__name__}.")
        y = data.y_train.astype(np.int64) if data.task == "classification" else data.y_train
        inf = InfluenceFunction(
            module, self.loss, weight_decay=self.weight_decay, solver=self.solver,
            damping=self.damping, hessian=self.hessian, batch_size=self.batch_size,
            solver_options=self.solver_options, progress=False,
        ).fit(data.x_train, y)
        self.influence_ = inf
        return inf

    def _fit_influence(self, data) -> InfluenceFunction:
        if is_torch_module(self.model):
            return self._fit_torch(data)
        for name in ("loss", "train_fn"):
            if getattr(self, name) is not None:
                raise InvalidParameterError(
                    f"'{name}' applies to a torch module; a scikit-learn estimator uses its own "
                    "loss and fit. Leave it None.")
        if self.weight_decay:
            raise InvalidParameterError("'weight_decay' applies to a torch module; a "
                                        "scikit-learn estimator's own regularisation is used.")
        model = default_model(data.task) if self.model is None else self.model
        self._check_model(model)
        fitted = clone(model).fit(data.x_train, data.y_train)
        if data.y_valid is not None and getattr(fitted, "classes_", None) is not None:
            missing = np.setdiff1d(data.y_valid, fitted.classes_)
            if missing.size:
                raise InvalidDataError(
                    f"'y_valid' contains {missing.size} class(es) absent from 'y_train' "
                    f"({data.classes[missing][:5].tolist()}); their loss under the model is "
                    "undefined. Drop those validation rows or add training examples."
                )
        inf = InfluenceFunction(
            fitted,
            solver=self.solver,
            damping=self.damping,
            hessian=self.hessian,
            temperature=self.temperature,
            batch_size=self.batch_size,
            solver_options=self.solver_options,
            progress=False,
        ).fit(data.x_train, data.y_train)
        self.influence_ = inf
        return inf


class InfluenceValuation(_InfluenceValuator):
    """Data values from influence functions: the predicted rise of the total validation loss
    when each training example is removed (``InfluenceFunction.summed_influence``).

    ``values_[i] = sum_v L(z_v; theta_{-i}) - L(z_v; theta_hat)`` to first order (Koh & Liang
    2017, Eq. 2 with ``epsilon = -1/n``), higher = more helpful. The model (a scikit-learn
    linear model, see :class:`InfluenceFunction`) is fitted on the training data here, like
    every valuator; ``influence_`` keeps the fitted :class:`InfluenceFunction`.

    Parameters
    ----------
    model : estimator, torch module or None
        Unfitted scikit-learn linear model (default: ``LogisticRegression`` / ``Ridge``), or a
        torch module: trained by ``train_fn(module, x_train, y_train) -> module`` on the
        training split (on a copy), or, without ``train_fn``, already trained on exactly
        ``x_train``.
    loss : callable, optional
        For a torch module: ``(outputs, targets) -> loss`` (e.g. ``nn.CrossEntropyLoss()``).
    train_fn : callable, optional
        For a torch module: how to train it.
    weight_decay : float
        For a torch module: the L2 term it was trained with (see :class:`InfluenceFunction`).
    solver : str
        Inverse-Hessian solver (default ``"exact"``: linear models have few parameters; use
        ``"cg"``, ``"arnoldi"`` or ``"ekfac"`` for networks).
    damping, hessian, temperature, batch_size, solver_options
        As in :class:`InfluenceFunction`.
    """

    method_name: ClassVar[str] = "influence"

    def fit(
        self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None
    ) -> InfluenceValuation:
        start = time.perf_counter()
        self._validate_params()
        data = self._check_data(x_train, y_train, x_valid, y_valid).numeric(
            None, owner=type(self).__name__)
        inf = self._fit_influence(data)
        values = inf.summed_influence(data.x_valid, data.y_valid)
        self._make_result(
            values, data, start,
            extra={"n_params": int(inf.n_params_), "solver": str(self.solver)},
        )
        return self


class SelfInfluenceValuation(_InfluenceValuator):
    """Data values from self-influence: ``values_ = -InfluenceFunction.self_influence()``.

    A training point the model can fit only by bending towards it (a flipped label, an outlier)
    has a large self-influence ``(1/n) grad L(z)^T H^{-1} grad L(z)`` (Koh & Liang 2017,
    Sec. 5.4), so its value is low. Needs no validation data.

    Parameters
    ----------
    As :class:`InfluenceValuation`.
    """

    method_name: ClassVar[str] = "self-influence"
    needs_validation: ClassVar[bool] = False

    def fit(
        self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None
    ) -> SelfInfluenceValuation:
        start = time.perf_counter()
        self._validate_params()
        data = self._check_data(x_train, y_train, x_valid, y_valid, need_valid=False).numeric(
            None, owner=type(self).__name__)
        inf = self._fit_influence(data)
        self._make_result(
            -inf.self_influence(), data, start,
            extra={"n_params": int(inf.n_params_), "solver": str(self.solver)},
        )
        return self
