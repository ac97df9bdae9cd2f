"""Valuation methods: one number per training example, higher = more helpful.

What is valued is a :class:`~datavalue.valuation.utility.Utility` (model, metric, data); the
registry of every method (``METHODS``, ``make_valuator``) is
:mod:`datavalue.valuation.registry`, whose names are re-exported here.
"""

from __future__ import annotations

from datavalue.valuation.base import Valuator
from datavalue.valuation.crossfit import cross_fit
from datavalue.valuation.data_oob import DataOOB
from datavalue.valuation.dvrl import DVRL
from datavalue.valuation.exact import ExactBanzhaf, ExactBetaShapley, ExactShapley
from datavalue.valuation.g_shapley import GShapley
from datavalue.valuation.knn_shapley import KNNShapley
from datavalue.valuation.loo import LOO, RandomValuation
from datavalue.valuation.registry import METHODS, make_valuator
from datavalue.valuation.semivalue import BetaShapley, DataBanzhaf, TMCShapley

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
