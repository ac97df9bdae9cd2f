"""Leave-one-out values by actual retraining, and the random baseline.

LOO value of point i: v(N) - v(N \\ {i}), where v is the :class:`~datavalue.Utility` (model +
metric on the validation set). Exact, n + 1 model fits, parallel over points with joblib.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from datavalue._core.parallel import parallel_map
from datavalue._core.validation import N_JOBS
from datavalue.valuation.base import FitFailures, Valuator, default_model
from datavalue.valuation.utility import METRIC_NAMES, Utility, default_metric

__all__ = ["LOO", "RandomValuation"]


def _loo_block(utility: Utility, indices: np.ndarray) -> tuple[np.ndarray, FitFailures]:
    """Scores of the model without each point in ``indices`` (one block of tasks), and the
    fits that failed on the way."""
    everyone = np.arange(utility.n_train)
    before = FitFailures.of(utility)
    with threadpool_limits(limits=1, user_api="blas"):  # many small fits: threads only contend
        scores = np.array([utility(np.delete(everyone, i)) for i in indices])
    return scores, FitFailures.of(utility).since(before)


class LOO(Valuator):
    """Exact leave-one-out: how much the validation score drops when a point is removed.

    Parameters
    ----------
    model : estimator or None
        Any scikit-learn compatible estimator (default: logistic / ridge regression).
    metric : str or callable
        Validation metric, see :data:`datavalue.valuation.utility.METRICS` (default: accuracy / r2).
    n_jobs : int or None
        Parallel workers (joblib); results are identical for any value.
    catch_errors : bool
        Score a failed fit as 0 instead of raising (counted in ``result_.extra``).
    progress : bool or None
        Progress bar (None: only on a terminal).

    Notes
    -----
    With accuracy as the metric, most LOO values are exactly 0 on data sets of more than a few
    hundred points: one point rarely flips a validation prediction. Log-loss is a smoother
    choice (``metric="neg_log_loss"``).
    """

    method_name: ClassVar[str] = "loo"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "model": ["estimator", None],
        "metric": [METRIC_NAMES, "callable", None],
        "n_jobs": N_JOBS,
        "catch_errors": ["boolean"],
        "progress": ["boolean", None],
    }

    def __init__(
        self,
        model: Any = None,
        metric: str | Callable | None = None,
        *,
        n_jobs: int | None = None,
        catch_errors: bool = False,
        progress: bool | None = None,
    ) -> None:
        self.model = model
        self.metric = metric
        self.n_jobs = n_jobs
        self.catch_errors = catch_errors
        self.progress = progress

    def fit(self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None) -> LOO:
        start = time.perf_counter()
        self._validate_params()
        if self.model is not None:
            self._check_model(self.model)
        data = self._check_data(x_train, y_train, x_valid, y_valid, model=self.model)
        model = default_model(data.task, data) if self.model is None else self.model
        utility = Utility.from_data(model, data, self.metric or default_metric(data.task),
                                    catch_errors=self.catch_errors)
        utility.check_learns()  # before the n fits, not after
        full = utility.full_score()
        n = data.n_train
        # Blocks of points per task amortise the dispatch cost of joblib.
        n_blocks = min(n, 8 * max(1, abs(self.n_jobs or 1)))
        blocks = [b for b in np.array_split(np.arange(n), n_blocks) if b.size]
        parts = parallel_map(
            _loo_block,
            [(utility, b) for b in blocks],
            n_jobs=self.n_jobs,
            progress=self.progress,
            desc="LOO",
            unit="block",
        )
        without = np.concatenate([p[0] for p in parts])
        failures = sum((p[1] for p in parts), FitFailures.of(utility))
        self.full_score_ = full
        self._make_result(full - without, data, start,
                          extra={"full_score": full, "n_fits": n + 1,
                                 **failures.check(type(self).__name__)})
        return self


class RandomValuation(Valuator):
    """Values drawn uniformly at random: the baseline every evaluation compares against.

    Parameters
    ----------
    random_state : int or None
    """

    method_name: ClassVar[str] = "random"
    needs_validation: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, list]] = {"random_state": ["random_state"]}

    def __init__(self, random_state: int | None = 0) -> None:
        self.random_state = random_state

    def fit(self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None):
        start = time.perf_counter()
        self._validate_params()
        data = self._check_data(x_train, y_train, x_valid, y_valid, need_valid=False)
        values = np.random.default_rng(self.random_state).random(data.n_train)
        self._make_result(values, data, start)
        return self
