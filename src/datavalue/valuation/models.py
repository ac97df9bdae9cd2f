"""Named models for the command line and for quick starts.

``make_model("logreg", task="classification", random_state=0)`` returns a fresh scikit-learn
estimator. The names cover what people use on tabular data; any other estimator can be passed
to the Python API directly.
"""

from __future__ import annotations

from typing import Any

from datavalue._core.exceptions import InvalidParameterError, UnknownNameError

__all__ = ["MODELS", "make_model"]

#: name -> one-line description (classification / regression variant).
MODELS: dict[str, str] = {
    "logreg": "L2 logistic regression (classification) / ridge regression (regression)",
    "linear": "linear model: logistic regression without penalty / ordinary least squares",
    "knn": "k-nearest neighbours (k=5)",
    "tree": "decision tree (full depth)",
    "forest": "random forest (100 trees)",
    "gbm": "histogram gradient boosting",
    "mlp": "multi-layer perceptron (one hidden layer of 100 units)",
    "svm": "linear support vector machine (LinearSVC / LinearSVR)",
}


def make_model(name: str, task: str = "classification", random_state: int | None = 0) -> Any:
    """A new, unfitted estimator for ``name`` (one of :data:`MODELS`) and ``task``."""
    from sklearn import ensemble, linear_model, neighbors, neural_network, svm, tree

    if not isinstance(name, str) or name not in MODELS:
        raise UnknownNameError(
            f"Unknown model {name!r} given as 'model': use one of {', '.join(MODELS)}."
        )
    if task not in ("classification", "regression"):
        raise InvalidParameterError(
            f"The 'task' parameter must be 'classification' or 'regression'. Got {task!r}."
        )
    clf = task == "classification"
    rs = random_state
    if name == "logreg":
        return linear_model.LogisticRegression(max_iter=1000) if clf else linear_model.Ridge()
    if name == "linear":
        return (
            linear_model.LogisticRegression(C=1e6, max_iter=2000)
            if clf
            else linear_model.LinearRegression()
        )
    if name == "knn":
        return neighbors.KNeighborsClassifier(5) if clf else neighbors.KNeighborsRegressor(5)
    if name == "tree":
        return (
            tree.DecisionTreeClassifier(random_state=rs)
            if clf
            else tree.DecisionTreeRegressor(random_state=rs)
        )
    if name == "forest":
        return (
            ensemble.RandomForestClassifier(100, random_state=rs)
            if clf
            else ensemble.RandomForestRegressor(100, random_state=rs)
        )
    if name == "gbm":
        return (
            ensemble.HistGradientBoostingClassifier(random_state=rs)
            if clf
            else ensemble.HistGradientBoostingRegressor(random_state=rs)
        )
    if name == "mlp":
        cls = neural_network.MLPClassifier if clf else neural_network.MLPRegressor
        return cls(hidden_layer_sizes=(100,), max_iter=500, random_state=rs)
    # svm
    return svm.LinearSVC(random_state=rs) if clf else svm.LinearSVR(random_state=rs)
