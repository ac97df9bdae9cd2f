"""One Monte Carlo engine for every semivalue: TMC-Shapley, Beta Shapley, Data Banzhaf.

The engine draws samples (permutations or subsets, see :mod:`.sampling`) in *rounds* of a fixed
size. Sample k is drawn from its own seed, ``SeedSequence(random_state, spawn_key=(k,))``, and
samples are evaluated in parallel with joblib as one stream of tasks (no barrier at the end of a
round: a worker that finishes takes the next sample), then folded into running means and
variances (Welford 1962) in index order. After each round the stopping criterion is asked
whether to stop, and the state may be checkpointed. Hence:

- the values depend only on ``random_state`` and the number of rounds, never on ``n_jobs`` or the
  joblib backend (loky, threads, Ray);
- a run resumed from a checkpoint ends with exactly the values of an uninterrupted run.

Every method reports values, standard errors (of the Monte Carlo mean) and sample counts per
point.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from datavalue._core.checkpoint import load_checkpoint, save_checkpoint
from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.fingerprint import digest_json
from datavalue._core.parallel import joblib_backend, progress_bar, watched
from datavalue._core.result import jsonable
from datavalue._core.validation import N_JOBS, Interval, Options
from datavalue.valuation.base import FitData, FitFailures, Valuator, default_model
from datavalue.valuation.sampling import (
    SAMPLERS,
    BanzhafWeight,
    BetaWeight,
    Game,
    MSRSampler,
    Sampler,
    SemivalueWeight,
    ShapleyWeight,
    Truncation,
    make_sampler,
)
from datavalue.valuation.stopping import (
    MaxSamples,
    RunProgress,
    StoppingCriterion,
    default_stopping,
)
from datavalue.valuation.utility import METRIC_NAMES, Utility, default_metric

__all__ = ["TMCShapley", "BetaShapley", "DataBanzhaf", "SemivalueValuation", "run_semivalue"]


# ---------------------------------------------------------------------- running statistics
class _Welford:
    """Running mean and sum of squared deviations per point (Welford 1962), masked updates."""

    def __init__(self, n: int) -> None:
        self.count = np.zeros(n, dtype=np.int64)
        self.mean = np.zeros(n)
        self.m2 = np.zeros(n)

    def update(self, x: np.ndarray, mask: np.ndarray) -> None:
        self.count += mask
        delta = np.where(mask, x - self.mean, 0.0)
        self.mean += np.where(mask, delta / np.maximum(self.count, 1), 0.0)
        self.m2 += np.where(mask, delta * (x - self.mean), 0.0)

    def variance(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 1, self.m2 / (self.count - 1), np.nan)

    def stderr(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.sqrt(self.variance() / np.maximum(self.count, 1))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}count": self.count, f"{prefix}mean": self.mean, f"{prefix}m2": self.m2}

    def load(self, arrays: dict[str, np.ndarray], prefix: str) -> None:
        """Restore from a checkpoint; ValueError if the arrays cannot be a running state."""
        n = self.count.shape[0]
        count, mean, m2 = (np.asarray(arrays[f"{prefix}{k}"]) for k in ("count", "mean", "m2"))
        for name, a in (("count", count), ("mean", mean), ("m2", m2)):
            if a.shape != (n,) or not np.issubdtype(a.dtype, np.number):
                raise ValueError(f"'{prefix}{name}' has shape {a.shape} and dtype {a.dtype}, "
                                 f"expected ({n},) numbers")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"'{prefix}{name}' holds NaN or infinite entries")
        if np.any(count < 0) or np.any(count != np.round(count)) or np.any(m2 < 0):
            raise ValueError(f"'{prefix}count' or '{prefix}m2' holds negative or fractional "
                             "entries")
        self.count = count.astype(np.int64)
        self.mean = mean.astype(np.float64)
        self.m2 = m2.astype(np.float64)


class _Estimates:
    """Per-point estimates from the samples: plain means, or the MSR difference of means."""

    def __init__(self, n: int, msr: bool) -> None:
        self.msr = msr
        self.main = _Welford(n)
        self.out = _Welford(n) if msr else None

    def update(self, contrib: np.ndarray, mask: np.ndarray) -> None:
        self.main.update(contrib, mask)
        if self.out is not None:
            self.out.update(contrib, ~mask)

    def values(self) -> np.ndarray:
        if self.out is None:
            return self.main.mean.copy()
        return self.main.mean - self.out.mean

    def stderr(self) -> np.ndarray:
        if self.out is None:
            return self.main.stderr()
        ci, co = self.main.count, self.out.count
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.main.variance() / np.maximum(ci, 1)
                           + self.out.variance() / np.maximum(co, 1))

    def counts(self) -> np.ndarray:
        return self.main.count + (0 if self.out is None else self.out.count)

    def arrays(self) -> dict[str, np.ndarray]:
        out = self.main.arrays("in_")
        if self.out is not None:
            out.update(self.out.arrays("out_"))
        return out

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.main.load(arrays, "in_")
        if self.out is not None:
            self.out.load(arrays, "out_")


# ---------------------------------------------------------------------- the engine
def sample_seed(entropy: int, k: int) -> int:
    """Seed of sample ``k``: the k-th child of ``SeedSequence(entropy)`` (what ``spawn`` gives),
    computed directly so any sample can be drawn without drawing the ones before it."""
    child = np.random.SeedSequence(entropy, spawn_key=(k,))
    return int(child.generate_state(1, dtype=np.uint32)[0])


def _evaluate_samples(
    game: Game, sampler: Sampler, seeds: list[int]
) -> tuple[np.ndarray, np.ndarray, int, int, FitFailures]:
    """Evaluate a block of samples in one worker: stacked contributions and masks, utility
    calls, truncated steps and the fits that failed."""
    before = FitFailures.of(game)
    contribs, masks, calls, skipped = [], [], 0, 0
    for seed in seeds:
        c, m, nc, ns = sampler.sample(game, seed)
        contribs.append(c)
        masks.append(m)
        calls += nc
        skipped += ns
    return np.stack(contribs), np.stack(masks), calls, skipped, FitFailures.of(game).since(before)


@dataclass
class RunOutcome:
    values: np.ndarray
    stderr: np.ndarray
    counts: np.ndarray
    status: str
    reason: str | None
    n_samples: int
    n_updates: int
    n_truncated: int
    elapsed: float
    failures: FitFailures


@contextlib.contextmanager
def _parallel(kwargs: dict[str, Any]) -> Iterator[tuple[Parallel, bool]]:
    """A joblib ``Parallel`` with generator output if the active backend supports it; the
    flag says whether it does."""
    try:
        parallel, streaming = Parallel(**kwargs), True
    except ValueError as exc:
        if "return_as" not in str(exc):
            raise
        rest = {k: v for k, v in kwargs.items() if k not in ("return_as", "pre_dispatch")}
        parallel, streaming = Parallel(**rest), False
    with parallel:
        yield parallel, streaming


def run_semivalue(
    game: Game,
    sampler: Sampler,
    stopping: StoppingCriterion,
    *,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    backend: str | None = None,
    ray_address: str | None = None,
    round_size: int | None = None,
    checkpoint: str | None = None,
    resume: bool = False,
    checkpoint_every: float = 60.0,
    config: str = "",
    progress: bool | None = None,
    desc: str = "semivalue",
) -> RunOutcome:
    """Run the Monte Carlo loop until ``stopping`` fires; see the module docstring.

    ``sampler`` must already be bound to its weight (``sampler.bind(weight, truncation)``).
    """
    n = game.n_players
    per_task = sampler.samples_per_task
    # Rounds are whole tasks (MSR draws its subsets 32 to a task).
    round_size = -(-(round_size or 8 * per_task) // per_task) * per_task
    estimates = _Estimates(n, isinstance(sampler, MSRSampler))
    entropy = np.random.SeedSequence(random_state).entropy
    n_samples = n_updates = n_truncated = 0
    failures = FitFailures()
    elapsed_before = 0.0
    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint, expected_config=config)
        if loaded is not None and not resume:
            raise InvalidParameterError(
                f"The 'checkpoint' file {checkpoint!r} already exists: pass resume=True "
                "(--resume) to continue that run, or delete the file to start over."
            )
        if loaded is not None:
            header, arrays = loaded
            try:
                estimates.load(arrays)
                entropy = int(header["entropy"])
                n_samples, n_updates = int(header["n_samples"]), int(header["n_updates"])
                n_truncated, elapsed_before = int(header["n_truncated"]), float(header["elapsed"])
                failures = FitFailures(int(header.get("n_failed_fits", 0)),
                                       int(header.get("n_fits", 0)),
                                       header.get("first_error"))
                if min(n_samples, n_updates, n_truncated, failures.failed) < 0:
                    raise ValueError("negative sample counts")
                if header.get("stopping_rule") == str(stopping):
                    stopping.load_state_dict(header["stopping"])
            except (KeyError, ValueError, TypeError) as exc:
                raise InvalidParameterError(
                    f"The 'checkpoint' file {checkpoint!r} is damaged or not a checkpoint of this "
                    f"run ({type(exc).__name__}: {exc}); delete it to start over."
                ) from exc

    def snapshot() -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The state at the end of the last complete round: what a checkpoint holds. A resumed
        run starts a new round there, so its rounds (and stopping checks) are those of an
        uninterrupted run; a state saved mid-round would shift them."""
        if checkpoint is None:
            return None
        header = {
            "config": config,
            "method": desc,
            "entropy": str(entropy),
            "n_samples": n_samples,
            "n_updates": n_updates,
            "n_truncated": n_truncated,
            "n_failed_fits": failures.failed,
            "n_fits": failures.fitted,
            "first_error": failures.first_error,
            "elapsed": elapsed_before + time.perf_counter() - start,
            "stopping_rule": str(stopping),
            "stopping": jsonable(stopping.state_dict()),
        }
        return header, {k: v.copy() for k, v in estimates.arrays().items()}

    def save(state: tuple[dict[str, Any], dict[str, np.ndarray]] | None) -> None:
        if checkpoint is not None and state is not None:
            save_checkpoint(checkpoint, *state)

    start = time.perf_counter()
    last_save = start
    boundary = snapshot()

    def current() -> RunProgress:
        return RunProgress(
            n_samples=n_samples,
            n_updates=n_updates,
            elapsed=elapsed_before + time.perf_counter() - start,
            values=estimates.values(),
            stderr=estimates.stderr(),
            counts=estimates.counts(),
        )

    parallel_kwargs: dict[str, Any] = {"return_as": "generator", "pre_dispatch": "n_jobs"}
    if n_jobs is not None:
        parallel_kwargs["n_jobs"] = n_jobs
    stopped = n_samples > 0 and stopping(current())
    # An exact upper bound on the samples drawn: the last round (and task) is cut short there,
    # and the criterion is checked at its end as at the end of every whole round.
    limit = stopping.max_samples()
    if limit is not None and n_samples > limit:
        # The checkpoint already holds more samples than this run may draw: its values are not
        # those of a run with this budget, and samples cannot be taken back out of the sums.
        raise InvalidParameterError(
            f"The 'checkpoint' file {checkpoint!r} holds {n_samples} samples, more than this "
            f"run's budget of {limit} ({stopping}): a finished run cannot be shortened. Resume "
            f"with a budget of at least {n_samples}, or give another checkpoint file to start "
            "over with the smaller budget.")

    def stream(first: int) -> Any:
        """Tasks from sample ``first`` on, until a round's check says stop (or the bound).

        Workers never wait at the end of a round: joblib takes the next task from here as soon
        as one finishes. Results still come back, and are folded in, in sample order; tasks
        dispatched after the stopping round are computed and thrown away (at most one per
        worker), so the values do not depend on n_jobs."""
        k = first
        task = watched(_evaluate_samples)
        while not stopped and (limit is None or k < limit):  # reads the latest round's verdict
            m = per_task if limit is None else min(per_task, limit - k)
            yield delayed(task)(
                game, sampler, [sample_seed(entropy, j) for j in range(k, k + m)]
            )
            k += m

    def results(parallel: Parallel, streaming: bool, first: int) -> Any:
        if streaming:
            yield from parallel(stream(first))
            return
        tasks = stream(first)  # a backend without generator output (Ray): round by round
        while batch := list(itertools.islice(tasks, round_size // per_task)):
            yield from parallel(batch)

    try:
        # One BLAS thread in this process (joblib already limits its workers): utility calls
        # fit small models, where threads cost more than they bring (measured: a
        # LogisticRegression fit on 8 points took 6 ms single-threaded and 190 ms with default
        # threading on a loaded 2-core machine).
        with joblib_backend(backend, ray_address), \
                _parallel(parallel_kwargs) as (parallel, streaming), \
                progress_bar(100, desc, progress, unit="%") as bar, \
                threadpool_limits(limits=1, user_api="blas"):
            while not stopped:
                in_round = 0
                for contribs, masks, calls, skipped, failed in results(parallel, streaming,
                                                                       n_samples):
                    if stopped:
                        continue  # speculative work past the last round: discarded
                    for c, m in zip(contribs, masks, strict=True):
                        estimates.update(c, m)
                    n_updates += calls
                    n_truncated += skipped
                    failures = failures + failed
                    n_samples += len(contribs)
                    in_round += len(contribs)
                    if in_round < round_size and (limit is None or n_samples < limit):
                        continue
                    in_round = 0
                    prog = current()
                    stopped = stopping(prog)
                    bar.n = int(100 * stopping.completion(prog))
                    bar.set_postfix(samples=n_samples, fits=n_updates, refresh=False)
                    bar.refresh()
                    if checkpoint is not None:
                        boundary = snapshot()
                        if time.perf_counter() - last_save >= checkpoint_every or stopped:
                            save(boundary)
                            last_save = time.perf_counter()
                if not stopped:  # the bound was reached without the criterion firing
                    limit = None
    except KeyboardInterrupt:
        save(boundary)  # the last complete round; resume continues from there
        raise
    prog = current()
    return RunOutcome(
        values=prog.values,
        stderr=prog.stderr,
        counts=prog.counts,
        status=stopping.status,
        reason=stopping.reason,
        n_samples=n_samples,
        n_updates=n_updates,
        n_truncated=n_truncated,
        elapsed=prog.elapsed,
        failures=failures,
    )


# ---------------------------------------------------------------------- estimators
_COMMON_CONSTRAINTS: dict[str, list] = {
    "model": ["estimator", None],
    "metric": [METRIC_NAMES, "callable", None],
    "sampler": [Options(SAMPLERS), Sampler],
    "stopping": [StoppingCriterion, None],
    "max_permutations": [Interval(int, 1, None), None],
    "max_subsets": [Interval(int, 1, None), None],
    "n_jobs": N_JOBS,
    "backend": [Options({"loky", "threading", "multiprocessing", "ray"}), None],
    "ray_address": [str, None],
    "random_state": ["random_state"],
    "checkpoint": [str, os.PathLike, None],
    "resume": ["boolean"],
    "checkpoint_every": [Interval(float, 0, None)],
    "round_size": [Interval(int, 1, None), None],
    "warm_start": ["boolean"],
    "cache_size": [Interval(int, 0, None)],
    "catch_errors": ["boolean"],
    "progress": ["boolean", None],
    "truncation_tol": [Interval(float, 0, None, closed="neither"), None],
    "truncation_patience": [Interval(int, 1, None)],
    "alpha": [Interval(float, 0, None, closed="neither")],
    "beta": [Interval(float, 0, None, closed="neither")],
}

# Parameters that change how a run executes but not what it computes: excluded from the
# checkpoint's configuration fingerprint, so a run may resume with more workers or on Ray.
# Stopping rules are excluded too: samples depend only on the seed and their index, so a
# finished run can be extended with a larger budget and still equal an uninterrupted run.
_EXECUTION_PARAMS = {"n_jobs", "backend", "ray_address", "checkpoint", "resume",
                     "checkpoint_every", "progress", "stopping", "max_permutations",
                     "max_subsets", "round_size"}


class SemivalueValuation(Valuator):
    """Shared machinery of the Monte Carlo semivalue methods; use a subclass.

    Subclasses define ``_weight()`` and the default sampler.
    """

    method_name: ClassVar[str] = "semivalue"
    _parameter_constraints: ClassVar[dict[str, list]] = _COMMON_CONSTRAINTS

    def _weight(self) -> SemivalueWeight:  # pragma: no cover - abstract
        raise NotImplementedError

    def _truncation(self, game: Game) -> Truncation | None:
        tol = getattr(self, "truncation_tol", None)
        if tol is None:
            return None
        full = game(np.arange(game.n_players))
        return Truncation(full, float(tol), int(getattr(self, "truncation_patience", 5)))

    def _stopping(self, n: int) -> StoppingCriterion:
        stop = self.stopping
        budget = getattr(self, "max_permutations", getattr(self, "max_subsets", None))
        if budget is not None:
            cap = MaxSamples(budget)
            stop = cap if stop is None else stop | cap
        return default_stopping(n) if stop is None else stop

    def _config(self, data_fingerprint: str) -> str:
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if k not in _EXECUTION_PARAMS}
        return digest_json([self.method_name, jsonable(params), data_fingerprint], length=16)

    def fit(self, x_train: Any, y_train: Any, x_valid: Any = None, y_valid: Any = None):
        """Value every training point by its weighted marginal contribution to the validation
        score of ``model`` (see the class docstring)."""
        start = time.perf_counter()
        self._validate_params()
        if self.model is not None:
            self._check_model(self.model)
        data = self._check_data(x_train, y_train, x_valid, y_valid, model=self.model)
        model = default_model(data.task, data) if self.model is None else self.model
        utility = Utility.from_data(
            model, data, self.metric or default_metric(data.task),
            catch_errors=self.catch_errors, cache_size=self.cache_size,
            warm_start=self.warm_start,
        )
        return self._fit_game(utility, data, start)

    def fit_utility(self, game: Game):
        """Value the players of any game: a :class:`~datavalue.Utility` you built yourself, or
        any object with ``n_players``, ``__call__(indices)`` and ``empty_score()``."""
        start = time.perf_counter()
        self._validate_params()
        n = getattr(game, "n_players", None)
        if not isinstance(n, int | np.integer) or n < 1 or not callable(game):
            raise InvalidParameterError(
                "The 'game' must have a positive int 'n_players' and be callable on index arrays."
            )
        fake = FitData(np.zeros((int(n), 1)), np.zeros(int(n)), None, None, "regression", None)
        fake.fingerprint = f"game:{type(game).__name__}:{n}"
        return self._fit_game(game, fake, start)

    def _fit_game(self, game: Game, data: FitData, start: float):
        sampler = make_sampler(self.sampler)
        sampler.bind(self._weight(), self._truncation(game))
        return self._run(game, sampler, data, start)

    def _run(self, game: Game, sampler: Sampler, data: FitData, start: float,
             extra: dict[str, Any] | None = None):
        """Run the engine with this estimator's settings; store ``values_`` and ``result_``."""
        if hasattr(game, "check_learns"):  # a Utility: refuse a model that learns nothing
            game.check_learns()
        outcome = run_semivalue(
            game, sampler, self._stopping(game.n_players),
            random_state=self.random_state, n_jobs=self.n_jobs, backend=self.backend,
            ray_address=self.ray_address, round_size=self.round_size,
            checkpoint=None if self.checkpoint is None else str(self.checkpoint),
            resume=self.resume, checkpoint_every=float(self.checkpoint_every),
            config=self._config(data.fingerprint), progress=self.progress,
            desc=self.method_name,
        )
        self.n_samples_ = outcome.n_samples
        self.stopping_reason_ = outcome.reason
        self._make_result(
            outcome.values, data, start, stderr=outcome.stderr, counts=outcome.counts,
            status=outcome.status,
            extra={
                "n_samples": outcome.n_samples,
                "n_utility_calls": outcome.n_updates,
                "n_truncated_steps": outcome.n_truncated,
                "stopped_by": outcome.reason,
                "weight": sampler.weight.name,
                "sampler": sampler.name,
                "run_time_including_resumed": outcome.elapsed,
                **outcome.failures.check(type(self).__name__),
                **(extra or {}),
            },
        )
        return self


def _common_init(self: SemivalueValuation, **kw: Any) -> None:
    for k, v in kw.items():
        setattr(self, k, v)


class TMCShapley(SemivalueValuation):
    """Truncated Monte Carlo Data Shapley (Ghorbani & Zou, "Data Shapley: Equitable Valuation
    of Data for Machine Learning", ICML 2019, Algorithm 1).

    Each sample walks a random permutation of the training set, fitting ``model`` on every
    growing prefix; a point's sample is the change in validation score when it is added. Once
    the prefix scores within ``truncation_tol`` (relative) of the full-data score for
    ``truncation_patience`` consecutive steps, the rest of the permutation gets marginal 0.
    With ``truncation_tol=None`` this is plain permutation Monte Carlo Shapley
    (Castro et al. 2009).

    Parameters
    ----------
    model : estimator or None
        Any scikit-learn compatible estimator (default: logistic / ridge regression).
    metric : str or callable or None
        Validation score (default accuracy / r2), see :data:`datavalue.METRICS`.
    truncation_tol : float or None
        Relative tolerance of the truncation rule (paper: performance tolerance; default 0.01).
    truncation_patience : int
        Consecutive steps within tolerance before truncating (default 5).
    sampler : {"permutation", "antithetic"} or Sampler
    stopping : StoppingCriterion or None
        When to stop (default: the paper's relative-change rule, 5% over 100 permutations,
        capped at max(500, 10 n) permutations). See :mod:`datavalue.valuation.stopping`.
    max_permutations : int or None
        Cap on the number of permutations, combined with ``stopping`` by "or".
    n_jobs, backend, ray_address :
        joblib workers and backend; ``backend="ray"`` runs on the Ray cluster at
        ``ray_address`` (started with ``ray start --head``). Values do not depend on them.
    random_state : int or None
    checkpoint : path or None
        Save the running state there (atomically, every ``checkpoint_every`` seconds and at the
        end); with ``resume=True`` an existing checkpoint is continued.
    round_size : int or None
        Permutations per round between stopping checks (default 8). Part of the result's
        definition: changing it changes where a run may stop.
    warm_start : bool
        Warm-start the model along each permutation (estimators with a ``warm_start``
        parameter): much faster for iterative solvers, values then depend on the solver's
        tolerance along the path.
    cache_size, catch_errors, progress :
        See :class:`datavalue.Utility`.
    """

    method_name: ClassVar[str] = "tmc-shapley"

    def __init__(
        self, model: Any = None, metric: str | Callable | None = None, *,
        truncation_tol: float | None = 0.01, truncation_patience: int = 5,
        sampler: str | Sampler = "permutation", stopping: StoppingCriterion | None = None,
        max_permutations: int | None = None, n_jobs: int | None = None, backend: str | None = None,
        ray_address: str | None = None, random_state: int | None = 0,
        checkpoint: str | None = None, resume: bool = False, checkpoint_every: float = 60.0,
        round_size: int | None = None, warm_start: bool = False, cache_size: int = 0,
        catch_errors: bool = False, progress: bool | None = None,
    ) -> None:
        _common_init(**{k: v for k, v in locals().items() if k != "__class__"})

    def _weight(self) -> SemivalueWeight:
        return ShapleyWeight()


class BetaShapley(SemivalueValuation):
    """Beta Shapley (Kwon & Zou, "Beta Shapley: a Unified and Noise-reduced Data Valuation
    Framework for Machine Learning", AISTATS 2022).

    The semivalue with weight w(k) = B(k + β, n − 1 − k + α) / B(α, β) on subsets of size k
    (Eq. 3); Beta(16, 1), the paper's recommendation for finding noisy labels, puts more weight on
    small subsets, where one point changes the model most. Estimated from permutations with
    importance weights n C(n−1, k) w(k) (or uniform subsets with ``sampler="uniform"``).
    Parameters as :class:`TMCShapley` (truncation is off by default here), plus ``alpha`` and
    ``beta``.
    """

    method_name: ClassVar[str] = "beta-shapley"

    def __init__(
        self, model: Any = None, metric: str | Callable | None = None, *,
        alpha: float = 16.0, beta: float = 1.0, truncation_tol: float | None = None,
        truncation_patience: int = 5, sampler: str | Sampler = "permutation",
        stopping: StoppingCriterion | None = None, max_permutations: int | None = None,
        n_jobs: int | None = None, backend: str | None = None, ray_address: str | None = None,
        random_state: int | None = 0, checkpoint: str | None = None, resume: bool = False,
        checkpoint_every: float = 60.0, round_size: int | None = None, warm_start: bool = False,
        cache_size: int = 0, catch_errors: bool = False, progress: bool | None = None,
    ) -> None:
        _common_init(**{k: v for k, v in locals().items() if k != "__class__"})

    def _weight(self) -> SemivalueWeight:
        return BetaWeight(float(self.alpha), float(self.beta))


class DataBanzhaf(SemivalueValuation):
    """Data Banzhaf (Wang & Jia, "Data Banzhaf: A Robust Data Valuation Framework for Machine
    Learning", AISTATS 2023): the semivalue with uniform weight 1/2^(n−1), the most robust to
    noise in the utility. Default estimator: maximum sample reuse (MSR, Sec. 4.2), one utility
    call per random subset, every call informing every point. Parameters as
    :class:`TMCShapley` (no truncation), with ``max_subsets`` as the cap on samples.
    """

    method_name: ClassVar[str] = "data-banzhaf"

    def __init__(
        self, model: Any = None, metric: str | Callable | None = None, *,
        sampler: str | Sampler = "msr", stopping: StoppingCriterion | None = None,
        max_subsets: int | None = None, n_jobs: int | None = None, backend: str | None = None,
        ray_address: str | None = None, random_state: int | None = 0,
        checkpoint: str | None = None, resume: bool = False, checkpoint_every: float = 60.0,
        round_size: int | None = None, warm_start: bool = False, cache_size: int = 0,
        catch_errors: bool = False, progress: bool | None = None,
    ) -> None:
        _common_init(**{k: v for k, v in locals().items() if k != "__class__"})

    def _weight(self) -> SemivalueWeight:
        return BanzhafWeight()

    def _stopping(self, n: int) -> StoppingCriterion:
        if self.stopping is None and self.max_subsets is None:
            # MSR samples are single fits: the relative-change window is in samples.
            from datavalue.valuation.stopping import RelativeChange

            return RelativeChange(0.05, window=50 * n) | MaxSamples(max(5000, 200 * n))
        return super()._stopping(n)

