"""Influence of adding an example that is not in the training set (a candidate).

Adding ``z_c`` to the mean objective ``F`` of ``n`` examples up-weights it by ``epsilon =
+1/n`` (exactly so for scikit-learn's objectives, whose regulariser is ``1/(C n)`` of the mean
loss; to first order in ``1/n`` for a torch module's mean loss), so the parameters move by

    theta_{+c} - theta_hat ~ -(1/n) H^{-1} grad L(z_c)              (Koh & Liang 2017, Eq. 1)

and the total validation loss by ``-(1/n) grad L_val^T H^{-1} grad L(z_c)``. The value of a
candidate is minus that change: positive = adding it would lower the validation loss. One
linear solve serves every candidate: ``u = H^{-1} sum_v grad L(z_v)``, then one gradient per
candidate.

``order="newton"`` (linear models with one output score) takes one Newton step on the
objective *with* the candidate, its own curvature included (Sherman-Morrison, the mirror of
:mod:`datavalue.attribution.newton`'s leave-one-out):

    theta_{+c} - theta_hat = -H^{-1} x~_c r_c / (n (1 + c_c x~_c^T H^{-1} x~_c / n)),

and evaluates the validation losses at the new parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["candidate_values"]


def candidate_values(inf: Any, x_cand: Any, y_cand: Any, x_valid: Any, y_valid: Any, *,
                     order: str = "first") -> np.ndarray:
    """Predicted decrease of the total validation loss when each candidate is added,
    ``(n_candidates,)``; ``inf`` a fitted :class:`~datavalue.attribution.InfluenceFunction`."""
    import torch

    from datavalue.attribution.gradients import iter_gradient_blocks

    cands = inf._prepare(x_cand, y_cand, "x_candidates", "y_candidates")
    valid = inf._prepare(x_valid, y_valid, "x_valid", "y_valid")
    n = inf.n_train_
    values = np.empty(cands.n, dtype=np.float64)
    if order == "newton":
        from datavalue.attribution.newton import (
            _score_derivatives,
            _with_ones,
            hessian_factor,
            newton_losses,
        )

        factor = hessian_factor(inf)  # checks that the model allows it
        model = inf.model_
        xv, yv = valid.tensors()
        for rows, xb, yb in cands.blocks(inf.batch_size):
            _, r, c = _score_derivatives(model, xb, yb)
            xt = _with_ones(model, xb)
            solved = torch.linalg.lu_solve(*factor, xt.T).T
            leverage = c * (solved * xt).sum(1) / n
            deltas = -solved * (r / (n * (1 + leverage)))[:, None]
            values[rows] = -newton_losses(inf, xv, yv, deltas).sum(0)
        return values
    total = inf._sum_gradients(valid)
    u = inf.solver_.solve(total[None])[0]
    for rows, g in iter_gradient_blocks(inf.model_, cands, batch_size=inf.batch_size):
        values[rows] = (g @ u.to(g.dtype)).cpu().numpy() / n
    return values
