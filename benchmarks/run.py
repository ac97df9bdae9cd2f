"""Speed, memory and quality of datavalue against its floors and peer libraries.

    make bench                                   # everything (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick   # tiny sizes, one repeat: a smoke test
    .venv/bin/python benchmarks/run.py --cases knn --n-jobs 1 --no-peers

Every implementation runs in a fresh process on the same saved arrays (``benchmarks/.cache``),
with the same number of cores. Results are printed as markdown tables and written to
``benchmarks/results/<timestamp>.md`` and ``.json``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, make_classification

import _harness as h
import datavalue as dv

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
# The shared real data sets live in the `shared` folder beside the repository root.
SHARED_DATA = BENCH_DIR.parent / ".." / "shared" / "data"


# --------------------------------------------------------------------------- data
def synthetic(n_train: int, n_valid: int, n_features: int = 20, seed: int = 0):
    """make_classification (as datavalue's built-in "classification" set: half the features
    informative, none redundant), standardized, 10% of the training labels flipped."""
    X, y = make_classification(
        n_samples=n_train + n_valid, n_features=n_features, n_informative=n_features // 2,
        n_redundant=0, random_state=seed,
    )
    ds = dv.Dataset.from_arrays(
        X, y, train_size=n_train, valid_size=n_valid, test_size=0, standardize=True,
        random_state=seed, name="make_classification",
    )
    return dv.corrupt_labels(ds, 0.1, random_state=seed)


def adult(n_train: int, n_valid: int, seed: int = 0):
    """A random sample of rows of the shared adult set, standardized, 10% labels flipped."""
    path = SHARED_DATA / "adult.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path.resolve()} not found (the shared data sets)")
    with np.load(path) as f:
        X, y = f["X"], f["y"]
    rows = np.sort(np.random.default_rng(seed).choice(len(y), n_train + n_valid, replace=False))
    ds = dv.Dataset.from_arrays(
        X[rows].astype(np.float64), y[rows], train_size=n_train, valid_size=n_valid,
        test_size=0, standardize=True, random_state=seed, name="adult",
    )
    return dv.corrupt_labels(ds, 0.1, random_state=seed)


def breast_cancer(seed: int = 0):
    """scikit-learn's breast cancer set, 60/20/20 split, standardized, 10% labels flipped."""
    X, y = load_breast_cancer(return_X_y=True)
    ds = dv.Dataset.from_arrays(
        X, y, valid_size=0.2, test_size=0.2, standardize=True, random_state=seed,
        name="breast_cancer",
    )
    return dv.corrupt_labels(ds, 0.1, random_state=seed)


DATA_MAKERS = {"synthetic": synthetic, "adult": adult, "breast_cancer": breast_cancer}


def case_arrays(spec: dict[str, Any]) -> Path:
    """Generate the case's data once and save it; every implementation reads this file."""
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    path = CACHE_DIR / f"{spec['maker']}-{key}.npz"
    if not path.is_file():
        kwargs = {k: v for k, v in spec.items() if k != "maker"}
        ds = DATA_MAKERS[spec["maker"]](**kwargs)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x_train=ds.x_train, y_train=ds.y_train, x_valid=ds.x_valid,
                 y_valid=ds.y_valid, noisy_indices=ds.noisy_indices)
        tmp.replace(path)
    return path


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    name: str
    method: str  # the method name every runner understands
    data: dict[str, Any]  # arguments of a DATA_MAKERS function ("maker" = which one)
    quick_data: dict[str, Any]
    params: dict[str, Any]  # the same for every implementation (n_jobs is added)
    quick_params: dict[str, Any] = field(default_factory=dict)
    floor: bool = True
    peers: tuple[str, ...] = h.PEERS
    repeats: int = 1
    targets: dict[str, float] = field(default_factory=dict)
    remark: str = ""


CASES = [
    Case(
        name="data-oob-synthetic",
        method="data-oob",
        data={"maker": "synthetic", "n_train": 5000, "n_valid": 1000},
        quick_data={"maker": "synthetic", "n_train": 500, "n_valid": 200},
        params={"n_estimators": 1000, "random_state": 0},
        quick_params={"n_estimators": 50},
        targets={"ratio_to_floor": 1.3},
    ),
    Case(
        name="data-oob-adult",
        method="data-oob",
        data={"maker": "adult", "n_train": 10000, "n_valid": 2000},
        quick_data={"maker": "adult", "n_train": 1000, "n_valid": 500},
        params={"n_estimators": 1000, "random_state": 0},
        quick_params={"n_estimators": 50},
        targets={"ratio_to_floor": 1.3},
    ),
    Case(
        name="knn-small",
        method="knn-shapley",
        data={"maker": "synthetic", "n_train": 5000, "n_valid": 1000},
        quick_data={"maker": "synthetic", "n_train": 500, "n_valid": 100},
        params={"n_neighbors": 5},
        repeats=3,
        targets={"time_s": 0.6},
    ),
    Case(
        name="knn-large",
        method="knn-shapley",
        data={"maker": "synthetic", "n_train": 50000, "n_valid": 10000},
        quick_data={"maker": "synthetic", "n_train": 5000, "n_valid": 1000},
        params={"n_neighbors": 5},
        peers=(),
        # No time target against the floor: the floor is the distance GEMM alone (1.3 s here),
        # and ordering 5e8 distances costs more than computing them, in any implementation.
        # (The former target, 1.5x, was set against a floor that included a full argsort.)
        targets={"peak_mb": 4096},
        remark="peers not run: pyDVL and OpenDataVal hold the full 10,000 x 50,000 sorted "
        "neighbour / distance matrices (4-6 GB) and loop over them in Python; the floor is "
        "the distances alone, the ordering of each row comes on top",
    ),
    Case(
        name="loo-breast-cancer",
        method="loo",
        data={"maker": "breast_cancer"},
        quick_data={"maker": "breast_cancer"},
        params={},
        floor=False,
        repeats=3,
        remark="LogisticRegression(max_iter=1000), accuracy on the validation split",
    ),
]
GROUPS = {"data-oob": "data-oob", "knn": "knn-shapley", "loo": "loo"}


def select_cases(spec: str | None) -> list[Case]:
    """``--cases``: comma-separated groups (data-oob, knn, loo) or full case names."""
    if not spec:
        return list(CASES)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in GROUPS and w not in {c.name for c in CASES}]
    if unknown:
        names = ", ".join([*GROUPS, *(c.name for c in CASES)])
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; choose from: {names}")
    return [c for c in CASES if c.name in wanted or any(GROUPS.get(w) == c.method for w in wanted)]


def check_targets(case: Case, rows: list[h.Row]) -> list[str]:
    """One line per target of the case: met or missed by our row."""
    ours = next((r for r in rows if r.impl == "datavalue" and r.status == "ok"), None)
    out = []
    for target, limit in case.targets.items():
        got = None if ours is None else getattr(ours, target)
        verdict = "not measured" if got is None else ("met" if got <= limit else "MISSED")
        shown = "-" if got is None else f"{got:.3g}"
        out.append(f"{case.name}: target {target} <= {limit:g}: {shown} ({verdict})")
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated: data-oob, knn, loo, or case names "
                        f"({', '.join(c.name for c in CASES)}); default: all")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and one repeat: checks that everything runs")
    parser.add_argument("--no-peers", action="store_true", help="skip pyDVL and OpenDataVal")
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1,
                        help="cores given to every implementation (default: all, %(default)s)")
    parser.add_argument("--repeats", type=int,
                        help="runs per implementation (default: 3 for short cases, 1 for long)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before one run is killed (default %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)

    if args.list:
        for c in CASES:
            print(f"{c.name:28s} {c.method:12s} data={c.data} params={c.params}")
        return 0
    cases = select_cases(args.cases)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = CACHE_DIR / "runs" / stamp
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    header = [
        f"# datavalue benchmarks {stamp}" + (" (quick: tiny sizes, targets not checked)"
                                             if args.quick else ""),
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; every implementation gets n_jobs={args.n_jobs} "
        "(OpenDataVal has no n_jobs: one process). Load average at start: "
        f"{'-' if load_before is None else f'{load_before:.2f}'}.",
    ]
    if load_before is not None and load_before > 0.5:
        header.append(f"WARNING: the machine was busy (load {load_before:.1f}) when the "
                      "benchmark started: timings may be inflated.")
    print("\n".join(header), flush=True)

    all_rows: list[h.Row] = []
    notes: dict[str, list[str]] = {}
    for case in cases:
        print(f"\n{case.name}: preparing data ...", flush=True)
        spec = case.quick_data if args.quick else case.data
        try:
            data = case_arrays(spec)
        except (FileNotFoundError, OSError) as exc:
            all_rows.append(h.Row(case.name, case.method, "datavalue", f"unavailable: {exc}"))
            continue
        with np.load(data) as f:
            shape = f"{f['x_train'].shape[0]} train x {f['x_valid'].shape[0]} valid, " \
                    f"{f['x_train'].shape[1]} features, {len(f['noisy_indices'])} flipped"
        params = {**case.params, **(case.quick_params if args.quick else {}),
                  "n_jobs": args.n_jobs}
        impls = (["floor"] if case.floor else []) + ["ours"]
        if not args.no_peers:
            impls += list(case.peers)
        repeats = args.repeats or (1 if args.quick else case.repeats)
        rows = h.run_case(case.name, case.method, data, params, impls, repeats=repeats,
                          timeout=args.timeout, workdir=workdir)
        all_rows.extend(rows)
        lines = [f"{case.name}: {shape}; params {params}; median of {repeats} run(s)"]
        if case.remark:
            lines.append(f"{case.name}: {case.remark}")
        lines += h.compare_lines(rows)
        if not args.quick:
            lines += check_targets(case, rows)
        notes[case.name] = lines

    out = list(header)
    for method in dict.fromkeys(c.method for c in cases):
        method_rows = [r for r in all_rows if r.method == method]
        if not method_rows:
            continue
        out += ["", f"## {method}", "", h.format_table(method_rows), ""]
        for case_name in dict.fromkeys(r.case for r in method_rows):
            out += [f"- {line}" for line in notes.get(case_name, [])]
    out += ["", "time_s: median wall time of the valuation call; ratio_to_floor: time / "
            "floor time; ratio_to_best_peer: time / fastest peer's time; peak_MB: peak memory "
            "of the process tree; AUC: detection of the flipped labels (higher is better)."]
    markdown = "\n".join(out) + "\n"
    print("\n" + markdown)
    stem = RESULTS_DIR / (stamp + ("-quick" if args.quick else ""))
    record = {
        "timestamp": stamp, "argv": sys.argv[1:], "quick": args.quick, "n_jobs": args.n_jobs,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "load_at_start": load_before},
        "rows": all_rows, "notes": notes,
    }
    h.save_results(stem, markdown, record)
    print(f"written: {stem.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
