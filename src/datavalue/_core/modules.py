"""Torch modules, handled without importing torch until a module is given."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["reinitialized"]


def reinitialized(module: Any, seed: int) -> Any:
    """A copy of a torch ``module`` whose parameters are drawn again under
    ``torch.manual_seed(seed)`` (every submodule's ``reset_parameters``), then the seed is left
    set for the training that follows (its shuffling)."""
    import torch

    fresh = copy.deepcopy(module)
    torch.manual_seed(seed)
    for m in fresh.modules():
        if callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
    return fresh
