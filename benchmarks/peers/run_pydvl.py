"""Run one pyDVL (``pydvl.valuation``, version 0.10) method on a benchmark case.

Started by the harness with ``benchmarks/.venvs/pydvl/bin/python``; see ``benchmarks/_runner.py``
for the command line and the output. Only the valuation is timed.

- ``data-oob``: pyDVL's ``DataOOBValuation`` needs a fitted bagging model, so the time includes
  fitting ``BaggingClassifier(DecisionTreeClassifier(), n_estimators, n_jobs)`` (exactly the
  floor) followed by ``DataOOBValuation(model).fit(train)`` (one process).
- ``knn-shapley``: ``KNNShapleyValuation(KNeighborsClassifier(n_neighbors), valid)``, run inside
  ``joblib.parallel_config(n_jobs=n_jobs)``, the parallelism pyDVL documents.
- ``loo``: ``LOOValuation(ModelUtility(LogisticRegression(max_iter=1000),
  SupervisedScorer("accuracy", valid)))`` inside ``joblib.parallel_config(n_jobs=n_jobs)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _runner
from _runner import load_arrays, parse_args, timed, write_result, write_unavailable  # noqa: E402


def values_in_index_order(result, n: int) -> np.ndarray:
    """pyDVL's ValuationResult may be sorted: put value i at position i."""
    values = np.full(n, np.nan)
    values[np.asarray(result.indices, dtype=np.int64)] = result.values
    return values


def main() -> None:
    args = parse_args()
    import joblib
    import pydvl
    from pydvl.valuation import Dataset

    a = load_arrays(args.data)
    p = args.params
    n_jobs = int(p.get("n_jobs", 1))
    train = Dataset(a["x_train"], a["y_train"])
    valid = Dataset(a["x_valid"], a["y_valid"])

    if args.method == "data-oob":
        from pydvl.valuation import DataOOBValuation
        from sklearn.ensemble import BaggingClassifier
        from sklearn.tree import DecisionTreeClassifier

        def run():
            model = BaggingClassifier(
                DecisionTreeClassifier(),
                n_estimators=int(p["n_estimators"]),
                n_jobs=n_jobs,
                random_state=int(p.get("random_state", 0)),
            ).fit(a["x_train"], a["y_train"])
            return DataOOBValuation(model).fit(train).result

        note = "time = fit BaggingClassifier (n_jobs) + DataOOBValuation.fit (1 process)"
    elif args.method == "knn-shapley":
        from pydvl.valuation import KNNShapleyValuation
        from sklearn.neighbors import KNeighborsClassifier

        def run():
            valuation = KNNShapleyValuation(
                KNeighborsClassifier(n_neighbors=int(p["n_neighbors"])), valid, progress=False
            )
            with joblib.parallel_config(n_jobs=n_jobs):
                return valuation.fit(train).result

        note = "joblib.parallel_config(n_jobs)"
    elif args.method == "loo":
        from pydvl.valuation import LOOValuation, ModelUtility, SupervisedScorer
        from sklearn.linear_model import LogisticRegression

        def run():
            scorer = SupervisedScorer("accuracy", valid, default=0.0, range=(0.0, 1.0))
            utility = ModelUtility(LogisticRegression(max_iter=1000), scorer)
            with joblib.parallel_config(n_jobs=n_jobs):
                return LOOValuation(utility, progress=False).fit(train).result

        note = "accuracy on the validation split; joblib.parallel_config(n_jobs)"
    else:
        write_unavailable(args.out, f"pyDVL runner has no method {args.method!r}")
        return

    result, seconds = timed(run)
    write_result(
        args.out,
        seconds=seconds,
        values=values_in_index_order(result, len(a["y_train"])),
        library="pyDVL",
        version=pydvl.__version__,
        n_jobs=n_jobs,
        note=note,
    )


if __name__ == "__main__":
    main()
