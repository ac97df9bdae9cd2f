"""Influence functions (Koh & Liang 2017): attribution of test predictions to training data.

>>> from datavalue.attribution import InfluenceFunction
>>> inf = InfluenceFunction(fitted_model).fit(x_train, y_train)  # doctest: +SKIP
>>> scores = inf.influence(x_test, y_test)  # (n_test, n_train), >0 = helpful  # doctest: +SKIP

:class:`InfluenceFunction` imports without PyTorch (it is loaded when an influence is
computed); the other names load torch on first access. The valuators built on it,
``InfluenceValuation`` and ``SelfInfluenceValuation``, live in :mod:`datavalue.valuation.influence`.
"""

from __future__ import annotations

import importlib
from typing import Any

from datavalue.attribution.engine import TopK
from datavalue.attribution.influence import InfluenceFunction, Unlearned
from datavalue.attribution.tracing import TRAK, GradCos, GradDot, TracIn

__all__ = [
    "InfluenceFunction",
    "TracIn",
    "GradDot",
    "GradCos",
    "TRAK",
    "RandomProjection",
    "training_set_attack",
    "random_perturbation",
    "warm_refit",
    "AttackResult",
    "debug_group",
    "GroupDebug",
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
    "RandomProjection": "projection",
    "training_set_attack": "applications.attack",
    "random_perturbation": "applications.attack",
    "warm_refit": "applications.attack",
    "AttackResult": "applications.attack",
    "debug_group": "applications.mismatch",
    "GroupDebug": "applications.mismatch",
    "InfluenceModel": "model",
    "wrap_model": "wrap",
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
        where = _LAZY[name]
        module = importlib.import_module(f"{__name__}.{where}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
