"""OpenDataVal's benchmark on adult, with our numbers next to the ones OpenDataVal publishes.

The protocol (Jiang et al., "OpenDataVal", NeurIPS 2023 Datasets and Benchmarks): 1,000
training / 100 validation / 500 test rows of adult, 20% of the training labels flipped, a
logistic regression as the model; each method values the training rows and the two-cluster
(k-means) F1 of the low-value cluster as a detector of the flipped rows is reported. The options
live in ``compare_adult.json`` beside this file; the run is :func:`datavalue.actions.compare` (so
``datavalue report OUT`` draws it), and every number is the mean ± sd over the seeds.

Usage::

    .venv/bin/python benchmarks/compare_adult.py                    # 3 seeds, ~30-40 min on 2 cores
    .venv/bin/python benchmarks/compare_adult.py --quick            # 1 seed, small budgets (~3 min)
    .venv/bin/python benchmarks/compare_adult.py --methods data-oob,knn-shapley --seeds 0 1
    .venv/bin/python benchmarks/compare_adult.py --out results/adult --config my.json

Writes the compare folder (``compare.csv``, ``summary.csv``, ``run.log``, values, ...) and
``opendataval.md`` (the table printed at the end) into ``--out`` (default
``benchmarks/results/compare-adult-<time>``). Methods of the config that are not registered in
this version of datavalue are left out with a note.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process: the methods parallelise over models themselves, and more
# threads only contend on a 2-core machine (and make timings noisy).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import datavalue as dv  # noqa: E402
from datavalue.actions.compare import compare  # noqa: E402
from datavalue.actions.comparison import markdown_table  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DATAVALUE_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
QUICK_PARAMS = {"tmc-shapley": {"max_permutations": 10}, "dvrl": {"n_iterations": 300},
                "data-oob": {"n_estimators": 200}}


def _arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=HERE / "compare_adult.json",
                   help="JSON file with the options (default: compare_adult.json here).")
    p.add_argument("--methods", help="comma-separated subset of the config's methods.")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the config's).")
    p.add_argument("--quick", action="store_true",
                   help="one seed and small budgets: a smoke test, not the benchmark.")
    p.add_argument("--n-jobs", type=int, default=-1, help="workers per method (default -1).")
    p.add_argument("--out", type=Path, help="output folder (default benchmarks/results/...).")
    p.add_argument("--quiet", action="store_true", help="no progress bars.")
    return p.parse_args()


def main() -> int:
    args = _arguments()
    config = json.loads(args.config.read_text())
    data = Path(config["data"])
    if not data.is_absolute():
        data = SHARED / data
    methods = config["methods"] if args.methods is None else args.methods.split(",")
    missing = [m for m in methods if m not in dv.METHODS]
    methods = [m for m in methods if m in dv.METHODS]
    seeds = args.seeds or config["seeds"]
    params = {m: dict(p) for m, p in config.get("params", {}).items() if m in methods}
    if args.quick:
        seeds = seeds[:1]
        for m, p in QUICK_PARAMS.items():
            if m in methods:
                params.setdefault(m, {}).update(p)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"compare-adult-{stamp}{'-quick' if args.quick else ''}"
    print(config["description"])
    if missing:
        print(f"Not registered in datavalue {dv.__version__}, left out: {', '.join(missing)}")
    started = time.perf_counter()
    result = compare(
        data, methods=methods, seeds=seeds, noise_rate=config["noise_rate"],
        model=config["model"], params=params, load_options=config["load_options"],
        n_jobs=args.n_jobs, progress=False if args.quiet else None, out=out,
    )
    total = time.perf_counter() - started
    summary = result.summary.set_index("method")
    published = config["opendataval_f1"]
    names = config.get("opendataval_names", {})
    rows = []
    for m in methods:
        s = summary.loc[m]
        sd = f" ± {s['f1_kmeans_sd']:.3f}" if len(seeds) > 1 else ""
        rows.append({
            "method": names.get(m, m),
            "datavalue F1": f"{s['f1_kmeans_mean']:.3f}{sd}",
            "OpenDataVal F1": f"{published[m]:.3f}" if m in published else "–",
            "datavalue AUC": f"{s['auc_mean']:.3f}",
            "wall time (s)": f"{s['wall_time_mean']:.1f}",
            "parameters": ", ".join(f"{k}={v}" for k, v in params.get(m, {}).items()) or "defaults",
        })
    import pandas as pd

    table = markdown_table(pd.DataFrame(rows))
    header = (f"adult, {config['load_options']}, {config['noise_rate']:.0%} flipped labels, "
              f"model {config['model']}, seeds {', '.join(map(str, seeds))}; "
              f"datavalue {dv.__version__}; total {total / 60:.1f} min\n\n")
    (out / "opendataval.md").write_text(header + table)
    print("\nTwo-cluster (k-means) F1 of flip detection, mean ± sd over seeds:\n")
    print(header + table)
    print(f"Written to {out}/ (datavalue report {out} draws it).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
