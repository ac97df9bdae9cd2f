"""Exact semivalues by enumerating every subset: the oracle for small data.

For n players, all 2^n subsets are scored once (in parallel), then every point's value is the
weighted sum of its marginal contributions,

    φ_i = Σ_{S ⊆ N∖{i}} w(|S|) [v(S ∪ {i}) − v(S)],

with the weights of :mod:`.sampling` (Shapley, Banzhaf, Beta). Feasible up to about n = 16
(65,536 model fits); larger n is refused with a clear message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.parallel import parallel_map
from datavalue._core.validation import N_JOBS, Interval
from datavalue.valuation.base import FitData, FitFailures, Valuator, default_model
from datavalue.valuation.sampling import (
    BanzhafWeight,
    BetaWeight,
    Game,
    SemivalueWeight,
    ShapleyWeight,
)
from datavalue.valuation.utility import METRIC_NAMES, Utility, default_metric

__all__ = ["ExactShapley", "ExactBanzhaf", "exact_semivalue", "subset_scores", "MAX_EXACT_PLAYERS"]

#: Largest n accepted by the exact methods (2^n utility evaluations).
MAX_EXACT_PLAYERS = 20


def _score_masks(game: Game, masks: np.ndarray, n: int) -> tuple[np.ndarray, FitFailures]:
    bits = ((masks[:, None] >> np.arange(n)) & 1).astype(bool)
    before = FitFailures.of(game)
    empty = game.empty_score()
    with threadpool_limits(limits=1, user_api="blas"):  # small fits: see semivalue.py
        scores = np.array([game(np.flatnonzero(b)) if b.any() else empty for b in bits])
    return scores, FitFailures.of(game).since(before)


def subset_scores(game: Game, *, n_jobs: int | None = None, progress: bool | None = None
                  ) -> np.ndarray:
    """v(S) for every subset S, indexed by bitmask (bit i set = player i in S)."""
    return _subset_scores(game, n_jobs=n_jobs, progress=progress)[0]


def _subset_scores(game: Game, *, n_jobs: int | None, progress: bool | None
                   ) -> tuple[np.ndarray, FitFailures]:
    n = game.n_players
    masks = np.arange(2**n, dtype=np.int64)
    blocks = np.array_split(masks, max(1, min(len(masks), 64)))
    parts = parallel_map(_score_masks, [(game, b, n) for b in blocks], n_jobs=n_jobs,
                         progress=progress, desc="subsets", unit="block")
    failures = sum((p[1] for p in parts), FitFailures())
    return np.concatenate([p[0] for p in parts]), failures


def exact_semivalue(scores: np.ndarray, n: int, weight: SemivalueWeight) -> np.ndarray:
    """Semivalues from the table of all subset scores (see :func:`subset_scores`)."""
    masks = np.arange(2**n, dtype=np.int64)
    sizes = np.zeros(2**n, dtype=np.int64)
    for i in range(n):
        sizes += (masks >> i) & 1
    coef = weight.coefficient(np.arange(n), n)
    values = np.empty(n)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        gains = scores[without | (1 << i)] - scores[without]
        values[i] = np.sum(coef[sizes[without]] * gains)
    return values


class _ExactBase(Valuator):
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "model": ["estimator", None],
        "metric": [METRIC_NAMES, "callable", None],
        "n_jobs": N_JOBS,
        "catch_errors": ["boolean"],
        "progress": ["boolean", None],
        "alpha": [Interval(float, 0, None, closed="neither")],
        "beta": [Interval(float, 0, None, closed="neither")],
    }

    def __init__(self, model: Any = None, metric: str | Callable | None = None, *,
                 n_jobs: int | None = None, catch_errors: bool = False,
                 progress: bool | None = None) -> None:
        self.model = model
        self.metric = metric
        self.n_jobs = n_jobs
        self.catch_errors = catch_errors
        self.progress = progress

    def _weight(self) -> SemivalueWeight:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None):
        """Enumerate all 2^n training subsets (n <= 20) and compute exact values."""
        start = time.perf_counter()
        self._validate_params()
        if self.model is not None:
            self._check_model(self.model)
        data = self._check_data(x_train, y_train, x_valid, y_valid, model=self.model)
        if data.n_train > MAX_EXACT_PLAYERS:
            raise InvalidDataError(
                f"{type(self).__name__} enumerates all 2^n subsets; 'x_train' has "
                f"{data.n_train} rows, at most {MAX_EXACT_PLAYERS} are allowed. Use the Monte "
                "Carlo methods (TMCShapley, BetaShapley, DataBanzhaf) for more data."
            )
        model = default_model(data.task, data) if self.model is None else self.model
        utility = Utility.from_data(model, data, self.metric or default_metric(data.task),
                                    catch_errors=self.catch_errors)
        return self._fit_game(utility, data, start)

    def fit_utility(self, game: Game):
        """Exact values of any game with ``n_players`` <= 20."""
        start = time.perf_counter()
        self._validate_params()
        n = getattr(game, "n_players", None)
        if not isinstance(n, int | np.integer) or not 1 <= n <= MAX_EXACT_PLAYERS:
            raise InvalidParameterError(
                f"The 'game' must have an int 'n_players' in [1, {MAX_EXACT_PLAYERS}]; got {n!r}."
            )
        fake = FitData(np.zeros((int(n), 1)), np.zeros(int(n)), None, None, "regression", None)
        fake.fingerprint = f"game:{type(game).__name__}:{n}"
        return self._fit_game(game, fake, start)

    def _fit_game(self, game: Game, data: FitData, start: float):
        n = game.n_players
        if hasattr(game, "check_learns"):  # a Utility: refuse a model that learns nothing
            game.check_learns()
        scores, failures = _subset_scores(game, n_jobs=self.n_jobs, progress=self.progress)
        values = exact_semivalue(scores, n, self._weight())
        self.subset_scores_ = scores
        self._make_result(values, data, start, stderr=np.zeros(n),
                          counts=np.full(n, 2 ** (n - 1)),
                          extra={"n_utility_calls": 2**n, "full_score": float(scores[-1]),
                                 "empty_score": float(scores[0]),
                                 **failures.check(type(self).__name__)})
        return self


class ExactShapley(_ExactBase):
    """Exact Shapley values by enumeration of all 2^n subsets (n <= 20).

    The test oracle for the Monte Carlo methods, and usable on tiny data sets. Parameters: the
    model and metric of the utility, ``n_jobs`` for the 2^n fits.
    """

    method_name: ClassVar[str] = "exact-shapley"

    def _weight(self) -> SemivalueWeight:
        return ShapleyWeight()


class ExactBanzhaf(_ExactBase):
    """Exact Banzhaf values by enumeration of all 2^n subsets (n <= 20)."""

    method_name: ClassVar[str] = "exact-banzhaf"

    def _weight(self) -> SemivalueWeight:
        return BanzhafWeight()


class ExactBetaShapley(_ExactBase):
    """Exact Beta(α, β) Shapley values by enumeration (n <= 20)."""

    method_name: ClassVar[str] = "exact-beta-shapley"

    def __init__(self, model: Any = None, metric: str | Callable | None = None, *,
                 alpha: float = 16.0, beta: float = 1.0, n_jobs: int | None = None,
                 catch_errors: bool = False, progress: bool | None = None) -> None:
        super().__init__(model, metric, n_jobs=n_jobs, catch_errors=catch_errors,
                         progress=progress)
        self.alpha = alpha
        self.beta = beta

    def _weight(self) -> SemivalueWeight:
        return BetaWeight(float(self.alpha), float(self.beta))
