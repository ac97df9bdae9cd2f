"""Per-example losses and regularisers of the training objectives influence functions differentiate."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import vmap


# ---------------------------------------------------------------------------- losses
def smooth_hinge(margin: Tensor, temperature: float) -> Tensor:
    """Smooth hinge of Koh & Liang (2017, Sec. 4.1): ``t log(1 + exp((1 - s) / t))``.

    Tends to ``max(0, 1 - s)`` as ``t -> 0``; twice differentiable for ``t > 0``.
    """
    # softplus is linear above its threshold: exp(-35) is below float64 resolution there, and
    # unlike logaddexp its second derivative has no inf * 0 for large arguments.
    return temperature * nn.functional.softplus((1.0 - margin) / temperature, threshold=35.0)


class _BinaryLogLoss:
    """Log-loss of one logit (scikit-learn's binary logistic regression), per example."""

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        z = out[..., 0]
        return nn.functional.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction="none")


class _SoftmaxLoss:
    """Cross-entropy over K logits (multinomial logistic regression), per example."""

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(out, y, reduction="none")


class _SquaredError:
    """``(y - f(x))^2``: the per-example term of scikit-learn's least squares objectives."""

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        return (out[..., 0] - y) ** 2


class _SmoothHingeLoss:
    """Smooth hinge of the signed margin ``s = y_pm f(x)``, labels 0/1 mapped to -1/+1."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        sign = 2.0 * y.to(out.dtype) - 1.0
        return smooth_hinge(sign * out[..., 0], self.temperature)


class _SquaredHinge:
    """``max(0, 1 - s)^2``, LinearSVC's default loss (differentiable once; Hessian a.e.)."""

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        sign = 2.0 * y.to(out.dtype) - 1.0
        return torch.clamp(1.0 - sign * out[..., 0], min=0.0) ** 2


class _UserLoss:
    """A user loss ``(outputs, targets) -> loss`` made per-example.

    The loss is called on one example at a time (a batch of one, vectorised with ``vmap``), so a
    loss with ``reduction="mean"``, ``"sum"`` or ``"none"`` gives the same per-example values.
    """

    #: torch losses that compare outputs and targets entry by entry: torch broadcasts targets
    #: of another shape with only a warning (MSELoss of (b, 10) outputs and (b,) class indices
    #: gives finite, meaningless losses), so the shapes are checked here.
    ELEMENTWISE = frozenset({"MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss",
                             "BCEWithLogitsLoss", "mse_loss", "l1_loss", "smooth_l1_loss",
                             "huber_loss", "binary_cross_entropy",
                             "binary_cross_entropy_with_logits"})

    def __init__(self, loss: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.loss = loss
        name = getattr(loss, "__name__", type(loss).__name__)
        self._elementwise = name if name in self.ELEMENTWISE else None

    def one(self, out: Tensor, y: Tensor) -> Tensor:
        if self._elementwise and out.shape != y.shape and out.numel() != y.numel():
            from datavalue._core.exceptions import InvalidDataError

            raise InvalidDataError(
                f"The loss {self._elementwise} compares outputs and targets entry by entry, but "
                f"one example's model output has shape {tuple(out.shape)} and its target "
                f"{tuple(y.shape)}. For class-index targets use CrossEntropyLoss; for "
                "regression give targets shaped like the outputs.")
        return self.loss(out.unsqueeze(0), y.unsqueeze(0)).sum()

    def __call__(self, out: Tensor, y: Tensor) -> Tensor:
        return vmap(self.one)(out, y)


# ---------------------------------------------------------------------------- regularisers
class _L2:
    """``sum_name (strength_name / 2) ||theta_name||^2`` plus optional gauge terms.

    The gauge term ``(kappa / 2K) ||sum_k theta_k||^2`` (rows of a multinomial weight or
    intercept) fixes the one direction along which the softmax loss is flat (adding a constant to
    every class): it is zero with zero gradient at our centred parameters and leaves every
    influence unchanged, because every loss gradient is orthogonal to that direction; it only
    makes the Hessian invertible there.
    """

    def __init__(self, strengths: Mapping[str, float], gauges: Mapping[str, float]) -> None:
        self.strengths = {k: float(v) for k, v in strengths.items() if v > 0}
        self.gauges = {k: float(v) for k, v in gauges.items() if v > 0}

    def __bool__(self) -> bool:
        return bool(self.strengths or self.gauges)

    def hvp(self, v: Mapping[str, Tensor], batch_dims: int = 0) -> dict[str, Tensor]:
        """The (constant) Hessian of this quadratic times ``v`` (named tensors, each with
        ``batch_dims`` leading batch dimensions), in closed form: cheaper than differentiating
        twice (a quarter of a minibatch HVP's time on the digits MLP)."""
        out = {}
        for name, t in v.items():
            h = self.strengths.get(name, 0.0) * t
            kappa = self.gauges.get(name)
            if kappa is not None:  # class rows are the first axis of the parameter
                summed = t.sum(dim=batch_dims, keepdim=True)
                h = h + (kappa / t.shape[batch_dims]) * summed.expand_as(t)
            out[name] = h
        return out

    def __call__(self, params: Mapping[str, Tensor]) -> Tensor:
        total = 0.0
        for name, lam in self.strengths.items():
            total = total + 0.5 * lam * (params[name] ** 2).sum()
        for name, kappa in self.gauges.items():
            p = params[name]
            total = total + 0.5 * kappa / p.shape[0] * (p.sum(dim=0) ** 2).sum()
        return total
