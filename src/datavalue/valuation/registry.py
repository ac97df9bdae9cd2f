"""The registry of valuation methods: one explicit dict, no magic registration.

``METHODS`` maps the name used on the command line, in ``compare`` and in
``ValuationResult.method`` to the class. Adding a method means adding one line here.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from datavalue._core.exceptions import UnknownNameError
from datavalue.valuation.base import Valuator
from datavalue.valuation.data_oob import DataOOB
from datavalue.valuation.dvrl import DVRL
from datavalue.valuation.exact import ExactBanzhaf, ExactBetaShapley, ExactShapley
from datavalue.valuation.g_shapley import GShapley
from datavalue.valuation.influence import InfluenceValuation, SelfInfluenceValuation
from datavalue.valuation.knn_shapley import KNNShapley
from datavalue.valuation.loo import LOO, RandomValuation
from datavalue.valuation.semivalue import BetaShapley, DataBanzhaf, TMCShapley
from datavalue.valuation.tracing import TracInValuation, TRAKValuation

__all__ = ["METHODS", "make_valuator", "method_parameters", "check_parameter_names"]

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
    "tracin": TracInValuation,
    "trak": TRAKValuation,
    "dvrl": DVRL,
    "random": RandomValuation,
}


def method_parameters(name: str) -> list[str]:
    """The parameter names of method ``name`` (its ``__init__`` arguments)."""
    _check_method(name)
    return [p for p in inspect.signature(METHODS[name].__init__).parameters if p != "self"]


def _check_method(name: Any) -> None:
    if not isinstance(name, str) or name not in METHODS:
        close = difflib.get_close_matches(str(name), list(METHODS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"Unknown method {name!r} given as 'method': use one of {', '.join(METHODS)}.{hint}"
        )


def check_parameter_names(name: str, params: Any, where: str = "parameter") -> None:
    """Raise :class:`UnknownNameError` for a parameter the method does not have, naming the
    closest valid one (a misspelled ``max_permutaions`` must never be silently dropped)."""
    accepted = method_parameters(name)
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"The method {name!r} has no {where} {key!r}.{hint} Its parameters are "
                f"{', '.join(sorted(accepted))}."
            )


def make_valuator(name: str, **params: Any) -> Valuator:
    """Instantiate the method ``name`` with ``params``.

    Every parameter must be one of the method's (a misspelled or inapplicable name raises,
    naming the closest valid one), and every value is passed as given: an explicit ``None``
    means None, never "use the default".
    """
    _check_method(name)
    check_parameter_names(name, params)
    return METHODS[name](**params)
