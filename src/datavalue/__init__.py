"""datavalue: which training examples made this model what it is?

Data valuation (one value per training example: Data-OOB, KNN-Shapley, leave-one-out, ...)
and data attribution, behind one API. Higher values always mean *more helpful*.

>>> import datavalue as dv
>>> ds = dv.load_dataset("breast_cancer", noise_rate=0.1, random_state=0)
>>> oob = dv.DataOOB(n_estimators=200, random_state=0).fit(ds.x_train, ds.y_train)
>>> report = dv.evaluate.noisy_detection(oob.values_, ds.noisy_indices)
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import evaluate
from .actions import clean, fix
from .augment import addition_curve, value_candidates
from .compare import compare
from .data import BUILTIN_DATASETS, Dataset, corrupt_features, corrupt_labels, load_dataset
from .exceptions import (
    DatavalueError,
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    UnknownNameError,
)
from .influence.influence import InfluenceFunction
from .influence.tracing import TRAK, GradCos, GradDot, TracIn
from .models import MODELS, make_model
from .registry import METHODS, make_valuator
from .result import ValuationResult
from .retrain import Retrain
from .utility import METRICS, Utility
from .valuation import (
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
from .valuation.influence import InfluenceValuation, SelfInfluenceValuation
from .valuation.tracing import TracInValuation, TRAKValuation

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
]


#: Names of :mod:`datavalue.recommend`, imported on first use: they need torch, which
#: ``import datavalue`` does not load (most methods never use it).
_RECOMMEND = ("MatrixFactorization", "Ratings", "RecommenderInfluence", "explain_recommendation",
              "load_ratings", "unlearn_ratings")


def __getattr__(name: str):
    if name in _RECOMMEND:
        from . import recommend

        return getattr(recommend, name)
    raise AttributeError(f"module 'datavalue' has no attribute {name!r}")
