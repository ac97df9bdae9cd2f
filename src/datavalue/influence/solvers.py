"""Inverse-Hessian-vector products for influence functions: exact, CG, LiSSA, Arnoldi, (E)K-FAC.

Influence functions (Koh & Liang 2017, eq. 2-3) need ``x = (H + λI)^{-1} v`` for many right-hand
sides ``v`` (gradients of test or training losses), where ``H`` is the Hessian (or Gauss-Newton
matrix) of the mean training objective at the fitted parameters and ``λ >= 0`` is a damping term.
A model is seen through a :class:`HessianOperator` (what a solver may use: Hessian-vector
products, optionally the dense matrix, minibatch products, Kronecker-factor sources); a
:class:`Solver` is fitted once on it (factorise, eigendecompose, collect factors) and then
solves any number of right-hand sides, always batched over the rows of ``v`` (shape ``(k, p)``).

========== ============================================================= ====================
name       method                                                        uses
========== ============================================================= ====================
exact      dense ``H + λI``, Cholesky (eigendecomposition if indefinite) ``dense`` or matvec
cg         conjugate gradients, batched over rows, optional preconditioner ``matvec``
lissa      Agarwal et al. (2017) recursion, as used by Koh & Liang        ``(batch_)matvec``
arnoldi    top-r eigenpairs by Arnoldi iteration (Schioppa et al. 2022)   ``matvec``
ekfac      eigenvalue-corrected K-FAC (George et al. 2018; Grosse et al.) ``kfac``
kfac       Kronecker-factored curvature (Martens & Grosse 2015)           ``kfac``
========== ============================================================= ====================

Interface (notes/influence_spec.md), with these additions — all backward compatible:

* ``KFACSource.l2`` (float, default 0): the objective's L2 term, whose Hessian ``l2 * I`` is
  added to every (E)K-FAC eigenvalue, so that (E)K-FAC approximates the same ``H`` as the other
  solvers for an objective ``mean_i loss_fn(f(x_i), y_i) + l2/2 ||θ||²``.
* ``KFACSource.n_total`` (int or None): divide the factor sums by this instead of the number of
  examples in the batches (objective normalised by the full set, batches over a subset).
* ``HessianOperator.from_dense(h)`` builds an operator from a matrix (tests, small models).
* ``Solver.solve`` also takes a 1-D ``v`` of shape ``(p,)`` (returns ``(p,)``); the result is in
  ``op.dtype`` on ``op.device`` whatever the dtype/device of ``v``. ``Solver.fit(op, damping=0.0)``.
* ``SOLVERS`` also holds ``"kfac"``; ``inverse_hvp`` accepts a :class:`Solver` instance as
  ``solver``. ``ExactSolver`` builds the dense matrix from ``matvec`` when ``op.dense`` is None.
* (E)K-FAC options: ``fisher="true"`` (targets from the model's predictive distribution) or
  ``"empirical"`` (observed targets); ``mc_samples=None`` takes the *exact* expectation over the
  predictive distribution (the Gauss-Newton matrix; one backward pass per output) and an int
  samples that many targets per example (Grosse et al. 2023), seeded by ``seed``.
  Sampled binary targets (one logit) are 0/1 in the dtype of ``y``.
* :class:`SolverError` is raised when a solver cannot give a meaningful answer (negative
  curvature in CG, LiSSA diverging, zero curvature without damping).
* ``Solver.get_options()`` / ``Solver.option_names()`` (provenance, cloning);
  ``EKFACSolver.factors_`` (per-layer A, S, eigenbases, eigenvalues) and
  ``EKFACSolver.curvature(v)`` (the approximate ``H`` times ``v``).
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from torch import Tensor

from .._validation import Interval, Options, validate_params
from ..exceptions import (
    DatavalueError,
    InvalidDataError,
    InvalidParameterError,
    UnknownNameError,
)

__all__ = [
    "HessianOperator",
    "KFACSource",
    "Solver",
    "SolverError",
    "ExactSolver",
    "CGSolver",
    "LiSSASolver",
    "ArnoldiSolver",
    "EKFACSolver",
    "KFACSolver",
    "SOLVERS",
    "make_solver",
    "inverse_hvp",
]


class SolverError(DatavalueError, ArithmeticError):
    """An inverse-Hessian solver could not produce a meaningful answer (negative curvature,
    divergence, singular curvature without damping). The message says what to change."""


# --------------------------------------------------------------------------------------------
# What a solver may use
# --------------------------------------------------------------------------------------------


@dataclass
class KFACSource:
    """What (E)K-FAC needs: the network's ``nn.Linear`` layers and the training batches.

    Attributes
    ----------
    module : torch.nn.Module
        The network (a scikit-learn linear model is wrapped as one ``nn.Linear``).
    layers : list of (str, torch.nn.Linear)
        The layers whose parameters are inverted, in flat-parameter order. Each must be applied
        exactly once per forward pass, to a 2-D input ``(batch, in_features)``.
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
            if not isinstance(layer, torch.nn.Linear):
                raise InvalidParameterError(
                    f"KFACSource layer {name!r} is a {type(layer).__name__}; (E)K-FAC supports "
                    "torch.nn.Linear layers only. Use the cg, arnoldi or lissa solver instead."
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


# --------------------------------------------------------------------------------------------
# Base class, registry
# --------------------------------------------------------------------------------------------


class Solver:
    """Base class: ``fit(op, damping)`` once, then ``solve(v)`` any number of times.

    Options are keyword arguments of the constructor, checked there against
    ``_constraints`` (an :class:`~datavalue.exceptions.InvalidParameterError` names the option).
    ``info_`` reports what happened (timings, iterations, residuals, rank, ...).
    """

    name: ClassVar[str] = ""
    _constraints: ClassVar[dict[str, list]] = {}

    def __init__(self) -> None:
        validate_params(f"solver {self.name!r}", self.get_options(), self._constraints)
        self.info_: dict[str, Any] = {}
        self._op: HessianOperator | None = None
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


# --------------------------------------------------------------------------------------------
# exact
# --------------------------------------------------------------------------------------------


class ExactSolver(Solver):
    """Dense ``H + λI``, Cholesky-factorised once; eigendecomposition if not positive definite.

    Parameters
    ----------
    rcond : float
        If ``H + λI`` is not positive definite, it is inverted through its eigendecomposition,
        keeping eigenvalues with ``|w| > rcond * max|w|`` (a pseudo-inverse; negative
        eigenvalues keep their sign, so the answer is the exact inverse whenever it exists), and
        a ``RuntimeWarning`` gives the smallest eigenvalue.
    max_params : int
        Refuse more parameters than this (the dense matrix takes ``8 p²`` bytes in float64).
    block_size : int
        Columns built per ``matvec`` call when ``op.dense`` is None.
    """

    name = "exact"
    _constraints: ClassVar[dict[str, list]] = {
        "rcond": [Interval(float, 0, 1)],
        "max_params": [Interval(int, 1, None)],
        "block_size": [Interval(int, 1, None)],
    }

    def __init__(
        self, *, rcond: float = 1e-12, max_params: int = 20_000, block_size: int = 256
    ) -> None:
        self.rcond = rcond
        self.max_params = max_params
        self.block_size = block_size
        super().__init__()

    def _fit(self, op: HessianOperator, damping: float) -> None:
        p = op.n_params
        if p > self.max_params:
            raise InvalidParameterError(
                f"The exact solver needs the dense {p} x {p} Hessian ({8 * p * p / 2**30:.1f} GiB"
                f" in float64), more than its 'max_params'={self.max_params} allows. Raise "
                "max_params or use the cg, arnoldi or ekfac solver."
            )
        if op.dense is not None:
            h = op.dense().to(dtype=op.dtype, device=op.device)
            if tuple(h.shape) != (p, p):
                raise InvalidDataError(
                    f"HessianOperator.dense() returned shape {tuple(h.shape)}, expected {(p, p)}."
                )
            self.info_["dense_from"] = "dense"
        else:
            eye = torch.eye(p, dtype=op.dtype, device=op.device)
            h = torch.cat([op.matvec(eye[i : i + self.block_size]) for i in range(0, p, self.block_size)])
            self.info_["dense_from"] = "matvec"
        h = (h + h.T) / 2
        h.diagonal().add_(damping)
        chol, status = torch.linalg.cholesky_ex(h)
        self._chol: Tensor | None = None
        if int(status) == 0:
            self._chol = chol
            self.info_["method"] = "cholesky"
            return
        w, u = torch.linalg.eigh(h)
        keep = w.abs() > self.rcond * w.abs().max()
        self._u, self._inv_w = u, torch.where(keep, 1 / torch.where(keep, w, 1), 0)
        self.info_.update(method="eigh", min_eigenvalue=float(w[0]), n_dropped=int((~keep).sum()))
        warnings.warn(
            f"H + damping*I (damping={damping:g}) is not positive definite: its smallest "
            f"eigenvalue is {float(w[0]):.3g}. Solving through the eigendecomposition "
            f"({int((~keep).sum())} near-zero eigenvalues dropped). For influence on a non-convex "
            "model, use damping larger than that magnitude or the Gauss-Newton Hessian.",
            RuntimeWarning,
            stacklevel=3,
        )

    def _solve(self, v: Tensor) -> Tensor:
        if self._chol is not None:
            return torch.cholesky_solve(v.T, self._chol).T
        return ((v @ self._u) * self._inv_w) @ self._u.T


# --------------------------------------------------------------------------------------------
# conjugate gradients
# --------------------------------------------------------------------------------------------


def _negative_curvature_message(curvature: float, damping: float) -> str:
    return (
        f"CG met a direction of non-positive curvature dᵀ(H + λI)d = {curvature:.3g} "
        f"(damping λ={damping:g}): H + λI is not positive definite at these parameters. "
        "Increase the damping, use the Gauss-Newton Hessian, or the exact solver (which "
        "handles indefinite H)."
    )


def _orthonormal_rows(w: Tensor, rtol: float = 1e-10) -> Tensor:
    """Orthonormal rows spanning the numerically independent part of the rows of ``w``.

    Rows are scaled to unit norm first (the span does not change, and rows of very different
    size, e.g. converged and unconverged residuals, do not mask each other); directions of the
    Gram matrix with eigenvalue below ``rtol`` times the largest are dropped (the rank-revealing
    step of breakdown-free block CG), and a QR pass restores orthogonality to rounding."""
    norms = w.norm(dim=1)
    w = w[norms > 0] / norms[norms > 0, None]
    if w.shape[0] == 0:
        return w
    evals, evecs = torch.linalg.eigh(w @ w.T)
    keep = evals > rtol * evals.max()
    basis = (evecs[:, keep] / evals[keep].sqrt()).T @ w
    q, _ = torch.linalg.qr(basis.T)
    return q.T.contiguous()


class CGSolver(Solver):
    """Conjugate gradients (Hestenes & Stiefel 1952) on ``(H + λI) x = v``, all rows at once.

    By default the rows are solved together by breakdown-free block CG (Ji & Li 2017, Alg. 2;
    O'Leary 1980): the search space grows by one direction per unconverged row per iteration,
    and every row is solved over the whole block Krylov space, so ``k`` right-hand sides need
    far fewer iterations than ``k`` separate recurrences for the same Hessian-vector products
    (influence on the digits MLP, 540 test gradients at rtol 1e-2: 20.9 s -> 2.3 s,
    ``benchmarks/influence_proposals.py``, P2). Near-dependent search directions are dropped
    (rank-revealing orthonormalisation), which is what makes it breakdown-free. Rows are taken
    ``block_size`` at a time to bound memory (a few ``block_size x p`` matrices).

    With ``block=False`` each row runs its own recurrence; a row stops when
    ``||r|| <= max(rtol ||v||, atol)`` and leaves the batch.

    ``info_`` holds ``iterations`` (per row: the iteration at which it converged, or the last
    one), ``residuals`` (final ``||r|| / ||v||`` per row, from the recurrence) and
    ``converged`` (per row).

    Parameters
    ----------
    rtol, atol : float
        Stopping tolerances on the residual norm.
    maxiter : int or None
        Maximum iterations per row (None: ``10 p``). Rows that hit it raise a
        ``ConvergenceWarning``.
    preconditioner : None, str, Solver or callable
        ``M ≈ (H + λI)^{-1}`` (preconditioned CG): the name of a solver (fitted on the same
        operator and damping, with ``preconditioner_options``; ``"arnoldi"`` defaults to
        ``complement="tail"``, a positive-definite low-rank-plus-scaled-identity preconditioner
        as in Nyström PCG), a :class:`Solver` (fitted here), or a callable ``(k, p) -> (k, p)``.
    preconditioner_options : dict or None
        Options for a preconditioner given by name.
    on_negative_curvature : {"raise", "warn"}
        CG assumes ``H + λI`` positive definite; a direction with ``dᵀ(H + λI)d <= 0`` proves it is
        not. "raise": :class:`SolverError`; "warn": warn and stop those rows at their iterate.
    block : bool
        Block CG over all rows (default) or one recurrence per row.
    block_size : int or None
        Rows per block of block CG (None: as many as keep one ``block_size x p`` float64
        matrix under 128 MB).
    """

    name = "cg"
    _constraints: ClassVar[dict[str, list]] = {
        "rtol": [Interval(float, 0, 1)],
        "atol": [Interval(float, 0, None)],
        "maxiter": [Interval(int, 1, None), None],
        "preconditioner": [None, str, Solver, "callable"],
        "preconditioner_options": [dict, None],
        "on_negative_curvature": [Options({"raise", "warn"})],
        "block": ["boolean"],
        "block_size": [Interval(int, 1, None), None],
    }

    def __init__(
        self,
        *,
        rtol: float = 1e-7,
        atol: float = 0.0,
        maxiter: int | None = None,
        preconditioner: str | Solver | Callable[[Tensor], Tensor] | None = None,
        preconditioner_options: dict | None = None,
        on_negative_curvature: str = "raise",
        block: bool = True,
        block_size: int | None = None,
    ) -> None:
        self.rtol = rtol
        self.atol = atol
        self.maxiter = maxiter
        self.preconditioner = preconditioner
        self.preconditioner_options = preconditioner_options
        self.on_negative_curvature = on_negative_curvature
        self.block = block
        self.block_size = block_size
        super().__init__()

    def _fit(self, op: HessianOperator, damping: float) -> None:
        pre = self.preconditioner
        self._precondition: Callable[[Tensor], Tensor] | None = None
        if isinstance(pre, str):
            options = dict(self.preconditioner_options or {})
            if pre == "arnoldi":
                options.setdefault("complement", "tail")
            pre = make_solver(pre, **options)
        if isinstance(pre, Solver):
            pre.fit(op, damping)
            self.info_["preconditioner"] = {"name": pre.name, **pre.info_}
            self._precondition = pre.solve
        elif callable(pre):
            self._precondition = pre
        self.info_["iterations"] = []
        self.info_["residuals"] = []
        self.info_["converged"] = []

    def _solve(self, b: Tensor) -> Tensor:
        if not self.block:
            return self._solve_rows(b)
        k, p = b.shape
        size = self.block_size or max(1, 2**24 // p)
        parts = [self._solve_block(b[start : start + size]) for start in range(0, k, size)]
        x = torch.cat([part for part, _ in parts])
        negative = torch.cat([neg for _, neg in parts])
        self._report(k, negative)
        return x

    def _solve_block(self, b: Tensor) -> tuple[Tensor, Tensor]:
        """Breakdown-free block PCG (Ji & Li 2017, Alg. 2) on the rows of ``b``; returns the
        solutions and which rows stopped on non-positive curvature."""
        op, damping = self._op, self.damping_
        assert op is not None
        k, p = b.shape
        maxiter = self.maxiter if self.maxiter is not None else 10 * p
        precondition = self._precondition or (lambda r: r)
        x = torch.zeros_like(b)
        r = b.clone()
        b_norm = b.norm(dim=1)
        threshold = torch.clamp(self.rtol * b_norm, min=self.atol)
        r_norm = b_norm.clone()
        iterations = torch.zeros(k, dtype=torch.long)
        done = (r_norm <= threshold).cpu()
        negative = torch.zeros(k, dtype=torch.bool)
        d = _orthonormal_rows(precondition(r))
        step = 0
        while not bool(done.all()) and step < maxiter and d.shape[0]:
            step += 1
            hd = op.matvec(d) + damping * d
            dhd = d @ hd.T
            dhd = (dhd + dhd.T) / 2
            chol, info = torch.linalg.cholesky_ex(dhd)
            if int(info) != 0 or not bool(torch.isfinite(chol).all()):
                curvature = float(torch.linalg.eigvalsh(dhd).min())
                if self.on_negative_curvature == "raise":
                    raise SolverError(_negative_curvature_message(curvature, damping))
                negative |= ~done
                break
            alpha = torch.cholesky_solve(d @ r.T, chol)  # (m, k)
            x += alpha.T @ d
            r -= alpha.T @ hd
            r_norm = r.norm(dim=1)
            iterations[~done] = step
            done |= (r_norm <= threshold).cpu()
            if bool(done.all()):
                break
            z = precondition(r)
            beta = -torch.cholesky_solve(hd @ z.T, chol)  # (m, k)
            d = _orthonormal_rows(z + beta.T @ d)
        converged = r_norm <= threshold
        relative = (r_norm / torch.where(b_norm > 0, b_norm, 1)).cpu()
        self.info_["iterations"] += iterations.tolist()
        self.info_["residuals"] += relative.tolist()
        self.info_["converged"] += converged.cpu().tolist()
        return x, negative

    def _report(self, k: int, negative: Tensor) -> None:
        """Warn about the rows of the last solve that stopped on negative curvature or did not
        converge."""
        converged = torch.tensor(self.info_["converged"][-k:], dtype=torch.bool)
        relative = torch.tensor(self.info_["residuals"][-k:], dtype=torch.float64)
        negative = negative.cpu()
        if negative.any():
            warnings.warn(
                f"CG met non-positive curvature on {int(negative.sum())} of {k} right-hand sides; "
                "they stopped early. H + damping*I is not positive definite: increase damping.",
                RuntimeWarning,
                stacklevel=4,
            )
        failed = ~converged & ~negative
        if failed.any():
            maxiter = self.maxiter if self.maxiter is not None else 10 * self._op.n_params
            warnings.warn(
                f"CG did not converge on {int(failed.sum())} of {k} right-hand sides in "
                f"{maxiter} iterations (largest relative residual {float(relative.max()):.2e}, "
                f"rtol={self.rtol:g}). Increase maxiter or damping, or use a preconditioner.",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _solve_rows(self, b: Tensor) -> Tensor:
        op, damping = self._op, self.damping_
        assert op is not None
        k, p = b.shape
        maxiter = self.maxiter if self.maxiter is not None else 10 * p
        precondition = self._precondition or (lambda r: r)
        x = torch.zeros_like(b)
        r = b.clone()
        z = precondition(r)
        d = z.clone()
        rz = (r * z).sum(1)
        b_norm = b.norm(dim=1)
        threshold = torch.clamp(self.rtol * b_norm, min=self.atol)
        r_norm = b_norm.clone()
        iterations = torch.zeros(k, dtype=torch.long)
        active = (r_norm > threshold).nonzero().flatten()
        negative = torch.zeros(k, dtype=torch.bool, device=b.device)
        for _ in range(maxiter):
            if active.numel() == 0:
                break
            d_a = d[active]
            hd = op.matvec(d_a) + damping * d_a
            curvature = (d_a * hd).sum(1)
            bad = curvature <= 0
            if bad.any():
                rows = active[bad]
                if self.on_negative_curvature == "raise":
                    raise SolverError(
                        _negative_curvature_message(float(curvature[bad].min()), damping)
                    )
                negative[rows] = True
                active, d_a, hd, curvature = (
                    active[~bad], d_a[~bad], hd[~bad], curvature[~bad]
                )
                if active.numel() == 0:
                    break
            alpha = rz[active] / curvature
            x[active] += alpha[:, None] * d_a
            r_a = r[active] - alpha[:, None] * hd
            r[active] = r_a
            iterations[active.cpu()] += 1
            r_norm[active] = r_a.norm(dim=1)
            z_a = precondition(r_a)
            rz_new = (r_a * z_a).sum(1)
            beta = rz_new / rz[active]
            d[active] = z_a + beta[:, None] * d_a
            rz[active] = rz_new
            active = active[r_norm[active] > threshold[active]]
        converged = r_norm <= threshold
        relative = (r_norm / torch.where(b_norm > 0, b_norm, 1)).cpu()
        self.info_["iterations"] += iterations.tolist()
        self.info_["residuals"] += relative.tolist()
        self.info_["converged"] += converged.cpu().tolist()
        self._report(k, negative)
        return x


# --------------------------------------------------------------------------------------------
# LiSSA
# --------------------------------------------------------------------------------------------


class LiSSASolver(Solver):
    """LiSSA (Agarwal, Bullins & Hazan 2017), the stochastic estimator used by Koh & Liang (2017).

    The recursion ``h_0 = v``, ``h_j = v + (I - (H_j + λI)/s) h_{j-1}``, with ``H_j`` the Hessian
    on a fresh minibatch (or the full ``H``), has the fixed point ``s (H + λI)^{-1} v``; the
    estimate is ``h_depth / s``, averaged over ``repeats`` independent runs. It converges (in
    expectation) when ``0 < (eigenvalues of H + λI) / s < 2``, at the rate ``1 - λ_min / s``.

    Parameters
    ----------
    depth : int
        Recursion steps per run.
    scale : float or None
        ``s``; must exceed ``λ_max(H + λI) / 2`` (best just above ``λ_max``). None: 1.5 times a
        power-iteration estimate of ``λ_max(H + λI)`` (stored in ``info_["scale"]``).
    batch_size : int or None
        Minibatch size for ``H_j`` (needs ``op.batch_matvec``); None uses the full ``H``
        (deterministic; then one run is made whatever ``repeats`` is).
    repeats : int
        Independent runs averaged; ``info_["stderr"]`` is the standard error of their average
        relative to its norm (a check on the minibatch noise).
    seed : int
        Seeds minibatch sampling and the power iteration; equal seeds give equal answers.
    rtol : float
        A run stops early when ``||h_j - h_{j-1}|| <= rtol ||h_j||`` for every row (0: never).
        The remaining error is about ``s / λ_min`` times that change.
    """

    name = "lissa"
    _constraints: ClassVar[dict[str, list]] = {
        "depth": [Interval(int, 1, None)],
        "scale": [Interval(float, 0, None, closed="neither"), None],
        "batch_size": [Interval(int, 1, None), None],
        "repeats": [Interval(int, 1, None)],
        "seed": ["random_state"],
        "rtol": [Interval(float, 0, 1)],
    }

    def __init__(
        self,
        *,
        depth: int = 1000,
        scale: float | None = None,
        batch_size: int | None = None,
        repeats: int = 1,
        seed: int = 0,
        rtol: float = 0.0,
    ) -> None:
        self.depth = depth
        self.scale = scale
        self.batch_size = batch_size
        self.repeats = repeats
        self.seed = seed
        self.rtol = rtol
        super().__init__()

    def _fit(self, op: HessianOperator, damping: float) -> None:
        if self.batch_size is not None and (op.batch_matvec is None or op.n_samples < 1):
            raise InvalidParameterError(
                "The 'batch_size' option of the lissa solver needs minibatch Hessian-vector "
                "products (HessianOperator.batch_matvec and n_samples); use batch_size=None."
            )
        scale = self.scale
        if scale is None:
            top = _power_iteration(op, 50, 0 if self.seed is None else self.seed) + damping
            if top <= 0:
                raise SolverError("LiSSA: H + damping*I is zero; nothing to invert.")
            scale = 1.5 * top
        self.scale_ = float(scale)
        self.info_.update(scale=self.scale_, depth=self.depth, batch_size=self.batch_size)

    def _solve(self, v: Tensor) -> Tensor:
        op, damping, s = self._op, self.damping_, self.scale_
        assert op is not None
        gen = torch.Generator().manual_seed(0 if self.seed is None else self.seed)
        runs = self.repeats if self.batch_size is not None else 1
        v_norm = v.norm(dim=1)
        estimates = []
        steps = []
        for _ in range(runs):
            h = v.clone()
            change = math.inf
            for step in range(1, self.depth + 1):
                if self.batch_size is None:
                    hv = op.matvec(h)
                else:
                    idx = torch.randperm(op.n_samples, generator=gen)[: self.batch_size]
                    hv = op.batch_matvec(h, idx.to(op.device))
                new = v + h - (hv + damping * h) / s
                diff = (new - h).norm(dim=1)
                h = new
                if not torch.isfinite(diff).all() or (diff > 1e6 * v_norm).any():
                    raise SolverError(
                        f"LiSSA diverged after {step} steps (scale={s:g}, damping={damping:g}): "
                        "the scale must exceed the largest eigenvalue of H + damping*I (of the "
                        "minibatch Hessians too) and H + damping*I must be positive definite. "
                        "Increase scale or damping."
                    )
                change = float((diff / h.norm(dim=1).clamp_min(1e-300)).max())
                if change <= self.rtol:
                    break
            steps.append(step)
            estimates.append(h / s)
        stacked = torch.stack(estimates)
        self.info_.update(steps=steps, last_relative_change=change, runs=runs)
        mean = stacked.mean(0)
        if runs > 1:  # relative standard error of the average, over all rows
            spread = stacked.std(0).norm() / math.sqrt(runs)
            self.info_["stderr"] = float(spread / mean.norm().clamp_min(1e-300))
        return mean


# --------------------------------------------------------------------------------------------
# Arnoldi
# --------------------------------------------------------------------------------------------


class ArnoldiSolver(Solver):
    """Low-rank inverse from the top eigenpairs found by Arnoldi iteration (Schioppa et al. 2022).

    ``n_iter`` steps of Arnoldi iteration from a random start (with full re-orthogonalisation,
    restarting on breakdown) give an orthonormal Krylov basis ``Q`` and ``T = Qᵀ H Q``; the
    eigenpairs of ``T`` (Ritz pairs) approximate the extreme eigenpairs of ``H``. The ``rank``
    Ritz pairs ``(θ_i, u_i)`` of largest ``|θ|`` are kept (Schioppa et al., Alg. 2) and

    ``(H + λI)^{-1} v ≈ U diag(1 / (θ + λ)) Uᵀ v + c (I - U Uᵀ) v``,

    with ``c = 0`` (``complement="drop"``: the paper's projection onto the top eigenspace),
    ``c = 1/λ`` (``"damping"``: exact if the discarded eigenvalues are 0) or
    ``c = 1/(min|θ| + λ)`` (``"tail"``: a positive-definite preconditioner). With
    ``rank = n_iter = p`` the answer is exact; otherwise, for ``"drop"``, the error is
    ``(H + λI)^{-1}`` applied to the part of ``v`` outside the kept eigenspace.
    ``info_["ritz_residuals"]`` are ``||H u_i - θ_i u_i||`` (how converged each pair is).

    Parameters
    ----------
    rank : int
        Eigenpairs kept (capped at ``p``).
    n_iter : int or None
        Krylov dimension (matvecs); None: ``min(p, max(2 rank, rank + 20))``.
    seed : int
        Seeds the start vector.
    complement : {"drop", "damping", "tail"}
        What to do on the orthogonal complement of the kept eigenspace (see above).
    """

    name = "arnoldi"
    _constraints: ClassVar[dict[str, list]] = {
        "rank": [Interval(int, 1, None)],
        "n_iter": [Interval(int, 1, None), None],
        "seed": ["random_state"],
        "complement": [Options({"drop", "damping", "tail"})],
    }

    def __init__(
        self, *, rank: int = 50, n_iter: int | None = None, seed: int = 0, complement: str = "drop"
    ) -> None:
        self.rank = rank
        self.n_iter = n_iter
        self.seed = seed
        self.complement = complement
        super().__init__()

    def _fit(self, op: HessianOperator, damping: float) -> None:
        p = op.n_params
        rank = min(self.rank, p)
        m = min(p, self.n_iter if self.n_iter is not None else max(2 * rank, rank + 20))
        if m < rank:
            raise InvalidParameterError(
                f"The 'n_iter' option of the arnoldi solver ({self.n_iter}) must be at least "
                f"'rank' ({rank}): the Krylov space must hold the eigenvectors kept."
            )
        if self.complement == "damping" and damping <= 0:
            raise InvalidParameterError(
                "The arnoldi option complement='damping' divides by the damping; use damping > 0 "
                "or complement='drop' / 'tail'."
            )
        gen = torch.Generator().manual_seed(0 if self.seed is None else self.seed)

        def random_unit(basis: Tensor) -> Tensor:
            w = torch.randn(p, generator=gen, dtype=op.dtype).to(op.device)
            for _ in range(2):
                w = w - (basis @ w) @ basis
            return w / w.norm()

        q = torch.zeros(m, p, dtype=op.dtype, device=op.device)
        t = torch.zeros(m, m, dtype=op.dtype, device=op.device)
        q[0] = random_unit(q[:0])
        largest, restarts, last = 0.0, 0, 0.0
        for j in range(m):
            w = op.matvec(q[j : j + 1])[0]
            largest = max(largest, float(w.norm()))
            basis = q[: j + 1]
            coef = basis @ w  # classical Gram-Schmidt, twice (CGS2)
            w = w - coef @ basis
            again = basis @ w
            w = w - again @ basis
            t[: j + 1, j] = coef + again
            last = float(w.norm())
            if j + 1 == m:
                break
            if last <= 1e-10 * max(largest, 1e-300):  # invariant subspace found: restart
                q[j + 1] = random_unit(q[: j + 1])
                restarts += 1
            else:
                q[j + 1] = w / last
        # Rayleigh-Ritz on T = Qᵀ H Q: the upper triangle holds q_iᵀ H q_j for i <= j.
        t = torch.triu(t) + torch.triu(t, 1).T
        theta, s = torch.linalg.eigh(t)
        order = torch.argsort(theta.abs(), descending=True)[:rank]
        self.eigenvalues_ = theta[order]
        self._u = s[:, order].T @ q  # (rank, p)
        self._damped = self.eigenvalues_ + damping
        if (self._damped == 0).any():
            raise SolverError(
                "arnoldi: a kept eigenvalue of H + damping*I is 0; use damping > 0."
            )
        if (self._damped < 0).any():
            warnings.warn(
                f"arnoldi: H + damping*I has negative eigenvalues (smallest kept "
                f"{float(self._damped.min()):.3g}); it is not positive definite. Increase damping.",
                RuntimeWarning,
                stacklevel=3,
            )
        self._tail = {
            "drop": 0.0,
            "damping": 1 / damping if damping > 0 else 0.0,
            "tail": 1 / float(self._damped.abs().min()),
        }[self.complement]
        self.info_.update(
            rank=rank,
            n_iter=m,
            restarts=restarts,
            eigenvalues=self.eigenvalues_.tolist(),
            ritz_residuals=(last * s[-1, order].abs()).tolist(),
        )

    def factor(self) -> tuple[Tensor, Tensor] | None:
        if self._op is None or self._tail:
            return None
        return self._u, 1.0 / self._damped

    def _solve(self, v: Tensor) -> Tensor:
        coef = v @ self._u.T
        x = (coef / self._damped) @ self._u
        if self._tail:
            x = x + self._tail * (v - coef @ self._u)
        return x


# --------------------------------------------------------------------------------------------
# EK-FAC / K-FAC
# --------------------------------------------------------------------------------------------


@dataclass
class _LayerFactors:
    name: str
    weight: tuple[int, int]  # (start, stop) in the flat vector
    bias: tuple[int, int] | None
    shape: tuple[int, int]  # (out, in)
    a_cov: Tensor  # A = E[ā āᵀ], (in [+1]) squared
    s_cov: Tensor  # S = E[g gᵀ], out squared
    q_a: Tensor | None = None
    q_s: Tensor | None = None
    lambda_a: Tensor | None = None
    lambda_s: Tensor | None = None
    eigenvalues: Tensor | None = None  # (out, in [+1]) in the Kronecker eigenbasis


def _slice_range(s: slice | None, p: int, what: str) -> tuple[int, int] | None:
    if s is None:
        return None
    if not isinstance(s, slice):
        raise InvalidParameterError(f"KFACSource.param_slices: {what} must be a slice; got {s!r}.")
    start, stop, step = s.indices(p)
    if step != 1 or stop <= start:
        raise InvalidParameterError(f"KFACSource.param_slices: {what} is an empty or strided {s}.")
    return start, stop


class EKFACSolver(Solver):
    """Eigenvalue-corrected Kronecker-factored curvature (George et al. 2018; Grosse et al. 2023).

    For each listed ``nn.Linear`` layer, with ``ā`` its input (with a 1 appended when its bias is
    among the parameters) and ``g`` the gradient of the per-example loss with respect to its
    output (pre-activation), the layer's block of the Fisher / Gauss-Newton matrix is
    ``E[(g ⊗ ā)(g ⊗ ā)ᵀ]`` (row-major ``(out, in+1)`` weight gradient ``G = g āᵀ``). K-FAC
    (Martens & Grosse 2015) approximates it by ``S ⊗ A`` with ``A = E[ā āᵀ] = Q_A Λ_A Q_Aᵀ``,
    ``S = E[g gᵀ] = Q_S Λ_S Q_Sᵀ``: eigenvalues ``Λ_S Λ_Aᵀ`` in the basis ``Q_S ⊗ Q_A``. EK-FAC
    keeps the basis and re-fits the eigenvalues to the per-example gradients,
    ``Λ = E[(Q_Sᵀ G Q_A)²]`` (George et al., eq. 10; Grosse et al., eq. 20), the best diagonal in
    that basis in Frobenius norm. Layers are independent (block-diagonal), and

    ``(H + λI)^{-1} v ≈ Q_S [(Q_Sᵀ V Q_A) / (Λ + l2 + λ)] Q_Aᵀ`` per layer,

    with ``V`` the layer's part of ``v`` as an ``(out, in+1)`` matrix. Statistics are collected
    with forward hooks over ``KFACSource.batches()`` (two passes for EK-FAC, one for K-FAC).

    Parameters
    ----------
    fisher : {"true", "empirical"}
        "true": ``g`` for targets drawn from the model's predictive distribution (the Fisher,
        which equals the Gauss-Newton matrix for softmax/sigmoid cross-entropy and squared
        error); "empirical": ``g`` at the observed targets.
    mc_samples : int or None
        For ``fisher="true"``: None takes the exact expectation (from a square root of each
        example's output-space Hessian: one backward pass per output); an int samples that many
        targets per example (Grosse et al. 2023).
    seed : int
        Seeds the sampled targets.
    eigenvalue_correction : bool
        True: EK-FAC; False: K-FAC.

    Notes
    -----
    The module is used as it is (call ``.eval()`` first if it has dropout or batch norm).
    ``factors_`` holds, per layer, ``A``, ``S``, their eigendecompositions and the eigenvalues;
    :meth:`curvature` applies the approximation of ``H`` itself.
    """

    name = "ekfac"
    _constraints: ClassVar[dict[str, list]] = {
        "fisher": [Options({"true", "empirical"})],
        "mc_samples": [Interval(int, 1, None), None],
        "seed": ["random_state"],
        "eigenvalue_correction": ["boolean"],
    }

    def __init__(
        self,
        *,
        fisher: str = "true",
        mc_samples: int | None = None,
        seed: int = 0,
        eigenvalue_correction: bool = True,
    ) -> None:
        self.fisher = fisher
        self.mc_samples = mc_samples
        self.seed = seed
        self.eigenvalue_correction = eigenvalue_correction
        super().__init__()
        if fisher == "empirical" and mc_samples is not None:
            raise InvalidParameterError(
                "The 'mc_samples' option of the ekfac/kfac solvers samples targets for "
                "fisher='true'; with fisher='empirical' (observed targets) leave it None."
            )

    # -- statistics --------------------------------------------------------------------------

    def _layers(self, op: HessianOperator) -> list[_LayerFactors]:
        source = op.kfac
        if source is None:
            raise InvalidParameterError(
                f"The {self.name} solver needs HessianOperator.kfac (the network's nn.Linear "
                "layers and training batches); this operator has none. Use the exact, cg, "
                "arnoldi or lissa solver."
            )
        p, covered, layers = op.n_params, [], []
        for (name, layer), (w_slice, b_slice) in zip(source.layers, source.param_slices, strict=True):
            out_f, in_f = layer.weight.shape
            w = _slice_range(w_slice, p, f"weight of {name!r}")
            b = _slice_range(b_slice, p, f"bias of {name!r}")
            if w is None or w[1] - w[0] != out_f * in_f:
                raise InvalidParameterError(
                    f"KFACSource: the weight slice of layer {name!r} must hold {out_f}x{in_f} "
                    f"entries; got {w_slice}."
                )
            if b is not None and (layer.bias is None or b[1] - b[0] != out_f):
                raise InvalidParameterError(
                    f"KFACSource: the bias slice of layer {name!r} must hold {out_f} entries of "
                    f"an existing bias; got {b_slice}."
                )
            covered += [w] + ([b] if b else [])
            width = in_f + (b is not None)
            layers.append(
                _LayerFactors(
                    name, w, b, (out_f, in_f),
                    torch.zeros(width, width, dtype=op.dtype, device=op.device),
                    torch.zeros(out_f, out_f, dtype=op.dtype, device=op.device),
                )
            )
        position = 0
        for start, stop in sorted(covered):
            if start != position:
                kind = "overlap" if start < position else "are not in any listed nn.Linear layer"
                raise InvalidParameterError(
                    f"The {self.name} solver inverts the parameters of nn.Linear layers only: "
                    f"flat parameters [{min(start, position)}, {max(start, position)}) {kind}. "
                    "Restrict the model to Linear-layer parameters or use another solver."
                )
            position = stop
        if position != p:
            raise InvalidParameterError(
                f"The {self.name} solver inverts the parameters of nn.Linear layers only: flat "
                f"parameters [{position}, {p}) are not in any listed nn.Linear layer. Restrict "
                "the model to Linear-layer parameters or use another solver."
            )
        return layers

    def _batches(
        self, op: HessianOperator, layers: list[_LayerFactors], gen: torch.Generator
    ) -> Iterable[tuple[list[Tensor], list[Tensor]]]:
        """Per batch: layer inputs ā ``(n, in[+1])`` and output gradients ``(n, K, out)``,
        scaled so that the layer's Fisher block is ``mean_n sum_K (g ⊗ ā)(g ⊗ ā)ᵀ``."""
        source = op.kfac
        assert source is not None
        for x, y in source.batches():
            outputs, inputs, taps = _tapped_forward(source, x)
            draws = _output_draws(outputs, y, source, self.fisher, self.mc_samples, gen)
            if not draws:  # zero curvature at the output (e.g. saturated predictions)
                draws = [torch.zeros_like(outputs)]
            grads: list[list[Tensor]] = [[] for _ in layers]
            for i, r in enumerate(draws):
                got = torch.autograd.grad(
                    outputs, taps, grad_outputs=r.to(outputs.dtype),
                    retain_graph=i + 1 < len(draws), allow_unused=True,
                )
                for lst, gr, tap in zip(grads, got, taps, strict=True):
                    lst.append(torch.zeros_like(tap) if gr is None else gr)
            acts = []
            for f, a in zip(layers, inputs, strict=True):
                a = a.to(dtype=op.dtype, device=op.device)
                if f.bias is not None:
                    a = torch.cat([a, torch.ones_like(a[:, :1])], 1)
                acts.append(a)
            yield acts, [torch.stack(g, 1).to(dtype=op.dtype, device=op.device) for g in grads]

    def _fit(self, op: HessianOperator, damping: float) -> None:
        layers = self._layers(op)
        source = op.kfac
        assert source is not None
        seed = 0 if self.seed is None else self.seed
        n = 0
        for acts, grads in self._batches(op, layers, torch.Generator().manual_seed(seed)):
            n += acts[0].shape[0]
            for f, a, g in zip(layers, acts, grads, strict=True):
                f.a_cov += a.T @ a
                g2 = g.reshape(-1, g.shape[-1])
                f.s_cov += g2.T @ g2
        if n == 0:
            raise InvalidDataError("KFACSource.batches() yielded no examples.")
        # A is a mean over the examples seen; S (and EK-FAC's eigenvalues) carry the objective's
        # normalisation, so that S ⊗ A = (1/n_total) sum over the examples seen.
        n_seen, n = n, source.n_total or n
        for f in layers:
            f.a_cov /= n_seen
            f.s_cov /= n
            f.lambda_a, f.q_a = torch.linalg.eigh(f.a_cov)
            f.lambda_s, f.q_s = torch.linalg.eigh(f.s_cov)
            f.lambda_a.clamp_(min=0)
            f.lambda_s.clamp_(min=0)
            f.eigenvalues = torch.outer(f.lambda_s, f.lambda_a)
        if self.eigenvalue_correction:
            for f in layers:
                f.eigenvalues = torch.zeros_like(f.eigenvalues)
            for acts, grads in self._batches(op, layers, torch.Generator().manual_seed(seed + 1)):
                for f, a, g in zip(layers, acts, grads, strict=True):
                    # Q_Sᵀ (g āᵀ) Q_A = (Q_Sᵀ g)(Q_Aᵀ ā)ᵀ: squares of an outer product.
                    g_rot = (g @ f.q_s).square().sum(1)  # (n, out), summed over draws
                    f.eigenvalues += g_rot.T @ (a @ f.q_a).square()
            for f in layers:
                f.eigenvalues /= n
        shift = source.l2 + damping
        smallest = min(float(f.eigenvalues.min()) for f in layers) + shift
        if smallest <= 0:
            raise SolverError(
                f"The {self.name} curvature has zero eigenvalues (e.g. unused inputs or units) and "
                "damping + l2 is 0: it cannot be inverted. Use damping > 0."
            )
        self.factors_ = layers
        self.n_examples_ = n_seen
        self.info_.update(
            n_examples=n_seen,
            layers=[(f.name, f.shape, f.bias is not None) for f in layers],
            fisher=self.fisher,
            mc_samples=self.mc_samples,
            eigenvalue_correction=self.eigenvalue_correction,
        )

    # -- solving -----------------------------------------------------------------------------

    def _apply(self, v: Tensor, transform: Callable[[Tensor, _LayerFactors], Tensor]) -> Tensor:
        """``Q_S transform(Q_Sᵀ V Q_A) Q_Aᵀ`` layer by layer, in the flat convention."""
        out = torch.empty_like(v)
        chunk = max(1, 2**24 // v.shape[1])  # rows per step: temporaries stay near 128 MiB
        for start in range(0, v.shape[0], chunk):
            rows = slice(start, start + chunk)
            part = v[rows]
            k = part.shape[0]
            for f in self.factors_:
                (w0, w1), (n_out, n_in) = f.weight, f.shape
                mat = part[:, w0:w1].reshape(k, n_out, n_in)
                if f.bias is not None:
                    mat = torch.cat([mat, part[:, f.bias[0] : f.bias[1], None]], 2)
                rotated = f.q_s.T @ mat @ f.q_a
                back = f.q_s @ transform(rotated, f) @ f.q_a.T
                out[rows, w0:w1] = back[:, :, :n_in].reshape(k, -1)
                if f.bias is not None:
                    out[rows, f.bias[0] : f.bias[1]] = back[:, :, n_in]
        return out

    def _solve(self, v: Tensor) -> Tensor:
        shift = self._op.kfac.l2 + self.damping_  # type: ignore[union-attr]
        return self._apply(v, lambda t, f: t / (f.eigenvalues + shift))

    def curvature(self, v: Tensor) -> Tensor:
        """The approximation of ``H`` (including ``l2 I``, without damping) times each row."""
        if self._op is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(op, damping).")
        v = torch.as_tensor(v).to(dtype=self._op.dtype, device=self._op.device)
        l2 = self._op.kfac.l2  # type: ignore[union-attr]
        return self._apply(v.reshape(-1, self._op.n_params), lambda t, f: t * (f.eigenvalues + l2))


class KFACSolver(EKFACSolver):
    """K-FAC (Martens & Grosse 2015): :class:`EKFACSolver` without the eigenvalue correction, so
    each layer's block is ``S ⊗ A`` exactly and ``solve`` returns ``(S ⊗ A + (l2 + λ) I)^{-1} v``."""

    name = "kfac"
    _constraints: ClassVar[dict[str, list]] = {
        k: v for k, v in EKFACSolver._constraints.items() if k != "eigenvalue_correction"
    }

    def __init__(self, *, fisher: str = "true", mc_samples: int | None = None, seed: int = 0) -> None:
        super().__init__(
            fisher=fisher, mc_samples=mc_samples, seed=seed, eigenvalue_correction=False
        )

    def get_options(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "mc_samples": self.mc_samples, "seed": self.seed}


def _tapped_forward(source: KFACSource, x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Forward pass recording each layer's input and adding a zero "tap" to its output, whose
    gradient is the gradient with respect to the output (whether or not parameters require
    gradients)."""
    n_layers = len(source.layers)
    inputs: list[Tensor | None] = [None] * n_layers
    taps: list[Tensor | None] = [None] * n_layers

    def hook_for(index: int, name: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, output: Tensor) -> Tensor:
            if taps[index] is not None:
                raise InvalidParameterError(
                    f"Layer {name!r} is applied more than once per forward pass; (E)K-FAC needs "
                    "each listed nn.Linear applied once. Use another solver."
                )
            if args[0].ndim != 2:
                raise InvalidParameterError(
                    f"Layer {name!r} got an input of shape {tuple(args[0].shape)}; (E)K-FAC "
                    "supports nn.Linear on 2-D inputs (batch, features). Use another solver."
                )
            inputs[index] = args[0].detach()
            tap = torch.zeros_like(output, requires_grad=True)
            taps[index] = tap
            return output + tap

        return hook

    handles = [
        layer.register_forward_hook(hook_for(i, name))
        for i, (name, layer) in enumerate(source.layers)
    ]
    try:
        with torch.enable_grad():
            outputs = source.module(x)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for (name, _), tap in zip(source.layers, taps, strict=True) if tap is None]
    if missing:
        raise InvalidParameterError(
            f"KFACSource layers {missing} were not used in the forward pass of the module."
        )
    if not isinstance(outputs, Tensor):
        raise InvalidParameterError("(E)K-FAC needs a module whose forward returns one Tensor.")
    return outputs, inputs, taps  # type: ignore[return-value]


def _output_draws(
    outputs: Tensor,
    y: Tensor,
    source: KFACSource,
    fisher: str,
    mc_samples: int | None,
    gen: torch.Generator,
) -> list[Tensor]:
    """Output-space vectors ``r`` (shaped like ``outputs``) whose back-propagation gives the
    pseudo-gradients ``g``: the layer's Fisher block is ``mean_n sum_r (g_r ⊗ ā)(g_r ⊗ ā)ᵀ``."""
    leaf = outputs.detach().requires_grad_(True)
    n = leaf.shape[0]

    def loss_grad(targets: Tensor, create_graph: bool = False) -> Tensor:
        with torch.enable_grad():
            total = source.loss_fn(leaf, targets).sum()
            return torch.autograd.grad(total, leaf, create_graph=create_graph)[0]

    if fisher == "empirical":
        return [loss_grad(y).detach()]
    if mc_samples is not None and source.output_kind == "classification":
        flat = leaf.detach().reshape(n, -1).cpu()
        draws = []
        for _ in range(mc_samples):
            if flat.shape[1] == 1:
                sampled = torch.bernoulli(torch.sigmoid(flat[:, 0]), generator=gen)
            else:
                sampled = torch.multinomial(torch.softmax(flat, 1), 1, generator=gen)[:, 0]
                if y.shape == outputs.shape and y.is_floating_point():  # one-hot targets
                    sampled = torch.nn.functional.one_hot(sampled, flat.shape[1])
            targets = sampled.to(dtype=y.dtype, device=y.device).reshape(
                y.shape if sampled.numel() == y.numel() else sampled.shape
            )
            draws.append(loss_grad(targets).detach() / math.sqrt(mc_samples))
        return draws
    # Output-space Hessian of each example's loss (a block of the Hessian of the summed loss).
    grad = loss_grad(y, create_graph=True).reshape(n, -1)
    width = grad.shape[1]
    rows = []
    for c in range(width):
        if grad.requires_grad:
            (row,) = torch.autograd.grad(
                grad[:, c].sum(), leaf, retain_graph=c + 1 < width, allow_unused=True
            )
        else:
            row = None
        rows.append(torch.zeros_like(leaf) if row is None else row)
    hess = torch.stack([r.reshape(n, width) for r in rows], 1).detach()
    hess = (hess + hess.transpose(1, 2)) / 2
    w, u = torch.linalg.eigh(hess)
    root = u * w.clamp(min=0).sqrt()[:, None, :]  # root @ rootᵀ = hess
    if mc_samples is not None:  # regression: r = root ε with ε ~ N(0, I), E[r rᵀ] = hess
        return [
            torch.einsum(
                "nck,nk->nc", root,
                torch.randn(n, width, generator=gen, dtype=root.dtype).to(root.device),
            ).reshape(outputs.shape) / math.sqrt(mc_samples)
            for _ in range(mc_samples)
        ]
    top = float(w.max()) if w.numel() else 0.0
    return [
        root[:, :, k].reshape(outputs.shape)
        for k in range(width)
        if float(w[:, k].max()) > 1e-14 * max(top, 1e-300)
    ]


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

SOLVERS: dict[str, type[Solver]] = {
    "exact": ExactSolver,
    "cg": CGSolver,
    "lissa": LiSSASolver,
    "arnoldi": ArnoldiSolver,
    "ekfac": EKFACSolver,
    "kfac": KFACSolver,
}


def make_solver(name: str, **options: Any) -> Solver:
    """A solver by name (see :data:`SOLVERS`), with its options checked.

    Raises
    ------
    UnknownNameError
        If ``name`` is not in :data:`SOLVERS` (the message lists them).
    InvalidParameterError
        If an option is unknown (the message lists the valid ones) or has a wrong value.
    """
    if not isinstance(name, str) or name.lower() not in SOLVERS:
        raise UnknownNameError(
            f"Unknown solver {name!r}. Choose one of: {', '.join(SOLVERS)}."
        )
    cls = SOLVERS[name.lower()]
    valid = cls.option_names()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InvalidParameterError(
            f"Unknown option(s) {', '.join(map(repr, unknown))} for solver {name!r}. Valid "
            f"options: {', '.join(valid) or '(none)'}."
        )
    return cls(**options)


def inverse_hvp(
    op: HessianOperator,
    v: Tensor,
    solver: str | Solver = "cg",
    damping: float = 0.0,
    **options: Any,
) -> Tensor:
    """``(H + damping I)^{-1} v`` for each row of ``v``, with a solver given by name or instance.

    Fitting is repeated on every call; to solve many batches, keep a fitted solver:
    ``s = make_solver(name, **options).fit(op, damping); s.solve(v)``.
    """
    if isinstance(solver, Solver):
        if options:
            raise InvalidParameterError(
                "Options cannot be given with a Solver instance; set them on the instance."
            )
        instance = solver
    else:
        instance = make_solver(solver, **options)
    return instance.fit(op, damping).solve(v)
