"""The 'compare' command: several methods on the same splits, all evaluated (a benchmark)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from datavalue._core.exceptions import InvalidParameterError, UnknownNameError
from datavalue.actions.compare import COMPARE_BUDGETS, compare, default_methods
from datavalue.cli._common import (
    _add_common,
    _add_data_options,
    _check_n_jobs,
    _check_name,
    _listing,
    _parse_params,
    _progress,
    _split_list,
    _summary,
    _wrap,
)
from datavalue.data import BUILTIN_DATASETS
from datavalue.valuation import METHODS
from datavalue.valuation.models import MODELS
from datavalue.valuation.utility import METRICS


def add_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'compare' subcommand to ``sub``; returns its parser (without ``func``)."""
    methods = _listing("methods (--methods):", {k: _summary(v) for k, v in METHODS.items()})
    budgets = "\n".join(f"  {m}: " + ", ".join(f"{k}={v}" for k, v in p.items())
                        for m, p in COMPARE_BUDGETS.items())
    p = sub.add_parser(
        "compare",
        formatter_class=fmt,
        help="run several methods on the same splits and evaluate them all (benchmark)",
        description=_wrap(
            "For each seed: load and split the data, corrupt a fraction of the training rows, "
            "run every method, then measure how well each finds the corrupted rows (AUC, "
            "two-cluster F1) and how removing or adding training points in order of value "
            "changes the test score of a retrained model; record the wall time. Writes a tidy "
            "table per (method, seed) (compare.csv, compare.parquet), the mean ± sd over seeds "
            "(summary.csv, summary.md), the curves, every value vector and a run log into "
            "--out. The protocol of OpenDataVal (Jiang et al., 2023)."
        ),
        epilog=f"{methods}\n\n"
        f"budgets compare gives by default (override with --param):\n{budgets}\n\n"
        "examples:\n"
        "  datavalue compare --data breast_cancer --methods data-oob,knn-shapley,loo --out cmp\n"
        "  datavalue compare --data adult.npz --train-size 1000 --valid-size 100 \\\n"
        "      --test-size 500 --noise 0.2 --model logreg --seeds 0,1,2 \\\n"
        "      --methods data-oob,knn-shapley,tmc-shapley,loo,random \\\n"
        "      --param tmc-shapley.max_permutations=100 --out results/adult",
    )
    g = p.add_argument_group("data")
    _add_data_options(g, noise_default=0.2)
    g = p.add_argument_group("methods")
    g.add_argument(
        "--methods",
        metavar="A,B,...",
        help="comma-separated methods to compare. Default: every registered method except "
        "the exact enumerations (exact-*).",
    )
    g.add_argument("--model", default="logreg", metavar="NAME",
                   help=f"model, one of {', '.join(MODELS)}: retrained by the retraining "
                   "methods and the curves, bagged by Data-OOB. Default: logreg.")
    g.add_argument("--metric", metavar="NAME",
                   help=f"test score, one of {', '.join(METRICS)}. Default: accuracy / r2.")
    g.add_argument("--seeds", default="0,1,2", metavar="S,S,...",
                   help="comma-separated seeds: one split, corruption and run of every method "
                   "per seed. Default: 0,1,2.")
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="[METHOD.]NAME=VALUE",
        help="a parameter of one method (tmc-shapley.max_permutations=100) or of every "
        "compared method that has it (n_neighbors=5); VALUE is read as JSON. Repeatable.",
    )
    g.add_argument("--fractions", type=float, nargs="+", metavar="F",
                   help="fractions of the training set for the removal/addition curves. "
                   "Default: evaluate's grid (0 to 0.5).")
    g.add_argument("--lds", type=int, default=0, metavar="N",
                   help="add the column 'lds': the linear datamodeling score of the values over "
                   "N random halves of the training set, each retrained (test log-loss). "
                   "Default: 0 (off).")
    g.add_argument("--loo", type=int, default=0, metavar="N",
                   help="add the column 'loo_pearson': Pearson correlation of the values of N "
                   "random training rows with the actual change of the test loss when each is "
                   "left out and the model retrained. Default: 0 (off).")
    g.add_argument("--keep-going", action="store_true",
                   help="record a listed method that rejects the data (e.g. KNN-Shapley on a "
                   "regression target) as 'failed' and go on, instead of stopping (always so "
                   "without --methods).")
    _add_common(p)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the tables, values, data sets and run.log. Required.")
    return p


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _split_list(text, "--seeds") or []]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise InvalidParameterError(
            f"--seeds must be distinct non-negative ints separated by commas, e.g. 0,1,2. "
            f"Got {text!r}."
        )
    return seeds


def _parse_compare_params(methods: list[str], items: list[str]) -> dict[str, dict[str, Any]]:
    """``["tmc-shapley.max_permutations=50", "n_neighbors=5"]`` -> per-method dicts."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, _ = item.partition("=")
        method, dot, name = key.strip().rpartition(".")
        if not sep or not name.strip():
            raise InvalidParameterError(
                f"--param must look like METHOD.NAME=VALUE or NAME=VALUE. Got {item!r}."
            )
        targets = [method] if dot else methods
        if dot and method not in methods:
            raise UnknownNameError(
                f"--param {item!r} is for {method!r}, which is not among the compared methods "
                f"({', '.join(methods)})."
            )
        parsed = 0
        for m in targets:
            try:
                params = _parse_params(m, [f"{name}={item.partition('=')[2]}"])
            except UnknownNameError:
                if dot:
                    raise
                continue
            out.setdefault(m, {}).update(params)
            parsed += 1
        if not parsed:
            raise UnknownNameError(
                f"No compared method has the parameter {name.strip()!r} (--param {item!r})."
            )
    return out


def _cmd_compare(args: argparse.Namespace) -> int:
    listed = _split_list(args.methods, "--methods")
    methods = listed or default_methods()
    for m in methods:
        _check_name(m, METHODS, "method", "--methods")
    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.metric, METRICS, "metric", "--metric")
    _check_n_jobs(args.n_jobs)
    seeds = _parse_seeds(args.seeds)
    params = _parse_compare_params(methods, args.param)
    if not 0.0 <= args.noise < 1.0:
        raise InvalidParameterError(
            f"--noise must be a fraction of the training rows in [0, 1). Got {args.noise:g}."
        )
    path = Path(args.data)
    if args.data not in BUILTIN_DATASETS and path.suffix and not path.is_file():
        raise InvalidParameterError(f"The data file {args.data!r} (--data) does not exist.")
    load_options: dict[str, Any] = {
        "valid_size": args.valid_size, "test_size": args.test_size,
        "train_size": args.train_size, "n_samples": args.n_samples, "target": args.target,
    }
    if args.impute:
        load_options["missing"] = "impute"
    load_options = {k: v for k, v in load_options.items() if v is not None}
    comparison = compare(
        args.data,
        methods=methods,
        seeds=seeds,
        noise_rate=args.noise,
        noise_kind=args.noise_kind,
        model=args.model,
        metric=args.metric,
        params=params,
        fractions=args.fractions,
        load_options=load_options,
        # The default list goes on past a method that does not apply (KNN-Shapley on a
        # regression target); methods the user listed stop the run unless --keep-going.
        on_error="record" if args.keep_going or listed is None else "raise",
        lds_subsets=args.lds,
        loo_points=args.loo,
        n_jobs=args.n_jobs,
        progress=_progress(args.quiet),
        out=args.out,
    )
    first = comparison.datasets[seeds[0]]
    print(f"Data:    {first.describe()} (seed {seeds[0]})")
    print(f"Methods: {', '.join(methods)}; model {args.model}; seeds {', '.join(map(str, seeds))}")
    print("\nMean ± sd over seeds:")
    text = comparison.format_summary().to_string(index=False)
    print("\n".join("  " + line for line in text.splitlines()))
    failed = comparison.table[comparison.table["status"] == "failed"]
    for row in failed.itertuples():
        print(f"\n{row.method} failed on seed {row.seed}: {row.error}")
    parquet = "compare.parquet, " if comparison.config.get("parquet") else ""
    print(f"\nWritten to {args.out}/: compare.csv, {parquet}summary.csv, summary.md, curves.csv, "
          "run.log, values/, datasets/.")
    print(f"Next: datavalue report {args.out}")
    return 0
