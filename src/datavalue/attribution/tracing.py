"""Gradient tracing: TracIn, Grad-Dot, Grad-Cos (Pruthi et al. 2020) and TRAK (Park et al. 2023).

Attribution without a Hessian, for networks where influence functions are too costly or too
fragile. Every estimator here has the contract of :class:`~datavalue.attribution.InfluenceFunction`:
``fit(x_train, y_train)`` on the training data (arrays, tensors, or a torch ``Dataset`` /
``DataLoader`` streamed block by block), then ``influence(x_test, y_test)`` -> an ``(n_test,
n_train)`` matrix with positive = helpful, ``top_k``, ``self_influence`` (for finding mislabeled
examples) and a ``store`` folder that keeps the projected training features for later runs.

- :class:`TracIn`: ``scores[t, i] = sum_c eta_c <grad L(z_t; theta_c), grad L(z_i; theta_c)>``
  over checkpoints ``theta_c`` saved during training with learning rates ``eta_c`` (TracInCP,
  Pruthi et al. 2020, Eq. 3): the loss decrease of ``z_t`` caused by the SGD steps on ``z_i``.
  ``normalize=True`` replaces the inner products by cosines.
- :class:`GradDot` and :class:`GradCos`: one model, weight 1 (the "gradient similarity"
  baselines of the TRAK and dattri benchmarks).
- :class:`TRAK`: ``scores = (1/S sum_s phi_s(z_t)^T (Phi_s^T Phi_s + lambda I)^{-1} Phi_s^T)
  diag(1/S sum_s Q_s)`` with ``phi_s`` the randomly projected gradient of the model output
  (the margin ``f_y - logsumexp_{k != y} f_k``) under model ``s`` of an ensemble, ``Phi_s`` the
  stacked training features and ``Q_s = diag(1 - p_s(z_i))`` the loss-to-output weights (Park
  et al. 2023, Eq. 17 and Algorithm 1).

Projection (:mod:`~datavalue.attribution.projection`) is seeded and independent of the batch
size, so the same seed gives the same scores with any batch size, in any process.

References
----------
G. Pruthi, F. Liu, S. Kale and M. Sundararajan. Estimating training data influence by tracing
gradient descent. NeurIPS 2020.
S. M. Park, K. Georgiev, A. Ilyas, G. Leclerc and A. Madry. TRAK: Attributing model behavior at
scale. ICML 2023.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.parallel import progress_bar
from datavalue._core.validation import Interval, Options, validate_params
from datavalue.attribution.engine import Attributor
from datavalue.attribution.measure import _Measured, _resolve_dtype, _torch, margin

__all__ = ["TracIn", "GradDot", "GradCos", "TRAK"]


def margin_loss(outputs: Any, targets: Any) -> Any:
    """``-log sigmoid(margin)``: the cross-entropy written through TRAK's margin (for several
    classes ``p_y = sigmoid(f_y - logsumexp_{k != y} f_k)`` exactly; for one logit, the binary
    cross-entropy). The loss TRAK's ``Q = 1 - p`` weights refer to."""
    return _torch().nn.functional.softplus(-margin(outputs, targets))


class _Tracer(Attributor):
    """What every gradient tracer shares: the models, the data contract, projected features,
    the store and the query methods. Subclasses say which function is differentiated on each
    side and how features make scores."""

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "loss": ["callable", None],
        "proj_dim": [Interval(int, 1, None), None],
        "projection": [Options({"rademacher", "gaussian"})],
        "random_state": [Interval(int, 0, None)],
        "batch_size": [Interval(int, 1, None)],
        "max_memory": [Interval(float, 0, None)],
        "progress": ["boolean", None],
        "batch_fn": ["callable", None],
        "store": [str, os.PathLike, None],
    }
    _method: ClassVar[str] = ""
    #: The argument named when a measured output is not one value per example.
    _output_name: ClassVar[str] = "measure"

    # -- subclass hooks -----------------------------------------------------------------------
    def _model_list(self) -> list[Any]:
        raise NotImplementedError

    def _train_fn(self) -> Any:
        """The function differentiated for training features (None: the loss)."""
        return None

    def _query_fn(self, measure: Any) -> Any:
        return measure

    def _settings(self) -> dict[str, Any]:
        return {}

    def _finish_fit(self) -> None:
        """Turn the training features into what queries use (``self._train``)."""

    def _scores(self, feats: list[Any]) -> Any:
        raise NotImplementedError

    def _self_scores(self) -> np.ndarray:
        raise NotImplementedError

    # -- models and data ----------------------------------------------------------------------
    def _load_models(self, items: Any, module: Any, name: str) -> list[Any]:
        """``items`` as a list of models: modules or estimators as given; state dicts or paths
        to ``torch.save``d state dicts loaded into copies of ``module``."""
        import copy

        if isinstance(items, str | os.PathLike | Mapping) or not isinstance(items, Sequence):
            items = [items]
        if len(items) == 0:
            raise InvalidParameterError(f"'{name}' is empty: give at least one model.")
        out = []
        for k, item in enumerate(items):
            if isinstance(item, str | os.PathLike | Mapping):
                torch = _torch()
                if module is None:
                    raise InvalidParameterError(
                        f"'{name}[{k}]' is a state dict or a file; give the architecture as "
                        "'module' (a torch.nn.Module the state dicts load into).")
                if not isinstance(item, Mapping):
                    path = Path(item)
                    if not path.is_file():
                        raise InvalidParameterError(f"'{name}[{k}]': no file {str(path)!r}.")
                    try:
                        item = torch.load(path, map_location="cpu", weights_only=True)
                    except Exception as exc:  # noqa: BLE001 - any unreadable file
                        raise InvalidParameterError(
                            f"'{name}[{k}]': {str(path)!r} is not a torch state dict "
                            f"({type(exc).__name__}: {exc}).") from exc
                m = copy.deepcopy(module)
                try:
                    m.load_state_dict(item)
                except (RuntimeError, KeyError) as exc:
                    raise InvalidParameterError(
                        f"'{name}[{k}]' does not fit 'module': {exc}") from exc
                item = m
            elif module is not None:
                raise InvalidParameterError(
                    "'module' is for checkpoints given as state dicts or files; here "
                    f"'{name}[{k}]' is already a model ({type(item).__name__}).")
            out.append(item)
        kinds = {type(m).__name__ if not _is_module(m) else "module" for m in out}
        if len(kinds) > 1:
            raise InvalidParameterError(
                f"'{name}' mixes kinds of models ({', '.join(sorted(kinds))}); give one kind.")
        return out

    def _wrap(self, models: list[Any], x_train: Any, y_train: Any) -> tuple[list[Any], Any]:
        from datavalue._core.validation import check_xy
        from datavalue.attribution.examples import (
            check_examples_args,
            gather_examples,
            is_torch_data,
        )
        from datavalue.attribution.wrap import wrap_model

        dtype = _resolve_dtype(self.dtype)
        x_train, y_train = check_examples_args(x_train, y_train, "x_train", "y_train")
        loss = self._loss()
        if _is_module(models[0]):
            wrapped = [wrap_model(m, loss, params=self.params, dtype=dtype, device=self.device)
                       for m in models]
        else:
            if self.loss is not None:
                raise InvalidParameterError(
                    "The 'loss' parameter must be None for a scikit-learn estimator: its own "
                    "loss is used.")
            if is_torch_data(x_train):
                x_train, y_train = (t.numpy() for t in
                                    gather_examples(x_train, self.batch_fn, "x_train"))
            x_np, y_np = check_xy(x_train, y_train, x_name="x_train", y_name="y_train")
            x_train, y_train = x_np, y_np
            wrapped = [wrap_model(m, x_train=x_np, y_train=y_np, dtype=dtype,
                                  device=self.device) for m in models]
        n_params = {w.n_params for w in wrapped}
        if len(n_params) > 1:
            raise InvalidParameterError(
                f"The models have different numbers of parameters ({sorted(n_params)}): "
                "checkpoints and ensemble members must share one architecture.")
        first = wrapped[0]
        self._model_kind = first.kind
        data = self._examples(first, x_train, y_train, "x_train", "y_train")
        return wrapped, data

    def _loss(self) -> Any:
        return self.loss

    def _query_model(self) -> Any:
        return self.models_[0]

    # -- features -----------------------------------------------------------------------------
    def _feature_blocks(self, data: Any, fns: list[Any], desc: str
                        ) -> Iterator[tuple[slice, list[Any]]]:
        """Yield ``(rows, [F_s])``: for each block of ``data`` (read once), the projected
        gradients of ``fns[s]`` under every model ``s``."""
        from torch.func import grad, vmap

        # The loss itself, or a measured output (TRAK's margin, a user's measure).
        sides = [m if fn is None else _Measured(m, fn, self._output_name)
                 for m, fn in zip(self.models_, fns, strict=True)]
        grads = [vmap(grad(side.example_loss), in_dims=(None, 0, 0)) for side in sides]
        torch = _torch()
        bar = progress_bar(-(-data.n // self.batch_size), desc, self.progress, unit="block")
        try:
            for rows, xb, yb in data.blocks(self.batch_size):
                feats = []
                for side, g in zip(sides, grads, strict=True):
                    flat = side.layout.flatten(g(side.params, xb, yb), batch_dims=1).detach()
                    if not bool(torch.isfinite(flat).all()):
                        bad = int((~torch.isfinite(flat).all(1)).nonzero()[0, 0]) + rows.start
                        from datavalue._core.exceptions import ModelOutputError

                        raise ModelOutputError(
                            f"The gradient of example {bad} ({desc}) is not finite: the model "
                            "gives a NaN or infinite output or loss there.")
                    feats.append(self._project(flat))
                bar.update(1)
                yield rows, feats
        finally:
            bar.close()

    def _project(self, g: Any) -> Any:
        if self.projection_ is None:
            return g.to(self._feature_dtype)
        return self.projection_(g)

    def _train_features(self) -> Any:
        """``(S, n, k)`` projected training features, computed once (or read from the store)."""
        torch = _torch()
        shape = (len(self.models_), self.n_train_, self.proj_dim_)
        fns = [self._train_fn()] * len(self.models_)

        def fill(target: Any) -> None:
            for rows, feats in self._feature_blocks(self._data, fns, "training features"):
                for s, f in enumerate(feats):
                    target[s, rows] = f.cpu().numpy()

        if self.store_ is not None:
            return self._stored_features("train-features.npy", shape, fill)
        itemsize = torch.empty((), dtype=self._feature_dtype).element_size()
        if float(np.prod(shape)) * itemsize > self.max_memory:
            raise InvalidParameterError(
                f"The training features ({' x '.join(map(str, shape))}, "
                f"{np.prod(shape) * itemsize / 2**20:.0f} MiB) exceed 'max_memory' "
                f"({self.max_memory / 2**20:.0f} MiB): give a smaller 'proj_dim', a 'store' "
                "folder (they are then kept on disk), or raise max_memory.")
        out = torch.empty(shape, dtype=self._feature_dtype, device=self.models_[0].device)
        for rows, feats in self._feature_blocks(self._data, fns, "training features"):
            for s, f in enumerate(feats):
                out[s, rows] = f
        return out

    def _stored_features(self, name: str, shape: tuple[int, ...], fill: Any) -> Any:
        return self._stored(name, shape, fill, dtype=self._feature_dtype,
                            device=self.models_[0].device)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, x_train: Any, y_train: Any = None) -> _Tracer:
        """Wrap the models, compute (or read from ``store``) the projected training features.

        ``(x_train, y_train)``: the training data, as arrays or tensors, or a torch ``Dataset``
        / ``DataLoader`` (no shuffling; ``y_train`` None) whose batches are ``(inputs,
        targets)``, dicts, or anything ``batch_fn`` reads. Every score refers to its rows.
        """
        _torch()  # a clear ImportError before any work when torch is missing
        from datavalue.attribution.projection import RandomProjection

        start = time.perf_counter()
        validate_params(type(self).__name__, self.get_params(deep=False),
                        self._parameter_constraints)
        self._check_own_params()
        models = self._model_list()
        wrapped, data = self._wrap(models, x_train, y_train)
        self.models_ = wrapped
        self._data = data
        self.n_train_ = data.n
        self.n_params_ = wrapped[0].n_params
        self.n_models_ = len(wrapped)
        self._feature_dtype = wrapped[0].dtype
        projected = self.proj_dim is not None and self.proj_dim < self.n_params_
        self.proj_dim_ = int(self.proj_dim) if projected else self.n_params_
        self.projection_ = RandomProjection(
            self.n_params_, self.proj_dim_, self.projection, self.random_state,
            dtype=self._feature_dtype, device=wrapped[0].device,
            max_memory=float(self.max_memory)) if projected else None
        self.store_ = None
        if self.store is not None:
            from datavalue.attribution.store import InfluenceStore, model_fingerprint

            h = hashlib.sha256()
            for w in wrapped:
                h.update(model_fingerprint(w).encode())
            self.store_ = InfluenceStore(self.store, {
                "model": h.hexdigest(),
                "data": {"n": data.n, "fingerprint": data.fingerprint()},
                "settings": {
                    "method": self._method, "n_models": len(wrapped),
                    "projection": None if self.projection_ is None
                    else self.projection_.describe(),
                    "params": list(wrapped[0].layout.names), "dtype": str(self._feature_dtype),
                    **self._settings()},
            })
        self._features = self._train_features()
        self._finish_fit()
        self.fit_time_ = time.perf_counter() - start
        return self

    def _check_own_params(self) -> None:
        """Checks of the subclass's own parameters."""

    # -- queries ------------------------------------------------------------------------------
    def _score_blocks(self, data: Any, measure: Any, desc: str
                      ) -> Iterator[tuple[slice, np.ndarray]]:
        fns = [self._query_fn(measure)] * self.n_models_
        for rows, feats in self._feature_blocks(data, fns, desc):
            yield rows, self._scores(feats).cpu().numpy()

    def influence(self, x_test: Any, y_test: Any = None, *, measure: Any = None) -> np.ndarray:
        """Attribution scores, ``(n_test, n_train)``, positive = helpful (see the class)."""
        data = self._prepare(x_test, y_test)

        def compute(target: np.ndarray) -> np.ndarray:
            for rows, block in self._score_blocks(data, measure, type(self).__name__):
                target[rows] = block
            return target

        shape = (data.n, self.n_train_)
        if self.store_ is not None:
            return self.store_.scores(shape, data.fingerprint(), compute, measure)
        return compute(np.empty(shape, dtype=np.float64))

    def self_influence(self) -> np.ndarray:
        """Each training example's attribution to itself, ``(n_train,)`` (see the class)."""
        self._check_fitted()
        return self._self_scores()


def _is_module(obj: Any) -> bool:
    from datavalue._core.validation import is_torch_module

    return is_torch_module(obj)


# ============================================================================== TracIn
class TracIn(_Tracer):
    """TracIn: the loss change of a test example traced through the training run's checkpoints
    (Pruthi et al. 2020, TracInCP, Eq. 3).

    ``scores[t, i] = sum_c eta_c <grad L(z_t; theta_c), grad L(z_i; theta_c)>``: an SGD step
    of size ``eta_c`` on ``z_i`` at ``theta_c`` lowers the loss of ``z_t`` by about ``eta_c``
    times the inner product, so positive = ``z_i`` helped ``z_t`` (the library's convention).
    ``normalize=True`` uses cosines (Grad-Cos when there is one checkpoint); ``self_influence``
    gives ``sum_c eta_c ||grad L(z_i; theta_c)||^2``, large for mislabeled examples (Pruthi et
    al., Sec. 4.1).

    Parameters
    ----------
    checkpoints : module, estimator, state dict, path, or a list of them
        The models saved during training (e.g. every epoch); state dicts and paths of
        ``torch.save``d state dicts are loaded into copies of ``module``. Fitted scikit-learn
        linear models work too (their own loss).
    loss : callable or None
        For torch modules: ``(outputs, targets) -> loss`` (evaluated per example).
    learning_rates : float, sequence of floats or None
        ``eta_c`` for each checkpoint (one number: the same for all). None: 1 for every
        checkpoint (Grad-Dot when there is one).
    normalize : bool
        Cosines instead of inner products (Grad-Cos).
    module : torch.nn.Module or None
        The architecture for checkpoints given as state dicts or files.
    params : None, list of str or list of modules
        The parameters whose gradients are traced (e.g. only the last layer, as Pruthi et al.
        do for large networks); None: all with ``requires_grad``.
    proj_dim : int or None
        Project the gradients to this many dimensions (Pruthi et al., Sec. 3.3): inner products
        are then estimated with a relative error of about ``sqrt(2 / proj_dim)``. None (or at
        least the number of parameters): exact.
    projection : {"rademacher", "gaussian"}
        Entries of the projection matrix (:mod:`~datavalue.attribution.projection`).
    random_state : int
        Seed of the projection.
    batch_size : int
        Examples per block.
    dtype : str or torch.dtype
        ``"float64"`` (default) or ``"float32"`` (half the memory; TRAK's choice).
    device : str or None
    max_memory : float
        Bytes the training features (``n_checkpoints x n_train x dim``) may take in memory;
        beyond it give a ``store`` folder.
    progress : bool or None
    batch_fn : callable or None
        ``batch -> (inputs, targets)`` for Dataset/DataLoader batches of another form.
    store : str, path or None
        A folder that keeps the projected training features (and the scores of each query
        set) with the settings that made them (:mod:`~datavalue.attribution.store`); a later
        ``fit`` with the same models, data and settings reads them, any difference is refused
        with a :class:`~datavalue._core.exceptions.StoreMismatchError`.

    Attributes
    ----------
    models_ : list of InfluenceModel
    n_train_, n_params_, n_models_, proj_dim_ : int
    projection_ : RandomProjection or None
    learning_rates_ : ndarray of shape (n_models_,)
    """

    _method = "tracin"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        **_Tracer._parameter_constraints,
        "normalize": ["boolean"],
    }

    def __init__(self, checkpoints: Any, loss: Any = None, *, learning_rates: Any = None,
                 normalize: bool = False, module: Any = None, params: Any = None,
                 proj_dim: int | None = None, projection: str = "rademacher", random_state: int = 0,
                 batch_size: int = 256, dtype: Any = "float64", device: Any = None,
                 max_memory: float = 2**30, progress: bool | None = None,
                 batch_fn: Any = None, store: str | os.PathLike | None = None) -> None:
        self.checkpoints = checkpoints
        self.loss = loss
        self.learning_rates = learning_rates
        self.normalize = normalize
        self.module = module
        self.params = params
        self.proj_dim = proj_dim
        self.projection = projection
        self.random_state = random_state
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.max_memory = max_memory
        self.progress = progress
        self.batch_fn = batch_fn
        self.store = store

    def _spec(self) -> tuple[Any, Any, Any, bool]:
        """``(checkpoints, module, learning_rates, normalize)``."""
        return self.checkpoints, self.module, self.learning_rates, bool(self.normalize)

    def _model_list(self) -> list[Any]:
        items, module, lr, self._normalize = self._spec()
        models = self._load_models(items, module, "checkpoints")
        if lr is None:
            rates = np.ones(len(models))
        else:
            rates = np.atleast_1d(np.asarray(lr, dtype=np.float64)) if not isinstance(
                lr, str) else np.array([np.nan])
            if rates.ndim != 1 or rates.size not in (1, len(models)) or not np.all(
                    np.isfinite(rates)) or np.any(rates <= 0):
                raise InvalidParameterError(
                    "'learning_rates' must be one positive number or one per checkpoint "
                    f"({len(models)}); got {lr!r}.")
            rates = np.broadcast_to(rates, (len(models),)).copy()
        self.learning_rates_ = rates
        return models

    def _settings(self) -> dict[str, Any]:
        return {"learning_rates": self.learning_rates_.tolist(), "normalize": self._normalize}

    def _finish_fit(self) -> None:
        torch = _torch()
        self._train = self._features
        self._weights = torch.as_tensor(self.learning_rates_, dtype=self._feature_dtype)
        if self._normalize:
            norms = torch.linalg.vector_norm(self._features, dim=2)
            self._train_inv_norm = 1.0 / norms.clamp_min(torch.finfo(norms.dtype).tiny)

    def _scores(self, feats: list[Any]) -> Any:
        torch = _torch()
        total = None
        for s, f in enumerate(feats):
            if self._normalize:
                f = f / torch.linalg.vector_norm(f, dim=1, keepdim=True).clamp_min(
                    torch.finfo(f.dtype).tiny)
                part = (f @ self._train[s].T) * self._train_inv_norm[s]
            else:
                part = f @ self._train[s].T
            part = part * self._weights[s]
            total = part if total is None else total + part
        return total.to(_torch().float64)

    def _self_scores(self) -> np.ndarray:
        torch = _torch()
        if self._normalize:
            return np.full(self.n_train_, float(self.learning_rates_.sum()))
        sq = (self._train.to(torch.float64) ** 2).sum(2)  # (S, n)
        return (torch.as_tensor(self.learning_rates_, dtype=torch.float64) @ sq).cpu().numpy()


class GradDot(TracIn):
    """Grad-Dot: ``<grad L(z_t), grad L(z_i)>`` under one trained ``model`` (TracIn with one
    checkpoint and weight 1). Other parameters as :class:`TracIn`."""

    _normalized: ClassVar[bool] = False

    def __init__(self, model: Any, loss: Any = None, *, params: Any = None,
                 proj_dim: int | None = None, projection: str = "rademacher", random_state: int = 0,
                 batch_size: int = 256, dtype: Any = "float64", device: Any = None,
                 max_memory: float = 2**30, progress: bool | None = None,
                 batch_fn: Any = None, store: str | os.PathLike | None = None) -> None:
        self.model = model
        self.loss = loss
        self.params = params
        self.proj_dim = proj_dim
        self.projection = projection
        self.random_state = random_state
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.max_memory = max_memory
        self.progress = progress
        self.batch_fn = batch_fn
        self.store = store

    def _spec(self) -> tuple[Any, Any, Any, bool]:
        if isinstance(self.model, list | tuple):
            raise InvalidParameterError(
                f"{type(self).__name__} takes one trained model; for several checkpoints use "
                "TracIn.")
        return self.model, None, None, self._normalized


class GradCos(GradDot):
    """Grad-Cos: the cosine of ``grad L(z_t)`` and ``grad L(z_i)`` under one trained model
    (scale invariant: a training example with a huge gradient does not dominate)."""

    _normalized: ClassVar[bool] = True


# ============================================================================== TRAK
class TRAK(_Tracer):
    """TRAK: attribution through a linearised, randomly projected model (Park et al. 2023).

    For each model ``s`` of an ensemble (models trained independently, e.g. from different
    seeds or on different random halves of the data, or checkpoints), the features are the
    projected gradients of the model output ``f`` (the margin ``f_y(x) - logsumexp_{k != y}
    f_k(x)`` by default, Sec. 3.3), ``phi_s(z) = P^T grad f(z; theta_s)``; then

    ``scores[t, i] = (1/S) sum_s phi_s(z_t)^T (Phi_s^T Phi_s + lambda I)^{-1} phi_s(z_i)
    * (1/S) sum_s (1 - p_s(z_i))``

    (Algorithm 1: the two averages are taken separately). ``p`` is the predicted probability
    of the true label, so ``1 - p = -dL/df`` re-weights each training example by how much its
    loss still pulls on the output. Positive = ``z_i`` raises ``f(z_t)`` = helpful. With one
    model and no projection this is the Gauss-Newton influence of the linearised model with
    weights ``1 - p`` (the closed form the tests check).

    Parameters
    ----------
    models : module, estimator, state dict, path, or a list of them
        The ensemble (state dicts / files load into copies of ``module``).
    loss : callable or None
        Not needed for the margin (TRAK's output; ``-log sigmoid(margin)`` is the
        cross-entropy it re-weights); with a custom ``output``, the training loss.
    output : callable or None
        ``(outputs, targets) -> (b,)``: the output attributed, instead of the margin. Its
        training weights are then 1 unless ``weights`` says otherwise.
    weights : {"one-minus-p", "none"}
        The loss-to-output weights ``Q``: ``"one-minus-p"`` (TRAK's, for the margin) or none.
    proj_dim : int or None
        Projection dimension ``k`` (TRAK's default 2048; None or at least the number of
        parameters: no projection).
    projection : {"rademacher", "gaussian"}
        TRAK's code uses Rademacher entries (the paper's analysis Gaussian ones).
    random_state : int
        Seed of the projection (one matrix for every model, as TRAK does).
    damping : float
        ``lambda`` (TRAK's default 0). A rank-deficient ``Phi^T Phi`` (fewer training examples
        than ``proj_dim``) is pseudo-inverted.
    dtype : str or torch.dtype
        Of the features: ``"float32"`` by default (TRAK's choice; the kernel is inverted in
        float64).
    module, params, batch_size, device, max_memory, progress, batch_fn, store
        As in :class:`TracIn`.

    Attributes
    ----------
    out_to_loss_ : ndarray of shape (n_train,)
        ``(1/S) sum_s Q_s``.
    rank_ : list of int
        Rank of each model's kernel ``Phi_s^T Phi_s + lambda I`` as inverted.
    """

    _method = "trak"
    _output_name = "output"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        **_Tracer._parameter_constraints,
        "output": ["callable", None],
        "weights": [Options({"one-minus-p", "none"})],
        "damping": [Interval(float, 0, None)],
    }

    def __init__(self, models: Any, loss: Any = None, *, output: Any = None,
                 weights: str = "one-minus-p", module: Any = None, params: Any = None,
                 proj_dim: int | None = 2048, projection: str = "rademacher", random_state: int = 0,
                 damping: float = 0.0, batch_size: int = 256, dtype: Any = "float32",
                 device: Any = None, max_memory: float = 2**30, progress: bool | None = None,
                 batch_fn: Any = None, store: str | os.PathLike | None = None) -> None:
        self.models = models
        self.loss = loss
        self.output = output
        self.weights = weights
        self.module = module
        self.params = params
        self.proj_dim = proj_dim
        self.projection = projection
        self.random_state = random_state
        self.damping = damping
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = device
        self.max_memory = max_memory
        self.progress = progress
        self.batch_fn = batch_fn
        self.store = store

    def _check_own_params(self) -> None:
        if self.output is not None and self.weights == "one-minus-p":
            raise InvalidParameterError(
                "weights='one-minus-p' refers to the margin's probability; with a custom "
                "'output' give weights='none'.")

    def _model_list(self) -> list[Any]:
        return self._load_models(self.models, self.module, "models")

    def _loss(self) -> Any:
        return self.loss if self.loss is not None else margin_loss

    def _train_fn(self) -> Any:
        return self.output or margin

    def _query_fn(self, measure: Any) -> Any:
        if measure is not None:
            raise InvalidParameterError(
                "TRAK attributes its 'output' (the margin by default); set it in the "
                "constructor instead of passing 'measure'.")
        return self.output or margin

    def _settings(self) -> dict[str, Any]:
        from datavalue._core.fingerprint import describe_callable

        return {"output": "margin" if self.output is None else describe_callable(self.output),
                "weights": self.weights, "damping": float(self.damping)}

    def _finish_fit(self) -> None:
        torch = _torch()
        feats = self._features  # (S, n, k)
        self.rank_ = []
        if self.store_ is not None:
            def fill(target: Any) -> None:
                for s in range(self.n_models_):
                    target[s] = self._kernel_features(feats[s]).cpu().numpy()

            self._train = self._stored_features("train-kernel-features.npy", tuple(feats.shape), fill)
            ranks = self._stored_features("kernel-ranks.npy", (self.n_models_,),
                                 lambda t: t.__setitem__(slice(None), self.rank_))
            self.rank_ = [int(r) for r in ranks.tolist()]
            self._self = np.mean([self._self_part(self._train[s], feats[s])
                                  for s in range(self.n_models_)], axis=0)
        else:
            # In place: each model's features are replaced by its kernel features once its
            # self-scores are taken (one n x k buffer per model, not two).
            parts = []
            for s in range(self.n_models_):
                kernel = self._kernel_features(feats[s])
                parts.append(self._self_part(kernel, feats[s]))
                feats[s] = kernel
            self._self = np.mean(parts, axis=0)
            self._train = feats
            del self._features
        q = np.zeros(self.n_train_)
        if self.weights == "one-minus-p":
            for m in self.models_:
                out = []
                with torch.no_grad():
                    for _, xb, yb in self._data.blocks(self.batch_size):
                        out.append(torch.sigmoid(-margin(m.forward(m.params, xb), yb)))
                q += torch.cat(out).to(torch.float64).cpu().numpy()
            q /= self.n_models_
        else:
            q[:] = 1.0
        self.out_to_loss_ = q
        self._q = torch.as_tensor(q, dtype=torch.float64, device=self.models_[0].device)

    @staticmethod
    def _self_part(kernel: Any, f: Any) -> np.ndarray:
        torch = _torch()
        return (kernel.to(torch.float64) * f.to(torch.float64)).sum(1).cpu().numpy()

    def _gram(self, f: Any) -> Any:
        torch = _torch()
        f64 = f.to(torch.float64)
        xtx = f64.T @ f64
        xtx.diagonal().add_(float(self.damping))
        return f64, xtx

    def _kernel_features(self, f: Any) -> Any:
        """``Phi (Phi^T Phi + lambda I)^+``, what a test feature is multiplied with, in float64.

        A Cholesky solve when the kernel is well conditioned (measured 20x faster than an
        eigendecomposition at k = 2,048, which matters once per ensemble member); otherwise
        (fewer training examples than ``proj_dim``, or ``lambda = 0`` with collinear
        features) the pseudo-inverse through the eigendecomposition, eigenvalues below
        ``k eps lambda_max`` dropped."""
        torch = _torch()
        f64, xtx = self._gram(f)
        k = xtx.shape[0]
        eps = torch.finfo(torch.float64).eps
        chol, info = torch.linalg.cholesky_ex(xtx)
        if int(info) == 0:
            d = chol.diagonal()
            # Pivots above the pseudo-inverse's cutoff: the kernel is numerically of full rank,
            # so its pseudo-inverse is its inverse (a rank-deficient kernel fails here or
            # leaves a pivot of order eps).
            if float(d.min()) ** 2 > 10 * k * eps * float(d.max()) ** 2:
                self.rank_.append(k)
                return torch.cholesky_solve(f64.T, chol).T.to(self._feature_dtype)
        evals, evecs = torch.linalg.eigh(xtx)
        keep = evals > float(evals.max().clamp_min(0)) * k * eps
        self.rank_.append(int(keep.sum()))
        inv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
        return (f64 @ inv).to(self._feature_dtype)

    def _scores(self, feats: list[Any]) -> Any:
        torch = _torch()
        total = None
        for s, f in enumerate(feats):
            part = (f @ self._train[s].T).to(torch.float64)
            total = part if total is None else total + part
        return total * (self._q / self.n_models_)

    def _self_scores(self) -> np.ndarray:
        return self._self * self.out_to_loss_
