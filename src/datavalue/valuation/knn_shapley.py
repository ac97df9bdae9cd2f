"""KNN-Shapley: exact Shapley values of the K-nearest-neighbour classifier (Jia et al., 2019).

For one validation point ``(x, y)``, the utility of a training subset ``S`` is the unweighted
K-NN "likelihood of the right label" (Jia et al. 2019, Eq. 6)

.. math:: U(S) = \\frac{1}{K} \\sum_{k=1}^{\\min(K, |S|)} 1[y_{\\alpha_k(S)} = y], \\qquad U(\\emptyset) = 0,

where :math:`\\alpha_k(S)` is the k-th nearest point of ``S`` to ``x``. Its Shapley values have a
closed form (Theorem 1): with all training points sorted by distance, :math:`\\alpha_1` nearest
to :math:`\\alpha_N` farthest, and :math:`m_i = 1[y_{\\alpha_i} = y]`,

.. math::
    s_{\\alpha_N} = \\frac{m_N}{N} , \\qquad
    s_{\\alpha_i} = s_{\\alpha_{i+1}} + \\frac{m_i - m_{i+1}}{K} \\frac{\\min(K, i)}{i}.

The value of a training point is the mean of :math:`s` over the validation points (the
Shapley value of the mean utility, by linearity). The paper states the base case for
:math:`K \\le N`; the general one, used here, is :math:`s_{\\alpha_N} = m_N \\min(K, N) / (K N)`
(the farthest point counts only when fewer than K others are present, which happens for a
fraction :math:`\\min(K, N) / N` of the coalition sizes), so that ``n_neighbors > n_train``
gives the additive answer :math:`m_i / K`.

Unrolled, :math:`s_{\\alpha_i} = \\sum_{j \\ge i} (m_j - m_{j+1})\\, c_j` with
:math:`c_j = \\min(K, j) / (K j)` and :math:`m_{N+1} = 0`: a reversed cumulative sum along the
sorted order. The implementation never loops over training points; per block of validation
points it computes a distance block, sorts each row, and does that cumulative sum.

Ties: of two equally distant training points, the one with the lower index is nearer (the
order is the stable argsort of the distances). "Equally distant" refers to the per-pair
reference distances of :func:`_reference_distances`; the fast BLAS distances only pre-sort, and
near-ties are settled with the reference values (see :func:`_argsort_rows`). So exact
duplicates always tie and the values do not depend on the block size.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from datavalue._core.exceptions import InvalidDataError
from datavalue._core.parallel import parallel_map
from datavalue._core.validation import N_JOBS, PREPROCESSOR, Interval, Options, rescale_if_extreme
from datavalue.data.fitdata import imputes as _imputes
from datavalue.valuation.base import Valuator

__all__ = ["KNNShapley", "DISTANCES"]

#: Distances accepted by :class:`KNNShapley` (its ``distance`` parameter): "euclidean" and "cosine" with one GEMM per
#: block, "manhattan" and "chebyshev" with :func:`scipy.spatial.distance.cdist`.
DISTANCES = ("euclidean", "cosine", "manhattan", "chebyshev")

# Validation points per task (a contiguous group of validation rows). The grouping depends on
# n_valid only -- never on n_jobs or batch_size -- and every group sums its rows one at a time,
# so the values are bit-identical for any n_jobs and any batch_size. At most _MAX_GROUPS groups,
# so the per-group partial sums (2 x n_train floats each) stay small.
_MAX_GROUP_ROWS = 256
_MIN_GROUPS = 8
_MAX_GROUPS = 64
# Cells (validation x training) per block when batch_size is None: about 18 MB of buffers at
# ~35 bytes per cell, so a block stays in cache between the passes over it (measured: 20-35%
# faster than 256-row blocks at n_train = 50,000) and the memory use is small and bounded.
_BLOCK_CELLS = 1 << 19
# Below this many features the distance GEMM is a small part of the work per cell (2 d flops
# against ~15 ns of sorting and bookkeeping), and multi-threaded BLAS on blocks this small only
# adds thread wake-ups: measured 25-35 ms instead of 0.4 ms per (50 x 81) @ (81 x 1200) product
# on a busy 2-core machine. So BLAS runs single-threaded there; parallelism comes from n_jobs.
_SINGLE_THREAD_BLAS_BELOW = 128


def _sorted_coefficients(n: int, k: int) -> np.ndarray:
    """:math:`c_i = \\min(K, i) / (K i)` for ranks i = 1..n (1/K inside the K nearest, 1/i beyond)."""
    i = np.arange(1, n + 1, dtype=np.float64)
    return np.where(i <= k, 1.0 / k, 1.0 / i)


class _TrainingSide:
    """The training features in the forms the distance computations need (built once per fit).

    ``x`` is used by the per-pair reference distances. ``gemm_t`` (C-contiguous, one column
    per training point) holds the training side of the augmented product that gives a whole
    distance block in one GEMM: rows ``[t; ||t||^2; 1]`` for "euclidean", ``[t/||t||; 1]`` for
    "cosine". ``max_sq_norm`` enters the euclidean error bound.
    """

    def __init__(self, x: np.ndarray, metric: str) -> None:
        self.x = x
        self.metric = metric
        self.max_sq_norm = 0.0
        self.gemm_t: np.ndarray | None = None
        ones = np.ones((1, x.shape[0]))
        if metric == "euclidean":
            sq_norms = np.einsum("ij,ij->i", x, x)
            self.max_sq_norm = float(sq_norms.max())
            self.gemm_t = np.ascontiguousarray(np.vstack([x.T, sq_norms[None, :], ones]))
        elif metric == "cosine":
            self.gemm_t = np.ascontiguousarray(np.vstack([_unit_rows(x).T, ones]))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (cosine distance 1 to everything)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    return x / np.where(norms > 0, norms, 1.0)[:, None]


def _block_distances(out: np.ndarray, xv: np.ndarray, train: _TrainingSide) -> np.ndarray:
    """Fill ``out`` (rows x n_train) with fast distances; return each row's error tolerance.

    "euclidean": the *squared* distance -2 v.t + ||t||^2 + ||v||^2 as one augmented GEMM,
    ``[-2v, 1, ||v||^2] @ [t; ||t||^2; 1]`` (the square root would not change a ranking);
    "cosine": ``[-v/||v||, 1] @ [t/||t||; 1]`` = 1 - cos. With u = 2^-53 the unit roundoff,
    standard dot-product error bounds put them within ~5 (d + 3) u (||v||^2 + ||t||^2), resp.
    ~5 (d + 3) u, of the per-pair reference (:func:`_reference_distances`); the returned
    tolerance for a *pair* of neighbours, 8 (d + 3) 2^-52 (||v||^2 + max ||t||^2) resp.
    8 (d + 3) 2^-52, covers two such errors with a margin of 1.6. "manhattan" and "chebyshev"
    come from scipy's per-pair loop, so they *are* the reference (tolerance 0).

    Values may come out slightly negative through rounding; the sort keys use their absolute
    value, which is within the same error of the true distance (>= 0), so nothing is clipped.
    """
    metric = train.metric
    c, d = xv.shape
    bound = 8.0 * (d + 3) * 2.0**-52
    if metric == "euclidean":
        sq_valid = np.einsum("ij,ij->i", xv, xv)
        left = np.hstack([-2.0 * xv, np.ones((c, 1)), sq_valid[:, None]])
        np.matmul(left, train.gemm_t, out=out)
        return bound * (sq_valid + train.max_sq_norm)
    if metric == "cosine":
        np.matmul(np.hstack([-_unit_rows(xv), np.ones((c, 1))]), train.gemm_t, out=out)
        return np.full(c, bound)
    from scipy.spatial.distance import cdist

    cdist(xv, train.x, {"manhattan": "cityblock"}.get(metric, metric), out=out)
    return np.zeros(c)


def _reference_distances(
    xv: np.ndarray, train: _TrainingSide, dist: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Distances of the pairs (validation ``rows``, training ``cols``) computed pair by pair.

    Each value depends on the two feature vectors only -- not on the block, the block size or
    a BLAS kernel -- so duplicate rows tie exactly and every block size ranks alike.
    "euclidean": sum_k (v_k - t_k)^2; "cosine": 1 - v.t / (||v|| ||t||) (1 for a zero vector).
    """
    if train.metric in ("manhattan", "chebyshev"):
        return dist[rows, cols]
    out = np.empty(rows.size)
    step = max(1, (1 << 21) // xv.shape[1])  # bounded temporaries (16 MB)
    for a in range(0, rows.size, step):
        v, t = xv[rows[a : a + step]], train.x[cols[a : a + step]]
        if train.metric == "euclidean":
            v -= t  # v is a copy (fancy indexing)
            out[a : a + step] = np.square(v, out=v).sum(axis=1)
        else:
            norms = np.sqrt(np.square(v).sum(axis=1)) * np.sqrt(np.square(t).sum(axis=1))
            dots = (v * t).sum(axis=1)
            safe = np.where(norms > 0, norms, 1.0)
            out[a : a + step] = np.where(norms > 0, 1.0 - dots / safe, 1.0)
    return np.maximum(out, 0.0)


def _argsort_rows(
    dist: np.ndarray,
    tol: np.ndarray,
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray],
    order: np.ndarray,
    keys: np.ndarray,
    gaps: np.ndarray,
    near: np.ndarray,
) -> None:
    """Write into ``order`` each row's neighbour order: by reference distance, ties by index.

    1. Fast sort. The bit pattern of a non-negative float64 is monotone as uint64; its top
       ``64 - b`` bits (``b`` bits hold a column index) are packed with the column index into
       one key, and the keys are sorted by value (SIMD sort, ~3x faster than an indirect
       argsort). Keys are unique, so the result is deterministic.
    2. Refinement. Two neighbours whose fast distances are within the error tolerance (plus
       the truncation steps) of each other may be in the wrong order, or tied. Each run of
       such neighbours is re-sorted by (reference distance, index). Outside the runs the fast
       order is provably the reference order, so the final order is the stable argsort of the
       reference distances, whatever the block size or the BLAS kernel did. With continuous
       features only a few rows in a hundred have a run; duplicates make runs everywhere
       (cost: d flops per member, still small next to the sort).
    """
    n = dist.shape[1]
    bits = max(1, (n - 1).bit_length())
    low = np.uint64((1 << bits) - 1)
    high = np.uint64(((1 << 63) - 1) & ~((1 << bits) - 1))
    np.bitwise_and(dist.view(np.uint64), high, out=keys)  # |dist|, truncated
    keys |= np.arange(n, dtype=np.uint64)
    keys.sort(axis=1)
    np.bitwise_and(keys, low, out=order.view(np.uint64))
    if n < 2:
        return
    # Read back as floats, the keys are within one truncation step (< 2^(b-52) of the row's
    # largest, or 2^(b-1074) among subnormals) of |dist|: a pair whose key gap exceeds the
    # tolerance plus two steps is in the right order.
    approx = keys.view(np.float64)
    np.subtract(approx[:, 1:], approx[:, :-1], out=gaps)
    step = np.maximum(approx[:, -1] * 2.0 ** (bits - 52), 2.0 ** (bits - 1074))
    threshold = tol + 2.0 * step
    np.less_equal(gaps, threshold[:, None], out=near[:, : n - 1])
    # Near pairs are rare: find them 8 flags at a time (np.nonzero on the bools costs as much
    # as a sort pass when every row has one, e.g. with duplicates). The padding stays False.
    words = np.flatnonzero(near.view(np.uint64))
    if words.size == 0:
        return
    hit_word, byte = np.nonzero(near.reshape(-1, 8)[words])
    r, j = np.divmod(words[hit_word] * 8 + byte, near.shape[1])
    # Runs of consecutive near pairs (r, j), (r, j + 1), ...: members are positions j..end+1.
    starts = np.ones(r.size, dtype=bool)
    starts[1:] = (r[1:] != r[:-1]) | (j[1:] != j[:-1] + 1)
    ends = np.append(starts[1:], True)
    lengths = j[ends] - j[starts] + 2
    run = np.repeat(np.arange(lengths.size), lengths)
    first = np.cumsum(lengths) - lengths
    pos = j[starts][run] + (np.arange(run.size) - first[run])
    rows = r[starts][run]
    cols = order[rows, pos]
    ref = reference(rows, cols)
    order[rows, pos] = cols[np.lexsort((cols, ref, run))]


_workspace = threading.local()


def _work_buffers(rows: int, n: int, label_dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """Work buffers for blocks of ``rows`` x ``n`` cells, kept per thread between tasks.

    Fresh buffers for every group cost first-touch page faults (measured: 30% of the time at
    5,000 x 1,000). Per cell: 8 B distances, later the values in training order (``buf``,
    with one extra row for the running sum); 8 B sort keys, later the values in sorted order;
    8 B order; 8 B key gaps; 1 B each for the near-tie flags (later the label differences),
    the match indicator and the sorted labels. Released by :func:`_release_work_buffers`.
    """
    key = (rows, n, np.dtype(label_dtype).str)
    cached = getattr(_workspace, "buffers", None)
    if cached is None or cached[0] != key:
        _workspace.buffers = None  # free the old set before allocating the new one
        cached = (
            key,
            (
                np.empty((rows + 1, n)),
                np.empty((rows, n), dtype=np.uint64),
                np.empty((rows, n), dtype=np.intp),
                np.empty((rows, max(n - 1, 0))),
                np.zeros((rows, _padded(n - 1)), dtype=bool),
                np.empty((rows, n), dtype=bool),
                np.empty((rows, n), dtype=label_dtype),
            ),
        )
        _workspace.buffers = cached
    return cached[1]


def _padded(width: int) -> int:
    """``width`` rounded up to a multiple of 8 (at least 8): rows of flags readable as uint64."""
    return max(8, -(-width // 8) * 8)


def _release_work_buffers() -> None:
    _workspace.buffers = None


def _knn_shapley_group(
    train: _TrainingSide,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    coef: np.ndarray,
    chunk_rows: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares, over the validation points of one group, of the per-validation
    Shapley values (one task). ``chunk_rows`` validation points are processed at a time.
    """
    n = train.x.shape[0]
    n_rows = x_valid.shape[0]
    rows = chunk_rows
    buf, keys, order, gaps, near, match, labels = _work_buffers(rows, n, y_train.dtype)
    total = np.zeros(n)
    total_sq = np.zeros(n)
    for start in range(0, n_rows, rows):
        c = min(rows, n_rows - start)
        xv, yv = x_valid[start : start + c], y_valid[start : start + c]
        dist, key, idx = buf[1 : c + 1], keys[:c], order[:c]
        tol = _block_distances(dist, xv, train)
        _argsort_rows(
            dist,
            tol,
            lambda r, t, xv=xv, dist=dist: _reference_distances(xv, train, dist, r, t),
            idx,
            key,
            gaps[:c],
            near[:c],
        )

        # m_i = 1[y_{alpha_i} = y], in sorted order.
        lab, m = labels[:c], match[:c]
        y_train.take(idx, out=lab, mode="clip")  # indices are valid; "clip" avoids a buffer
        np.equal(lab, yv[:, None], out=m)

        # s_i = sum_{j >= i} (m_j - m_{j+1}) c_j, with m_{N+1} = 0: reversed cumulative sum.
        s = key.view(np.float64)
        diff = near[:c, : n - 1].view(np.int8)
        m8 = m.view(np.int8)
        np.subtract(m8[:, :-1], m8[:, 1:], out=diff)
        np.multiply(diff, coef[:-1], out=s[:, :-1])
        np.multiply(m[:, -1], coef[-1], out=s[:, -1])
        np.cumsum(s[:, ::-1], axis=1, out=s[:, ::-1])

        # Scatter to training order (each row of `order` is a permutation) and accumulate.
        # Row 0 of `buf` holds the running sum and rows 1..c the chunk, so that one reduction
        # over axis 0 (sequential over rows in numpy) adds the chunk to it row by row: the
        # same additions in the same order for any chunk size.
        for r in range(c):
            dist[r][idx[r]] = s[r]
        buf[0] = total
        total = buf[: c + 1].sum(axis=0)
        np.square(dist, out=dist)
        buf[0] = total_sq
        total_sq = buf[: c + 1].sum(axis=0)
    return total, total_sq


class KNNShapley(Valuator):
    """Exact Shapley values of the K-nearest-neighbour classifier (Jia et al., 2019, Theorem 1).

    The utility of a training subset is the K-NN classifier's mean "likelihood of the right
    label" on the validation set: for each validation point, the fraction of its K nearest
    neighbours in the subset that carry its label (divided by K even when the subset has fewer
    than K points). Its Shapley values have a closed form that needs one sort of the training
    set per validation point: O(n_valid * n_train * log n_train) time, no model fits, no
    sampling. Classification only.

    Parameters
    ----------
    n_neighbors : int
        K. The default, 10, is OpenDataVal's. Small K values a point by its immediate
        neighbourhood only, large K smooths; for finding flipped labels the choice matters
        little (AUC 0.98 on breast_cancer and 0.80-0.83 on adult for every K in 1..50). Any
        K >= 1 is allowed; with K >= n_train every point gets 1[label matches] / K on average.
    distance : {"euclidean", "cosine", "manhattan", "chebyshev"}
        Distance used to rank neighbours (named ``distance``, not ``metric``: elsewhere in
        datavalue ``metric`` is the score of a model). Features are used as given: standardize them first
        (``dv.load_dataset`` does) or large-scale features dominate.
    batch_size : int or None
        Validation points per block (one distance block of ``batch_size x n_train``; the work
        buffers take about 35 bytes per cell). None: about 2^19 cells per block (~18 MB, at
        least one row), which keeps a block in cache; the working memory per worker is then
        about ``35 * max(n_train, 2**19)`` bytes. Does not change the values.
    preprocessor : "auto", None or transformer
        K-NN-Shapley (distances) computes with the features themselves, so they must be numbers: "auto" (the
        default) imputes, scales and one-hot encodes data that are not already a finite
        numeric array (a DataFrame with text columns, missing values, a sparse matrix) with a
        ``ColumnTransformer`` fitted on the training rows only
        (:func:`datavalue.data.fitdata.default_preprocessor`); numeric arrays are used as given.
        None: no preprocessing (non-numeric data is an error). Or any scikit-learn
        transformer, fitted on the training rows.
    n_jobs : int or None
        Parallel workers (joblib) over groups of validation points. Values are bit-identical
        for any ``n_jobs`` and ``batch_size``.
    progress : bool or None
        Progress bar (None: only on a terminal).

    Attributes
    ----------
    values_ : numpy.ndarray of shape (n_train,)
        Mean over validation points of the per-point Shapley values.
    result_ : ValuationResult
        ``stderr`` is the standard error of that mean across validation points (NaN with one
        validation point), ``counts`` is n_valid for every point.

    Notes
    -----
    *Ties* in distance are broken by training index: of two equally distant points, the one
    with the lower index counts as nearer (a stable sort). Distances are compared as computed
    pair by pair (euclidean: ``sum((v - t) ** 2)``), so exact duplicates of a training row
    always tie. Blocks are pre-sorted with fast BLAS distances (||v||^2 + ||t||^2 - 2 v.t, as
    scikit-learn computes them), and only neighbours within that formula's rounding error of
    each other are re-ranked with the per-pair values. A training set with a few points of
    huge norm widens that error band (it scales with max ||t||^2) and makes fits slower, not
    less exact.

    The values sum to the utility of the full training set (efficiency): the mean over
    validation points of the fraction of correct labels among the K nearest neighbours.

    References
    ----------
    R. Jia, D. Dao, B. Wang, F. A. Hubis, N. M. Gurel, B. Li, C. Zhang, C. J. Spanos, D. Song.
    "Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms". PVLDB 12(11),
    2019, Theorem 1.
    """

    method_name: ClassVar[str] = "knn-shapley"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "n_neighbors": [Interval(int, 1, None)],
        "distance": [Options(DISTANCES)],
        "batch_size": [Interval(int, 1, None), None],
        "preprocessor": PREPROCESSOR,
        "n_jobs": N_JOBS,
        "progress": ["boolean", None],
    }

    def __init__(
        self,
        n_neighbors: int = 10,
        distance: str = "euclidean",
        *,
        batch_size: int | None = None,
        preprocessor: Any = "auto",
        n_jobs: int | None = None,
        progress: bool | None = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.distance = distance
        self.batch_size = batch_size
        self.preprocessor = preprocessor
        self.n_jobs = n_jobs
        self.progress = progress

    def fit(self, x_train: Any, y_train: Any, x_valid: Any, y_valid: Any) -> KNNShapley:
        """Compute the values of the training points with respect to the validation set.

        Parameters
        ----------
        x_train : array-like of shape (n_train, n_features)
        y_train : array-like of shape (n_train,)
            Class labels.
        x_valid : array-like of shape (n_valid, n_features)
        y_valid : array-like of shape (n_valid,)
            Class labels (labels absent from ``y_train`` are allowed: no neighbour matches).

        Returns
        -------
        self
        """
        start = time.perf_counter()
        self._validate_params()
        data = self._check_data(x_train, y_train, x_valid, y_valid,
                                allow_missing=_imputes(self.preprocessor))
        data = data.numeric(self.preprocessor, owner="KNNShapley")
        if data.task != "classification":
            raise InvalidDataError(
                "KNNShapley values the training points of a K-NN *classifier* (Jia et al. "
                "2019, Theorem 1) and needs class labels, but 'y_train' looks like a "
                "regression target (floats with non-integer values or more than 20 distinct "
                "values). Pass integer or string class labels, or use a method that supports "
                "regression (DataOOB, LOO)."
            )
        # Features of magnitude 1e200 (or 1e-200) overflow (underflow) in squared distances;
        # a common power-of-two scale leaves every distance's order unchanged, exactly.
        xt, xv = rescale_if_extreme(data.x_train, data.x_valid)
        xt = np.ascontiguousarray(xt)
        xv = np.ascontiguousarray(xv)
        label_dtype = np.min_scalar_type(max(data.n_classes - 1, 0))
        yt = data.y_train.astype(label_dtype)
        yv = data.y_valid.astype(label_dtype)
        n, n_valid = xt.shape[0], xv.shape[0]
        coef = _sorted_coefficients(n, self.n_neighbors)
        train = _TrainingSide(xt, self.distance)

        group_rows = max(
            math.ceil(n_valid / _MAX_GROUPS),
            min(_MAX_GROUP_ROWS, math.ceil(n_valid / _MIN_GROUPS)),
        )
        chunk_rows = min(self.batch_size or max(1, _BLOCK_CELLS // n), group_rows)
        chunk_rows = math.ceil(group_rows / math.ceil(group_rows / chunk_rows))  # even blocks
        tasks = [
            (train, yt, xv[a : a + group_rows], yv[a : a + group_rows], coef, chunk_rows)
            for a in range(0, n_valid, group_rows)
        ]
        blas_threads = 1 if xt.shape[1] < _SINGLE_THREAD_BLAS_BELOW else None
        try:
            with threadpool_limits(limits=blas_threads, user_api="blas"):
                parts = parallel_map(
                    _knn_shapley_group,
                    tasks,
                    n_jobs=self.n_jobs,
                    progress=self.progress,
                    desc="KNN-Shapley",
                    unit="block",
                    # numpy's sorts and BLAS release the GIL: threads avoid starting worker
                    # processes (measured: 3.9 s of start-up on a 0.15 s 5000 x 1000 run).
                    prefer="threads",
                )
        finally:
            _release_work_buffers()  # those of this thread (sequential runs)
        total = np.zeros(n)
        total_sq = np.zeros(n)
        for part_sum, part_sq in parts:  # fixed order: identical for any n_jobs
            total += part_sum
            total_sq += part_sq
        values = total / n_valid
        if n_valid > 1:
            # Spread of the per-validation-point values; clip rounding below zero.
            var = np.maximum(total_sq - total * values, 0.0) / (n_valid - 1)
            stderr = np.sqrt(var / n_valid)
        else:
            stderr = np.full(n, np.nan)
        self._make_result(
            values,
            data,
            start,
            stderr=stderr,
            counts=np.full(n, n_valid, dtype=np.int64),
            extra={"n_valid": n_valid, "block_rows": chunk_rows},
        )
        return self


def knn_shapley_candidates(x_train: Any, y_train: Any, x_valid: Any, y_valid: Any,
                           x_candidates: Any, y_candidates: Any, *, n_neighbors: int = 10,
                           batch_size: int = 256) -> np.ndarray:
    """Exact KNN-Shapley value of each candidate if it alone were added to the training set.

    For one validation point, with the ``N`` training points sorted by distance (``a_t =
    1[y_t = y]`` at rank ``t``) and the candidate inserted at rank ``r`` (after the training
    points at equal distance), Theorem 1 of Jia et al. (2019) unrolled over the ``N + 1``
    points gives

        s_c = (m_c - a_r) c_r + sum_{t=r}^{N} (a_t - a_{t+1}) c_{t+1},  c_j = min(K, j) / (K j),

    with ``m_c = 1[y_c = y]`` and ``a_{N+1} = 0``: the suffix sums are computed once per
    validation point and each candidate costs a binary search, so a pool of candidates costs
    ``n_valid (N log N + M log N)``, not ``M`` runs of KNN-Shapley. Returns the mean over the
    validation points, ``(n_candidates,)``; equal to :class:`KNNShapley`'s value of the
    candidate on the training set plus that candidate (the tests check it). Euclidean
    distance; classification labels.
    """
    from scipy.spatial.distance import cdist

    from datavalue._core.validation import check_xy

    xt, yt = check_xy(x_train, y_train)
    xv, yv = check_xy(x_valid, y_valid, x_name="x_valid", y_name="y_valid")
    xc, yc = check_xy(x_candidates, y_candidates, x_name="x_candidates",
                      y_name="y_candidates")
    for name, x in (("x_valid", xv), ("x_candidates", xc)):
        if x.shape[1] != xt.shape[1]:
            raise InvalidDataError(
                f"'{name}' has {x.shape[1]} features; 'x_train' has {xt.shape[1]}.")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int) or n_neighbors < 1:
        raise InvalidDataError(f"'n_neighbors' must be an int >= 1; got {n_neighbors!r}.")
    n, k = xt.shape[0], int(n_neighbors)
    j = np.arange(1, n + 2)
    coef = np.minimum(k, j) / (k * j)  # c_j, j = 1..N+1
    values = np.zeros(xc.shape[0])
    for start in range(0, xv.shape[0], batch_size):
        v, yb = xv[start:start + batch_size], yv[start:start + batch_size]
        dist = cdist(v, xt, "sqeuclidean")
        order = np.argsort(dist, axis=1, kind="stable")
        sorted_d = np.take_along_axis(dist, order, axis=1)
        a = np.zeros((v.shape[0], n + 1))
        a[:, :n] = yt[order] == yb[:, None]
        term = (a[:, :n] - a[:, 1:]) * coef[1:n + 1]  # (a_t - a_{t+1}) c_{t+1}, t = 1..N
        suffix = np.zeros((v.shape[0], n + 1))
        suffix[:, :n] = np.cumsum(term[:, ::-1], axis=1)[:, ::-1]
        dc = cdist(v, xc, "sqeuclidean")
        match = (yc[None, :] == yb[:, None]).astype(np.float64)
        for i in range(v.shape[0]):
            r = np.searchsorted(sorted_d[i], dc[i], side="right")  # 0-based rank r - 1
            values += (match[i] - a[i, r]) * coef[r] + suffix[i, r]
    return values / xv.shape[0]
