"""Solver interface: the Hessian operator a solver sees, the base class, errors."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from sklearn.exceptions import NotFittedError
from torch import Tensor

from datavalue._core.exceptions import (
    DatavalueError,
    InvalidDataError,
    InvalidParameterError,
)
from datavalue._core.validation import validate_params


class SolverError(DatavalueError, ArithmeticError):
    """An inverse-Hessian solver could not produce a meaningful answer (negative curvature,
    divergence, singular curvature without damping). The message says what to change."""


def kfac_layer_problem(layer: torch.nn.Module) -> str | None:
    """Why (E)K-FAC cannot factor ``layer`` (None if it can): ``nn.Linear``, and ``nn.Conv2d``
    with one group, zero padding given as numbers (the KFC expansion of its patches)."""
    if isinstance(layer, torch.nn.Linear):
        return None
    if isinstance(layer, torch.nn.Conv2d):
        if layer.groups != 1:
            return f"a Conv2d with groups={layer.groups}; (E)K-FAC supports groups=1."
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            return (f"a Conv2d with padding={layer.padding!r}, padding_mode="
                    f"{layer.padding_mode!r}; (E)K-FAC supports numeric zero padding.")
        return None
    return (f"a {type(layer).__name__}; (E)K-FAC supports torch.nn.Linear and torch.nn.Conv2d "
            "layers.")


@dataclass
class KFACSource:
    """What (E)K-FAC needs: the network's ``nn.Linear`` layers and the training batches.

    Attributes
    ----------
    module : torch.nn.Module
        The network (a scikit-learn linear model is wrapped as one ``nn.Linear``).
    layers : list of (str, torch.nn.Linear or torch.nn.Conv2d)
        The layers whose parameters are inverted, in flat-parameter order. Each must be applied
        exactly once per forward pass, a Linear to a 2-D input ``(batch, in_features)``, a
        Conv2d to a 4-D one.
    param_slices : list of (slice, slice or None)
        For each layer, the slice of the flat parameter vector holding its weight (row-major
        ``out x in``) and the slice holding its bias (None if the bias is absent or not chosen).
    batches : callable
        ``batches()`` iterates ``(x, y)`` over the whole training set (each call starts afresh).
    loss_fn : callable
        ``loss_fn(outputs, y)`` -> per-example losses (no reduction).
    output_kind : {"classification", "regression"}
        Classification outputs are logits (one column: sigmoid; several: softmax); used to sample
        targets from the predictive distribution (``fisher="true"`` with ``mc_samples``).
    l2 : float
        L2 coefficient of the objective (its Hessian ``l2 * I`` is added to every eigenvalue).
        A penalty that skips biases is then slightly over-counted on the bias coordinates.
    n_total : int or None
        Divide the summed statistics by this instead of the number of examples the batches
        hold (for an objective normalised by the full training set size while the batches cover
        a subset, e.g. after removing points).
    """

    module: torch.nn.Module
    layers: list[tuple[str, torch.nn.Linear]]
    param_slices: list[tuple[slice, slice | None]]
    batches: Callable[[], Iterable[tuple[Tensor, Tensor]]]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    output_kind: str = "classification"
    l2: float = 0.0
    n_total: int | None = None

    def __post_init__(self) -> None:
        if self.output_kind not in ("classification", "regression"):
            raise InvalidParameterError(
                "The 'output_kind' of KFACSource must be 'classification' or 'regression'. "
                f"Got {self.output_kind!r} instead."
            )
        if len(self.layers) != len(self.param_slices) or not self.layers:
            raise InvalidParameterError(
                "KFACSource needs one (weight slice, bias slice) per layer and at least one "
                f"layer; got {len(self.layers)} layers and {len(self.param_slices)} slices."
            )
        for name, layer in self.layers:
            problem = kfac_layer_problem(layer)
            if problem:
                raise InvalidParameterError(
                    f"KFACSource layer {name!r}: {problem} Use the cg, arnoldi or lissa solver "
                    "instead."
                )
        if self.n_total is not None and (
            isinstance(self.n_total, bool) or not isinstance(self.n_total, int) or self.n_total < 1
        ):
            raise InvalidParameterError(
                f"The 'n_total' of KFACSource must be an int >= 1 or None. Got {self.n_total!r}."
            )
        if not (isinstance(self.l2, int | float) and math.isfinite(self.l2) and self.l2 >= 0):
            raise InvalidParameterError(
                f"The 'l2' of KFACSource must be a float >= 0. Got {self.l2!r} instead."
            )


@dataclass
class HessianOperator:
    """What an inverse-Hessian solver may use; solvers return ``(H + damping I)^{-1} v``.

    ``H`` is the Hessian (or Gauss-Newton matrix) of the mean training objective at the
    fitted parameters, in the flat parameter convention (the chosen parameters concatenated in
    order, each flattened row-major).

    Attributes
    ----------
    n_params : int
        Number of parameters ``p``.
    matvec : callable
        ``matvec(v)`` with ``v`` of shape ``(k, p)`` returns ``H v`` for each row (full data).
    dense : callable or None
        ``dense()`` returns ``H`` as a ``(p, p)`` tensor, if affordable.
    batch_matvec : callable or None
        ``batch_matvec(v, idx)``: Hessian of the objective on the training examples ``idx``
        (a LongTensor) times each row of ``v`` (for stochastic LiSSA).
    n_samples : int
        Number of training examples (to sample minibatches).
    kfac : KFACSource or None
        Layers and data for (E)K-FAC.
    dtype, device
        Where solvers compute (float64 by default: influence is ill-conditioned).
    """

    n_params: int
    matvec: Callable[[Tensor], Tensor]
    dense: Callable[[], Tensor] | None = None
    batch_matvec: Callable[[Tensor, Tensor], Tensor] | None = None
    n_samples: int = 0
    kfac: KFACSource | None = None
    dtype: torch.dtype = torch.float64
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        if isinstance(self.n_params, bool) or not isinstance(self.n_params, int) or self.n_params < 1:
            raise InvalidParameterError(
                f"The 'n_params' of HessianOperator must be an int >= 1. Got {self.n_params!r}."
            )
        if not callable(self.matvec):
            raise InvalidParameterError("The 'matvec' of HessianOperator must be a callable.")
        self.device = torch.device(self.device)

    @classmethod
    def from_dense(cls, h: Tensor, **kwargs: Any) -> HessianOperator:
        """Operator of a symmetric matrix ``h`` (``kwargs`` go to the constructor)."""
        dtype = kwargs.pop("dtype", torch.float64)
        h = torch.as_tensor(h).to(dtype)
        if h.ndim != 2 or h.shape[0] != h.shape[1]:
            raise InvalidDataError(f"'h' must be a square matrix; got shape {tuple(h.shape)}.")
        h = (h + h.T) / 2
        return cls(
            n_params=int(h.shape[0]), matvec=lambda v: v @ h, dense=lambda: h, dtype=dtype,
            device=kwargs.pop("device", h.device), **kwargs,
        )


class Solver:
    """Base class: ``fit(op, damping)`` once, then ``solve(v)`` any number of times.

    Options are keyword arguments of the constructor, checked there against
    ``_constraints`` (an :class:`~datavalue._core.exceptions.InvalidParameterError` names the option).
    ``info_`` reports what happened (timings, iterations, residuals, rank, ...).
    """

    name: ClassVar[str] = ""
    _constraints: ClassVar[dict[str, list]] = {}

    def __init__(self) -> None:
        validate_params(f"solver {self.name!r}", self.get_options(), self._constraints)
        self.info_: dict[str, Any] = {}
        self._op: HessianOperator | None = None
        #: Called with the fraction of the current ``solve`` done, by solvers whose solve is
        #: long (LiSSA); set by the caller that shows progress.
        self.progress_hook: Callable[[float], None] | None = None
        self.damping_: float = 0.0

    @classmethod
    def option_names(cls) -> list[str]:
        return [n for n in inspect.signature(cls.__init__).parameters if n != "self"]

    def get_options(self) -> dict[str, Any]:
        """The constructor options (for provenance)."""
        return {n: getattr(self, n) for n in self.option_names()}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.get_options().items())
        return f"{type(self).__name__}({opts})"

    def fit(self, op: HessianOperator, damping: float = 0.0) -> Solver:
        """Precompute what solving needs for ``(H + damping I)``; returns ``self``."""
        if not isinstance(op, HessianOperator):
            raise InvalidParameterError(
                f"'op' must be a HessianOperator; got {type(op).__name__}."
            )
        if isinstance(damping, bool) or not isinstance(damping, int | float) or not (
            math.isfinite(damping) and damping >= 0
        ):
            raise InvalidParameterError(
                f"The 'damping' parameter must be a float >= 0. Got {damping!r} instead."
            )
        self._op, self.damping_ = op, float(damping)
        self.info_ = {"solver": self.name, "damping": self.damping_, "n_params": op.n_params}
        start = time.perf_counter()
        self._fit(op, self.damping_)
        self.info_["fit_time"] = time.perf_counter() - start
        self.info_["solve_time"] = 0.0
        return self

    def solve(self, v: Tensor) -> Tensor:
        """``(H + damping I)^{-1} v`` for each row of ``v`` (shape ``(k, p)`` or ``(p,)``)."""
        op = self._op
        if op is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(op, damping).")
        rows = torch.as_tensor(v).to(dtype=op.dtype, device=op.device)
        squeeze = rows.ndim == 1
        if squeeze:
            rows = rows.unsqueeze(0)
        if rows.ndim != 2 or rows.shape[1] != op.n_params:
            raise InvalidDataError(
                f"'v' must have shape (k, {op.n_params}) or ({op.n_params},); "
                f"got {tuple(torch.as_tensor(v).shape)}."
            )
        if not torch.isfinite(rows).all():
            raise InvalidDataError("'v' contains NaN or infinite values.")
        start = time.perf_counter()
        out = self._solve(rows) if rows.shape[0] else rows.clone()
        self.info_["solve_time"] = self.info_.get("solve_time", 0.0) + time.perf_counter() - start
        return out[0] if squeeze else out

    def factor(self) -> tuple[Tensor, Tensor] | None:
        """A low-rank form ``(U, d)`` of the fitted inverse, ``solve(v) = ((v Uᵀ) * d) U``, if
        the solver has one (None otherwise). Scores then factor through the rank-r space:
        ``<solve(q), g> = <(q Uᵀ) * d, g Uᵀ>``, and projected training gradients can be
        cached."""
        return None

    # -- saving what fit computed ---------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What :meth:`fit` computed, as tensors and plain values (lists, numbers, strings),
        for :meth:`restore` in this or another process (``torch.load(weights_only=True)`` reads
        it back). ``info_`` is not part of it."""
        if self._op is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(op, damping).")
        return self._state()

    def restore(self, op: HessianOperator, damping: float, state: dict[str, Any],
                info: dict[str, Any] | None = None) -> Solver:
        """Take the fitted state of an earlier :meth:`fit` on the same operator and damping
        (from :meth:`state`) instead of fitting again; solves are then bit-identical."""
        self._op, self.damping_ = op, float(damping)
        self.info_ = dict(info or {"solver": self.name, "damping": self.damping_,
                                   "n_params": op.n_params})
        self.info_.update(restored=True, solve_time=0.0)
        self._restore(op, {k: v.to(device=op.device) if isinstance(v, Tensor) else v
                           for k, v in state.items()})
        return self

    def _state(self) -> dict[str, Any]:
        return {}

    def _restore(self, op: HessianOperator, state: dict[str, Any]) -> None:
        pass

    def _fit(self, op: HessianOperator, damping: float) -> None:
        raise NotImplementedError

    def _solve(self, v: Tensor) -> Tensor:
        raise NotImplementedError


def _power_iteration(op: HessianOperator, n_iter: int, seed: int) -> float:
    """Largest |eigenvalue| of H by power iteration (Rayleigh quotient, from below)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, op.n_params, generator=gen, dtype=op.dtype).to(op.device)
    x = x / x.norm()
    estimate = 0.0
    for _ in range(n_iter):
        y = op.matvec(x)
        estimate = abs(float((x * y).sum()))
        norm = y.norm()
        if norm == 0:
            return 0.0
        x = y / norm
    return estimate
