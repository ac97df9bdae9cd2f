"""Valuation methods: one number per training example, higher = more helpful.

The registry of every method (``METHODS``, ``make_valuator``) is :mod:`datavalue.registry`; it
is also reachable here, loaded on first access, because it includes the influence-based
valuators, whose module itself builds on :mod:`datavalue.valuation.base`.
"""

from __future__ import annotations

from typing import Any

from .base import Valuator
from .crossfit import cross_fit
from .data_oob import DataOOB
from .dvrl import DVRL
from .exact import ExactBanzhaf, ExactBetaShapley, ExactShapley
from .g_shapley import GShapley
from .knn_shapley import KNNShapley
from .loo import LOO, RandomValuation
from .semivalue import BetaShapley, DataBanzhaf, TMCShapley

__all__ = [
    "METHODS",
    "Valuator",
    "DataOOB",
    "DVRL",
    "KNNShapley",
    "LOO",
    "RandomValuation",
    "TMCShapley",
    "BetaShapley",
    "DataBanzhaf",
    "GShapley",
    "ExactShapley",
    "ExactBanzhaf",
    "ExactBetaShapley",
    "make_valuator",
    "cross_fit",
]



def __getattr__(name: str) -> Any:
    if name in ("METHODS", "make_valuator"):
        from .. import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
