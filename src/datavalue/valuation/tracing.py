"""Data values from gradient tracing: TracIn / Grad-Dot / Grad-Cos and TRAK
(:mod:`datavalue.attribution.tracing`) on models the valuator trains.

``target="validation"`` (default): each training example's summed attribution over the
validation examples (its help to the validation loss, or margin for TRAK). ``target="self"``:
minus its self-attribution (Pruthi et al. 2020, Sec. 4.1: mislabeled examples trace large
gradients onto themselves), which needs no validation data.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.parallel import spawn_seeds
from datavalue._core.validation import Interval, Options, is_torch_module
from datavalue.valuation.base import Valuator, default_model

__all__ = ["TracInValuation", "TRAKValuation"]


class _TracingValuator(Valuator):
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "model": ["estimator", "torch-module", None],
        "loss": ["callable", None],
        "train_fn": ["callable", None],
        "target": [Options({"validation", "self"})],
        "proj_dim": [Interval(int, 1, None), None],
        "random_state": [Interval(int, 0, None)],
        "batch_size": [Interval(int, 1, None)],
    }

    def _fit_models(self, data: Any, n_models: int, fraction: float) -> list[Any]:
        """``n_models`` models trained on the training split (random subsets of ``fraction``
        of it, one seed per model; a torch module re-initialised from that seed)."""
        from datavalue._core.modules import reinitialized

        seeds = spawn_seeds(self.random_state, n_models)
        models = []
        n = len(data.x_train)
        for seed in seeds:
            rng = np.random.default_rng(seed)
            rows = np.sort(rng.choice(n, max(2, int(round(fraction * n))), replace=False)) \
                if fraction < 1 else np.arange(n)
            x, y = data.x_train[rows], data.y_train[rows]
            if is_torch_module(self.model):
                if self.train_fn is None:
                    if n_models > 1 or fraction < 1:
                        raise InvalidParameterError(
                            "Several models (or subsets) of a torch module need 'train_fn' "
                            "to train them.")
                    models.append(self.model)
                    continue
                module = reinitialized(self.model, seed)
                if data.task == "classification":
                    y = y.astype(np.int64)
                module = self.train_fn(module, x, y)
                if not is_torch_module(module):
                    raise InvalidParameterError(
                        "'train_fn' must return the trained torch module; it returned "
                        f"{type(module).__name__}.")
                models.append(module)
            else:
                for name in ("loss", "train_fn"):
                    if getattr(self, name) is not None:
                        raise InvalidParameterError(
                            f"'{name}' applies to a torch module; a scikit-learn estimator uses "
                            "its own loss and fit. Leave it None.")
                est = clone(default_model(data.task) if self.model is None else self.model)
                self._check_model(est)
                if "random_state" in est.get_params():
                    est.set_params(random_state=int(seed))
                models.append(est.fit(x, y))
        return models

    def _values(self, tracer: Any, data: Any) -> np.ndarray:
        y = data.y_train.astype(np.int64) if (
            is_torch_module(self.model) and data.task == "classification") else data.y_train
        tracer.fit(data.x_train, y)
        self.tracer_ = tracer
        if self.target == "self":
            return -tracer.self_influence()
        yv = data.y_valid.astype(np.int64) if (
            is_torch_module(self.model) and data.task == "classification") else data.y_valid
        total = np.zeros(len(data.x_train))
        for start in range(0, len(data.x_valid), 1024):
            total += tracer.influence(data.x_valid[start:start + 1024],
                                      yv[start:start + 1024]).sum(0)
        return total

    def fit(self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None):
        start = time.perf_counter()
        self._validate_params()
        data = self._check_data(x_train, y_train, x_valid, y_valid,
                                need_valid=self.target == "validation").numeric(
            None, owner=type(self).__name__)
        values = self._values(self._tracer(data), data)
        self._make_result(values, data, start, extra={
            "target": self.target, "n_models": int(self.tracer_.n_models_),
            "proj_dim": int(self.tracer_.proj_dim_)})
        return self


class TracInValuation(_TracingValuator):
    """Data values from TracIn / Grad-Dot / Grad-Cos (Pruthi et al. 2020).

    With a scikit-learn model there are no checkpoints: the fitted model is the one checkpoint
    (Grad-Dot, or Grad-Cos with ``normalize=True``). A torch module's checkpoints can be
    traced with :class:`~datavalue.attribution.TracIn` directly.

    Parameters
    ----------
    model : estimator, torch module or None
        Unfitted scikit-learn linear model (default: ``LogisticRegression`` / ``Ridge``) or a
        torch module (trained by ``train_fn(module, x, y) -> module`` on a copy, or already
        trained on exactly ``x_train``).
    loss, train_fn : callable or None
        For a torch module.
    normalize : bool
        Cosines (Grad-Cos) instead of inner products.
    target : {"validation", "self"}
        Value = summed attribution to the validation examples, or minus the self-attribution.
    proj_dim : int or None
        Random projection of the gradients (None: exact).
    random_state : int
        Seed of the projection.
    batch_size : int
    """

    method_name: ClassVar[str] = "tracin"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        **_TracingValuator._parameter_constraints, "normalize": ["boolean"]}

    def __init__(self, model: Any = None, *, loss: Any = None, train_fn: Any = None,
                 normalize: bool = False, target: str = "validation",
                 proj_dim: int | None = None, random_state: int = 0,
                 batch_size: int = 256) -> None:
        self.model = model
        self.loss = loss
        self.train_fn = train_fn
        self.normalize = normalize
        self.target = target
        self.proj_dim = proj_dim
        self.random_state = random_state
        self.batch_size = batch_size

    def _tracer(self, data: Any) -> Any:
        from datavalue.attribution.tracing import TracIn

        model = self._fit_models(data, 1, 1.0)[0]
        return TracIn(model, self.loss, normalize=self.normalize, proj_dim=self.proj_dim,
                      random_state=self.random_state, batch_size=self.batch_size, progress=False)


class TRAKValuation(_TracingValuator):
    """Data values from TRAK (Park et al. 2023) over an ensemble of ``n_models`` models.

    Parameters
    ----------
    model, loss, train_fn, target, random_state, batch_size
        As :class:`TracInValuation` (the ensemble's models are trained here, one seed each;
        ``target="validation"`` sums the attributions to the validation margins).
    n_models : int
        Models in the ensemble.
    subset_fraction : float in (0, 1]
        Each model is trained on a random subset of this fraction of the training rows
        (deterministic estimators such as ``LogisticRegression(solver="lbfgs")`` give the same
        model for every seed on all rows: use < 1 to make the members differ).
    proj_dim : int or None
        TRAK's projection dimension (None or at least the number of parameters: none).
    damping : float
        ``lambda`` of the kernel.
    """

    method_name: ClassVar[str] = "trak"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        **_TracingValuator._parameter_constraints,
        "n_models": [Interval(int, 1, None)],
        "subset_fraction": [Interval(float, 0, 1, closed="right")],
        "damping": [Interval(float, 0, None)],
    }

    def __init__(self, model: Any = None, *, loss: Any = None, train_fn: Any = None,
                 n_models: int = 10, subset_fraction: float = 0.5,
                 target: str = "validation", proj_dim: int | None = 2048,
                 damping: float = 0.0, random_state: int = 0, batch_size: int = 256) -> None:
        self.model = model
        self.loss = loss
        self.train_fn = train_fn
        self.n_models = n_models
        self.subset_fraction = subset_fraction
        self.target = target
        self.proj_dim = proj_dim
        self.damping = damping
        self.random_state = random_state
        self.batch_size = batch_size

    def _tracer(self, data: Any) -> Any:
        from datavalue.attribution.tracing import TRAK

        if data.task != "classification":
            raise InvalidParameterError(
                "TRAKValuation attributes the classification margin; the target is a "
                "regression target. Use TRAK with a custom 'output' instead.")
        models = self._fit_models(data, self.n_models, float(self.subset_fraction))
        return TRAK(models, self.loss, proj_dim=self.proj_dim, random_state=self.random_state,
                    damping=self.damping, batch_size=self.batch_size, progress=False)
