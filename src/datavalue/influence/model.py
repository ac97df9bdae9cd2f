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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit
from threadpoolctl import threadpool_limits
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..exceptions import InvalidDataError, InvalidModelError, InvalidParameterError

__all__ = [
    "ParamLayout",
    "InfluenceModel",
    "wrap_model",
    "smooth_hinge",
    "fit_smooth_hinge_svm",
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


# ---------------------------------------------------------------------------- losses
def smooth_hinge(margin: Tensor, temperature: float) -> Tensor:
    """Smooth hinge of Koh & Liang (2017, Sec. 4.1): ``t log(1 + exp((1 - s) / t))``.

    Tends to ``max(0, 1 - s)`` as ``t -> 0``; twice differentiable for ``t > 0``.
    """
    # softplus is linear above its threshold: exp(-35) is below float64 resolution there, and
    # unlike logaddexp its second derivative has no inf * 0 for large arguments.
    return temperature * nn.functional.softplus((1.0 - margin) / temperature, threshold=35.0)


class _BinaryLogLoss:
    """Log-loss of one logit (scikit-learn's binary logistic regression), per example."""

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        z = out[..., 0]
        return nn.functional.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none")


class _SoftmaxLoss:
    """Cross-entropy over K logits (multinomial logistic regression), per example."""

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(out, y, reduction="none")


class _SquaredError:
    """``(y - f(x))^2``: the per-example term of scikit-learn's least squares objectives."""

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        return (out[..., 0] - y) ** 2


class _SmoothHingeLoss:
    """Smooth hinge of the signed margin ``s = y_pm f(x)``, labels 0/1 mapped to -1/+1."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        sign = 2.0 * y.to(out.dtype) - 1.0
        return smooth_hinge(sign * out[..., 0], self.temperature)


class _SquaredHinge:
    """``max(0, 1 - s)^2``, LinearSVC's default loss (differentiable once; Hessian a.e.)."""

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        sign = 2.0 * y.to(out.dtype) - 1.0
        return torch.clamp(1.0 - sign * out[..., 0], min=0.0) ** 2


class _UserLoss:
    """A user loss ``(outputs, targets) -> loss`` made per-example.

    The loss is called on one example at a time (a batch of one, vectorised with ``vmap``), so a
    loss with ``reduction="mean"``, ``"sum"`` or ``"none"`` gives the same per-example values.
    """

    def __init__(self, loss: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.loss = loss

    def one(self, out: Tensor, y: Tensor) -> Tensor:
        return self.loss(out.unsqueeze(0), y.unsqueeze(0)).sum()

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        return vmap(self.one)(out, y)


# ---------------------------------------------------------------------------- regularisers
class _L2:
    """``sum_name (strength_name / 2) ||theta_name||^2`` plus optional gauge terms.

    The gauge term ``(kappa / 2K) ||sum_k theta_k||^2`` (rows of a multinomial weight or
    intercept) fixes the one direction along which the softmax loss is flat (adding a constant to
    every class): it is zero with zero gradient at our centred parameters and leaves every
    influence unchanged, because every loss gradient is orthogonal to that direction; it only
    makes the Hessian invertible there.
    """

    def __init__(self, strengths: Mapping[str, float], gauges: Mapping[str, float]) -> None:
        self.strengths = {k: float(v) for k, v in strengths.items() if v > 0}
        self.gauges = {k: float(v) for k, v in gauges.items() if v > 0}

    def __bool__(self) -> bool:
        return bool(self.strengths or self.gauges)

    def hvp(self, v: Mapping[str, Tensor], batch_dims: int = 0) -> dict[str, Tensor]:
        """The (constant) Hessian of this quadratic times ``v`` (named tensors, each with
        ``batch_dims`` leading batch dimensions), in closed form: cheaper than differentiating
        twice (a quarter of a minibatch HVP's time on the digits MLP)."""
        out = {}
        for name, t in v.items():
            h = self.strengths.get(name, 0.0) * t
            kappa = self.gauges.get(name)
            if kappa is not None:  # class rows are the first axis of the parameter
                summed = t.sum(dim=batch_dims, keepdim=True)
                h = h + (kappa / t.shape[batch_dims]) * summed.expand_as(t)
            out[name] = h
        return out

    def __call__(self, params: Mapping[str, Tensor]) -> Tensor:
        total = 0.0
        for name, lam in self.strengths.items():
            total = total + 0.5 * lam * (params[name] ** 2).sum()
        for name, kappa in self.gauges.items():
            p = params[name]
            total = total + 0.5 * kappa / p.shape[0] * (p.sum(dim=0) ** 2).sum()
        return total


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
    ) -> tuple[list[tuple[str, nn.Linear]], list[tuple[slice, slice | None]]] | None:
        """The ``nn.Linear`` layers holding every chosen parameter, in flat order, with the
        slices of their weight and bias; ``None`` if some parameter is not in such a layer."""
        slices = self.layout.slices()
        layers, param_slices, seen = [], [], []
        for mod_name, mod in self.module.named_modules():
            if not isinstance(mod, nn.Linear):
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
    for t, name in ((xt, x_name), (yt, y_name)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InvalidDataError(f"'{name}' contains NaN or infinite values.")
    if xt.is_floating_point():
        xt = xt.to(dtype)
    if yt.is_floating_point():
        yt = yt.to(dtype)
    return xt.to(device), yt.to(device)


def _prepare_sklearn(model: InfluenceModel, x, y, x_name, y_name) -> tuple[Tensor, Tensor]:
    from .._validation import check_features, check_target

    xa = check_features(x, x_name)
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


# ---------------------------------------------------------------------------- torch modules
def _select_params(module: nn.Module, params: Any) -> list[str]:
    named = dict(module.named_parameters())
    if params is None:
        chosen = [n for n, p in named.items() if p.requires_grad]
    elif isinstance(params, nn.Module):
        return _select_params(module, [params])
    elif isinstance(params, str):
        return _select_params(module, [params])
    elif isinstance(params, Iterable):
        items = list(params)
        ids = {id(p): n for n, p in named.items()}
        chosen_set: set[str] = set()
        for item in items:
            if isinstance(item, str):
                if item in named:
                    chosen_set.add(item)
                else:  # a module name selects all its parameters
                    sub = [n for n in named if n.startswith(item + ".")]
                    if not sub:
                        raise InvalidParameterError(
                            f"The 'params' parameter names {item!r}, which is neither a "
                            "parameter nor a submodule of the model. Parameters: "
                            + ", ".join(list(named)[:8])
                            + (" ..." if len(named) > 8 else "")
                        )
                    chosen_set.update(sub)
            elif isinstance(item, nn.Module):
                found = [ids[id(p)] for p in item.parameters() if id(p) in ids]
                if not found:
                    raise InvalidParameterError(
                        f"The 'params' parameter contains a {type(item).__name__} module that is "
                        "not part of the model (or has no parameters)."
                    )
                chosen_set.update(found)
            else:
                raise InvalidParameterError(
                    "The 'params' parameter must be None, parameter or module names, or "
                    f"submodules of the model. Got an item of type {type(item).__name__}."
                )
        chosen = [n for n in named if n in chosen_set]  # model order, not the user's order
    else:
        raise InvalidParameterError(
            "The 'params' parameter must be None, a list of parameter/module names or a list of "
            f"submodules. Got {type(params).__name__}."
        )
    if not chosen:
        raise InvalidParameterError(
            "No parameters to take influence with respect to: the model has no parameter with "
            "requires_grad=True, or 'params' selected none."
        )
    return chosen


def _wrap_torch(
    module: nn.Module, loss: Callable | None, params: Any, weight_decay: float, dtype, device
) -> InfluenceModel:
    if loss is None or not callable(loss):
        raise InvalidParameterError(
            "The 'loss' parameter is required for a torch module: a callable "
            "(outputs, targets) -> loss, e.g. torch.nn.CrossEntropyLoss(). Got "
            f"{loss!r}."
        )
    if device is None:
        first = next(module.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    names = _select_params(module, params)  # on the caller's module: params may be its submodules
    work = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    named = dict(work.named_parameters())
    chosen = {n: named[n].detach() for n in names}
    frozen = {n: p.detach() for n, p in named.items() if n not in chosen}
    frozen.update({n: b for n, b in work.named_buffers()})
    reg = _L2({n: weight_decay for n in names}, {}) if weight_decay > 0 else None
    kind_of_loss = type(loss).__name__
    if kind_of_loss in ("CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss") or loss in (
        nn.functional.cross_entropy,
        nn.functional.binary_cross_entropy_with_logits,
    ):
        output_kind = "classification"
    elif kind_of_loss == "MSELoss" or loss is nn.functional.mse_loss:
        output_kind = "regression"
    else:
        output_kind = None
    return InfluenceModel(
        work,
        chosen,
        frozen,
        _UserLoss(loss),
        regularizer=reg,
        output_kind=output_kind,
        kind="torch",
        source=module,
        l2=weight_decay,
    )


# ---------------------------------------------------------------------------- scikit-learn
def _estimator_kind(est: Any) -> str:
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.svm import SVC, LinearSVC

    for cls in (LogisticRegression, LinearRegression, Ridge, LinearSVC, SVC):
        if type(est) is cls:
            return cls.__name__
    raise InvalidModelError(
        f"Influence functions support a trained torch.nn.Module or one of these fitted "
        f"scikit-learn estimators: {'; '.join(SUPPORTED_ESTIMATORS)}. Got {type(est).__name__}."
    )


def _logistic_penalty(est: Any) -> str | None:
    """The penalty a fitted LogisticRegression used (scikit-learn >= 1.8 derives it from
    ``l1_ratio`` and ``C``; older versions read ``penalty``)."""
    penalty = getattr(est, "penalty", "l2")
    if penalty == "deprecated":
        l1_ratio = getattr(est, "l1_ratio", 0.0)
        penalty = "l2" if l1_ratio in (0, None) else ("l1" if l1_ratio == 1 else "elasticnet")
        if est.C == np.inf:
            penalty = None
    if penalty in ("none",):
        penalty = None
    return penalty


def _no_weights(est: Any, kind: str) -> None:
    if getattr(est, "class_weight", None) is not None:
        raise InvalidModelError(
            f"{kind}(class_weight={est.class_weight!r}) is not supported: the weighted objective "
            "differs from the per-example loss influence is measured in. Refit with "
            "class_weight=None."
        )


def _linear_module(w: np.ndarray, b: np.ndarray | None, dtype, device) -> nn.Linear:
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=dtype, device=device)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=dtype))
        if b is not None:
            layer.bias.copy_(torch.as_tensor(b, dtype=dtype))
    return layer.eval()


def _wrap_sklearn(
    est: Any,
    x_train: np.ndarray | None,
    y_train: np.ndarray | None,
    *,
    n_train: int,
    temperature: float,
    dtype,
    device,
) -> InfluenceModel:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    kind = _estimator_kind(est)
    try:
        check_is_fitted(est)
    except NotFittedError as exc:
        raise InvalidModelError(
            f"The {kind} passed as 'model' is not fitted: call model.fit(x_train, y_train) "
            "first (influence functions explain a trained model)."
        ) from exc
    device = torch.device("cpu") if device is None else torch.device(device)
    n = float(n_train)
    fit_intercept = bool(getattr(est, "fit_intercept", True))
    notes: list[str] = []
    classes = None
    gauges: dict[str, float] = {}
    strengths: dict[str, float] = {}

    if kind in ("LinearRegression", "Ridge"):
        if getattr(est, "positive", False):
            raise InvalidModelError(f"{kind}(positive=True) is a constrained fit; not supported.")
        coef = np.asarray(est.coef_, dtype=np.float64)
        if coef.ndim != 1:
            raise InvalidModelError(
                f"{kind} was fitted on a 2-D target ({coef.shape[0]} outputs); influence "
                "functions need one target. Fit one model per output."
            )
        w = coef[None, :]
        b = np.array([float(est.intercept_)]) if fit_intercept else None
        loss: Callable = _SquaredError()
        output_kind = "regression"
        if kind == "Ridge":
            alpha = np.asarray(est.alpha, dtype=np.float64)
            if alpha.size != 1:
                raise InvalidModelError("Ridge with one alpha per target is not supported.")
            # Ridge: ||y - Xw - b||^2 + alpha ||w||^2 (intercept not penalised) -> divide by n.
            strengths["weight"] = 2.0 * float(alpha) / n
    elif kind == "LogisticRegression":
        _no_weights(est, kind)
        penalty = _logistic_penalty(est)
        if penalty not in ("l2", None):
            raise InvalidModelError(
                f"LogisticRegression with a {penalty!r} penalty is not differentiable; influence "
                "functions need the 'l2' penalty (l1_ratio=0) or none (C=np.inf)."
            )
        classes = np.asarray(est.classes_)
        n_classes = len(classes)
        solver = getattr(est, "solver", "lbfgs")
        one_vs_rest = getattr(est, "multi_class", "auto") == "ovr" or solver == "liblinear"
        if n_classes > 2 and one_vs_rest:
            raise InvalidModelError(
                "A one-vs-rest LogisticRegression is K separate models; refit it as a "
                "multinomial model (solver='lbfgs') or explain one binary model at a time."
            )
        w = np.asarray(est.coef_, dtype=np.float64).copy()
        b = np.asarray(est.intercept_, dtype=np.float64).copy() if fit_intercept else None
        if penalty == "l2":
            lam = 1.0 / (est.C * n)
            strengths["weight"] = lam
            if fit_intercept and solver == "liblinear":
                # liblinear appends a constant feature `intercept_scaling` and penalises its
                # weight: b = s * w_{d+1}, so the penalty is b^2 / (2 s^2).
                strengths["bias"] = lam / float(est.intercept_scaling) ** 2
        if n_classes == 2:
            loss = _BinaryLogLoss()
        else:
            loss = _SoftmaxLoss()
            # Softmax is invariant to adding one vector to every class: centre (changes no
            # prediction) and fix that direction with a gauge term (see _L2).
            w -= w.mean(axis=0, keepdims=True)
            if b is not None:
                b -= b.mean()
            scale = strengths.get("weight", 1.0 / n)
            if "weight" not in strengths:
                gauges["weight"] = scale
            if b is not None and "bias" not in strengths:
                gauges["bias"] = scale
        output_kind = "classification"
    else:  # LinearSVC, SVC
        _no_weights(est, kind)
        classes = np.asarray(est.classes_)
        if len(classes) != 2:
            raise InvalidModelError(
                f"{kind} with {len(classes)} classes is several one-vs-rest/one-vs-one models; "
                "influence functions support binary SVMs only."
            )
        if kind == "SVC" and est.kernel != "linear":
            raise InvalidModelError(
                f"SVC(kernel={est.kernel!r}) has no finite parameter vector; only "
                "SVC(kernel='linear') is supported."
            )
        if kind == "LinearSVC":
            if est.penalty != "l2":
                raise InvalidModelError("LinearSVC(penalty='l1') is not differentiable; use 'l2'.")
            if getattr(est, "multi_class", "ovr") == "crammer_singer":
                raise InvalidModelError("LinearSVC(multi_class='crammer_singer') is not supported.")
        w = np.asarray(est.coef_, dtype=np.float64).copy()
        b = np.asarray(est.intercept_, dtype=np.float64).copy() if fit_intercept else None
        lam = 1.0 / (est.C * n)
        strengths["weight"] = lam
        # liblinear (LinearSVC) penalises the intercept like LogisticRegression(liblinear);
        # libsvm (SVC) does not.
        bias_penalty = 0.0
        if kind == "LinearSVC" and fit_intercept:
            bias_penalty = 1.0 / float(est.intercept_scaling) ** 2
            strengths["bias"] = lam * bias_penalty
        output_kind = "other"
        if kind == "LinearSVC" and est.loss == "squared_hinge":
            loss = _SquaredHinge()
            notes.append(
                "squared hinge taken over as is (differentiable once; its Hessian is used "
                "almost everywhere); 'temperature' is not used"
            )
        else:
            loss = _SmoothHingeLoss(temperature)
            if x_train is None or y_train is None:
                raise InvalidModelError(
                    f"A hinge-loss {kind} is explained through the smooth hinge, which needs the "
                    "training data to refit the smoothed objective."
                )
            xa, ya = np.asarray(x_train, dtype=np.float64), np.asarray(y_train)
            if xa.ndim != 2 or xa.shape[1] != w.shape[1]:
                raise InvalidDataError(
                    f"'x_train' has shape {xa.shape} but the model was fitted on {w.shape[1]} "
                    "features."
                )
            if not np.isin(ya, classes).all():
                raise InvalidDataError(
                    "'y_train' contains labels the model was not fitted on "
                    f"(model classes: {classes.tolist()})."
                )
            w1, b1 = fit_smooth_hinge_svm(
                xa,
                (ya == classes[1]).astype(np.float64),
                C=float(est.C),
                temperature=temperature,
                fit_intercept=fit_intercept,
                intercept_penalty=bias_penalty,
                init=(w[0], float(b[0]) if b is not None else 0.0),
            )
            w = w1[None, :]
            b = np.array([b1]) if fit_intercept else None
            notes.append(
                f"hinge replaced by the smooth hinge (temperature={temperature:g}, Koh & Liang "
                "2017 Sec. 4.1) and the smoothed objective refitted: theta_hat is its minimiser, "
                "not the estimator's coef_"
            )
    module = _linear_module(w, b, dtype, device)
    params = {n: p.detach() for n, p in module.named_parameters()}
    return InfluenceModel(
        module,
        params,
        {},
        loss,
        regularizer=_L2(strengths, gauges) or None,
        output_kind=output_kind,
        kind=kind,
        source=est,
        classes=classes,
        linear_in_params=True,
        l2=strengths.get("weight", 0.0),
        notes=notes,
    )


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


# ---------------------------------------------------------------------------- smooth-hinge SVM
def fit_smooth_hinge_svm(
    x: np.ndarray,
    y: np.ndarray,
    *,
    C: float = 1.0,
    temperature: float = 0.1,
    fit_intercept: bool = True,
    intercept_penalty: float = 0.0,
    init: tuple[np.ndarray, float] | None = None,
    tol: float = 1e-11,
    max_iter: int = 500,
) -> tuple[np.ndarray, float]:
    """Minimise ``||w||^2 / 2 + intercept_penalty b^2 / 2 + C sum_i SmoothHinge(s_i, t)``.

    ``s_i = y_i (w.x_i + b)`` with labels ``y`` in {0, 1} mapped to {-1, +1} and
    ``SmoothHinge(s, t) = t log(1 + exp((1 - s) / t))`` (Koh & Liang 2017, Sec. 4.1); this is the
    LinearSVC/SVC objective with the hinge smoothed (``intercept_penalty=1/intercept_scaling^2``
    for LinearSVC, 0 for SVC). The objective is convex and smooth; from ``init`` (or an L-BFGS
    start) Newton's method with a backtracking line search runs to a gradient norm of ``tol``
    relative to ``C n`` or a Newton step below ``1e-13``, so that refits without a point (warm
    started from the full solution) are accurate to ~1e-10 and take a few milliseconds.

    Returns
    -------
    coef : ndarray of shape (d,)
    intercept : float (0.0 without intercept)
    """
    # Small dense problems: one BLAS thread (and no spin-wait contention with torch's OpenMP
    # pool, which made each solve ~30x slower on two cores).
    with threadpool_limits(1, user_api="blas"):
        return _fit_smooth_hinge(
            x, y, C, temperature, fit_intercept, intercept_penalty, init, tol, max_iter
        )


def _fit_smooth_hinge(x, y, C, temperature, fit_intercept, intercept_penalty, init, tol,
                      max_iter) -> tuple[np.ndarray, float]:
    x = np.asarray(x, dtype=np.float64)
    sign = np.where(np.asarray(y) > 0, 1.0, -1.0)
    n, d = x.shape
    z = sign[:, None] * (np.hstack([x, np.ones((n, 1))]) if fit_intercept else x)
    reg = np.ones(z.shape[1])
    if fit_intercept:
        reg[-1] = intercept_penalty
    t = float(temperature)

    def fun(theta):
        u = (1.0 - z @ theta) / t
        val = 0.5 * np.sum(reg * theta**2) + C * t * np.logaddexp(0.0, u).sum()
        grad = reg * theta - C * z.T @ expit(u)
        return val, grad

    def hess(theta):
        u = (1.0 - z @ theta) / t
        s = expit(u)
        return np.diag(reg) + (C / t) * (z.T * (s * (1.0 - s))) @ z

    if init is None:
        # A cheap start far from the optimum; Newton's method then converges quadratically.
        res = minimize(fun, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B",
                       options={"maxiter": 5000, "gtol": 1e-8})
        theta = res.x
    else:
        theta = np.concatenate([np.asarray(init[0], dtype=np.float64).ravel(), [init[1]]])
        theta = theta if fit_intercept else theta[:d]
    scale = C * n
    val, grad = fun(theta)
    for _ in range(max_iter):
        if np.linalg.norm(grad) <= tol * scale:
            break
        h = hess(theta)
        try:
            step = np.linalg.solve(h, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(h, grad, rcond=None)[0]
        decrease = float(grad @ step)
        alpha = 1.0
        for _halving in range(60):  # backtracking (Armijo)
            new_val, new_grad = fun(theta - alpha * step)
            if new_val <= val - 1e-4 * alpha * decrease:
                break
            alpha *= 0.5
        else:
            break  # no decrease left at machine precision
        theta = theta - alpha * step
        val, grad = new_val, new_grad
        if alpha == 1.0 and np.abs(step).max() <= 1e-13 * (1.0 + np.abs(theta).max()):
            break
    if fit_intercept:
        return theta[:d].copy(), float(theta[d])
    return theta.copy(), 0.0
