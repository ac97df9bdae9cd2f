"""What an attribution measures on the query side: the loss by default, a classification margin
(TRAK's output), or any ``measure(outputs, targets) -> (b,)`` of the user's; and the precision
every computation runs in. Shared by every method of the engine."""

from __future__ import annotations

from typing import Any

from datavalue._core.exceptions import InvalidParameterError

__all__ = ["margin"]


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Influence functions need PyTorch: install it with `pip install 'datavalue[torch]'`."
        ) from exc
    return torch


def _resolve_dtype(dtype: Any):
    torch = _torch()
    table = {"float64": torch.float64, "double": torch.float64, "float32": torch.float32,
             "float": torch.float32}
    if isinstance(dtype, str) and dtype in table:
        return table[dtype]
    if dtype in (torch.float64, torch.float32):
        return dtype
    raise InvalidParameterError(
        f"The 'dtype' parameter must be torch.float64 or torch.float32 (or 'float64', "
        f"'float32'). Got {dtype!r} instead."
    )


def margin(outputs: Any, targets: Any) -> Any:
    """Classification margins of a batch: ``s f(x)`` for one output (``s = +1`` for the positive
    class, -1 otherwise), ``f_y(x) - logsumexp_{k != y} f_k(x)`` for several (TRAK's margin)."""
    torch = _torch()
    out = outputs.reshape(outputs.shape[0], -1)
    if out.shape[1] == 1:
        return torch.where(targets.reshape(-1) > 0, out[:, 0], -out[:, 0])
    # A mask, not indexing by the label: vmap cannot slice by a batched value.
    mine = torch.arange(out.shape[1], device=out.device) == targets.long().reshape(-1, 1)
    others = out.masked_fill(mine, float("-inf"))
    return torch.where(mine, out, 0).sum(1) - torch.logsumexp(others, dim=1)


class _Measured:
    """The query side of a score with ``measure`` in place of the loss: what
    :func:`~datavalue.attribution.gradients.iter_gradient_blocks` differentiates per example."""

    def __init__(self, model: Any, measure: Any, name: str = "measure") -> None:
        self.model, self.measure, self.name = model, measure, name
        self.layout, self.params = model.layout, model.params

    def example_loss(self, params: Any, x: Any, y: Any) -> Any:
        value = self.measure(self.model.forward(params, x.unsqueeze(0)), y.unsqueeze(0))
        if not hasattr(value, "reshape") or value.numel() != 1:
            raise InvalidParameterError(
                f"'{self.name}' must return one value per example (shape (b,) for a batch of b); "
                f"for one example it returned {getattr(value, 'shape', type(value).__name__)}.")
        return value.reshape(())
