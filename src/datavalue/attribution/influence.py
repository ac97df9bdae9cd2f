"""Influence functions (Koh & Liang 2017): which training examples made this prediction?

For a model trained to ``theta_hat = argmin_theta F(theta)``, ``F = (1/n) sum_i L(z_i, theta) +
R(theta)``, up-weighting a training point ``z`` by ``epsilon`` moves the parameters by
``I_up,params(z) = -H^{-1} grad L(z)`` (Eq. 1) and a test loss by
``I_up,loss(z, z_test) = -grad L(z_test)^T H^{-1} grad L(z)`` (Eq. 2), with ``H`` the Hessian of
``F`` at ``theta_hat``. Removing ``z`` is ``epsilon = -1/n``; every score here is scaled that way,
as a prediction of what leave-one-out retraining would do:

    influence[t, i] = L(z_t; theta_{-i}) - L(z_t; theta_hat)
                    ~ (1/n) grad L(z_t)^T (H + lambda I)^{-1} grad L(z_i)

Positive = removing ``z_i`` would raise the test loss = ``z_i`` is *helpful* for ``z_t``; this
matches the library's convention (higher = more helpful). ``lambda`` is the damping the paper
uses for non-convex models.

This module imports :mod:`torch` only when an influence is computed, so that
``InfluenceValuation`` can sit in the method registry of a torch-free ``import datavalue``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError, UnknownNameError
from datavalue._core.parallel import progress_bar
from datavalue._core.validation import Interval, Options, validate_params
from datavalue.attribution.engine import Attributor, TopK, check_k, top_k_of_blocks
from datavalue.attribution.measure import _Measured, _resolve_dtype, _torch, margin

__all__ = [
    "InfluenceFunction",
    "TopK",
    "Unlearned",
]


@dataclass(frozen=True)
class Unlearned:
    """The model after removing ``indices``, by one Newton step (see
    :meth:`InfluenceFunction.unlearn`).

    Attributes
    ----------
    indices : ndarray
        The removed training indices (sorted).
    params : ndarray of shape (p,)
        New flat parameters ``theta_hat + delta``.
    delta : ndarray of shape (p,)
        Parameter change.
    model : estimator, torch.nn.Module or None
        A copy of the original model holding ``params`` (None for ``SVC``, whose ``coef_`` is
        read-only).
    test_loss, base_test_loss : ndarray or None
        Losses of the test points given to ``unlearn`` at the new and at the fitted parameters.
    """

    indices: np.ndarray
    params: np.ndarray
    delta: np.ndarray
    model: Any
    test_loss: np.ndarray | None
    base_test_loss: np.ndarray | None


class InfluenceFunction(Attributor):
    """Influence of training examples on test predictions (Koh & Liang 2017).

    Parameters
    ----------
    model : estimator or torch.nn.Module
        A fitted scikit-learn ``LogisticRegression``, ``LinearRegression``, ``Ridge``,
        ``LinearSVC`` or ``SVC(kernel="linear")`` (taken over exactly, with its own
        regularisation; hinge-loss SVMs through the smooth hinge), or a trained torch module.
    loss : callable or None
        For a torch module: ``(outputs, targets) -> loss`` (reduction mean, sum or none; it is
        evaluated per example). None for scikit-learn estimators.
    solver : str or Solver
        Inverse-Hessian solver: ``"exact"``, ``"cg"``, ``"lissa"``, ``"arnoldi"``, ``"ekfac"``,
        ``"kfac"`` (see :mod:`datavalue.attribution.solvers`), or a :class:`Solver` instance.
    damping : float
        ``lambda`` in ``(H + lambda I)^{-1}``: needed for non-convex models (Koh & Liang, Sec. 4.2).
    hessian : {"auto", "exact", "gauss-newton"}
        The curvature: the Hessian of the training objective or its Gauss-Newton part (positive
        semi-definite for convex losses; the same for linear models). ``"auto"`` (default):
        the Hessian for scikit-learn linear models, the Gauss-Newton matrix for torch modules,
        whose Hessian is indefinite away from a strict minimum (what Kronfluence and TRAK use);
        ``hessian_`` says which was used.
    params : None, list of str or list of torch.nn.Module
        For a torch module, the parameters to take influence with respect to (e.g. only the last
        layer); the others are held fixed. None: all parameters with ``requires_grad``.
    weight_decay : float
        For a torch module: the L2 term ``(weight_decay / 2) ||theta||^2`` of the training
        objective (as in ``torch.optim.SGD(weight_decay=...)``).
    temperature : float
        Smooth-hinge temperature ``t`` for hinge-loss SVMs (Koh & Liang, Sec. 4.1).
    batch_size : int
        Examples per block for gradients and Hessian-vector products (bounds memory).
    solver_options : dict or None
        Options of the solver (e.g. ``{"rtol": 1e-10}`` for CG, ``{"rank": 50}`` for Arnoldi).
    dtype : torch.dtype or str
        Precision of every computation (float64 by default: inverse Hessians are ill-conditioned).
    device : str, torch.device or None
        Where to compute (None: where the module's parameters are; CPU for scikit-learn models).
    max_memory : float
        Bytes allowed for caching the ``n_train x p`` training gradients; above it they are
        recomputed block by block for every test block.
    cache_train_solves : bool or "auto"
        Solve ``(H + lambda I)^{-1} grad L(z_i)`` once for every training point (at the first
        query) and keep the ``n_train x p`` result (True: it must fit ``max_memory``, unless a
        ``store`` keeps it on disk). Every
        later influence, top-k, self-influence or summed query then costs one gradient pass
        over its own points and a matrix product, instead of a solve per test point. The scores
        are the same (the inverse is symmetric), up to the solver's tolerance. "auto" (default):
        for the (E)K-FAC solvers, whose solves are cheap next to a gradient pass, from the
        query on which the queries so far add up to ``n_train`` solves (a ski rental: a small
        one-off query solves only its own points), when the solved and the plain training
        gradients fit ``max_memory`` together or a ``store`` holds them; off otherwise (for CG
        and LiSSA, turn it on when many queries will follow).
    score_dtype : {"auto", "float64", "float32"}
        Precision of the final products ``<(H + lambda I)^{-1} grad L(z_test), grad L(z_i)>``
        (the largest computation for many test points). "auto": float32 after the (E)K-FAC
        solvers, whose curvature approximation errs by far more than float32 rounding
        (relative 1e-7; the product takes half the time), ``dtype`` otherwise.
    progress : bool or None
        Progress bars (None: only on a terminal).
    batch_fn : callable or None
        For training or query data given as a torch ``Dataset`` / ``DataLoader``: ``batch ->
        (inputs, targets)``, for batches that are neither ``(inputs, targets)`` nor dicts with
        known keys (see :mod:`datavalue.attribution.examples`).
    store : str, path or None
        A folder that keeps this analysis on disk (:mod:`datavalue.attribution.store`): the fitted
        solver, the solved training gradients (written block by block and memory-mapped, so
        they need not fit ``max_memory``), Arnoldi's projected training gradients, and the
        influence and self-influence scores of each query set. A later ``fit`` with the same
        model, training data and settings, in this or another process, reads them instead of
        computing them (bit-identical scores); with anything else it is refused with a
        :class:`~datavalue._core.exceptions.StoreMismatchError` naming what differs. New, empty or
        earlier store folders only: a folder holding other files is refused.

    Attributes
    ----------
    model_ : InfluenceModel
        The wrapped model (functional parameters, loss, objective).
    solver_ : Solver
        The fitted solver (``solver_.info_`` reports iterations, residuals, timings).
    operator_ : HessianOperator
    n_train_, n_params_ : int
    params_ : ndarray of shape (n_params_,)
        Flat fitted parameters ``theta_hat`` (for hinge SVMs: the smooth-hinge optimum).
    param_names_ : tuple of str
        Names of the parameter tensors, in flat order.
    gradient_norm_ : float
        ``||grad F(theta_hat)||``: influence functions assume a stationary point; a value that is
        not small next to typical per-example gradient norms means the model is not converged.

    References
    ----------
    P. W. Koh and P. Liang. Understanding black-box predictions via influence functions. ICML 2017.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "loss": ["callable", None],
        "damping": [Interval(float, 0, None)],
        "hessian": [Options({"auto", "exact", "gauss-newton"})],
        "weight_decay": [Interval(float, 0, None)],
        "temperature": [Interval(float, 0, None, closed="neither")],
        "batch_size": [Interval(int, 1, None)],
        "solver_options": [dict, None],
        "max_memory": [Interval(float, 0, None)],
        "score_dtype": [Options({"auto", "float64", "float32"})],
        "cache_train_solves": ["boolean", Options({"auto"})],
        "progress": ["boolean", None],
        "batch_fn": ["callable", None],
        "store": [str, os.PathLike, None],
    }

    def __init__(
        self,
        model: Any,
        loss: Any = None,
        *,
        solver: Any = "cg",
        damping: float = 0.0,
        hessian: str = "auto",
        params: Any = None,
        weight_decay: float = 0.0,
        temperature: float = 0.1,
        batch_size: int = 256,
        solver_options: dict | None = None,
        dtype: Any = "float64",
        device: Any = None,
        max_memory: float = 2**30,
        score_dtype: str = "auto",
        cache_train_solves: bool | str = "auto",
        progress: bool | None = None,
        batch_fn: Any = None,
        store: str | os.PathLike | None = None,
    ) -> None:
        self.model = model
        self.loss = loss
        self.solver = solver
        self.damping = damping
        self.hessian = hessian
        self.params = params
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.batch_size = batch_size
        self.solver_options = solver_options
        self.dtype = dtype
        self.device = device
        self.max_memory = max_memory
        self.score_dtype = score_dtype
        self.cache_train_solves = cache_train_solves
        self.progress = progress
        self.batch_fn = batch_fn
        self.store = store

    # ------------------------------------------------------------------ fitting
    def _make_solver(self):
        from datavalue.attribution.solvers import SOLVERS, Solver, make_solver

        if isinstance(self.solver, Solver):
            if self.solver_options:
                raise InvalidParameterError(
                    "Pass 'solver_options' with a solver name, not with a Solver instance "
                    "(set the options on the instance)."
                )
            return type(self.solver)(**self.solver.get_options())
        if not isinstance(self.solver, str) or self.solver.lower() not in SOLVERS:
            raise UnknownNameError(
                f"Unknown solver {self.solver!r} given as 'solver': use one of "
                f"{', '.join(SOLVERS)}, or a Solver instance."
            )
        return make_solver(self.solver, **(self.solver_options or {}))

    def fit(self, x_train: Any, y_train: Any = None) -> InfluenceFunction:
        """Wrap the model, build the Hessian operator of its training objective on
        ``(x_train, y_train)`` and fit the solver (factorisation, eigenvectors, factors...).

        ``(x_train, y_train)`` must be the data the model was trained on, in any order: every
        score refers to rows of ``x_train``. ``x_train`` may also be a torch ``Dataset`` or
        ``DataLoader`` (no shuffling) whose batches are ``(inputs, targets)``, dicts (keys
        such as ``"x"``/``"input"`` and ``"y"``/``"label"``) or anything ``batch_fn`` reads;
        every query method takes them too. Any batch size gives the same scores.
        """
        torch = _torch()
        from datavalue.attribution.gradients import (
            TrainGradients,
            hessian_operator,
            objective_gradient,
        )
        from datavalue.attribution.wrap import wrap_model

        start = time.perf_counter()
        validate_params(
            type(self).__name__, self.get_params(deep=False), self._parameter_constraints
        )
        from datavalue.attribution.examples import check_examples_args

        x_train, y_train = check_examples_args(x_train, y_train, "x_train", "y_train")
        dtype = _resolve_dtype(self.dtype)
        solver = self._make_solver()
        x_np = y_np = None
        n_train = None
        from datavalue.attribution.examples import TensorExamples, gather_examples, is_torch_data
        from datavalue.attribution.pipelines import PipelineInput, split_pipeline

        estimator = self.model
        self.pipeline_input_ = None
        parts = split_pipeline(self.model)
        pre = None
        if parts is not None:
            pre, estimator = parts
        if not isinstance(estimator, torch.nn.Module):
            from datavalue._core.validation import check_xy

            if is_torch_data(x_train):  # arrays for a scikit-learn model
                x_train, y_train = (t.numpy() for t in
                                    gather_examples(x_train, self.batch_fn, "x_train"))
            if pre is not None:
                self.pipeline_input_ = PipelineInput(pre)
                x_train = self.pipeline_input_.transform(x_train, "x_train")
            x_np, y_np = check_xy(x_train, y_train, x_name="x_train", y_name="y_train")
            n_train = len(x_np)
        model = wrap_model(
            estimator,
            self.loss,
            x_train=x_np,
            y_train=y_np,
            n_train=n_train,
            params=self.params,
            weight_decay=self.weight_decay,
            temperature=self.temperature,
            dtype=dtype,
            device=self.device,
        )
        if model.kind == "torch":
            data = self._examples(model, x_train, y_train, "x_train", "y_train")
        else:
            data = TensorExamples(*model.prepare(x_train, y_train, "x_train", "y_train"))
        self.hessian_ = self.hessian if self.hessian != "auto" else (
            "gauss-newton" if model.kind == "torch" else "exact")
        # Influence functions assume theta_hat minimises the objective (Koh & Liang, Sec. 2);
        # this norm says how far from stationary the given model is. Its pass also checks,
        # before any costly work, that the loss reads every batch and is finite.
        self.gradient_norm_ = float(
            objective_gradient(model, data, n_total=data.n, batch_size=self.batch_size).norm()
        )
        op = hessian_operator(model, data, hessian=self.hessian_, batch_size=self.batch_size)
        self.store_ = None
        if self.store is not None:
            from datavalue.attribution.store import InfluenceStore, model_fingerprint

            self.store_ = InfluenceStore(self.store, {
                "model": model_fingerprint(model),
                "data": {"n": data.n, "fingerprint": data.fingerprint()},
                "settings": self._store_settings(solver, model, dtype),
            })
        if self.store_ is None or not self.store_.load_solver(solver, op, float(self.damping)):
            solver.fit(op, float(self.damping))
            if self.store_ is not None:
                self.store_.save_solver(solver)
        self.model_ = model
        self.operator_ = op
        self.solver_ = solver
        self.n_train_ = data.n
        self.n_params_ = model.n_params
        self.params_ = model.theta.detach().cpu().numpy().astype(np.float64)
        self.param_names_ = model.layout.names
        self._data = data
        self._train_projection = None
        self._train_solved = None
        itemsize = torch.empty((), dtype=dtype).element_size()
        needed = self.n_train_ * self.n_params_ * itemsize
        # (E)K-FAC: solves cheap next to a gradient pass, an approximation far coarser than
        # float32 rounding.
        kronecker = solver.name in ("ekfac", "kfac")
        self._query_rows = 0
        if self.cache_train_solves == "auto":
            # With a store they go to disk block by block: memory is no limit.
            self._cache_solves = "auto" if kronecker and (
                self.store_ is not None or 2 * needed <= self.max_memory) else False
        else:
            self._cache_solves = bool(self.cache_train_solves)
            if self._cache_solves and needed > self.max_memory and self.store_ is None:
                raise InvalidParameterError(
                    f"cache_train_solves=True keeps n_train x n_params = {self.n_train_} x "
                    f"{self.n_params_} solved gradients ({needed / 2**20:.0f} MiB), more than "
                    f"'max_memory' ({float(self.max_memory) / 2**20:.0f} MiB): raise max_memory, "
                    "give a 'store' folder (they are then kept on disk) or use "
                    "cache_train_solves=False."
                )
        if self.score_dtype == "auto":
            self._score_dtype = torch.float32 if kronecker else dtype
        else:
            self._score_dtype = _resolve_dtype(self.score_dtype)
        self._train_grads = TrainGradients(
            model, data, batch_size=self.batch_size, max_memory=float(self.max_memory)
        )
        self.fit_time_ = time.perf_counter() - start
        return self

    # ------------------------------------------------------------------ helpers
    def _measured(self, measure: Any) -> Any:
        """The query side for ``measure`` (None: the model's loss), checked on one example."""
        if measure is None:
            return None
        if not callable(measure):
            raise InvalidParameterError(
                "'measure' must be a callable (outputs, targets) -> one value per example; got "
                f"{type(measure).__name__}.")
        return _Measured(self.model_, measure)

    def _store_settings(self, solver: Any, model: Any, dtype: Any) -> dict[str, Any]:
        """The settings the stored contents depend on (JSON values; a store needs options
        that can be written down)."""
        options = {}
        for name, value in solver.get_options().items():
            if callable(value) and not isinstance(value, type):
                raise InvalidParameterError(
                    f"The solver option {name!r} is a function, which a 'store' cannot record; "
                    "give the option by name (e.g. preconditioner='ekfac') or leave 'store' "
                    "out.")
            if hasattr(value, "get_options"):  # a Solver instance as an option
                value = {"solver": value.name, **value.get_options()}
            options[name] = value
        return json.loads(json.dumps({
            "solver": solver.name, "solver_options": options, "damping": float(self.damping),
            "hessian": self.hessian_, "params": list(model.layout.names),
            "weight_decay": float(self.weight_decay), "temperature": float(self.temperature),
            "dtype": str(dtype), "batch_size": int(self.batch_size),
            "score_dtype": str(self.score_dtype),
        }, default=str))

    def _exported(self, flat: Any) -> Any:
        """The user's model with parameters ``flat``: for a Pipeline, a copy whose final step
        has them (the preprocessing is kept as fitted)."""
        est = self.model_.export(flat)
        if getattr(self, "pipeline_input_", None) is None or est is None:
            return est
        import copy

        pipe = copy.deepcopy(self.model)
        pipe.steps[-1] = (pipe.steps[-1][0], est)
        return pipe

    def _query_model(self) -> Any:
        return self.model_

    def _indices(self, indices: Any, name: str = "indices", *, as_set: bool = True) -> np.ndarray:
        """Training indices from an index list or a boolean mask: a set (sorted, no duplicates)
        or, with ``as_set=False``, in the order given."""
        n = self.n_train_
        arr = np.asarray(indices)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise InvalidDataError(
                    f"'{name}' is a boolean mask of shape {arr.shape}; it must have shape ({n},)."
                )
            return np.flatnonzero(arr)
        arr = arr.reshape(-1) if arr.ndim == 0 else arr
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise InvalidDataError(
                f"'{name}' must be a 1-D array of integer training indices or a boolean mask; "
                f"got shape {arr.shape}, dtype {arr.dtype}."
            )
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise InvalidDataError(
                f"'{name}' must index the training set (0..{n - 1}); got {bad[:5].tolist()}."
            )
        arr = arr.astype(np.int64)
        if not as_set:
            return arr
        out = np.unique(arr)
        if out.size != arr.size:
            raise InvalidDataError(f"'{name}' contains duplicate indices.")
        return out

    def _preconditioned(self, data, desc: str, model: Any = None) -> Iterator[tuple[slice, Any]]:
        """Yield ``(rows, (H + lambda I)^{-1} grad L(z_rows))`` block by block (``model``: whose
        per-example function is differentiated on the query side; the loss by default)."""
        from datavalue.attribution.gradients import iter_gradient_blocks

        blocks = iter_gradient_blocks(model or self.model_, data, batch_size=self.batch_size)
        for rows, _, u in self._solve_blocks(blocks, data.n, desc):
            yield rows, u

    def _solve_blocks(self, blocks, n: int, desc: str) -> Iterator[tuple[slice, Any, Any]]:
        """Yield ``(rows, G, (H + lambda I)^{-1} G)`` for gradient blocks ``(rows, G)`` of
        ``n`` rows in all, with a progress bar."""
        bar = progress_bar(-(-n // self.batch_size), desc, self.progress, unit="block")
        shown = [0.0]  # part of the current block already shown

        def within_block(fraction: float) -> None:
            # Iterative solvers (LiSSA's thousands of steps) report inside a block, so a long
            # first block does not look like a hang.
            step = max(0.0, min(fraction, 1.0) - shown[0])
            if step >= 0.01:
                bar.update(step)
                shown[0] += step

        self.solver_.progress_hook = within_block
        try:
            for rows, g in blocks:
                shown[0] = 0.0
                yield rows, g, self.solver_.solve(g)
                bar.update(1.0 - shown[0])
        finally:
            self.solver_.progress_hook = None
            bar.close()

    def _train_subset(self, idx: np.ndarray):
        """The training examples ``idx`` (in that order) as two tensors."""
        return self._data.take(idx)

    def _sum_gradients(self, x, y=None):
        from datavalue.attribution.gradients import iter_gradient_blocks

        total = None
        for _, g in iter_gradient_blocks(self.model_, x, y, batch_size=self.batch_size):
            total = g.sum(0) if total is None else total + g.sum(0)
        return total

    # ------------------------------------------------------------------ influence
    def influence(self, x_test: Any, y_test: Any = None, *, out: Any = None,
                  order: str = "first", measure: Any = None) -> np.ndarray:
        """Predicted change of each test loss when each training example is removed.

        ``influence[t, i] = (1/n) grad L(z_t)^T (H + lambda I)^{-1} grad L(z_i)``
        ``~ L(z_t; theta_{-i}) - L(z_t; theta_hat)``: Koh & Liang's ``-I_up,loss / n``
        (Eq. 2 with ``epsilon = -1/n``). Positive = helpful.

        Parameters
        ----------
        x_test, y_test : array-like
        out : str, path or None
            Write the matrix to this ``.npy`` file (memory-mapped, block by block) and return
            the memory map; for score matrices larger than memory.
        order : {"first", "newton"}
            ``"newton"``: one Newton step on the objective without each example (its own
            curvature included: the first-order step divided by ``1 - leverage``), and the test
            losses evaluated at those parameters (:mod:`datavalue.attribution.newton`). For
            linear models with one output score; it matters for high-leverage examples, e.g.
            when features outnumber examples.
        measure : callable or None
            What is measured on each test example instead of its loss (Kronfluence's
            ``compute_measurement``): ``measure(outputs, targets) -> (b,)`` for a batch of the
            model's outputs, e.g. ``lambda out, y: out[:, 3]`` (a logit) or a regression output.
            The scores are then the predicted change of ``measure(z_t)`` when ``z_i`` is
            removed: ``(1/n) grad m(z_t)^T (H + lambda I)^{-1} grad L(z_i)`` (same sign as the
            loss influence; for a quantity to keep high, positive = removal raises it).
            ``order="first"`` only.

        Returns
        -------
        ndarray of shape (n_test, n_train)
        """
        from datavalue.attribution.gradients import open_score_file, score_matrix

        _check_order(order)
        if order == "newton":
            if measure is not None:
                raise InvalidParameterError("'measure' applies to order='first' only.")
            return self._newton_scores(x_test, y_test, out)
        self._check_fitted()
        query_model = self._measured(measure)
        data = self._prepare(x_test, y_test)
        shape = (data.n, self.n_train_)

        def compute(target: np.ndarray | None) -> np.ndarray:
            if self.solver_.factor() is not None:
                return self._low_rank_scores(data, shape, target, query_model)
            queries, train = self._query_and_train(data, "influence", query_model)
            return score_matrix(queries, train, shape, scale=1.0 / self.n_train_, out=target,
                                dtype=self._score_dtype)

        if out is not None:
            return compute(open_score_file(out, shape))
        if self.store_ is not None:
            return self.store_.scores(shape, data.fingerprint(), compute, measure)
        return compute(None)

    def _newton_scores(self, x_test: Any, y_test: Any, out: Any) -> np.ndarray:
        from datavalue.attribution.gradients import open_score_file
        from datavalue.attribution.newton import hessian_factor, newton_deltas, newton_losses

        self._check_fitted()
        factor = hessian_factor(self)  # checks that order="newton" applies
        x, y = self._prepare(x_test, y_test).tensors()
        shape = (int(x.shape[0]), self.n_train_)
        result = open_score_file(out, shape) if out is not None else np.empty(shape)
        for start in range(0, self.n_train_, self.batch_size):
            rows = np.arange(start, min(start + self.batch_size, self.n_train_))
            result[:, rows] = newton_losses(self, x, y, newton_deltas(self, rows, factor))
        return result

    def _use_solved_train(self, n_rows: int) -> bool:
        """Whether a query that would solve ``n_rows`` systems uses the solved training
        gradients instead. ``cache_train_solves="auto"`` decides by ski rental: the training
        points are solved (and kept) once the queries would have solved as many systems as
        there are training points (a query set at least as large, or several smaller ones, or
        self-influence), so a one-off small query never pays for ``n_train`` solves and many
        queries never pay more than twice the better choice."""
        if self._cache_solves != "auto":
            return bool(self._cache_solves)
        if self._train_solved is not None or (
                self.store_ is not None and self.store_.has("train-solved.npy")):
            return True
        self._query_rows += int(n_rows)
        return self._query_rows >= self.n_train_

    def _solved_train(self):
        """``(H + lambda I)^{-1} grad L(z_i)`` for every training point, ``(n_train, p)``,
        solved once (``cache_train_solves=True``)."""
        if self._train_solved is not None:
            return self._train_solved

        def solve_into(target) -> None:
            for rows, _, u in self._solve_blocks(
                    self._train_grads.blocks(), self.n_train_, "solving training points"):
                target[rows] = u.cpu().numpy()

        if self.store_ is None:
            self._train_solved = _torch().cat([
                u for _, _, u in self._solve_blocks(
                    self._train_grads.blocks(), self.n_train_, "solving training points")
            ])
        else:
            self._train_solved = self._stored_matrix(
                "train-solved.npy", (self.n_train_, self.n_params_), solve_into)
        return self._train_solved

    def _stored_matrix(self, name: str, shape: tuple[int, ...], fill) -> Any:
        return self._stored(name, shape, fill, dtype=self.model_.dtype,
                            device=self.model_.device)

    def _query_and_train(self, data, desc: str, model: Any = None):
        """The two sides of a score product: preconditioned test gradients against training
        gradients, or (``cache_train_solves``) plain test gradients against the cached solved
        training gradients."""
        from datavalue.attribution.gradients import TensorBlocks, iter_gradient_blocks

        if self._use_solved_train(data.n):
            solved = TensorBlocks(self._solved_train(), self.batch_size)
            return (iter_gradient_blocks(model or self.model_, data, batch_size=self.batch_size),
                    solved)
        return self._query_groups(data, desc, model), self._train_grads

    def _low_rank_scores(self, data, shape: tuple[int, int], out: np.ndarray | None,
                         model: Any = None) -> np.ndarray:
        """Scores through a low-rank inverse ``U^T diag(d) U`` (Arnoldi, complement "drop"):
        ``(G_test U^T) diag(d) (G_train U^T)^T / n``. The projected training gradients
        (``n x r``) are computed once and kept, so later queries cost one gradient pass over
        the test points; and the product is r-dimensional instead of p-dimensional."""
        from datavalue.attribution.gradients import iter_gradient_blocks

        u, d = self.solver_.factor()
        if self._train_projection is None and self.store_ is not None:
            def project_into(target) -> None:
                for rows, g in self._train_grads.blocks():
                    target[rows] = (g @ u.T).cpu().numpy()

            self._train_projection = self._stored_matrix(
                "train-projection.npy", (self.n_train_, int(u.shape[0])), project_into)
        if self._train_projection is None:
            self._train_projection = _torch().cat(
                [g @ u.T for _, g in self._train_grads.blocks()]
            )
        train = self._train_projection.T
        result = np.empty(shape, dtype=np.float64) if out is None else out
        bar = progress_bar(-(-shape[0] // self.batch_size), "influence", self.progress,
                           unit="block")
        try:
            for rows, g in iter_gradient_blocks(model or self.model_, data,
                                                batch_size=self.batch_size):
                result[rows] = (((g @ u.T) * d) @ train).mul_(1.0 / self.n_train_).cpu().numpy()
                bar.update(1)
        finally:
            bar.close()
        if isinstance(result, np.memmap):
            result.flush()
        return result

    def _query_groups(self, data, desc: str, model: Any = None) -> Iterator[tuple[slice, Any]]:
        """Preconditioned test gradients, grouped up to ``max_memory`` bytes when the training
        gradients are not cached: each pass recomputing them then serves many test rows."""
        from datavalue.attribution.gradients import group_blocks

        blocks = self._preconditioned(data, desc, model)
        if self._train_grads.cacheable:
            return blocks
        return group_blocks(blocks, float(self.max_memory))

    def margin_influence(self, x_test: Any, y_test: Any = None) -> np.ndarray:
        """Predicted change of each test example's classification margin when each training
        example is removed, sign-flipped so that positive = helpful.

        The margin is ``s f(x)`` for one output (``s = +1`` for the positive class, -1
        otherwise) and ``f_y(x) - logsumexp_{k != y} f_k(x)`` for several. Unlike the loss, it
        is never flat: a test point beyond a hinge's margin (loss and gradient exactly 0, so
        every loss influence is 0) still has a margin that training points push up or down.
        ``scores[t, i] = -(1/n) grad m(z_t)^T (H + lambda I)^{-1} grad L(z_i)``, the same
        first-order step as :meth:`influence` (Koh & Liang 2017, Eq. 2, with the margin as
        the measured function).

        Returns
        -------
        ndarray of shape (n_test, n_train)
        """
        return -self.influence(x_test, y_test, measure=margin)

    def summed_influence(self, x_test: Any, y_test: Any = None) -> np.ndarray:
        """``influence(x_test, y_test).sum(axis=0)`` with one linear solve: the predicted change
        of the *total* test loss when each training example is removed, shape ``(n_train,)``."""
        data = self._prepare(x_test, y_test)
        if self._use_solved_train(1):
            solved = self._solved_train()
            total = self._sum_gradients(data).to(solved.dtype)
            return (solved @ total).cpu().numpy() / self.n_train_
        u = self.solver_.solve(self._sum_gradients(data)[None])[0]
        values = np.empty(self.n_train_, dtype=np.float64)
        for rows, g in self._train_grads.blocks():
            values[rows] = (g @ u).cpu().numpy() / self.n_train_
        return values

    def candidate_influence(self, x_candidates: Any, y_candidates: Any, x_valid: Any,
                            y_valid: Any = None, *, order: str = "first") -> np.ndarray:
        """Value of examples that are *not* in the training set: the predicted decrease of the
        total loss on ``(x_valid, y_valid)`` if each candidate were added and the model
        retrained (Koh & Liang's ``I_up,loss`` with ``epsilon = +1/n``; see
        :mod:`datavalue.attribution.candidates`), shape ``(n_candidates,)``, positive = adding
        it helps. For augmented, synthetic or newly labelled rows: rank them before training.

        ``order="newton"``: one Newton step with the candidate's own curvature, validation
        losses evaluated at the new parameters (linear models with one output score).
        """
        from datavalue.attribution.candidates import candidate_values

        self._check_fitted()
        _check_order(order)
        if y_valid is None and not _is_torch_data(x_valid):
            raise InvalidParameterError("'y_valid' is required with 'x_valid' as an array.")
        return candidate_values(self, x_candidates, y_candidates, x_valid, y_valid, order=order)

    def self_influence(self, *, order: str = "first") -> np.ndarray:
        """``(1/n) grad L(z_i)^T (H + lambda I)^{-1} grad L(z_i)``: the predicted rise of each
        training point's own loss when it is removed, shape ``(n_train,)``. ``order="newton"``:
        the loss at the Newton-step parameters without it (see :meth:`influence`).

        The diagonal of ``influence(x_train, y_train)``; non-negative for a positive definite
        ``H``. It is *large* for points the model can only fit by bending towards them —
        mislabeled examples and outliers (Koh & Liang 2017, Sec. 5.4) — so sort by decreasing
        self-influence to inspect data, and use ``-self_influence()`` as a data value (higher =
        more helpful, the library's convention).
        """
        self._check_fitted()
        _check_order(order)
        if order == "first" and self.store_ is not None:
            stored = self.store_.array("scores/self-influence.npy")
            if stored is None:
                def compute(target: np.ndarray) -> None:
                    target[:] = self._self_influence()

                stored = self.store_.write_array("scores/self-influence.npy", (self.n_train_,),
                                                 compute)
            return np.array(stored)
        return self._self_influence(order)

    def _self_influence(self, order: str = "first") -> np.ndarray:
        if order == "newton":
            from datavalue.attribution.newton import (
                hessian_factor,
                newton_deltas,
                newton_self_losses,
            )

            factor = hessian_factor(self)
            values = np.empty(self.n_train_, dtype=np.float64)
            for start in range(0, self.n_train_, self.batch_size):
                rows = np.arange(start, min(start + self.batch_size, self.n_train_))
                values[rows] = newton_self_losses(self, rows, newton_deltas(self, rows, factor))
            return values
        values = np.empty(self.n_train_, dtype=np.float64)
        if self._use_solved_train(self.n_train_):
            solved = self._solved_train()
            for rows, g in self._train_grads.blocks():
                values[rows] = (solved[rows] * g).sum(1).cpu().numpy() / self.n_train_
            return values
        for rows, g, u in self._solve_blocks(self._train_grads.blocks(), self.n_train_,
                                             "self-influence"):
            values[rows] = (u * g).sum(1).cpu().numpy() / self.n_train_
        return values

    def params_influence(self, indices: Any) -> np.ndarray:
        """Predicted parameter change when the training examples ``indices`` are removed together:
        ``(1/n) (H + lambda I)^{-1} sum_{i in S} grad L(z_i)`` (Koh & Liang's ``I_up,params``,
        Eq. 1, with ``epsilon = -1/n`` for each), shape ``(n_params_,)`` in flat order.

        First order: the Hessian of the full training set. :meth:`unlearn` takes the Newton step
        with the Hessian of the remaining points instead.
        """
        self._check_fitted()
        idx = self._indices(indices)
        if idx.size == 0:
            return np.zeros(self.n_params_)
        if self._use_solved_train(1):
            rows = _torch().as_tensor(idx, device=self._solved_train().device)
            return self._solved_train()[rows].sum(0).cpu().numpy() / self.n_train_
        g = self._sum_gradients(*self._train_subset(idx))
        return self.solver_.solve(g[None])[0].cpu().numpy() / self.n_train_

    def perturbation_influence(self, x_test: Any, y_test: Any, train_indices: Any) -> np.ndarray:
        """Gradient of each test loss with respect to the input of each chosen training example.

        ``d L(z_t) / d x_i = -(1/n) grad_x [u_t^T grad_theta L(x_i, y_i)]`` with
        ``u_t = (H + lambda I)^{-1} grad L(z_t)``: Koh & Liang's ``I_pert,loss`` (Sec. 2.2)
        scaled by ``1/n``, the first-order change of the retrained model's test loss per unit
        change of ``x_i`` (the other points unchanged). Positive: moving ``x_i`` along that
        feature raises the test loss.

        Returns
        -------
        ndarray of shape (n_test, len(train_indices), *input_shape)
        """
        from datavalue.attribution.gradients import mixed_input_gradients

        factor = None
        if getattr(self, "pipeline_input_", None) is not None:
            # d/dx = d/dz * dz/dx: per-feature factors, or a clear error for other steps
            factor = self.pipeline_input_.input_factor()
        data = self._prepare(x_test, y_test)
        idx = self._indices(train_indices, "train_indices", as_set=False)
        xs, ys = self._train_subset(idx)
        result = np.empty((data.n, idx.size, *xs.shape[1:]), dtype=np.float64)
        for rows, u in self._preconditioned(data, "perturbation influence"):
            for start in range(0, idx.size, self.batch_size):
                cols = slice(start, min(start + self.batch_size, idx.size))
                m = mixed_input_gradients(self.model_, u, xs[cols], ys[cols])
                result[rows, cols] = (-m / self.n_train_).cpu().numpy()
        return result if factor is None else result * factor

    def _score_blocks(self, data: Any, measure: Any, desc: str
                      ) -> Iterator[tuple[slice, np.ndarray]]:
        from datavalue.attribution.gradients import score_matrix

        n = self.n_train_
        queries, train = self._query_and_train(data, desc, self._measured(measure))
        for rows, u in queries:
            yield rows, score_matrix(iter([(slice(0, u.shape[0]), u)]), train,
                                     (u.shape[0], n), scale=1.0 / n, dtype=self._score_dtype)

    def top_k(self, x_test: Any, y_test: Any = None, k: int = 10, *,
              order: str = "first", measure: Any = None) -> TopK:
        """The ``k`` most helpful and most harmful training examples of each test point
        (:class:`TopK`), from the influence scores (``order`` and ``measure`` as in
        :meth:`influence`: with ``measure``, "helpful" ranks by the largest predicted change
        of the measurement when removed), computed one test block at a time."""
        _check_order(order)
        if order == "first":
            return super().top_k(x_test, y_test, k, measure=measure)
        if measure is not None:
            raise InvalidParameterError("'measure' applies to order='first' only.")
        self._check_fitted()
        k = check_k(k, self.n_train_)
        scores = self.influence(x_test, y_test, order="newton")
        return top_k_of_blocks(iter([(slice(0, len(scores)), scores)]), len(scores), k)

    # ------------------------------------------------------------------ unlearning
    def unlearn(self, indices: Any, x_test: Any = None, y_test: Any = None) -> Unlearned:
        """Remove the training examples ``indices`` by one Newton step.

        ``theta_new = theta_hat + (1/n) H_{-S}^{-1} sum_{i in S} grad L(z_i)``, where ``H_{-S}``
        is the Hessian (+ damping) of the objective without ``S`` — a Newton step on the
        objective of the remaining points from ``theta_hat`` (assumed stationary for the full
        objective), as in certified data removal (Guo et al. 2020). Exact for quadratic
        objectives (least squares); to first order otherwise. With ``x_test, y_test`` the
        test losses at the new parameters are returned too (the prediction of retraining).
        """
        from datavalue.attribution.gradients import hessian_operator

        torch = _torch()
        self._check_fitted()
        idx = self._indices(indices)
        if idx.size >= self.n_train_:
            raise InvalidDataError("'indices' removes every training example; keep at least one.")
        test = None if x_test is None and y_test is None else self._prepare(x_test, y_test)
        theta = self.model_.theta
        if idx.size == 0:
            delta = torch.zeros_like(theta)
        else:
            keep = np.setdiff1d(np.arange(self.n_train_), idx)
            op = hessian_operator(
                self.model_, self._data, hessian=self.hessian_, batch_size=self.batch_size,
                n_total=self.n_train_, rows=torch.as_tensor(keep),
            )
            solver = self._make_solver().fit(op, float(self.damping))
            g = self._sum_gradients(*self._train_subset(idx))
            delta = solver.solve(g[None])[0] / self.n_train_
        new = theta + delta
        test_loss = base_loss = None
        if test is not None:
            base_loss = self._losses(theta, test)
            test_loss = self._losses(new, test)
        return Unlearned(
            indices=idx,
            params=new.cpu().numpy().astype(np.float64),
            delta=delta.cpu().numpy().astype(np.float64),
            model=self._exported(new),
            test_loss=test_loss,
            base_test_loss=base_loss,
        )

    def _losses(self, flat, data) -> np.ndarray:
        torch = _torch()
        params = self.model_.layout.unflatten(flat.to(self.model_.dtype))
        out = []
        with torch.no_grad():
            for _, x, y in data.blocks(self.batch_size):
                out.append(self.model_.losses(params, x, y))
        return torch.cat(out).cpu().numpy().astype(np.float64)

    def losses(self, x: Any, y: Any, params: Any = None) -> np.ndarray:
        """Per-example losses ``L(z, theta)`` at ``theta_hat`` (or at the flat ``params``), the
        losses every score refers to."""
        torch = _torch()
        data = self._prepare(x, y, "x", "y")
        flat = self.model_.theta if params is None else torch.as_tensor(
            np.asarray(params, dtype=np.float64)).to(self.model_.device)
        if flat.shape != (self.n_params_,):
            raise InvalidDataError(
                f"'params' must have shape ({self.n_params_},); got {tuple(flat.shape)}."
            )
        return self._losses(flat, data)


def _is_torch_data(x: Any) -> bool:
    from datavalue.attribution.examples import is_torch_data

    return is_torch_data(x)


def _check_order(order: Any) -> None:
    if order not in ("first", "newton"):
        raise InvalidParameterError(f"'order' must be 'first' or 'newton'; got {order!r}.")
