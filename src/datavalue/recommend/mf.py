"""Biased matrix factorization for explicit ratings, fitted to a stationary point.

The model (Koren, Bell & Volinsky 2009) predicts ``r_hat(u, i) = mu + b_u + b_i + p_u . q_i``
and is fitted on the sum objective

    L(theta) = sum_{(u,i) in R} (r_ui - r_hat(u, i))^2
               + reg * (sum_u ||p_u||^2 + sum_i ||q_i||^2) + reg_bias * (sum_u b_u^2 + sum_i b_i^2)

(``mu`` is not penalised). Influence functions assume ``theta_hat`` is a stationary point
(Koh & Liang 2017, Sec. 2), so fitting does not stop after a few SGD epochs: alternating least
squares (each half-step solves every user's or item's ridge problem exactly) brings the
parameters near the optimum, then truncated Newton steps (conjugate gradients on exact
Hessian-vector products, a backtracking line search) drive the gradient to ``tol``.

Parameters live in one flat vector, in the order ``[mu, b_user (U), b_item (I), P (U x k),
Q (I x k)]`` (:class:`MFLayout`); the gradient and Hessian-vector products of ``L`` are closed
forms over that vector (tested against :mod:`torch.func` and finite differences). They are
written by hand, not by autograd, because one product is a few gathers and ``index_add`` over
the ratings: 4-6x faster than ``torch.func.jvp(grad)`` on MovieLens (measured: 100k ratings,
k = 10), and the fit and every explanation make hundreds of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch import Tensor

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.fingerprint import digest_raw
from datavalue.recommend.ratings import Ratings

__all__ = ["MatrixFactorization", "MFLayout", "MFProblem", "one_thread"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block. Every operation here is a gather or an
    ``index_add_`` over ~10^5 short rows, where torch's intra-op threads only synchronise:
    one MovieLens Hessian-vector product took 75 ms on 1 thread and 262 ms on 2 (measured on
    this 2-core machine while it was busy; idle: 28 ms on 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class MFLayout:
    """Where each parameter block sits in the flat vector."""

    n_users: int
    n_items: int
    k: int

    @property
    def size(self) -> int:
        return 1 + self.n_users + self.n_items + (self.n_users + self.n_items) * self.k

    def split(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Views ``(mu (1,), b_user (U,), b_item (I,), P (U, k), Q (I, k))`` into ``theta``."""
        u, i, k = self.n_users, self.n_items, self.k
        a = 1 + u + i
        return (theta[:1], theta[1:1 + u], theta[1 + u:a], theta[a:a + u * k].view(u, k),
                theta[a + u * k:].view(i, k))

    def user_slice(self, u: int) -> tuple[int, slice]:
        """Flat positions of user ``u``'s bias and factors."""
        a = 1 + self.n_users + self.n_items + u * self.k
        return 1 + u, slice(a, a + self.k)

    def item_slice(self, i: int) -> tuple[int, slice]:
        a = 1 + self.n_users + self.n_items + self.n_users * self.k + i * self.k
        return 1 + self.n_users + i, slice(a, a + self.k)

    def indices(self, users: np.ndarray, items: np.ndarray, mu: bool) -> np.ndarray:
        """Flat positions of the biases and factors of ``users`` and ``items`` (+ ``mu``)."""
        k, nu, ni = self.k, self.n_users, self.n_items
        a = 1 + nu + ni
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        parts = [np.array([0])] if mu else []
        parts += [1 + users, 1 + nu + items,
                  (a + users[:, None] * k + np.arange(k)).ravel(),
                  (a + nu * k + items[:, None] * k + np.arange(k)).ravel()]
        return np.sort(np.concatenate(parts))


class MFProblem:
    """The objective ``L`` of one set of ratings: value, gradient and Hessian-vector products
    at any ``theta`` (closed forms; see the module docstring)."""

    def __init__(self, layout: MFLayout, user: np.ndarray, item: np.ndarray, rating: np.ndarray,
                 reg: float, reg_bias: float, weight: np.ndarray | None = None) -> None:
        self.layout = layout
        self.u = torch.from_numpy(np.array(user, np.int64))  # a copy: Ratings are read-only
        self.i = torch.from_numpy(np.array(item, np.int64))
        self.r = torch.from_numpy(np.array(rating, np.float64))
        # A weight per rating (1 = present, 0 = removed): the objective of a subset without
        # copying the data.
        self.w = None if weight is None else torch.as_tensor(np.asarray(weight, np.float64))
        self.reg, self.reg_bias = float(reg), float(reg_bias)
        lam = torch.empty(layout.size, dtype=torch.float64)
        lam[0] = 0.0
        lam[1:1 + layout.n_users + layout.n_items] = self.reg_bias
        lam[1 + layout.n_users + layout.n_items:] = self.reg
        self.lam = lam

    def predict(self, theta: Tensor) -> Tensor:
        mu, bu, bi, p, q = self.layout.split(theta)
        return mu + bu[self.u] + bi[self.i] + (p[self.u] * q[self.i]).sum(1)

    def residuals(self, theta: Tensor) -> Tensor:
        return self.r - self.predict(theta)

    def value(self, theta: Tensor) -> float:
        e = self.residuals(theta)
        sq = e * e if self.w is None else self.w * e * e
        return float(sq.sum() + (self.lam * theta * theta).sum())

    def _jt(self, w: Tensor, theta: Tensor) -> Tensor:
        """``J^T w``: sum over ratings of ``w_j * d r_hat_j / d theta``."""
        lay = self.layout
        out = torch.zeros(lay.size, dtype=torch.float64)
        _, gbu, gbi, gp, gq = lay.split(out)
        _, _, _, p, q = lay.split(theta)
        out[0] = w.sum()
        gbu.index_add_(0, self.u, w)
        gbi.index_add_(0, self.i, w)
        gp.index_add_(0, self.u, w[:, None] * q[self.i])
        gq.index_add_(0, self.i, w[:, None] * p[self.u])
        return out

    def gradient(self, theta: Tensor) -> Tensor:
        e = self.residuals(theta)
        if self.w is not None:
            e = self.w * e
        return -2.0 * self._jt(e, theta) + 2.0 * self.lam * theta

    def hvp(self, theta: Tensor, v: Tensor, gauss_newton: bool = False) -> Tensor:
        """``H v`` (the exact Hessian of ``L``, or its Gauss-Newton part ``2 J^T J + 2 Lambda``)."""
        lay = self.layout
        _, _, _, p, q = lay.split(theta)
        vmu, vbu, vbi, vp, vq = lay.split(v)
        jv = vmu + vbu[self.u] + vbi[self.i] + (vp[self.u] * q[self.i]).sum(1) \
            + (p[self.u] * vq[self.i]).sum(1)
        if self.w is not None:
            jv = self.w * jv
        out = 2.0 * self._jt(jv, theta) + 2.0 * self.lam * v
        if not gauss_newton:
            # The second derivative of r_hat: d^2 (p_u . q_i) / dp_u dq_i = I, times -2 e.
            e = self.residuals(theta)
            if self.w is not None:
                e = self.w * e
            _, _, _, op, oq = lay.split(out)
            op.index_add_(0, self.u, -2.0 * e[:, None] * vq[self.i])
            oq.index_add_(0, self.i, -2.0 * e[:, None] * vp[self.u])
        return out


    def block_preconditioner(self, theta: Tensor) -> Any:
        """``v -> M^{-1} v`` for ``M`` the block diagonal of the Gauss-Newton matrix: one
        ``(k+1) x (k+1)`` block per user ``(b_u, p_u)`` and per item (the matrices ALS solves),
        ``2n`` for ``mu``. With it, conjugate gradients on MovieLens needs 10-30 products instead
        of hundreds (measured), which is what makes exact Newton steps affordable."""
        lay = self.layout
        _, _, _, p, q = lay.split(theta)
        w = None if self.w is None else self.w
        inv_u = _block_inverse(q, self.i, self.u, lay.n_users, self.reg, self.reg_bias, w)
        inv_i = _block_inverse(p, self.u, self.i, lay.n_items, self.reg, self.reg_bias, w)
        n_eff = float(len(self.r) if w is None else w.sum())

        def apply(v: Tensor) -> Tensor:
            out = torch.empty_like(v)
            vmu, vbu, vbi, vp, vq = lay.split(v)
            omu, obu, obi, op, oq = lay.split(out)
            omu.copy_(vmu / (2.0 * max(n_eff, 1.0)))
            xu = torch.einsum("uab,ub->ua", inv_u, torch.cat([vbu[:, None], vp], 1))
            xi = torch.einsum("iab,ib->ia", inv_i, torch.cat([vbi[:, None], vq], 1))
            obu.copy_(xu[:, 0])
            op.copy_(xu[:, 1:])
            obi.copy_(xi[:, 0])
            oq.copy_(xi[:, 1:])
            return out

        return apply


def _block_inverse(other_f: Tensor, other: Tensor, own: Tensor, n_own: int, reg: float,
                   reg_bias: float, w: Tensor | None) -> Tensor:
    """Inverses of ``2 (sum_j a_j a_j^T + diag(reg_bias, reg, ...))``, ``a_j = [1, f_other]``.

    Rows without ratings have the diagonal penalty alone, inverted in closed form: only the
    rows that occur are inverted (an unlearning step on one user's items inverts a few hundred
    blocks instead of all 9,737 of MovieLens: 19 ms of a 50-ms step, measured)."""
    k = other_f.shape[1]
    diag = torch.full((k + 1,), reg, dtype=torch.float64)
    diag[0] = reg_bias
    out = torch.diag(1.0 / (2.0 * diag)).expand(n_own, k + 1, k + 1).clone()
    rows, local = torch.unique(own, return_inverse=True)
    if len(rows) == 0:
        return out
    # sum_j a_j a_j^T as (rows x others indicator) @ (each other row's outer product): a
    # sparse product, without the (n_ratings, k+1, k+1) tensor of outer products, 3-5x faster
    # on MovieLens (measured).
    a_other = torch.cat([torch.ones(len(other_f), 1, dtype=torch.float64), other_f], dim=1)
    outer = (a_other[:, :, None] * a_other[:, None, :]).reshape(len(other_f), -1)
    vals = torch.ones(len(other), dtype=torch.float64) if w is None else w
    # the indices are valid by construction (codes checked by Ratings): skip the checks
    indicator = torch.sparse_coo_tensor(torch.stack([local, other]), vals,
                                        (len(rows), len(other_f)),
                                        check_invariants=False).coalesce()
    gram = torch.sparse.mm(indicator, outer).reshape(len(rows), k + 1, k + 1)
    gram += torch.diag(diag)
    out[rows] = torch.linalg.inv(2.0 * gram)
    return out


def _cg(matvec, b: Tensor, rtol: float, maxiter: int,
        precondition: Any = None) -> tuple[Tensor, bool]:
    """(Preconditioned) conjugate gradients for ``A x = b`` from 0; stops at negative curvature
    (truncated Newton, Nocedal & Wright Alg. 7.1) and returns the iterate so far and whether
    it did."""
    x = torch.zeros_like(b)
    r = b.clone()
    z = r if precondition is None else precondition(r)
    d = z.clone()
    rz = float(r @ z)
    stop = (rtol ** 2) * float(b @ b)
    for _ in range(maxiter):
        ad = matvec(d)
        curv = float(d @ ad)
        if curv <= 0:
            return (x if bool(x.any()) else b.clone()), True
        alpha = rz / curv
        x += alpha * d
        r -= alpha * ad
        if float(r @ r) <= stop:
            break
        z = r if precondition is None else precondition(r)
        rz_new = float(r @ z)
        d = z + (rz_new / rz) * d
        rz = rz_new
    return x, False


def newton_refine(problem: MFProblem, theta: Tensor, *, tol: float, max_steps: int = 50,
                  cg_maxiter: int = 200,
                  free: Tensor | None = None) -> tuple[Tensor, int, float]:
    """Truncated Newton steps with a backtracking (Armijo) line search until the largest
    gradient entry is below ``tol``; ``free`` (a boolean mask) restricts the steps to some
    parameters. CG is preconditioned by the per-user/per-item blocks and solves to a relative
    residual ``min(0.1, sqrt(|g|))`` (Eisenstat-Walker: loose far away, tight near the optimum,
    which keeps the superlinear convergence). Returns ``(theta, steps, final gradient
    max-norm)``."""
    theta = theta.clone()
    mask = None if free is None else free.to(torch.float64)
    f = problem.value(theta)
    gnorm = float("inf")
    for step in range(max_steps + 1):
        g = problem.gradient(theta)
        if mask is not None:
            g = g * mask
        gnorm = float(g.abs().max())
        if gnorm <= tol or step == max_steps:
            return theta, step, gnorm

        def mv(v: Tensor, theta: Tensor = theta) -> Tensor:
            hv = problem.hvp(theta, v if mask is None else v * mask)
            return hv if mask is None else hv * mask

        pre = problem.block_preconditioner(theta)
        if mask is not None:
            inner = pre

            def pre(v: Tensor, inner=inner) -> Tensor:
                return inner(v) * mask

        rtol = min(0.1, float(g.norm()) ** 0.5)
        d, _ = _cg(mv, -g, rtol, cg_maxiter, pre)
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction (should not happen): steepest descent
            d, slope = -g, -float(g @ g)
        t = 1.0
        cand = theta + d
        fc = problem.value(cand)
        if abs(slope) < 1e-12 * max(abs(f), 1.0):
            # The predicted decrease is below the objective's rounding: the line search cannot
            # tell steps apart, but the gradient can. Take the full Newton step if it shrinks
            # the gradient (the quadratic convergence region), else stop.
            gc = problem.gradient(cand)
            if mask is not None:
                gc = gc * mask
            if float(gc.abs().max()) >= gnorm:
                return theta, step, gnorm
            theta, f = cand, fc
            continue
        while fc > f + 1e-4 * t * slope and t >= 1e-10:
            t *= 0.5
            cand = theta + t * d
            fc = problem.value(cand)
        if fc > f:  # no decrease even at a tiny step: as stationary as floating point allows
            return theta, step, gnorm
        theta, f = cand, fc
    return theta, max_steps, gnorm


def _als_half(fixed_f: Tensor, fixed_b: Tensor, own: Tensor, other: Tensor, target: Tensor,
              n_own: int, reg: float, reg_bias: float) -> tuple[Tensor, Tensor]:
    """Solve every row's ridge problem for ``(b, f)`` given the other side's factors."""
    k = fixed_f.shape[1]
    a = torch.cat([torch.ones(len(other), 1, dtype=torch.float64), fixed_f[other]], dim=1)
    t = target - fixed_b[other]
    gram = torch.zeros(n_own, k + 1, k + 1, dtype=torch.float64)
    gram.index_add_(0, own, a[:, :, None] * a[:, None, :])
    rhs = torch.zeros(n_own, k + 1, dtype=torch.float64)
    rhs.index_add_(0, own, a * t[:, None])
    diag = torch.full((k + 1,), reg, dtype=torch.float64)
    diag[0] = reg_bias
    gram += torch.diag(diag)
    x = torch.linalg.solve(gram, rhs.unsqueeze(-1)).squeeze(-1)
    return x[:, 0], x[:, 1:]


class MatrixFactorization:
    """Biased matrix factorization fitted to a tight optimum (see the module docstring).

    Parameters
    ----------
    n_factors : int
        Latent dimension ``k``.
    reg : float
        L2 penalty of the user and item factors in the sum objective.
    reg_bias : float or None
        L2 penalty of the biases (default: ``reg``).
    tol : float
        Stop when every entry of the objective's gradient is below ``tol``.
    max_als : int
        Alternating least squares sweeps before the Newton steps (fewer if the objective
        stops changing).
    random_state : int or None
        Seed of the factors' initialisation (None: 0; the fit is deterministic either way).

    Attributes
    ----------
    theta_ : Tensor
        The flat parameters (see :class:`MFLayout`).
    layout_ : MFLayout
    global_mean_, user_bias_, item_bias_, user_factors_, item_factors_ : ndarray
    ratings_ : Ratings
        The id tables and scale of the training ratings (not a copy of the ratings).
    fit_info_ : dict
        ALS sweeps, Newton steps, final gradient norm, objective, seconds.
    """

    def __init__(self, n_factors: int = 10, reg: float = 5.0, reg_bias: float | None = None,
                 *, tol: float = 1e-6, max_als: int = 30, random_state: int | None = 0) -> None:
        self.n_factors = n_factors
        self.reg = reg
        self.reg_bias = reg_bias
        self.tol = tol
        self.max_als = max_als
        self.random_state = random_state

    def _check_params(self) -> None:
        if isinstance(self.n_factors, bool) or not isinstance(self.n_factors, int | np.integer) \
                or self.n_factors < 1:
            raise InvalidParameterError(f"'n_factors' must be an int >= 1; got "
                                        f"{self.n_factors!r}.")
        for name in ("reg", "reg_bias"):
            v = getattr(self, name)
            if v is None and name == "reg_bias":
                continue
            if not isinstance(v, int | float) or not np.isfinite(v) or v <= 0:
                raise InvalidParameterError(f"'{name}' must be a positive number (the "
                                            f"influence math needs a strictly convex penalty); "
                                            f"got {v!r}.")
        rs = self.random_state
        if rs is not None and (isinstance(rs, bool) or not isinstance(rs, int | np.integer)
                               or rs < 0):
            raise InvalidParameterError(f"'random_state' must be a non-negative int or None; "
                                        f"got {rs!r}.")
        if not isinstance(self.tol, int | float) or not self.tol > 0:
            raise InvalidParameterError(f"'tol' must be a positive number; got {self.tol!r}.")

    @property
    def reg_bias_(self) -> float:
        return float(self.reg if self.reg_bias is None else self.reg_bias)

    def problem(self, ratings: Ratings, weight: np.ndarray | None = None) -> MFProblem:
        """The objective of ``ratings`` under this model's layout and penalties."""
        self._check_fitted()
        return MFProblem(self.layout_, ratings.user, ratings.item, ratings.rating, self.reg,
                         self.reg_bias_, weight)

    def fit(self, ratings: Ratings, *, init: Tensor | None = None) -> MatrixFactorization:
        """Fit on ``ratings`` (a :class:`Ratings`); ``init`` warm-starts from flat parameters."""
        with one_thread():
            return self._fit(ratings, init)

    def _fit(self, ratings: Ratings, init: Tensor | None) -> MatrixFactorization:
        self._check_params()
        if not isinstance(ratings, Ratings):
            raise InvalidParameterError("'ratings' must be a datavalue Ratings object (from "
                                        "load_ratings, Ratings.from_frame or from_csv); got "
                                        f"{type(ratings).__name__}.")
        start = time.perf_counter()
        lay = MFLayout(ratings.n_users, ratings.n_items, int(self.n_factors))
        self.layout_ = lay
        self.ratings_ = ratings
        prob = MFProblem(lay, ratings.user, ratings.item, ratings.rating, self.reg,
                         self.reg_bias_)
        sweeps = 0
        if init is not None:
            theta = torch.as_tensor(init, dtype=torch.float64).clone()
            if theta.shape != (lay.size,):
                raise InvalidParameterError(f"'init' must have {lay.size} entries; got "
                                            f"{tuple(theta.shape)}.")
        else:
            gen = torch.Generator().manual_seed(int(self.random_state or 0))
            theta = torch.zeros(lay.size, dtype=torch.float64)
            mu, _, _, p, q = lay.split(theta)
            mu[0] = prob.r.mean()
            p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            q.copy_(0.1 * torch.randn(q.shape, generator=gen, dtype=torch.float64))
            f_old = prob.value(theta)
            for sweeps in range(1, self.max_als + 1):  # noqa: B007
                mu, bu, bi, p, q = lay.split(theta)
                b, f = _als_half(q, bi, prob.u, prob.i, prob.r - mu, lay.n_users,
                                 self.reg, self.reg_bias_)
                bu.copy_(b)
                p.copy_(f)
                b, f = _als_half(p, bu, prob.i, prob.u, prob.r - mu, lay.n_items,
                                 self.reg, self.reg_bias_)
                bi.copy_(b)
                q.copy_(f)
                mu[0] = (prob.r - bu[prob.u] - bi[prob.i]
                         - (p[prob.u] * q[prob.i]).sum(1)).mean()
                f_new = prob.value(theta)
                if f_old - f_new < 1e-7 * f_new:
                    break
                f_old = f_new
        theta, steps, gnorm = newton_refine(prob, theta, tol=self.tol)
        self.theta_ = theta
        self.fit_info_ = {"als_sweeps": sweeps, "newton_steps": steps, "gradient_max": gnorm,
                          "objective": prob.value(theta),
                          "seconds": time.perf_counter() - start}
        return self

    # -- fitted state
    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise NotFittedError("This MatrixFactorization is not fitted yet; call fit(ratings)"
                                 " first.")

    def _blocks(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        self._check_fitted()
        return self.layout_.split(self.theta_)

    @property
    def global_mean_(self) -> float:
        return float(self._blocks()[0][0])

    @property
    def user_bias_(self) -> np.ndarray:
        return self._blocks()[1].numpy().copy()

    @property
    def item_bias_(self) -> np.ndarray:
        return self._blocks()[2].numpy().copy()

    @property
    def user_factors_(self) -> np.ndarray:
        return self._blocks()[3].numpy().copy()

    @property
    def item_factors_(self) -> np.ndarray:
        return self._blocks()[4].numpy().copy()

    def with_params(self, theta: Tensor) -> MatrixFactorization:
        """A copy of this fitted model with parameters ``theta``."""
        self._check_fitted()
        new = MatrixFactorization(self.n_factors, self.reg, self.reg_bias, tol=self.tol,
                                  max_als=self.max_als, random_state=self.random_state)
        new.layout_, new.ratings_ = self.layout_, self.ratings_
        new.theta_ = torch.as_tensor(theta, dtype=torch.float64).clone()
        new.fit_info_ = {}
        return new

    # -- predictions
    def predict_codes(self, user: Any, item: Any) -> np.ndarray:
        """Predicted ratings for user and item codes (arrays of equal length), unclipped."""
        mu, bu, bi, p, q = self._blocks()
        u = torch.from_numpy(np.array(user, np.int64))
        i = torch.from_numpy(np.array(item, np.int64))
        return (mu + bu[u] + bi[i] + (p[u] * q[i]).sum(-1)).numpy()

    def predict(self, user: Any, item: Any) -> float:
        """The predicted rating of one (user id, item id), in the user's own ids (unclipped:
        the number the influence math differentiates)."""
        self._check_fitted()
        r = self.ratings_
        return float(self.predict_codes([r.user_code(user)], [r.item_code(item)])[0])

    def rmse(self, ratings: Ratings) -> float:
        """Root mean squared error on ``ratings`` (predictions clipped to the scale)."""
        pred = np.clip(self.predict_codes(ratings.user, ratings.item), *ratings.scale)
        return float(np.sqrt(np.mean((pred - ratings.rating) ** 2)))

    def recommend(self, user: Any, k: int = 10, *, exclude: Ratings | None = None) -> Any:
        """The ``k`` items with the highest predicted rating for ``user`` (a user id), leaving
        out the items the user rated in ``exclude`` (default: the training ratings).

        Returns a DataFrame: item_id, title, predicted (clipped to the rating scale), score
        (unclipped, the ranking key)."""
        import pandas as pd

        self._check_fitted()
        r = self.ratings_
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InvalidParameterError(f"'k' must be a positive int; got {k!r}.")
        u = r.user_code(user)
        seen = exclude if exclude is not None else r
        rated = np.unique(seen.item[seen.user == u])
        scores = self.predict_codes(np.full(r.n_items, u), np.arange(r.n_items))
        scores[rated] = -np.inf
        k = min(k, r.n_items - len(rated))
        top = np.argsort(-scores, kind="stable")[:k]
        return pd.DataFrame({
            "item_id": r.item_ids[top],
            "title": [r.title(i) for i in top],
            "predicted": np.clip(scores[top], *r.scale),
            "score": scores[top],
        })

    # -- persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the fitted model (for ``np.savez``)."""
        self._check_fitted()
        r = self.ratings_
        out = {"theta": self.theta_.numpy(), "n_factors": np.array(self.n_factors),
               "reg": np.array(self.reg), "reg_bias": np.array(self.reg_bias_),
               "user_ids": r.user_ids, "item_ids": r.item_ids,
               "scale": np.array(r.scale, dtype=np.float64)}
        if r.item_titles is not None:
            out["item_titles"] = r.item_titles
        return out


# ---------------------------------------------------------------------------- persistence
def _fingerprint(r: Ratings) -> str:
    """SHA-256 of a ratings log's content (codes, ratings, row ids, id tables)."""
    return digest_raw(r.user, r.item, r.rating, r.row_id.astype(str), r.user_ids.astype(str),
                      r.item_ids.astype(str))


def model_bytes(model: MatrixFactorization) -> bytes:
    """The fitted model as ``.npz`` bytes: parameters, settings, id tables and the row ids of
    its training ratings (the ratings themselves stay in the user's log)."""
    import io
    import json

    model._check_fitted()
    r = model.ratings_
    arrays = {k: v for k, v in model.to_arrays().items() if k != "item_titles"}
    arrays["train_row_ids"] = r.row_id.astype(str)
    arrays["meta"] = np.array(json.dumps({
        "format": "datavalue-mf", "version": 1, "n_factors": int(model.n_factors),
        "reg": float(model.reg), "reg_bias": float(model.reg_bias_), "tol": float(model.tol),
        "max_als": int(model.max_als), "random_state": model.random_state,
        "train_fingerprint": _fingerprint(r), "fit_info": model.fit_info_}))
    arrays["user_ids"] = arrays["user_ids"].astype(str)
    arrays["item_ids"] = arrays["item_ids"].astype(str)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def load_model(path: Any, ratings: Ratings) -> MatrixFactorization:
    """A model saved by :func:`model_bytes`, with its training ratings taken from ``ratings``
    (the full log it was fitted on, or a superset with the same ids). A model of another log,
    or a log that changed since, is refused."""
    import json
    from pathlib import Path

    from datavalue._core.exceptions import InvalidDataError

    p = Path(path)
    if not p.is_file():
        raise InvalidParameterError(f"The model file {str(p)!r} does not exist.")
    import zipfile

    try:
        with np.load(p, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            arrays = {k: f[k] for k in f.files}
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidDataError(
            f"{str(p)!r} is not a datavalue recommender model (the model.npz that 'datavalue "
            f"unlearn --out' writes, or recommend.model_bytes): {type(exc).__name__}."
        ) from exc
    if not isinstance(meta, dict):
        raise InvalidDataError(f"{str(p)!r} is not a datavalue recommender model.")
    if meta.get("format") != "datavalue-mf":
        raise InvalidDataError(f"{str(p)!r} is not a datavalue recommender model.")
    if not (np.array_equal(arrays["user_ids"], ratings.user_ids.astype(str))
            and np.array_equal(arrays["item_ids"], ratings.item_ids.astype(str))):
        raise InvalidDataError(f"The model in {str(p)!r} was fitted on another ratings log "
                               "(its user or item ids differ from --data's).")
    train = ratings.subset(np.isin(ratings.row_id.astype(str), arrays["train_row_ids"]))
    if _fingerprint(train) != meta["train_fingerprint"]:
        raise InvalidDataError(f"The ratings behind the model in {str(p)!r} changed since it was "
                               "fitted (or are missing from --data); fit it again.")
    m = MatrixFactorization(meta["n_factors"], meta["reg"], meta["reg_bias"], tol=meta["tol"],
                            max_als=meta["max_als"], random_state=meta["random_state"])
    m.layout_ = MFLayout(train.n_users, train.n_items, meta["n_factors"])
    m.ratings_ = train
    m.theta_ = torch.from_numpy(np.array(arrays["theta"], np.float64))
    m.fit_info_ = dict(meta.get("fit_info") or {})
    return m
