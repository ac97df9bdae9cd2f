"""Run one datavalue method on a benchmark case (our environment, ``.venv``).

See ``_runner.py`` for the command line and the output. The timed call is the public API a user
would write:

- ``data-oob``: ``dv.DataOOB(n_estimators, n_jobs=n_jobs, random_state).fit(x_train, y_train)``
  (default model: a full-depth decision tree).
- ``knn-shapley``: ``dv.KNNShapley(n_neighbors, n_jobs=n_jobs).fit(x_train, y_train, x_valid,
  y_valid)``.
- ``loo``: ``dv.LOO(LogisticRegression(max_iter=1000), metric="accuracy", n_jobs=n_jobs)
  .fit(x_train, y_train, x_valid, y_valid)``.
"""

from __future__ import annotations

from _runner import load_arrays, parse_args, timed, write_result, write_unavailable


def main() -> None:
    args = parse_args()
    import datavalue as dv

    a = load_arrays(args.data)
    p = args.params
    n_jobs = int(p.get("n_jobs", 1))
    train = (a["x_train"], a["y_train"])
    both = (*train, a["x_valid"], a["y_valid"])

    if args.method == "data-oob":
        if not hasattr(dv.DataOOB, "fit"):
            write_unavailable(args.out, "datavalue.DataOOB is not implemented yet")
            return
        valuator = dv.DataOOB(
            n_estimators=int(p["n_estimators"]),
            random_state=int(p.get("random_state", 0)),
            n_jobs=n_jobs,
            progress=False,
        )
        data = train
    elif args.method == "knn-shapley":
        if not hasattr(dv.KNNShapley, "fit"):
            write_unavailable(args.out, "datavalue.KNNShapley is not implemented yet")
            return
        valuator = dv.KNNShapley(n_neighbors=int(p["n_neighbors"]), n_jobs=n_jobs, progress=False)
        data = both
    elif args.method == "loo":
        from sklearn.linear_model import LogisticRegression

        valuator = dv.LOO(
            LogisticRegression(max_iter=1000), metric="accuracy", n_jobs=n_jobs, progress=False
        )
        data = both
    else:
        write_unavailable(args.out, f"no method {args.method!r} in impl_ours.py")
        return

    _, seconds = timed(lambda: valuator.fit(*data))
    write_result(
        args.out,
        seconds=seconds,
        values=valuator.values_,
        library="datavalue",
        version=dv.__version__,
        n_jobs=n_jobs,
    )


if __name__ == "__main__":
    main()
