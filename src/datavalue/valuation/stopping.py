"""When is a Monte Carlo valuation done? Small criteria, composable with ``&`` and ``|``.

A criterion is called after every round of samples with a :class:`RunProgress` and answers
True (stop) or False. ``a | b`` stops when either does, ``a & b`` when both do. After a stop,
``criterion.reason`` names the criterion that fired and ``criterion.status`` says how the run
ended ("converged", "max_iterations" or "max_time"), which goes into the result.

Criteria that keep history (rank stability, relative change) expose ``state_dict`` /
``load_state_dict`` so that a resumed run stops exactly where an uninterrupted one would.

Examples
--------
>>> stop = RelativeChange(0.05) | MaxSamples(2000) | MaxTime(3600)
>>> stop = StandardErrorBelow(0.01, fraction=0.9) & MaxSamples(100)   # both must hold
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidParameterError

__all__ = [
    "RunProgress",
    "StoppingCriterion",
    "MaxSamples",
    "MaxPermutations",
    "MaxUpdates",
    "MaxTime",
    "StandardErrorBelow",
    "RankStability",
    "RelativeChange",
    "default_stopping",
]


@dataclass
class RunProgress:
    """What a criterion sees after each round.

    Attributes
    ----------
    n_samples : int
        Samples drawn so far (permutations, subsets, ...); each gives at most one marginal
        contribution per point.
    n_updates : int
        Utility evaluations (model fits or constant scores) so far.
    elapsed : float
        Seconds since the run (or the resumed run) started, plus time recorded in a checkpoint.
    values, stderr, counts : numpy.ndarray
        Current estimates, their standard errors and the number of samples behind each.
    """

    n_samples: int
    n_updates: int
    elapsed: float
    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray


class StoppingCriterion:
    """Base class: subclasses implement :meth:`_check`, and name their ``status``."""

    status: str = "converged"

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, progress: RunProgress) -> bool:
        fired = bool(self._check(progress))
        self.reason = str(self) if fired else None
        return fired

    def _check(self, progress: RunProgress) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def completion(self, progress: RunProgress) -> float:
        """How far along the run is, in [0, 1], for progress bars (0 if unknown)."""
        return 0.0

    def max_samples(self) -> int | None:
        """A number of samples at which this criterion is sure to have fired (None: no such
        bound). The engine does not draw samples beyond it."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def __or__(self, other: StoppingCriterion) -> StoppingCriterion:
        return _Or(self, _checked(other))

    def __and__(self, other: StoppingCriterion) -> StoppingCriterion:
        return _And(self, _checked(other))

    def __repr__(self) -> str:
        return str(self)


def _checked(other: Any) -> StoppingCriterion:
    if not isinstance(other, StoppingCriterion):
        raise InvalidParameterError(
            f"Stopping criteria combine with other criteria only; got {type(other).__name__}."
        )
    return other


class _Composite(StoppingCriterion):
    symbol = "?"

    def __init__(self, left: StoppingCriterion, right: StoppingCriterion) -> None:
        super().__init__()
        self.left, self.right = left, right

    def state_dict(self) -> dict[str, Any]:
        return {"left": self.left.state_dict(), "right": self.right.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.left.load_state_dict(state.get("left", {}))
        self.right.load_state_dict(state.get("right", {}))

    def __str__(self) -> str:
        return f"({self.left} {self.symbol} {self.right})"


class _Or(_Composite):
    symbol = "|"

    def __call__(self, progress: RunProgress) -> bool:
        # Evaluate both so that criteria with history see every round.
        a, b = self.left(progress), self.right(progress)
        fired = a or b
        winner = self.left if a else self.right
        self.reason = winner.reason if fired else None
        self.status = winner.status if fired else "converged"
        return fired

    def completion(self, progress: RunProgress) -> float:
        return max(self.left.completion(progress), self.right.completion(progress))

    def max_samples(self) -> int | None:
        bounds = [b for b in (self.left.max_samples(), self.right.max_samples()) if b is not None]
        return min(bounds) if bounds else None


class _And(_Composite):
    symbol = "&"

    def __call__(self, progress: RunProgress) -> bool:
        a, b = self.left(progress), self.right(progress)
        fired = a and b
        self.reason = f"{self.left.reason} & {self.right.reason}" if fired else None
        # Both hold: the run converged if either part is a convergence criterion.
        statuses = {self.left.status, self.right.status}
        self.status = "converged" if "converged" in statuses else self.left.status
        return fired

    def completion(self, progress: RunProgress) -> float:
        return min(self.left.completion(progress), self.right.completion(progress))

    def max_samples(self) -> int | None:
        a, b = self.left.max_samples(), self.right.max_samples()
        return None if a is None or b is None else max(a, b)


def _positive_int(value: Any, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be a positive int. Got {value!r} instead."
        )
    return int(value)


def _positive_float(value: Any, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not (
        np.isfinite(value) and value > 0
    ):
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be a positive number. Got {value!r} instead."
        )
    return float(value)


class MaxSamples(StoppingCriterion):
    """Stop after ``n`` samples (permutations for permutation samplers, subsets otherwise)."""

    status = "max_iterations"

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = _positive_int(n, "n", type(self).__name__)

    def _check(self, progress: RunProgress) -> bool:
        return progress.n_samples >= self.n

    def completion(self, progress: RunProgress) -> float:
        return min(1.0, progress.n_samples / self.n)

    def max_samples(self) -> int | None:
        return self.n

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.n})"


class MaxPermutations(MaxSamples):
    """Stop after ``n`` permutations (the same as :class:`MaxSamples` for permutation samplers)."""


class MaxUpdates(StoppingCriterion):
    """Stop after ``n`` utility evaluations (model fits)."""

    status = "max_iterations"

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = _positive_int(n, "n", "MaxUpdates")

    def _check(self, progress: RunProgress) -> bool:
        return progress.n_updates >= self.n

    def completion(self, progress: RunProgress) -> float:
        return min(1.0, progress.n_updates / self.n)

    def __str__(self) -> str:
        return f"MaxUpdates({self.n})"


class MaxTime(StoppingCriterion):
    """Stop once ``seconds`` of wall time have passed (checked between rounds).

    Wall time depends on the machine, so runs that stop on time are not reproducible.
    """

    status = "max_time"

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = _positive_float(seconds, "seconds", "MaxTime")

    def _check(self, progress: RunProgress) -> bool:
        return progress.elapsed >= self.seconds

    def completion(self, progress: RunProgress) -> float:
        return min(1.0, progress.elapsed / self.seconds)

    def __str__(self) -> str:
        return f"MaxTime({self.seconds:g})"


class StandardErrorBelow(StoppingCriterion):
    """Stop when the standard error of at least ``fraction`` of the points is below
    ``threshold`` (points need ``min_samples`` samples for their standard error to count).

    The standard error is that of the Monte Carlo mean, s / sqrt(count).
    """

    def __init__(self, threshold: float, fraction: float = 1.0, min_samples: int = 10) -> None:
        super().__init__()
        self.threshold = _positive_float(threshold, "threshold", "StandardErrorBelow")
        if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
            raise InvalidParameterError(
                f"The 'fraction' parameter of StandardErrorBelow must be in (0, 1]. "
                f"Got {fraction!r} instead."
            )
        self.fraction = float(fraction)
        self.min_samples = _positive_int(min_samples, "min_samples", "StandardErrorBelow")

    def _ok(self, progress: RunProgress) -> np.ndarray:
        return (progress.counts >= self.min_samples) & (progress.stderr <= self.threshold)

    def _check(self, progress: RunProgress) -> bool:
        return bool(np.mean(self._ok(progress)) >= self.fraction)

    def completion(self, progress: RunProgress) -> float:
        return min(1.0, float(np.mean(self._ok(progress))) / self.fraction)

    def __str__(self) -> str:
        return f"StandardErrorBelow({self.threshold:g}, fraction={self.fraction:g})"


class RankStability(StoppingCriterion):
    """Stop when the sets of the ``k`` highest and ``k`` lowest values (``which``: "top",
    "bottom" or "both") have not changed for ``patience`` consecutive rounds.

    ``k`` is a count (int) or a fraction of the points (float in (0, 1)). This is what a user who
    only wants to inspect the most harmful examples needs, and it converges far earlier than the
    values themselves.
    """

    def __init__(self, k: int | float = 0.1, patience: int = 5, which: str = "both",
                 min_samples: int = 10) -> None:
        super().__init__()
        if isinstance(k, bool) or not (
            (isinstance(k, int | np.integer) and k >= 1)
            or (isinstance(k, float) and 0 < k < 1)
        ):
            raise InvalidParameterError(
                f"The 'k' parameter of RankStability must be a positive int or a fraction in "
                f"(0, 1). Got {k!r} instead."
            )
        if which not in ("top", "bottom", "both"):
            raise InvalidParameterError(
                f"The 'which' parameter of RankStability must be 'top', 'bottom' or 'both'. "
                f"Got {which!r} instead."
            )
        self.k, self.which = k, which
        self.patience = _positive_int(patience, "patience", "RankStability")
        self.min_samples = _positive_int(min_samples, "min_samples", "RankStability")
        self._last: np.ndarray | None = None
        self._streak = 0

    def _sets(self, values: np.ndarray) -> np.ndarray:
        n = len(values)
        k = max(1, int(round(self.k * n))) if isinstance(self.k, float) else min(int(self.k), n)
        order = np.argsort(values, kind="stable")
        parts = []
        if self.which in ("bottom", "both"):
            parts.append(np.sort(order[:k]))
        if self.which in ("top", "both"):
            parts.append(np.sort(order[-k:]))
        return np.concatenate(parts)

    def _check(self, progress: RunProgress) -> bool:
        if progress.n_samples < self.min_samples:
            return False
        current = self._sets(progress.values)
        if self._last is not None and np.array_equal(current, self._last):
            self._streak += 1
        else:
            self._streak = 0
        self._last = current
        return self._streak >= self.patience

    def completion(self, progress: RunProgress) -> float:
        return self._streak / self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"last": None if self._last is None else self._last.tolist(),
                "streak": self._streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        last = state.get("last")
        self._last = None if last is None else np.asarray(last, dtype=np.int64)
        self._streak = int(state.get("streak", 0))

    def __str__(self) -> str:
        return f"RankStability(k={self.k}, patience={self.patience}, which={self.which!r})"


class RelativeChange(StoppingCriterion):
    """The convergence rule of Ghorbani & Zou (2019, Sec. 3.1): stop when the mean relative
    change of the values over the last ``window`` samples is below ``tolerance``,

        (1/n) Σ_i |φ_i^t − φ_i^{t−window}| / |φ_i^t|  <  tolerance,

    (the paper: window = 100 permutations, tolerance = 0.05). Points whose value is exactly 0
    are compared with an absolute change instead, to avoid dividing by zero.
    """

    def __init__(self, tolerance: float = 0.05, window: int = 100) -> None:
        super().__init__()
        self.tolerance = _positive_float(tolerance, "tolerance", "RelativeChange")
        self.window = _positive_int(window, "window", "RelativeChange")
        self._history: list[tuple[int, np.ndarray]] = []
        self.last_change_: float = float("inf")

    def _check(self, progress: RunProgress) -> bool:
        t = progress.n_samples
        self._history.append((t, np.array(progress.values, dtype=np.float64)))
        past = [h for h in self._history if h[0] <= t - self.window]
        if not past:
            return False
        # Keep only the newest snapshot at least `window` old, and everything newer.
        ref_t, ref = past[-1]
        self._history = [h for h in self._history if h[0] >= ref_t]
        cur = progress.values
        denom = np.abs(cur)
        change = np.abs(cur - ref)
        rel = np.where(denom > 0, change / np.where(denom > 0, denom, 1.0), change)
        self.last_change_ = float(np.mean(rel))
        return self.last_change_ < self.tolerance

    def completion(self, progress: RunProgress) -> float:
        if not np.isfinite(self.last_change_):
            return 0.0
        return min(1.0, self.tolerance / max(self.last_change_, 1e-300))

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [[t, v.tolist()] for t, v in self._history],
            "last_change": self.last_change_ if np.isfinite(self.last_change_) else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._history = [(int(t), np.asarray(v, dtype=np.float64))
                         for t, v in state.get("history", [])]
        lc = state.get("last_change")
        self.last_change_ = float("inf") if lc is None else float(lc)

    def __str__(self) -> str:
        return f"RelativeChange({self.tolerance:g}, window={self.window})"


def default_stopping(n_train: int) -> StoppingCriterion:
    """Ghorbani & Zou's convergence rule, with a safety cap of ``max(500, 10 n)`` samples so a
    run that never settles still ends (the result then says ``max_iterations``)."""
    return RelativeChange(0.05, window=100) | MaxSamples(max(500, 10 * n_train))
