"""Influence functions (Koh & Liang 2017): attribution of test predictions to training data.

>>> from datavalue.influence import InfluenceFunction
>>> inf = InfluenceFunction(fitted_model).fit(x_train, y_train)  # doctest: +SKIP
>>> scores = inf.influence(x_test, y_test)  # (n_test, n_train), >0 = helpful  # doctest: +SKIP

:class:`InfluenceFunction` and the valuators import without PyTorch (it is
loaded when an influence is computed); the other names load torch on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from .influence import (
    InfluenceFunction,
    InfluenceValuation,
    SelfInfluenceValuation,
    TopK,
    Unlearned,
)

__all__ = [
    "InfluenceFunction",
    "InfluenceValuation",
    "SelfInfluenceValuation",
    "TopK",
    "Unlearned",
    "InfluenceModel",
    "wrap_model",
    "fit_smooth_hinge_svm",
    "smooth_hinge",
    "per_example_gradients",
    "hessian_operator",
    "HessianOperator",
    "KFACSource",
    "Solver",
    "SolverError",
    "SOLVERS",
    "make_solver",
    "inverse_hvp",
]

_LAZY = {
    "InfluenceModel": "model",
    "wrap_model": "model",
    "fit_smooth_hinge_svm": "sklearn_models",
    "smooth_hinge": "model",
    "per_example_gradients": "gradients",
    "hessian_operator": "gradients",
    "HessianOperator": "solvers",
    "KFACSource": "solvers",
    "Solver": "solvers",
    "SolverError": "solvers",
    "SOLVERS": "solvers",
    "make_solver": "solvers",
    "inverse_hvp": "solvers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
