"""Run pyDVL 0.10's TMC-Shapley on a benchmark case (for ``benchmarks/bench_shapley.py``).

Started with ``benchmarks/.venvs/pydvl/bin/python``; the command line and the output are those
of ``benchmarks/_runner.py``::

    python pydvl_shapley.py --data CASE.npz --method tmc-shapley \
        --params '{"n_permutations": 100, "workers": 2, "random_state": 0}' --out OUT.json

What runs (only ``fit`` is timed), pyDVL's documented TMC-Shapley with its own defaults except
the stopping rule::

    utility = ModelUtility(LogisticRegression(max_iter=1000),
                           SupervisedScorer("accuracy", valid, default=0.0, range=(0, 1)))
    TMCShapleyValuation(utility,
                        truncation=RelativeTruncation(rtol=0.01, burn_in_fraction=0.4),
                        is_done=MaxUpdates(n_permutations), seed=random_state)
    with joblib.parallel_config(n_jobs=workers): valuation.fit(train)

``RelativeTruncation(rtol=0.01, burn_in_fraction=0.4)`` is what ``TMCShapleyValuation`` uses
when no truncation is given (stop a permutation once the score is within 1% of the full-data
score, checked only after the first 40% of the points). ``MaxUpdates(k)`` stops once some
point has ``k`` updates, i.e. after ``k`` permutations (every permutation updates every point,
truncated ones with 0); with ``n_jobs > 1`` pyDVL may have dispatched a few more permutations
whose fits are counted but whose results are discarded.

Written to OUT.json besides the time: ``n_fits`` (calls of the model's ``fit``, counted by a
``LogisticRegression`` subclass that appends one byte per call to a file: fits that fail on a
one-class subset are included, since pyDVL attempts them) and ``cpu_s`` (CPU seconds of this
process and its worker processes during ``fit``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _runner
from _runner import (  # noqa: E402
    load_arrays,
    parse_args,
    timed,
    tree_cpu_seconds,
    write_result,
    write_unavailable,
)

_COUNT_ENV = "BENCH_SHAPLEY_FIT_COUNT"
_FDS: dict[int, int] = {}  # pid -> open file descriptor of the count file


def _count_fit() -> None:
    path = os.environ.get(_COUNT_ENV)
    if not path:
        return
    pid = os.getpid()
    if pid not in _FDS:
        _FDS[pid] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_FDS[pid], b".")  # O_APPEND: atomic across the worker processes


class CountingLogisticRegression(LogisticRegression):
    """LogisticRegression that counts its ``fit`` calls (one byte per call in a file).

    Defined in ``__main__``, so joblib's workers receive it by value (cloudpickle).
    """

    def fit(self, X, y, sample_weight=None):
        _count_fit()
        return super().fit(X, y, sample_weight=sample_weight)


def values_in_index_order(result, n: int) -> np.ndarray:
    """pyDVL's ValuationResult may be sorted: put value i at position i."""
    values = np.full(n, np.nan)
    values[np.asarray(result.indices, dtype=np.int64)] = result.values
    return values


def main() -> None:
    args = parse_args()
    if args.method != "tmc-shapley":
        write_unavailable(args.out, f"pydvl_shapley.py has no method {args.method!r}")
        return
    import joblib
    import pydvl
    from pydvl.valuation import (
        Dataset,
        MaxUpdates,
        ModelUtility,
        RelativeTruncation,
        SupervisedScorer,
        TMCShapleyValuation,
    )

    a = load_arrays(args.data)
    p = args.params
    n_jobs = int(p.get("workers", p.get("n_jobs", 1)))  # bench_shapley passes "workers"
    n_permutations = int(p["n_permutations"])
    seed = int(p.get("random_state", 0))
    train = Dataset(a["x_train"], a["y_train"])
    valid = Dataset(a["x_valid"], a["y_valid"])

    count_file = Path(tempfile.mkdtemp(prefix="fits-")) / "count"
    count_file.touch()
    os.environ[_COUNT_ENV] = str(count_file)  # inherited by the workers started below

    scorer = SupervisedScorer("accuracy", valid, default=0.0, range=(0.0, 1.0))
    utility = ModelUtility(CountingLogisticRegression(max_iter=1000), scorer)
    valuation = TMCShapleyValuation(
        utility,
        truncation=RelativeTruncation(rtol=0.01, burn_in_fraction=0.4),
        is_done=MaxUpdates(n_permutations),
        seed=seed,
        progress=False,
    )

    def run():
        with joblib.parallel_config(n_jobs=n_jobs):
            return valuation.fit(train).result

    cpu0 = tree_cpu_seconds()
    result, seconds = timed(run)
    cpu_s = tree_cpu_seconds() - cpu0
    n_fits = count_file.stat().st_size
    write_result(
        args.out,
        seconds=seconds,
        values=values_in_index_order(result, len(a["y_train"])),
        library="pyDVL",
        version=pydvl.__version__,
        n_jobs=n_jobs,
        n_fits=n_fits,
        cpu_s=cpu_s,
        n_permutations=int(np.max(result.counts)),
        note="TMCShapleyValuation, RelativeTruncation(0.01, burn_in_fraction=0.4), "
             f"MaxUpdates({n_permutations}), joblib.parallel_config(n_jobs={n_jobs})",
    )


if __name__ == "__main__":
    main()
