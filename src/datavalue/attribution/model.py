"""A trained model as a pure function of its parameters, plus the objective it was trained on.

Influence functions (Koh & Liang 2017) need three things from a model: the per-example loss
``L(z, theta)``, the training objective whose Hessian is inverted, and the fitted parameters
``theta_hat`` (a stationary point of that objective). :class:`InfluenceModel` holds all three in
functional form (:func:`torch.func.functional_call`), so per-example gradients, Hessian-vector
products and input gradients all come from the same parameter dictionary.

Two kinds of models are wrapped by :func:`wrap_model`:

- a fitted scikit-learn linear model, taken over exactly, with the estimator's own
  regularisation. scikit-learn minimises ``C * sum_i loss_i + ||w||^2 / 2``; we use the same
  objective divided by ``C n``, the *mean* objective ``(1/n) sum_i loss_i + ||w||^2 / (2 C n)``,
  whose minimiser is the same and whose Hessian is the ``H`` of Koh & Liang (Sec. 2). The
  regulariser keeps the original ``n`` when points are removed, so dropping ``z_i`` is exactly the
  up-weighting ``epsilon = -1/n`` of the paper and predictions compare to refitting the estimator.
- a trained :class:`torch.nn.Module` with a loss, optionally restricted to some parameters
  (the others are frozen constants), with optional L2 weight decay ``(lambda / 2) ||theta||^2``.

References
----------
P. W. Koh and P. Liang. Understanding black-box predictions via influence functions. ICML 2017.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue.attribution.losses import smooth_hinge

__all__ = [
    "ParamLayout",
    "InfluenceModel",
    "smooth_hinge",
    "SUPPORTED_ESTIMATORS",
]

#: scikit-learn estimators :func:`wrap_model` takes over (binary or multinomial where noted).
SUPPORTED_ESTIMATORS: tuple[str, ...] = (
    "LogisticRegression (binary, multinomial; l2 or no penalty)",
    "LinearRegression",
    "Ridge",
    "LinearSVC (binary; hinge through the smooth hinge, or squared_hinge as is)",
    "SVC(kernel='linear') (binary; through the smooth hinge)",
)


# ---------------------------------------------------------------------------- flat parameters
@dataclass(frozen=True)
class ParamLayout:
    """How the chosen parameters map to one flat vector: concatenated in ``names`` order, each
    flattened row-major (``tensor.reshape(-1)``), the convention every solver uses."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s)) if len(s) else 1 for s in self.shapes)

    @property
    def n_params(self) -> int:
        return int(sum(self.numels))

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, k in zip(self.names, self.numels, strict=True):
            out[name] = slice(start, start + k)
            start += k
        return out

    def flatten(self, tensors: Mapping[str, Tensor], batch_dims: int = 0) -> Tensor:
        """Concatenate ``tensors`` (each of shape ``(*batch, *shape)``) to ``(*batch, p)``."""
        parts = [tensors[n] for n in self.names]
        lead = parts[0].shape[:batch_dims]
        return torch.cat([t.reshape(*lead, -1) for t in parts], dim=-1)

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Split ``(..., p)`` into named tensors of shape ``(..., *shape)`` (views)."""
        lead = flat.shape[:-1]
        out, start = {}, 0
        for name, shape, k in zip(self.names, self.shapes, self.numels, strict=True):
            out[name] = flat[..., start : start + k].reshape(*lead, *shape)
            start += k
        return out


# ---------------------------------------------------------------------------- the wrapper
class InfluenceModel:
    """A model as ``outputs = f(params, x)`` and ``L(z) = loss(f(params, x), y)``.

    Attributes
    ----------
    module : torch.nn.Module
        The network (a private float copy; scikit-learn models become one ``nn.Linear``).
    params : dict[str, Tensor]
        The parameters influence is taken with respect to, at ``theta_hat`` (detached).
    frozen : dict[str, Tensor]
        Every other parameter and buffer, used as constants.
    layout : ParamLayout
        Flat-vector order of ``params``.
    loss : callable
        ``(outputs, targets) -> (b,)`` per-example losses (unweighted, no regulariser).
    regularizer : callable or None
        Extra term of the mean objective, a function of ``params``.
    output_kind : str or None
        ``"classification"`` (logits; one logit = sigmoid), ``"regression"`` (squared error),
        ``"other"`` (the SVM losses: no predictive distribution) or None (a user loss: inferred
        from the targets' dtype): how a Fisher/K-FAC solver should sample outputs.
    kind : str
        What was wrapped, e.g. ``"LogisticRegression"`` or ``"torch"``.
    """

    def __init__(
        self,
        module: nn.Module,
        params: dict[str, Tensor],
        frozen: dict[str, Tensor],
        loss: Callable[[Tensor, Tensor], Tensor],
        *,
        regularizer: Callable[[Mapping[str, Tensor]], Tensor] | None,
        output_kind: str | None,
        kind: str,
        source: Any,
        classes: np.ndarray | None = None,
        linear_in_params: bool = False,
        l2: float = 0.0,
        notes: Sequence[str] = (),
    ) -> None:
        self.module = module
        self.params = params
        self.frozen = frozen
        self.layout = ParamLayout(tuple(params), tuple(p.shape for p in params.values()))
        self.loss = loss
        self.regularizer = regularizer or None
        self.output_kind = output_kind
        self.kind = kind
        self.source = source
        self.classes = classes
        self.linear_in_params = linear_in_params
        self.notes = list(notes)
        #: L2 coefficient of the weights in the mean objective (given to (E)K-FAC).
        self.l2 = float(l2)
        first = next(iter(params.values()))
        self.dtype = first.dtype
        self.device = first.device

    # -- the functions everything else differentiates
    @property
    def n_params(self) -> int:
        return self.layout.n_params

    @property
    def theta(self) -> Tensor:
        """Flat fitted parameters ``theta_hat``."""
        return self.layout.flatten(self.params)

    def forward(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.module, (dict(params), self.frozen), (x,))

    def losses(self, params: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Per-example losses ``(b,)`` of the batch ``(x, y)``."""
        return self.loss(self.forward(params, x), y)

    def example_loss(self, params: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Loss of one example (``x``, ``y`` without the batch dimension), a scalar."""
        return self.losses(params, x.unsqueeze(0), y.unsqueeze(0)).sum()

    def regularization(self, params: Mapping[str, Tensor]) -> Tensor:
        if self.regularizer is None:
            return torch.zeros((), dtype=self.dtype, device=self.device)
        return self.regularizer(params)

    # -- data
    def prepare(self, x: Any, y: Any, x_name: str, y_name: str) -> tuple[Tensor, Tensor]:
        """Validate ``x``, ``y`` once and return them as tensors on the model's device."""
        if self.kind == "torch":
            return _prepare_torch(x, y, x_name, y_name, self.dtype, self.device)
        return _prepare_sklearn(self, x, y, x_name, y_name)

    # -- back to the user's world
    def export(self, flat: Tensor) -> Any:
        """A copy of the original model with parameters ``flat`` (scikit-learn estimator or
        module), or ``None`` when the estimator does not allow setting them (SVC)."""
        new = {k: v.detach() for k, v in self.layout.unflatten(flat).items()}
        if self.kind == "torch":
            module = copy.deepcopy(self.source)
            with torch.no_grad():
                named = dict(module.named_parameters())
                for name, value in new.items():
                    named[name].copy_(value.to(named[name].dtype))
            return module
        if self.kind == "SVC":
            return None
        est = copy.deepcopy(self.source)
        w = new["weight"].cpu().numpy().astype(np.float64)
        b = new["bias"].cpu().numpy().astype(np.float64) if "bias" in new else np.zeros(len(w))
        if self.kind in ("LinearRegression", "Ridge"):
            est.coef_, est.intercept_ = w[0], float(b[0])
        else:
            est.coef_, est.intercept_ = w, b
        return est

    def kfac_layers(
        self,
    ) -> tuple[list[tuple[str, nn.Module]], list[tuple[slice, slice | None]]] | None:
        """The ``nn.Linear`` and ``nn.Conv2d`` layers holding every chosen parameter, in flat
        order, with the slices of their weight and bias; ``None`` if some parameter is not in
        such a layer."""
        slices = self.layout.slices()
        layers, param_slices, seen = [], [], []
        from datavalue.attribution.solvers.base import kfac_layer_problem

        for mod_name, mod in self.module.named_modules():
            if not isinstance(mod, nn.Linear | nn.Conv2d) or kfac_layer_problem(mod):
                continue
            prefix = f"{mod_name}." if mod_name else ""
            w, b = prefix + "weight", prefix + "bias"
            if w not in slices:
                if b in slices:
                    return None  # a bias without its weight: not a Kronecker block
                continue
            layers.append((mod_name, mod))
            param_slices.append((slices[w], slices.get(b)))
            seen += [w] + ([b] if b in slices else [])
        if sorted(seen) != sorted(self.layout.names):
            return None
        # The flat order must be weight, bias of each layer in turn.
        order = [s.start for pair in param_slices for s in pair if s is not None]
        if order != sorted(order):
            return None
        return layers, param_slices


# ---------------------------------------------------------------------------- data preparation
def _as_tensor(a: Any) -> Tensor:
    """A tensor sharing memory with ``a`` when possible; read-only arrays (e.g. a frozen
    :class:`~datavalue.Dataset`'s) are copied, since torch cannot wrap them safely."""
    if isinstance(a, Tensor):
        return a.detach()
    arr = np.asarray(a)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.as_tensor(arr)


def _prepare_torch(x, y, x_name, y_name, dtype, device) -> tuple[Tensor, Tensor]:
    xt, yt = _as_tensor(x), _as_tensor(y)
    if xt.ndim == 0 or xt.shape[0] == 0:
        raise InvalidDataError(
            f"'{x_name}' must be an array with one row per example; got shape "
            f"{tuple(xt.shape)}."
        )
    if yt.ndim == 0 or yt.shape[0] != xt.shape[0]:
        raise InvalidDataError(
            f"'{y_name}' has {yt.shape[0] if yt.ndim else 0} entries but '{x_name}' has "
            f"{xt.shape[0]} rows; they must have the same length."
        )
    if yt.ndim == 2 and yt.shape[1] == 1 and not yt.is_floating_point():
        # Class indices collated as (b, 1) (a DataLoader of one-element label lists or a
        # column vector): torch's classification losses want (b,) and fail with an
        # AssertionError that does not say which argument is wrong.
        yt = yt[:, 0]
    for t, name in ((xt, x_name), (yt, y_name)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InvalidDataError(f"'{name}' contains NaN or infinite values.")
    if xt.is_floating_point():
        xt = xt.to(dtype)
    if yt.is_floating_point():
        yt = yt.to(dtype)
    return xt.to(device), yt.to(device)


def _prepare_sklearn(model: InfluenceModel, x, y, x_name, y_name) -> tuple[Tensor, Tensor]:
    from datavalue._core.validation import check_features, check_magnitude, check_target

    xa = check_features(x, x_name)
    check_magnitude(xa, x_name, "influence (gradients and the Hessian)")
    n_features = model.module.in_features
    if xa.shape[1] != n_features:
        raise InvalidDataError(
            f"'{x_name}' has {xa.shape[1]} features but the model was fitted on {n_features}."
        )
    ya = check_target(y, y_name, n_samples=xa.shape[0], x_name=x_name)
    if model.classes is None:
        yt = torch.as_tensor(ya.astype(np.float64), dtype=model.dtype)
    else:
        classes = model.classes
        unknown = ~np.isin(ya, classes)
        if unknown.any():
            raise InvalidDataError(
                f"'{y_name}' contains labels the model was not fitted on: "
                f"{np.unique(ya[unknown])[:5].tolist()} (model classes: {classes.tolist()})."
            )
        yt = torch.as_tensor(np.searchsorted(classes, ya).astype(np.int64))
    return _as_tensor(xa).to(dtype=model.dtype, device=model.device), yt.to(model.device)


def check_device(device: Any) -> Any:
    """``device`` as a torch.device that exists on this machine (None stays None), or a clear
    error naming it (torch itself fails late, with an AssertionError for a missing GPU)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"The 'device' parameter must name a torch device such as 'cpu' or 'cuda:0'. Got "
            f"{device!r}."
        ) from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index is not None and dev.index >= count):
            have = "no CUDA GPU" if count == 0 else f"{count} CUDA GPU(s) (cuda:0..{count - 1})"
            raise InvalidParameterError(
                f"The 'device' parameter is {device!r}, but this machine has {have}; use "
                "device='cpu' or None."
            )
    elif dev.type not in ("cpu", "meta") and not getattr(torch, dev.type, None):
        raise InvalidParameterError(f"The 'device' {device!r} is not available here.")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidParameterError(f"The 'device' {device!r} is not available here.")
    return dev
