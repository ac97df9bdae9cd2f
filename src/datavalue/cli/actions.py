"""The 'clean' and 'fix' commands: drop or down-weight low-valued rows, review labels."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from datavalue._core.exceptions import InvalidParameterError
from datavalue._core.folder import check_output_folder
from datavalue.actions import CLEAN_MODES, FIX_RANKINGS, clean, fix
from datavalue.cli._common import (
    _add_common,
    _add_model_options,
    _check_n_jobs,
    _check_name,
    _load_data,
    _progress,
    _split_list,
    _wrap,
)
from datavalue.data import Dataset
from datavalue.runs import load_run
from datavalue.valuation.models import MODELS, make_model
from datavalue.valuation.utility import METRICS, resolve_metric


def _fraction_or_auto(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number, got {text!r}") from None


def add_clean_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'clean' subcommand to ``sub``; returns its parser (without ``func``)."""
    p = sub.add_parser(
        "clean",
        formatter_class=fmt,
        help="drop (or down-weight) the lowest-valued training rows and retrain",
        description=_wrap(
            "Read a folder written by 'datavalue value', drop (or down-weight) the "
            "lowest-valued fraction of the training rows, retrain the model and report its "
            "test score before and after, with the score over a grid of fractions next to "
            "dropping as many rows at random. By default the fraction is chosen on the "
            "validation split (or by cross-validation on the training rows when there is "
            "none), 'clean nothing' included; the test split only checks the choice. Writes the cleaned data set (cleaned_dataset.npz "
            "and cleaned_train.csv in the original units), clean_curve.csv, clean.json and "
            "clean.png."
        ),
        epilog="examples:\n"
        "  datavalue clean results/bc\n"
        "  datavalue clean results/bc --fraction 0.05 --mode weight --weight 0.2 --model forest",
    )
    p.add_argument("dir", metavar="DIR", help="folder written by 'datavalue value'.")
    p.add_argument("--fraction", type=_fraction_or_auto, default="auto", metavar="F",
                   help="fraction of the training rows to clean, lowest values first, in "
                   "[0, 1), or 'auto': the fraction of --fractions whose retrained model scores "
                   "best on the validation split (cross-validation on the training rows if "
                   "there is none); 0 wins ties. Default: auto.")
    p.add_argument("--mode", choices=CLEAN_MODES, default="drop",
                   help="'drop' removes the rows; 'weight' keeps them with a small "
                   "sample_weight (the model must accept it). Default: drop.")
    p.add_argument("--weight", type=float, default=0.1, metavar="W",
                   help="sample weight of the flagged rows with --mode weight, in [0, 1]. "
                   "Default: 0.1.")
    _add_model_options(p)
    p.add_argument("--fractions", type=float, nargs="+", metavar="F",
                   help="grid of fractions for the curve. Default: 0, 0.05, ..., 0.3.")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the cleaned data and the figures. Default: DIR.")
    _add_common(p)
    return p


def add_fix_parser(sub: Any, fmt: Any) -> argparse.ArgumentParser:
    """Add the 'fix' subcommand to ``sub``; returns its parser (without ``func``)."""
    p = sub.add_parser(
        "fix",
        formatter_class=fmt,
        help="review training labels in ranked order and fix the flipped ones",
        description=_wrap(
            "Koh & Liang (2017), Sec. 5.4. Read a folder written by 'datavalue value' with "
            "flipped labels (--noise), rank the training rows for review — by the saved values "
            "(lowest first), by self-influence and by training loss of the model trained on "
            "the noisy labels (largest first), and at random — and for each order plot the "
            "fraction of flipped labels found against the fraction checked, and the test score "
            "after restoring the true labels of the ones found. The true labels come from "
            "loading the same data without corruption (same options and seed). Writes "
            "fix_curve.csv, review.csv (every order), fix.json and fix.png."
        ),
        epilog="examples:\n"
        "  datavalue fix results/bc\n"
        "  datavalue fix results/bc --rankings loss,random --fractions 0.05 0.1 0.2",
    )
    p.add_argument("dir", metavar="DIR", help="folder written by 'datavalue value' with --noise.")
    p.add_argument("--rankings", default=",".join(FIX_RANKINGS), metavar="A,B,...",
                   help=f"review orders besides the saved values: any of "
                   f"{', '.join(FIX_RANKINGS)}. Default: all.")
    _add_model_options(p)
    p.add_argument("--fractions", type=float, nargs="+", metavar="F",
                   help="fractions of the training set checked, in [0, 1]. Default: 0 to 0.5 "
                   "in steps of 0.025.")
    p.add_argument("--out", metavar="DIR", help="folder for the results. Default: DIR.")
    _add_common(p)
    return p


def _run_model(args: argparse.Namespace, ds: Dataset, options: dict[str, Any]) -> tuple[Any, str]:
    _check_name(args.model, MODELS, "model", "--model")
    _check_name(args.metric, METRICS, "metric", "--metric")
    _check_n_jobs(args.n_jobs)
    name = args.model or options.get("model") or "logreg"
    metric = args.metric or options.get("metric") or ("accuracy" if ds.task == "classification"
                                                      else "r2")
    resolve_metric(metric, ds.task)
    return make_model(name, ds.task, int(options.get("seed") or 0)), metric


def _source_table(options: dict[str, Any]) -> Any:
    """The user's CSV as read, indexed by the row ids the run used (its id column, else line
    numbers), so cleaned rows are written in the user's own columns and format; None for other
    data or when the file is gone."""
    data = options.get("data")
    if not data or not str(data).lower().endswith(".csv") or not Path(data).is_file():
        return None
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(data)
    id_column = options.get("id_column")
    if id_column is not None and id_column in frame.columns:
        frame.index = frame[id_column].to_numpy()
    else:
        frame.index = np.arange(2, len(frame) + 2)
    return frame


def _cmd_clean(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    ds, result, options, base = load_run(d)
    out = Path(args.out) if args.out else d
    check_output_folder(out, what="--out")
    model, metric = _run_model(args, ds, options)
    res = clean(ds, result, fraction=args.fraction, mode=args.mode, weight=args.weight,
                model=model, metric=metric, fractions=args.fractions,
                random_state=int(options.get("seed") or 0), n_jobs=args.n_jobs,
                progress=_progress(args.quiet))
    res.save(out, based_on=base if out == d else None, source=_source_table(options))
    verb = "Dropped" if args.mode == "drop" else f"Down-weighted (to {args.weight:g})"
    print(f"Data:    {ds.describe()}")
    print(f"Values:  {result.method}; model {type(model).__name__}, test {metric} on "
          f"{ds.n_test} examples")
    noisy = (f", {res.n_noisy_flagged} of them corrupted on purpose"
             if res.n_noisy_flagged is not None else "")
    if res.selection is not None:
        on = res.selection["on"].iloc[0]
        where = ("the validation split" if on == "validation" else
                 "5-fold cross-validation on the training rows (there is no validation split)")
        scores = ", ".join(f"{f:.0%}: {v:.4f}" for f, v in
                           zip(res.selection["fraction"], res.selection["score"], strict=True))
        print(f"\nChosen on {where}, by {metric} after cleaning each fraction:\n  {scores}")
    if res.flagged.size == 0:
        print("\nNo cleaning was chosen: no fraction of low-valued rows raised the "
              f"{'validation' if res.selection is not None else ''} score above keeping every "
              "row, so nothing was dropped.".replace("  ", " "))
    else:
        print(f"\n{verb} the {res.flagged.size} lowest-valued training rows ({res.fraction:.0%})"
              f"{noisy}.")
    print(f"  test {metric} before  {res.score_before:.4f}   (the check: never used to choose)")
    change = res.score_after - res.score_before
    print(f"  test {metric} after   {res.score_after:.4f}  ({change:+.4f})")
    if res.flagged.size and change < 0:
        print(f"  Cleaning lowered the test {metric}: the validation choice did not carry over "
              "to the test split (small splits are noisy); consider keeping the data.")
    table = res.curve.pivot_table(index="fraction", columns="order", values="score")
    table = table.rename(columns={"least_valuable_first": "lowest values first",
                                  "random": "random rows"})
    table.columns.name = None
    text = table.rename_axis("fraction").reset_index().to_string(
        index=False, float_format=lambda v: f"{v:.4f}")
    print(f"\nTest {metric} by fraction cleaned (lowest values first vs random rows):")
    print("\n".join("  " + line for line in text.splitlines()))
    print(f"\nWritten to {out}/: cleaned_dataset.npz, cleaned_train.csv, clean_curve.csv, "
          "clean.json, clean.png.")
    return 0


def _cmd_fix(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    ds, result, options, base = load_run(d)
    out = Path(args.out) if args.out else d
    check_output_folder(out, what="--out")
    rankings = _split_list(args.rankings, "--rankings") or []
    for r in rankings:
        _check_name(r, FIX_RANKINGS, "ranking", "--rankings")
    model, metric = _run_model(args, ds, options)
    if not len(ds.noisy_indices):
        raise InvalidParameterError(
            f"{str(d)!r} has no corrupted training rows to find: run 'datavalue value' with "
            "--noise (e.g. --noise 0.1) first."
        )
    if options.get("noise_kind", "labels") != "labels" or "data" not in options:
        raise InvalidParameterError(
            f"'fix' restores flipped labels, but the run in {str(d)!r} "
            + ("corrupted features (--noise-kind features)." if "data" in options else
               "has no run.json saying how its data were loaded.")
        )
    clean_ds = _load_data(
        options["data"], target=options.get("target"), noise=0.0,
        n_samples=options.get("n_samples"), valid_size=options.get("valid_size", 0.2),
        test_size=options.get("test_size", 0.2), seed=int(options.get("seed") or 0),
        impute=bool(options.get("impute")), id_column=options.get("id_column"),
    )
    res = fix(ds, clean_ds, values=result, rankings=rankings, model=model, metric=metric,
              fractions=args.fractions, random_state=int(options.get("seed") or 0),
              n_jobs=args.n_jobs, progress=_progress(args.quiet))
    res.save(out, ds, based_on=base if out == d else None)
    summary = res.summary(0.1)
    f = summary["fraction_checked"]
    print(f"Data:    {ds.describe()}")
    print(f"Model:   {type(model).__name__}, test {metric} on {ds.n_test} examples")
    print(f"\n{res.flipped.size} flipped labels. Test {metric} with them "
          f"{res.score_noisy:.4f}, with every label fixed {res.score_clean:.4f}.")
    print(f"\nChecking the first {f:.0%} of the training set in each order:")
    width = max(len(r) for r in res.orders)
    print(f"  {'order':<{width}}  flips found  test {metric} after fixing them")
    for name, r in summary["rankings"].items():
        print(f"  {name:<{width}}  {r['fraction_found']:>11.1%}  {r['score']:.4f}")
    first = next(iter(res.orders))
    shown = ", ".join(map(str, res.orders[first][:10]))
    print(f"\nReview first (by {first}): training rows {shown}, ...")
    print(f"\nWritten to {out}/: fix_curve.csv, review.csv, fix.json, fix.png.")
    return 0
