"""Recommender systems: a ratings log, biased matrix factorization fitted to a stationary point,
explanations of a recommendation by the training ratings behind it (influence functions, full
or restricted to the user's and item's parameters as in FIA, Cheng et al. KDD 2019), and
unlearning ratings, a user or an item by a Newton step (Zhang et al. 2023)."""

from datavalue.recommend.influence import (
    RecommendationExplanation,
    RecommenderInfluence,
    UnlearnedRecommender,
    UnlearningReport,
    explain_recommendation,
    retrain,
    unlearn_ratings,
    unlearning_report,
)
from datavalue.recommend.mf import MatrixFactorization, MFLayout, MFProblem
from datavalue.recommend.ratings import BUILTIN_RATINGS, Ratings, load_ratings

__all__ = [
    "BUILTIN_RATINGS",
    "MFLayout",
    "MFProblem",
    "MatrixFactorization",
    "Ratings",
    "RecommendationExplanation",
    "RecommenderInfluence",
    "UnlearnedRecommender",
    "UnlearningReport",
    "explain_recommendation",
    "load_ratings",
    "retrain",
    "unlearn_ratings",
    "unlearning_report",
]
