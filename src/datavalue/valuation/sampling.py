"""How semivalues are sampled: weights (Shapley, Beta, Banzhaf) and samplers.

A *semivalue* (Dubey, Neyman & Weber 1981) of point i is

    φ_i = Σ_{S ⊆ N∖{i}}  w(|S|) · [v(S ∪ {i}) − v(S)],     with  Σ_k C(n−1, k) w(k) = 1,

where v is the utility and w a weight on subset sizes:

- Shapley: w(k) = 1 / (n C(n−1, k))                     (Shapley 1953; Ghorbani & Zou 2019)
- Beta(α, β): w(k) = B(k + β, n − 1 − k + α) / B(α, β)   (Kwon & Zou 2022, Eq. 3; Beta(1, 1)
  is Shapley; Beta(16, 1) puts more weight on small subsets)
- Banzhaf: w(k) = 1 / 2^(n−1)                           (Wang & Jia 2023)

Each sampler draws one *sample* from a seed and turns it into at most one unbiased estimate of
φ_i per point (the engine in :mod:`semivalue` averages them with Welford's algorithm):

- :class:`PermutationSampler`: walk a random permutation, adding one point at a time; the
  marginal of the point at position k is importance-weighted by n C(n−1, k) w(k) (1 for Shapley).
  Optional truncation (Ghorbani & Zou 2019, TMC): once the score is within a tolerance of the
  full-data score for ``patience`` consecutive steps, the rest of the walk gets zero marginals.
- :class:`AntitheticPermutationSampler`: the mean over a permutation and its reverse
  (negatively correlated halves; lower variance for the same number of fits).
- :class:`UniformSubsetSampler`: a uniform random subset T; point i gets the marginal of adding
  i to T ∖ {i}, weighted by 2^(n−1) w(|T ∖ {i}|). n + 1 utility calls per sample.
- :class:`MSRSampler`: maximum sample reuse for Banzhaf (Wang & Jia 2023, Sec. 4.2): one utility
  call per uniform random subset T; φ_i = mean{v(T): i ∈ T} − mean{v(T): i ∉ T}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.special import betaln, gammaln

from datavalue._core.exceptions import InvalidParameterError, UnknownNameError

__all__ = [
    "Game",
    "SemivalueWeight",
    "ShapleyWeight",
    "BanzhafWeight",
    "BetaWeight",
    "Truncation",
    "Sampler",
    "PermutationSampler",
    "AntitheticPermutationSampler",
    "UniformSubsetSampler",
    "MSRSampler",
    "SAMPLERS",
    "make_sampler",
]


class Game(Protocol):
    """Anything valued by a semivalue: ``n_players`` and a score of a subset of players.

    :class:`datavalue.Utility` is one (players = training points); tests use games with known
    values. ``empty_score()`` is v(∅).
    """

    @property
    def n_players(self) -> int: ...

    def __call__(self, indices: np.ndarray) -> float: ...

    def empty_score(self) -> float: ...


# ---------------------------------------------------------------------- weights
class SemivalueWeight:
    """A weight on subset sizes; ``log_coefficient(k, n)`` is log w(k) for |S| = k."""

    name = "semivalue"

    def log_coefficient(self, k: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def coefficient(self, k: np.ndarray, n: int) -> np.ndarray:
        return np.exp(self.log_coefficient(np.asarray(k, dtype=np.float64), n))

    def permutation_importance(self, n: int) -> np.ndarray | None:
        """Factor for the marginal at each position k = 0..n−1 of a uniform permutation:
        n C(n−1, k) w(k). None means 1 everywhere (Shapley)."""
        k = np.arange(n, dtype=np.float64)
        log_binom = gammaln(n) - gammaln(k + 1) - gammaln(n - k)
        return np.exp(np.log(n) + log_binom + self.log_coefficient(k, n))

    def subset_importance(self, n: int) -> np.ndarray:
        """Factor for a marginal on a uniform random subset of N ∖ {i} of size k: 2^(n−1) w(k)."""
        k = np.arange(n, dtype=np.float64)
        return np.exp((n - 1) * np.log(2.0) + self.log_coefficient(k, n))

    def params(self) -> dict[str, Any]:
        return {}


class ShapleyWeight(SemivalueWeight):
    name = "shapley"

    def log_coefficient(self, k: np.ndarray, n: int) -> np.ndarray:
        return gammaln(k + 1) + gammaln(n - k) - gammaln(n + 1)

    def permutation_importance(self, n: int) -> np.ndarray | None:
        return None


class BanzhafWeight(SemivalueWeight):
    name = "banzhaf"

    def log_coefficient(self, k: np.ndarray, n: int) -> np.ndarray:
        return np.full(np.shape(k), -(n - 1) * np.log(2.0))


@dataclass(frozen=True)
class BetaWeight(SemivalueWeight):
    """Beta(α, β) semivalue weight of Kwon & Zou (2022)."""

    alpha: float = 16.0
    beta: float = 1.0
    name = "beta"

    def __post_init__(self) -> None:
        for p in ("alpha", "beta"):
            v = getattr(self, p)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise InvalidParameterError(
                    f"The '{p}' parameter of the Beta weight must be a positive number. Got {v!r}."
                )

    def log_coefficient(self, k: np.ndarray, n: int) -> np.ndarray:
        k = np.asarray(k, dtype=np.float64)
        return betaln(k + self.beta, n - 1 - k + self.alpha) - betaln(self.alpha, self.beta)

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta}


# ---------------------------------------------------------------------- truncation
@dataclass(frozen=True)
class Truncation:
    """Truncated Monte Carlo (Ghorbani & Zou 2019, Alg. 1): stop a permutation walk once
    |v(N) − v(S)| <= tolerance · |v(N)| for ``patience`` consecutive steps; later points get a
    marginal of exactly 0 (adding more data to a subset that already performs like the full set
    changes little)."""

    full_score: float
    tolerance: float
    patience: int = 5

    def close(self, score: float) -> bool:
        return abs(self.full_score - score) <= self.tolerance * abs(self.full_score)


# ---------------------------------------------------------------------- samplers
class Sampler:
    """Turns a seed into contributions: ``sample(game, seed)`` returns
    ``(contributions (n,), mask (n,) of points that got one, n_calls, n_truncated)``."""

    name = "sampler"
    #: Samples drawn per joblib task; cheap samples are grouped to amortise dispatch.
    samples_per_task = 1

    def __init__(self) -> None:
        self.weight: SemivalueWeight = ShapleyWeight()
        self.truncation: Truncation | None = None

    def bind(self, weight: SemivalueWeight, truncation: Truncation | None) -> Sampler:
        """Attach the semivalue weight (and optional truncation) before a run."""
        self.weight, self.truncation = weight, truncation
        return self

    def sample(self, game: Game, seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _reset_warm_start(game: Game) -> None:
    reset = getattr(game, "reset_warm_start", None)
    if reset is not None:
        reset()


def walk_permutation(
    game: Game,
    perm: np.ndarray,
    empty_score: float,
    importance: np.ndarray | None,
    truncation: Truncation | None,
) -> tuple[np.ndarray, int, int]:
    """Marginal contribution of each point along ``perm``; returns (contributions, number of
    utility calls, number of points skipped by truncation)."""
    n = len(perm)
    out = np.zeros(n)
    _reset_warm_start(game)  # warm starts never cross permutations: keeps n_jobs invariance
    prev = empty_score
    streak = 0
    for pos in range(n):
        score = game(perm[: pos + 1])
        gain = score - prev
        out[perm[pos]] = gain if importance is None else gain * importance[pos]
        prev = score
        if truncation is not None:
            streak = streak + 1 if truncation.close(score) else 0
            if streak >= truncation.patience:
                return out, pos + 1, n - pos - 1
    return out, n, 0


class PermutationSampler(Sampler):
    """Uniform random permutations (Castro et al. 2009; Ghorbani & Zou 2019)."""

    name = "permutation"

    def sample(self, game: Game, seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        n = game.n_players
        perm = np.random.default_rng(seed).permutation(n)
        imp = self.weight.permutation_importance(n)
        contrib, calls, skipped = walk_permutation(
            game, perm, game.empty_score(), imp, self.truncation
        )
        return contrib, np.ones(n, dtype=bool), calls, skipped


class AntitheticPermutationSampler(Sampler):
    """A permutation and its reverse, averaged into one sample (Mitchell et al. 2022)."""

    name = "antithetic"

    def sample(self, game: Game, seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        n = game.n_players
        perm = np.random.default_rng(seed).permutation(n)
        imp = self.weight.permutation_importance(n)
        empty = game.empty_score()
        a, ca, sa = walk_permutation(game, perm, empty, imp, self.truncation)
        b, cb, sb = walk_permutation(game, perm[::-1].copy(), empty, imp, self.truncation)
        return 0.5 * (a + b), np.ones(n, dtype=bool), ca + cb, sa + sb


class UniformSubsetSampler(Sampler):
    """A uniform random subset T; every point's marginal with respect to T ∖ {i}."""

    name = "uniform"

    def sample(self, game: Game, seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        n = game.n_players
        inside = np.random.default_rng(seed).random(n) < 0.5
        members = np.flatnonzero(inside)
        _reset_warm_start(game)
        v_t = game(members) if members.size else game.empty_score()
        imp = self.weight.subset_importance(n)
        out = np.empty(n)
        for i in range(n):
            if inside[i]:
                without = members[members != i]
                v_s = game(without) if without.size else game.empty_score()
                out[i] = (v_t - v_s) * imp[members.size - 1]
            else:
                out[i] = (game(np.append(members, i)) - v_t) * imp[members.size]
        return out, np.ones(n, dtype=bool), n + 1, 0


class MSRSampler(Sampler):
    """Maximum sample reuse (Wang & Jia 2023): one utility call per uniform random subset.

    Only valid for the Banzhaf weight; the engine accumulates v(T) separately for the points in
    and out of T. ``sample`` returns ``(v(T) repeated, membership mask, 1, 0)``.
    """

    name = "msr"
    samples_per_task = 32

    def bind(self, weight: SemivalueWeight, truncation: Truncation | None) -> Sampler:
        if not isinstance(weight, BanzhafWeight):
            raise InvalidParameterError(
                "The 'sampler' 'msr' (maximum sample reuse) estimates Banzhaf values only; "
                f"use 'permutation' or 'uniform' for {weight.name} weights."
            )
        if truncation is not None:
            raise InvalidParameterError("The 'msr' sampler does not support truncation.")
        return super().bind(weight, truncation)

    def sample(self, game: Game, seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        n = game.n_players
        inside = np.random.default_rng(seed).random(n) < 0.5
        members = np.flatnonzero(inside)
        _reset_warm_start(game)
        v = game(members) if members.size else game.empty_score()
        return np.full(n, v), inside, 1, 0


SAMPLERS: dict[str, type[Sampler]] = {
    "permutation": PermutationSampler,
    "antithetic": AntitheticPermutationSampler,
    "uniform": UniformSubsetSampler,
    "msr": MSRSampler,
}


def make_sampler(sampler: str | Sampler) -> Sampler:
    """A fresh sampler from a name in :data:`SAMPLERS` (or the sampler itself)."""
    if isinstance(sampler, Sampler):
        return sampler
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise UnknownNameError(
            f"Unknown sampler {sampler!r} given as 'sampler': use one of {', '.join(SAMPLERS)}."
        )
    return SAMPLERS[sampler]()
