"""The registry of valuation methods: one explicit dict, no magic registration.

``METHODS`` maps the name used on the command line, in ``compare`` and in
``ValuationResult.method`` to the class. Adding a method means adding one line here.
"""

from __future__ import annotations

import inspect
from typing import Any

from .exceptions import UnknownNameError
from .influence.influence import InfluenceValuation, SelfInfluenceValuation
from .valuation import (
    LOO,
    BetaShapley,
    DataBanzhaf,
    DataOOB,
    ExactBanzhaf,
    ExactBetaShapley,
    ExactShapley,
    GShapley,
    KNNShapley,
    RandomValuation,
    TMCShapley,
    Valuator,
)
from .valuation.dvrl import DVRL

__all__ = ["METHODS", "make_valuator"]

METHODS: dict[str, type[Valuator]] = {
    "data-oob": DataOOB,
    "knn-shapley": KNNShapley,
    "loo": LOO,
    "tmc-shapley": TMCShapley,
    "beta-shapley": BetaShapley,
    "data-banzhaf": DataBanzhaf,
    "g-shapley": GShapley,
    "exact-shapley": ExactShapley,
    "exact-banzhaf": ExactBanzhaf,
    "exact-beta-shapley": ExactBetaShapley,
    "influence": InfluenceValuation,
    "self-influence": SelfInfluenceValuation,
    "dvrl": DVRL,
    "random": RandomValuation,
}


def make_valuator(name: str, **params: Any) -> Valuator:
    """Instantiate the method ``name`` with those of ``params`` it accepts.

    Parameters the method does not have (e.g. ``model`` for Data-OOB, ``random_state`` for the
    exact methods) are ignored, so one set of options can configure every method.
    """
    if not isinstance(name, str) or name not in METHODS:
        raise UnknownNameError(
            f"Unknown method {name!r} given as 'method': use one of {', '.join(METHODS)}."
        )
    cls = METHODS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return cls(**{k: v for k, v in params.items() if k in accepted and v is not None})
