"""Agreement with actual retraining: leave-one-out values, and attribution scores judged by the
linear datamodeling score (Park et al. 2023, Eq. 4) and leave-one-out correlation."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidDataError
from datavalue._core.result import ValuationResult
from datavalue._core.validation import check_seed
from datavalue.evaluate._checks import _check_int, _check_values


# ---------------------------------------------------------------------------- LOO agreement
def loo_agreement(values: Any, reference: Any) -> dict[str, float]:
    """Correlation of values with reference values, e.g. leave-one-out by actual retraining.

    Parameters
    ----------
    values, reference : array-like of shape (n_train,) or ValuationResult

    Returns
    -------
    dict
        ``pearson``, ``spearman``, ``kendall`` (tau-b) and ``n``. A correlation with a
        constant array is undefined and reported as NaN (LOO with accuracy is often all zeros:
        use ``metric="neg_log_loss"``).
    """
    from scipy import stats

    v = _check_values(values)
    r = _check_values(reference, "reference", n=v.size, n_name="the length of 'values'")
    if v.size < 2:
        raise InvalidDataError("Correlations need at least two values.")
    if np.ptp(v) == 0 or np.ptp(r) == 0:
        nan = float("nan")
        return {"pearson": nan, "spearman": nan, "kendall": nan, "n": int(v.size)}
    return {
        "pearson": float(stats.pearsonr(v, r)[0]),
        "spearman": float(stats.spearmanr(v, r)[0]),
        "kendall": float(stats.kendalltau(v, r)[0]),
        "n": int(v.size),
    }


# ---------------------------------------------------------------------------- attributions
def _check_scores(scores: Any) -> np.ndarray:
    """An attribution matrix ``(n_test, n_train)`` (a 1-D value vector becomes one row)."""
    if isinstance(scores, ValuationResult):
        scores = scores.values
    arr = np.asarray(scores, dtype=np.float64) if not hasattr(scores, "detach") else \
        scores.detach().cpu().numpy().astype(np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InvalidDataError(
            "'scores' must be an attribution matrix (n_test, n_train) or a value vector "
            f"(n_train,) with n_train >= 2; got shape {np.shape(scores)}.")
    if not np.all(np.isfinite(arr)):
        raise InvalidDataError(
            f"'scores' contains {int((~np.isfinite(arr)).sum())} NaN or infinite values.")
    return arr


def _aligned_outputs(scores: np.ndarray, outputs: np.ndarray, goal: str) -> np.ndarray:
    """Test outputs as "goodness" (``-loss`` for a loss), one column per row of ``scores``: a
    value vector (one row) is compared with the mean output over the test examples."""
    good = outputs if goal == "maximize" else -outputs
    if scores.shape[0] == 1 and good.shape[1] != 1:
        return good.mean(1, keepdims=True)
    if good.shape[1] != scores.shape[0]:
        raise InvalidDataError(
            f"'scores' has {scores.shape[0]} rows (test examples) but the retrained models "
            f"give {good.shape[1]} outputs; they must be the same test examples.")
    return good


def _rank_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks along axis 0 (ties share their mean rank, as Spearman's rho wants)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=0)


def _columnwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``a`` with the same column of ``b`` (NaN where
    either is constant)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1.0), np.nan)


def lds(scores: Any, retrain: Any, *, alpha: float = 0.5, n_subsets: int = 100,
        n_seeds: int = 1, random_state: int = 0, goal: str | None = None,
        cache: str | os.PathLike | None = None, n_jobs: int | None = None,
        backend: str | None = None, ray_address: str | None = None,
        progress: bool | None = None) -> dict[str, Any]:
    """Linear datamodeling score (Park et al. 2023, Sec. 2.2, Eq. 4): how well the sums of the
    attribution scores over random training subsets rank the outputs of models actually
    retrained on those subsets.

    For each test example ``t``: the Spearman correlation over subsets ``S_j`` between
    ``sum_{i in S_j} scores[t, i]`` and the retrained model's output on ``t`` (its "goodness":
    ``-loss`` for a loss, the margin itself), then the mean over test examples. 1 for an
    attribution that is exactly an additive model of the outputs; about 0 for random scores.

    Parameters
    ----------
    scores : array-like of shape (n_test, n_train), or (n_train,)
        Positive = helpful (every attribution of datavalue). A value vector is one row,
        compared with the mean output over the test examples.
    retrain : Retrain, callable or SubsetOutputs
        A :class:`~datavalue.evaluate.retrain.Retrain` (or ``(train_indices, seed) -> (n_test,)``
        outputs with ``goal``), run by :func:`~datavalue.evaluate.retrain.subset_outputs` with the
        options below; or ground truth already computed (the options are then not used).
    alpha : float
        Fraction of the training set in each subset (0.5, as in TRAK and dattri).
    n_subsets : int
        Number of random subsets (100).
    n_seeds : int
        Retrainings per subset, outputs averaged (reduces the training noise of networks).
    random_state : int
        Seed of the subsets and of the retrainings.
    goal : {"minimize", "maximize"} or None
        For a plain callable: whether its output is a loss or a score.
    cache : path or None
        A ``.npz`` file keeping the retrained outputs: resumed after an interruption, reused by
        later calls (e.g. for another score matrix), refused if made with other settings.
    n_jobs, backend, ray_address, progress
        Parallel retraining (joblib; ``backend="ray"`` for a Ray cluster at ``ray_address``,
        e.g. ``"127.0.0.1:6379"``).

    Returns
    -------
    dict
        ``lds`` (mean over test examples with a defined correlation), ``per_test``
        (``(n_test,)``, NaN where the outputs or the predictions are constant), ``n_subsets``,
        ``alpha``, ``n_seeds``.
    """
    from datavalue.evaluate.retrain import SubsetOutputs, subset_outputs

    arr = _check_scores(scores)
    truth = retrain if isinstance(retrain, SubsetOutputs) else subset_outputs(
        retrain, arr.shape[1], alpha=alpha, n_subsets=n_subsets, n_seeds=n_seeds,
        random_state=random_state, goal=goal, cache=cache, n_jobs=n_jobs, backend=backend,
        ray_address=ray_address, progress=progress)
    if truth.masks.shape[1] != arr.shape[1]:
        raise InvalidDataError(
            f"'scores' has {arr.shape[1]} columns (training examples) but the subsets are of "
            f"{truth.masks.shape[1]} training examples.")
    good = _aligned_outputs(arr, truth.outputs, truth.goal)
    predicted = truth.masks.astype(np.float64) @ arr.T  # (m, n_test)
    per_test = _columnwise_corr(_rank_rows(predicted), _rank_rows(good))
    defined = per_test[np.isfinite(per_test)]
    return {"lds": float(defined.mean()) if defined.size else float("nan"),
            "per_test": per_test, "n_subsets": int(truth.masks.shape[0]),
            "alpha": float(truth.alpha), "n_seeds": int(truth.n_seeds)}


def loo_correlation(scores: Any, retrain: Any, *, train_indices: Any = None,
                    n_points: int = 100, n_seeds: int = 1, random_state: int = 0,
                    goal: str | None = None, cache: str | os.PathLike | None = None,
                    n_jobs: int | None = None, backend: str | None = None,
                    ray_address: str | None = None,
                    progress: bool | None = None) -> dict[str, Any]:
    """Agreement of attribution scores with actual leave-one-out retraining.

    The actual effect of removing training row ``i`` on test example ``t`` is the change of
    its output's goodness: ``loss(t; without i) - loss(t; all)`` for a loss, ``margin(t;
    all) - margin(t; without i)`` for a margin (positive = ``i`` helped ``t``, the sign of
    every attribution). Reported: the Pearson correlation over the removed rows for each test
    example and its mean (as dattri reports it), and over all (test, row) pairs at once.

    Parameters
    ----------
    scores : array-like of shape (n_test, n_train), or (n_train,)
        A value vector is compared with the change of the mean output over the test examples.
    retrain : Retrain, callable or LOOOutputs
        As in :func:`lds` (ground truth from :func:`~datavalue.evaluate.retrain.loo_outputs`).
    train_indices : array-like of int or None
        The rows removed one at a time; None: ``n_points`` rows drawn with ``random_state``
        (all rows if there are fewer).
    n_points, n_seeds, random_state, goal, cache, n_jobs, backend, ray_address, progress
        As in :func:`lds`; ``n_seeds`` retrainings of every model with the same seeds.

    Returns
    -------
    dict
        ``pearson`` (mean over test examples), ``per_test``, ``overall`` (all pairs),
        ``spearman_overall``, ``train_indices``, ``actual`` (``(n_test, n_removed)`` changes).
    """
    from scipy import stats

    from datavalue.evaluate.retrain import LOOOutputs, loo_outputs

    arr = _check_scores(scores)
    n = arr.shape[1]
    if isinstance(retrain, LOOOutputs):
        truth = retrain
    else:
        if train_indices is None:
            n_points = _check_int(n_points, "n_points", 2)
            rng = np.random.default_rng(check_seed(random_state))
            train_indices = np.sort(rng.choice(n, min(n_points, n), replace=False))
        truth = loo_outputs(retrain, train_indices, n, n_seeds=n_seeds,
                            random_state=random_state, goal=goal, cache=cache, n_jobs=n_jobs,
                            backend=backend, ray_address=ray_address, progress=progress)
    removed = truth.removed
    if truth.n_train is not None and truth.n_train != n:
        raise InvalidDataError(
            f"'scores' has {n} columns (training examples) but the leave-one-out retraining "
            f"had {truth.n_train} training rows: give one score per training row.")
    if removed.max() >= n:
        raise InvalidDataError(
            f"The removed rows go up to {int(removed.max())}; 'scores' has {n} columns.")
    change = truth.outputs - truth.full[None, :]  # (r, n_test)
    actual = _aligned_outputs(arr, -change, truth.goal).T  # goodness lost by removal
    predicted = arr[:, removed]
    per_test = _columnwise_corr(predicted.T, actual.T)
    defined = per_test[np.isfinite(per_test)]
    flat_p, flat_a = predicted.ravel(), actual.ravel()
    constant = np.ptp(flat_p) == 0 or np.ptp(flat_a) == 0
    return {"pearson": float(defined.mean()) if defined.size else float("nan"),
            "per_test": per_test,
            "overall": float("nan") if constant else float(stats.pearsonr(flat_p, flat_a)[0]),
            "spearman_overall": float("nan") if constant
            else float(stats.spearmanr(flat_p, flat_a)[0]),
            "train_indices": removed, "actual": actual}
