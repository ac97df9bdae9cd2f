"""Derivatives of the training objective: per-example gradients, Hessian- and Gauss-Newton-vector
products, mixed input-parameter derivatives, and block-by-block score matrices.

Everything is computed with :mod:`torch.func` from one parameter dictionary:

- per-example gradients ``grad_theta L(z_i)``: ``vmap(grad(loss of one example))`` over a batch;
- Hessian-vector products of the mean objective: forward-over-reverse, ``jvp(grad(F), v)``,
  vectorised over many vectors ``v`` at once;
- Gauss-Newton products ``J^T H_out J v`` (``jvp`` of the network, the loss Hessian in output
  space, ``vjp`` back), positive semi-definite for losses convex in the outputs — the usual
  choice for non-convex networks (Martens 2010; Schraudolph 2002);
- ``grad_x <u, grad_theta L(x, y)>`` for the perturbation influence ``I_pert,loss`` of Koh & Liang
  (2017, Sec. 2.2).

Memory is bounded by the batch size: no ``n x p`` matrix is built unless the caller asks for
it (:class:`TrainGradients` caches the training gradients only when they fit ``max_memory``), and
score matrices are filled block by block, optionally straight into a memory-mapped ``.npy`` file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, jacrev, jvp, vjp, vmap

from datavalue._core.exceptions import InvalidParameterError, ModelOutputError
from datavalue.attribution.examples import Examples, TensorExamples
from datavalue.attribution.model import InfluenceModel
from datavalue.attribution.solvers import HessianOperator, KFACSource

__all__ = [
    "per_example_gradients",
    "iter_gradient_blocks",
    "TrainGradients",
    "TensorBlocks",
    "hessian_operator",
    "mixed_input_gradients",
    "objective_gradient",
    "score_matrix",
    "group_blocks",
    "open_score_file",
    "DENSE_MAX_PARAMS",
    "as_examples",
]

#: Largest parameter count for which a dense Hessian is offered to the solvers (p^2 float64 =
#: 3.2 GB at 20,000).
DENSE_MAX_PARAMS = 20_000

#: Examples per autograd pass of a one-vector Hessian-vector product (at least ``batch_size``).
_SINGLE_HVP_EXAMPLES = 4096

#: Largest parameter count for which the operator keeps a dense Hessian once built (p^2 float64
#: = 200 MB at 5,000).
DENSE_CACHE_MAX_PARAMS = 5_000


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def as_examples(x: Tensor | Examples, y: Tensor | None = None) -> Examples:
    """``x`` if it is already :class:`Examples`, else the tensors ``(x, y)`` as examples."""
    if isinstance(x, Examples):
        return x
    return TensorExamples(x, y)


# ---------------------------------------------------------------------------- gradients
def _grad_fn(model: InfluenceModel) -> Callable:
    """``(params, x_batch, y_batch) -> dict`` of per-example gradients, shape ``(b, *shape)``."""
    return vmap(grad(model.example_loss), in_dims=(None, 0, 0))


def per_example_gradients(
    model: InfluenceModel,
    x: Tensor | Examples,
    y: Tensor | None = None,
    *,
    batch_size: int = 256,
    params: dict[str, Tensor] | None = None,
) -> Tensor:
    """``(n, p)`` matrix of per-example loss gradients ``grad_theta L(z_i, theta)`` (flat
    parameter order of ``model.layout``). Holds the whole matrix: use
    :func:`iter_gradient_blocks` when ``n p`` does not fit in memory."""
    blocks = [g for _, g in iter_gradient_blocks(model, x, y, batch_size=batch_size, params=params)]
    if blocks:
        return torch.cat(blocks)
    return torch.zeros((0, model.n_params), dtype=model.dtype, device=model.device)


def iter_gradient_blocks(
    model: InfluenceModel,
    x: Tensor | Examples,
    y: Tensor | None = None,
    *,
    batch_size: int = 256,
    params: dict[str, Tensor] | None = None,
) -> Iterator[tuple[slice, Tensor]]:
    """Yield ``(rows, G)`` with ``G`` the ``(len(rows), p)`` per-example gradients of those rows
    (of the examples ``x``, or of the tensors ``(x, y)``)."""
    fn = _grad_fn(model)
    params = model.params if params is None else params
    for rows, xb, yb in as_examples(x, y).blocks(batch_size):
        g = fn(params, xb, yb)
        yield rows, model.layout.flatten(g, batch_dims=1).detach()


class TrainGradients:
    """Per-example gradients of the training set, cached when ``n p`` fits ``max_memory`` bytes,
    otherwise recomputed batch by batch on every pass."""

    def __init__(
        self, model: InfluenceModel, x: Tensor | Examples, y: Tensor | None = None, *,
        batch_size: int, max_memory: float
    ) -> None:
        self.model, self.data, self.batch_size = model, as_examples(x, y), batch_size
        itemsize = torch.empty((), dtype=model.dtype).element_size()
        self.cacheable = self.data.n * model.n_params * itemsize <= max_memory
        self._cache: Tensor | None = None

    @property
    def n(self) -> int:
        return self.data.n

    def blocks(self) -> Iterator[tuple[slice, Tensor]]:
        """Yield ``(rows, G)`` over the training set, ``G`` of shape ``(len(rows), p)``."""
        if self.cacheable and self._cache is None:
            self._cache = per_example_gradients(self.model, self.data, batch_size=self.batch_size)
        if self._cache is not None:
            for rows in _batches(self.n, self.batch_size):
                yield rows, self._cache[rows]
        else:
            yield from iter_gradient_blocks(self.model, self.data, batch_size=self.batch_size)


class TensorBlocks:
    """A held ``(n, p)`` matrix served block by block like :class:`TrainGradients`."""

    cacheable = True

    def __init__(self, matrix: Tensor, batch_size: int) -> None:
        self.matrix, self.batch_size = matrix, batch_size

    @property
    def n(self) -> int:
        return int(self.matrix.shape[0])

    def blocks(self) -> Iterator[tuple[slice, Tensor]]:
        for rows in _batches(self.n, self.batch_size):
            yield rows, self.matrix[rows]


def objective_gradient(
    model: InfluenceModel, x: Tensor | Examples, y: Tensor | None = None, *, n_total: int,
    batch_size: int, name: str = "x_train",
) -> Tensor:
    """Flat gradient of ``(1/n_total) sum_i L(z_i) + R(theta)`` over the examples.

    Raises :class:`ModelOutputError` naming the first example whose loss is not finite (every
    influence would be NaN), or an error saying the loss could not read a batch of ``name``."""

    def part(params, xb, yb):
        losses = model.losses(params, xb, yb)
        return losses.sum() / n_total, losses

    total = 0
    if model.regularizer is not None:
        total = model.layout.flatten(grad(model.regularization)(model.params))
    for rows, xb, yb in as_examples(x, y).blocks(batch_size):
        try:
            g, losses = grad(part, has_aux=True)(model.params, xb, yb)
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            raise ModelOutputError(
                f"The model and its loss could not be evaluated on a batch of '{name}' (inputs "
                f"of shape {tuple(xb.shape)}, targets {tuple(yb.shape)} {yb.dtype}): "
                f"{type(exc).__name__}: {exc}") from exc
        bad = ~torch.isfinite(losses.detach().reshape(-1))
        if bool(bad.any()):
            first = rows.start + int(torch.nonzero(bad)[0, 0])
            raise ModelOutputError(
                f"The loss of example {first} of '{name}' is "
                f"{float(losses.detach().reshape(-1)[first - rows.start])}: influence needs "
                "finite losses at the trained parameters (check the model's outputs and the "
                "targets, e.g. a label outside the model's classes).")
        total = total + model.layout.flatten(g)
    return total.detach()


# ---------------------------------------------------------------------------- curvature
def _vector_chunk(batch: int, n_params: int) -> int:
    """How many vectors to push through one vmapped HVP.

    At most ``2**14`` (vector, example) pairs per call: the vmapped intermediates then stay
    small enough for the cache. Measured on the digits MLP (2,410 parameters, batches of 256):
    the dense Hessian builds 1.4-1.8x faster than with ``2**20`` pairs
    (``benchmarks/influence_proposals.py``, P1)."""
    return int(max(1, min(512, 2**14 // max(1, batch), 2**26 // max(1, n_params))))


def _hvp_batch(model: InfluenceModel, kind: str) -> Callable:
    """``(params, V dict with leading k, x, y, weight) -> dict`` of ``weight * C_batch v``, where
    ``C`` is the Hessian of the summed batch loss (``kind='exact'``) or its Gauss-Newton part."""
    if kind == "exact":

        def one(params, v, x, y, weight):
            def f(p):
                return model.losses(p, x, y).sum() * weight

            # H v as the vector-Jacobian product of the gradient (H is symmetric): about 20%
            # faster than forward-over-reverse jvp(grad) on the digits MLP.
            return vjp(grad(f), params)[1](v)[0]

    else:

        def one(params, v, x, y, weight):
            def net(p):
                return model.forward(p, x)

            out, jv = jvp(net, (params,), (v,))

            def g(o):
                return grad(lambda o2: model.loss(o2, y).sum() * weight)(o)

            hjv = jvp(g, (out,), (jv,))[1]
            return vjp(net, params)[1](hjv)[0]

    return vmap(one, in_dims=(None, 0, None, None, None))


def _reg_hvp(model: InfluenceModel) -> Callable | None:
    """``(params, V dict with leading k) -> Hess R v`` for each of the k vectors."""
    if model.regularizer is None:
        return None
    closed_form = getattr(model.regularizer, "hvp", None)
    if closed_form is not None:  # a quadratic: its Hessian is known
        return lambda params, v: closed_form(v, batch_dims=1)

    def one(params, v):
        return jvp(grad(model.regularization), (params,), (v,))[1]

    return vmap(one, in_dims=(None, 0))


def hessian_operator(
    model: InfluenceModel,
    x: Tensor | Examples,
    y: Tensor | None = None,
    *,
    hessian: str = "exact",
    batch_size: int = 256,
    n_total: int | None = None,
    rows: Tensor | None = None,
    dense_cache_max_params: int = DENSE_CACHE_MAX_PARAMS,
) -> HessianOperator:
    """The curvature of the mean training objective at ``theta_hat``, for the solvers.

    ``H = (1/n_total) sum_{i in rows} C_i + Hess R`` with ``C_i`` the Hessian (``'exact'``) or
    Gauss-Newton matrix (``'gauss-newton'``) of ``L(z_i)``. ``rows`` (default: all of ``x``)
    restricts the sum, e.g. to the points left after a removal (:meth:`unlearn`); ``n_total``
    (default ``len(x)``) keeps the normalisation of the full objective.

    Up to ``dense_cache_max_params`` parameters, ``H`` is built densely (once) as soon as the
    solver has asked for more than ``p`` Hessian-vector products, and later products are
    matrix products with it.
    """
    if hessian not in ("exact", "gauss-newton"):
        raise InvalidParameterError(
            f"The 'hessian' parameter must be 'exact' or 'gauss-newton'. Got {hessian!r}."
        )
    data = as_examples(x, y)
    n_total = int(data.n if n_total is None else n_total)
    if rows is not None:
        data = data.subset(np.asarray(torch.as_tensor(rows).cpu(), dtype=np.int64))
    n_rows = data.n
    p = model.n_params
    layout, params = model.layout, model.params
    data_hvp = _hvp_batch(model, hessian)
    reg_hvp = _reg_hvp(model)

    def apply(v: Tensor, part: Examples, weight: float) -> Tensor:
        v = v.to(dtype=model.dtype, device=model.device)
        if v.shape[0] == 1 and hessian == "exact":
            # One vector needs far less memory per example than the vmapped path's chunks of
            # vectors: larger batches (fewer Python-level passes; Arnoldi on the digits MLP:
            # 6.3 -> 2.8 ms per product with all 1,257 examples in one pass).
            single_batch = max(batch_size, _SINGLE_HVP_EXAMPLES)
            out = _single_hvp(model, v[0], part, weight, single_batch)[None]
            if reg_hvp is not None:
                out += layout.flatten(reg_hvp(params, layout.unflatten(v)), batch_dims=1)
            return out.detach()
        out = torch.zeros_like(v)
        chunk = _vector_chunk(min(batch_size, max(1, part.n)), p)
        if isinstance(part, TensorExamples) or v.shape[0] <= chunk:
            # Vectors outside, data inside: one pass over the data per chunk of vectors, free
            # for examples held in memory.
            for vs in _batches(v.shape[0], chunk):
                vd = layout.unflatten(v[vs])
                acc = out[vs]
                for _, xb, yb in part.blocks(batch_size):
                    acc += layout.flatten(data_hvp(params, vd, xb, yb, weight), batch_dims=1)
        else:
            # Streamed examples: data outside, so that each block is read once for all vectors.
            chunks = [(vs, layout.unflatten(v[vs])) for vs in _batches(v.shape[0], chunk)]
            for _, xb, yb in part.blocks(batch_size):
                for vs, vd in chunks:
                    out[vs] += layout.flatten(data_hvp(params, vd, xb, yb, weight), batch_dims=1)
        if reg_hvp is not None:
            for vs in _batches(v.shape[0], chunk):
                out[vs] += layout.flatten(reg_hvp(params, layout.unflatten(v[vs])), batch_dims=1)
        return out.detach()

    build_dense = None
    if p <= DENSE_MAX_PARAMS:
        if model.linear_in_params or hessian == "gauss-newton":

            def build_dense() -> Tensor:
                return _dense_gauss_newton(model, data, n_total, batch_size)

        else:

            def build_dense() -> Tensor:
                eye = torch.eye(p, dtype=model.dtype, device=model.device)
                h = apply(eye, data, 1.0 / n_total)
                return 0.5 * (h + h.T)

    # Ski rental: once the solver has asked for more Hessian-vector products than it would
    # take to build H (p of them), build H once and multiply by it from then on; at most twice
    # the cost of the better choice made in hindsight. LiSSA with the full Hessian on the
    # digits MLP: 4.5 s -> 0.08 s (benchmarks/influence_proposals.py, P5).
    cache_dense = build_dense is not None and p <= dense_cache_max_params
    cache: dict[str, Any] = {"vectors": 0, "h": None}

    def dense_h() -> Tensor:
        if cache["h"] is not None:
            return cache["h"]
        h = build_dense()
        if cache_dense:
            cache["h"] = h
        return h

    def matvec(v: Tensor) -> Tensor:
        if cache["h"] is None and cache_dense:
            cache["vectors"] += int(v.shape[0])
            if cache["vectors"] > p:
                dense_h()
        if cache["h"] is not None:
            return v.to(dtype=model.dtype, device=model.device) @ cache["h"]
        return apply(v, data, 1.0 / n_total)

    def batch_matvec(v: Tensor, idx: Tensor) -> Tensor:
        # Unbiased for H: E[(n_rows / n_total) mean_{i in batch} C_i] = (1/n_total) sum C_i.
        idx = np.asarray(torch.as_tensor(idx).cpu(), dtype=np.int64)
        part = TensorExamples(*data.take(idx))
        return apply(v, part, n_rows / (n_total * max(1, len(idx))))

    dense = dense_h if build_dense is not None else None

    kfac = None
    found = model.kfac_layers()
    output_kind = model.output_kind
    if output_kind is None:  # a user loss: class labels or real targets?
        output_kind = "regression" if data.float_targets else "classification"
    if found is not None and output_kind != "other":
        layers, slices = found

        def batches() -> Iterator[tuple[Tensor, Tensor]]:
            for _, xb, yb in data.blocks(batch_size):
                yield xb, yb

        kfac = KFACSource(
            module=model.module,
            layers=layers,
            param_slices=slices,
            batches=batches,
            loss_fn=model.loss,
            output_kind=output_kind,
            l2=model.l2,
        )
    return HessianOperator(
        n_params=p,
        matvec=matvec,
        dense=dense,
        batch_matvec=batch_matvec,
        n_samples=n_rows,
        kfac=kfac,
        dtype=model.dtype,
        device=model.device,
    )


def _single_hvp(
    model: InfluenceModel, v: Tensor, data: Examples, weight: float, batch_size: int
) -> Tensor:
    """``weight * sum_i Hess L(z_i) v`` (the data term only) for one vector ``v`` by
    reverse-over-reverse autograd over whole batches. For one vector this is 3-5x faster than
    the vmapped path (Arnoldi on the digits MLP: 5.6 s -> 1.1 s,
    ``benchmarks/influence_proposals.py``, P3), which pays off only across many vectors."""
    layout = model.layout
    names = list(model.params)
    vd = layout.unflatten(v)
    total = torch.zeros_like(v)
    with torch.enable_grad():
        ps = {k: t.detach().requires_grad_(True) for k, t in model.params.items()}
        leaves = [ps[k] for k in names]
        for _, xb, yb in data.blocks(batch_size):
            f = model.losses(ps, xb, yb).sum() * weight
            g = torch.autograd.grad(f, leaves, create_graph=True)
            dot = sum((gi * vd[k]).sum() for gi, k in zip(g, names, strict=True))
            hv = torch.autograd.grad(dot, leaves, allow_unused=True)
            total += layout.flatten({
                k: h if h is not None else torch.zeros_like(ps[k])
                for h, k in zip(hv, names, strict=True)
            })
    return total.detach()


def _dense_gauss_newton(
    model: InfluenceModel, data: Examples, n_total: int, batch_size: int
) -> Tensor:
    """``(1/n_total) sum_i J_i^T H_out,i J_i + Hess R`` from per-example Jacobians: cheap when
    the network has few outputs (and exact for models linear in their parameters)."""
    layout, params = model.layout, model.params
    p = layout.n_params

    def net_one(prm, xi):
        return model.forward(prm, xi.unsqueeze(0))[0]

    def loss_one(o, yi):
        return model.loss(o.unsqueeze(0), yi.unsqueeze(0)).sum()

    jac = vmap(jacrev(net_one), in_dims=(None, 0))
    out_hess = vmap(jacrev(jacrev(loss_one)), in_dims=(0, 0))
    total = torch.zeros((p, p), dtype=model.dtype, device=model.device)
    linear = _linear_layer(model)
    for _, xb, yb in data.blocks(max(1, min(batch_size, 2**22 // max(1, p)))):
        outs = model.forward(params, xb)
        k = outs[0].numel()
        h = out_hess(outs, yb).reshape(xb.shape[0], k, k)
        if linear is not None:
            total += _linear_gauss_newton(xb, h, linear) / n_total
            continue
        jd = jac(params, xb)  # dict of (b, *out, *shape)
        j = torch.cat([jd[n].reshape(xb.shape[0], k, -1) for n in layout.names], dim=-1)
        total += torch.einsum("bkp,bkl,blq->pq", j, h, j) / n_total
    if model.regularizer is not None:

        def reg_flat(flat):
            return model.regularization(layout.unflatten(flat))

        total += torch.func.hessian(reg_flat)(layout.flatten(params))
    return (0.5 * (total + total.T)).detach()


def _linear_layer(model: InfluenceModel) -> tuple[int, bool] | None:
    """``(d, has_bias)`` when the model is one ``nn.Linear`` with every parameter trainable
    (the wrapped scikit-learn models), else None."""
    module = model.module
    if not isinstance(module, torch.nn.Linear) or model.frozen:
        return None
    names = tuple(model.layout.names)
    if names not in (("weight",), ("weight", "bias")):
        return None
    return int(module.in_features), names == ("weight", "bias")


def _linear_gauss_newton(x: Tensor, h: Tensor, layer: tuple[int, bool]) -> Tensor:
    """``sum_i J_i^T H_i J_i`` for ``f(x) = W x + b``, whose Jacobian is ``I_k kron [x, 1]``:
    block ``(a, b)`` is ``X~^T diag(H_iab) X~``, one GEMM of ``(k^2 (d+1)) x n x (d+1)`` instead
    of the generic contraction over ``k`` dense Jacobian rows of ``k (d+1)`` columns (10x fewer
    operations for 10 classes: the multinomial logistic regression on digits, 650 parameters,
    0.16 s -> 0.02 s per Hessian, which every step of a training-set attack rebuilds)."""
    d, bias = layer
    b, k = h.shape[0], h.shape[1]
    xa = torch.cat([x, torch.ones(b, 1, dtype=x.dtype, device=x.device)], 1) if bias else x
    e = xa.shape[1]
    z = (h.reshape(b, k * k, 1) * xa.reshape(b, 1, e)).reshape(b, k * k * e)
    full = (z.T @ xa).reshape(k, k, e, e).permute(0, 2, 1, 3).reshape(k * e, k * e)
    # flat layout: weight (k, d) row by row, then bias (k,)
    order = torch.arange(k * e, device=x.device).reshape(k, e)
    perm = torch.cat([order[:, :d].reshape(-1), order[:, d]]) if bias else order.reshape(-1)
    return full[perm][:, perm]


# ---------------------------------------------------------------------------- input gradients
def mixed_input_gradients(model: InfluenceModel, u: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``grad_x <u_k, grad_theta L(x_j, y_j)>`` for every row ``u_k`` of ``u`` and example ``j``:
    shape ``(k, b, *x.shape[1:])`` — the mixed derivative ``grad_x grad_theta L`` of Koh & Liang
    (2017, Eq. for I_pert,loss) contracted with ``u`` without forming the ``p x d`` matrix."""
    if not x.is_floating_point():
        raise InvalidParameterError(
            "perturbation influence needs real-valued inputs to differentiate; got inputs of "
            f"dtype {x.dtype}."
        )
    layout, params = model.layout, model.params

    def directional(xi, yi, v):
        # d/de L(theta + e v; x) at e = 0: the gradient projected on v (forward mode).
        return jvp(lambda p: model.example_loss(p, xi, yi), (params,), (v,))[1]

    per_pair = grad(directional, argnums=0)
    over_examples = vmap(per_pair, in_dims=(0, 0, None))
    over_vectors = vmap(over_examples, in_dims=(None, None, 0))
    return over_vectors(x, y, layout.unflatten(u)).detach()


# ---------------------------------------------------------------------------- score matrices
def open_score_file(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """A new float64 ``.npy`` file of ``shape``, memory-mapped for writing block by block
    (``np.load(path, mmap_mode='r')`` reads it back)."""
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_suffix(path.suffix + ".npy") if path.suffix else path.with_suffix(".npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)


def group_blocks(
    blocks: Iterator[tuple[slice, Tensor]], max_bytes: float
) -> Iterator[tuple[slice, Tensor]]:
    """Merge consecutive row blocks into blocks of up to ``max_bytes`` (at least one block each),
    so that a pass over training gradients that must be recomputed serves many query rows.

    Merged blocks are copied into one buffer allocated once and reused: a yielded tensor is
    valid until the next one is requested (copy it to keep it). Concatenating instead would
    hold the pieces and their concatenation at once, twice the budget (EK-FAC at the scale of
    the benchmark: 4.1 GB -> 3.0 GB peak, ``benchmarks/influence_proposals.py``, P7).
    """
    buffer: Tensor | None = None
    group: list[tuple[slice, Tensor]] = []  # a lone block is yielded as is, without a copy
    start = stop = filled = 0

    def flush() -> tuple[slice, Tensor]:
        if group:
            return group[0]
        assert buffer is not None
        return slice(start, stop), buffer[:filled]

    for rows, t in blocks:
        n = rows.stop - rows.start
        size = (filled or (group[0][1].shape[0] if group else 0)) * t[:1].nbytes
        if (group or filled) and (rows.start != stop or size + t.nbytes > max_bytes):
            yield flush()
            group, filled = [], 0
        if not group and not filled:
            group, start, stop = [(rows, t)], rows.start, rows.stop
            continue
        if group:  # a second block joins: move the first into the buffer
            first = group[0][1]
            capacity = max(int(max_bytes // max(1, first[:1].nbytes)), first.shape[0] + n)
            if buffer is None or buffer.shape[0] < capacity or buffer.shape[1:] != first.shape[1:]:
                buffer = None  # free the old one before allocating
                buffer = first.new_empty((capacity, *first.shape[1:]))
            buffer[: first.shape[0]] = first
            filled, group = first.shape[0], []
        buffer[filled : filled + n] = t
        filled += n
        stop = rows.stop
    if group or filled:
        yield flush()


def score_matrix(
    queries: Iterator[tuple[slice, Tensor]],
    train: TrainGradients,
    shape: tuple[int, int],
    *,
    scale: float,
    out: np.ndarray | None = None,
    dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Fill ``out[q, t] = scale * <Q_q, G_t>`` block by block: ``queries`` yields row blocks of
    the (already preconditioned) query vectors, ``train`` the training gradients. ``dtype``:
    precision of the products (None: that of the vectors); the result is float64."""
    result = np.empty(shape, dtype=np.float64) if out is None else out
    for qrows, q in queries:
        if dtype is not None:
            q = q.to(dtype)
        for trows, g in train.blocks():
            if dtype is not None:
                g = g.to(dtype)
            result[qrows, trows] = (q @ g.T).mul_(scale).cpu().numpy()
    if isinstance(result, np.memmap):
        result.flush()
    return result
