"""Kronecker-factored curvature: K-FAC (Martens & Grosse 2015) and EK-FAC (George et al. 2018; Grosse et al. 2023)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from sklearn.exceptions import NotFittedError
from torch import Tensor

from datavalue._core.exceptions import (
    InvalidDataError,
    InvalidParameterError,
)
from datavalue._core.validation import Interval, Options
from datavalue.attribution.solvers.base import HessianOperator, KFACSource, Solver, SolverError


@dataclass
class _LayerFactors:
    name: str
    weight: tuple[int, int]  # (start, stop) in the flat vector
    bias: tuple[int, int] | None
    shape: tuple[int, int]  # (out, in); for Conv2d, in = in_channels * kh * kw
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
    random_state : int
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
        "random_state": ["random_state"],
        "eigenvalue_correction": ["boolean"],
    }

    def __init__(
        self,
        *,
        fisher: str = "true",
        mc_samples: int | None = None,
        random_state: int = 0,
        eigenvalue_correction: bool = True,
    ) -> None:
        self.fisher = fisher
        self.mc_samples = mc_samples
        self.random_state = random_state
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
                f"The {self.name} solver needs every chosen parameter to sit in an nn.Linear or "
                "nn.Conv2d layer (groups=1, numeric zero padding), and this model has some "
                "elsewhere (e.g. a grouped Conv2d, a norm layer, an embedding): restrict "
                "'params' to such layers (e.g. params=[net[-1]]) or use the exact, cg, arnoldi "
                "or lissa solver."
            )
        p, covered, layers = op.n_params, [], []
        for (name, layer), (w_slice, b_slice) in zip(source.layers, source.param_slices, strict=True):
            out_f = layer.weight.shape[0]
            in_f = layer.weight[0].numel()  # Conv2d: in_channels * kh * kw, row-major
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
                kind = "overlap" if start < position else "are not in any listed Linear or Conv2d layer"
                raise InvalidParameterError(
                    f"The {self.name} solver inverts the parameters of nn.Linear and nn.Conv2d layers only: "
                    f"flat parameters [{min(start, position)}, {max(start, position)}) {kind}. "
                    "Restrict the model to Linear and Conv2d parameters or use another solver."
                )
            position = stop
        if position != p:
            raise InvalidParameterError(
                f"The {self.name} solver inverts the parameters of nn.Linear and nn.Conv2d layers only: flat "
                f"parameters [{position}, {p}) are not in any listed Linear or Conv2d layer. Restrict "
                "the model to Linear and Conv2d parameters or use another solver."
            )
        return layers

    def _batches(
        self, op: HessianOperator, layers: list[_LayerFactors], gen: torch.Generator
    ) -> Iterable[tuple[list[Tensor], list[Tensor]]]:
        """Per batch: layer inputs ā ``(n, T, in[+1])`` and output gradients
        ``(n, K, T, out)`` at the layer's ``T`` positions (1 for ``nn.Linear``; the output
        pixels of a ``Conv2d``, whose inputs are the patches), scaled so that the layer's
        Fisher block is ``mean_n sum_K (sum_t g_t ⊗ ā_t)(sum_t g_t ⊗ ā_t)ᵀ``."""
        source = op.kfac
        assert source is not None
        for x, y in source.batches():
            outputs, inputs, taps = _tapped_forward(source, x)
            draws = _output_draws(outputs, y, source, self.fisher, self.mc_samples, gen)
            if not draws:  # zero curvature at the output (e.g. saturated predictions)
                draws = [torch.zeros_like(outputs)]
            # All K backward passes at once (vmapped over the draws): one call of the autograd
            # engine per batch instead of K.
            got = torch.autograd.grad(
                outputs, taps, grad_outputs=torch.stack(draws).to(outputs.dtype),
                is_grads_batched=True, allow_unused=True,
            )
            grads = [torch.zeros((len(draws), *tap.shape), dtype=tap.dtype, device=tap.device)
                     if gr is None else gr for gr, tap in zip(got, taps, strict=True)]
            acts, outs = [], []
            for (_, layer), f, a, g in zip(source.layers, layers, inputs, grads, strict=True):
                a = _patches(layer, a).to(dtype=op.dtype, device=op.device)  # (n, T, in)
                if f.bias is not None:
                    a = torch.cat([a, torch.ones_like(a[..., :1])], -1)
                acts.append(a)
                g = g.movedim(0, 1).to(dtype=op.dtype, device=op.device)  # (n, K, out[, h, w])
                outs.append(g.reshape(*g.shape[:3], -1).transpose(2, 3)
                            if g.ndim == 5 else g[:, :, None, :])  # (n, K, T, out)
            yield acts, outs

    def _fit(self, op: HessianOperator, damping: float) -> None:
        layers = self._layers(op)
        source = op.kfac
        assert source is not None
        seed = 0 if self.random_state is None else self.random_state
        n = 0
        for acts, grads in self._batches(op, layers, torch.Generator().manual_seed(seed)):
            n += acts[0].shape[0]
            for f, a, g in zip(layers, acts, grads, strict=True):
                # KFC (Grosse & Martens 2016, Sec. 3): A sums the patches over the T positions,
                # S averages the output gradients over them (T = 1: K-FAC).
                a2 = a.reshape(-1, a.shape[-1])
                f.a_cov += a2.T @ a2
                g2 = g.reshape(-1, g.shape[-1])
                f.s_cov += (g2.T @ g2) / g.shape[2]
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
                    if a.shape[1] == 1:
                        # Q_Sᵀ (g āᵀ) Q_A = (Q_Sᵀ g)(Q_Aᵀ ā)ᵀ: squares of an outer product.
                        g_rot = (g[:, :, 0] @ f.q_s).square().sum(1)  # (n, out), over draws
                        f.eigenvalues += g_rot.T @ (a[:, 0] @ f.q_a).square()
                    else:
                        # per example and draw, Q_Sᵀ (sum_t g_t ā_tᵀ) Q_A, squared
                        rot = torch.einsum("nkto,ntd->nkod", g @ f.q_s, a @ f.q_a)
                        f.eigenvalues += rot.square().sum((0, 1))
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

    _FACTOR_FIELDS = ("q_a", "q_s", "lambda_a", "lambda_s", "eigenvalues")

    def _state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_examples": int(self.n_examples_), "layers": []}
        for f in self.factors_:
            out["layers"].append({
                "name": f.name, "weight": list(f.weight),
                "bias": None if f.bias is None else list(f.bias), "shape": list(f.shape),
                **{k: getattr(f, k) for k in self._FACTOR_FIELDS},
            })
        return out

    def _restore(self, op: HessianOperator, state: dict[str, Any]) -> None:
        layers = []
        for d in state["layers"]:
            f = _LayerFactors(name=d["name"], weight=tuple(d["weight"]),
                              bias=None if d["bias"] is None else tuple(d["bias"]),
                              shape=tuple(d["shape"]), a_cov=None, s_cov=None)
            for k in self._FACTOR_FIELDS:
                v = d[k]
                setattr(f, k, v.to(device=op.device) if isinstance(v, Tensor) else v)
            layers.append(f)
        self.factors_, self.n_examples_ = layers, int(state["n_examples"])

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

    def __init__(self, *, fisher: str = "true", mc_samples: int | None = None, random_state: int = 0) -> None:
        super().__init__(
            fisher=fisher, mc_samples=mc_samples, random_state=random_state, eigenvalue_correction=False
        )

    def get_options(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "mc_samples": self.mc_samples, "random_state": self.random_state}


def _patches(layer: torch.nn.Module, a: Tensor) -> Tensor:
    """A layer's inputs as ``(n, T, in)``: the input itself (T = 1) for ``nn.Linear``; for a
    ``Conv2d``, the patches each output pixel sees (``unfold``, channel-major like the
    flattened weight), T = output pixels."""
    if not isinstance(layer, torch.nn.Conv2d):
        return a[:, None, :]
    cols = torch.nn.functional.unfold(a, layer.kernel_size, dilation=layer.dilation,
                                      padding=layer.padding, stride=layer.stride)
    return cols.transpose(1, 2)


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
            want = 4 if isinstance(module, torch.nn.Conv2d) else 2
            if args[0].ndim != want:
                raise InvalidParameterError(
                    f"Layer {name!r} got an input of shape {tuple(args[0].shape)}; (E)K-FAC "
                    "supports nn.Linear on 2-D inputs (batch, features) and nn.Conv2d on 4-D "
                    "inputs (batch, channels, height, width). Use another solver."
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
