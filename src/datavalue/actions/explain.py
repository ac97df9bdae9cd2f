"""Explain one test prediction by the training examples behind it (Koh & Liang 2017, Sec. 5.1).

:func:`explain` fits a model on the training split, computes the influence of every training
example on the loss of one test example (:meth:`datavalue.InfluenceFunction.influence`: the
predicted change of that test loss if the training example were removed and the model
retrained), and returns the most helpful and most harmful examples. :func:`render_text` prints
them, with 8x8 images drawn in text for ``digits``; :meth:`Explanation.save` writes
``explanation.json`` for ``datavalue report``.
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

__all__ = ["Explanation", "explain", "render_text", "ascii_image", "EXPLAIN_METHODS"]

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
        with RunWriter(d, what="The explanation folder") as w:
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
    inf = InfluenceFunction(estimator, solver=solver, damping=damping).fit(
        dataset.x_train, dataset.y_train
    )
    x = dataset.x_test[[test_index]]
    y = dataset.y_test[[test_index]]
    measure = "loss"
    if method != "influence":
        from datavalue.attribution.tracing import TRAK, GradCos, GradDot

        tracer = {"tracin": GradDot, "grad-cos": GradCos}.get(method)
        tracer = (TRAK(estimator, proj_dim=None) if tracer is None else tracer(estimator))
        top = tracer.fit(dataset.x_train, dataset.y_train).top_k(x, y, k)
        measure = "margin" if method == "trak" else "loss"
    else:
        top = inf.top_k(x, y, k)
    if (method == "influence" and dataset.task == "classification"
            and not np.any(top.helpful_scores[0])
            and not np.any(top.harmful_scores[0])):
        # The test loss is flat here (a point beyond a hinge's margin: loss and gradient are
        # exactly 0), so every loss influence is 0 and the lists would be arbitrary. Explain
        # the margin instead, which training points always move.
        scores = inf.margin_influence(x, y)[0]
        order = np.argsort(-scores, kind="stable")
        top = _TopFromScores(order[:k], scores[order[:k]], order[::-1][:k],
                             scores[order[::-1][:k]])
        measure = "margin"
    label: Any = dataset.y_test[test_index]
    pred: Any = estimator.predict(x)[0]
    cast = int if dataset.task == "classification" else float
    return Explanation(
        test_index=int(test_index),
        test_label=cast(label),
        predicted_label=cast(pred),
        test_loss=float(np.asarray(inf.losses(x, y)).ravel()[0]),
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


class _TopFromScores:
    """The shape of :class:`~datavalue.attribution.TopK` for one test point."""

    def __init__(self, helpful, helpful_scores, harmful, harmful_scores) -> None:
        self.helpful, self.helpful_scores = [helpful], [helpful_scores]
        self.harmful, self.harmful_scores = [harmful], [harmful_scores]


_SHADES = " .:-=+*#%@"


def ascii_image(pixels: np.ndarray, shape: tuple[int, ...],
                value_range: tuple[float, float] | None = None) -> list[str]:
    """Rows of characters drawing a grey-level image (darker = higher value), scaled to its own
    range or to ``value_range`` (the same for images compared side by side)."""
    img = np.asarray(pixels, dtype=np.float64).reshape(shape)
    lo, hi = (float(img.min()), float(img.max())) if value_range is None else value_range
    img = np.clip(img, lo, hi)
    scaled = np.zeros_like(img) if hi <= lo else (img - lo) / (hi - lo)
    idx = np.minimum((scaled * len(_SHADES)).astype(int), len(_SHADES) - 1)
    return ["".join(_SHADES[i] * 2 for i in row) for row in idx]


def _row_text(ds: Dataset, x: np.ndarray, n_features: int = 6) -> str:
    raw = ds.raw_features(x[None, :])[0]
    shown = ", ".join(f"{name}={value:.4g}" for name, value in
                      zip(ds.feature_names[:n_features], raw[:n_features], strict=False))
    more = f", ... ({ds.n_features} features)" if ds.n_features > n_features else ""
    return shown + more


def render_text(expl: Explanation, ds: Dataset) -> str:
    """The explanation as text: the test example, then its helpful and harmful examples."""
    image = ds.image_shape is not None
    noisy = set(ds.noisy_indices.tolist())
    lines = [
        f"Test example {expl.test_index}: label {ds.label_name(expl.test_label)}, predicted "
        f"{ds.label_name(expl.predicted_label)} (loss {expl.test_loss:.4g}; model {expl.model}, "
        + (f"solver {expl.solver})" if expl.method == "influence" else f"method {expl.method})"),
    ]
    if image:
        lines += ["  " + r for r in ascii_image(ds.raw_features(ds.x_test[expl.test_index]),
                                                ds.image_shape)]
    else:
        lines.append("  " + _row_text(ds, ds.x_test[expl.test_index]))
    if expl.measure == "margin" and expl.method == "influence":
        lines.append("")
        lines.append(
            "The test loss is exactly 0 here (the example lies beyond the model's margin), so "
            "removing any single training example would leave it at 0: every loss influence is "
            "0. The examples below are ranked by their influence on the test example's margin "
            "(how confidently it is classified) instead."
        )
    what = "this test loss" if expl.measure == "loss" else "this test example's margin"
    raise_, lower = (("raise", "lower") if expl.measure == "loss" else ("lower", "raise"))
    titles = (f"removing them would {raise_} {what}", f"removing them would {lower} {what}")
    score_name = "influence"
    if expl.method in ("tracin", "grad-cos"):
        titles = (f"their gradients lower {what}", f"their gradients raise {what}")
        score_name = "grad-dot" if expl.method == "tracin" else "cosine"
    elif expl.method == "trak":
        titles = (f"they raise {what}", f"they lower {what}")
        score_name = "TRAK score"
    for title, idx, scores in (
        (f"Most helpful training examples ({titles[0]})", expl.helpful, expl.helpful_scores),
        (f"Most harmful training examples ({titles[1]})", expl.harmful, expl.harmful_scores),
    ):
        lines.append("")
        lines.append(title + ":")
        blocks = []
        for rank, (i, s) in enumerate(zip(idx, scores, strict=True), start=1):
            flag = "  [label was flipped]" if i in noisy else ""
            head = (f"  {rank}. train #{i}  label {ds.label_name(ds.y_train[i])}  "
                    f"{score_name} {s:+.4g}{flag}")
            if image:
                blocks.append([head] + ["     " + r for r in
                                        ascii_image(ds.raw_features(ds.x_train[i]),
                                                    ds.image_shape)])
            else:
                blocks.append([head, "     " + _row_text(ds, ds.x_train[i])])
        for b in blocks:
            lines.extend(b)
    return "\n".join(lines)
