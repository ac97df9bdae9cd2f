"""Conjugate gradients: block CG over all right-hand sides (Ji & Li 2017) or one recurrence per row."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from datavalue._core.validation import Interval, Options
from datavalue.attribution.solvers.base import HessianOperator, Solver, SolverError


def _negative_curvature_message(curvature: float, damping: float) -> str:
    return (
        f"CG met a direction of non-positive curvature dᵀ(H + λI)d = {curvature:.3g} "
        f"(damping λ={damping:g}): H + λI is not positive definite at these parameters. "
        "For a network this is normal away from a strict minimum: pass "
        "hessian='gauss-newton' (positive semi-definite for convex losses; what Kronfluence "
        "and TRAK use), or a larger 'damping', or solver='exact' (which handles an indefinite "
        "H) for small models."
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
        matrix under 128 MB, and at most ``max(64, p / 2)``).
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

    def _make_preconditioner(self) -> Solver:
        """A fresh solver for the 'preconditioner' option (a name or a Solver to copy)."""
        pre = self.preconditioner
        if isinstance(pre, Solver):
            return type(pre)(**pre.get_options())
        options = dict(self.preconditioner_options or {})
        if pre == "arnoldi":
            options.setdefault("complement", "tail")
        from datavalue.attribution.solvers import make_solver  # the registry imports this module

        return make_solver(pre, **options)

    def _fit(self, op: HessianOperator, damping: float) -> None:
        pre = self.preconditioner
        self._precondition: Callable[[Tensor], Tensor] | None = None
        self._pre_solver: Solver | None = None
        if isinstance(pre, str | Solver):
            pre = self._make_preconditioner()
            pre.fit(op, damping)
            self.info_["preconditioner"] = {"name": pre.name, **pre.info_}
            self._pre_solver, self._precondition = pre, pre.solve
        elif callable(pre):
            self._precondition = pre
        self.info_["iterations"] = []
        self.info_["residuals"] = []
        self.info_["converged"] = []

    def _state(self) -> dict[str, Any]:
        pre = getattr(self, "_pre_solver", None)
        if pre is None:
            return {}
        return {"preconditioner": pre.state()}

    def _restore(self, op: HessianOperator, state: dict[str, Any]) -> None:
        self._precondition = None
        self._pre_solver = None
        pre = self.preconditioner
        if isinstance(pre, str | Solver):
            solver = self._make_preconditioner()
            solver.restore(op, self.damping_, state["preconditioner"])
            self._pre_solver, self._precondition = solver, solver.solve
        elif callable(pre):
            self._precondition = pre
        for key in ("iterations", "residuals", "converged"):
            self.info_[key] = []

    def _solve(self, b: Tensor) -> Tensor:
        if not self.block:
            return self._solve_rows(b)
        k, p = b.shape
        # More rows than p/2 per block buy no more Krylov space than p can hold, and cost an
        # O(block^3) orthonormalisation per iteration.
        size = self.block_size or max(1, min(2**24 // p, max(64, p // 2)))
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
        k = b.shape[0]
        maxiter = self._maxiter()
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

    def _maxiter(self) -> int:
        """Iterations allowed per row (block): ``maxiter``, or ``10 p`` when it is None."""
        return self.maxiter if self.maxiter is not None else 10 * self._op.n_params

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
            maxiter = self._maxiter()
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
        k = b.shape[0]
        maxiter = self._maxiter()
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
