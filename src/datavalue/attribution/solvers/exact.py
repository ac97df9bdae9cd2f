"""Dense inverse: Cholesky of ``H + λI`` (eigendecomposition if indefinite)."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from torch import Tensor

from datavalue._core.exceptions import (
    InvalidDataError,
    InvalidParameterError,
)
from datavalue._core.validation import Interval, available_memory
from datavalue.attribution.solvers.base import HessianOperator, Solver


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
        item = torch.empty((), dtype=op.dtype).element_size()
        # Peak: the matrix, its symmetrised copy, and the Cholesky factor (or eigenvectors and
        # LAPACK's workspace): about four p x p matrices at once.
        peak = 4 * p * p * item
        if p > self.max_params:
            raise InvalidParameterError(
                f"The exact solver needs the dense {p} x {p} Hessian, about {_gib(peak)} at its "
                f"peak in {op.dtype}, more than its 'max_params'={self.max_params} allows. Use "
                "solver='cg', 'arnoldi' or 'ekfac' (memory linear in the parameters), restrict "
                "the parameters (params=[last layer]), or raise the limit with "
                f"solver_options={{'max_params': {p}}} if {_gib(peak)} fits in memory."
            )
        free = available_memory()
        if free is not None and peak > free:
            raise InvalidParameterError(
                f"The exact solver needs the dense {p} x {p} Hessian, about {_gib(peak)} at its "
                f"peak in {op.dtype}, but only {_gib(free)} of memory is available: it would be "
                "killed. Use solver='cg', 'arnoldi' or 'ekfac' (memory linear in the "
                "parameters), or restrict the parameters (params=[last layer])."
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

    def _state(self) -> dict[str, Any]:
        if self._chol is not None:
            return {"chol": self._chol}
        return {"u": self._u, "inv_w": self._inv_w}

    def _restore(self, op: HessianOperator, state: dict[str, Any]) -> None:
        self._chol = state.get("chol")
        if self._chol is None:
            self._u, self._inv_w = state["u"], state["inv_w"]

    def _solve(self, v: Tensor) -> Tensor:
        if self._chol is not None:
            return torch.cholesky_solve(v.T, self._chol).T
        return ((v @ self._u) * self._inv_w) @ self._u.T


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
