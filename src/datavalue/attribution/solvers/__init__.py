"""Inverse-Hessian-vector products for influence functions: exact, CG, LiSSA, Arnoldi, (E)K-FAC.

Influence functions (Koh & Liang 2017, eq. 2-3) need ``x = (H + λI)^{-1} v`` for many right-hand
sides ``v`` (gradients of test or training losses), where ``H`` is the Hessian (or Gauss-Newton
matrix) of the mean training objective at the fitted parameters and ``λ >= 0`` is a damping term.
A model is seen through a :class:`HessianOperator` (what a solver may use: Hessian-vector
products, optionally the dense matrix, minibatch products, Kronecker-factor sources); a
:class:`Solver` is fitted once on it (factorise, eigendecompose, collect factors) and then
solves any number of right-hand sides, always batched over the rows of ``v`` (shape ``(k, p)``
or ``(p,)``); the answer is in ``op.dtype`` on ``op.device``.

========== ============================================================= ====================
name       method                                                        uses
========== ============================================================= ====================
exact      dense ``H + λI``, Cholesky (eigendecomposition if indefinite) ``dense`` or matvec
cg         block conjugate gradients over all rows, optional preconditioner ``matvec``
lissa      Agarwal et al. (2017) recursion, as used by Koh & Liang        ``(batch_)matvec``
arnoldi    top-r eigenpairs by Arnoldi iteration (Schioppa et al. 2022)   ``matvec``
ekfac      eigenvalue-corrected K-FAC (George et al. 2018; Grosse et al.) ``kfac``
kfac       Kronecker-factored curvature (Martens & Grosse 2015)           ``kfac``
========== ============================================================= ====================

One module per solver; :data:`SOLVERS` and :func:`make_solver` find them by name. A solver
that cannot give a meaningful answer (negative curvature in CG, LiSSA diverging, zero curvature
without damping) raises :class:`SolverError`, whose message says what to change.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from datavalue._core.exceptions import InvalidParameterError, UnknownNameError
from datavalue.attribution.solvers.arnoldi import ArnoldiSolver
from datavalue.attribution.solvers.base import HessianOperator, KFACSource, Solver, SolverError
from datavalue.attribution.solvers.cg import CGSolver
from datavalue.attribution.solvers.exact import ExactSolver
from datavalue.attribution.solvers.kfac import EKFACSolver, KFACSolver
from datavalue.attribution.solvers.lissa import LiSSASolver

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
