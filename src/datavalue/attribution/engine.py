"""The attribution engine: what every attribution method shares, written once.

An :class:`Attributor` scores training examples against query examples, ``(n_test, n_train)``,
positive = helpful. Every method reads its examples through one contract
(:mod:`datavalue.attribution.examples`: arrays, tensors, torch ``Dataset`` / ``DataLoader``
streamed block by block), keeps what it computed in an optional store
(:mod:`datavalue.attribution.store`), and answers ``top_k`` from blocks of scores without
holding the whole matrix. A method supplies only what differs:

- ``_query_model()``: the wrapped model that validates query examples;
- ``_score_blocks(data, measure, desc)``: blocks ``(rows, scores)`` of the score matrix for
  the query examples ``data`` (how features are made and preconditioned: an inverse-Hessian
  solve for :class:`~datavalue.attribution.influence.InfluenceFunction`, the identity for
  TracIn, TRAK's kernel);
- ``influence`` and ``self_influence``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from datavalue._core.exceptions import InvalidParameterError

__all__ = ["Attributor", "TopK", "top_k_of_blocks"]


@dataclass(frozen=True)
class TopK:
    """The most helpful and most harmful training examples of each test point.

    ``helpful[t]`` lists training indices by decreasing score on test point ``t`` (for
    influence: removing them would raise its loss most), ``harmful[t]`` by increasing score;
    the ``*_scores`` are their scores (the scale of the method's ``influence``). All arrays
    have shape ``(n_test, k)``.
    """

    helpful: np.ndarray
    helpful_scores: np.ndarray
    harmful: np.ndarray
    harmful_scores: np.ndarray


def check_k(k: Any, n_train: int) -> int:
    """``k`` as an int in ``[1, n_train]`` (larger asks are cut to ``n_train``)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidParameterError(f"The 'k' parameter must be an int >= 1. Got {k!r} instead.")
    return min(int(k), n_train)


def top_k_of_blocks(blocks: Iterator[tuple[slice, np.ndarray]], n_test: int,
                    k: int) -> TopK:
    """The ``k`` largest and smallest scores of each row, from blocks ``(rows, scores)`` of the
    score matrix (one block in memory at a time). Ties are broken by the lower training index
    (a stable sort), so the answer is deterministic."""
    out = {name: np.empty((n_test, k), dtype=dt) for name, dt in
           (("helpful", np.int64), ("harmful", np.int64), ("helpful_scores", np.float64),
            ("harmful_scores", np.float64))}
    for rows, block in blocks:
        best = np.argsort(-block, axis=1, kind="stable")[:, :k]
        worst = np.argsort(block, axis=1, kind="stable")[:, :k]
        out["helpful"][rows], out["harmful"][rows] = best, worst
        out["helpful_scores"][rows] = np.take_along_axis(block, best, axis=1)
        out["harmful_scores"][rows] = np.take_along_axis(block, worst, axis=1)
    return TopK(**out)


class Attributor(BaseEstimator):
    """Base of every attribution method (see the module docstring). Subclasses are
    scikit-learn style estimators: parameters in ``__init__``, work in ``fit``, which sets
    ``n_train_`` (the fitted mark) among its learned attributes."""

    # -- what a method supplies ----------------------------------------------------------------
    def _query_model(self) -> Any:
        """The wrapped model that validates and converts query examples."""
        raise NotImplementedError

    def _score_blocks(self, data: Any, measure: Any, desc: str
                      ) -> Iterator[tuple[slice, np.ndarray]]:
        """Blocks ``(rows, scores)`` of the ``(data.n, n_train)`` score matrix."""
        raise NotImplementedError

    # -- written once ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_train_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted: call fit(x_train, y_train) first.")

    def _examples(self, model: Any, x: Any, y: Any, x_name: str, y_name: str) -> Any:
        """``(x, y)`` as :class:`~datavalue.attribution.examples.Examples` for ``model``
        (a scikit-learn Pipeline's preprocessing applied when there is one)."""
        from datavalue.attribution.examples import model_examples

        return model_examples(model, x, y, x_name, y_name, batch_fn=self.batch_fn,
                              batch_size=self.batch_size,
                              pipeline_input=getattr(self, "pipeline_input_", None))

    def _prepare(self, x: Any, y: Any, x_name: str = "x_test", y_name: str = "y_test") -> Any:
        """Query examples, validated once: ``(x, y)`` arrays or tensors, or a torch Dataset /
        DataLoader with ``y`` None."""
        from datavalue.attribution.examples import check_examples_args

        self._check_fitted()
        x, y = check_examples_args(x, y, x_name, y_name)
        return self._examples(self._query_model(), x, y, x_name, y_name)

    def _stored(self, name: str, shape: tuple[int, ...], fill: Any, *, dtype: Any,
                device: Any) -> Any:
        """The store's array ``name`` as a tensor over its read-only memory map (computed with
        ``fill`` and written first when the store lacks it)."""
        import warnings

        import torch

        arr = self.store_.array(name)
        if arr is None:
            arr = self.store_.write_array(name, shape, fill, dtype=dtype)
        with warnings.catch_warnings():
            # A read-only map: torch warns that writing would be undefined; nothing writes it.
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(arr).to(device)

    def losses(self, x: Any, y: Any = None) -> np.ndarray:
        """Per-example training losses of the (first) model at its fitted parameters: the
        losses the scores refer to."""
        import torch

        data = self._prepare(x, y, "x", "y")
        model = self._query_model()
        out = []
        with torch.no_grad():
            for _, xb, yb in data.blocks(self.batch_size):
                out.append(model.losses(model.params, xb, yb))
        return torch.cat(out).cpu().numpy().astype(np.float64)

    def top_k(self, x_test: Any, y_test: Any = None, k: int = 10, *,
              measure: Any = None) -> TopK:
        """The ``k`` most helpful and most harmful training examples of each query example
        (:class:`TopK`), computed one block of query examples at a time (the score matrix is
        never held whole). ``measure`` as in ``influence``."""
        self._check_fitted()
        k = check_k(k, self.n_train_)
        data = self._prepare(x_test, y_test)
        return top_k_of_blocks(self._score_blocks(data, measure, "top-k"), data.n, k)
