"""datavalue: which training examples made this model what it is?

Data valuation (one value per training example: Data-OOB, KNN-Shapley, leave-one-out, ...)
and data attribution, behind one API. Higher values always mean *more helpful*.

>>> import datavalue as dv
>>> ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)
>>> oob = dv.DataOOB(n_estimators=200, random_state=0).fit(ds.x_train, ds.y_train)
>>> report = dv.evaluate.noisy_detection(oob.values_, ds.noisy_indices)
"""

from __future__ import annotations

from datavalue import evaluate
from datavalue._core import moved as _moved
from datavalue._core.exceptions import (
    DatavalueError,
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    ModelOutputError,
    StoreMismatchError,
    UnknownNameError,
)
from datavalue._core.result import ValuationResult
from datavalue._core.version import __version__
from datavalue.actions import clean, fix
from datavalue.actions.augment import addition_curve, value_candidates
from datavalue.actions.compare import compare
from datavalue.attribution.influence import InfluenceFunction
from datavalue.attribution.tracing import TRAK, GradCos, GradDot, TracIn
from datavalue.data import BUILTIN_DATASETS, Dataset, corrupt_features, corrupt_labels, load_dataset
from datavalue.evaluate.retrain import Retrain
from datavalue.valuation import (
    DVRL,
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
    cross_fit,
    stopping,
)
from datavalue.valuation.influence import InfluenceValuation, SelfInfluenceValuation
from datavalue.valuation.models import MODELS, make_model
from datavalue.valuation.registry import METHODS, make_valuator
from datavalue.valuation.tracing import TracInValuation, TRAKValuation
from datavalue.valuation.utility import METRICS, Utility

__all__ = [
    "__version__",
    "BUILTIN_DATASETS",
    "Dataset",
    "load_dataset",
    "corrupt_labels",
    "corrupt_features",
    "ValuationResult",
    "Utility",
    "METRICS",
    "MODELS",
    "make_model",
    "METHODS",
    "make_valuator",
    "Valuator",
    "cross_fit",
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
    "InfluenceFunction",
    "InfluenceValuation",
    "SelfInfluenceValuation",
    "TracInValuation",
    "TRAKValuation",
    "TracIn",
    "GradDot",
    "GradCos",
    "TRAK",
    "Retrain",
    "value_candidates",
    "addition_curve",
    "Ratings",
    "load_ratings",
    "MatrixFactorization",
    "RecommenderInfluence",
    "explain_recommendation",
    "unlearn_ratings",
    "stopping",
    "evaluate",
    "compare",
    "clean",
    "fix",
    "DatavalueError",
    "InvalidDataError",
    "InvalidModelError",
    "InvalidParameterError",
    "UnknownNameError",
    "ModelOutputError",
    "StoreMismatchError",
]

_moved.install()


#: Names of :mod:`datavalue.recommend`, imported on first use: they need torch, which
#: ``import datavalue`` does not load (most methods never use it).
_RECOMMEND = ("MatrixFactorization", "Ratings", "RecommenderInfluence", "explain_recommendation",
              "load_ratings", "unlearn_ratings")


def __getattr__(name: str):
    if name in _RECOMMEND:
        from datavalue import recommend

        return getattr(recommend, name)
    raise AttributeError(f"module 'datavalue' has no attribute {name!r}")
