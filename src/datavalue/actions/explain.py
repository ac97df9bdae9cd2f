"""Explain one test prediction by the training examples behind it (Koh & Liang 2017, Sec. 5.1).

:func:`explain` fits a model on the training split, computes the influence of every training
example on the loss of one test example (:meth:`datavalue.InfluenceFunction.influence`: the
predicted change of that test loss if the training example were removed and the model
retrained), and returns the most helpful and most harmful examples;
:func:`datavalue.report.text.render_explanation` prints them (8x8 images drawn in text for
``digits``) and :meth:`Explanation.save` writes ``explanation.json`` for ``datavalue report``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidParameterError
from datavalue.data import Dataset
from datavalue.valuation.models import make_model

__all__ = ["Explanation", "explain", "EXPLAIN_METHODS"]

#: Attribution methods :func:`explain` can rank training examples with.
EXPLAIN_METHODS = ("influence", "tracin", "grad-cos", "trak")


@dataclass(frozen=True)
class Explanation:
    """The training examples that most raised and lowered one test prediction's quality.

    Scores are influences: positive = helpful (removing the example would raise the test loss).
    """

    test_index: int
    test_label: int | float
    predicted_label: int | float
    test_loss: float
    helpful: list[int]
    helpful_scores: list[float]
    harmful: list[int]
    harmful_scores: list[float]
    model: str
    solver: str
    data_fingerprint: str
    measure: str = "loss"
    method: str = "influence"

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``explanation.json`` into the run folder ``directory`` (see
        :mod:`datavalue._core.folder`)."""
        from datavalue._core.folder import RunWriter

        d = Path(directory)
        with RunWriter(d, kind="explain", what="The explanation folder") as w:
            w.write_text("explanation.json", json.dumps(asdict(self), indent=2) + "\n")
        return d / "explanation.json"

    @classmethod
    def load(cls, path: str | os.PathLike) -> Explanation:
        p = Path(path)
        if p.is_dir():
            p = p / "explanation.json"
        return cls(**json.loads(p.read_text()))


def explain(
    dataset: Dataset,
    test_index: int,
    *,
    model: str | Any = "logreg",
    k: int = 5,
    solver: str = "exact",
    damping: float = 0.0,
    method: str = "influence",
    random_state: int | None = 0,
) -> Explanation:
    """Most helpful and harmful training examples for test example ``test_index``.

    Parameters
    ----------
    dataset : Dataset
    test_index : int
        Row of the test split to explain.
    model : str or estimator
        A model name (``logreg``, ``linear``, ``svm``: the models whose influence is exact for
        their own training objective) or an unfitted scikit-learn estimator of those kinds.
    k : int
        How many examples of each kind.
    solver, damping :
        Inverse-Hessian solver and damping (see :class:`datavalue.InfluenceFunction`).
    method : {"influence", "tracin", "grad-cos", "trak"}
        How training examples are scored: influence functions (default); TracIn with the
        trained model as its one checkpoint (Grad-Dot: ``<grad L(z_test), grad L(z_i)>``);
        Grad-Cos (the cosine); or TRAK (the test example's margin, Park et al. 2023). All are
        positive for helpful examples.
    """
    from sklearn.base import clone

    from datavalue.attribution.engine import top_k_of_blocks
    from datavalue.attribution.influence import InfluenceFunction

    if not isinstance(dataset, Dataset):
        raise InvalidParameterError(
            f"The 'dataset' parameter must be a Dataset. Got {type(dataset).__name__}."
        )
    if isinstance(test_index, bool) or not isinstance(test_index, int | np.integer) or not (
        0 <= test_index < dataset.n_test
    ):
        raise InvalidParameterError(
            f"The 'test_index' parameter must be a row of the test split, an int in "
            f"[0, {dataset.n_test - 1}]. Got {test_index!r} instead."
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= dataset.n_train:
        raise InvalidParameterError(
            f"The 'k' parameter must be an int in [1, {dataset.n_train}]. Got {k!r} instead."
        )
    estimator = (
        make_model(model, dataset.task, random_state) if isinstance(model, str) else clone(model)
    )
    if method not in EXPLAIN_METHODS:
        raise InvalidParameterError(
            f"The 'method' parameter must be one of {', '.join(EXPLAIN_METHODS)}. Got "
            f"{method!r} instead.")
    if method == "trak" and dataset.task != "classification":
        raise InvalidParameterError("method='trak' explains a classification margin; this "
                                    "data set has a regression target.")
    estimator.fit(dataset.x_train, dataset.y_train)
    x = dataset.x_test[[test_index]]
    y = dataset.y_test[[test_index]]
    measure = "loss"
    if method == "influence":
        attributor = InfluenceFunction(estimator, solver=solver, damping=damping)
    else:  # only the method asked for is fitted
        from datavalue.attribution.tracing import TRAK, GradCos, GradDot

        tracer = {"tracin": GradDot, "grad-cos": GradCos}.get(method)
        attributor = TRAK(estimator, proj_dim=None) if tracer is None else tracer(estimator)
        measure = "margin" if method == "trak" else "loss"
    attributor.fit(dataset.x_train, dataset.y_train)
    top = attributor.top_k(x, y, k)
    if (method == "influence" and dataset.task == "classification"
            and not np.any(top.helpful_scores[0])
            and not np.any(top.harmful_scores[0])):
        # The test loss is flat here (a point beyond a hinge's margin: loss and gradient are
        # exactly 0), so every loss influence is 0 and the lists would be arbitrary. Explain
        # the margin instead, which training points always move.
        scores = attributor.margin_influence(x, y)
        top = top_k_of_blocks(iter([(slice(0, 1), scores)]), 1, k)
        measure = "margin"
    label: Any = dataset.y_test[test_index]
    pred: Any = estimator.predict(x)[0]
    cast = int if dataset.task == "classification" else float
    return Explanation(
        test_index=int(test_index),
        test_label=cast(label),
        predicted_label=cast(pred),
        test_loss=float(np.asarray(attributor.losses(x, y)).ravel()[0]),
        helpful=[int(i) for i in top.helpful[0]],
        helpful_scores=[float(s) for s in top.helpful_scores[0]],
        harmful=[int(i) for i in top.harmful[0]],
        harmful_scores=[float(s) for s in top.harmful_scores[0]],
        model=model if isinstance(model, str) else type(model).__name__,
        solver=str(solver),
        data_fingerprint=dataset.fingerprint(),
        measure=measure,
        method=method,
    )
