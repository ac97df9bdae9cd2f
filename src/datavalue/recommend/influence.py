"""Influence of training ratings on a recommender's predictions, and unlearning by Newton steps.

For the matrix factorization of :mod:`datavalue.recommend.mf` with sum objective ``L`` and
Hessian ``H`` at the fitted ``theta``, removing the training rating ``j`` moves the parameters by
about ``H^{-1} grad l_j`` (Koh & Liang 2017, eq. 1 with ``epsilon = -1`` on a sum objective),
so the prediction ``f = r_hat(u, i)`` moves by ``-grad f^T H^{-1} grad l_j`` when ``j`` is gone.
We report the effect of *having* the rating: ``f(theta) - f(theta_{-j})``, positive when the
rating raised the prediction ("you were recommended X because you rated Y").

Two scopes:

- ``"restricted"`` (FIA, Cheng et al., KDD 2019): only the parameters the prediction depends on,
  the user's and the item's bias and factors. ``H`` restricted to them is a ``2(k+1)`` square
  matrix built from the user's and the item's ratings, so an explanation costs a few small
  products (well under 50 ms on MovieLens), and only ratings of that user or item get a score.
- ``"full"``: every parameter, ``H^{-1} grad f`` by the conjugate-gradient solver of
  :mod:`datavalue.attribution.solvers` on exact Hessian-vector products; every rating gets a score.

Unlearning a set ``D`` of ratings takes one Newton step on the objective without them,
``theta - H_{-D}^{-1} grad L_{-D}(theta)`` (Zhang et al. 2023, "Recommendation Unlearning via
Influence Function"), on the parameters ``D`` touches (its users' and items' biases and factors,
and ``mu``) or on all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datavalue._core.exceptions import InvalidParameterError
from datavalue.attribution.solvers import SolverError
from datavalue.recommend.mf import MatrixFactorization, MFProblem, _cg, newton_refine, one_thread
from datavalue.recommend.ratings import Ratings

__all__ = [
    "RecommenderInfluence",
    "RecommendationExplanation",
    "UnlearnedRecommender",
    "UnlearningReport",
    "unlearning_report",
    "explain_recommendation",
    "unlearn_ratings",
]

_SCOPES = ("restricted", "full")


def _check_scope(scope: str) -> str:
    if scope not in _SCOPES:
        raise InvalidParameterError(f"'scope' must be one of {', '.join(_SCOPES)}; got "
                                    f"{scope!r}.")
    return scope


@dataclass
class RecommendationExplanation:
    """Why ``model`` predicts ``predicted`` for (user, item): the training ratings that raised
    and lowered that prediction the most.

    ``helpful`` and ``harmful`` are DataFrames with columns row_id (the rating's id in the
    source), user_id, item_id, title, rating, score (the predicted rating's change due to that
    rating; positive = raised it) and why ("you rated" for the user's own ratings, "others
    rated this item" for other users' ratings of the item). ``because`` and ``despite`` are the
    same for the user's own ratings only: "you were recommended X because you rated Y"."""

    user_id: Any
    item_id: Any
    title: str
    predicted: float
    scope: str
    helpful: Any
    harmful: Any
    because: Any
    despite: Any
    seconds: float
    scores: np.ndarray = field(repr=False)

    def to_text(self) -> str:
        lines = [f"user {self.user_id!r}: predicted {self.predicted:.2f} for {self.title!r} "
                 f"(item {self.item_id!r}; influence over {self.scope} parameters)"]
        for title, frame, word in (("because you rated (raised the prediction):",
                                    self.because, ""), ("despite (lowered it):", self.despite, ""),
                                   ("all ratings, most raising:", self.helpful, ""),
                                   ("all ratings, most lowering:", self.harmful, "")):
            lines.append("  " + title)
            if len(frame) == 0:
                lines.append("    (none)")
            for row in frame.itertuples(index=False):
                who = "you rated" if row.why == "you rated" else f"user {row.user_id!r} rated"
                lines.append(f"    {word}{row.score:+.4f}  {who} {row.title!r} {row.rating:g}")
        return "\n".join(lines)


class RecommenderInfluence:
    """Influence of every training rating on predictions and losses of a fitted
    :class:`MatrixFactorization` (see the module docstring).

    Parameters
    ----------
    model : MatrixFactorization
        Fitted on ``train``.
    train : Ratings
        The ratings the model was fitted on.
    damping : float
        Added to the Hessian's diagonal (0 by default: the penalty keeps the restricted Hessian
        positive definite at a minimum).
    solver_options : dict, optional
        Options of the conjugate-gradient solver for ``scope="full"``.
    """

    def __init__(self, model: MatrixFactorization, train: Ratings, *, damping: float = 0.0,
                 solver_options: dict | None = None) -> None:
        if not isinstance(model, MatrixFactorization):
            raise InvalidParameterError("'model' must be a fitted datavalue "
                                        "MatrixFactorization.")
        model._check_fitted()
        if not isinstance(train, Ratings):
            raise InvalidParameterError("'train' must be the Ratings the model was fitted on.")
        if train.n_users != model.layout_.n_users or train.n_items != model.layout_.n_items:
            raise InvalidParameterError("'train' has different user or item tables than the "
                                        "model: give the ratings it was fitted on.")
        if not damping >= 0:
            raise InvalidParameterError(f"'damping' must be >= 0; got {damping!r}.")
        self.model, self.train, self.damping = model, train, float(damping)
        self.solver_options = dict(solver_options or {})
        self.problem: MFProblem = model.problem(train)
        self.theta = model.theta_
        self.e = self.problem.residuals(self.theta).numpy()
        # per user / per item lists of rating indices, for the restricted scope
        self._by_user = _groups(train.user, train.n_users)
        self._by_item = _groups(train.item, train.n_items)
        self._solver = None

    # -- gradients of a prediction
    def _target_gradient(self, u: int, i: int) -> Tensor:
        """``d r_hat(u, i) / d theta`` as a flat vector."""
        lay = self.model.layout_
        g = torch.zeros(lay.size, dtype=torch.float64)
        _, _, _, p, q = lay.split(self.theta)
        ub, us = lay.user_slice(u)
        ib, is_ = lay.item_slice(i)
        g[0] = 1.0
        g[ub] = 1.0
        g[ib] = 1.0
        g[us] = q[i]
        g[is_] = p[u]
        return g

    def _scores_from_solution(self, s: Tensor) -> np.ndarray:
        """``grad l_j . s`` for every training rating ``j`` (vectorised)."""
        lay = self.model.layout_
        smu, sbu, sbi, sp, sq = lay.split(s)
        _, _, _, p, q = lay.split(self.theta)
        u, i = self.problem.u, self.problem.i
        dot = smu + sbu[u] + sbi[i] + (sp[u] * q[i]).sum(1) + (p[u] * sq[i]).sum(1)
        return (-2.0 * torch.as_tensor(self.e) * dot).numpy()

    def _full_solve(self, g: Tensor) -> Tensor:
        from datavalue.attribution.solvers import CGSolver, HessianOperator

        if self._solver is None:
            prob, theta = self.problem, self.theta
            pre = prob.block_preconditioner(theta)
            op = HessianOperator(
                n_params=self.model.layout_.size,
                matvec=lambda v: torch.stack([prob.hvp(theta, row) for row in v]))
            opts = {"rtol": 1e-8, "maxiter": 2000, "preconditioner":
                    lambda v: torch.stack([pre(row) for row in v])}
            opts.update(self.solver_options)
            self._solver = CGSolver(**opts).fit(op, self.damping)
        return self._solver.solve(g[None])[0]

    def _restricted(self, u: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """FIA: (rating indices of user ``u`` or item ``i``, their ``grad l_j . H_SS^{-1} g_S``)
        with ``S`` = the user's and the item's biases and factors."""
        lay = self.model.layout_
        k = lay.k
        _, _, _, p, q = lay.split(self.theta)
        ru, ri = self._by_user[u], self._by_item[i]
        one = torch.ones(1, dtype=torch.float64)
        e = torch.as_tensor(self.e)
        a_u = torch.cat([torch.ones(len(ru), 1, dtype=torch.float64), q[self.train.item[ru]]],
                        1)
        a_i = torch.cat([torch.ones(len(ri), 1, dtype=torch.float64), p[self.train.user[ri]]],
                        1)
        lam = torch.full((k + 1,), self.model.reg, dtype=torch.float64)
        lam[0] = self.model.reg_bias_
        h = torch.zeros(2 * (k + 1), 2 * (k + 1), dtype=torch.float64)
        h[:k + 1, :k + 1] = 2 * a_u.T @ a_u + torch.diag(2 * lam)
        h[k + 1:, k + 1:] = 2 * a_i.T @ a_i + torch.diag(2 * lam)
        both = ru[self.train.item[ru] == i]  # the (u, i) rating itself, if in training
        for m in both.tolist():
            am = torch.cat([one, q[i]])
            cm = torch.cat([one, p[u]])
            cross = 2 * torch.outer(am, cm)
            cross[1:, 1:] -= 2 * e[m] * torch.eye(k, dtype=torch.float64)
            h[:k + 1, k + 1:] += cross
            h[k + 1:, :k + 1] += cross.T
        h += self.damping * torch.eye(2 * (k + 1), dtype=torch.float64)
        s = torch.linalg.solve(h, torch.cat([one, q[i], one, p[u]]))
        idx = np.union1d(ru, ri)
        uu, ii = self.train.user[idx], self.train.item[idx]
        dot = np.zeros(len(idx))
        at_u, at_i = uu == u, ii == i
        s_u, s_i = s[:k + 1].numpy(), s[k + 1:].numpy()
        qn, pn = q.numpy(), p.numpy()
        dot[at_u] += s_u[0] + qn[ii[at_u]] @ s_u[1:]
        dot[at_i] += s_i[0] + pn[uu[at_i]] @ s_i[1:]
        return idx, -2.0 * self.e[idx] * dot

    def _codes(self, user: Any, item: Any) -> tuple[int, int]:
        u, i = self.train.user_code(user, "user"), self.train.item_code(item, "item")
        if len(self._by_user[u]) == 0:
            raise InvalidParameterError(
                f"'user' {user!r} has no training ratings: the model predicts the same for them "
                "as for anyone new (mu + item bias), and none of their ratings can explain it.")
        return u, i

    def prediction_influence(self, user: Any, item: Any, *, scope: str = "restricted"
                             ) -> np.ndarray:
        """For every training rating, the change of the predicted rating of (``user``,
        ``item``) (the user's own ids) that the rating causes: ``f(theta) - f(theta_{-j})``
        (positive = it raised the prediction). Shape ``(n_train,)``; with
        ``scope="restricted"`` ratings of other users and items get 0."""
        _check_scope(scope)
        u, i = self._codes(user, item)
        with one_thread():
            return self._prediction_influence(u, i, scope)

    def _prediction_influence(self, u: int, i: int, scope: str) -> np.ndarray:
        out = np.zeros(self.train.n_ratings)
        if scope == "restricted":
            idx, dots = self._restricted(u, i)
            out[idx] = -dots
            return out
        s = self._full_solve(self._target_gradient(u, i))
        return -self._scores_from_solution(s)

    def loss_influence(self, user: Any, item: Any, rating: float, *, scope: str = "restricted"
                       ) -> np.ndarray:
        """For every training rating, the change of the squared error on a held-out rating
        ``(user, item, rating)`` if it were removed: ``l(theta_{-j}) - l(theta)`` (positive =
        helpful: the error would grow without it), the library's sign convention."""
        _check_scope(scope)
        u, i = self._codes(user, item)
        resid = float(rating) - float(self.model.predict_codes([u], [i])[0])
        # grad l_test = -2 e_test grad f, and prediction_influence is -grad f . H^{-1} grad l_j
        return 2.0 * resid * self.prediction_influence(user, item, scope=scope)

    def explain(self, user: Any, item: Any, k: int = 5, *, scope: str = "restricted"
                ) -> RecommendationExplanation:
        """The ``k`` training ratings that raised the predicted rating of (``user``, ``item``)
        the most, and the ``k`` that lowered it the most."""
        import pandas as pd

        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InvalidParameterError(f"'k' must be a positive int; got {k!r}.")
        start = time.perf_counter()
        scores = self.prediction_influence(user, item, scope=scope)
        seconds = time.perf_counter() - start
        u, i = self._codes(user, item)
        tr = self.train
        cand = np.flatnonzero(scores != 0)

        def table(rows: np.ndarray) -> Any:
            sel = rows[:k]
            return pd.DataFrame({
                "row_id": tr.row_id[sel], "user_id": tr.user_ids[tr.user[sel]],
                "item_id": tr.item_ids[tr.item[sel]],
                "title": [tr.title(j) for j in tr.item[sel]],
                "rating": tr.rating[sel], "score": scores[sel],
                "why": np.where(tr.user[sel] == u, "you rated", "others rated this item"),
            })

        pos = cand[np.argsort(-scores[cand], kind="stable")]
        pos = pos[scores[pos] > 0]
        neg = cand[np.argsort(scores[cand], kind="stable")]
        neg = neg[scores[neg] < 0]
        return RecommendationExplanation(
            user_id=tr.user_ids[u], item_id=tr.item_ids[i], title=tr.title(i),
            predicted=float(self.model.predict_codes([u], [i])[0]), scope=scope,
            helpful=table(pos), harmful=table(neg),
            because=table(pos[tr.user[pos] == u]), despite=table(neg[tr.user[neg] == u]),
            seconds=seconds, scores=scores)


def _groups(codes: np.ndarray, n: int) -> list[np.ndarray]:
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(n)]


def explain_recommendation(model: MatrixFactorization, train: Ratings, user: Any, item: Any,
                           k: int = 5, *, scope: str = "restricted") -> RecommendationExplanation:
    """Shortcut: ``RecommenderInfluence(model, train).explain(user, item, k, scope=scope)``."""
    return RecommenderInfluence(model, train).explain(user, item, k, scope=scope)


# ---------------------------------------------------------------------------- unlearning
@dataclass
class UnlearnedRecommender:
    """The result of removing ratings from a fitted model without retraining.

    Attributes
    ----------
    model : MatrixFactorization
        The updated model (fitted on ``remaining``).
    remaining : Ratings
        The training ratings without the removed ones.
    removed : Ratings
    n_parameters_updated : int
    seconds : float
    gradient_max : float
        Largest entry of the remaining objective's gradient over the updated parameters at
        their new values (0 after an exact Newton step on a quadratic; the other parameters
        keep the gradient the removal gives them: one Newton step does not propagate the
        change to users and items the removed ratings do not touch).
    """

    model: MatrixFactorization
    remaining: Ratings
    removed: Ratings
    n_parameters_updated: int
    seconds: float
    gradient_max: float


def _removal_mask(train: Ratings, remove: Any = None, *, user: Any = None, item: Any = None,
                  before: int | None = None) -> np.ndarray:
    mask = np.zeros(train.n_ratings, dtype=bool)
    given = [a is not None for a in (remove, user, item, before)]
    if sum(given) != 1:
        raise InvalidParameterError("Give exactly one of 'remove' (a mask or indices of training "
                                    "ratings), 'user', 'item' or 'before'.")
    if remove is not None:
        sel = np.asarray(remove)
        if sel.dtype == bool:
            if sel.shape != mask.shape:
                raise InvalidParameterError(f"'remove' as a mask must have one entry per "
                                            f"training rating ({train.n_ratings}); got shape "
                                            f"{sel.shape}.")
            mask = sel.copy()
        else:
            if sel.size and (not np.issubdtype(sel.dtype, np.integer) or sel.min() < 0
                             or sel.max() >= train.n_ratings):
                raise InvalidParameterError(f"'remove' must hold rating positions in [0, "
                                            f"{train.n_ratings}).")
            mask[sel] = True
    elif user is not None:
        mask = train.user == train.user_code(user, "user")
    elif item is not None:
        mask = train.item == train.item_code(item, "item")
    else:
        if train.timestamp is None:
            raise InvalidParameterError("'before' needs timestamps; these ratings have none.")
        mask = train.timestamp < int(before)
    if not mask.any():
        raise InvalidParameterError("Nothing to remove: the selection matches no training "
                                    "rating.")
    if mask.all():
        raise InvalidParameterError("The selection removes every training rating; nothing "
                                    "would be left to fit.")
    return mask


def unlearn_ratings(model: MatrixFactorization, train: Ratings, remove: Any = None, *,
                    user: Any = None, item: Any = None, before: int | None = None,
                    newton_steps: int = 1) -> UnlearnedRecommender:
    """Remove training ratings from a fitted model by Newton steps, without retraining.

    Parameters
    ----------
    remove : boolean mask or indices of training ratings
    user, item : a user's or an item's id (all its ratings), or
    before : int
        a timestamp (every rating before it). Exactly one of these four.
    newton_steps : int
        Newton steps on the affected parameters (1: classic one-step unlearning).

    The step updates the biases and factors of the users and items the removed ratings touch,
    and ``mu``; every other parameter keeps its value. (A step on all parameters was tried and
    dropped: near the factorization's rotation symmetry, ``P -> P R``, ``Q -> Q R``, the
    Hessian of the reduced objective has directions of almost zero curvature, and the
    unpenalised step along them left the gradient 10-100x larger than the affected step did on
    MovieLens subsets.)
    """
    if isinstance(newton_steps, bool) or not isinstance(newton_steps, int) or newton_steps < 1:
        raise InvalidParameterError(f"'newton_steps' must be an int >= 1; got {newton_steps!r}.")
    model._check_fitted()
    with one_thread():
        return _unlearn(model, train, remove, user, item, before, newton_steps)


def _unlearn(model: MatrixFactorization, train: Ratings, remove: Any, user: Any, item: Any,
             before: int | None, newton_steps: int) -> UnlearnedRecommender:
    start = time.perf_counter()
    mask = _removal_mask(train, remove, user=user, item=item, before=before)
    lay = model.layout_
    removed, remaining = train.subset(mask), train.subset(~mask)
    # The affected parameters (see the docstring), and the ratings that touch them: the other
    # ratings' terms vanish from the restricted gradient and Hessian, so working on these alone
    # keeps a step proportional to the removed data's reach, not to the data set.
    free_idx = lay.indices(np.unique(removed.user), np.unique(removed.item), mu=True)
    free = torch.zeros(lay.size, dtype=torch.float64)
    free[torch.as_tensor(free_idx)] = 1.0
    users_f = np.zeros(lay.n_users, bool)
    users_f[removed.user] = True
    items_f = np.zeros(lay.n_items, bool)
    items_f[removed.item] = True
    local = remaining.subset(users_f[remaining.user] | items_f[remaining.item])
    prob = MFProblem(lay, local.user, local.item, local.rating, model.reg, model.reg_bias_)
    n_remaining = float(remaining.n_ratings)
    n_far = n_remaining - local.n_ratings
    # mu is shared by every rating; the ratings that touch no free parameter ("far") change
    # their residual only through mu, so their sum is updated, not recomputed: one pass over
    # the data here, none per step (the step then costs what the local ratings cost).
    theta0 = model.theta_
    far_sum0 = float(np.sum(remaining.rating - model.predict_codes(remaining.user,
                                                                   remaining.item)))
    far_sum0 -= float(prob.residuals(theta0).sum())

    def gradient(theta: Tensor) -> Tensor:
        g = prob.gradient(theta)
        far = far_sum0 - n_far * float(theta[0] - theta0[0])
        g[0] += -2.0 * far
        return g * free

    theta = theta0.clone()
    for _ in range(newton_steps):
        g = gradient(theta)

        def mv(v: Tensor, theta: Tensor = theta) -> Tensor:
            hv = prob.hvp(theta, v * free)
            # mu's row and column: the local ratings are all that couple mu to the free
            # parameters, so only the mu-mu entry (2 n) needs the far ratings' count.
            hv[0] += 2.0 * n_far * v[0]
            return hv * free

        pre_inner = prob.block_preconditioner(theta)

        def pre(v: Tensor, pre_inner: Any = pre_inner) -> Tensor:
            out = pre_inner(v) * free
            out[0] = v[0] / (2.0 * n_remaining)
            return out

        d, negative = _cg(mv, -g, 1e-10, 1000, pre)
        if negative:
            raise SolverError(
                "The Hessian restricted to the affected parameters has negative curvature "
                "after the removal (the model is far from a minimum without these ratings); "
                "retrain instead, or refit the model to a tighter optimum first.")
        theta = theta + d
    new = model.with_params(theta)
    new.ratings_ = remaining
    gmax = float(gradient(theta).abs().max())
    seconds = time.perf_counter() - start
    n_upd = int(free.sum().item())
    new.fit_info_ = {"unlearned": int(mask.sum()), "newton_steps": newton_steps,
                     "seconds": seconds, "gradient_max": gmax}
    return UnlearnedRecommender(new, remaining, removed, n_upd, seconds, gmax)


def retrain(model: MatrixFactorization, remaining: Ratings, *, warm: bool) -> MatrixFactorization:
    """The reference for unlearning: refit on ``remaining`` from scratch (same settings and
    seed) or from ``model``'s parameters (``warm=True``, Newton steps to the same ``tol``)."""
    new = MatrixFactorization(model.n_factors, model.reg, model.reg_bias, tol=model.tol,
                              max_als=model.max_als, random_state=model.random_state)
    if not warm:
        return new.fit(remaining)
    start = time.perf_counter()
    new.layout_, new.ratings_ = model.layout_, remaining
    prob = MFProblem(model.layout_, remaining.user, remaining.item, remaining.rating, model.reg,
                     model.reg_bias_)
    with one_thread():
        theta, steps, gmax = newton_refine(prob, model.theta_, tol=model.tol)
    new.theta_ = theta
    new.fit_info_ = {"newton_steps": steps, "gradient_max": gmax,
                     "seconds": time.perf_counter() - start}
    return new


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2))) if len(y) else float("nan")


@dataclass
class UnlearningReport:
    """How an unlearning step moved the model's predictions, and (with ``verify``) how close
    it came to retraining from scratch.

    Attributes
    ----------
    unlearned : UnlearnedRecommender
    summary : dict
        What ``unlearning.json`` holds: the removed ratings (their prediction error before and
        after: the model no longer fits them), every other rating (mean and largest change,
        error before and after), and with ``verify`` the retraining time and the prediction
        gap of the original and of the unlearned model to the retrained one.
    changes : pandas.DataFrame
        Every rating's prediction before and after, keyed by the log's own rating ids, the
        largest changes first.
    """

    unlearned: UnlearnedRecommender
    summary: dict
    changes: Any

    def save(self, directory: Any, *, protect: Any = ()) -> Any:
        """Write ``unlearning.json``, ``prediction_changes.csv`` and the updated ``model.npz``
        into ``directory`` (a new run of kind ``unlearn``), never replacing ``protect``."""
        import json
        from pathlib import Path

        from datavalue._core.folder import RunWriter
        from datavalue._core.io import csv_text
        from datavalue.recommend.mf import model_bytes

        d = Path(directory)
        with RunWriter(d, kind="unlearn", replace=True, what="The unlearning folder",
                       protect=protect) as w:
            w.write_text("unlearning.json", json.dumps(self.summary, indent=2) + "\n")
            w.write_text("prediction_changes.csv", csv_text(self.changes))
            w.write_bytes("model.npz", model_bytes(self.unlearned.model))
        return d


def unlearning_report(original: MatrixFactorization, unlearned: UnlearnedRecommender, *,
                      what: str = "ratings", value: Any = None,
                      verify: bool = False) -> UnlearningReport:
    """Compare ``original`` with the model after :func:`unlearn_ratings` (``unlearned``): on the
    removed ratings and on every other one; with ``verify``, also retrain from scratch on the
    remaining ratings (:func:`retrain`) and measure both models' prediction gap to it.
    ``what`` / ``value`` describe the removal (``"user"``, ``"C-0009"``) for the summary."""
    import pandas as pd

    res, train = unlearned, original.ratings_
    keep = res.remaining
    before_keep = original.predict_codes(keep.user, keep.item)
    after_keep = res.model.predict_codes(keep.user, keep.item)
    before_rm = original.predict_codes(res.removed.user, res.removed.item)
    after_rm = res.model.predict_codes(res.removed.user, res.removed.item)
    moved = np.abs(after_keep - before_keep)
    touched = np.isin(keep.user, res.removed.user) | np.isin(keep.item, res.removed.item)
    plain = value.item() if hasattr(value, "item") else value
    summary: dict[str, Any] = {
        "kind": "unlearning", "removed": {"what": what, "value": plain,
                                          "n_ratings": res.removed.n_ratings},
        "seconds": res.seconds, "n_parameters_updated": res.n_parameters_updated,
        "gradient_max_after": res.gradient_max,
        "removed_ratings": {
            "rmse_before": _rmse(before_rm, res.removed.rating),
            "rmse_after": _rmse(after_rm, res.removed.rating),
            "mean_abs_change": float(np.mean(np.abs(after_rm - before_rm)))},
        "other_ratings": {
            "n": int(keep.n_ratings), "mean_abs_change": float(moved.mean()),
            "max_abs_change": float(moved.max()),
            "n_sharing_a_user_or_item": int(touched.sum()),
            "rmse_before": _rmse(before_keep, keep.rating),
            "rmse_after": _rmse(after_keep, keep.rating)},
    }
    if verify:
        start = time.perf_counter()
        ref = retrain(original, keep, warm=False)
        secs = time.perf_counter() - start
        p_ref = ref.predict_codes(keep.user, keep.item)
        summary["verify"] = {
            "retrain_seconds": secs, "speedup": secs / max(res.seconds, 1e-9),
            "gap_original_vs_retrained": _rmse(before_keep, p_ref),
            "gap_unlearned_vs_retrained": _rmse(after_keep, p_ref)}
    changes = pd.DataFrame({
        "row_id": np.concatenate([res.removed.row_id, keep.row_id]),
        "user_id": np.concatenate([train.user_ids[res.removed.user], train.user_ids[keep.user]]),
        "item_id": np.concatenate([train.item_ids[res.removed.item], train.item_ids[keep.item]]),
        "removed": np.r_[np.ones(res.removed.n_ratings, bool), np.zeros(keep.n_ratings, bool)],
        "rating": np.concatenate([res.removed.rating, keep.rating]),
        "before": np.concatenate([before_rm, before_keep]),
        "after": np.concatenate([after_rm, after_keep]),
    })
    changes["change"] = changes["after"] - changes["before"]
    changes = changes.reindex(changes["change"].abs().sort_values(ascending=False).index)
    return UnlearningReport(res, summary, changes)
