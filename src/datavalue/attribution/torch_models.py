"""Wrapping a trained torch module (optionally a subset of its parameters) as an InfluenceModel."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from datavalue._core.exceptions import InvalidParameterError
from datavalue.attribution.losses import _L2, _UserLoss
from datavalue.attribution.model import InfluenceModel


# ---------------------------------------------------------------------------- torch modules
def _select_params(module: nn.Module, params: Any) -> list[str]:
    named = dict(module.named_parameters())
    if params is None:
        chosen = [n for n, p in named.items() if p.requires_grad]
    elif isinstance(params, nn.Module):
        return _select_params(module, [params])
    elif isinstance(params, str):
        return _select_params(module, [params])
    elif isinstance(params, Iterable):
        items = list(params)
        ids = {id(p): n for n, p in named.items()}
        chosen_set: set[str] = set()
        for item in items:
            if isinstance(item, str):
                if item in named:
                    chosen_set.add(item)
                else:  # a module name selects all its parameters
                    sub = [n for n in named if n.startswith(item + ".")]
                    if not sub:
                        raise InvalidParameterError(
                            f"The 'params' parameter names {item!r}, which is neither a "
                            "parameter nor a submodule of the model. Parameters: "
                            + ", ".join(list(named)[:8])
                            + (" ..." if len(named) > 8 else "")
                        )
                    chosen_set.update(sub)
            elif isinstance(item, nn.Module):
                found = [ids[id(p)] for p in item.parameters() if id(p) in ids]
                if not found:
                    raise InvalidParameterError(
                        f"The 'params' parameter contains a {type(item).__name__} module that is "
                        "not part of the model (or has no parameters)."
                    )
                chosen_set.update(found)
            else:
                raise InvalidParameterError(
                    "The 'params' parameter must be None, parameter or module names, or "
                    f"submodules of the model. Got an item of type {type(item).__name__}."
                )
        chosen = [n for n in named if n in chosen_set]  # model order, not the user's order
    else:
        raise InvalidParameterError(
            "The 'params' parameter must be None, a list of parameter/module names or a list of "
            f"submodules. Got {type(params).__name__}."
        )
    if not chosen:
        raise InvalidParameterError(
            "No parameters to take influence with respect to: the model has no parameter with "
            "requires_grad=True, or 'params' selected none."
        )
    return chosen


def _wrap_torch(
    module: nn.Module, loss: Callable | None, params: Any, weight_decay: float, dtype, device
) -> InfluenceModel:
    if loss is None or not callable(loss):
        raise InvalidParameterError(
            "The 'loss' parameter is required for a torch module: a callable "
            "(outputs, targets) -> loss, e.g. torch.nn.CrossEntropyLoss(). Got "
            f"{loss!r}."
        )
    if device is None:
        first = next(module.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    names = _select_params(module, params)  # on the caller's module: params may be its submodules
    if module.training:
        stochastic = sorted({type(m).__name__ for m in module.modules()
                             if isinstance(m, nn.modules.dropout._DropoutNd
                                           | nn.modules.batchnorm._BatchNorm)})
        if stochastic:
            warnings.warn(
                f"The model is in train mode and has {', '.join(stochastic)} layers: influence "
                "is computed in eval mode (dropout off, batch norm with its running statistics),"
                " the function the trained model computes at test time. Call model.eval() "
                "before to silence this warning.", UserWarning, stacklevel=4)
    work = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    named = dict(work.named_parameters())
    chosen = {n: named[n].detach() for n in names}
    frozen = {n: p.detach() for n, p in named.items() if n not in chosen}
    frozen.update({n: b for n, b in work.named_buffers()})
    reg = _L2({n: weight_decay for n in names}, {}) if weight_decay > 0 else None
    kind_of_loss = type(loss).__name__
    if kind_of_loss in ("CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss") or loss in (
        nn.functional.cross_entropy,
        nn.functional.binary_cross_entropy_with_logits,
    ):
        output_kind = "classification"
    elif kind_of_loss == "MSELoss" or loss is nn.functional.mse_loss:
        output_kind = "regression"
    else:
        output_kind = None
    return InfluenceModel(
        work,
        chosen,
        frozen,
        _UserLoss(loss),
        regularizer=reg,
        output_kind=output_kind,
        kind="torch",
        source=module,
        l2=weight_decay,
    )
