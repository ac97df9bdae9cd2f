"""Valuing a real-shaped table: what the validation boundary costs.

A 50,000-row DataFrame with 20 numeric and 10 categorical columns (text levels, 2% missing
values, string labels) is valued by Data-OOB and KNN-Shapley straight from the DataFrame, and
the same work is timed on the table already encoded into a numpy array (the baseline: the
method's own work, with no boundary). The ratio is the cost of accepting a table: checking it,
hashing it, encoding it once with a ColumnTransformer fitted on the training rows. Target: within
1.1x, and the boundary copies the data at most once (the encoded array).

A third row bags the user's own ``Pipeline(ColumnTransformer, tree)``: every bootstrap then
re-encodes its rows, which is the pipeline's work, not the boundary's; it is shown for scale.

Each measurement runs in a fresh process (peak memory = its maximum resident set size, which
includes the interpreter and libraries, ~200 MB); times are medians of ``--repeats`` runs.

    python benchmarks/bench_tables.py [--rows 50000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "tables"


def make_table(n: int, seed: int = 0):
    """20 numeric columns (different scales), 10 categorical (3-20 text levels), 2% missing
    values in 5 columns, a label that depends on both kinds."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols = {}
    for j in range(20):
        cols[f"num{j}"] = rng.normal(size=n) * 10.0 ** (j % 4)
    for j in range(10):
        levels = np.array([f"level_{j}_{k}" for k in range(3 + 2 * j)])
        cols[f"cat{j}"] = levels[rng.integers(0, len(levels), n)]
    frame = pd.DataFrame(cols)
    for j in range(5):
        frame.loc[rng.random(n) < 0.02, f"num{j}" if j % 2 else f"cat{j}"] = np.nan
    score = (frame["num1"].fillna(0) / 10 + (frame["cat1"] == "level_1_0") * 1.5
             + rng.normal(size=n))
    y = np.where(score > score.median(), "churn", "stay")
    return frame, y


def _data(rows: int):
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"table-{rows}.pkl"
    if not path.exists():
        import pandas as pd

        frame, y = make_table(rows + 1000)
        pd.to_pickle((frame, y), path)
    return path


def child(case: str, form: str, rows: int) -> dict:
    import pandas as pd

    import datavalue as dv
    from datavalue.data.fitdata import default_preprocessor

    frame, y = pd.read_pickle(_data(rows))
    xt, yt, xv, yv = frame.iloc[:rows], y[:rows], frame.iloc[rows:], y[rows:]
    if form == "arrays":  # the baseline: encoded outside the timed region
        prep = default_preprocessor(xt).fit(xt)
        xt, xv = prep.transform(xt), prep.transform(xv)
        codes = {"churn": 1, "stay": 0}
        yt = np.array([codes[v] for v in yt])
        yv = np.array([codes[v] for v in yv])
    start = time.perf_counter()
    if case == "data-oob":
        dv.DataOOB(n_estimators=100, random_state=0, n_jobs=2, progress=False).fit(xt, yt)
    elif case == "data-oob-pipeline":
        from sklearn.pipeline import make_pipeline
        from sklearn.tree import DecisionTreeClassifier

        model = (DecisionTreeClassifier() if form == "arrays" else
                 make_pipeline(default_preprocessor(xt), DecisionTreeClassifier()))
        dv.DataOOB(model=model, n_estimators=20, random_state=0, n_jobs=2,
                   progress=False).fit(xt, yt)
    elif case == "knn-shapley":
        dv.KNNShapley(n_neighbors=10, n_jobs=2, progress=False).fit(xt, yt, xv, yv)
    seconds = time.perf_counter() - start
    from _runner import own_peak_mb  # VmHWM: ru_maxrss would include the parent's at fork

    peak = (own_peak_mb() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024) * 2**20
    return {"seconds": seconds, "peak_bytes": peak}


def measure(case: str, form: str, rows: int, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--child", case, "--form", form, "--rows", str(rows)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_mb": max(r["peak_bytes"] for r in runs) / 1e6,
            "runs": [round(r["seconds"], 3) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--form")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.form, args.rows)))
        return
    _data(args.rows)
    load = os.getloadavg()[0]
    print(f"# Valuing a {args.rows:,}-row DataFrame (20 numeric + 10 categorical columns) vs "
          f"the same work on pre-encoded arrays")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load average {load:.2f}, "
          f"{os.cpu_count()} cores, median of {args.repeats} fresh processes\n")
    print("| case | DataFrame (s) | arrays (s) | ratio | peak MB frame | peak MB arrays |")
    print("|---|---:|---:|---:|---:|---:|")
    record = {}
    for case in ("data-oob", "knn-shapley", "data-oob-pipeline"):
        f = measure(case, "frame", args.rows, args.repeats)
        a = measure(case, "arrays", args.rows, args.repeats)
        ratio = f["seconds"] / a["seconds"]
        record[case] = {"frame": f, "arrays": a, "ratio": ratio}
        print(f"| {case} | {f['seconds']:.2f} | {a['seconds']:.2f} | {ratio:.2f}x | "
              f"{f['peak_mb']:.0f} | {a['peak_mb']:.0f} |", flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "tables.json").write_text(json.dumps(
        {"rows": args.rows, "load": load, "date": time.strftime("%Y-%m-%d %H:%M"),
         "cases": record}, indent=2))


if __name__ == "__main__":
    main()
