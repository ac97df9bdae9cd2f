"""The floors: the unavoidable work of a method, done with plain scikit-learn / numpy.

A floor is what the method cannot avoid doing, so "our time / floor time" says how much the
method adds on top of it. Run in our environment (``.venv``), in a fresh process, on the same
arrays and cores as every implementation. See ``_runner.py`` for the command line.

- ``data-oob`` floor: the tree fits alone, in the fastest loop we know: ``n_estimators``
  ``DecisionTreeClassifier(random_state=seed).fit(x, y, sample_weight=bootstrap counts,
  check_input=False)`` (the same weighted fits Data-OOB makes; a weighted fit is faster than
  fitting the bootstrap's repeated rows), on ``n_jobs`` threads (tree building releases the GIL),
  each tree dropped once fitted. No out-of-bag prediction, no bookkeeping: Data-OOB cannot do
  less, so ``ours / floor >= 1`` up to noise.
- ``knn-shapley`` floor: the squared euclidean distances between every validation and training
  point (one GEMM per block, in the same blocks of validation rows and on the same workers as
  ``dv.KNNShapley``, whose block sizes are read from ``datavalue.valuation.knn_shapley``), and
  nothing else. KNN-Shapley must at least compute every distance; ordering them is on top.

Floors produce no values (no AUC).
"""

from __future__ import annotations

import math

import numpy as np

from _runner import load_arrays, parse_args, timed, write_result, write_unavailable


def _fit_trees(x: np.ndarray, y: np.ndarray, seeds: list[int]) -> int:
    from sklearn.tree import DecisionTreeClassifier

    n = x.shape[0]
    leaves = 0  # keeps the work observable
    for seed in seeds:
        counts = np.bincount(np.random.default_rng(seed).integers(0, n, n), minlength=n)
        tree = DecisionTreeClassifier(random_state=seed)
        tree.fit(x, y, sample_weight=counts.astype(np.float64), check_input=False)
        leaves += tree.get_n_leaves()
    return leaves


def tree_fit_floor(x: np.ndarray, y: np.ndarray, n_estimators: int, n_jobs: int, seed: int) -> int:
    from joblib import Parallel, delayed

    x = np.ascontiguousarray(x, dtype=np.float32)  # made once; C order measured faster than F
    y = np.asarray(y)
    seeds = [seed + i for i in range(n_estimators)]
    chunks = [seeds[i::n_jobs] for i in range(n_jobs)]
    return sum(Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_fit_trees)(x, y, c) for c in chunks))


def _sort_group(x_train: np.ndarray, sq_train: np.ndarray, x_valid: np.ndarray, rows: int) -> int:
    """The distances of one group of validation points to every training point."""
    n = x_train.shape[0]
    dist = np.empty((rows, n))
    checksum = 0  # keeps the work observable
    for start in range(0, x_valid.shape[0], rows):
        xv = x_valid[start : start + rows]
        d = dist[: xv.shape[0]]
        np.matmul(-2.0 * xv, x_train.T, out=d)
        d += sq_train
        d += np.einsum("ij,ij->i", xv, xv)[:, None]
        checksum += int(d[:, 0].argmin())
    return checksum


def knn_floor(x_train: np.ndarray, x_valid: np.ndarray, n_jobs: int) -> int:
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    # The same grouping and block size as dv.KNNShapley (defaults in brackets, in case the
    # private names move): groups of validation rows are the parallel tasks, each processed in
    # blocks of about 2^19 cells.
    from datavalue.valuation import knn_shapley as ours

    max_group_rows = getattr(ours, "_MAX_GROUP_ROWS", 256)
    min_groups = getattr(ours, "_MIN_GROUPS", 8)
    max_groups = getattr(ours, "_MAX_GROUPS", 64)
    block_cells = getattr(ours, "_BLOCK_CELLS", 1 << 19)
    single_thread_blas_below = getattr(ours, "_SINGLE_THREAD_BLAS_BELOW", 128)

    n, n_valid = x_train.shape[0], x_valid.shape[0]
    group_rows = max(
        math.ceil(n_valid / max_groups), min(max_group_rows, math.ceil(n_valid / min_groups))
    )
    rows = min(max(1, block_cells // n), group_rows)
    sq_train = np.einsum("ij,ij->i", x_train, x_train)
    blas_threads = 1 if x_train.shape[1] < single_thread_blas_below else None
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        parts = Parallel(n_jobs=n_jobs, prefer="threads")(  # as ours: GEMM releases the GIL
            delayed(_sort_group)(x_train, sq_train, x_valid[a : a + group_rows], rows)
            for a in range(0, n_valid, group_rows)
        )
    return sum(parts)


def main() -> None:
    args = parse_args()
    import sklearn

    a = load_arrays(args.data)
    p = args.params
    n_jobs = int(p.get("n_jobs", 1))
    if args.method == "data-oob":
        run = lambda: tree_fit_floor(  # noqa: E731
            a["x_train"], a["y_train"], int(p["n_estimators"]), n_jobs, int(p.get("random_state", 0))
        )
        note = "the weighted tree fits alone, on n_jobs threads"
    elif args.method == "knn-shapley":
        run = lambda: knn_floor(a["x_train"], a["x_valid"], n_jobs)  # noqa: E731
        note = "the squared distances alone (one GEMM per block), same blocks as ours"
    else:
        write_unavailable(args.out, f"no floor for {args.method!r}")
        return
    _, seconds = timed(run)
    write_result(
        args.out,
        seconds=seconds,
        values=None,
        library="scikit-learn/numpy",
        version=sklearn.__version__,
        n_jobs=n_jobs,
        note=note,
    )


if __name__ == "__main__":
    main()
