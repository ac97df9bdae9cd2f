"""LiSSA (Agarwal, Bullins & Hazan 2017), the stochastic recursion of Koh & Liang (2017)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from datavalue._core.exceptions import (
    InvalidParameterError,
)
from datavalue._core.validation import Interval
from datavalue.attribution.solvers.base import (
    HessianOperator,
    Solver,
    SolverError,
    _power_iteration,
)


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
    random_state : int
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
        "random_state": ["random_state"],
        "rtol": [Interval(float, 0, 1)],
    }

    def __init__(
        self,
        *,
        depth: int = 1000,
        scale: float | None = None,
        batch_size: int | None = None,
        repeats: int = 1,
        random_state: int = 0,
        rtol: float = 0.0,
    ) -> None:
        self.depth = depth
        self.scale = scale
        self.batch_size = batch_size
        self.repeats = repeats
        self.random_state = random_state
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
            top = _power_iteration(op, 50, 0 if self.random_state is None else self.random_state) + damping
            if top <= 0:
                raise SolverError("LiSSA: H + damping*I is zero; nothing to invert.")
            scale = 1.5 * top
        self.scale_ = float(scale)
        self.info_.update(scale=self.scale_, depth=self.depth, batch_size=self.batch_size)

    def _state(self) -> dict[str, Any]:
        return {"scale": self.scale_}

    def _restore(self, op: HessianOperator, state: dict[str, Any]) -> None:
        self.scale_ = float(state["scale"])

    def _solve(self, v: Tensor) -> Tensor:
        op, damping, s = self._op, self.damping_, self.scale_
        assert op is not None
        gen = torch.Generator().manual_seed(0 if self.random_state is None else self.random_state)
        runs = self.repeats if self.batch_size is not None else 1
        v_norm = v.norm(dim=1)
        estimates = []
        steps = []
        hook = self.progress_hook
        every = max(1, (self.depth * runs) // 100)
        for run in range(runs):
            h = v.clone()
            change = math.inf
            for step in range(1, self.depth + 1):
                if hook is not None and step % every == 0:
                    hook((run * self.depth + step) / (self.depth * runs))
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
